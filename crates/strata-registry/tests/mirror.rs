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
use futures_util::StreamExt;
use strata_oci::{Digest, Reference, RepoName};
use strata_registry::{Registry, Upstream, UpstreamBlob, UpstreamError, UpstreamManifest};
use strata_store::{ByteStream, MemBlobStore, MemMetaStore};

/// An upstream in memory: blobs by (repository, digest), each answer held until released,
/// every fetch counted.
#[derive(Debug)]
struct MemUpstream {
    blobs: Mutex<HashMap<(String, Digest), Bytes>>,
    fetches: AtomicUsize,
    gate: tokio::sync::Semaphore,
    down: std::sync::atomic::AtomicBool,
    /// When set, the next blob's second half waits for this.
    trickle: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Default for MemUpstream {
    fn default() -> Self {
        MemUpstream {
            blobs: Mutex::default(),
            fetches: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            down: std::sync::atomic::AtomicBool::new(false),
            trickle: Mutex::default(),
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
    ) -> Result<Option<UpstreamBlob>, UpstreamError> {
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
        let trickle = self.trickle.lock().unwrap().take();
        Ok(data.map(|d| {
            let size = Some(d.len() as u64);
            let body = match trickle {
                // The first half now, the rest when the test says.
                Some(rest) => {
                    let half = d.len() / 2;
                    let (a, b) = (d.slice(..half), d.slice(half..));
                    Box::pin(
                        futures_util::stream::iter([Ok::<_, std::io::Error>(a)]).chain(
                            futures_util::stream::once(async move {
                                let _ = rest.await;
                                Ok(b)
                            }),
                        ),
                    ) as ByteStream
                }
                None => {
                    Box::pin(futures_util::stream::iter([Ok::<_, std::io::Error>(d)])) as ByteStream
                }
            };
            UpstreamBlob::Stream { size, body }
        }))
    }
}

fn mirroring(upstream: Arc<MemUpstream>, spool: &std::path::Path) -> Node {
    let registry = Registry::new(Arc::new(MemBlobStore::new()), Arc::new(MemMetaStore::new()))
        .with_mirror(upstream, Duration::from_secs(60), spool.to_path_buf())
        .unwrap();
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
    let spool = tempfile::tempdir().unwrap();
    let n = mirroring(upstream.clone(), spool.path());
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
    let spool = tempfile::tempdir().unwrap();
    let n = mirroring(upstream.clone(), spool.path());
    // The response streams as the blob arrives: if its status went out before the digest
    // was checked, its body breaks off instead of completing with wrong bytes; if the check
    // came first, it is a 502. Never a complete response.
    for _ in 0..2 {
        let (status, body) = n.get_whole(&format!("/v2/r/app/blobs/{claimed}")).await;
        match status {
            StatusCode::OK => assert!(body.is_err(), "a wrong blob completed a response"),
            s => assert_eq!(s, StatusCode::BAD_GATEWAY),
        }
    }
    // Asked again, it was fetched again (nothing was kept: a kept blob would be served
    // without a fetch); nothing is left in the spool.
    assert_eq!(upstream.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_blob_the_upstream_lacks_is_404_and_an_unreachable_upstream_502() {
    let upstream = Arc::new(MemUpstream::default());
    upstream.gate.add_permits(10);
    let spool = tempfile::tempdir().unwrap();
    let n = mirroring(upstream.clone(), spool.path());
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

#[tokio::test]
async fn readers_stream_a_blob_while_it_arrives_and_it_is_stored_once_whole() {
    let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 253) as u8).collect();
    let data: &'static [u8] = Box::leak(data.into_boxed_slice());
    let d = Digest::sha256(data);
    let upstream = Arc::new(MemUpstream::default().with_blob("r/app", data, &d));
    upstream.gate.add_permits(10);
    let (release, held) = tokio::sync::oneshot::channel();
    *upstream.trickle.lock().unwrap() = Some(held);
    let spool = tempfile::tempdir().unwrap();
    let n = mirroring(upstream.clone(), spool.path());
    let uri = format!("/v2/r/app/blobs/{d}");
    // While only the first half has arrived: HEAD answers the size, and GET streams that
    // half (the rest, and so the end of the response, waits for the upstream).
    let head = n.send("HEAD", &uri, &[], axum::body::Body::empty()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.headers["content-length"].to_str().unwrap(),
        data.len().to_string()
    );
    let req = axum::http::Request::builder()
        .uri(&uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(n.app.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut got = Vec::new();
    while got.len() < data.len() / 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the first half streams before the rest exists")
            .unwrap()
            .unwrap();
        got.extend_from_slice(&chunk);
    }
    assert!(got[..] == data[..data.len() / 2]);
    release.send(()).unwrap();
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == data, "the whole blob, in order");
    // Stored once whole: served from the store, no second fetch, the spool empty.
    for _ in 0..100 {
        if n.registry.mirror_stats().unwrap().fetches == 1
            && std::fs::read_dir(spool.path()).unwrap().count() == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = n.get(&uri).await;
    assert!(again.body == data, "stored whole");
    assert_eq!(upstream.fetches.load(Ordering::SeqCst), 1);
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

fn bounded(upstream: Arc<MemUpstream>, spool: &std::path::Path, max: u64, policy: &str) -> Node {
    let registry = Registry::new(Arc::new(MemBlobStore::new()), Arc::new(MemMetaStore::new()))
        .with_mirror(upstream, Duration::from_secs(60), spool.to_path_buf())
        .unwrap()
        .with_cache_bound(max, strata_edge::cache::policy_named(policy).unwrap());
    Node {
        app: strata_registry::app(registry.clone()),
        registry,
    }
}

/// GETs a blob and waits until the mirror has stored it (and enforced its bound).
async fn pull_stored(n: &Node, repo: &str, d: &Digest) {
    let before = n.registry.cache_stats().unwrap();
    let r = n.get(&format!("/v2/{repo}/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    for _ in 0..200 {
        if n.registry
            .blob_stat_stored(&repo.parse().unwrap(), d)
            .await
            .is_ok()
            && n.registry.cache_stats().unwrap() != before
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn mirrored_blobs_beyond_the_cache_bound_go_least_recently_pulled_first_and_pushed_ones_stay()
{
    let blob = |c: u8| -> &'static [u8] { Box::leak(vec![c; 1000].into_boxed_slice()) };
    let (a, b, c, mine) = (blob(b'a'), blob(b'b'), blob(b'c'), blob(b'm'));
    let (da, db, dc, dm) = (
        Digest::sha256(a),
        Digest::sha256(b),
        Digest::sha256(c),
        Digest::sha256(mine),
    );
    for (policy, evicted, kept) in [("lru", &db, &da), ("fifo", &da, &db)] {
        let upstream = Arc::new(
            MemUpstream::default()
                .with_blob("r/app", a, &da)
                .with_blob("r/app", b, &db)
                .with_blob("r/app", c, &dc)
                .with_blob("r/app", mine, &dm),
        );
        upstream.gate.add_permits(100);
        let spool = tempfile::tempdir().unwrap();
        let n = bounded(upstream.clone(), spool.path(), 2500, policy);
        // A blob a client pushes is the node's own: never evicted, never counted.
        let pushed = n.push_blob("own/app", mine).await;
        assert_eq!(pushed, dm);
        pull_stored(&n, "r/app", &da).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        pull_stored(&n, "r/app", &db).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        // a is pulled again (from the store): the most recently pulled.
        assert_eq!(
            n.get(&format!("/v2/r/app/blobs/{da}")).await.status,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        pull_stored(&n, "r/app", &dc).await;
        let stats = n.registry.cache_stats().unwrap();
        assert_eq!(
            (stats.evictions, stats.evicted_bytes, stats.bytes),
            (1, 1000, 2000),
            "{policy}"
        );
        let held = |d: &Digest| {
            let r = n.registry.clone();
            let d = d.clone();
            async move { r.blob_stat(&"own/app".parse().unwrap(), &d).await.is_ok() }
        };
        assert!(held(&dm).await, "{policy}: the pushed blob stays");
        let fetches = upstream.fetches.load(Ordering::SeqCst);
        // The evicted blob comes from the upstream again; the kept one does not.
        pull_stored(&n, "r/app", kept).await;
        assert_eq!(upstream.fetches.load(Ordering::SeqCst), fetches, "{policy}");
        pull_stored(&n, "r/app", evicted).await;
        assert_eq!(
            upstream.fetches.load(Ordering::SeqCst),
            fetches + 1,
            "{policy}"
        );
        let metrics = String::from_utf8(n.get("/metrics").await.body).unwrap();
        for line in [
            "strata_mirror{what=\"cache_max_bytes\"} 2500",
            "strata_mirror{what=\"evictions\"} 2",
        ] {
            assert!(
                metrics.lines().any(|l| l == line),
                "{policy}: {line} in:\n{metrics}"
            );
        }
    }
}

/// An upstream of manifests by tag that can go down, and a site that answers for it then.
#[derive(Debug, Default)]
struct TagUpstream {
    tags: Mutex<HashMap<String, Bytes>>,
    down: std::sync::atomic::AtomicBool,
    elsewhere: Mutex<HashMap<String, Bytes>>,
    /// Manifest requests that reached it.
    asked: AtomicUsize,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn image_manifest(layer: &[u8]) -> Bytes {
    let config = b"{}";
    Bytes::from(
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::sha256(config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": Digest::sha256(layer).to_string(), "size": layer.len()}],
        })
        .to_string(),
    )
}

#[async_trait]
impl Upstream for TagUpstream {
    fn serves(&self, _repo: &RepoName) -> bool {
        true
    }

    fn local_name(&self, ns: &str, repo: &RepoName) -> Option<RepoName> {
        format!("{ns}/{repo}").parse().ok()
    }

    async fn manifest(
        &self,
        _repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<UpstreamManifest>, UpstreamError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(UpstreamError("unreachable: test".into()));
        }
        Ok(self
            .tags
            .lock()
            .unwrap()
            .get(&reference.to_string())
            .map(|b| UpstreamManifest {
                bytes: b.clone(),
                media_type: OCI_MANIFEST.into(),
            }))
    }

    async fn manifest_elsewhere(
        &self,
        _repo: &RepoName,
        reference: &Reference,
    ) -> Option<UpstreamManifest> {
        self.elsewhere
            .lock()
            .unwrap()
            .get(&reference.to_string())
            .map(|b| UpstreamManifest {
                bytes: b.clone(),
                media_type: OCI_MANIFEST.into(),
            })
    }

    async fn blob(
        &self,
        _repo: &RepoName,
        _digest: &Digest,
    ) -> Result<Option<UpstreamBlob>, UpstreamError> {
        Ok(None)
    }
}

#[tokio::test]
async fn with_the_upstream_down_a_known_tag_keeps_its_digest_and_an_unknown_one_comes_from_the_site(
) {
    let (old, moved, other) = (
        image_manifest(b"v1 layer"),
        image_manifest(b"what a peer says v1 is"),
        image_manifest(b"v2 layer"),
    );
    let upstream = Arc::new(TagUpstream::default());
    upstream
        .tags
        .lock()
        .unwrap()
        .insert("v1".into(), old.clone());
    // A TTL of zero: every request asks the upstream again.
    let spool = tempfile::tempdir().unwrap();
    let n = tag_mirror(upstream.clone(), Duration::ZERO, spool.path());
    let r = n.get("/v2/lib/app/manifests/v1").await;
    assert_eq!((r.status, r.body.as_slice()), (StatusCode::OK, &old[..]));

    upstream.down.store(true, Ordering::SeqCst);
    {
        let mut site = upstream.elsewhere.lock().unwrap();
        site.insert("v1".into(), moved.clone());
        site.insert("v2".into(), other.clone());
    }
    let r = n.get("/v2/lib/app/manifests/v1").await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, &old[..]),
        "a known tag keeps its last known digest"
    );
    let r = n.get("/v2/lib/app/manifests/v2").await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, &other[..]),
        "an unknown tag comes from the site"
    );
    let r = n.get("/v2/lib/app/manifests/v3").await;
    assert_eq!(
        r.status,
        StatusCode::BAD_GATEWAY,
        "nobody has it: the upstream's failure"
    );
}

fn tag_mirror(upstream: Arc<TagUpstream>, ttl: Duration, spool: &std::path::Path) -> Node {
    let registry = Registry::new(Arc::new(MemBlobStore::new()), Arc::new(MemMetaStore::new()))
        .with_mirror(upstream, ttl, spool.to_path_buf())
        .unwrap();
    Node {
        app: strata_registry::app(registry.clone()),
        registry,
    }
}

#[tokio::test]
async fn a_manifest_the_upstream_lacks_is_not_asked_for_again_within_the_ttl() {
    let upstream = Arc::new(TagUpstream::default());
    let spool = tempfile::tempdir().unwrap();
    let n = tag_mirror(upstream.clone(), Duration::from_secs(60), spool.path());
    let missing_digest = Digest::sha256(b"nothing");
    for _ in 0..3 {
        assert_eq!(
            n.get("/v2/lib/app/manifests/v9").await.status,
            StatusCode::NOT_FOUND
        );
        let by_digest = format!("/v2/lib/app/manifests/{missing_digest}");
        assert_eq!(n.get(&by_digest).await.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        upstream.asked.load(Ordering::SeqCst),
        2,
        "one question per missing manifest, not one per request"
    );
    // Another repository, or a tag that exists, is asked for as before.
    let v1 = image_manifest(b"v1 layer");
    upstream
        .tags
        .lock()
        .unwrap()
        .insert("v1".into(), v1.clone());
    let r = n.get("/v2/lib/app/manifests/v1").await;
    assert_eq!((r.status, r.body.as_slice()), (StatusCode::OK, &v1[..]));
    assert_eq!(
        n.get("/v2/lib/other/manifests/v9").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(upstream.asked.load(Ordering::SeqCst), 4);

    // Once the TTL is over (a TTL of zero: at once) the upstream is asked again, and a tag
    // pushed there meanwhile is found.
    let spool0 = tempfile::tempdir().unwrap();
    let n0 = tag_mirror(upstream.clone(), Duration::ZERO, spool0.path());
    assert_eq!(
        n0.get("/v2/lib/app/manifests/v9").await.status,
        StatusCode::NOT_FOUND
    );
    let asked = upstream.asked.load(Ordering::SeqCst);
    let v9 = image_manifest(b"v9 layer");
    upstream
        .tags
        .lock()
        .unwrap()
        .insert("v9".into(), v9.clone());
    let r = n0.get("/v2/lib/app/manifests/v9").await;
    assert_eq!((r.status, r.body.as_slice()), (StatusCode::OK, &v9[..]));
    assert_eq!(upstream.asked.load(Ordering::SeqCst), asked + 1);
}
