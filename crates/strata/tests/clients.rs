//! Real clients against a real node: skopeo, containerd's ctr and podman.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use strata_oci::Digest;
use support::{
    corpus_dir, corpus_tags, ctr_pull, index_digest, missing_containerd_setup, missing_root,
    missing_tool, podman_command, pull_corpus_and_check, push_corpus, run, skopeo, with_containerd,
    StrataNode,
};

#[test]
fn skopeo_round_trips_every_corpus_image() {
    if missing_tool("skopeo_round_trips_every_corpus_image", "skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = StrataNode::start(&tmp.path().join("data"));
    push_corpus(&node);
    let corpus = corpus_dir();
    let out = tmp.path().join("pulled");
    for tag in corpus_tags() {
        let want = index_digest(&corpus, &tag);
        let remote = format!("docker://{}/corpus/{tag}:v1", node.host());
        let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &remote]);
        assert_eq!(
            Digest::sha256(raw.as_bytes()).to_string(),
            want,
            "{tag}: manifest bytes changed"
        );
    }
    pull_corpus_and_check(&node, &out);
    let catalog: serde_json::Value = serde_json::from_str(&run(
        Command::new("curl").args(["-sf", &node.url("/v2/_catalog")])
    ))
    .unwrap();
    assert_eq!(
        catalog["repositories"].as_array().unwrap().len(),
        corpus_tags().len()
    );
}

#[test]
fn containerd_pulls_from_the_node() {
    let test = "containerd_pulls_from_the_node";
    if missing_containerd_setup(test) {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("ctrd")
        .tempdir_in("/tmp")
        .unwrap();
    let node = StrataNode::start(&tmp.path().join("data"));
    push_corpus(&node);
    with_containerd(tmp.path(), |sock_s| {
        for tag in ["base", "flask"] {
            ctr_pull(sock_s, &node, tag);
        }
    });
}

#[test]
fn podman_pulls_from_the_node() {
    let test = "podman_pulls_from_the_node";
    if missing_tool(test, "skopeo") || missing_tool(test, "podman") || missing_root(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let node = StrataNode::start(&tmp.path().join("data"));
    push_corpus(&node);
    let root = tmp.path().join("root");
    let runroot = tmp.path().join("runroot");
    let podman = |args: &[&str]| run(podman_command(&root, &runroot).args(args));
    let image = format!("{}/corpus/curl:v1", node.host());
    podman(&["pull", "--tls-verify=false", &image]);
    let digest = podman(&["image", "inspect", "--format", "{{.Digest}}", &image]);
    assert_eq!(digest.trim(), index_digest(&corpus_dir(), "curl"));
}
