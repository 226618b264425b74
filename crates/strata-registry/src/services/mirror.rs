//! Pull-through mirroring: a manifest or blob the node does not hold is fetched from an
//! upstream registry, verified, stored as the node's own and served.
//!
//! - A tag is resolved upstream at most once per TTL; in between, and whenever the upstream
//!   cannot be reached, the last known digest is served (and the fallback logged).
//! - A manifest by digest, and every blob, is verified against its digest before it is
//!   stored (a blob through an ordinary upload session, so the free-space reserve, 507 and
//!   garbage collection of abandoned uploads apply as for a push).
//! - Concurrent requests for a missing blob make one fetch: the first starts it (in a task
//!   of its own, so a client that goes away does not cancel it) and every request streams
//!   the blob as it arrives (`strata_store::fill`: into a spool file under the mirror's
//!   directory, or the upstream's own file, as a site assembles pieces), the last byte only
//!   once the whole blob matched its digest. Verified, it is stored through an upload
//!   session and the spool goes. An upstream that does not say a blob's size is stored
//!   first and read afterwards.
//!
//! The upstream itself is a trait ([`Upstream`]); the HTTP client that implements it lives
//! outside this crate, as the site's peers will.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use strata_oci::{manifest, Digest, Reference, RepoName, Tag};
use strata_store::fill::{Fill, Spool};
use strata_store::{BlobInfo, ByteStream, ManifestRecord};
use tokio::sync::watch;

use super::{Registry, ServiceError};

/// A manifest as an upstream serves it.
#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    pub bytes: Bytes,
    /// The `Content-Type` it was served with.
    pub media_type: String,
}

/// Why the upstream could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("upstream {0}")]
pub struct UpstreamError(pub String);

/// A blob as an upstream hands it over.
pub enum UpstreamBlob {
    /// Its bytes in order, and their number if the upstream said.
    Stream { size: Option<u64>, body: ByteStream },
    /// Arriving into a file that readers may tail; the fill's verdict says when it matched
    /// its digest.
    Filling(Fill),
}

impl Debug for UpstreamBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamBlob::Stream { size, .. } => {
                f.debug_struct("Stream").field("size", size).finish()
            }
            UpstreamBlob::Filling(fill) => f.debug_tuple("Filling").field(fill).finish(),
        }
    }
}

/// A registry content is mirrored from.
#[async_trait]
pub trait Upstream: Send + Sync + Debug {
    /// Whether `repo` (as this node names it) is mirrored from this upstream.
    fn serves(&self, repo: &RepoName) -> bool;
    /// Whether `repo` holds only what the upstream has (a namespace's repositories), so that
    /// clients may not push to it here.
    fn mirror_only(&self, _repo: &RepoName) -> bool {
        false
    }
    /// The name this node gives `repo` of namespace `ns` (containerd's `?ns=` parameter),
    /// whether or not an upstream serves that namespace; `None` if it makes no valid name.
    fn local_name(&self, ns: &str, repo: &RepoName) -> Option<RepoName>;
    /// The manifest `reference` points at upstream; `None` if the upstream does not have it.
    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<UpstreamManifest>, UpstreamError>;
    /// The manifest `reference` points at, from somewhere other than the upstream (the peers
    /// of a site). Asked only when the upstream failed and this node knows nothing of the
    /// reference: a tag this node knows keeps its last known digest. `None` by default.
    async fn manifest_elsewhere(
        &self,
        _repo: &RepoName,
        _reference: &Reference,
    ) -> Option<UpstreamManifest> {
        None
    }
    /// What the upstream did since the node started, as named counters (for `/metrics`).
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The bytes of blob `digest`; `None` if the upstream does not have it.
    async fn blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<UpstreamBlob>, UpstreamError>;
}

/// How one fetch of a blob from the upstream ended.
#[derive(Debug, Clone)]
enum Fetched {
    Stored,
    NotFound,
    Full,
    Failed(String),
}

/// Where a fetch is.
#[derive(Debug, Clone)]
enum Flight {
    Starting,
    /// The bytes are arriving: readers stream them.
    Arriving(Fill),
    Done(Fetched),
}

/// Ends a fetch: tells its waiters how it went and forgets it. Dropped without a verdict
/// (the fetching task panicked), it tells them the fetch failed, so no waiter hangs and the
/// next request starts over.
struct FetchGuard {
    mirror: Arc<Mirror>,
    digest: Digest,
    tx: watch::Sender<Flight>,
}

impl FetchGuard {
    fn arriving(&self, fill: Fill) {
        let _ = self.tx.send(Flight::Arriving(fill));
    }

    fn finish(self, outcome: Fetched) {
        // The verdict first: whoever joins until the entry is gone sees it.
        let _ = self.tx.send(Flight::Done(outcome));
    }
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        if !matches!(*self.tx.borrow(), Flight::Done(_)) {
            let _ = self
                .tx
                .send(Flight::Done(Fetched::Failed("mirror fetch stopped".into())));
        }
        let mut fetching = self
            .mirror
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        fetching.remove(&self.digest);
    }
}

/// What a mirror did since the node started (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Manifest and blob bytes received from the upstream.
    pub upstream_bytes: u64,
    /// Blob fetches started.
    pub fetches: u64,
    /// Requests that joined a fetch already in flight instead of starting one.
    pub coalesced: u64,
    /// Fetches that failed (upstream unreachable, wrong bytes, ...).
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    upstream_bytes: AtomicU64,
    fetches: AtomicU64,
    coalesced: AtomicU64,
    failures: AtomicU64,
}

/// The mirror state of a registry: its upstream, when each tag was last resolved there,
/// and the blob fetches in flight.
#[derive(Debug)]
pub struct Mirror {
    upstream: Arc<dyn Upstream>,
    counters: Counters,
    tag_ttl: Duration,
    resolved: Mutex<HashMap<(RepoName, Tag), Instant>>,
    /// Manifests the upstream said it does not have, and when: asked again only after the
    /// TTL, so a client retrying a missing tag does not cross the uplink every time.
    missing: Mutex<HashMap<(RepoName, Reference), Instant>>,
    /// Blob fetches in flight: the repository each is for, and where it is.
    fetching: Mutex<HashMap<Digest, (RepoName, watch::Receiver<Flight>)>>,
    /// Where blobs are spooled while they arrive.
    spool: PathBuf,
    /// The bound on mirrored content, if any.
    pub(super) cache: std::sync::OnceLock<super::cache::CacheBound>,
}

impl Mirror {
    /// A mirror of `upstream` spooling blobs under `spool` (emptied: what an earlier run
    /// left there was never stored).
    pub fn new(
        upstream: Arc<dyn Upstream>,
        tag_ttl: Duration,
        spool: PathBuf,
    ) -> std::io::Result<Self> {
        if spool.exists() {
            std::fs::remove_dir_all(&spool)?;
        }
        std::fs::create_dir_all(&spool)?;
        Ok(Mirror {
            upstream,
            tag_ttl,
            resolved: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            spool,
            cache: std::sync::OnceLock::new(),
        })
    }

    /// Whether a fetch of `digest` is in flight.
    pub(super) fn in_flight(&self, digest: &Digest) -> bool {
        let fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        fetching.contains_key(digest)
    }

    fn stats(&self) -> MirrorStats {
        let c = &self.counters;
        MirrorStats {
            upstream_bytes: c.upstream_bytes.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    fn fresh(&self, repo: &RepoName, tag: &Tag) -> bool {
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        resolved
            .get(&(repo.clone(), tag.clone()))
            .is_some_and(|t| t.elapsed() < self.tag_ttl)
    }

    fn mark_resolved(&self, repo: &RepoName, tag: &Tag) {
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        resolved.insert((repo.clone(), tag.clone()), Instant::now());
    }

    /// Whether the upstream said, less than a TTL ago, that it lacks this manifest.
    fn known_missing(&self, repo: &RepoName, reference: &Reference) -> bool {
        let missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        missing
            .get(&(repo.clone(), reference.clone()))
            .is_some_and(|t| t.elapsed() < self.tag_ttl)
    }

    /// Records (`true`) or clears an upstream's "not found" for a manifest.
    fn mark_missing(&self, repo: &RepoName, reference: &Reference, missing_now: bool) {
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        let key = (repo.clone(), reference.clone());
        if !missing_now {
            missing.remove(&key);
            return;
        }
        // Bounded: a client asking for endless made-up names must not grow it forever.
        if missing.len() >= MISSING_MAX {
            missing.retain(|_, t| t.elapsed() < self.tag_ttl);
            if missing.len() >= MISSING_MAX {
                missing.clear();
            }
        }
        missing.insert(key, Instant::now());
    }
}

/// At most this many "not found upstream" answers are remembered.
const MISSING_MAX: usize = 16_384;

impl Registry {
    /// What the mirror did since the node started; `None` without an upstream.
    pub fn mirror_stats(&self) -> Option<MirrorStats> {
        self.mirror.as_ref().map(|m| m.stats())
    }

    /// What the upstream (the site, for a node in one) did since the node started.
    pub fn upstream_stats(&self) -> Vec<(&'static str, u64)> {
        self.mirror
            .as_ref()
            .map(|m| m.upstream.stats())
            .unwrap_or_default()
    }

    /// The name of `repo` as requested with containerd's `?ns=` parameter on a mirroring
    /// node: the repository under the namespace (never the bare name, which is another
    /// registry's repository or the node's own). A node without upstreams ignores `ns`.
    pub fn name_in_namespace(&self, ns: Option<&str>, repo: RepoName) -> RepoName {
        match (&self.mirror, ns) {
            (Some(m), Some(ns)) => m.upstream.local_name(ns, &repo).unwrap_or(repo),
            _ => repo,
        }
    }

    /// Pushes, mounts and manifests from clients are refused in a repository that only
    /// mirrors its upstream (what a client pushed there would shadow the upstream's content).
    pub(super) fn check_writable(&self, repo: &RepoName) -> Result<(), ServiceError> {
        match &self.mirror {
            Some(m) if m.upstream.mirror_only(repo) => Err(ServiceError::Denied(format!(
                "{repo} mirrors an upstream registry: push to the registry itself"
            ))),
            _ => Ok(()),
        }
    }

    fn mirror_for(&self, repo: &RepoName) -> Option<&Arc<Mirror>> {
        self.mirror.as_ref().filter(|m| m.upstream.serves(repo))
    }

    /// Before a manifest is looked up: fetch it from the upstream if this node mirrors
    /// `repo` and does not hold it, or holds a tag resolved longer ago than the TTL.
    pub(super) async fn mirror_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), ServiceError> {
        let Some(m) = self.mirror_for(repo) else {
            return Ok(());
        };
        let known = match reference {
            Reference::Digest(d) => {
                if self.meta.get_manifest(repo, d)?.is_some() {
                    return Ok(());
                }
                false
            }
            Reference::Tag(t) => {
                let known = self.meta.resolve_tag(repo, t)?.is_some();
                if known && m.fresh(repo, t) {
                    return Ok(());
                }
                known
            }
        };
        if !known && m.known_missing(repo, reference) {
            return Ok(());
        }
        match m.upstream.manifest(repo, reference).await {
            Ok(Some(found)) => {
                m.mark_missing(repo, reference, false);
                m.counters
                    .upstream_bytes
                    .fetch_add(found.bytes.len() as u64, Ordering::Relaxed);
                self.store_mirrored_manifest(repo, reference, found).await?;
                if let Reference::Tag(t) = reference {
                    m.mark_resolved(repo, t);
                }
                Ok(())
            }
            // Not upstream: what the node holds (if anything) answers; until the TTL ends,
            // the upstream is not asked again.
            Ok(None) => {
                m.mark_missing(repo, reference, true);
                Ok(())
            }
            Err(e) if known => {
                tracing::warn!(%repo, %reference, error = %e, "upstream unreachable; serving the last known digest");
                Ok(())
            }
            Err(e) => match m.upstream.manifest_elsewhere(repo, reference).await {
                // Verified as any mirrored manifest (by digest when asked by digest). A tag
                // is not marked resolved: the upstream is asked again next time.
                Some(found) => {
                    tracing::warn!(%repo, %reference, error = %e, "upstream unreachable; manifest from the site");
                    self.store_mirrored_manifest(repo, reference, found).await
                }
                None => Err(ServiceError::Upstream(e.to_string())),
            },
        }
    }

    async fn store_mirrored_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        found: UpstreamManifest,
    ) -> Result<(), ServiceError> {
        let parsed = manifest::parse(&found.bytes, Some(&found.media_type))?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &found.bytes);
                if &actual != expected {
                    return Err(ServiceError::Upstream(format!(
                        "sent a manifest of digest {actual} for {expected}"
                    )));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256(&found.bytes),
        };
        let tags: Vec<Tag> = match reference {
            Reference::Tag(t) => vec![t.clone()],
            Reference::Digest(_) => Vec::new(),
        };
        let record = ManifestRecord::new(digest.clone(), found.bytes.len() as u64, parsed);
        let _live = self.reachability.read().await;
        self.blobs.put(&digest, found.bytes).await?;
        let r = repo.clone();
        self.meta_write(move |m| m.put_manifest(&r, &record, &tags))
            .await
    }

    /// Before a blob is looked up: if this node mirrors `repo` and the blob is not linked
    /// there, fetch it (once, however many ask at the same time), verify and store it.
    /// `Some` while it arrives (read it from the fill), `None` once the store has it (or the
    /// node does not mirror `repo`).
    pub(super) async fn mirror_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Fill>, ServiceError> {
        self.mirror_blob_until(repo, digest, false).await
    }

    /// Like [`Registry::blob_stat`], but a mirrored blob is waited for until it is stored
    /// (preheating: the node must hold it afterwards, not merely have it arriving).
    pub async fn blob_stat_stored(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<BlobInfo, ServiceError> {
        self.mirror_blob_until(repo, digest, true).await?;
        self.blob_stat(repo, digest).await
    }

    async fn mirror_blob_until(
        &self,
        repo: &RepoName,
        digest: &Digest,
        stored: bool,
    ) -> Result<Option<Fill>, ServiceError> {
        let Some(m) = self.mirror_for(repo) else {
            return Ok(None);
        };
        let mut own_fetch = false;
        loop {
            if self.link_if_stored(repo, digest).await? {
                return Ok(None);
            }
            let (leader, mut flight) = self.join_or_start_fetch(m, repo, digest, own_fetch);
            let state = flight
                .wait_for(|f| match f {
                    Flight::Starting => false,
                    Flight::Arriving(_) => !stored,
                    Flight::Done(_) => true,
                })
                .await
                .map_err(|_| ServiceError::Internal("mirror fetch stopped".into()))?
                .clone();
            let outcome = match state {
                // Checked against its digest as it ends, whichever repository it is for.
                Flight::Arriving(fill) => return Ok(Some(fill)),
                Flight::Done(outcome) => outcome,
                Flight::Starting => Fetched::Failed("mirror fetch stopped".into()),
            };
            match outcome {
                // Stored, perhaps for another repository: link it here on the next round.
                Fetched::Stored => continue,
                // Fetched for another repository, whose upstream may not be this one's.
                _ if &leader != repo && !own_fetch => own_fetch = true,
                Fetched::NotFound => return Ok(None),
                Fetched::Full => return Err(ServiceError::StorageFull),
                Fetched::Failed(e) => return Err(ServiceError::Upstream(e)),
            }
        }
    }

    /// What [`Registry::mirror_blob`] found, as a stat: the size of a blob still arriving.
    pub(super) fn arriving_info(digest: &Digest, fill: &Fill) -> BlobInfo {
        BlobInfo {
            digest: digest.clone(),
            size: fill.size(),
            modified: std::time::SystemTime::now(),
        }
    }

    /// Whether the store holds `digest`; if so it is linked to `repo` (it may have been
    /// stored for another repository).
    async fn link_if_stored(&self, repo: &RepoName, digest: &Digest) -> Result<bool, ServiceError> {
        if self.blobs.stat(digest).await?.is_none() {
            return Ok(false);
        }
        if !self.meta.blob_linked(repo, digest)? {
            let (r, d) = (repo.clone(), digest.clone());
            self.meta_write(move |meta| meta.link_blob(&r, &d)).await?;
        }
        Ok(true)
    }

    /// The fetch of `digest` in flight (and the repository it is for), or a new one for
    /// `repo`; `alone` starts a new one even if another is in flight.
    fn join_or_start_fetch(
        &self,
        m: &Arc<Mirror>,
        repo: &RepoName,
        digest: &Digest,
        alone: bool,
    ) -> (RepoName, watch::Receiver<Flight>) {
        let mut fetching = m.fetching.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some((leader, rx)), false) = (fetching.get(digest), alone) {
            m.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            return (leader.clone(), rx.clone());
        }
        m.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(Flight::Starting);
        fetching.insert(digest.clone(), (repo.clone(), rx.clone()));
        let guard = FetchGuard {
            mirror: m.clone(),
            digest: digest.clone(),
            tx,
        };
        let (registry, mirror) = (self.clone(), m.clone());
        let (repo_owned, digest) = (repo.clone(), digest.clone());
        tokio::spawn(async move {
            let mut stored_new = false;
            let outcome = match registry
                .fetch_blob(&mirror, &repo_owned, &digest, &guard)
                .await
            {
                Ok(new) => {
                    stored_new = new;
                    Fetched::Stored
                }
                Err(ServiceError::BlobUnknown) => Fetched::NotFound,
                Err(ServiceError::StorageFull) => Fetched::Full,
                Err(e) => {
                    tracing::warn!(repo = %repo_owned, %digest, error = %e, "mirrored blob not fetched");
                    mirror.counters.failures.fetch_add(1, Ordering::Relaxed);
                    Fetched::Failed(e.to_string())
                }
            };
            guard.finish(outcome);
            if stored_new {
                if let Err(e) = registry.cache_stored(&digest).await {
                    tracing::warn!(%digest, error = %e, "mirror cache bound not enforced");
                }
            }
        });
        (repo.clone(), rx)
    }

    /// One fetch of a blob from the upstream into the store, through an upload session;
    /// readers are told of the blob as soon as it arrives (`guard`). Whether it stored the
    /// blob (not found stored already).
    async fn fetch_blob(
        &self,
        m: &Arc<Mirror>,
        repo: &RepoName,
        digest: &Digest,
        guard: &FetchGuard,
    ) -> Result<bool, ServiceError> {
        // Stored by a fetch that ended while this one was being set up?
        if self.link_if_stored(repo, digest).await? {
            return Ok(false);
        }
        let Some(blob) = m
            .upstream
            .blob(repo, digest)
            .await
            .map_err(|e| ServiceError::Upstream(e.to_string()))?
        else {
            return Err(ServiceError::BlobUnknown);
        };
        let fill = match blob {
            UpstreamBlob::Filling(fill) => {
                guard.arriving(fill.clone());
                fill
            }
            UpstreamBlob::Stream {
                size: Some(size),
                body,
            } => {
                let path = m
                    .spool
                    .join(format!("{}-{}", digest.hex(), uuid::Uuid::new_v4()));
                let (spool, fill) = Spool::create(path, digest, size)
                    .map_err(|e| ServiceError::Internal(format!("spool: {e}")))?;
                guard.arriving(fill.clone());
                self.spool_blob(m, spool, body).await?;
                fill
            }
            UpstreamBlob::Stream { size: None, body } => {
                return self
                    .store_upstream_stream(m, repo, digest, body)
                    .await
                    .map(|()| true);
            }
        };
        fill.verdict().await.map_err(ServiceError::Upstream)?;
        self.store_stream(repo, digest, fill.stream(0, fill.size()))
            .await?;
        Ok(true)
    }

    /// Copies an upstream's response into `spool`, which checks its length and digest.
    async fn spool_blob(
        &self,
        m: &Arc<Mirror>,
        mut spool: Spool,
        mut body: ByteStream,
    ) -> Result<(), ServiceError> {
        loop {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    m.counters
                        .upstream_bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if let Err(e) = spool.write(&chunk).await {
                        let full = e.raw_os_error() == Some(28);
                        spool.fail(format!("upstream blob: {e}"));
                        return Err(if full {
                            ServiceError::StorageFull
                        } else {
                            ServiceError::Upstream(e.to_string())
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let why = format!("upstream blob broke off: {e}");
                    spool.fail(why.clone());
                    return Err(ServiceError::Upstream(why));
                }
            }
        }
        spool.finish().await.map_err(ServiceError::Upstream)
    }

    /// Stores an upstream's response before anyone reads it (its size is not known).
    async fn store_upstream_stream(
        &self,
        m: &Arc<Mirror>,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<(), ServiceError> {
        let counted = m.clone();
        let body: ByteStream = Box::pin(body.inspect_ok(move |chunk| {
            counted
                .counters
                .upstream_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }));
        self.store_stream(repo, digest, body).await
    }

    /// Stores `body` as blob `digest` of `repo` through an upload session (verified again).
    async fn store_stream(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<(), ServiceError> {
        let id = self.upload_open(repo).await?;
        let stored = async {
            self.upload_append(repo, &id, None, body).await?;
            self.upload_finish(repo, &id, digest, None).await
        }
        .await;
        if let Err(e) = stored {
            self.discard_upload(&id).await;
            return Err(match e {
                ServiceError::DigestMismatch { expected, actual } => ServiceError::Upstream(
                    format!("sent blob bytes of digest {actual} for {expected}"),
                ),
                other => other,
            });
        }
        Ok(())
    }
}
