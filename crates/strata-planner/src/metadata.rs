//! Instances from a registry's metadata (`strata plan generate --from-metadata`): the images
//! a catalogue holds, with their layers' digests and sizes and their pull counts, so users
//! plan for their own catalogue. Layers, their sizes and their sharing are real; files and
//! the topology are modelled, seeded:
//!
//! - A layer listed by several images (the same digest) is one layer; two sizes for one
//!   digest are refused. An image may list a layer several times (older Docker images list
//!   the empty layer so); it is pulled once ([`crate::Problem`]).
//! - Files: what file-level storage can share beyond whole layers, modelled as packages. A
//!   pool of packages (log-normal sizes, median 256 kB, sigma 1.5) is drawn from with Zipf
//!   popularity (exponent 0.7) over a seeded ranking: each layer takes distinct packages until
//!   `shared_fraction` of its size is covered (never more than its size), and the rest of the
//!   layer is one file of its own (`own:<digest>`), so a layer's files sum to its size. The
//!   pool holds enough packages for each to be drawn about 4 times. Files that always travel
//!   together are one file here: the planner merges such files anyway (file groups), so the
//!   model loses nothing by it and the instance stays small.
//! - tau_l = s_l / 20 MB/s + 20 us per file, files counted at a mean of 7.4 kB (the
//!   synthetic generator's rebuild model, [`crate::generate`]).
//! - Topology from [`GenParams`] (the MIS paper's large case by default): registries,
//!   storage, connections, bandwidths, servers. Every server requests every pulled image at
//!   a rate proportional to its pulls, the most pulled at the case's highest rate, none
//!   below its lowest, each server's rates varied by a seeded log-normal factor (sigma
//!   0.3); images with no pulls are not requested.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::generate::{lognormal, shuffle, GenParams, Zipf, MB, PER_FILE_S, REBUILD_BYTES_PER_S};
use crate::instance::{Central, File, Image, Instance, Layer, Request, INSTANCE_FORMAT};
use crate::rng::SplitMix64;
use crate::PlannerError;

pub const METADATA_FORMAT: &str = "strata-registry-metadata/v1";

const PACKAGE_MEDIAN_BYTES: f64 = 256_000.0;
const PACKAGE_SIGMA: f64 = 1.5;
const DRAWS_PER_PACKAGE: f64 = 4.0;
const MEAN_FILE_BYTES: f64 = 7_400.0;
const SERVER_RATE_SIGMA: f64 = 0.3;

/// A registry's catalogue as `--from-metadata` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub format: String,
    pub images: Vec<MetaImage>,
    /// Free-form provenance, carried into the instance's notes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaImage {
    /// `REPOSITORY:TAG` or any unique name.
    pub name: String,
    /// Pull count (any unit of time): the image's popularity.
    pub pulls: f64,
    /// Layers in manifest order.
    pub layers: Vec<MetaLayer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaLayer {
    pub digest: String,
    /// Bytes of the layer blob.
    pub size: f64,
}

/// How files are modelled.
#[derive(Debug, Clone, Copy)]
pub struct FileModel {
    /// Share of a layer's bytes made of packages other layers may hold too.
    pub shared_fraction: f64,
}

impl Default for FileModel {
    fn default() -> Self {
        FileModel {
            shared_fraction: 0.3,
        }
    }
}

fn bad(what: String) -> PlannerError {
    PlannerError::Unsupported(format!("metadata: {what}"))
}

impl Metadata {
    /// Parse metadata, with the JSON error named as for instances.
    pub fn from_json(text: &str) -> Result<Metadata, PlannerError> {
        let m: Metadata =
            serde_json::from_str(text).map_err(|e| crate::instance::json_error(text, e))?;
        if m.format != METADATA_FORMAT {
            return Err(PlannerError::Format {
                found: m.format,
                expected: METADATA_FORMAT,
            });
        }
        Ok(m)
    }

    /// Unique layers in first-listed order with their sizes; checks names, pulls and sizes.
    fn layers(&self) -> Result<Vec<(String, f64)>, PlannerError> {
        let mut names = std::collections::HashSet::new();
        let mut sizes: HashMap<&str, f64> = HashMap::new();
        let mut order = Vec::new();
        for img in &self.images {
            if !names.insert(img.name.as_str()) {
                return Err(bad(format!("image {:?} is listed twice", img.name)));
            }
            if !(img.pulls.is_finite() && img.pulls >= 0.0) {
                return Err(bad(format!(
                    "image {:?}: pulls must be a finite number >= 0, got {}",
                    img.name, img.pulls
                )));
            }
            for l in &img.layers {
                if !(l.size.is_finite() && l.size >= 0.0) {
                    return Err(bad(format!(
                        "layer {:?} of {:?}: size must be a finite number >= 0, got {}",
                        l.digest, img.name, l.size
                    )));
                }
                match sizes.get(l.digest.as_str()) {
                    Some(&s) if s != l.size => {
                        return Err(bad(format!(
                            "layer {:?} has two sizes, {s} and {} (in {:?}): one digest, one blob",
                            l.digest, l.size, img.name
                        )))
                    }
                    Some(_) => {}
                    None => {
                        sizes.insert(&l.digest, l.size);
                        order.push((l.digest.clone(), l.size));
                    }
                }
            }
        }
        if self.images.is_empty() {
            return Err(bad("no images".into()));
        }
        Ok(order)
    }
}

/// An instance for the catalogue `m` on the topology of `g`, files modelled by `files`,
/// seeded with `seed`.
pub fn from_metadata(
    m: &Metadata,
    g: &GenParams,
    files: FileModel,
    seed: u64,
) -> Result<Instance, PlannerError> {
    if !(0.0..=1.0).contains(&files.shared_fraction) {
        return Err(bad(format!(
            "the shared fraction must be within 0 and 1, got {}",
            files.shared_fraction
        )));
    }
    let unique = m.layers()?;
    let mut rng = SplitMix64::new(seed);
    let total: f64 = unique.iter().map(|(_, s)| s).sum();
    let pool_n = ((total * files.shared_fraction / (PACKAGE_MEDIAN_BYTES * DRAWS_PER_PACKAGE))
        .round() as usize)
        .max(1);
    let pool: Vec<f64> = (0..pool_n)
        .map(|_| {
            lognormal(&mut rng, PACKAGE_MEDIAN_BYTES, PACKAGE_SIGMA)
                .round()
                .max(1.0)
        })
        .collect();
    let mut ranked: Vec<usize> = (0..pool_n).collect();
    shuffle(&mut ranked, &mut rng);
    let zipf = Zipf::new(pool_n, 0.7);
    let mut used = vec![false; pool_n];
    let mut out_files: Vec<File> = Vec::new();
    let mut layers = Vec::with_capacity(unique.len());
    for (digest, size) in &unique {
        let want = size * files.shared_fraction;
        let mut taken = std::collections::BTreeSet::new();
        let mut shared = 0.0;
        let mut misses = 0;
        while shared < want && misses < 64 {
            let k = ranked[zipf.sample(&mut rng)];
            if taken.contains(&k) || shared + pool[k] > *size {
                misses += 1;
                continue;
            }
            taken.insert(k);
            shared += pool[k];
        }
        let mut ids: Vec<String> = taken
            .iter()
            .map(|&k| {
                used[k] = true;
                format!("pkg{k}")
            })
            .collect();
        let own = size - shared;
        if own > 0.0 || ids.is_empty() {
            let id = format!("own:{digest}");
            out_files.push(File {
                id: id.clone(),
                size: own.max(0.0),
            });
            ids.push(id);
        }
        layers.push(Layer {
            id: digest.clone(),
            size: *size,
            tau_s: size / REBUILD_BYTES_PER_S + (size / MEAN_FILE_BYTES).ceil() * PER_FILE_S,
            files: ids,
        });
    }
    for (k, &size) in pool.iter().enumerate() {
        if used[k] {
            out_files.push(File {
                id: format!("pkg{k}"),
                size,
            });
        }
    }
    let images: Vec<Image> = m
        .images
        .iter()
        .map(|i| Image {
            name: i.name.clone(),
            layers: i.layers.iter().map(|l| l.digest.clone()).collect(),
        })
        .collect();
    let registries = crate::generate::registries(g, &mut rng);
    let servers: Vec<String> = (0..g.servers).map(|n| format!("n{n}")).collect();
    let most = m.images.iter().map(|i| i.pulls).fold(0.0, f64::max);
    let (lo, hi) = g.rate_range;
    let mut requests = Vec::new();
    for n in &servers {
        for img in m.images.iter().filter(|i| i.pulls > 0.0) {
            let base = (hi * img.pulls / most).max(lo);
            let rate = (base * lognormal(&mut rng, 1.0, SERVER_RATE_SIGMA))
                .round()
                .max(1.0);
            requests.push(Request {
                server: n.clone(),
                image: img.name.clone(),
                rate,
            });
        }
    }
    let mut notes = m.notes.clone();
    notes.insert(
        "generator".into(),
        format!(
            "strata-planner from_metadata (see its docs for the model), shared fraction {}",
            files.shared_fraction
        ),
    );
    notes.insert("seed".into(), seed.to_string());
    Ok(Instance {
        format: INSTANCE_FORMAT.to_string(),
        registries,
        central: Central {
            name: "central".into(),
            bandwidth_bytes_per_s: g.central_mbps * MB / 8.0,
        },
        servers,
        files: out_files,
        layers,
        images,
        requests,
        notes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::generate::Scale;
    use crate::Problem;

    fn meta() -> Metadata {
        let layer = |d: &str, s: f64| MetaLayer {
            digest: d.into(),
            size: s,
        };
        Metadata {
            format: METADATA_FORMAT.into(),
            images: vec![
                MetaImage {
                    name: "a:1".into(),
                    pulls: 1000.0,
                    layers: vec![
                        layer("base", 3e7),
                        layer("empty", 32.0),
                        layer("a", 1e7),
                        layer("empty", 32.0),
                    ],
                },
                MetaImage {
                    name: "b:1".into(),
                    pulls: 10.0,
                    layers: vec![layer("base", 3e7), layer("b", 5e6)],
                },
                MetaImage {
                    name: "c:1".into(),
                    pulls: 0.0,
                    layers: vec![layer("c", 2e6)],
                },
            ],
            notes: BTreeMap::new(),
        }
    }

    #[test]
    fn layers_are_the_catalogue_s_and_files_sum_to_them() {
        let g = GenParams::for_scale(Scale::Large);
        let i = from_metadata(&meta(), &g, FileModel::default(), 7).unwrap();
        let p = Problem::new(i.clone()).unwrap();
        assert_eq!(i.layers.len(), 5, "one layer per digest");
        let sizes: HashMap<&str, f64> = i.files.iter().map(|f| (f.id.as_str(), f.size)).collect();
        for l in &i.layers {
            let sum: f64 = l.files.iter().map(|f| sizes[f.as_str()]).sum();
            assert!((sum - l.size).abs() < 1e-6, "{}: {sum} vs {}", l.id, l.size);
        }
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Pulls set the rates: c (no pulls) is not requested, a above b on every server.
        assert!(i.requests.iter().all(|r| r.image != "c:1"));
        for n in &i.servers {
            let rate = |img: &str| {
                i.requests
                    .iter()
                    .find(|r| &r.server == n && r.image == img)
                    .unwrap()
                    .rate
            };
            assert!(rate("a:1") > rate("b:1"));
        }
        // Seeded: the same seed, the same instance; another seed, other files.
        assert_eq!(
            i,
            from_metadata(&meta(), &g, FileModel::default(), 7).unwrap()
        );
        assert_ne!(
            i.files,
            from_metadata(&meta(), &g, FileModel::default(), 8)
                .unwrap()
                .files
        );
    }

    #[test]
    fn bad_metadata_is_named() {
        let g = GenParams::for_scale(Scale::Large);
        let mut m = meta();
        m.images[1].layers[0].size = 1.0;
        let e = from_metadata(&m, &g, FileModel::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"base\" has two sizes"), "{e}");
        let mut m = meta();
        m.images[1].name = "a:1".into();
        let e = from_metadata(&m, &g, FileModel::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("listed twice"), "{e}");
        let mut m = meta();
        m.images[0].pulls = -1.0;
        let e = from_metadata(&m, &g, FileModel::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pulls"), "{e}");
        let e = from_metadata(
            &meta(),
            &g,
            FileModel {
                shared_fraction: 1.5,
            },
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("shared fraction"), "{e}");
        let e = Metadata::from_json(r#"{"format": "strata-registry-metadata/v1", "images": [{"name": "x", "pulls": NaN, "layers": []}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"pulls\" is NaN"), "{e}");
    }
}
