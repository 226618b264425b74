//! `strata plan`: the command contract scripts depend on.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn fig1(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/mis-fig1")
        .join(name)
}

/// Run `strata plan ARGS`; returns (success, last stdout line as JSON or null, stderr).
fn plan(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("plan")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        last,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn solve_prints_the_contracted_report_and_writes_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.json");
    let inst = fig1("instance.json");
    let (ok, r, err) = plan(&[
        "solve",
        "--instance",
        inst.to_str().unwrap(),
        "--strategy",
        "mis",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    for key in [
        "strategy",
        "feasible",
        "total_latency_s",
        "lp_bound_s",
        "solve_s",
        "rounds",
        "file_level_registries",
        "reconstruction_s",
        "layers_stored",
        "storage_used_bytes",
    ] {
        assert!(r.get(key).is_some(), "missing {key} in {r}");
    }
    assert_eq!(r["strategy"], "mis");
    assert_eq!(r["feasible"], true);

    let (ok, e, err) = plan(&[
        "eval",
        "--instance",
        inst.to_str().unwrap(),
        "--plan",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(
        (e["total_latency_s"].as_f64().unwrap() - r["total_latency_s"].as_f64().unwrap()).abs()
            < 1e-6
    );
    assert_eq!(e["violations"], serde_json::json!([]));
    assert!(e["per_image_latency_s"]["redis:alpine"].as_f64().unwrap() > 0.0);
}

#[test]
fn eval_reports_the_papers_case() {
    let (ok, e, err) = plan(&[
        "eval",
        "--instance",
        fig1("instance.json").to_str().unwrap(),
        "--plan",
        fig1("case1.json").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!((e["per_image_latency_s"]["httpd:2-alpine"].as_f64().unwrap() - 20.232).abs() < 1e-3);
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fig1("instance.json")).unwrap()).unwrap();
    v["layers"][0]["size"] = serde_json::json!(-1);
    std::fs::write(&bad, v.to_string()).unwrap();
    let (ok, _, err) = plan(&[
        "solve",
        "--instance",
        bad.to_str().unwrap(),
        "--strategy",
        "mis",
    ]);
    assert!(!ok);
    assert!(
        err.contains("layer \"l1\": size must be a finite number >= 0, got -1"),
        "{err}"
    );
    let (ok, _, err) = plan(&[
        "solve",
        "--instance",
        fig1("instance.json").to_str().unwrap(),
        "--strategy",
        "fastest",
    ]);
    assert!(!ok);
    assert!(err.contains("unknown strategy \"fastest\""), "{err}");
}

#[test]
fn generate_writes_a_valid_instance() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small.json");
    let (ok, s, err) = plan(&[
        "generate",
        "--scale",
        "small",
        "--seed",
        "2",
        "--storage-mb",
        "400",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(s["images"], 35);
    assert!(s["dedup_ratio"].as_f64().unwrap() > 1.0);
    let (ok, r, err) = plan(&[
        "solve",
        "--instance",
        out.to_str().unwrap(),
        "--strategy",
        "docker",
    ]);
    assert!(ok, "{err}");
    assert_eq!(r["layers_stored"], 0);
}
