//! Chunk-level storage (issue 17, after the VDN design): a blob is cut into chunks, each
//! kept once in a content-addressed [`store::ChunkStore`] that every blob shares, and a
//! [`recipe::Recipe`] lists the blob's chunks in order. A blob is rebuilt from its recipe
//! and checked against its digest; a byte range of it is read from the chunks that cover
//! the range alone, so a hypervisor can read a disk lazily.
//!
//! - [`chunker`]: content-defined chunks (FastCDC, the `fastcdc` crate's 2020 algorithm)
//!   or fixed-size chunks aligned to the blob's start (raw disks: filesystem blocks stay
//!   whole); a chunk of zeros is never stored (the recipe says so);
//! - [`store`]: chunks compressed (zstd) under their SHA-256, verified when read back (a
//!   corrupt chunk is moved to quarantine and never served);
//! - [`recipe`]: the compact, checked list of a blob's chunks and what to do with it.
//!
//! Pure: files and readers only, no async, no clock.

pub mod chunker;
pub mod recipe;
pub mod store;

pub use chunker::{Chunker, Piece};
pub use recipe::{Entry, Recipe};
pub use store::{ChunkStore, FsChunkStore, MemChunkStore};

/// A chunk's SHA-256.
pub type ChunkId = [u8; 32];

/// The largest chunk any chunker cuts, and any recipe may name.
pub const MAX_CHUNK: u32 = 16 << 20;

/// What can go wrong with chunks.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("chunk {} is not in the store", hex::encode(.0))]
    Missing(ChunkId),
    #[error("chunk {} is corrupt on disk ({why}): quarantined", hex::encode(.id))]
    Corrupt { id: ChunkId, why: String },
    #[error("invalid recipe: {0}")]
    Recipe(String),
    #[error("rebuilt blob has digest sha256:{found}, expected sha256:{expected}")]
    Digest { found: String, expected: String },
    #[error("range {start}-{end} is outside the blob of {size} bytes")]
    Range { start: u64, end: u64, size: u64 },
    #[error("{0}")]
    Chunker(String),
}
