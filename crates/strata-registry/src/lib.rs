//! The strata registry node.
//!
//! Layer rule: HTTP handlers ([`http`]) → services ([`services`]) → storage (`strata-store`),
//! never backwards. Handlers parse requests and render responses and the spec's error
//! envelope; services hold the registry's rules (what must exist before a manifest is
//! accepted, when an upload becomes a blob, what garbage collection may remove); storage
//! only stores. Services never see HTTP types and storage never sees services.

pub mod http;
pub mod metrics;
pub mod server;
pub mod services;
pub mod tls;

pub use http::app;
pub use services::{
    GcOptions, GcReport, Registry, ServiceError, Upstream, UpstreamBlob, UpstreamError,
    UpstreamManifest, MIN_GC_GRACE,
};

use std::path::Path;
use std::sync::Arc;

use strata_store::{Granularity, LayeredBlobStore, Placement, RedbMetaStore, StoreError};

/// A registry on the disk layout of a node's data directory: blobs and uploads under it
/// (see `strata_store::LayeredBlobStore`) and the metadata database `meta.redb`.
pub async fn open_data_dir(
    dir: &Path,
    placement: impl Into<Placement>,
    rebuilt_cache_bytes: u64,
) -> Result<Registry, StoreError> {
    Ok(open_node(dir, placement, rebuilt_cache_bytes).await?.0)
}

/// [`open_data_dir`], also returning the blob store, whose placement a running node changes
/// when its plan does.
pub async fn open_node(
    dir: &Path,
    placement: impl Into<Placement>,
    rebuilt_cache_bytes: u64,
) -> Result<(Registry, LayeredBlobStore), StoreError> {
    tokio::fs::create_dir_all(dir).await?;
    let placement = placement.into();
    let moves = placement.default == Granularity::File || !placement.named.is_empty();
    let blobs = LayeredBlobStore::open_with_cache(dir, placement, rebuilt_cache_bytes).await?;
    if moves {
        // Layers stored before (by a crash, an earlier run or another plan) are moved in
        // the background; they stay readable throughout.
        spawn_apply_placement(blobs.clone());
    }
    let meta_path = dir.join("meta.redb");
    let meta = tokio::task::spawn_blocking(move || RedbMetaStore::open(&meta_path))
        .await
        .map_err(|e| StoreError::Database(e.to_string()))??;
    Ok((
        Registry::new(Arc::new(blobs.clone()), Arc::new(meta)),
        blobs,
    ))
}

/// Moves the stored layers to where the store's placement puts them, in the background.
pub fn spawn_apply_placement(blobs: LayeredBlobStore) {
    tokio::spawn(async move {
        match blobs.apply_placement().await {
            Ok(moved) => tracing::info!(moved = moved.len(), "stored layers placed"),
            Err(e) => tracing::warn!(error = %e, "placing stored layers failed"),
        }
    });
}
