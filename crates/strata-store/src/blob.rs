//! The blob store trait: immutable content-addressed blobs plus upload sessions.

use std::collections::HashMap;
use std::fmt::Debug;
use std::io;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use strata_oci::Digest;

use crate::StoreError;

/// A stream of byte chunks: a blob being read, or a request body fed into an upload.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    /// Last write or [`BlobStore::touch`]: garbage collection spares recently used blobs.
    pub modified: SystemTime,
}

/// An upload in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub id: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// Content-addressed blob storage with verified uploads.
///
/// Blobs are immutable; a blob is visible only after its content was verified against its
/// digest. Uploads are appended in order and may be resumed after a restart.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug {
    /// Size and age of a blob, or `None` if absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StoreError>;
    /// Stream bytes `start..end` of a blob (the caller checks the bounds against `stat`).
    async fn read(&self, digest: &Digest, start: u64, end: u64) -> Result<ByteStream, StoreError>;
    /// Store a small blob (a manifest) whose digest the caller computed; verified again here.
    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError>;
    /// Mark a blob as just used, so a concurrent garbage collection spares it.
    async fn touch(&self, digest: &Digest) -> Result<(), StoreError>;
    /// Remove a blob; `false` if it was absent.
    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError>;
    /// Every stored blob.
    async fn list(&self) -> Result<Vec<BlobInfo>, StoreError>;

    /// Create an empty upload.
    async fn upload_start(&self, id: &str) -> Result<(), StoreError>;
    /// Append a body to an upload; returns the upload's new size. On an interrupted body the
    /// bytes received so far stay, so the client can query the size and resume.
    async fn upload_append(&self, id: &str, body: ByteStream) -> Result<u64, StoreError>;
    /// Current size of an upload, or `None` if unknown.
    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StoreError>;
    /// Verify the upload against `expected` and make it the blob `expected`. On a mismatch
    /// the upload is discarded and nothing becomes visible. Returns the blob size.
    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64, StoreError>;
    /// Discard an upload; `false` if it was absent.
    async fn upload_abort(&self, id: &str) -> Result<bool, StoreError>;
    /// Every upload in progress.
    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, StoreError>;
    /// Moves a stored layer to `to` without it ever being unreadable. Stores that only hold
    /// whole blobs refuse.
    async fn store_as(&self, digest: &Digest, to: Granularity) -> Result<Conversion, StoreError> {
        let _ = (digest, to);
        Err(StoreError::Unsupported(
            "this store holds whole blobs only".into(),
        ))
    }
    /// How layers are held (all zero for stores that only hold whole blobs).
    async fn layer_stats(&self) -> Result<LayerStats, StoreError> {
        Ok(LayerStats::default())
    }
    /// Removes stored files no file-level layer uses any more (after layers were deleted or
    /// moved to `layer`). Nothing to do for stores that only hold whole blobs.
    async fn collect_files(&self) -> Result<FilesCollected, StoreError> {
        Ok(FilesCollected::default())
    }
}

/// What [`BlobStore::collect_files`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FilesCollected {
    /// Stored files no recipe references.
    pub files_removed: u64,
    /// Their size on disk (compressed).
    pub bytes_freed: u64,
    /// Temporary files left by decompositions that never finished.
    pub temp_removed: u64,
}

/// How a node stores layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Whole blobs, as pushed.
    Layer,
    /// Deduplicated files plus a recipe, rebuilt bit-exactly on pull.
    File,
}

/// The granularity of each layer: what a placement plan names, else one default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// For layers the plan does not name (every layer without a plan).
    pub default: Granularity,
    /// Layers a plan names, with where it puts them.
    pub named: HashMap<Digest, Granularity>,
}

impl Placement {
    /// Every layer at `granularity`.
    pub fn uniform(granularity: Granularity) -> Self {
        Placement {
            default: granularity,
            named: HashMap::new(),
        }
    }

    /// Where `digest` belongs.
    pub fn of(&self, digest: &Digest) -> Granularity {
        self.named.get(digest).copied().unwrap_or(self.default)
    }
}

impl From<Granularity> for Placement {
    fn from(g: Granularity) -> Self {
        Placement::uniform(g)
    }
}

/// What [`BlobStore::store_as`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conversion {
    pub digest: String,
    /// How the layer is stored now.
    pub granularity: Granularity,
    /// Whether this call moved it.
    pub changed: bool,
    /// Why it is not where it was asked to be, if it is not.
    pub reason: Option<String>,
}

/// How a store holds its layers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// Layers stored as files plus a recipe.
    pub file_level: u64,
    /// Layers that could not be rebuilt exactly and stay whole.
    pub kept_whole: u64,
    /// Reconstructions of file-level layers started since the node started.
    pub reconstructions: u64,
    /// Bytes of verified reconstructions in the cache.
    pub rebuilt_cache_bytes: u64,
}
