//! Services: the registry's rules, between the HTTP handlers and the storage backends.
//!
//! Layer rule: handlers call services; services call `strata-store`; nothing here depends on
//! HTTP types, and storage never calls back up.

mod blobs;
mod cache;
mod error;
mod gc;
mod manifests;
mod mirror;
mod uploads;

use std::sync::Arc;

use strata_store::{BlobStore, MetaStore, StoreError};
use tokio::sync::RwLock;

pub use blobs::OpenBlob;
pub use cache::CacheStats;
pub use error::ServiceError;
pub use gc::{GcOptions, GcReport, MIN_GRACE as MIN_GC_GRACE};
pub use manifests::{ManifestContent, PushedManifest};
pub use mirror::{Mirror, MirrorStats, Upstream, UpstreamBlob, UpstreamError, UpstreamManifest};

/// The registry service: every operation of the distribution API, on a blob store and a
/// metadata store.
#[derive(Debug, Clone)]
pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    /// Writers that make content reachable (blob commits, manifest pushes) hold it shared;
    /// garbage collection holds it exclusively while it decides what is unreachable.
    reachability: Arc<RwLock<()>>,
    /// Pull-through mirroring, when the node has an upstream.
    mirror: Option<Arc<Mirror>>,
}

impl Registry {
    pub fn new(blobs: Arc<dyn BlobStore>, meta: Arc<dyn MetaStore>) -> Self {
        Registry {
            blobs,
            meta,
            reachability: Arc::new(RwLock::new(())),
            mirror: None,
        }
    }

    /// This registry, mirroring what it does not hold from `upstream` (tags re-resolved
    /// there after `tag_ttl`; blobs spooled under `spool` while they arrive).
    pub fn with_mirror(
        mut self,
        upstream: Arc<dyn Upstream>,
        tag_ttl: std::time::Duration,
        spool: std::path::PathBuf,
    ) -> std::io::Result<Self> {
        self.mirror = Some(Arc::new(Mirror::new(upstream, tag_ttl, spool)?));
        Ok(self)
    }

    /// Run a metadata write off the async runtime (durable stores fsync on commit).
    async fn meta_write<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn MetaStore) -> Result<T, StoreError> + Send + 'static,
    {
        let meta = self.meta.clone();
        let out = tokio::task::spawn_blocking(move || f(meta.as_ref()))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(out?)
    }
}
