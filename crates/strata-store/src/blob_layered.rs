//! [`LayeredBlobStore`]: a [`FsBlobStore`] whose layer blobs may be held at file level.
//!
//! At `file` granularity every committed blob that is a layer (gzip or tar) is decomposed in
//! the background into the node's content-addressed file store (`<data>/files/`) and a
//! recipe (`<data>/recipes/<alg>/<xx>/<hex>.recipe`). The recipe is written (fsync, rename)
//! only after the rebuilt blob matched its digest, and only then is the whole blob removed:
//! the layer is never unavailable. Blobs that cannot be rebuilt exactly stay whole; the reason
//! is logged and recorded beside where the recipe would be (`<hex>.whole`), so a restart
//! does not decompose the blob again and `strata inspect whole` can list it.
//!
//! Reading a file-level blob streams its reconstruction from a blocking thread through a
//! bounded channel (memory stays bounded). The reconstruction is hashed as it goes and the
//! last chunk is held back until the digest matches: on a mismatch the response is aborted
//! (the client never receives a complete, wrong blob) and the recipe is quarantined.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use strata_layer::filestore::FsFileStore;
use strata_layer::layer::{self, LayerRecipe};
use strata_oci::{Digest, DigestHasher};
use tokio::sync::mpsc;

use crate::blob::{BlobInfo, BlobStore, ByteStream, UploadInfo};
use crate::{FsBlobStore, StoreError};

/// Blobs smaller than this are never decomposed (configs, manifests, tiny layers).
const MIN_LAYER_BYTES: u64 = 4096;
/// Bytes per chunk sent to a reader of a rebuilt blob.
const CHUNK: usize = 256 * 1024;

/// How a node stores layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Whole blobs, as pushed.
    Layer,
    /// Deduplicated files plus a recipe, rebuilt bit-exactly on pull.
    File,
}

/// A filesystem blob store that can hold layers at file level (see the module docs).
#[derive(Debug, Clone)]
pub struct LayeredBlobStore {
    inner: Arc<FsBlobStore>,
    files: Arc<FsFileStore>,
    recipes: PathBuf,
    granularity: Granularity,
}

fn io_err(e: strata_layer::LayerError) -> io::Error {
    io::Error::other(e.to_string())
}

impl LayeredBlobStore {
    /// Opens the store under `root` (blobs, uploads, files, recipes).
    pub async fn open(root: &Path, granularity: Granularity) -> Result<Self, StoreError> {
        let inner = Arc::new(FsBlobStore::open(root).await?);
        let files_root = root.join("files");
        let files = tokio::task::spawn_blocking(move || FsFileStore::open(&files_root))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
            .map_err(|e| StoreError::Io(io_err(e)))?;
        let recipes = root.join("recipes");
        tokio::fs::create_dir_all(&recipes).await?;
        Ok(LayeredBlobStore {
            inner,
            files: Arc::new(files),
            recipes,
            granularity,
        })
    }

    fn recipe_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.recipes
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(format!("{hex}.recipe"))
    }

    fn whole_marker(&self, d: &Digest) -> PathBuf {
        self.recipe_path(d).with_extension("whole")
    }

    /// Records why `digest` stays whole (temp file, rename).
    async fn mark_whole(&self, digest: &Digest, reason: &str) -> io::Result<()> {
        let marker = self.whole_marker(digest);
        if let Some(dir) = marker.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let tmp = self.recipes.join(format!(".{}.whole.tmp", digest.hex()));
        tokio::fs::write(&tmp, reason).await?;
        tokio::fs::rename(&tmp, &marker).await
    }

    /// Size and modification time of a file-level blob.
    async fn recipe_info(&self, d: &Digest) -> Result<Option<BlobInfo>, StoreError> {
        let path = self.recipe_path(d);
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut head = [0u8; 8];
        let mut f = tokio::fs::File::open(&path).await?;
        tokio::io::AsyncReadExt::read_exact(&mut f, &mut head).await?;
        Ok(Some(BlobInfo {
            digest: d.clone(),
            size: u64::from_le_bytes(head),
            modified: meta.modified()?,
        }))
    }

    /// Decomposes a committed whole blob; on success the recipe replaces it. Returns whether
    /// the blob is now at file level.
    pub async fn convert(&self, digest: &Digest) -> Result<bool, StoreError> {
        let Some(info) = self.inner.stat(digest).await? else {
            return Ok(false);
        };
        if info.size < MIN_LAYER_BYTES || tokio::fs::try_exists(self.whole_marker(digest)).await? {
            return Ok(false);
        }
        let (blob, files, recipe_path) = (
            self.inner.blob_path(digest),
            self.files.clone(),
            self.recipe_path(digest),
        );
        let tmp = self.recipes.join(format!(".{}.tmp", digest.hex()));
        let outcome = tokio::task::spawn_blocking(move || -> io::Result<Result<(), String>> {
            let f = std::fs::File::open(&blob)?;
            let d =
                match layer::decompose(io::BufReader::new(f), files.as_ref(), Default::default()) {
                    Ok(d) => d,
                    Err(e) => return Ok(Err(e.to_string())),
                };
            let mut bytes = d.compressed_bytes.to_le_bytes().to_vec();
            bytes.extend(d.recipe.encode().map_err(io_err)?);
            let mut out = std::fs::File::create(&tmp)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
            if let Some(dir) = recipe_path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::rename(&tmp, &recipe_path)?;
            Ok(Ok(()))
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        match outcome {
            Ok(()) => {
                self.inner.delete(digest).await?;
                tracing::info!(%digest, "layer stored at file level");
                Ok(true)
            }
            Err(reason) => {
                tracing::info!(%digest, %reason, "layer kept whole");
                self.mark_whole(digest, &reason).await?;
                Ok(false)
            }
        }
    }

    /// Converts every whole blob (after a restart, or when a node switches to `file`).
    pub async fn convert_all(&self) -> Result<usize, StoreError> {
        let mut converted = 0;
        for b in self.inner.list().await? {
            if self.convert(&b.digest).await? {
                converted += 1;
            }
        }
        Ok(converted)
    }

    fn read_rebuilt(&self, digest: &Digest, start: u64, end: u64) -> ByteStream {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        let (files, path, digest) = (self.files.clone(), self.recipe_path(digest), digest.clone());
        tokio::task::spawn_blocking(move || {
            let result = rebuild_into(&files, &path, &digest, start, end, &tx);
            if let Err(e) = result {
                if e.kind() == io::ErrorKind::InvalidData {
                    let _ = std::fs::rename(&path, path.with_extension("quarantined"));
                    tracing::error!(%digest, error = %e, "rebuilt layer does not match its digest; recipe quarantined");
                }
                let _ = tx.blocking_send(Err(e));
            }
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

/// Rebuilds the blob, sends bytes `start..end` in chunks, and the last chunk only after the
/// whole rebuild matched `digest`.
fn rebuild_into(
    files: &FsFileStore,
    path: &Path,
    digest: &Digest,
    start: u64,
    end: u64,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let bytes = std::fs::read(path)?;
    let recipe = LayerRecipe::decode(bytes.get(8..).unwrap_or_default()).map_err(io_err)?;
    let mut sink = RangeSender {
        tx,
        pos: 0,
        start,
        end,
        pending: Vec::new(),
        held: None,
        hasher: DigestHasher::new(digest.algorithm()),
    };
    layer::rebuild(&recipe, files, &mut sink).map_err(io_err)?;
    sink.flush_pending();
    if sink.hasher.finish() != *digest {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "rebuilt layer does not match its digest",
        ));
    }
    if let Some(last) = sink.held.take() {
        tx.blocking_send(Ok(last))
            .map_err(|_| io::Error::other("reader went away"))?;
    }
    Ok(())
}

struct RangeSender<'a> {
    tx: &'a mpsc::Sender<io::Result<Bytes>>,
    pos: u64,
    start: u64,
    end: u64,
    pending: Vec<u8>,
    /// The most recent full chunk, sent when the next one is ready (or after verification).
    held: Option<Bytes>,
    hasher: DigestHasher,
}

impl RangeSender<'_> {
    fn flush_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let chunk = Bytes::from(std::mem::take(&mut self.pending));
        if let Some(prev) = self.held.replace(chunk) {
            return self.tx.blocking_send(Ok(prev)).is_ok();
        }
        true
    }
}

impl Write for RangeSender<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        let (from, to) = (self.pos, self.pos + buf.len() as u64);
        self.pos = to;
        let (lo, hi) = (from.max(self.start), to.min(self.end));
        if lo < hi {
            self.pending
                .extend_from_slice(&buf[(lo - from) as usize..(hi - from) as usize]);
            if self.pending.len() >= CHUNK && !self.flush_pending() {
                return Err(io::Error::other("reader went away"));
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[async_trait]
impl BlobStore for LayeredBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StoreError> {
        match self.inner.stat(digest).await? {
            Some(info) => Ok(Some(info)),
            None => self.recipe_info(digest).await,
        }
    }

    async fn read(&self, digest: &Digest, start: u64, end: u64) -> Result<ByteStream, StoreError> {
        match self.inner.read(digest, start, end).await {
            Err(StoreError::BlobNotFound(_)) if self.recipe_info(digest).await?.is_some() => {
                Ok(self.read_rebuilt(digest, start, end))
            }
            other => other,
        }
    }

    async fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        self.inner.put(digest, data).await
    }

    async fn touch(&self, digest: &Digest) -> Result<(), StoreError> {
        if self.inner.stat(digest).await?.is_some() {
            return self.inner.touch(digest).await;
        }
        let path = self.recipe_path(digest);
        tokio::task::spawn_blocking(move || {
            std::fs::File::options()
                .write(true)
                .open(path)?
                .set_modified(SystemTime::now())
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))?
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => e.into(),
        })
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        let whole = self.inner.delete(digest).await?;
        let recipe = match tokio::fs::remove_file(self.recipe_path(digest)).await {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        Ok(whole || recipe)
    }

    async fn list(&self) -> Result<Vec<BlobInfo>, StoreError> {
        let mut all = self.inner.list().await?;
        let recipes = self.recipes.clone();
        let found = tokio::task::spawn_blocking(move || list_recipes(&recipes))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        for d in found {
            if let Some(info) = self.recipe_info(&d).await? {
                all.push(info);
            }
        }
        Ok(all)
    }

    async fn upload_start(&self, id: &str) -> Result<(), StoreError> {
        self.inner.upload_start(id).await
    }

    async fn upload_append(&self, id: &str, body: ByteStream) -> Result<u64, StoreError> {
        self.inner.upload_append(id, body).await
    }

    async fn upload_size(&self, id: &str) -> Result<Option<u64>, StoreError> {
        self.inner.upload_size(id).await
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64, StoreError> {
        let size = self.inner.upload_commit(id, expected).await?;
        if self.granularity == Granularity::File && size >= MIN_LAYER_BYTES {
            let (store, digest) = (self.clone(), expected.clone());
            tokio::spawn(async move {
                if let Err(e) = store.convert(&digest).await {
                    tracing::warn!(%digest, error = %e, "file-level conversion failed; blob kept whole");
                }
            });
        }
        Ok(size)
    }

    async fn upload_abort(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.upload_abort(id).await
    }

    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, StoreError> {
        self.inner.list_uploads().await
    }
}

fn list_recipes(root: &Path) -> io::Result<Vec<Digest>> {
    let mut out = Vec::new();
    for alg in std::fs::read_dir(root)? {
        let alg = alg?;
        if !alg.file_type()?.is_dir() {
            continue;
        }
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        for shard in std::fs::read_dir(alg.path())? {
            for f in std::fs::read_dir(shard?.path())? {
                let name = f?.file_name().to_string_lossy().into_owned();
                if let Some(hex) = name.strip_suffix(".recipe") {
                    if let Ok(d) = format!("{alg_name}:{hex}").parse() {
                        out.push(d);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The layers of the store under `root` that stay whole, with why: (digest, reason).
pub fn kept_whole(root: &Path) -> Result<Vec<(Digest, String)>, StoreError> {
    let mut out = Vec::new();
    let recipes = root.join("recipes");
    let Ok(algs) = std::fs::read_dir(&recipes) else {
        return Ok(out);
    };
    for alg in algs {
        let alg = alg?;
        if !alg.file_type()?.is_dir() {
            continue;
        }
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        for prefix in std::fs::read_dir(alg.path())? {
            for entry in std::fs::read_dir(prefix?.path())? {
                let path = entry?.path();
                if path.extension().is_none_or(|e| e != "whole") {
                    continue;
                }
                let hex = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                let Some(Ok(digest)) = hex.map(|h| format!("{alg_name}:{h}").parse::<Digest>())
                else {
                    continue;
                };
                out.push((digest, std::fs::read_to_string(&path)?));
            }
        }
    }
    out.sort_by_key(|(d, _)| d.to_string());
    Ok(out)
}
