//! The MIS paper's Fig. 1: the evaluator reproduces the text's per-image times and totals.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use strata_planner::{evaluate, Instance, Plan, Problem};

fn example(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/mis-fig1")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn problem() -> Problem {
    Instance::from_json(&example("instance.json")).unwrap()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// (case, per-image times as in the text, total as in the text)
const CASES: [(&str, [f64; 3], f64); 3] = [
    ("case1", [6.74, 20.23, 7.10], 928.15),
    ("case2", [6.95, 7.50, 7.31], 622.50),
    ("case3", [6.95, 7.29, 7.10], 606.75),
];
const IMAGES: [&str; 3] = ["httpd:alpine3.15", "httpd:2-alpine", "redis:alpine"];
const RATES: [f64; 3] = [10.0, 25.0, 50.0];

#[test]
fn cases_reproduce_the_papers_times() {
    let p = problem();
    for (case, times, total) in CASES {
        let plan: Plan = serde_json::from_str(&example(&format!("{case}.json"))).unwrap();
        let e = evaluate(&p, &plan).unwrap();
        assert!(e.feasible(), "{case}: {:?}", e.violations);
        let mut rounded_total = 0.0;
        for ((image, want), rate) in IMAGES.iter().zip(times).zip(RATES) {
            let got = e.per_image_latency_s[*image];
            assert_eq!(round2(got), want, "{case} {image}: {got}");
            rounded_total += rate * round2(got);
        }
        assert!(
            (rounded_total - total).abs() < 1e-6,
            "{case}: {rounded_total} != {total}"
        );
        eprintln!(
            "{case}: exact total {:.2} s, text {total}",
            e.total_latency_s
        );
    }
}

#[test]
fn case_resources_are_accounted() {
    let p = problem();
    let plan: Plan = serde_json::from_str(&example("case3.json")).unwrap();
    let e = evaluate(&p, &plan).unwrap();
    assert_eq!(e.file_level_registries, 1);
    // r1 stores the httpd files once: 9976 + 141 + 140 + 3650 + 1 + 1 KB.
    assert_eq!(e.storage_used_bytes["r1"], 13909.0 * 1024.0);
    // r1 serves l2, l3, l4, l5 of httpd:alpine3.15 and l8 of httpd:2-alpine.
    assert_eq!(e.connections_used["r1"], 5);
    // Pulls from r1 rebuild layers: images 1 (4 layers) and 2 (l8), tau 0.21 each.
    assert!((e.reconstruction_s - (10.0 * 4.0 + 25.0) * 0.21).abs() < 1e-9);
    assert_eq!(e.layers_stored, 5 + 2 + 5);
}

#[test]
fn violations_are_reported() {
    let p = problem();
    let mut plan: Plan = serde_json::from_str(&example("case1.json")).unwrap();
    // r2 cannot hold l8 whole next to redis's layers.
    plan.registries[1].layers.push("l8".into());
    // l3 served by r2, which does not hold it.
    let r = plan.routes.iter_mut().find(|r| r.layer == "l3").unwrap();
    r.source = "r2".into();
    // l4 of httpd:alpine3.15 left without a source.
    plan.routes.retain(|r| r.layer != "l4");
    let e = evaluate(&p, &plan).unwrap();
    let kinds: Vec<String> = e
        .violations
        .iter()
        .map(|v| {
            serde_json::to_value(v).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(kinds.contains(&"storage".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"not_held".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"unserved".to_string()), "{kinds:?}");
}

#[test]
fn file_groups_keep_every_byte_and_merge_identical_memberships() {
    let p = problem();
    let groups = p.file_groups();
    let total: f64 = groups.iter().map(|g| g.size).sum();
    let files: f64 = p.instance.files.iter().map(|f| f.size).sum();
    assert_eq!(total, files, "grouping keeps every byte");
    assert!(groups
        .iter()
        .any(|g| g.layers.len() == 2 && g.size == 9976.0 * 1024.0));
    // Every file of Fig. 1 has its own set of layers: nothing to merge.
    assert_eq!(groups.len(), p.instance.files.len());

    // Two more files only in l4 join l4's file: one group of the summed size.
    let mut inst = p.instance.clone();
    for id in ["f-l4-b", "f-l4-c"] {
        inst.files.push(strata_planner::File {
            id: id.into(),
            size: 10.0,
        });
        inst.layers[3].files.push(id.into());
    }
    let merged = Problem::new(inst).unwrap().file_groups();
    assert_eq!(merged.len(), groups.len());
    let l4 = p.layer_index["l4"];
    let g = merged.iter().find(|g| g.layers == vec![l4]).unwrap();
    assert_eq!(g.size, 3650.0 * 1024.0 + 20.0);
}

/// Exact T of the text's case 3.
fn case3_latency(p: &Problem) -> f64 {
    let plan: Plan = serde_json::from_str(&example("case3.json")).unwrap();
    evaluate(p, &plan).unwrap().total_latency_s
}

fn solve_with(p: &Problem, strategy: &str) -> strata_planner::Report {
    let (plan, report) = strata_planner::solve(
        p,
        strategy.parse().unwrap(),
        &strata_planner::SolveOptions::default(),
    )
    .unwrap();
    let e = evaluate(p, &plan).unwrap();
    assert!(e.feasible(), "{strategy}: {:?}", e.violations);
    assert!(
        (e.total_latency_s - report.total_latency_s).abs() < 1e-9,
        "report matches the plan"
    );
    eprintln!(
        "{strategy}: T = {:.2} s, lp bound {:?}, gap {:?}, {} rounds",
        report.total_latency_s, report.lp_bound_s, report.mip_gap, report.rounds
    );
    report
}

#[test]
fn solvers_match_or_beat_the_papers_best_case() {
    let p = problem();
    let best = case3_latency(&p);
    let opt = solve_with(&p, "opt");
    assert!(
        opt.total_latency_s <= best + 1e-6,
        "opt {} > case 3 {best}",
        opt.total_latency_s
    );
    let hybrid = solve_with(&p, "mis-hybrid");
    assert!(
        hybrid.total_latency_s <= best + 1e-6,
        "mis-hybrid {} > case 3 {best}",
        hybrid.total_latency_s
    );
    let mis = solve_with(&p, "mis");
    assert!(
        mis.total_latency_s <= best * 1.05,
        "mis {} not within 5% of {best}",
        mis.total_latency_s
    );
    let bound = mis.lp_bound_s.unwrap();
    assert!(
        bound <= opt.total_latency_s + 1e-6,
        "the LP bound {bound} is a lower bound"
    );
    let docker = solve_with(&p, "docker");
    assert!(docker.total_latency_s > mis.total_latency_s);
    assert_eq!(docker.layers_stored, 0);
}
