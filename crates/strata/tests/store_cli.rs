//! `strata store convert` on a stopped node's data directory: by plan, then by digest; the
//! node serves the exact layer after each move, and gc then removes the files it no longer uses.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use strata_oci::Digest;
use support::http::{get_bytes, push_blob};
use support::{corpus_dir, StrataNode};

fn convert(args: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["store", "convert"])
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convert_by_plan_then_by_digest_keeps_the_layer_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    // The curl layer of the corpus, 7.3 MB of pgzip.
    let layer = std::fs::read(
        corpus_dir()
            .join("blobs/sha256/c6e01d35b66381a75e66fe7e56252449026d020fe319f6e2689e2fc517b055e4"),
    )
    .unwrap();
    let d = Digest::sha256(&layer);
    let node = StrataNode::start(&data_dir);
    assert_eq!(push_blob(&node.url(""), "r", layer.clone()).await.0, 201);
    node.kill();

    let absent = Digest::sha256(b"a layer this node never saw");
    let plan = serde_json::json!({
        "format": "strata-plan/v1",
        "strategy": "mis",
        "registries": [
            {"name": "edge-1", "granularity": "hybrid", "layers": [absent.to_string()], "file_layers": [d.to_string()]},
            {"name": "edge-2", "granularity": "layer", "layers": [d.to_string()]}
        ],
        "routes": []
    });
    let plan_path = tmp.path().join("plan.json");
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let dir = data_dir.to_str().unwrap();
    let (ok, lines, err) = convert(&[
        "--data-dir",
        dir,
        "--plan",
        plan_path.to_str().unwrap(),
        "--registry",
        "edge-1",
    ]);
    assert!(ok, "{err}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["digest"], d.to_string());
    assert_eq!(
        (
            lines[0]["granularity"].as_str(),
            lines[0]["changed"].as_bool()
        ),
        (Some("file"), Some(true))
    );
    assert!(err.contains("not stored on this node"), "{err}");

    let (ok, _, err) = convert(&[
        "--data-dir",
        dir,
        "--plan",
        plan_path.to_str().unwrap(),
        "--registry",
        "nope",
    ]);
    assert!(!ok && err.contains("no registry named nope"), "{err}");

    let node = StrataNode::start(&data_dir);
    let (status, body) = get_bytes(&node.url(&format!("/v2/r/blobs/{d}"))).await;
    assert_eq!(status, 200);
    assert!(Digest::sha256(&body) == d, "served from files, exactly");
    // While the node runs, the CLI goes through it.
    let (ok, lines, err) = convert(&[
        "--data-dir",
        dir,
        "--node",
        &node.admin_url(""),
        "--to",
        "layer",
        &d.to_string(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        (
            lines[0]["granularity"].as_str(),
            lines[0]["changed"].as_bool()
        ),
        (Some("layer"), Some(true))
    );
    let (status, body) = get_bytes(&node.url(&format!("/v2/r/blobs/{d}"))).await;
    assert_eq!(status, 200);
    assert!(body == layer, "served whole, exactly");

    // Its files are no longer used by any layer: gc (through the node) removes them.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["gc", "--data-dir", dir, "--node", &node.admin_url("")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["files_removed"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(
        report["blobs_removed"], 0,
        "the young blob is in grace: {report}"
    );
    let (status, body) = get_bytes(&node.url(&format!("/v2/r/blobs/{d}"))).await;
    assert_eq!(status, 200);
    assert!(body == layer, "still served whole, exactly");
}

fn recipe_path(data_dir: &std::path::Path, d: &Digest) -> std::path::PathBuf {
    data_dir
        .join("recipes/sha256")
        .join(&d.hex()[..2])
        .join(format!("{}.recipe", d.hex()))
}

/// Waits (up to a minute) until `done` holds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed().as_secs() < 60, "timed out waiting: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn write_plan(path: &std::path::Path, whole: &Digest, files: &Digest) {
    let plan = serde_json::json!({
        "format": "strata-plan/v1",
        "strategy": "mis",
        "registries": [
            {"name": "edge-1", "granularity": "hybrid", "layers": [whole.to_string()], "file_layers": [files.to_string()]}
        ],
        "routes": []
    });
    std::fs::write(path, plan.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_plan_stores_layers_as_it_says_and_sighup_applies_a_new_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let blob = |hex: &str| std::fs::read(corpus_dir().join("blobs/sha256").join(hex)).unwrap();
    let curl = blob("c6e01d35b66381a75e66fe7e56252449026d020fe319f6e2689e2fc517b055e4");
    let other = blob("a95107238e9998809db41e1136fdfdaaa80ba61fe52bb9d6a69e78ad4953b9f2");
    let (dc, dother) = (Digest::sha256(&curl), Digest::sha256(&other));
    let plan = tmp.path().join("plan.json");
    write_plan(&plan, &dother, &dc);
    let args = [
        "--plan",
        plan.to_str().unwrap(),
        "--plan-registry",
        "edge-1",
    ];
    let node = StrataNode::start_with(&data_dir, 0, &args);
    assert_eq!(push_blob(&node.url(""), "r", curl.clone()).await.0, 201);
    assert_eq!(push_blob(&node.url(""), "r", other.clone()).await.0, 201);
    wait_until("the planned layer at file level", || {
        recipe_path(&data_dir, &dc).exists()
    });
    assert!(
        !recipe_path(&data_dir, &dother).exists(),
        "the layer the plan keeps whole stays whole"
    );
    let (status, body) = get_bytes(&node.url(&format!("/v2/r/blobs/{dc}"))).await;
    assert!(status == 200 && body == curl, "rebuilt exactly");

    // The plan changes: the two layers swap places on SIGHUP, served exactly throughout.
    write_plan(&plan, &dc, &dother);
    let hup = Command::new("kill")
        .args(["-HUP", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until("the layers placed as the new plan says", || {
        !recipe_path(&data_dir, &dc).exists() && recipe_path(&data_dir, &dother).exists()
    });
    for (d, data) in [(&dc, &curl), (&dother, &other)] {
        let (status, body) = get_bytes(&node.url(&format!("/v2/r/blobs/{d}"))).await;
        assert!(status == 200 && body == *data, "{d} served exactly");
    }

    // A plan that cannot be read leaves the placement in force and the node serving.
    std::fs::write(&plan, "{ not json").unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (status, body) = get_bytes(&node.url(&format!("/v2/r/blobs/{dother}"))).await;
    assert!(status == 200 && body == other);
    assert!(recipe_path(&data_dir, &dother).exists());
}

#[test]
fn a_plan_without_this_nodes_name_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.json");
    write_plan(&plan, &Digest::sha256(b"a"), &Digest::sha256(b"b"));
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--plan"])
        .arg(&plan)
        .args(["--plan-registry", "edge-9", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no registry named edge-9"), "{err}");
}
