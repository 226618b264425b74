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

use strata_store::{FsBlobStore, RedbMetaStore, StoreError};

/// A registry on the disk layout of a node's data directory: blobs and uploads under it
/// (see `strata_store::FsBlobStore`) and the metadata database `meta.redb`.
pub async fn open_data_dir(dir: &Path) -> Result<Registry, StoreError> {
    tokio::fs::create_dir_all(dir).await?;
    let blobs = FsBlobStore::open(dir).await?;
    let meta_path = dir.join("meta.redb");
    let meta = tokio::task::spawn_blocking(move || RedbMetaStore::open(&meta_path))
        .await
        .map_err(|e| StoreError::Database(e.to_string()))??;
    Ok(Registry::new(Arc::new(blobs), Arc::new(meta)))
}
