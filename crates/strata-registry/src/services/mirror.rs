//! Pull-through mirroring: a manifest or blob the node does not hold is fetched from an
//! upstream registry, verified, stored as the node's own and served.
//!
//! - A tag is resolved upstream at most once per TTL; in between, and whenever the upstream
//!   cannot be reached, the last known digest is served (and the fallback logged).
//! - A manifest by digest, and every blob, is verified against its digest before it is
//!   stored (a blob through an ordinary upload session, so the free-space reserve, 507 and
//!   garbage collection of abandoned uploads apply as for a push).
//! - Concurrent requests for a missing blob make one fetch: the first starts it (in a task
//!   of its own, so a client that goes away does not cancel it) and every request waits
//!   for its verdict, then reads the stored blob.
//!
//! The upstream itself is a trait ([`Upstream`]); the HTTP client that implements it lives
//! outside this crate, as the site's peers will.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use strata_oci::{manifest, Digest, Reference, RepoName, Tag};
use strata_store::{ByteStream, ManifestRecord};
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
    /// What the upstream did since the node started, as named counters (for `/metrics`).
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The bytes of blob `digest`; `None` if the upstream does not have it.
    async fn blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ByteStream>, UpstreamError>;
}

/// How one fetch of a blob from the upstream ended.
#[derive(Debug, Clone)]
enum Fetched {
    Stored,
    NotFound,
    Full,
    Failed(String),
}

type Verdict = Option<Fetched>;

/// Ends a fetch: tells its waiters how it went and forgets it. Dropped without a verdict
/// (the fetching task panicked), it tells them the fetch failed, so no waiter hangs and the
/// next request starts over.
struct FetchGuard {
    mirror: Arc<Mirror>,
    digest: Digest,
    tx: watch::Sender<Verdict>,
}

impl FetchGuard {
    fn finish(self, outcome: Fetched) {
        // The verdict first: whoever joins until the entry is gone sees it.
        let _ = self.tx.send(Some(outcome));
    }
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        if self.tx.borrow().is_none() {
            let _ = self
                .tx
                .send(Some(Fetched::Failed("mirror fetch stopped".into())));
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
    /// Blob fetches in flight: the repository each is for, and its verdict to come.
    fetching: Mutex<HashMap<Digest, (RepoName, watch::Receiver<Verdict>)>>,
}

impl Mirror {
    pub fn new(upstream: Arc<dyn Upstream>, tag_ttl: Duration) -> Self {
        Mirror {
            upstream,
            tag_ttl,
            resolved: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
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
}

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
        match m.upstream.manifest(repo, reference).await {
            Ok(Some(found)) => {
                m.counters
                    .upstream_bytes
                    .fetch_add(found.bytes.len() as u64, Ordering::Relaxed);
                self.store_mirrored_manifest(repo, reference, found).await?;
                if let Reference::Tag(t) = reference {
                    m.mark_resolved(repo, t);
                }
                Ok(())
            }
            // Not upstream: what the node holds (if anything) answers.
            Ok(None) => Ok(()),
            Err(e) if known => {
                tracing::warn!(%repo, %reference, error = %e, "upstream unreachable; serving the last known digest");
                Ok(())
            }
            Err(e) => Err(ServiceError::Upstream(e.to_string())),
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
    pub(super) async fn mirror_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), ServiceError> {
        let Some(m) = self.mirror_for(repo) else {
            return Ok(());
        };
        let mut own_fetch = false;
        loop {
            if self.link_if_stored(repo, digest).await? {
                return Ok(());
            }
            let (leader, mut verdict) = self.join_or_start_fetch(m, repo, digest, own_fetch);
            let outcome = verdict
                .wait_for(Option::is_some)
                .await
                .map_err(|_| ServiceError::Internal("mirror fetch stopped".into()))?
                .clone()
                .unwrap_or(Fetched::Failed("mirror fetch stopped".into()));
            match outcome {
                // Stored, perhaps for another repository: link it here on the next round.
                Fetched::Stored => continue,
                // Fetched for another repository, whose upstream may not be this one's.
                _ if &leader != repo && !own_fetch => own_fetch = true,
                Fetched::NotFound => return Ok(()),
                Fetched::Full => return Err(ServiceError::StorageFull),
                Fetched::Failed(e) => return Err(ServiceError::Upstream(e)),
            }
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
    ) -> (RepoName, watch::Receiver<Verdict>) {
        let mut fetching = m.fetching.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some((leader, rx)), false) = (fetching.get(digest), alone) {
            m.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            return (leader.clone(), rx.clone());
        }
        m.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        fetching.insert(digest.clone(), (repo.clone(), rx.clone()));
        let guard = FetchGuard {
            mirror: m.clone(),
            digest: digest.clone(),
            tx,
        };
        let (registry, mirror) = (self.clone(), m.clone());
        let (repo_owned, digest) = (repo.clone(), digest.clone());
        tokio::spawn(async move {
            let outcome = match registry.fetch_blob(&mirror, &repo_owned, &digest).await {
                Ok(()) => Fetched::Stored,
                Err(ServiceError::BlobUnknown) => Fetched::NotFound,
                Err(ServiceError::StorageFull) => Fetched::Full,
                Err(e) => {
                    tracing::warn!(repo = %repo_owned, %digest, error = %e, "mirrored blob not fetched");
                    mirror.counters.failures.fetch_add(1, Ordering::Relaxed);
                    Fetched::Failed(e.to_string())
                }
            };
            guard.finish(outcome);
        });
        (repo.clone(), rx)
    }

    /// One fetch of a blob from the upstream into the store, through an upload session.
    async fn fetch_blob(
        &self,
        m: &Arc<Mirror>,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), ServiceError> {
        // Stored by a fetch that ended while this one was being set up?
        if self.link_if_stored(repo, digest).await? {
            return Ok(());
        }
        let Some(body) = m
            .upstream
            .blob(repo, digest)
            .await
            .map_err(|e| ServiceError::Upstream(e.to_string()))?
        else {
            return Err(ServiceError::BlobUnknown);
        };
        let counted = m.clone();
        let body: ByteStream = Box::pin(body.inspect_ok(move |chunk| {
            counted
                .counters
                .upstream_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }));
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
