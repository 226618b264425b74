//! The bound on mirrored content (`--cache-max-gb`): blobs the node mirrored are recorded as
//! cached (`MetaStore::put_cached`); once they take more than the bound, the policy
//! (`strata_edge::cache`: least recently pulled, or first in first out) picks which go. A
//! blob a client pushed, mounted or referenced from a pushed manifest is pinned: never
//! evicted. An evicted blob keeps its links and the manifests that reference it, so the next
//! pull fetches it again. Evictions hold the reachability lock exclusively, as garbage
//! collection does, so a push cannot reference a blob while it goes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use strata_edge::{victims, CacheEntry, EvictionPolicy};
use strata_oci::Digest;
use strata_store::CachedBlob;

use super::{Registry, ServiceError};

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A cache bound and what it did.
#[derive(Debug)]
pub struct CacheBound {
    max_bytes: u64,
    policy: Box<dyn EvictionPolicy>,
    /// When each cached blob was last pulled since the node started (before that, when it
    /// was stored stands in).
    pulled: Mutex<HashMap<Digest, u64>>,
    /// One eviction pass at a time.
    pass: tokio::sync::Mutex<()>,
    bytes: AtomicU64,
    evictions: AtomicU64,
    evicted_bytes: AtomicU64,
}

/// What the cache bound did since the node started (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub max_bytes: u64,
    /// Bytes of mirrored blobs held at the last pass.
    pub bytes: u64,
    pub evictions: u64,
    pub evicted_bytes: u64,
}

impl CacheBound {
    pub fn new(max_bytes: u64, policy: Box<dyn EvictionPolicy>) -> Self {
        CacheBound {
            max_bytes,
            policy,
            pulled: Mutex::new(HashMap::new()),
            pass: tokio::sync::Mutex::new(()),
            bytes: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
        }
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            max_bytes: self.max_bytes,
            bytes: self.bytes.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            evicted_bytes: self.evicted_bytes.load(Ordering::Relaxed),
        }
    }
}

impl Registry {
    /// Bounds mirrored content to `max_bytes`, evicting by `policy` (a node without an
    /// upstream holds no mirrored content: nothing changes).
    pub fn with_cache_bound(self, max_bytes: u64, policy: Box<dyn EvictionPolicy>) -> Self {
        if let Some(m) = &self.mirror {
            let _ = m.cache.set(CacheBound::new(max_bytes, policy));
        }
        self
    }

    /// What the cache bound did; `None` without one.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.mirror
            .as_ref()
            .and_then(|m| m.cache.get())
            .map(CacheBound::stats)
    }

    /// A client pulled `digest`: the least recently pulled blobs are evicted first.
    pub(super) fn note_pulled(&self, digest: &Digest) {
        if let Some(bound) = self.mirror.as_ref().and_then(|m| m.cache.get()) {
            let mut pulled = bound.pulled.lock().unwrap_or_else(|p| p.into_inner());
            pulled.insert(digest.clone(), now_ms());
        }
    }

    /// `digests` are the node's own now (pushed, mounted, referenced by a pushed manifest):
    /// never evicted. Callers hold the reachability lock (shared).
    pub(super) async fn pin(&self, digests: Vec<Digest>) -> Result<(), ServiceError> {
        if self.mirror.is_none() || digests.is_empty() {
            return Ok(());
        }
        self.meta_write(move |m| {
            for d in &digests {
                m.remove_cached(d)?;
            }
            Ok(())
        })
        .await
    }

    /// Records a blob the mirror stored, then evicts what the bound no longer holds.
    pub(super) async fn cache_stored(&self, digest: &Digest) -> Result<(), ServiceError> {
        let Some(size) = self.blobs.stat(digest).await?.map(|i| i.size) else {
            return Ok(());
        };
        let blob = CachedBlob {
            digest: digest.clone(),
            size,
            stored_ms: now_ms(),
        };
        self.meta_write(move |m| m.put_cached(&blob)).await?;
        self.note_pulled(digest);
        self.enforce_cache_bound().await
    }

    /// Evicts mirrored blobs until they fit the bound (blobs being fetched stay).
    pub async fn enforce_cache_bound(&self) -> Result<(), ServiceError> {
        let Some(m) = self.mirror.as_ref() else {
            return Ok(());
        };
        let Some(bound) = m.cache.get() else {
            return Ok(());
        };
        let _pass = bound.pass.lock().await;
        let cached = self.meta.list_cached()?;
        let entries: Vec<CacheEntry<Digest>> = {
            let pulled = bound.pulled.lock().unwrap_or_else(|p| p.into_inner());
            cached
                .iter()
                .map(|c| CacheEntry {
                    key: c.digest.clone(),
                    size: c.size,
                    stored: c.stored_ms,
                    last_pulled: pulled.get(&c.digest).copied().unwrap_or(c.stored_ms),
                })
                .collect()
        };
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let chosen = victims(bound.policy.as_ref(), &entries, bound.max_bytes, |d| {
            m.in_flight(d)
        });
        if !chosen.is_empty() {
            let _live = self.reachability.write().await;
            for v in chosen {
                let d = v.key.clone();
                // Pinned since the list was read: the node's own now.
                if !self.meta_write(move |m| m.remove_cached(&d)).await? {
                    continue;
                }
                total = total.saturating_sub(v.size);
                // Gone already (collected as garbage): nothing to count.
                if !self.blobs.delete(&v.key).await? {
                    continue;
                }
                bound.evictions.fetch_add(1, Ordering::Relaxed);
                bound.evicted_bytes.fetch_add(v.size, Ordering::Relaxed);
                bound
                    .pulled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&v.key);
                tracing::info!(digest = %v.key, size = v.size, policy = bound.policy.name(), "evicted from the mirror cache");
            }
        }
        bound.bytes.store(total, Ordering::Relaxed);
        if total > bound.max_bytes {
            tracing::warn!(
                bytes = total,
                max = bound.max_bytes,
                "mirrored blobs over the cache bound: the rest are in use"
            );
        }
        Ok(())
    }
}
