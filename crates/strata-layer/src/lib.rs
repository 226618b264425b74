//! Layer decomposition: a compressed layer blob becomes deduplicated file contents, a tar
//! recipe and a correction record, from which the exact original blob is rebuilt.
//!
//! Pure and synchronous: no HTTP, no async runtime. Modules, bottom up:
//! - [`rc`]: the binary range coder every correction record is written with;
//! - [`deflate`]: bit-exact DEFLATE re-encoding for any encoder;
//! - [`gzip`]: the gzip container around DEFLATE streams;
//! - [`filestore`]: content-addressed file storage (memory, filesystem);
//! - [`tar`]: tar streams split into files plus a verbatim recipe, hostile entries refused;
//! - [`trailing`]: bytes after a stream's end, kept verbatim;
//! - [`zst`]: bit-exact zstd re-encoding for any encoder;
//! - [`layer`]: whole blobs: detect, split, verify by rebuilding, encode the recipe.

pub mod deflate;
pub mod filestore;
pub mod gzip;
pub mod layer;
pub mod rc;
pub mod tar;
pub mod trailing;
pub mod zst;

/// Versions of the correction record (a recipe names the one it was written with, so a
/// node reads every record it ever stored).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Tokens coded by the general model only (recipes written before the encoder replay).
    V1,
    /// Each DEFLATE stream starts with the encoder its tokens are replayed as (0 = none).
    V2,
    /// Also each zstd frame says whether klauspost/compress's default encoder is replayed.
    #[default]
    V3,
}

impl Format {
    /// DEFLATE streams name their encoder's replay.
    pub fn replays_deflate(self) -> bool {
        self != Format::V1
    }

    /// zstd frames say whether an encoder's replay predicts them.
    pub fn replays_zstd(self) -> bool {
        self == Format::V3
    }
}

/// Why a layer could not be decomposed or rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("stream is truncated")]
    Truncated,
    #[error("invalid deflate stream: {0}")]
    Deflate(String),
    #[error("invalid zstd stream: {0}")]
    Zstd(String),
    #[error("invalid gzip stream: {0}")]
    Gzip(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("rebuild does not match: {0}")]
    Mismatch(String),
    #[error("invalid tar stream: {0}")]
    Tar(String),
    #[error("hostile layer: {0}")]
    Hostile(String),
    #[error("file {0} is missing from the file store")]
    MissingFile(String),
    #[error("invalid recipe: {0}")]
    Recipe(String),
    #[error("a lock was poisoned by a panic")]
    Poisoned,
}
