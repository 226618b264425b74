//! The strata registry node.
//!
//! Layer rule: HTTP handlers ([`http`]) → services ([`services`]) → storage (`strata-store`),
//! never backwards. Handlers parse requests and render responses and the spec's error
//! envelope; services hold the registry's rules (what must exist before a manifest is
//! accepted, when an upload becomes a blob, what garbage collection may remove); storage
//! only stores. Services never see HTTP types and storage never sees services.

pub mod http;
pub mod metrics;
pub mod services;

pub use http::app;
pub use services::{GcOptions, GcReport, Registry, ServiceError};

use std::path::Path;
use std::sync::Arc;

use strata_store::{Granularity, LayeredBlobStore, RedbMetaStore, StoreError};

/// A registry on the disk layout of a node's data directory: blobs and uploads under it
/// (see `strata_store::LayeredBlobStore`) and the metadata database `meta.redb`.
pub async fn open_data_dir(
    dir: &Path,
    granularity: Granularity,
    rebuilt_cache_bytes: u64,
) -> Result<Registry, StoreError> {
    tokio::fs::create_dir_all(dir).await?;
    let blobs = LayeredBlobStore::open_with_cache(dir, granularity, rebuilt_cache_bytes).await?;
    if granularity == Granularity::File {
        // Whole layers left by a crash or by an earlier `layer` run are converted in the
        // background; they stay readable throughout.
        let store = blobs.clone();
        tokio::spawn(async move {
            match store.convert_all().await {
                Ok(n) => tracing::info!(converted = n, "existing layers checked for file level"),
                Err(e) => tracing::warn!(error = %e, "converting existing layers failed"),
            }
        });
    }
    let meta_path = dir.join("meta.redb");
    let meta = tokio::task::spawn_blocking(move || RedbMetaStore::open(&meta_path))
        .await
        .map_err(|e| StoreError::Database(e.to_string()))??;
    Ok(Registry::new(Arc::new(blobs), Arc::new(meta)))
}
