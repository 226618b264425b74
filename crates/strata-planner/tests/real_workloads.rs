//! What real registry metadata brings (issue 18): images that list a layer several times,
//! instances with nothing to place, values JSON does not allow, and suspicious sizes.

#![allow(clippy::unwrap_used)]

use strata_planner::{evaluate, solve, Instance, Problem, SolveOptions, Strategy};

const STRATEGIES: [&str; 6] = ["mis", "mis-hybrid", "opt", "sps", "gfr", "docker"];

/// Two registries, two servers, three images sharing layers; `img-a` lists `empty` three
/// times (as older Docker images list the empty layer) when `repeat` is set.
fn instance(repeat: bool) -> serde_json::Value {
    let a_layers = if repeat {
        serde_json::json!(["base", "empty", "app-a", "empty", "empty"])
    } else {
        serde_json::json!(["base", "empty", "app-a"])
    };
    serde_json::json!({
        "format": "strata-plan-instance/v1",
        "registries": [
            {"name": "r1", "storage_bytes": 3.0e7, "connections": 10, "bandwidth_bytes_per_s": 2.0e6},
            {"name": "r2", "storage_bytes": 2.0e7, "connections": 10, "bandwidth_bytes_per_s": 1.5e6}
        ],
        "central": {"bandwidth_bytes_per_s": 5.0e5},
        "servers": ["n1", "n2"],
        "files": [
            {"id": "f-base", "size": 9.0e6}, {"id": "f-empty", "size": 32},
            {"id": "f-a", "size": 6.0e6}, {"id": "f-b", "size": 7.0e6}, {"id": "f-c", "size": 4.0e6}
        ],
        "layers": [
            {"id": "base", "size": 1.0e7, "tau_s": 0.5, "files": ["f-base"]},
            {"id": "empty", "size": 32, "tau_s": 0.0, "files": ["f-empty"]},
            {"id": "app-a", "size": 6.5e6, "tau_s": 0.3, "files": ["f-a"]},
            {"id": "app-b", "size": 7.5e6, "tau_s": 0.3, "files": ["f-b"]},
            {"id": "app-c", "size": 4.5e6, "tau_s": 0.2, "files": ["f-c"]}
        ],
        "images": [
            {"name": "img-a", "layers": a_layers},
            {"name": "img-b", "layers": ["base", "empty", "app-b"]},
            {"name": "img-c", "layers": ["app-c", "empty"]}
        ],
        "requests": [
            {"server": "n1", "image": "img-a", "rate": 5}, {"server": "n1", "image": "img-b", "rate": 2},
            {"server": "n2", "image": "img-a", "rate": 1}, {"server": "n2", "image": "img-c", "rate": 4}
        ]
    })
}

fn problem(v: &serde_json::Value) -> Problem {
    Instance::from_json(&v.to_string()).unwrap()
}

fn options() -> SolveOptions {
    SolveOptions {
        time_limit_s: 20.0,
        ..SolveOptions::default()
    }
}

#[test]
fn a_layer_listed_several_times_is_pulled_once_and_every_strategy_plans_feasibly() {
    let repeated = problem(&instance(true));
    let once = problem(&instance(false));
    for name in STRATEGIES {
        let strategy: Strategy = name.parse().unwrap();
        let (plan, report) = solve(&repeated, strategy, &options()).unwrap();
        let e = evaluate(&repeated, &plan).unwrap();
        assert!(e.feasible(), "{name}: {:?}", e.violations);
        assert!(report.feasible, "{name}");
        // One route per (server, image, layer): img-a's `empty` once per server.
        let empty_routes = plan
            .routes
            .iter()
            .filter(|r| r.image == "img-a" && r.layer == "empty")
            .count();
        assert_eq!(empty_routes, 2, "{name}");
        // The same plan on the instance that lists the layer once: the same T.
        let (_, report_once) = solve(&once, strategy, &options()).unwrap();
        assert!(
            (report.total_latency_s - report_once.total_latency_s).abs() < 1e-9,
            "{name}: {} with the repeated listing, {} without",
            report.total_latency_s,
            report_once.total_latency_s
        );
        let on_once = evaluate(&once, &plan).unwrap();
        assert!(on_once.feasible(), "{name}");
        assert!((on_once.total_latency_s - e.total_latency_s).abs() < 1e-9);
    }
    // A plan that routes the repeated listing twice, to the same source, is one pull; to
    // two sources, a violation.
    let (mut plan, _) = solve(&repeated, Strategy::Docker, &options()).unwrap();
    let twice = plan
        .routes
        .iter()
        .find(|r| r.layer == "empty")
        .cloned()
        .unwrap();
    plan.routes.push(twice.clone());
    let e = evaluate(&repeated, &plan).unwrap();
    assert!(e.feasible(), "{:?}", e.violations);
    let mut other = twice;
    other.source = "r1".into();
    plan.routes.push(other);
    let e = evaluate(&repeated, &plan).unwrap();
    assert!(!e.feasible());
}

#[test]
fn instances_with_nothing_to_place_are_answered_by_every_strategy() {
    let mut no_layers = instance(false);
    no_layers["layers"] = serde_json::json!([]);
    no_layers["files"] = serde_json::json!([]);
    for img in no_layers["images"].as_array_mut().unwrap() {
        img["layers"] = serde_json::json!([]);
    }
    let mut no_requests = instance(false);
    no_requests["requests"] = serde_json::json!([]);
    let mut tiny = no_layers.clone();
    tiny["registries"] = serde_json::json!([no_layers["registries"][0].clone()]);
    tiny["servers"] = serde_json::json!(["n1"]);
    tiny["requests"] = serde_json::json!([{"server": "n1", "image": "img-a", "rate": 1}]);
    let mut nothing = no_layers.clone();
    nothing["requests"] = serde_json::json!([]);
    let mut no_registries = instance(false);
    no_registries["registries"] = serde_json::json!([]);
    let central_only = problem(&no_registries);
    for (case, v) in [
        ("no layers", no_layers),
        ("no requests", no_requests),
        ("one registry, one server, no layers", tiny),
        ("no layers, no requests", nothing),
    ] {
        let p = problem(&v);
        for name in STRATEGIES {
            let (plan, report) = solve(&p, name.parse().unwrap(), &options())
                .unwrap_or_else(|e| panic!("{case}, {name}: {e}"));
            assert!(report.feasible, "{case}, {name}");
            assert_eq!(report.total_latency_s, 0.0, "{case}, {name}");
            assert!(evaluate(&p, &plan).unwrap().feasible(), "{case}, {name}");
        }
    }
    // No edge registry: everything from the central one, the same T for every strategy.
    let ts: Vec<f64> = STRATEGIES
        .iter()
        .map(|name| {
            solve(&central_only, name.parse().unwrap(), &options())
                .unwrap_or_else(|e| panic!("no registries, {name}: {e}"))
                .1
                .total_latency_s
        })
        .collect();
    assert!(ts[0] > 0.0);
    assert!(ts.iter().all(|t| (t - ts[0]).abs() < 1e-9), "{ts:?}");
}

#[test]
fn nan_and_infinity_are_named_with_their_field() {
    let text = instance(false).to_string();
    for (field, token) in [
        ("storage_bytes", "NaN"),
        ("rate", "Infinity"),
        ("size", "NaN"),
    ] {
        let needle = format!("\"{field}\":");
        let at = text.find(&needle).unwrap() + needle.len();
        let end = at + text[at..].find([',', '}']).unwrap();
        let bad = format!("{}{token}{}", &text[..at], &text[end..]);
        let e = Instance::from_json(&bad).err().unwrap().to_string();
        assert!(
            e.contains(&format!("\"{field}\" is {token}")) && e.contains("line 1 column"),
            "{field}: {e}"
        );
    }
    // Other JSON errors keep serde's message.
    let e = Instance::from_json("{\"format\": tru}")
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("invalid json: "), "{e}");
}

#[test]
fn files_no_layer_lists_and_layers_their_files_outweigh_are_reported() {
    let p = problem(&instance(false));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let mut v = instance(false);
    v["files"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "stray", "size": 5}));
    v["files"][2]["size"] = serde_json::json!(6.5e7);
    let p = problem(&v);
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("\"app-a\"") && w.contains("10.0x")));
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("1 file(s) no layer lists") && w.contains("\"stray\"")));
}

/// A layer larger than a registry's storage is never held there: the relaxation does not
/// hold a share of it either, so its bound is the plan's T (nothing else to store).
#[test]
fn what_cannot_fit_alone_bounds_nothing() {
    let mut v = instance(false);
    for r in v["registries"].as_array_mut().unwrap() {
        r["storage_bytes"] = serde_json::json!(1000);
    }
    v["images"] = serde_json::json!([{"name": "img-a", "layers": ["base", "app-a"]}]);
    v["requests"] = serde_json::json!([{"server": "n1", "image": "img-a", "rate": 5}]);
    let p = problem(&v);
    let (_, docker) = solve(&p, Strategy::Docker, &options()).unwrap();
    for strategy in [Strategy::Mis, Strategy::MisHybrid] {
        let (_, r) = solve(&p, strategy, &options()).unwrap();
        assert!((r.total_latency_s - docker.total_latency_s).abs() < 1e-9);
        let bound = r.lp_bound_s.unwrap();
        assert!(
            (bound - r.total_latency_s).abs() <= 1e-6 * r.total_latency_s,
            "{}: bound {bound} below T {}",
            strategy.name(),
            r.total_latency_s
        );
    }
}
