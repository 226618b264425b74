//! `strata plan`: the command contract scripts depend on.

#![allow(clippy::unwrap_used)]

mod support;

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

#[test]
fn inventory_builds_a_solvable_instance_from_an_oci_layout() {
    if support::missing_tool("inventory_builds_a_solvable_instance", "python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/make_layout.py");
    let made = support::run(Command::new("python3").arg(script).arg(&layout));
    let made: serde_json::Value = serde_json::from_str(made.trim()).unwrap();
    let inst_path = dir.path().join("instance.json");
    let (ok, summary, err) = plan(&[
        "inventory",
        "--oci",
        layout.to_str().unwrap(),
        "--out",
        inst_path.to_str().unwrap(),
        "--storage-mb",
        "0.08",
    ]);
    assert!(ok, "{err}");
    assert_eq!(summary["images"], 2);
    assert_eq!(summary["layers"], 4);
    assert_eq!(summary["file_level_layers"], 3);

    let inst: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&inst_path).unwrap()).unwrap();
    let layers = inst["layers"].as_array().unwrap();
    let digests: Vec<&str> = made["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let layer = |d: &str| layers.iter().find(|l| l["id"] == d).unwrap();
    for d in &digests {
        let blob = layout.join("blobs/sha256").join(&d[7..]);
        let size = std::fs::metadata(blob).unwrap().len() as f64;
        assert_eq!(layer(d)["size"].as_f64(), Some(size), "layer {d} size");
    }
    // The file both gzip layers hold is one file of the instance, listed by both.
    let shared = made["shared_sha256"].as_str().unwrap();
    let files = inst["files"].as_array().unwrap();
    assert_eq!(files.iter().filter(|f| f["id"] == shared).count(), 1);
    for d in &digests[..2] {
        let listed = layer(d)["files"].as_array().unwrap();
        assert!(listed.iter().any(|f| f == shared), "{d} lists {shared}");
        assert!(listed.iter().any(|f| f == &format!("recipe:{d}")));
        assert!(layer(d)["tau_s"].as_f64().unwrap() > 0.0, "measured tau");
    }
    // The layer that is not a tar is held whole: one pseudo-file of its blob's size.
    let whole = layer(digests[3]);
    assert_eq!(
        whole["files"],
        serde_json::json!([format!("whole:{}", digests[3])])
    );
    assert_eq!(whole["tau_s"].as_f64(), Some(0.0));
    assert_eq!(
        inst["images"][1]["layers"],
        serde_json::json!([digests[1], digests[2], digests[3]])
    );

    let (ok, report, err) = plan(&[
        "solve",
        "--instance",
        inst_path.to_str().unwrap(),
        "--strategy",
        "mis",
    ]);
    assert!(ok, "{err}");
    assert_eq!(report["feasible"], true);
    let (_, docker, _) = plan(&[
        "solve",
        "--instance",
        inst_path.to_str().unwrap(),
        "--strategy",
        "docker",
    ]);
    assert!(
        report["total_latency_s"].as_f64() < docker["total_latency_s"].as_f64(),
        "mis {report} against docker {docker}"
    );
}

#[test]
fn experiment_writes_a_csv_and_a_plot_of_every_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, summary, err) = plan(&[
        "experiment",
        "images",
        "--scale",
        "small",
        "--values",
        "6,10",
        "--strategies",
        "docker,mis,opt",
        "--out-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let csv = std::fs::read_to_string(summary["csv"].as_str().unwrap()).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 6, "2 values x 3 strategies:\n{csv}");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let t = |x: &str, s: &str| -> f64 {
        let row = rows
            .iter()
            .find(|r| r[col("x")] == x && r[col("strategy")] == s)
            .unwrap();
        assert_eq!(row[col("feasible")], "true");
        row[col("total_latency_s")].parse().unwrap()
    };
    for x in ["6", "10"] {
        assert!(
            t(x, "opt") <= t(x, "mis") * (1.0 + 1e-6),
            "opt <= mis at {x}"
        );
        assert!(t(x, "mis") < t(x, "docker"), "mis < docker at {x}");
    }
    let svg = std::fs::read_to_string(summary["plot"].as_str().unwrap()).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3);
    for s in ["docker", "mis", "opt"] {
        assert!(svg.contains(&format!(">{s}</text>")), "legend names {s}");
    }
}

/// Issue 18: an instance from a registry's metadata (the example catalogue, which lists the
/// empty layer three times in one image) solves feasibly with every strategy; bad metadata
/// is named.
#[test]
fn generate_from_metadata_plans_a_catalogue_with_every_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/registry-metadata/example.json");
    let inst = dir.path().join("instance.json");
    let (ok, summary, err) = plan(&[
        "generate",
        "--from-metadata",
        example.to_str().unwrap(),
        "--seed",
        "5",
        "--storage-mb",
        "150",
        "--out",
        inst.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(summary["images"], 7, "{summary}");
    // 6 distinct layers of the corpus (their base is shared) plus the empty one and the
    // made-up one.
    assert_eq!(summary["layers"], 8, "{summary}");
    assert!(!err.contains("warning"), "{err}");
    for strategy in ["mis", "mis-hybrid", "opt", "sps", "gfr", "docker"] {
        let (ok, r, err) = plan(&[
            "solve",
            "--instance",
            inst.to_str().unwrap(),
            "--strategy",
            strategy,
            "--time-limit",
            "20",
        ]);
        assert!(ok, "{strategy}: {err}");
        assert_eq!(r["feasible"], true, "{strategy}: {r}");
    }
    let bad = dir.path().join("bad.json");
    let text = std::fs::read_to_string(&example).unwrap();
    std::fs::write(
        &bad,
        text.replacen("\"pulls\": 5000000", "\"pulls\": NaN", 1),
    )
    .unwrap();
    let (ok, _, err) = plan(&[
        "generate",
        "--from-metadata",
        bad.to_str().unwrap(),
        "--out",
        inst.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("\"pulls\" is NaN"), "{err}");
}
