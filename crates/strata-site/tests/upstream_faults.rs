//! A node mirroring an upstream that misbehaves: it answers 429 or 5xx, breaks a body off,
//! hangs, or names in a manifest a blob it then refuses. Each gives the client a clear error
//! (never a complete wrong response), stores nothing, and leaves nothing behind that stops
//! the pull from succeeding once the upstream behaves again.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use strata_oci::Digest;
use strata_registry::Registry;
use strata_site::{HttpUpstream, UpstreamRoute};
use strata_store::{MemBlobStore, MemMetaStore};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Fine,
    TooMany,
    Unavailable,
    /// The declared length, half the bytes, then the connection ends.
    Truncated,
    /// Nothing at all for longer than the node waits.
    Hangs,
    /// 404: the manifest names it, the upstream does not have it.
    Refused,
}

#[derive(Clone)]
struct Flaky {
    blobs: Arc<HashMap<String, Vec<u8>>>,
    manifest: Arc<Vec<u8>>,
    faults: Arc<Mutex<HashMap<String, Fault>>>,
}

async fn upstream(State(u): State<Flaky>, Path(rest): Path<String>) -> Response {
    if rest.contains("/manifests/") {
        return (
            [(
                header::CONTENT_TYPE,
                "application/vnd.oci.image.manifest.v1+json",
            )],
            u.manifest.as_ref().clone(),
        )
            .into_response();
    }
    let digest = rest.rsplit('/').next().unwrap().to_string();
    let fault = u
        .faults
        .lock()
        .unwrap()
        .get(&digest)
        .copied()
        .unwrap_or(Fault::Fine);
    let Some(bytes) = u.blobs.get(&digest).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match fault {
        Fault::Fine => bytes.into_response(),
        Fault::TooMany => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "30")],
            "slow down",
        )
            .into_response(),
        Fault::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        Fault::Truncated => {
            let half = bytes[..bytes.len() / 2].to_vec();
            let body = futures_util::stream::iter([
                Ok::<_, std::io::Error>(half),
                Err(std::io::Error::other("cut")),
            ]);
            (
                [(header::CONTENT_LENGTH, bytes.len().to_string())],
                Body::from_stream(body),
            )
                .into_response()
        }
        Fault::Hangs => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            bytes.into_response()
        }
        Fault::Refused => StatusCode::NOT_FOUND.into_response(),
    }
}

fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed as u32) as u8
                ^ seed
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_upstream_gives_clear_errors_stores_nothing_and_the_pull_succeeds_later() {
    let config = b"{}".to_vec();
    let layers: Vec<Vec<u8>> = (1..=6).map(|i| blob(i, 300_000 + usize::from(i))).collect();
    let mut blobs = HashMap::new();
    blobs.insert(Digest::sha256(&config).to_string(), config.clone());
    for l in &layers[..5] {
        blobs.insert(Digest::sha256(l).to_string(), l.clone());
    }
    // The sixth layer is named by the manifest but never served.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(&config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": Digest::sha256(l).to_string(), "size": l.len()})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let faults: HashMap<String, Fault> = [
        Fault::TooMany,
        Fault::Unavailable,
        Fault::Truncated,
        Fault::Hangs,
        Fault::Fine,
        Fault::Refused,
    ]
    .into_iter()
    .zip(&layers)
    .map(|(f, l)| (Digest::sha256(l).to_string(), f))
    .collect();
    let flaky = Flaky {
        blobs: Arc::new(blobs),
        manifest: Arc::new(manifest.clone()),
        faults: Arc::new(Mutex::new(faults)),
    };
    let app = axum::Router::new()
        .route("/v2/{*rest}", axum::routing::get(upstream))
        .with_state(flaky.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The node: a registry mirroring it, on loopback.
    let tmp = tempfile::tempdir().unwrap();
    let blobs = Arc::new(MemBlobStore::new());
    let http = HttpUpstream::new(vec![UpstreamRoute {
        namespace: None,
        url: up_url,
    }])
    .with_read_timeout(Duration::from_secs(1));
    let registry = Registry::new(blobs.clone(), Arc::new(MemMetaStore::new()))
        .with_mirror(
            Arc::new(http),
            Duration::from_secs(60),
            tmp.path().join("spool"),
        )
        .unwrap();
    let node = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_url = format!("http://{}", node.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(node, strata_registry::app(registry)).await });
    let client = reqwest::Client::new();

    let m = client
        .get(format!("{node_url}/v2/team/app/manifests/v1"))
        .header(header::ACCEPT, "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    assert_eq!(m.bytes().await.unwrap(), manifest);

    let get = |layer: &Vec<u8>| {
        let url = format!("{node_url}/v2/team/app/blobs/{}", Digest::sha256(layer));
        let client = client.clone();
        async move {
            let started = Instant::now();
            let r = client.get(url).send().await;
            let outcome = match r {
                Err(e) => (0, Err(e.to_string())),
                Ok(r) => {
                    let status = r.status().as_u16();
                    (
                        status,
                        r.bytes()
                            .await
                            .map(|b| b.to_vec())
                            .map_err(|e| e.to_string()),
                    )
                }
            };
            (outcome, started.elapsed())
        }
    };
    let stored = |layer: &Vec<u8>| {
        let d = Digest::sha256(layer);
        let blobs = blobs.clone();
        async move {
            strata_store::BlobStore::stat(blobs.as_ref(), &d)
                .await
                .unwrap()
                .is_some()
        }
    };

    // 429 and 503: a 502 whose message names what the upstream said.
    for (layer, said) in [(&layers[0], "429"), (&layers[1], "503")] {
        let ((status, body), _) = get(layer).await;
        assert_eq!(status, 502, "upstream {said}");
        let body = String::from_utf8_lossy(body.as_ref().unwrap()).into_owned();
        assert!(body.contains(said), "{body}");
        assert!(!stored(layer).await);
    }
    // A body broken off: the client never gets a complete response.
    let ((status, body), _) = get(&layers[2]).await;
    assert!(
        status != 200 || body.as_ref().is_err() || body.as_ref().unwrap() != &layers[2],
        "a truncated upstream body completed a response"
    );
    assert!(
        status != 200 || body.is_err(),
        "status {status} with a whole body"
    );
    assert!(!stored(&layers[2]).await);
    // A hang: an error within a few seconds (the read timeout), not a wait for ever.
    let ((status, _), took) = get(&layers[3]).await;
    assert_eq!(status, 502, "a hung upstream");
    assert!(took < Duration::from_secs(20), "waited {took:?}");
    assert!(!stored(&layers[3]).await);
    // A blob the manifest names and the upstream refuses: unknown, clearly.
    let ((status, body), _) = get(&layers[5]).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body.unwrap()).contains("BLOB_UNKNOWN"));
    // The blob nobody broke comes through.
    let ((status, body), _) = get(&layers[4]).await;
    assert_eq!((status, body.unwrap() == layers[4]), (200, true));

    // The upstream recovers: every blob it has now comes through, verified and stored.
    flaky.faults.lock().unwrap().clear();
    for layer in &layers[..5] {
        let ((status, body), _) = get(layer).await;
        assert_eq!(status, 200);
        assert!(body.unwrap() == *layer, "the right bytes");
        // The store commits the verified blob as the response ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !stored(layer).await {
            assert!(std::time::Instant::now() < deadline, "never stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
