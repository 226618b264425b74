//! Real clients against a real node: skopeo, containerd's ctr and podman.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_oci::Digest;
use support::{corpus_dir, corpus_tags, missing_root, missing_tool, run, StrataNode};

fn index_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("tag {tag} not in {}", layout.display()))
}

fn blob_names(layout: &Path) -> BTreeSet<String> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn skopeo(args: &[&str]) -> String {
    run(Command::new("skopeo")
        .args(["--insecure-policy"])
        .args(args))
}

/// Push every corpus image to the node and pull it back: manifests and blobs identical.
fn push_corpus(node: &StrataNode) {
    let corpus = corpus_dir();
    for tag in corpus_tags() {
        let src = format!("oci:{}:{tag}", corpus.display());
        let dst = format!("docker://{}/corpus/{tag}:v1", node.host());
        skopeo(&["copy", "--dest-tls-verify=false", &src, &dst]);
    }
}

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
        let dst = format!("oci:{}:{tag}", out.display());
        skopeo(&["copy", "--src-tls-verify=false", &remote, &dst]);
        assert_eq!(
            index_digest(&out, &tag),
            want,
            "{tag}: pulled manifest digest differs"
        );
    }
    let pulled = blob_names(&out);
    let original = blob_names(&corpus);
    assert_eq!(
        pulled, original,
        "every blob came back under its own digest"
    );
    for name in &pulled {
        let bytes = std::fs::read(out.join("blobs/sha256").join(name)).unwrap();
        assert_eq!(
            Digest::sha256(&bytes).hex(),
            name,
            "blob content matches its digest"
        );
    }
    let catalog: serde_json::Value = serde_json::from_str(&run(
        Command::new("curl").args(["-sf", &node.url("/v2/_catalog")])
    ))
    .unwrap();
    assert_eq!(
        catalog["repositories"].as_array().unwrap().len(),
        corpus_tags().len()
    );
}

fn wait_for_socket(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "containerd socket {} never appeared",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn containerd_pulls_from_the_node() {
    let test = "containerd_pulls_from_the_node";
    if missing_tool(test, "skopeo")
        || missing_tool(test, "containerd")
        || missing_tool(test, "ctr")
        || missing_root(test)
    {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("ctrd")
        .tempdir_in("/tmp")
        .unwrap();
    let node = StrataNode::start(&tmp.path().join("data"));
    push_corpus(&node);
    let sock = tmp.path().join("c.sock");
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
            tmp.path().join("root").display(),
            tmp.path().join("state").display(),
            sock.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("containerd.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for_socket(&sock);
    let sock_s = sock.to_string_lossy().into_owned();
    let result = std::panic::catch_unwind(|| {
        for tag in ["base", "flask"] {
            let image = format!("{}/corpus/{tag}:v1", node.host());
            run(Command::new("ctr").args([
                "--address",
                &sock_s,
                "images",
                "pull",
                "--plain-http",
                "--snapshotter",
                "native",
                &image,
            ]));
            let list = run(Command::new("ctr").args(["--address", &sock_s, "images", "ls", "-q"]));
            assert!(
                list.lines().any(|l| l == image),
                "{image} not listed: {list}"
            );
            let want = index_digest(&corpus_dir(), tag);
            let check = run(Command::new("ctr").args(["--address", &sock_s, "images", "ls"]));
            assert!(
                check.contains(&want),
                "{tag}: containerd stored another digest: {check}"
            );
        }
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
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
    let podman = |args: &[&str]| {
        run(Command::new("podman")
            .arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args))
    };
    let image = format!("{}/corpus/curl:v1", node.host());
    podman(&["pull", "--tls-verify=false", &image]);
    let digest = podman(&["image", "inspect", "--format", "{{.Digest}}", &image]);
    assert_eq!(digest.trim(), index_digest(&corpus_dir(), "curl"));
}
