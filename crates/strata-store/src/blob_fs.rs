//! Filesystem blob store.
//!
//! Layout under the root directory:
//! - `blobs/<algorithm>/<first two hex>/<hex>`: verified, immutable blobs;
//! - `uploads/<id>`: upload data as received so far;
//! - `tmp/`: staging for small blobs written in one piece.
//!
//! A blob appears under `blobs/` only by an atomic rename of a fully written, fsynced and
//! verified file, followed by an fsync of the directory.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use strata_oci::{Algorithm, Digest, DigestHasher};
use tokio::fs;

use tokio::io::AsyncReadExt;

use crate::append::{self, UploadHash};
use crate::blob::{BlobInfo, BlobStore, ByteStream, UploadInfo};
use crate::{FreeSpace, StoreError};

/// Blobs as files under a root directory.
#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    /// One lock per upload serialises appends and commits and carries the running hash.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadHash>>>>,
    /// Blob data is written only above this reserve of free space.
    space: FreeSpace,
}

const READ_BUF: usize = 256 * 1024;
/// Size of the reads that serve a short range of a blob.
const SERVE_CHUNK: usize = 1024 * 1024;
/// Ranges at least this long are served from a map of the file (see [`crate::mapped`]);
/// shorter ones by reads, which cost less than setting up a map.
const MAP_MIN: u64 = 256 * 1024;
/// Bytes per chunk handed to the consumer of a mapped range.
const MAP_WINDOW: usize = 4 * 1024 * 1024;

fn not_found_to_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// fsync a directory so that a rename into it survives a crash.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).await?.sync_all().await
}

async fn hash_file(path: &Path, algorithm: Algorithm) -> io::Result<Digest> {
    let mut f = fs::File::open(path).await?;
    let mut h = DigestHasher::new(algorithm);
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

impl FsBlobStore {
    /// Open (creating if needed) a blob store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        for sub in ["blobs", "uploads", "tmp"] {
            fs::create_dir_all(root.join(sub)).await?;
        }
        // Staged writes that never reached their rename are garbage after a restart.
        let mut tmp = fs::read_dir(root.join("tmp")).await?;
        while let Some(e) = tmp.next_entry().await? {
            let _ = fs::remove_file(e.path()).await;
        }
        let space = FreeSpace::for_dir(&root)?;
        Ok(FsBlobStore {
            root,
            uploads: Mutex::new(HashMap::new()),
            space,
        })
    }

    /// Where a committed blob lives on disk.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<UploadHash>> {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string()).or_default().clone()
    }

    fn forget_upload(&self, id: &str) {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }

    /// Move a verified, fsynced file into its content-addressed place.
    async fn install(&self, from: &Path, digest: &Digest) -> Result<(), StoreError> {
        let dest = self.blob_path(digest);
        let parent = dest
            .parent()
            .ok_or_else(|| io::Error::other("blob path has no parent"))?;
        fs::create_dir_all(parent).await?;
        fs::rename(from, &dest).await?;
        sync_dir(parent).await?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StoreError> {
        let meta = not_found_to_none(fs::metadata(self.blob_path(digest)).await)?;
        Ok(meta.map(|m| BlobInfo {
            digest: digest.clone(),
            size: m.len(),
            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }))
    }

    async fn read(&self, digest: &Digest, start: u64, end: u64) -> Result<ByteStream, StoreError> {
        let file = not_found_to_none(std::fs::File::open(self.blob_path(digest)))?
            .ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?;
        Ok(chunked_reads(file, start, end)?)
    }

    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        let actual = Digest::of(digest.algorithm(), &data);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        // A committed blob is never replaced: its bytes are the digest's, so there is
        // nothing to gain and a failed rewrite would lose them.
        let dest = self.blob_path(digest);
        if fs::try_exists(&dest).await? {
            // Its directory entry may not be durable yet if an earlier install failed at
            // the directory fsync.
            if let Some(parent) = dest.parent() {
                sync_dir(parent).await?;
            }
            return Ok(());
        }
        self.space.check_data(data.len() as u64)?;
        let staged = self.root.join("tmp").join(uuid::Uuid::new_v4().to_string());
        // Written with blocking calls so that every write error is seen before the rename
        // (tokio's `File` reports a failed background write only at a later flush).
        let path = staged.clone();
        let written = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut f = std::fs::File::create(&path)?;
            io::Write::write_all(&mut f, &data)?;
            f.sync_all()
        })
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r);
        let result = match written {
            Ok(()) => self.install(&staged, digest).await,
            Err(e) => Err(e.into()),
        };
        if result.is_err() {
            let _ = fs::remove_file(&staged).await;
        }
        result
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        let f = not_found_to_none(std::fs::File::open(&path))?
            .ok_or_else(|| StoreError::BlobNotFound(digest.clone()))?;
        f.set_modified(SystemTime::now())?;
        Ok(())
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(not_found_to_none(fs::remove_file(self.blob_path(digest)).await)?.is_some())
    }

    async fn list(&self) -> Result<Vec<BlobInfo>, StoreError> {
        let root = self.root.join("blobs");
        tokio::task::spawn_blocking(move || list_blobs(&root))
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
    }

    async fn upload_start(&self, id: &str) -> Result<(), StoreError> {
        self.space.check_data(0)?;
        fs::File::create(self.upload_path(id)).await?;
        let lock = self.upload_lock(id);
        *lock.lock().await = UploadHash {
            offset: 0,
            hasher: Some(DigestHasher::new(Algorithm::Sha256)),
        };
        Ok(())
    }

    async fn upload_append(&self, id: &str, body: ByteStream) -> Result<u64, StoreError> {
        let mut state = self.upload_lock(id).lock_owned().await;
        let path = self.upload_path(id);
        let file = not_found_to_none(fs::OpenOptions::new().append(true).open(&path).await)?
            .ok_or_else(|| StoreError::UploadNotFound(id.to_string()))?;
        let len = file.metadata().await?.len();
        if state.offset != len || state.hasher.is_none() {
            // Restarted node or an earlier failed write: rehash lazily at commit.
            state.offset = len;
            state.hasher = None;
        }
        append::append(file.into_std().await, state, self.space.clone(), body).await
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(not_found_to_none(fs::metadata(self.upload_path(id)).await)?.map(|m| m.len()))
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64, StoreError> {
        let lock = self.upload_lock(id);
        let mut state = lock.lock().await;
        let path = self.upload_path(id);
        let len = not_found_to_none(fs::metadata(&path).await)?
            .ok_or_else(|| StoreError::UploadNotFound(id.to_string()))?
            .len();
        let running = state
            .hasher
            .take()
            .filter(|h| state.offset == len && h.algorithm() == expected.algorithm());
        let actual = match running {
            Some(h) => h.finish(),
            None => hash_file(&path, expected.algorithm()).await?,
        };
        if &actual != expected {
            fs::remove_file(&path).await?;
            self.forget_upload(id);
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        fs::File::open(&path).await?.sync_all().await?;
        self.install(&path, expected).await?;
        self.forget_upload(id);
        Ok(len)
    }

    async fn upload_abort(&self, id: &str) -> Result<bool, StoreError> {
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let removed = not_found_to_none(fs::remove_file(self.upload_path(id)).await)?.is_some();
        self.forget_upload(id);
        Ok(removed)
    }

    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, StoreError> {
        let mut out = Vec::new();
        let mut dir = fs::read_dir(self.root.join("uploads")).await?;
        while let Some(e) = dir.next_entry().await? {
            let Some(meta) = not_found_to_none(e.metadata().await)? else {
                continue;
            };
            out.push(UploadInfo {
                id: e.file_name().to_string_lossy().into_owned(),
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok(out)
    }
}

/// Read the next `len` bytes of `file` into a fresh buffer (no zero-fill: `read_to_end`
/// writes into the vector's spare capacity).
fn read_chunk(file: &mut std::fs::File, len: u64) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "blob file is shorter than recorded",
        ));
    }
    Ok(Bytes::from(buf))
}

/// One blocking read of the next chunk; returns the file for the read after it.
type ChunkRead = tokio::task::JoinHandle<(std::fs::File, io::Result<Bytes>)>;

fn spawn_read(mut file: std::fs::File, len: u64) -> ChunkRead {
    tokio::task::spawn_blocking(move || {
        let r = read_chunk(&mut file, len);
        (file, r)
    })
}

/// Stream `start..end` of a blob file. Long ranges come from a map of the file (see
/// [`crate::mapped`]: no copy into user space). Short ones, manifests among them, come from
/// sequential `SERVE_CHUNK`-sized reads on the blocking pool, one read ahead of the consumer,
/// each straight into the buffer handed to the consumer; no thread is held while a slow
/// client drains.
fn chunked_reads(mut file: std::fs::File, start: u64, end: u64) -> io::Result<ByteStream> {
    if file.metadata()?.len() < end {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            "blob file is shorter than recorded",
        ));
    }
    if end - start >= MAP_MIN {
        let windows = crate::mapped::map_windows(&file, start, end, MAP_WINDOW)?;
        return Ok(Box::pin(futures_util::stream::iter(windows.map(Ok))));
    }
    file.seek(io::SeekFrom::Start(start))?;
    let step = SERVE_CHUNK as u64;
    let first = (start < end).then(|| spawn_read(file, step.min(end - start)));
    let stream = futures_util::stream::unfold((first, start), move |(pending, pos)| async move {
        let (file, chunk) = match pending?.await {
            Ok(done) => done,
            Err(e) => return Some((Err(io::Error::other(e)), (None, end))),
        };
        let next = pos + step.min(end - pos);
        let ahead = match (&chunk, next < end) {
            (Ok(_), true) => Some(spawn_read(file, step.min(end - next))),
            _ => None,
        };
        Some((chunk, (ahead, next)))
    });
    Ok(Box::pin(stream))
}

/// Walk `blobs/<alg>/<xx>/<hex>`; files whose names are not digests are ignored.
fn list_blobs(root: &Path) -> Result<Vec<BlobInfo>, StoreError> {
    let mut out = Vec::new();
    for alg in std::fs::read_dir(root)? {
        let alg = alg?;
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        for prefix in std::fs::read_dir(alg.path())? {
            for entry in std::fs::read_dir(prefix?.path())? {
                let entry = entry?;
                let name = format!("{alg_name}:{}", entry.file_name().to_string_lossy());
                let (Ok(digest), Some(meta)) =
                    (name.parse::<Digest>(), not_found_to_none(entry.metadata())?)
                else {
                    continue;
                };
                out.push(BlobInfo {
                    digest,
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    Ok(out)
}
