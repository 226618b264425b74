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
//! Reading a file-level blob streams its reconstruction (see [`crate::rebuilt`]): one per
//! layer at a time, shared by concurrent readers, hashed as it is written; the last byte of
//! every range waits until the digest matches, so on a mismatch the response is aborted (the
//! client never receives a complete, wrong blob) and the recipe is quarantined. Verified
//! reconstructions stay in a bounded cache (`<data>/rebuilt/`, least recently read evicted).
//!
//! Files are shared between layers, so deleting a layer (or moving it to `layer`) removes
//! only its recipe; [`BlobStore::collect_files`] (run by `strata gc`) then removes the files
//! no remaining recipe references. Decompositions and that collection exclude each other.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::blob::{
    BlobInfo, BlobStore, ByteStream, Conversion, FilesCollected, Granularity, LayerStats,
    Placement, UploadInfo,
};
use crate::rebuilt::{self, Begin, Builder, RebuiltCache};
use crate::{FsBlobStore, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use strata_layer::filestore::{FileStore, FsFileStore};
use strata_layer::layer::{self, LayerRecipe};
use strata_oci::Digest;

/// Blobs smaller than this are never decomposed (configs, manifests, tiny layers).
const MIN_LAYER_BYTES: u64 = 4096;
/// The reason recorded for a layer an operator asked to keep whole.
const KEPT_ON_REQUEST: &str =
    "kept whole on request (strata store convert --to layer, or a placement plan)";

/// Default budget of the rebuilt-layer cache.
pub const DEFAULT_REBUILT_CACHE_BYTES: u64 = 1 << 30;

/// A filesystem blob store that can hold layers at file level (see the module docs).
#[derive(Debug, Clone)]
pub struct LayeredBlobStore {
    inner: Arc<FsBlobStore>,
    files: Arc<FsFileStore>,
    recipes: PathBuf,
    pub(crate) placement: Arc<std::sync::RwLock<Placement>>,
    rebuilt: Arc<RebuiltCache>,
    /// Held by each decomposition (it adds files, and takes back the new ones if it fails)
    /// and by file collection (it removes files no recipe references): neither ever sees the
    /// other half-done.
    file_writers: Arc<tokio::sync::Mutex<()>>,
}

fn io_err(e: strata_layer::LayerError) -> io::Error {
    io::Error::other(e.to_string())
}

impl LayeredBlobStore {
    /// Opens the store under `root` (blobs, uploads, files, recipes), layers placed as
    /// `placement` says (a [`Granularity`] for every layer alike), with the default
    /// rebuilt-layer cache budget.
    pub async fn open(root: &Path, placement: impl Into<Placement>) -> Result<Self, StoreError> {
        Self::open_with_cache(root, placement, DEFAULT_REBUILT_CACHE_BYTES).await
    }

    /// Opens the store, keeping at most `rebuilt_cache_bytes` of verified reconstructions.
    pub async fn open_with_cache(
        root: &Path,
        placement: impl Into<Placement>,
        rebuilt_cache_bytes: u64,
    ) -> Result<Self, StoreError> {
        let inner = Arc::new(FsBlobStore::open(root).await?);
        let files_root = root.join("files");
        let files = tokio::task::spawn_blocking(move || FsFileStore::open(&files_root))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
            .map_err(|e| StoreError::Io(io_err(e)))?;
        let recipes = root.join("recipes");
        tokio::fs::create_dir_all(&recipes).await?;
        let cache_dir = root.join("rebuilt");
        let rebuilt = tokio::task::spawn_blocking(move || {
            RebuiltCache::open(&cache_dir, rebuilt_cache_bytes)
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        Ok(LayeredBlobStore {
            inner,
            files: Arc::new(files),
            recipes,
            placement: Arc::new(std::sync::RwLock::new(placement.into())),
            rebuilt: Arc::new(rebuilt),
            file_writers: Arc::new(tokio::sync::Mutex::new(())),
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
        let _writing = self.file_writers.lock().await;
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

    /// Rebuilds a file-level layer into a whole blob (verified on commit), marks it to stay
    /// whole, and only then removes its recipe (and its cached reconstruction): readers find
    /// one or the other throughout.
    async fn restore_whole(&self, digest: &Digest, size: u64) -> Result<(), StoreError> {
        let id = format!("convert-{}", digest.hex());
        self.inner.upload_start(&id).await?;
        let copied = async {
            let stream = self.read_rebuilt(digest, 0, size).await?;
            self.inner.upload_append(&id, stream).await?;
            self.inner.upload_commit(&id, digest).await
        };
        if let Err(e) = copied.await {
            let _ = self.inner.upload_abort(&id).await;
            return Err(e);
        }
        self.mark_whole(digest, KEPT_ON_REQUEST).await?;
        match tokio::fs::remove_file(self.recipe_path(digest)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        // The reconstruction the copy was read from would only duplicate the whole blob.
        let (cache, d) = (self.rebuilt.clone(), digest.clone());
        tokio::task::spawn_blocking(move || cache.remove(&d))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        Ok(())
    }

    /// Whole blobs (layers or not).
    pub(crate) async fn inner_list(&self) -> Result<Vec<BlobInfo>, StoreError> {
        self.inner.list().await
    }

    pub(crate) fn recipes_dir(&self) -> &Path {
        &self.recipes
    }

    /// Reconstructions of file-level layers started since the store was opened.
    pub fn reconstructions_started(&self) -> u64 {
        self.rebuilt.started()
    }

    async fn read_rebuilt(
        &self,
        digest: &Digest,
        start: u64,
        end: u64,
    ) -> Result<ByteStream, StoreError> {
        let (cache, d) = (self.rebuilt.clone(), digest.clone());
        let begin = tokio::task::spawn_blocking(move || cache.begin(&d))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        let source = match begin {
            Begin::Read(source) => source,
            Begin::Build(builder, source) => {
                let (files, path, digest) =
                    (self.files.clone(), self.recipe_path(digest), digest.clone());
                let cache = self.rebuilt.clone();
                tokio::task::spawn_blocking(move || {
                    let mut builder = builder;
                    let outcome = reconstruct(&files, &path, &digest, &mut builder);
                    if let Err(e) = &outcome {
                        if e.kind() == io::ErrorKind::InvalidData {
                            let _ = std::fs::rename(&path, path.with_extension("quarantined"));
                            tracing::error!(%digest, error = %e, "rebuilt layer does not match its digest; recipe quarantined");
                        }
                    }
                    cache.finish(&digest, builder, outcome.map_err(|e| e.to_string()));
                });
                source
            }
        };
        Ok(rebuilt::stream(source, start, end))
    }
}

/// Rebuilds the blob into `out` and checks it against `digest`.
fn reconstruct(
    files: &FsFileStore,
    path: &Path,
    digest: &Digest,
    out: &mut Builder,
) -> io::Result<()> {
    let bytes = std::fs::read(path)?;
    let recipe = LayerRecipe::decode(bytes.get(8..).unwrap_or_default()).map_err(io_err)?;
    layer::rebuild(&recipe, files, out).map_err(io_err)?;
    if out.complete()? != *digest {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "rebuilt layer does not match its digest",
        ));
    }
    Ok(())
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
                self.read_rebuilt(digest, start, end).await
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
        let (cache, d) = (self.rebuilt.clone(), digest.clone());
        tokio::task::spawn_blocking(move || cache.remove(&d))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))??;
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
        if self.placement_of(expected) == Granularity::File && size >= MIN_LAYER_BYTES {
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

    async fn layer_stats(&self) -> Result<LayerStats, StoreError> {
        let (recipes, cache) = (self.recipes.clone(), self.rebuilt.clone());
        tokio::task::spawn_blocking(move || -> io::Result<LayerStats> {
            Ok(LayerStats {
                file_level: recipe_entries(&recipes, "recipe")?.len() as u64,
                kept_whole: recipe_entries(&recipes, "whole")?.len() as u64,
                reconstructions: cache.started(),
                rebuilt_cache_bytes: cache.bytes()?,
            })
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))?
        .map_err(StoreError::Io)
    }

    async fn store_as(&self, digest: &Digest, to: Granularity) -> Result<Conversion, StoreError> {
        let whole = self.inner.stat(digest).await?.is_some();
        let recipe = self.recipe_info(digest).await?;
        let done = |granularity, changed, reason| Conversion {
            digest: digest.to_string(),
            granularity,
            changed,
            reason,
        };
        match (to, whole, recipe) {
            (_, false, None) => Err(StoreError::BlobNotFound(digest.clone())),
            (Granularity::File, _, Some(_)) => Ok(done(Granularity::File, false, None)),
            (Granularity::File, true, None) => {
                match tokio::fs::remove_file(self.whole_marker(digest)).await {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
                if self.convert(digest).await? {
                    return Ok(done(Granularity::File, true, None));
                }
                let reason = tokio::fs::read_to_string(self.whole_marker(digest))
                    .await
                    .ok();
                Ok(done(Granularity::Layer, false, reason))
            }
            (Granularity::Layer, true, _) => {
                self.mark_whole(digest, KEPT_ON_REQUEST).await?;
                Ok(done(Granularity::Layer, false, None))
            }
            (Granularity::Layer, false, Some(info)) => {
                self.restore_whole(digest, info.size).await?;
                Ok(done(Granularity::Layer, true, None))
            }
        }
    }

    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, StoreError> {
        self.inner.list_uploads().await
    }

    async fn collect_files(&self) -> Result<FilesCollected, StoreError> {
        let _exclusive = self.file_writers.lock().await;
        let (recipes, files) = (self.recipes.clone(), self.files.clone());
        tokio::task::spawn_blocking(move || collect_unreferenced(&recipes, &files))
            .await
            .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }
}

/// Removes every stored file no recipe references, and temporary files of unfinished
/// writers. A recipe that cannot be read stops the collection before anything is removed:
/// the files it needs are unknown.
fn collect_unreferenced(recipes: &Path, files: &FsFileStore) -> Result<FilesCollected, StoreError> {
    let mut live = HashSet::new();
    for (digest, path) in recipe_entries(recipes, "recipe")? {
        let bytes = std::fs::read(&path)?;
        let recipe = LayerRecipe::decode(bytes.get(8..).unwrap_or_default()).map_err(|e| {
            StoreError::Io(io::Error::other(format!(
                "recipe of {digest} is unreadable ({e}); no file removed"
            )))
        })?;
        live.extend(recipe.tar.files().map(|(d, _)| *d));
    }
    let mut done = FilesCollected {
        temp_removed: files.clear_temp().map_err(io_err)?,
        ..FilesCollected::default()
    };
    for digest in files.list().map_err(io_err)? {
        if live.contains(&digest) {
            continue;
        }
        let size = files.stored_bytes(&digest).unwrap_or(0);
        files.remove(&digest).map_err(io_err)?;
        done.files_removed += 1;
        done.bytes_freed += size;
    }
    Ok(done)
}

/// Every `recipes/<alg>/<xx>/<hex>.<suffix>` under `recipes`: (digest, path).
pub(crate) fn recipe_entries(recipes: &Path, suffix: &str) -> io::Result<Vec<(Digest, PathBuf)>> {
    let mut out = Vec::new();
    let algs = match std::fs::read_dir(recipes) {
        Ok(a) => a,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for alg in algs {
        let alg = alg?;
        if !alg.file_type()?.is_dir() {
            continue;
        }
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        for shard in std::fs::read_dir(alg.path())? {
            for f in std::fs::read_dir(shard?.path())? {
                let path = f?.path();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let hex = name
                    .as_deref()
                    .and_then(|n| n.strip_suffix(suffix)?.strip_suffix('.'));
                if let Some(Ok(d)) = hex.map(|h| format!("{alg_name}:{h}").parse::<Digest>()) {
                    out.push((d, path));
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn list_recipes(recipes: &Path) -> io::Result<Vec<Digest>> {
    Ok(recipe_entries(recipes, "recipe")?
        .into_iter()
        .map(|(d, _)| d)
        .collect())
}

/// The layers of the store under `root` that stay whole, with why: (digest, reason).
pub fn kept_whole(root: &Path) -> Result<Vec<(Digest, String)>, StoreError> {
    let mut out = Vec::new();
    for (digest, path) in recipe_entries(&root.join("recipes"), "whole")? {
        out.push((digest, std::fs::read_to_string(&path)?));
    }
    out.sort_by_key(|(d, _)| d.to_string());
    Ok(out)
}
