//! Pull-through mirroring against a real upstream, the CNCF registry (issue 15, item 1).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use strata_oci::Digest;
use support::http::{client, pattern, OCI_MANIFEST};
use support::{
    blob_names, corpus_dir, corpus_tags, index_digest, layout_image, missing_tool, skopeo,
    CncfRegistry, StrataNode,
};

fn needs_tools(test: &str, tools: &[&str]) -> bool {
    tools.iter().any(|t| missing_tool(test, t))
}

/// Push a config and a 300 KiB layer (distinct for distinct even seeds) to `base`, then a
/// manifest tagged `tag`; returns (manifest bytes, layer bytes).
async fn push_image(base: &str, repo: &str, tag: &str, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let layer = pattern(300 * 1024, seed);
    let manifest = support::http::push_image(base, repo, tag, &config, &layer).await;
    (manifest, layer)
}

/// Copy the corpus's first image to `registry` as `corpus/<tag>:v1`; returns the tag.
fn copy_corpus_image(registry: &CncfRegistry) -> String {
    let tag = corpus_tags().into_iter().next().unwrap();
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:{tag}", corpus_dir().display()),
        &format!("docker://{}/corpus/{tag}:v1", registry.host()),
    ]);
    tag
}

async fn get(url: &str) -> (u16, Vec<u8>) {
    let (status, body) = get_whole(url).await;
    (status, body.unwrap())
}

/// A GET whose body may break off: the body read's error, if any, instead of a panic.
async fn get_whole(url: &str) -> (u16, Result<Vec<u8>, reqwest::Error>) {
    let r = client()
        .get(url)
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.map(|b| b.to_vec()))
}

/// The config and layer digests of the image manifest `tag` points at in an OCI layout.
fn image_blobs(layout: &std::path::Path, tag: &str) -> Vec<String> {
    let image = layout_image(layout, tag);
    let config = image.config.expect("a config");
    std::iter::once(config)
        .chain(image.layers.into_iter().map(|(d, _)| d))
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn concurrent_pulls_through_a_mirror_fetch_each_blob_from_the_upstream_once() {
    let test = "concurrent_pulls_through_a_mirror_fetch_each_blob_from_the_upstream_once";
    if needs_tools(test, &["docker-registry", "skopeo"]) {
        return;
    }
    let upstream = CncfRegistry::start();
    let corpus = corpus_dir();
    let tag = copy_corpus_image(&upstream);
    let tmp = tempfile::tempdir().unwrap();
    let node = StrataNode::start_with(
        &tmp.path().join("data"),
        0,
        &["--upstream", &upstream.url()],
    );
    let pulls: Vec<_> = (0..4)
        .map(|i| {
            let (src, out) = (
                format!("docker://{}/corpus/{tag}:v1", node.host()),
                tmp.path().join(format!("out{i}")),
            );
            let tag = tag.clone();
            std::thread::spawn(move || {
                skopeo(&[
                    "copy",
                    "--src-tls-verify=false",
                    &src,
                    &format!("oci:{}:{tag}", out.display()),
                ]);
                out
            })
        })
        .collect();
    let outs: Vec<_> = pulls.into_iter().map(|p| p.join().unwrap()).collect();
    for out in &outs {
        assert_eq!(
            index_digest(out, &tag),
            index_digest(&corpus, &tag),
            "same image"
        );
        for name in blob_names(out) {
            let bytes = std::fs::read(out.join("blobs/sha256").join(&name)).unwrap();
            assert_eq!(Digest::sha256(&bytes).hex(), name, "verified content");
        }
    }
    for digest in image_blobs(&outs[0], &tag) {
        assert_eq!(
            upstream.blob_gets(&digest),
            1,
            "{digest}: four concurrent pulls, one fetch from the upstream"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_tag_follows_the_upstream_after_its_ttl_and_survives_the_upstream_going_away() {
    let test =
        "a_mirrored_tag_follows_the_upstream_after_its_ttl_and_survives_the_upstream_going_away";
    if needs_tools(test, &["docker-registry"]) {
        return;
    }
    let mut upstream = CncfRegistry::start();
    let up = upstream.url();
    let (first, _) = push_image(&up, "team/app", "v1", 10).await;
    let tmp = tempfile::tempdir().unwrap();
    let node = StrataNode::start_with(
        &tmp.path().join("data"),
        0,
        &["--upstream", &up, "--upstream-tag-ttl", "2s"],
    );
    let tag_url = node.url("/v2/team/app/manifests/v1");
    assert_eq!(get(&tag_url).await, (200, first.clone()));

    // The tag moves upstream: the node follows once its TTL has passed.
    let (second, second_layer) = push_image(&up, "team/app", "v1", 20).await;
    assert_eq!(get(&tag_url).await, (200, first), "within the TTL");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(get(&tag_url).await, (200, second.clone()), "after the TTL");
    let layer_url = node.url(&format!(
        "/v2/team/app/blobs/{}",
        Digest::sha256(&second_layer)
    ));
    assert_eq!(get(&layer_url).await, (200, second_layer.clone()));

    // An upstream that sends wrong bytes: refused, nothing stored, never a wrong 200.
    let (_, lying_layer) = push_image(&up, "team/lie", "v1", 30).await;
    let hex = Digest::sha256(&lying_layer).hex().to_string();
    let stored = upstream_blob_path(&upstream, &hex);
    let mut bad = lying_layer.clone();
    bad[1000] ^= 0xff;
    std::fs::write(&stored, &bad).unwrap();
    let lie_url = node.url(&format!("/v2/team/lie/blobs/sha256:{hex}"));
    // The blob streams as it arrives: if the status went out before the digest was
    // checked, the body breaks off before its last byte; if the check came first, 502;
    // if it failed as the response began, the connection ends before any status.
    match client().get(&lie_url).send().await {
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
        Ok(r) => match r.status().as_u16() {
            200 => assert!(
                r.bytes().await.is_err(),
                "a wrong blob completed a response"
            ),
            s => assert_eq!(s, 502, "the upstream's wrong bytes are refused"),
        },
    }
    assert!(
        !tmp.path()
            .join("data/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .exists(),
        "nothing stored"
    );

    // The uplink goes down: what the node holds is still served, by tag and digest.
    upstream.stop();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(get(&tag_url).await, (200, second), "last known digest");
    assert_eq!(get(&layer_url).await, (200, second_layer));
    let (status, _) = get(&node.url("/v2/team/app/manifests/never-mirrored")).await;
    assert_eq!(status, 502, "unknown and the upstream unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_asks_for_a_login_gets_it_from_a_private_file_and_never_shows_it() {
    let test = "an_upstream_that_asks_for_a_login_gets_it_from_a_private_file_and_never_shows_it";
    if needs_tools(test, &["docker-registry", "htpasswd", "timeout"]) {
        return;
    }
    const PASSWORD: &str = "correct-horse-9f3e";
    let mut upstream = CncfRegistry::start();
    let up = upstream.url();
    let (manifest, layer) = push_image(&up, "team/private", "v1", 50).await;
    upstream.restart_with_login("alice", PASSWORD);
    let tmp = tempfile::tempdir().unwrap();
    let manifest_path = "/v2/team/private/manifests/v1";
    let layer_path = format!("/v2/team/private/blobs/{}", Digest::sha256(&layer));

    // Without a login the upstream refuses the node, and the node does not pretend.
    let anonymous = StrataNode::start_with(&tmp.path().join("anon"), 0, &["--upstream", &up]);
    let (status, _) = get_whole(&anonymous.url(manifest_path)).await;
    assert_ne!(status, 200, "anonymous pull of a private image");

    // A credentials file that others can read is refused at start, the password unsaid.
    let creds = tmp.path().join("config.json");
    let json = format!(
        r#"{{"auths": {{"{}": {{"username": "alice", "password": "{PASSWORD}"}}}}}}"#,
        upstream.host()
    );
    std::fs::write(&creds, &json).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = std::process::Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream", &up])
        .arg("--data-dir")
        .arg(tmp.path().join("refused"))
        .arg("--upstream-credentials")
        .arg(&creds)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "started with a readable file");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains(PASSWORD));

    // From a 0600 file, and from the environment: the private image is mirrored.
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let creds_flag = creds.to_str().unwrap();
    let from_env = format!("STRATA_UPSTREAM_AUTH={json}");
    let nodes = [
        (
            "file",
            StrataNode::start_under(
                &["env", "STRATA_LOG=debug"],
                &tmp.path().join("file"),
                0,
                &["--upstream", &up, "--upstream-credentials", creds_flag],
            ),
        ),
        (
            "env",
            StrataNode::start_under(
                &["env", "STRATA_LOG=debug", &from_env],
                &tmp.path().join("env"),
                0,
                &["--upstream", &up],
            ),
        ),
    ];
    for (name, node) in &nodes {
        assert_eq!(
            get(&node.url(manifest_path)).await,
            (200, manifest.clone()),
            "{name}"
        );
        assert_eq!(
            get(&node.url(&layer_path)).await,
            (200, layer.clone()),
            "{name}"
        );
        // What a node says (an error, its metrics, its log) never holds the password.
        let (status, missing) = get(&node.url("/v2/team/private/manifests/nope")).await;
        assert_eq!(status, 404, "{name}");
        let (code, metrics) = get(&node.admin_url("/metrics")).await;
        assert_eq!(code, 200, "{name}");
        let log = std::fs::read(node.data_dir.with_extension("log")).unwrap();
        assert!(log.len() > 100, "{name}: the debug log is written");
        // Nor the password as a Basic header carries it.
        let encoded = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"))
        };
        for said in [missing, metrics, log] {
            let said = String::from_utf8_lossy(&said);
            assert!(!said.contains(PASSWORD), "{name}: the password shows");
            assert!(!said.contains(&encoded), "{name}: the encoded login shows");
        }
    }
}

/// Where docker-registry keeps a blob's bytes.
fn upstream_blob_path(upstream: &CncfRegistry, hex: &str) -> std::path::PathBuf {
    upstream
        .data_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerds_namespace_parameter_routes_to_that_namespaces_upstream() {
    if needs_tools(
        "containerds_namespace_parameter_routes_to_that_namespaces_upstream",
        &["docker-registry"],
    ) {
        return;
    }
    let upstream = CncfRegistry::start();
    let (manifest, layer) = push_image(&upstream.url(), "library/app", "v1", 40).await;
    let manifest_bytes = manifest.clone();
    let tmp = tempfile::tempdir().unwrap();
    let node = StrataNode::start_with(
        &tmp.path().join("data"),
        0,
        &["--upstream", &format!("docker.io={}", upstream.url())],
    );
    let (status, body) = get(&node.url("/v2/library/app/manifests/v1?ns=docker.io")).await;
    assert_eq!((status, body), (200, manifest));
    let layer_url = format!(
        "/v2/library/app/blobs/{}?ns=docker.io",
        Digest::sha256(&layer)
    );
    assert_eq!(get(&node.url(&layer_url)).await, (200, layer));
    let (status, _) = get(&node.url("/v2/library/app/manifests/v1")).await;
    assert_eq!(
        status, 404,
        "without the namespace the name is the node's own"
    );
    let (status, _) = get(&node.url("/v2/library/app/manifests/v1?ns=quay.io")).await;
    assert_eq!(status, 404, "another namespace is not this one's upstream");
    // A namespace's repositories only mirror it: no pushes, no manifests, no mounts.
    let r = client()
        .post(node.url("/v2/docker.io/library/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("DENIED"));
    let r = client()
        .put(node.url("/v2/docker.io/library/app/manifests/v2"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest_bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Other repositories are the node's own, as ever.
    assert_eq!(
        support::http::push_blob_in_session(&node.url(""), "team/own", b"mine").await,
        201
    );
    let (status, body) = get(&node.url("/v2/_catalog")).await;
    assert_eq!(status, 200);
    let catalog: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["docker.io/library/app", "team/own"])
    );
}

#[test]
fn containerd_configured_only_by_mirror_config_pulls_an_upstream_image_through_the_node() {
    let test =
        "containerd_configured_only_by_mirror_config_pulls_an_upstream_image_through_the_node";
    if support::missing_containerd_setup(test) || needs_tools(test, &["docker-registry"]) {
        return;
    }
    let upstream = CncfRegistry::start();
    let corpus = corpus_dir();
    let tag = copy_corpus_image(&upstream);
    let tmp = tempfile::tempdir().unwrap();
    let hosts = tmp.path().join("certs.d");
    // The node's port must be known before containerd is configured: pick a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = support::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["mirror-config", "containerd", "--node"])
            .arg(format!("http://127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(format!("{}={}", upstream.host(), upstream.url()))
            .arg("--dir")
            .arg(&hosts),
    );
    let flags: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(
        flags,
        [
            "--upstream",
            &format!("{}={}", upstream.host(), upstream.url())
        ]
    );
    let node = StrataNode::start_with(&tmp.path().join("data"), port, &flags);
    let image = format!("{}/corpus/{tag}:v1", upstream.host());
    let want = index_digest(&corpus, &tag);
    let hosts_dir = hosts.to_string_lossy().into_owned();
    let containerd_dir = tmp.path().join("containerd");
    std::fs::create_dir_all(&containerd_dir).unwrap();
    support::with_containerd(&containerd_dir, |sock| {
        support::run(std::process::Command::new("ctr").args([
            "--address",
            sock,
            "images",
            "pull",
            "--hosts-dir",
            &hosts_dir,
            "--snapshotter",
            "native",
            &image,
        ]));
        let list = support::run(std::process::Command::new("ctr").args([
            "--address",
            sock,
            "images",
            "ls",
        ]));
        assert!(
            list.contains(&want),
            "containerd stored another digest: {list}"
        );
    });
    // It came through the node: the node holds the image under the namespace's name.
    let catalog =
        support::run(std::process::Command::new("curl").args(["-s", &node.url("/v2/_catalog")]));
    let prefix = upstream.host().replace(':', "-");
    assert!(
        catalog.contains(&format!("{prefix}/corpus/{tag}")),
        "{catalog}"
    );
    for digest in image_blobs(&corpus, &tag) {
        assert_eq!(
            upstream.blob_gets(&digest),
            1,
            "{digest} fetched once, by the node"
        );
    }
}
