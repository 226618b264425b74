//! Reading OCI image layouts (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), the one
//! reader every strata tool uses: the images a layout holds (nested indexes followed), their
//! tags, manifests, configs and layer blob files. The only module of this crate that touches
//! the filesystem, and only to read.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Digest;

/// Why a layout could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{0} is not an OCI layout (no index.json)")]
    NotALayout(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// How deep indexes may nest in a layout (a loop of indexes is refused, not followed).
const MAX_NESTING: usize = 8;

/// The annotation that names an image in a layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

/// One image manifest of a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutImage {
    /// The ref name of the nearest annotated index entry, else the manifest digest.
    pub name: String,
    /// The image manifest's digest.
    pub manifest: Digest,
    /// The config blob's digest.
    pub config: Option<Digest>,
    /// Layer digests in manifest order, each with its blob file.
    pub layers: Vec<(Digest, PathBuf)>,
}

impl Layout {
    /// The layout in `dir` (it must hold an `index.json`).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Layout, LayoutError> {
        let dir = dir.into();
        if !dir.join("index.json").is_file() {
            return Err(LayoutError::NotALayout(dir));
        }
        Ok(Layout { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of blob `digest`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// The bytes of blob `digest` (for manifests and configs: small).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        std::fs::read(&path).map_err(|source| LayoutError::Read { path, source })
    }

    /// The top-level index.
    pub fn index(&self) -> Result<Value, LayoutError> {
        read_json(&self.dir.join("index.json"))
    }

    /// The ref names of the top-level index's entries, in index order, with the digest each
    /// names (entries without a ref name are left out).
    pub fn tags(&self) -> Result<Vec<(String, Digest)>, LayoutError> {
        let mut out = Vec::new();
        for m in entries(&self.index()?) {
            if let Some(name) = m["annotations"][REF_NAME].as_str() {
                out.push((name.to_string(), entry_digest(m)?));
            }
        }
        Ok(out)
    }

    /// The digest the top-level entry named `tag` points at.
    pub fn resolve(&self, tag: &str) -> Result<Digest, LayoutError> {
        self.tags()?
            .into_iter()
            .find(|(name, _)| name == tag)
            .map(|(_, d)| d)
            .ok_or_else(|| {
                LayoutError::Invalid(format!("{}: no image named {tag}", self.dir.display()))
            })
    }

    /// Every image manifest reachable from the index (nested indexes included), in index
    /// order.
    pub fn images(&self) -> Result<Vec<LayoutImage>, LayoutError> {
        let mut out = Vec::new();
        self.collect(&self.index()?, None, 0, &mut out)?;
        Ok(out)
    }

    /// The images under index `doc`, depth first in index order; `name` is the tag of the
    /// entry that led here.
    fn collect(
        &self,
        doc: &Value,
        name: Option<&str>,
        depth: usize,
        out: &mut Vec<LayoutImage>,
    ) -> Result<(), LayoutError> {
        if depth > MAX_NESTING {
            return Err(LayoutError::Invalid(format!(
                "indexes nested more than {MAX_NESTING} deep"
            )));
        }
        for m in entries(doc) {
            let digest = entry_digest(m)?;
            let name = m["annotations"][REF_NAME]
                .as_str()
                .or(name)
                .map(str::to_string)
                .unwrap_or_else(|| digest.to_string());
            let child = read_json(&self.blob_path(&digest))?;
            if child["layers"].is_array() {
                out.push(self.image(name, digest, &child)?);
            } else {
                self.collect(&child, Some(&name), depth + 1, out)?;
            }
        }
        Ok(())
    }

    fn image(
        &self,
        name: String,
        manifest: Digest,
        doc: &Value,
    ) -> Result<LayoutImage, LayoutError> {
        let config = match doc["config"]["digest"].as_str() {
            Some(d) => Some(parse_digest(d)?),
            None => None,
        };
        let mut layers = Vec::new();
        for l in doc["layers"].as_array().into_iter().flatten() {
            let d = parse_digest(l["digest"].as_str().ok_or_else(|| {
                LayoutError::Invalid(format!("{manifest}: a layer without a digest"))
            })?)?;
            let path = self.blob_path(&d);
            layers.push((d, path));
        }
        Ok(LayoutImage {
            name,
            manifest,
            config,
            layers,
        })
    }

    /// Every blob file of the layout, and the bytes they hold together.
    pub fn blob_files(&self) -> Result<(Vec<PathBuf>, u64), LayoutError> {
        let mut files = Vec::new();
        let mut total = 0;
        let blobs = self.dir.join("blobs");
        let read_dir = |p: &Path| {
            std::fs::read_dir(p).map_err(|source| LayoutError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        for alg in read_dir(&blobs)? {
            let alg = alg.map_err(|source| LayoutError::Read {
                path: blobs.clone(),
                source,
            })?;
            for blob in read_dir(&alg.path())? {
                let blob = blob.map_err(|source| LayoutError::Read {
                    path: alg.path(),
                    source,
                })?;
                let meta = blob.metadata().map_err(|source| LayoutError::Read {
                    path: blob.path(),
                    source,
                })?;
                if meta.is_file() {
                    total += meta.len();
                    files.push(blob.path());
                }
            }
        }
        files.sort();
        Ok((files, total))
    }
}

fn read_json(path: &Path) -> Result<Value, LayoutError> {
    let bytes = std::fs::read(path).map_err(|source| LayoutError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| LayoutError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn entries(doc: &Value) -> &[Value] {
    doc["manifests"].as_array().map_or(&[], Vec::as_slice)
}

fn parse_digest(d: &str) -> Result<Digest, LayoutError> {
    d.parse()
        .map_err(|e| LayoutError::Invalid(format!("digest {d:?}: {e}")))
}

fn entry_digest(m: &Value) -> Result<Digest, LayoutError> {
    parse_digest(
        m["digest"]
            .as_str()
            .ok_or_else(|| LayoutError::Invalid("an index entry without a digest".into()))?,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn put(dir: &Path, bytes: &[u8]) -> Digest {
        let d = Digest::sha256(bytes);
        let p = dir.join("blobs/sha256");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(d.hex()), bytes).unwrap();
        d
    }

    fn manifest(dir: &Path, layer: &[u8]) -> Digest {
        let (l, c) = (put(dir, layer), put(dir, b"{}"));
        let m = serde_json::json!({"schemaVersion": 2, "config": {"digest": c.to_string(), "size": 2},
            "layers": [{"digest": l.to_string(), "size": layer.len()}]});
        put(dir, m.to_string().as_bytes())
    }

    #[test]
    fn images_tags_and_blobs_of_a_layout_with_a_nested_index() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(matches!(Layout::open(dir), Err(LayoutError::NotALayout(_))));
        let (a, b, c) = (
            manifest(dir, b"layer a"),
            manifest(dir, b"layer b"),
            manifest(dir, b"layer c"),
        );
        let nested = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"digest": b.to_string()}, {"digest": c.to_string()}]});
        let nested = put(dir, nested.to_string().as_bytes());
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"digest": a.to_string(), "annotations": {REF_NAME: "one"}},
            {"digest": nested.to_string(), "annotations": {REF_NAME: "multi"}},
            {"digest": a.to_string()}]});
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();

        let layout = Layout::open(dir).unwrap();
        assert_eq!(
            layout.tags().unwrap(),
            vec![
                ("one".to_string(), a.clone()),
                ("multi".to_string(), nested.clone())
            ]
        );
        assert_eq!(layout.resolve("multi").unwrap(), nested);
        assert!(layout.resolve("nope").is_err());
        let images = layout.images().unwrap();
        let names: Vec<(&str, &Digest)> = images
            .iter()
            .map(|i| (i.name.as_str(), &i.manifest))
            .collect();
        assert_eq!(
            names,
            vec![
                ("one", &a),
                ("multi", &b),
                ("multi", &c),
                (a.to_string().as_str(), &a)
            ]
        );
        let (layer, path) = &images[1].layers[0];
        assert_eq!(layer, &Digest::sha256(b"layer b"));
        assert_eq!(std::fs::read(path).unwrap(), b"layer b");
        assert_eq!(images[0].config, Some(Digest::sha256(b"{}")));
        let (files, bytes) = layout.blob_files().unwrap();
        // 3 layers, 1 shared config, 3 manifests, 1 nested index.
        assert_eq!(files.len(), 8);
        assert!(bytes > 0);
    }

    #[test]
    fn a_broken_layout_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("index.json"),
            "{\"manifests\": [{\"digest\": \"x\"}]}",
        )
        .unwrap();
        let e = Layout::open(tmp.path()).unwrap().images().unwrap_err();
        assert!(e.to_string().contains("digest \"x\""), "{e}");
        std::fs::write(
            tmp.path().join("index.json"),
            format!(
                "{{\"manifests\": [{{\"digest\": \"{}\"}}]}}",
                Digest::sha256(b"gone")
            ),
        )
        .unwrap();
        let e = Layout::open(tmp.path()).unwrap().images().unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
    }
}
