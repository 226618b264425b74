//! Pull-through mirroring against an in-memory upstream: coalescing, repositories sharing a
//! blob, wrong bytes, an upstream that fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use bytes::Bytes;
use common::Node;
use strata_oci::{Digest, Reference, RepoName};
use strata_registry::{Registry, Upstream, UpstreamError, UpstreamManifest};
use strata_store::{ByteStream, MemBlobStore, MemMetaStore};

/// An upstream in memory: blobs by (repository, digest), each answer held until released,
/// every fetch counted.
#[derive(Debug)]
struct MemUpstream {
    blobs: Mutex<HashMap<(String, Digest), Bytes>>,
    fetches: AtomicUsize,
    gate: tokio::sync::Semaphore,
    down: std::sync::atomic::AtomicBool,
}

impl Default for MemUpstream {
    fn default() -> Self {
        MemUpstream {
            blobs: Mutex::default(),
            fetches: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl MemUpstream {
    fn with_blob(self, repo: &str, data: &'static [u8], stored_as: &Digest) -> Self {
        self.blobs.lock().unwrap().insert(
            (repo.to_string(), stored_as.clone()),
            Bytes::from_static(data),
        );
        self
    }
}

#[async_trait]
impl Upstream for MemUpstream {
    fn serves(&self, _repo: &RepoName) -> bool {
        true
    }

    fn local_name(&self, ns: &str, repo: &RepoName) -> Option<RepoName> {
        format!("{ns}/{repo}").parse().ok()
    }

    async fn manifest(
        &self,
        _repo: &RepoName,
        _reference: &Reference,
    ) -> Result<Option<UpstreamManifest>, UpstreamError> {
        Ok(None)
    }

    async fn blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ByteStream>, UpstreamError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let _held = self.gate.acquire().await.unwrap();
        if self.down.load(Ordering::SeqCst) {
            return Err(UpstreamError("unreachable: test".into()));
        }
        let data = self
            .blobs
            .lock()
            .unwrap()
            .get(&(repo.as_str().to_string(), digest.clone()))
            .cloned();
        Ok(data.map(|d| {
            Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(d)])) as ByteStream
        }))
    }
}

fn mirroring(upstream: Arc<MemUpstream>) -> Node {
    let registry = Registry::new(Arc::new(MemBlobStore::new()), Arc::new(MemMetaStore::new()))
        .with_mirror(upstream, Duration::from_secs(60));
    Node {
        app: strata_registry::app(registry.clone()),
        registry,
    }
}

#[tokio::test]
async fn requests_from_two_repositories_for_one_missing_blob_make_one_fetch_and_both_succeed() {
    let data = b"a base layer both images share";
    let d = Digest::sha256(data);
    let upstream = Arc::new(
        MemUpstream::default()
            .with_blob("one/app", data, &d)
            .with_blob("two/app", data, &d),
    );
    let n = mirroring(upstream.clone());
    let (url_a, url_b) = (
        format!("/v2/one/app/blobs/{d}"),
        format!("/v2/two/app/blobs/{d}"),
    );
    let (a, b) = (n.get(&url_a), n.get(&url_b));
    let release = async {
        // Both requests are waiting on one held fetch before it answers.
        while upstream.fetches.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        upstream.gate.add_permits(10);
    };
    let (a, b, ()) = tokio::join!(a, b, release);
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(
        (a.body.as_slice(), b.body.as_slice()),
        (&data[..], &data[..])
    );
    assert_eq!(
        upstream.fetches.load(Ordering::SeqCst),
        1,
        "one fetch for both"
    );
    let metrics = String::from_utf8(n.get("/metrics").await.body).unwrap();
    for line in [
        "strata_mirror{what=\"fetches\"} 1".to_string(),
        "strata_mirror{what=\"coalesced\"} 1".to_string(),
        format!("strata_mirror{{what=\"upstream_bytes\"}} {}", data.len()),
        "strata_mirror{what=\"failures\"} 0".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[tokio::test]
async fn wrong_bytes_from_the_upstream_are_refused_and_not_kept() {
    let claimed = Digest::sha256(b"what the manifest promised");
    let upstream = Arc::new(MemUpstream::default().with_blob("r/app", b"something else", &claimed));
    upstream.gate.add_permits(10);
    let n = mirroring(upstream.clone());
    let r = n.get(&format!("/v2/r/app/blobs/{claimed}")).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // Asked again, it is fetched again (nothing was kept: a kept blob would be served
    // without a fetch), and refused again.
    let r = n.get(&format!("/v2/r/app/blobs/{claimed}")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(upstream.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_blob_the_upstream_lacks_is_404_and_an_unreachable_upstream_502() {
    let upstream = Arc::new(MemUpstream::default());
    upstream.gate.add_permits(10);
    let n = mirroring(upstream.clone());
    let d = Digest::sha256(b"nowhere");
    let r = n.get(&format!("/v2/r/app/blobs/{d}")).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
    upstream.down.store(true, Ordering::SeqCst);
    let r = n.get(&format!("/v2/r/app/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
}
