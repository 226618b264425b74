//! The deployment files in `deploy/` work with this binary: the node configuration starts
//! a node that joins a site, the systemd unit and the DaemonSet run it with that
//! configuration, and the DaemonSet's ConfigMap says what `deploy/strata.toml` says.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::StrataNode;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `key = value` lines of a TOML text, comments and blank lines dropped.
fn settings(toml: &str) -> Vec<String> {
    let mut v: Vec<String> = toml
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn the_shipped_configuration_starts_a_site_node() {
    let config = deploy("strata.toml");
    let tmp = tempfile::tempdir().unwrap();
    // mDNS would multicast on this machine's network: off here; the file must say on.
    assert!(config.contains("\nsite_mdns = true\n"));
    let file = tmp.path().join("strata.toml");
    std::fs::write(
        &file,
        config.replace("\nsite_mdns = true\n", "\nsite_mdns = false\n"),
    )
    .unwrap();
    let key = tmp.path().join("site.key");
    std::fs::write(
        &key,
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "3c".repeat(32)),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The file's listen address, data directory, site address and key are the host's;
    // flags put them in this test's reach (flags override the file).
    let node = StrataNode::start_with(
        &tmp.path().join("data"),
        0,
        &[
            "--config",
            file.to_str().unwrap(),
            "--site-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--site-key",
            key.to_str().unwrap(),
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let v2 = reqwest::get(node.url("/v2/")).await.unwrap();
        assert_eq!(v2.status(), 200);
        // The API's listener serves the admin routes to no anonymous caller; the admin
        // listener does.
        for path in ["/metrics", "/strata/v1/site/status"] {
            let r = reqwest::get(node.url(path)).await.unwrap();
            assert_eq!(r.status(), 403, "{path}");
            assert!(r.text().await.unwrap().contains("DENIED"), "{path}");
        }
        let gc = reqwest::Client::new()
            .post(node.url("/strata/v1/gc"))
            .send()
            .await
            .unwrap();
        assert_eq!(gc.status(), 403);
        let metrics = reqwest::get(node.admin_url("/metrics")).await.unwrap();
        assert_eq!(metrics.status(), 200);
        let body = reqwest::get(node.admin_url("/strata/v1/site/status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    });
    assert!(
        status["id"].as_str().is_some_and(|s| !s.is_empty()),
        "{status}"
    );
    let log = std::fs::read_to_string(tmp.path().join("data.log")).unwrap();
    assert!(!log.contains("no site key"), "{log}");
}

#[test]
fn the_unit_and_the_daemonset_run_that_configuration() {
    let unit = deploy("systemd/strata.service");
    assert!(
        unit.contains("\nExecStart=/usr/local/bin/strata serve --config /etc/strata/strata.toml\n"),
        "{unit}"
    );
    assert!(unit.contains("\nStateDirectory=strata\n"));
    let k8s = deploy("kubernetes/strata.yaml");
    assert!(k8s.contains(r#"args: ["serve", "--config", "/etc/strata/strata.toml"]"#));
    assert!(k8s.contains(r#""mirror-config", "containerd", "--node", "http://127.0.0.1:5000","#));
    // The ConfigMap's strata.toml: the block under `strata.toml: |`, four spaces in.
    let block: String = k8s
        .split("strata.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let shipped = settings(&deploy("strata.toml"));
    let in_cluster = settings(&block);
    // The same settings but the key's path (a Secret's mount there).
    let without_key = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|l| !l.starts_with("site_key"))
            .cloned()
            .collect()
    };
    assert_eq!(without_key(&shipped), without_key(&in_cluster));
    assert!(in_cluster.contains(&r#"site_key = "/etc/strata/key/site.key""#.to_string()));
}
