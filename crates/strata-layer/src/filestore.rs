//! The content-addressed file store shared by every file-level layer of a node: each file's
//! content stored once, under its sha256, zstd-compressed. No name from a tar ever becomes a
//! path here: paths derive from digests only.
//!
//! [`FileStore`] is the backend trait; [`MemFileStore`] and [`FsFileStore`] implement it and
//! both run the shared suite in `tests/filestore.rs`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

use crate::LayerError;

/// A file's sha256.
pub type FileDigest = [u8; 32];

/// zstd level for stored files: fast to write, decompression speed is level-independent.
const ZSTD_LEVEL: i32 = 3;

/// What storing one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub digest: FileDigest,
    pub size: u64,
    /// `false` if the store already held this content.
    pub new: bool,
}

/// A file being written; [`FileWriter::commit`] makes it visible under its digest.
pub trait FileWriter: Write {
    fn commit(self: Box<Self>) -> Result<Stored, LayerError>;
}

/// Content-addressed file storage.
pub trait FileStore {
    /// Starts writing a file whose digest is known once it is complete.
    fn writer(&self) -> Result<Box<dyn FileWriter + '_>, LayerError>;
    /// Streams a stored file's content.
    fn open(&self, digest: &FileDigest) -> Result<Box<dyn Read + '_>, LayerError>;
    /// `true` if the store holds the content.
    fn contains(&self, digest: &FileDigest) -> bool;
    /// Removes a file (a decomposition that failed takes back what it added).
    fn remove(&self, digest: &FileDigest) -> Result<(), LayerError>;
    /// Bytes the file occupies in the store (compressed), if present.
    fn stored_bytes(&self, digest: &FileDigest) -> Option<u64>;
    /// Every stored file, in no particular order (for garbage collection).
    fn list(&self) -> Result<Vec<FileDigest>, LayerError>;
}

fn missing(digest: &FileDigest) -> LayerError {
    LayerError::MissingFile(hex::encode(digest))
}

/// Files in memory, compressed like on disk; for tests and dry runs.
#[derive(Debug, Default, Clone)]
pub struct MemFileStore {
    files: Arc<Mutex<HashMap<FileDigest, Arc<Vec<u8>>>>>,
}

impl MemFileStore {
    /// Number of files held.
    pub fn len(&self) -> usize {
        self.files.lock().map(|f| f.len()).unwrap_or(0)
    }

    /// `true` when no file is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hashes and counts content while compressing it into `W`.
struct Compressing<W: Write> {
    hasher: Sha256,
    size: u64,
    enc: zstd::Encoder<'static, W>,
}

impl<W: Write> Compressing<W> {
    fn new(out: W) -> Result<Self, LayerError> {
        Ok(Compressing {
            hasher: Sha256::new(),
            size: 0,
            enc: zstd::Encoder::new(out, ZSTD_LEVEL)?,
        })
    }

    /// The content's digest and size, and the finished compressed output.
    fn finish(self) -> Result<(FileDigest, u64, W), LayerError> {
        Ok((self.hasher.finalize().into(), self.size, self.enc.finish()?))
    }
}

impl<W: Write> Write for Compressing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.size += buf.len() as u64;
        self.enc.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct MemWriter<'a> {
    store: &'a MemFileStore,
    out: Compressing<Vec<u8>>,
}

impl Write for MemWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FileWriter for MemWriter<'_> {
    fn commit(self: Box<Self>) -> Result<Stored, LayerError> {
        let (digest, size, data) = self.out.finish()?;
        let mut files = self.store.files.lock().map_err(|_| LayerError::Poisoned)?;
        let new = !files.contains_key(&digest);
        files.entry(digest).or_insert_with(|| Arc::new(data));
        Ok(Stored { digest, size, new })
    }
}

impl FileStore for MemFileStore {
    fn writer(&self) -> Result<Box<dyn FileWriter + '_>, LayerError> {
        Ok(Box::new(MemWriter {
            store: self,
            out: Compressing::new(Vec::new())?,
        }))
    }

    fn open(&self, digest: &FileDigest) -> Result<Box<dyn Read + '_>, LayerError> {
        let files = self.files.lock().map_err(|_| LayerError::Poisoned)?;
        let data = files.get(digest).cloned().ok_or_else(|| missing(digest))?;
        Ok(Box::new(zstd::Decoder::new(std::io::Cursor::new(
            ArcBytes(data),
        ))?))
    }

    fn contains(&self, digest: &FileDigest) -> bool {
        self.files
            .lock()
            .map(|f| f.contains_key(digest))
            .unwrap_or(false)
    }

    fn remove(&self, digest: &FileDigest) -> Result<(), LayerError> {
        self.files
            .lock()
            .map_err(|_| LayerError::Poisoned)?
            .remove(digest);
        Ok(())
    }

    fn stored_bytes(&self, digest: &FileDigest) -> Option<u64> {
        self.files.lock().ok()?.get(digest).map(|d| d.len() as u64)
    }

    fn list(&self) -> Result<Vec<FileDigest>, LayerError> {
        let files = self.files.lock().map_err(|_| LayerError::Poisoned)?;
        Ok(files.keys().copied().collect())
    }
}

struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Files on disk: `<root>/files/<first two hex>/<hex>.zst`, written to `<root>/tmp` first,
/// fsynced and renamed into place, so a crash never leaves a partial file under a digest.
#[derive(Debug, Clone)]
pub struct FsFileStore {
    root: PathBuf,
}

impl FsFileStore {
    /// Opens (creating) a store under `root`.
    pub fn open(root: &Path) -> Result<Self, LayerError> {
        std::fs::create_dir_all(root.join("files"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(FsFileStore {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, digest: &FileDigest) -> PathBuf {
        let hex = hex::encode(digest);
        self.root
            .join("files")
            .join(&hex[..2])
            .join(format!("{hex}.zst"))
    }
}

struct FsWriter<'a> {
    store: &'a FsFileStore,
    out: Compressing<tempfile::NamedTempFile>,
}

impl Write for FsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FileWriter for FsWriter<'_> {
    fn commit(self: Box<Self>) -> Result<Stored, LayerError> {
        let (digest, size, tmp) = self.out.finish()?;
        let path = self.store.path(&digest);
        if path.exists() {
            return Ok(Stored {
                digest,
                size,
                new: false,
            });
        }
        tmp.as_file().sync_all()?;
        let dir = path.parent().ok_or_else(|| missing(&digest))?;
        std::fs::create_dir_all(dir)?;
        tmp.persist(&path).map_err(|e| LayerError::Io(e.error))?;
        Ok(Stored {
            digest,
            size,
            new: true,
        })
    }
}

impl FileStore for FsFileStore {
    fn writer(&self) -> Result<Box<dyn FileWriter + '_>, LayerError> {
        let tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        Ok(Box::new(FsWriter {
            store: self,
            out: Compressing::new(tmp)?,
        }))
    }

    fn open(&self, digest: &FileDigest) -> Result<Box<dyn Read + '_>, LayerError> {
        let f = std::fs::File::open(self.path(digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing(digest),
            _ => LayerError::Io(e),
        })?;
        Ok(Box::new(zstd::Decoder::new(f)?))
    }

    fn contains(&self, digest: &FileDigest) -> bool {
        self.path(digest).exists()
    }

    fn remove(&self, digest: &FileDigest) -> Result<(), LayerError> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LayerError::Io(e)),
            _ => Ok(()),
        }
    }

    fn stored_bytes(&self, digest: &FileDigest) -> Option<u64> {
        std::fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    fn list(&self) -> Result<Vec<FileDigest>, LayerError> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(self.root.join("files"))? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(shard.path())? {
                let name = f?.file_name();
                let hex = name.to_str().and_then(|n| n.strip_suffix(".zst"));
                let mut digest = [0u8; 32];
                if hex.is_some_and(|h| hex::decode_to_slice(h, &mut digest).is_ok()) {
                    out.push(digest);
                }
            }
        }
        Ok(out)
    }
}

impl FsFileStore {
    /// Removes files left in `tmp/` by writers that never committed (a crash, a killed
    /// decomposition). Only call this while no writer of this store is open.
    pub fn clear_temp(&self) -> Result<u64, LayerError> {
        let mut removed = 0;
        for f in std::fs::read_dir(self.root.join("tmp"))? {
            std::fs::remove_file(f?.path())?;
            removed += 1;
        }
        Ok(removed)
    }
}
