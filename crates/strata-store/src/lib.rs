//! Storage backends of a strata node.
//!
//! Two small traits, each with an in-memory implementation and a durable one, and one shared
//! conformance suite (feature `testsuite`) that every implementation runs:
//!
//! - [`BlobStore`]: content-addressed blobs and in-progress uploads. Uploads are verified
//!   against their digest before they become visible; the filesystem implementation writes
//!   to a temporary file, fsyncs it and renames it into place, so a crash never leaves a
//!   partial or unverified blob visible.
//! - [`LayeredBlobStore`]: the filesystem blob store with layers optionally held at file
//!   level (deduplicated files plus a recipe, rebuilt bit-exactly on read).
//! - [`BlobSource`]: read-only access to blobs a node may not hold (its own store through
//!   [`StoreSource`], and in other crates an upstream registry or the peers of a site).
//! - [`fill`]: a blob arriving into a file, streamed to its readers as it arrives (the last
//!   byte only once verified); layer reconstructions and mirrored blobs use it.
//! - [`MetaStore`]: repositories, blob links, manifests, tags, referrers and upload sessions,
//!   in one transactional database (redb) for the durable implementation.
//!
//! This crate is the bottom layer: it knows OCI types but nothing of HTTP or services.

mod append;
mod blob;
mod blob_fs;
mod blob_layered;
mod blob_mem;
mod error;
pub mod fill;
mod mapped;
mod meta;
mod meta_mem;
mod meta_redb;
mod placement;
mod rebuilt;
mod source;
mod space;
#[cfg(feature = "testsuite")]
pub mod testsuite;
mod writeback;

pub use blob::{
    BlobInfo, BlobStore, ByteStream, Conversion, FilesCollected, Granularity, LayerStats,
    Placement, UploadInfo,
};
pub use blob_fs::FsBlobStore;
pub use blob_layered::{kept_whole, LayeredBlobStore, DEFAULT_REBUILT_CACHE_BYTES};
pub use blob_mem::MemBlobStore;
pub use error::StoreError;
pub use meta::{CachedBlob, ManifestRecord, MetaStore, UploadRecord};
pub use meta_mem::MemMetaStore;
pub use meta_redb::RedbMetaStore;
pub use source::{BlobSource, StoreSource};
pub use space::FreeSpace;
