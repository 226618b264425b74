//! The chunk store: every chunk once, under its SHA-256, compressed; verified when read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::{ChunkError, ChunkId, MAX_CHUNK};

/// zstd level of stored chunks: fast to write and read, most of the gain.
const ZSTD_LEVEL: i32 = 3;

/// Where chunks are kept.
pub trait ChunkStore {
    /// Whether the chunk is held.
    fn contains(&self, id: &ChunkId) -> bool;
    /// Keeps `data` under its SHA-256 (once); its id and the bytes the store grew by
    /// (0 when it was held already).
    fn put(&self, data: &[u8]) -> Result<(ChunkId, u64), ChunkError>;
    /// The chunk's bytes, `len` of them as its recipe says, checked against its id (a chunk
    /// that is not what its id says is corrupt: removed from service, never returned).
    fn get(&self, id: &ChunkId, len: u32) -> Result<Vec<u8>, ChunkError>;
    /// Bytes the chunks take in the store.
    fn stored_bytes(&self) -> u64;
}

pub fn chunk_id(data: &[u8]) -> ChunkId {
    Sha256::digest(data).into()
}

fn compress(data: &[u8]) -> Result<Vec<u8>, ChunkError> {
    Ok(zstd::bulk::compress(data, ZSTD_LEVEL)?)
}

/// What a stored chunk turned out to be.
enum Check {
    Good(Vec<u8>),
    /// The stored bytes are not chunk `id` (quarantine them).
    Corrupt(String),
}

/// Decompresses a stored chunk (never past the largest chunk) and checks it is chunk `id`.
fn check(id: &ChunkId, stored: &[u8]) -> Check {
    match zstd::bulk::decompress(stored, MAX_CHUNK as usize) {
        Err(e) => Check::Corrupt(format!("does not decompress: {e}")),
        Ok(data) if &chunk_id(&data) != id => {
            Check::Corrupt("its bytes do not match its digest".into())
        }
        Ok(data) => Check::Good(data),
    }
}

/// A good chunk's bytes if they are the `len` a recipe says (a recipe that says otherwise
/// is wrong, the chunk is not).
fn of_length(id: &ChunkId, data: Vec<u8>, len: u32) -> Result<Vec<u8>, ChunkError> {
    if data.len() == len as usize {
        Ok(data)
    } else {
        Err(ChunkError::Recipe(format!(
            "chunk {} holds {} bytes, the recipe says {len}",
            hex::encode(id),
            data.len()
        )))
    }
}

/// Chunks in memory (tests, and the simulator).
#[derive(Debug, Default)]
pub struct MemChunkStore {
    chunks: Mutex<HashMap<ChunkId, Vec<u8>>>,
    bytes: AtomicU64,
}

impl MemChunkStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces a stored chunk's bytes (tests of corruption).
    pub fn corrupt(&self, id: &ChunkId, stored: Vec<u8>) {
        self.chunks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, stored);
    }
}

impl ChunkStore for MemChunkStore {
    fn contains(&self, id: &ChunkId) -> bool {
        self.chunks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    fn put(&self, data: &[u8]) -> Result<(ChunkId, u64), ChunkError> {
        let id = chunk_id(data);
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        if chunks.contains_key(&id) {
            return Ok((id, 0));
        }
        let stored = compress(data)?;
        let n = stored.len() as u64;
        chunks.insert(id, stored);
        self.bytes.fetch_add(n, Ordering::Relaxed);
        Ok((id, n))
    }

    fn get(&self, id: &ChunkId, len: u32) -> Result<Vec<u8>, ChunkError> {
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let stored = chunks.get(id).ok_or(ChunkError::Missing(*id))?;
        match check(id, stored) {
            Check::Good(data) => of_length(id, data, len),
            Check::Corrupt(why) => {
                chunks.remove(id);
                Err(ChunkError::Corrupt { id: *id, why })
            }
        }
    }

    fn stored_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Chunks as files: `ROOT/chunks/ab/<hex>` (zstd), written to `ROOT/tmp` and renamed in,
/// so a chunk file is whole or absent; one that reads back wrong moves to
/// `ROOT/quarantine/<hex>` and is never served.
#[derive(Debug)]
pub struct FsChunkStore {
    root: PathBuf,
    bytes: AtomicU64,
}

impl FsChunkStore {
    /// Opens (creates) a store under `root`; counts what it holds.
    pub fn open(root: &Path) -> Result<FsChunkStore, ChunkError> {
        for dir in ["chunks", "tmp", "quarantine"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        // Leftovers of writes cut short.
        for e in std::fs::read_dir(root.join("tmp"))? {
            let _ = std::fs::remove_file(e?.path());
        }
        let mut bytes = 0;
        for fan in std::fs::read_dir(root.join("chunks"))? {
            for e in std::fs::read_dir(fan?.path())? {
                bytes += e?.metadata()?.len();
            }
        }
        Ok(FsChunkStore {
            root: root.to_path_buf(),
            bytes: AtomicU64::new(bytes),
        })
    }

    /// The file of chunk `id`.
    pub fn path(&self, id: &ChunkId) -> PathBuf {
        let hex = hex::encode(id);
        self.root.join("chunks").join(&hex[..2]).join(hex)
    }

    fn quarantine(&self, id: &ChunkId) {
        let to = self.root.join("quarantine").join(hex::encode(id));
        let _ = std::fs::rename(self.path(id), to);
    }
}

impl ChunkStore for FsChunkStore {
    fn contains(&self, id: &ChunkId) -> bool {
        self.path(id).exists()
    }

    fn put(&self, data: &[u8]) -> Result<(ChunkId, u64), ChunkError> {
        let id = chunk_id(data);
        let path = self.path(&id);
        if path.exists() {
            return Ok((id, 0));
        }
        let stored = compress(data)?;
        let tmp = tempfile_in(&self.root.join("tmp"), &stored)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(&tmp, &path)?;
        let n = stored.len() as u64;
        self.bytes.fetch_add(n, Ordering::Relaxed);
        Ok((id, n))
    }

    fn get(&self, id: &ChunkId, len: u32) -> Result<Vec<u8>, ChunkError> {
        let stored = match std::fs::read(self.path(id)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ChunkError::Missing(*id))
            }
            Err(e) => return Err(e.into()),
        };
        match check(id, &stored) {
            Check::Good(data) => of_length(id, data, len),
            Check::Corrupt(why) => {
                self.quarantine(id);
                self.bytes.fetch_sub(stored.len() as u64, Ordering::Relaxed);
                Err(ChunkError::Corrupt { id: *id, why })
            }
        }
    }

    fn stored_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Writes `data` to a new file in `dir`; its path.
fn tempfile_in(dir: &Path, data: &[u8]) -> Result<PathBuf, ChunkError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, data)?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The same checks for every store.
    fn conformance(store: &dyn ChunkStore, corrupt: &dyn Fn(&ChunkId)) {
        let (id, added) = store.put(b"hello chunk").unwrap();
        assert!(added > 0);
        assert_eq!(store.put(b"hello chunk").unwrap(), (id, 0), "kept once");
        assert!(store.contains(&id));
        assert_eq!(store.get(&id, 11).unwrap(), b"hello chunk");
        assert_eq!(store.stored_bytes(), added);
        // A recipe's wrong length is the recipe's fault: the chunk stays.
        assert!(matches!(store.get(&id, 10), Err(ChunkError::Recipe(_))));
        assert!(matches!(
            store.get(&id, MAX_CHUNK + 1),
            Err(ChunkError::Recipe(_))
        ));
        assert_eq!(store.get(&id, 11).unwrap(), b"hello chunk");
        let (id, _) = store.put(b"to be damaged").unwrap();
        corrupt(&id);
        let e = store.get(&id, 13).unwrap_err();
        assert!(matches!(e, ChunkError::Corrupt { .. }), "{e}");
        assert!(
            matches!(store.get(&id, 13), Err(ChunkError::Missing(_))),
            "quarantined"
        );
        assert!(matches!(
            store.get(&[9u8; 32], 3),
            Err(ChunkError::Missing(_))
        ));
    }

    #[test]
    fn the_memory_store_conforms() {
        let store = MemChunkStore::new();
        let damage = |id: &ChunkId| store.corrupt(id, compress(b"other bytes!!").unwrap());
        conformance(&store, &damage);
    }

    #[test]
    fn the_file_store_conforms_and_quarantines() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsChunkStore::open(dir.path()).unwrap();
        let damage = |id: &ChunkId| {
            let path = store.path(id);
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        };
        conformance(&store, &damage);
        assert_eq!(
            std::fs::read_dir(dir.path().join("quarantine"))
                .unwrap()
                .count(),
            1
        );
        // Reopened, it counts what it holds.
        let held = store.stored_bytes();
        assert_eq!(FsChunkStore::open(dir.path()).unwrap().stored_bytes(), held);
    }
}
