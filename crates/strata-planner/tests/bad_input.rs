//! Bad instance and plan files get a clear error naming the problem, never a panic.

#![allow(clippy::unwrap_used)]

use strata_planner::{evaluate, Instance, Plan, PlannerError};

fn base() -> serde_json::Value {
    serde_json::json!({
        "format": "strata-plan-instance/v1",
        "registries": [{"name": "r1", "storage_bytes": 100, "connections": 5, "bandwidth_bytes_per_s": 10}],
        "central": {"bandwidth_bytes_per_s": 1},
        "servers": ["n1"],
        "files": [{"id": "f1", "size": 10}],
        "layers": [{"id": "l1", "size": 10, "tau_s": 0.1, "files": ["f1"]}],
        "images": [{"name": "img", "layers": ["l1"]}],
        "requests": [{"server": "n1", "image": "img", "rate": 1}]
    })
}

fn error_of(v: serde_json::Value) -> String {
    match Instance::from_json(&v.to_string()) {
        Ok(_) => panic!("accepted a bad instance: {v}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_base_instance_is_valid() {
    assert!(Instance::from_json(&base().to_string()).is_ok());
}

#[test]
fn each_defect_is_named() {
    let mut v = base();
    v["layers"][0].as_object_mut().unwrap().remove("size");
    assert!(error_of(v).contains("missing field `size`"));

    let mut v = base();
    v["files"][0]["size"] = serde_json::json!(-5);
    let e = error_of(v);
    assert!(
        e.contains("file \"f1\"") && e.contains("size") && e.contains("-5"),
        "{e}"
    );

    let mut v = base();
    v["layers"][0]["files"] = serde_json::json!(["f1", "ghost"]);
    let e = error_of(v);
    assert!(
        e.contains("layer \"l1\"") && e.contains("unknown file \"ghost\""),
        "{e}"
    );

    let mut v = base();
    v["images"][0]["layers"] = serde_json::json!(["l9"]);
    assert!(error_of(v).contains("unknown layer \"l9\""));

    let mut v = base();
    v["requests"][0]["image"] = serde_json::json!("nope");
    assert!(error_of(v).contains("unknown image \"nope\""));

    let mut v = base();
    v["registries"][0]["bandwidth_bytes_per_s"] = serde_json::json!(0);
    assert!(error_of(v).contains("bandwidth_bytes_per_s must be > 0"));

    let mut v = base();
    v["files"] = serde_json::json!([{"id": "f1", "size": 1}, {"id": "f1", "size": 2}]);
    assert!(error_of(v).contains("duplicate file id \"f1\""));

    let mut v = base();
    v["format"] = serde_json::json!("something/v9");
    assert!(error_of(v).contains("unsupported format"));

    let mut v = base();
    v["registries"][0]["name"] = serde_json::json!("central");
    assert!(error_of(v).contains("duplicate registry id \"central\""));

    assert!(Instance::from_json("{ not json")
        .unwrap_err()
        .to_string()
        .starts_with("invalid json"));
}

#[test]
fn plans_naming_unknown_things_are_errors() {
    let p = Instance::from_json(&base().to_string()).unwrap();
    let plan: Plan = serde_json::from_value(serde_json::json!({
        "format": "strata-plan/v1", "strategy": "test",
        "registries": [{"name": "r1", "granularity": "layer", "layers": ["l1"]}],
        "routes": [{"server": "n1", "image": "img", "layer": "l1", "source": "r7"}]
    }))
    .unwrap();
    let e = evaluate(&p, &plan).unwrap_err();
    assert!(matches!(e, PlannerError::Unknown { .. }));
    assert!(e.to_string().contains("unknown registry \"r7\""), "{e}");
}
