//! `strata inspect`: what file-level storage does to given layers, measured by doing it.
//!
//! `rebuild` decomposes each blob into a temporary file store and rebuilds it; `dedup`
//! decomposes every layer of OCI image layouts into one shared store and compares the bytes
//! a layer-level and a file-level node would hold (the MIS paper's Table 1 form), with each
//! layer's measured reconstruction time tau_l.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use strata_layer::filestore::{FileStore, FsFileStore};
use strata_layer::layer::{self, Compressor, Decomposed};

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Decompose each compressed layer blob, rebuild it, print one JSON line per blob.
    Rebuild {
        /// Layer blobs (gzip, zstd or plain tar).
        #[arg(required = true)]
        blobs: Vec<PathBuf>,
    },
    /// Layer-level versus file-level bytes for the images of OCI layouts.
    Dedup {
        /// OCI image layout directories.
        #[arg(long = "oci", required = true, num_args = 1..)]
        oci: Vec<PathBuf>,
    },
    /// The layers a node's store keeps whole, and why.
    Whole {
        /// The node's data directory.
        #[arg(long, default_value = "./strata-data")]
        data_dir: PathBuf,
    },
    /// Chunk level: cut the given blobs (disks, tars, anything) into one temporary chunk
    /// store, rebuild each and check its digest; one JSON line per blob, then a summary.
    Chunks {
        /// `fastcdc` (content-defined) or `fixed` (aligned to the blob's start).
        #[arg(long, default_value = "fastcdc")]
        chunker: String,
        /// Chunk size (FastCDC's average) in KiB.
        #[arg(long, default_value_t = 64)]
        chunk_kb: u32,
        #[arg(required = true)]
        blobs: Vec<PathBuf>,
    },
}

pub fn run(cmd: InspectCommand) -> Result<()> {
    match cmd {
        InspectCommand::Rebuild { blobs } => rebuild(&blobs),
        InspectCommand::Dedup { oci } => dedup(&oci),
        InspectCommand::Whole { data_dir } => whole(&data_dir),
        InspectCommand::Chunks {
            chunker,
            chunk_kb,
            blobs,
        } => chunks(&chunker, chunk_kb, &blobs),
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

fn detect(path: &Path) -> Result<&'static str> {
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    Ok(Compressor::detect(&head[..n]).name())
}

/// Decomposes `path` into `store`; on success also times a rebuild (tau_l) and checks it.
/// The inner error is why the layer cannot be held at file level.
pub(crate) fn measure(
    path: &Path,
    store: &dyn FileStore,
) -> Result<std::result::Result<(Decomposed, f64), String>> {
    let blob =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let d = match layer::decompose(blob, store, Default::default()) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let start = Instant::now();
    layer::verify(&d.recipe, store, &d.blob_sha256)
        .with_context(|| format!("rebuild of {} failed on the second run", path.display()))?;
    let secs = start.elapsed().as_secs_f64();
    Ok(Ok((d, secs)))
}

fn rebuild(blobs: &[PathBuf]) -> Result<()> {
    for path in blobs {
        let tmp = tempfile::tempdir()?;
        let store = FsFileStore::open(tmp.path())?;
        let compressed = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let line = match measure(path, &store)? {
            Ok((d, secs)) => json!({
                "blob": path,
                "blob_sha256": hex::encode(d.blob_sha256),
                "compressor": d.recipe.compressor.name(),
                "file_level": true,
                "reason": null,
                "compressed_bytes": d.compressed_bytes,
                "tar_bytes": d.tar_bytes,
                "overhead_bytes": d.recipe.encode()?.len(),
                "correction_bytes": d.recipe.correction.len(),
                "rebuild_s": secs,
                "rebuild_mb_per_s": d.tar_bytes as f64 / 1e6 / secs.max(1e-9),
            }),
            Err(reason) => json!({
                "blob": path,
                "blob_sha256": sha256_file(path)?,
                "compressor": detect(path)?,
                "file_level": false,
                "reason": reason,
                "compressed_bytes": compressed,
                "tar_bytes": null,
                "overhead_bytes": null,
                "rebuild_s": null,
            }),
        };
        println!("{line}");
    }
    Ok(())
}

fn dedup(dirs: &[PathBuf]) -> Result<()> {
    let mut layers = BTreeMap::new();
    let mut images = 0;
    for dir in dirs {
        for image in strata_oci::Layout::open(dir)?.images()? {
            images += 1;
            layers.extend(image.layers.into_iter().map(|(d, p)| (d.to_string(), p)));
        }
    }
    let tmp = tempfile::tempdir()?;
    let store = FsFileStore::open(tmp.path())?;
    let (mut layer_level, mut file_level, mut tar_total, mut file_layers) =
        (0u64, 0u64, 0u64, 0u64);
    let mut unique_file_bytes = 0u64;
    for (digest, path) in &layers {
        let compressed = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        layer_level += compressed;
        let line = match measure(path, &store)? {
            Ok((d, tau)) => {
                let recipe = d.recipe.encode()?.len() as u64;
                let new_bytes: u64 = d
                    .new_files
                    .iter()
                    .filter_map(|f| store.stored_bytes(f))
                    .sum();
                // Each new file once, at its first reference.
                let mut new: std::collections::HashSet<_> = d.new_files.iter().collect();
                let new_plain: u64 = d
                    .recipe
                    .tar
                    .files()
                    .filter(|(f, _)| new.remove(f))
                    .map(|(_, s)| s)
                    .sum();
                unique_file_bytes += new_plain;
                file_level += new_bytes + recipe;
                tar_total += d.tar_bytes;
                file_layers += 1;
                json!({"layer": digest, "file_level": true, "compressed_bytes": compressed, "tar_bytes": d.tar_bytes,
                       "new_file_bytes": new_bytes, "recipe_bytes": recipe, "tau_s": tau})
            }
            Err(reason) => {
                file_level += compressed;
                json!({"layer": digest, "file_level": false, "reason": reason, "compressed_bytes": compressed})
            }
        };
        println!("{line}");
    }
    println!(
        "{}",
        json!({
            "images": images,
            "layers": layers.len(),
            "file_level_layers": file_layers,
            "layer_level_bytes": layer_level,
            "file_level_bytes": file_level,
            "dedup_ratio": layer_level as f64 / file_level.max(1) as f64,
            "tar_bytes": tar_total,
            "unique_file_bytes": unique_file_bytes,
        })
    );
    Ok(())
}

/// One JSON line per layer kept whole (`layer`, `reason`), then `{"kept_whole": N}`.
fn whole(data_dir: &Path) -> Result<()> {
    anyhow::ensure!(
        data_dir.is_dir(),
        "{} is not a data directory",
        data_dir.display()
    );
    let layers = strata_store::kept_whole(data_dir)
        .with_context(|| format!("cannot read {}", data_dir.display()))?;
    for (digest, reason) in &layers {
        println!("{}", json!({"layer": digest.to_string(), "reason": reason}));
    }
    println!("{}", json!({"kept_whole": layers.len()}));
    Ok(())
}

/// `strata inspect chunks`: what chunk-level storage holds for `blobs`, measured by doing it.
fn chunks(chunker: &str, chunk_kb: u32, blobs: &[PathBuf]) -> Result<()> {
    use strata_chunk::{ChunkStore, Chunker, FsChunkStore, Recipe};
    let chunker = Chunker::new(chunker, chunk_kb)?;
    let tmp = tempfile::tempdir()?;
    let store = FsChunkStore::open(tmp.path())?;
    let (mut whole, mut recipes, mut chunk_seconds) = (0u64, 0u64, 0f64);
    for path in blobs {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let started = Instant::now();
        let made = Recipe::make(
            &chunker,
            std::io::BufReader::with_capacity(1 << 20, file),
            &store,
        )
        .with_context(|| format!("cannot chunk {}", path.display()))?;
        let seconds = started.elapsed().as_secs_f64();
        chunk_seconds += seconds;
        let encoded = made.recipe.encode();
        recipes += encoded.len() as u64;
        whole += made.recipe.size;
        // Rebuilt from the store alone (the recipe as stored, decoded), digest checked.
        let started = Instant::now();
        let exact = Recipe::decode(&encoded)
            .and_then(|r| r.rebuild(&store, &mut std::io::sink()))
            .map_err(|e| eprintln!("{}: not rebuilt exactly: {e}", path.display()))
            .is_ok();
        let rebuild_s = started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({
                "blob": path,
                "blob_sha256": hex::encode(made.recipe.sha256),
                "bytes": made.recipe.size,
                "chunker": chunker.name(),
                "chunks": made.recipe.entries.len(),
                "zero_chunks": made.zero_chunks,
                "new_chunks": made.new_chunks,
                "new_chunk_bytes": made.new_bytes,
                "recipe_bytes": encoded.len(),
                "exact": exact,
                "chunk_s": seconds,
                "rebuild_s": rebuild_s,
            })
        );
        anyhow::ensure!(exact, "{} was not rebuilt exactly", path.display());
    }
    let chunk_level = store.stored_bytes() + recipes;
    println!(
        "{}",
        json!({
            "blobs": blobs.len(),
            "chunker": chunker.name(),
            "whole_bytes": whole,
            "chunk_store_bytes": store.stored_bytes(),
            "recipe_bytes": recipes,
            "chunk_level_bytes": chunk_level,
            "dedup_ratio": whole as f64 / chunk_level.max(1) as f64,
            "chunking_mb_s": whole as f64 / 1e6 / chunk_seconds.max(1e-9),
        })
    );
    Ok(())
}
