//! `strata plan inventory`: a planning instance from real OCI image layouts.
//!
//! Images, layers and files come from the layouts; every layer is decomposed into one
//! shared file store and rebuilt, as a file-level node would, so that:
//! - a layer's size is its blob's size and its `tau_s` the measured rebuild time;
//! - a file's id is the sha256 of its content (shared files appear once) and its size the
//!   bytes the file store holds for it (zstd-compressed, as a node stores it);
//! - each layer also lists a pseudo-file `recipe:<digest>` of its recipe's size (the recipe
//!   and correction record a file-level node keeps for it);
//! - a layer that cannot be rebuilt exactly lists one pseudo-file `whole:<digest>` of the
//!   blob's size and has `tau_s` 0: at file level it is still held whole.
//!
//! The topology (registries, central registry, servers, request rates) is a starting point
//! set by flags, to be edited to the site's real one.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use strata_layer::filestore::{FileStore, FsFileStore};
use strata_planner::{Central, File, Image, Instance, Layer, Registry, Request, INSTANCE_FORMAT};

use strata_oci::LayoutImage;

const MB: f64 = 1_000_000.0;

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// OCI image layout directories.
    #[arg(long = "oci", required = true, num_args = 1..)]
    oci: Vec<PathBuf>,
    /// Where to write the instance (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Number of edge registries.
    #[arg(long, default_value_t = 3)]
    registries: usize,
    /// Storage of each registry in MB (default: half the layer-level bytes of all layers).
    #[arg(long)]
    storage_mb: Option<f64>,
    /// Connection limit of each registry.
    #[arg(long, default_value_t = 20.0)]
    connections: f64,
    /// Per-connection bandwidth of each registry, Mbit/s.
    #[arg(long, default_value_t = 15.0)]
    registry_mbps: f64,
    /// Bandwidth of the central registry, Mbit/s.
    #[arg(long, default_value_t = 5.0)]
    central_mbps: f64,
    /// Number of servers; each requests every image.
    #[arg(long, default_value_t = 3)]
    servers: usize,
    /// Request rate of every (server, image).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
}

/// Image names made unique: a name seen before gets `@<layout dir>`, then `#<n>`.
fn unique_names(images: &mut [(PathBuf, LayoutImage)]) {
    let mut seen = HashSet::new();
    for (dir, image) in images.iter_mut() {
        if !seen.insert(image.name.clone()) {
            let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            image.name = format!("{}@{}", image.name, dir_name.unwrap_or_default());
            let base = image.name.clone();
            let mut k = 2;
            while !seen.insert(image.name.clone()) {
                image.name = format!("{base}#{k}");
                k += 1;
            }
        }
    }
}

/// Decompose and time one layer; returns it and the files it adds to `files`.
fn inventory_layer(
    digest: &str,
    path: &std::path::Path,
    store: &dyn FileStore,
    files: &mut BTreeMap<String, f64>,
) -> Result<(Layer, bool)> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len() as f64;
    let (ids, tau_s, file_level) = match crate::inspect::measure(path, store)? {
        Ok((d, tau)) => {
            let mut ids = Vec::new();
            for (f, _) in d.recipe.tar.files() {
                let id = hex::encode(f);
                let stored = store
                    .stored_bytes(f)
                    .with_context(|| format!("file {id} of {digest} is not in the store"))?;
                files.insert(id.clone(), stored as f64);
                ids.push(id);
            }
            let recipe = format!("recipe:{digest}");
            files.insert(recipe.clone(), d.recipe.encode()?.len() as f64);
            ids.push(recipe);
            (ids, tau, true)
        }
        Err(reason) => {
            eprintln!("{digest}: held whole at file level: {reason}");
            let whole = format!("whole:{digest}");
            files.insert(whole.clone(), size);
            (vec![whole], 0.0, false)
        }
    };
    let layer = Layer {
        id: digest.to_string(),
        size,
        tau_s,
        files: ids,
    };
    Ok((layer, file_level))
}

pub fn inventory(a: InventoryArgs) -> Result<()> {
    let mut images = Vec::new();
    for dir in &a.oci {
        images.extend(
            strata_oci::Layout::open(dir)?
                .images()?
                .into_iter()
                .map(|i| (dir.clone(), i)),
        );
    }
    anyhow::ensure!(!images.is_empty(), "the layouts hold no image manifest");
    unique_names(&mut images);
    let tmp = tempfile::tempdir()?;
    let store = FsFileStore::open(tmp.path())?;
    let mut files = BTreeMap::new();
    let mut layers: Vec<Layer> = Vec::new();
    let mut file_level_layers = 0;
    for (_, image) in &images {
        for (digest, path) in &image.layers {
            let digest = digest.to_string();
            if layers.iter().any(|l| l.id == digest) {
                continue;
            }
            let (layer, file_level) = inventory_layer(&digest, path, &store, &mut files)?;
            file_level_layers += usize::from(file_level);
            layers.push(layer);
        }
    }
    let layer_bytes: f64 = layers.iter().map(|l| l.size).sum();
    let file_bytes: f64 = files.values().sum();
    let storage = a.storage_mb.map_or(layer_bytes / 2.0, |mb| mb * MB);
    let servers: Vec<String> = (1..=a.servers).map(|n| format!("server-{n}")).collect();
    let instance = Instance {
        format: INSTANCE_FORMAT.to_string(),
        registries: (1..=a.registries)
            .map(|r| Registry {
                name: format!("registry-{r}"),
                storage_bytes: storage,
                connections: a.connections,
                bandwidth_bytes_per_s: a.registry_mbps * MB / 8.0,
            })
            .collect(),
        central: Central {
            name: "central".to_string(),
            bandwidth_bytes_per_s: a.central_mbps * MB / 8.0,
        },
        requests: servers
            .iter()
            .flat_map(|s| {
                images.iter().map(|(_, i)| Request {
                    server: s.clone(),
                    image: i.name.clone(),
                    rate: a.rate,
                })
            })
            .collect(),
        servers,
        files: files
            .into_iter()
            .map(|(id, size)| File { id, size })
            .collect(),
        images: images
            .iter()
            .map(|(_, i)| Image {
                name: i.name.clone(),
                layers: i.layers.iter().map(|(d, _)| d.to_string()).collect(),
            })
            .collect(),
        notes: BTreeMap::from([(
            "source".to_string(),
            format!("strata plan inventory --oci {:?}", a.oci),
        )]),
        layers,
    };
    // The instance must load as `plan solve` will load it.
    strata_planner::Problem::new(instance.clone()).context("inventory built a bad instance")?;
    std::fs::write(&a.out, serde_json::to_vec(&instance)?)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let summary = json!({
        "out": a.out, "images": instance.images.len(), "layers": instance.layers.len(),
        "files": instance.files.len(), "file_level_layers": file_level_layers,
        "layer_level_bytes": layer_bytes, "file_level_bytes": file_bytes,
        "dedup_ratio": layer_bytes / file_bytes.max(1.0),
    });
    println!("{summary}");
    Ok(())
}
