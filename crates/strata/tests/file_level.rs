//! A node at `file` granularity: layers pushed by skopeo are decomposed into deduplicated
//! files, the node's disk use on the corpus is at most 55% of a `layer` node's, and skopeo
//! and containerd pull every image back with identical digests; `strata store convert` moves a
//! layer of the running node to `layer` and back, and it is pulled exactly in between.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{
    ctr_pull, missing_containerd_setup, pull_corpus_and_check, push_corpus, run, with_containerd,
    StrataNode,
};

/// Bytes of all files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        total += if meta.is_dir() {
            disk_bytes(&e.path())
        } else {
            meta.len()
        };
    }
    total
}

fn count_recipes(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap())
        .map(|e| {
            if e.metadata().unwrap().is_dir() {
                count_recipes(&e.path())
            } else {
                e.file_name().to_string_lossy().ends_with(".recipe") as usize
            }
        })
        .sum()
}

#[test]
fn file_level_node_serves_exact_layers_in_half_the_space() {
    let test = "file_level_node_serves_exact_layers_in_half_the_space";
    if missing_containerd_setup(test) {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("filelevel")
        .tempdir_in("/tmp")
        .unwrap();
    let layer_node = StrataNode::start(&tmp.path().join("layer"));
    let file_node = StrataNode::start_with(&tmp.path().join("file"), 0, &["--granularity", "file"]);
    push_corpus(&layer_node);
    push_corpus(&file_node);

    let recipes = file_node.data_dir.join("recipes");
    let deadline = Instant::now() + Duration::from_secs(600);
    while count_recipes(&recipes) < 6 {
        assert!(
            Instant::now() < deadline,
            "layers not converted within 10 minutes: {}",
            count_recipes(&recipes)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (layer_bytes, file_bytes) = (
        disk_bytes(&layer_node.data_dir),
        disk_bytes(&file_node.data_dir),
    );
    eprintln!(
        "disk use: layer node {layer_bytes} B, file node {file_bytes} B ({:.1}%)",
        file_bytes as f64 * 100.0 / layer_bytes as f64
    );
    assert!(
        file_bytes as f64 <= 0.55 * layer_bytes as f64,
        "file node uses {file_bytes} B, layer node {layer_bytes} B"
    );

    pull_corpus_and_check(&file_node, &tmp.path().join("pulled"));
    let ctrd = tmp.path().join("ctrd");
    std::fs::create_dir_all(&ctrd).unwrap();
    with_containerd(&ctrd, |sock| {
        for tag in ["base", "flask"] {
            ctr_pull(sock, &file_node, tag);
        }
    });

    // The curl layer, 7.3 MB of pgzip: whole, pulled, then back to files.
    let digest = "sha256:c6e01d35b66381a75e66fe7e56252449026d020fe319f6e2689e2fc517b055e4";
    let convert = |to: &str| -> serde_json::Value {
        let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "store",
                "convert",
                "--to",
                to,
                "--node",
                &file_node.admin_url(""),
            ])
            .arg("--data-dir")
            .arg(&file_node.data_dir)
            .arg(digest));
        serde_json::from_str(out.trim()).unwrap()
    };
    let c = convert("layer");
    assert_eq!(
        (c["granularity"].as_str(), c["changed"].as_bool()),
        (Some("layer"), Some(true)),
        "{c}"
    );
    assert_eq!(count_recipes(&recipes), 5);
    pull_corpus_and_check(&file_node, &tmp.path().join("pulled-after-convert"));
    let c = convert("file");
    assert_eq!(
        (c["granularity"].as_str(), c["changed"].as_bool()),
        (Some("file"), Some(true)),
        "{c}"
    );
    assert_eq!(count_recipes(&recipes), 6);
}
