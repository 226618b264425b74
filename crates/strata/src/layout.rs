//! Reading OCI image layouts (`index.json` + `blobs/`): the images they hold and each image's
//! layer blobs, for `strata inspect dedup` and `strata plan inventory`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// One image manifest of a layout.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// The `org.opencontainers.image.ref.name` of the nearest annotated index entry, else
    /// the manifest digest.
    pub name: String,
    /// Layer digests (`sha256:...`) in manifest order, each with its blob file.
    pub layers: Vec<(String, PathBuf)>,
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("unsupported digest {digest}"))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
}

/// Every image manifest reachable from the layout's index (nested indexes included).
pub fn images(dir: &Path) -> Result<Vec<LayoutImage>> {
    if !dir.join("index.json").is_file() {
        anyhow::bail!("{} is not an OCI layout (no index.json)", dir.display());
    }
    let index = read_json(&dir.join("index.json"))?;
    let mut pending: Vec<(Value, Option<String>)> = vec![(index, None)];
    let mut out = Vec::new();
    while let Some((doc, name)) = pending.pop() {
        for m in doc["manifests"].as_array().into_iter().flatten() {
            let digest = m["digest"].as_str().context("manifest without digest")?;
            let ref_name = m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_string)
                .or_else(|| name.clone())
                .unwrap_or_else(|| digest.to_string());
            pending.push((read_json(&blob_path(dir, digest)?)?, Some(ref_name)));
        }
        if let Some(layers) = doc["layers"].as_array() {
            let layers = layers
                .iter()
                .map(|l| {
                    let digest = l["digest"].as_str().context("layer without digest")?;
                    Ok((digest.to_string(), blob_path(dir, digest)?))
                })
                .collect::<Result<Vec<_>>>()?;
            let name = name.unwrap_or_else(|| "unnamed".to_string());
            out.push(LayoutImage { name, layers });
        }
    }
    out.reverse();
    Ok(out)
}
