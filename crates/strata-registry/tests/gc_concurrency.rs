//! Garbage collection racing pushes: never a manifest whose blobs are gone.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{image_manifest, Node, OCI_MANIFEST};
use strata_oci::Digest;
use strata_registry::GcOptions;

/// Push `count` images concurrently while collecting garbage with `opts` in a loop; returns
/// the tags whose push succeeded.
async fn push_while_collecting(opts: GcOptions, count: usize) -> (Arc<Node>, Vec<String>) {
    let node = Arc::new(Node::in_memory());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (node, stop) = (node.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                node.registry.gc(opts).await.unwrap();
                runs += 1;
                tokio::task::yield_now().await;
            }
            runs
        })
    };
    let mut pushes = Vec::new();
    for i in 0..count {
        let node = node.clone();
        pushes.push(tokio::spawn(async move {
            let tag = format!("t{i}");
            let config = node
                .push_blob("race", format!("{{\"n\":{i}}}").as_bytes())
                .await;
            let layer_data = format!("layer {i}").into_bytes();
            let layer = node.push_blob("race", &layer_data).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            let m = image_manifest(
                &config,
                format!("{{\"n\":{i}}}").len(),
                &[(&layer, layer_data.len())],
                None,
                None,
            );
            let r = node.put_manifest("race", &tag, OCI_MANIFEST, &m).await;
            match r.status {
                StatusCode::CREATED => Some(tag),
                StatusCode::BAD_REQUEST => {
                    assert_eq!(
                        r.code(),
                        "MANIFEST_BLOB_UNKNOWN",
                        "only a clean refusal is allowed"
                    );
                    None
                }
                other => panic!("unexpected status {other}"),
            }
        }));
    }
    let mut ok = Vec::new();
    for p in pushes {
        ok.extend(p.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        collector.await.unwrap() > 0,
        "the collector ran during the pushes"
    );
    (node, ok)
}

/// Every blob of every tagged manifest is still served.
async fn assert_complete(node: &Node, tags: &[String]) {
    for tag in tags {
        let m = node.get(&format!("/v2/race/manifests/{tag}")).await;
        assert_eq!(m.status, StatusCode::OK);
        let doc = m.json();
        let mut digests = vec![doc["config"]["digest"].as_str().unwrap().to_string()];
        digests.extend(
            doc["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string()),
        );
        for d in digests {
            let d: Digest = d.parse().unwrap();
            assert_eq!(
                node.get(&format!("/v2/race/blobs/{d}")).await.status,
                StatusCode::OK,
                "{tag}: blob {d} lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_grace_refuses_cleanly_but_never_dangles() {
    let opts = GcOptions {
        grace: Duration::ZERO,
        upload_ttl: Duration::from_secs(3600),
    };
    let (node, ok) = push_while_collecting(opts, 40).await;
    eprintln!(
        "{} of 40 pushes accepted while collecting with no grace",
        ok.len()
    );
    assert_complete(&node, &ok).await;
    // A collection after the pushes keeps every accepted image whole.
    node.registry.gc(opts).await.unwrap();
    assert_complete(&node, &ok).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn default_grace_lets_every_concurrent_push_succeed() {
    let (node, ok) = push_while_collecting(GcOptions::default(), 40).await;
    assert_eq!(
        ok.len(),
        40,
        "the grace period protects blobs whose manifest has not arrived"
    );
    assert_complete(&node, &ok).await;
}
