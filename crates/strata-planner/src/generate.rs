//! A seeded workload generator calibrated to the MIS paper's two cases.
//!
//! | | small | large |
//! |---|---|---|
//! | images / layers | 35 / 70 | 131 / 744 |
//! | file references / unique files | 446,945 / 37,656 | 2,173,793 / 191,092 |
//! | registries, bandwidth | 3 at 15 Mbps | 6 at 15 Mbps |
//! | central bandwidth | 5 Mbps | 5 Mbps |
//! | storage per registry | 250-1600 MB | 200-3000 MB |
//! | connections per registry | 10-60 | 100-600 |
//! | servers, request rates | 3, 1-342 (Zipf) | 6, 2-1075 (Zipf) |
//!
//! Our assumptions (the paper gives only the figures above):
//! - files come in packages (log-normal, median 30 files) and layers are made of whole
//!   packages, as real layers are made of installed packages: files that travel together
//!   have the same layer set, which is what the exact file-group reduction exploits; every
//!   package is used at least once, further package references follow Zipf popularity
//!   (exponent 0.7) over a random ranking, until the file references reach the case's count
//!   (overshooting by at most one package). Groups: about 800 (small), 3,900 (large);
//! - file sizes are log-normal (median 2 KiB, sigma 1.6), the smaller sizes given to the
//!   more referenced files (reference count times a log-normal noise of sigma 0.1): shared
//!   files are small (libraries, configuration, locale data), large files mostly belong to
//!   one layer. This puts the byte dedup ratio at 4.3x (small) and 3.4x (large) for seed 1,
//!   inside the 2-5x the paper reports, with the paper's 11-12 references per unique file
//!   (sizes drawn independently of popularity gave 10-11x);
//! - a layer's size s_l is the sum of its files' sizes;
//! - 10% of the layers are base layers shared by images (Zipf choice); every image has one
//!   base and at least one layer of its own;
//! - tau_l = s_l / 20 MB/s + 20 us per file: the rebuild throughput strata's file-level
//!   store measured on this machine (`strata-bench rebuild`, 12-25 MB/s of tar) plus a
//!   per-file cost, until measured values are supplied in the instance (`plan inventory`);
//! - each server ranks the images at random and gives rank k the rate lo + (hi - lo) / k.

use std::collections::BTreeSet;

use crate::instance::{Central, File, Image, Instance, Layer, Registry, Request, INSTANCE_FORMAT};
use crate::rng::SplitMix64;

pub(crate) const MB: f64 = 1_000_000.0;
pub(crate) const REBUILD_BYTES_PER_S: f64 = 20.0 * MB;
pub(crate) const PER_FILE_S: f64 = 20e-6;
const FILE_MEDIAN_BYTES: f64 = 2048.0;
const FILE_SIGMA: f64 = 1.6;
/// Spread of the size-popularity ranking: 0 gives the most referenced files strictly the
/// smallest sizes; larger values mix them (and raise the byte dedup ratio).
const POPULARITY_NOISE: f64 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Small,
    Large,
}

/// Generator parameters; `for_scale` gives the paper's, and sweeps override single fields.
#[derive(Debug, Clone)]
pub struct GenParams {
    pub images: usize,
    pub layers: usize,
    pub file_refs: usize,
    pub unique_files: usize,
    pub registries: usize,
    pub servers: usize,
    /// Storage per registry in MB: a fixed value, or drawn from `storage_mb_range`.
    pub storage_mb: Option<f64>,
    pub storage_mb_range: (f64, f64),
    pub connections: Option<f64>,
    pub connections_range: (f64, f64),
    pub rate_range: (f64, f64),
    pub registry_mbps: f64,
    pub central_mbps: f64,
}

impl GenParams {
    pub fn for_scale(scale: Scale) -> Self {
        match scale {
            Scale::Small => GenParams {
                images: 35,
                layers: 70,
                file_refs: 446_945,
                unique_files: 37_656,
                registries: 3,
                servers: 3,
                storage_mb: None,
                storage_mb_range: (250.0, 1600.0),
                connections: None,
                connections_range: (10.0, 60.0),
                rate_range: (1.0, 342.0),
                registry_mbps: 15.0,
                central_mbps: 5.0,
            },
            Scale::Large => GenParams {
                images: 131,
                layers: 744,
                file_refs: 2_173_793,
                unique_files: 191_092,
                registries: 6,
                servers: 6,
                storage_mb: None,
                storage_mb_range: (200.0, 3000.0),
                connections: None,
                connections_range: (100.0, 600.0),
                rate_range: (2.0, 1075.0),
                registry_mbps: 15.0,
                central_mbps: 5.0,
            },
        }
    }
}

impl GenParams {
    /// The same case with `n` images; layers and files scale in proportion (at least one
    /// layer more than images, so images can share).
    pub fn with_images(mut self, n: usize) -> Self {
        let f = n as f64 / self.images as f64;
        let scaled = |v: usize| ((v as f64 * f).round() as usize).max(1);
        self.layers = scaled(self.layers).max(n + 1);
        self.file_refs = scaled(self.file_refs);
        self.unique_files = scaled(self.unique_files);
        self.images = n;
        self
    }
}

pub(crate) fn lognormal(rng: &mut SplitMix64, median: f64, sigma: f64) -> f64 {
    // Box-Muller.
    let (u1, u2) = (rng.next_f64().max(1e-12), rng.next_f64());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    median * (sigma * z).exp()
}

/// Sampler of ranks 0..n with probability proportional to 1/(k+1)^s.
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let cdf = (0..n)
            .map(|k| {
                acc += 1.0 / ((k + 1) as f64).powf(s);
                acc
            })
            .collect();
        Zipf { cdf }
    }

    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> usize {
        let total = self.cdf.last().copied().unwrap_or(0.0);
        let x = rng.next_f64() * total;
        self.cdf
            .partition_point(|&c| c <= x)
            .min(self.cdf.len().saturating_sub(1))
    }
}

fn uniform(rng: &mut SplitMix64, (lo, hi): (f64, f64)) -> f64 {
    lo + (hi - lo) * rng.next_f64()
}

pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Unique files partitioned into packages of log-normal size (median 30 files).
fn packages(g: &GenParams, rng: &mut SplitMix64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < g.unique_files {
        let n = (lognormal(rng, 30.0, 1.0).round() as usize).clamp(1, g.unique_files - start);
        out.push(start..start + n);
        start += n;
    }
    out
}

/// Files of each layer: layers are made of whole packages. Every package is used at least
/// once; further package references follow Zipf popularity over a ranking that favours
/// small packages, until the file references reach the target.
fn layer_membership(g: &GenParams, rng: &mut SplitMix64) -> Vec<BTreeSet<usize>> {
    let pkgs = packages(g, rng);
    let mut layers: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); g.layers];
    let mut chosen: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); g.layers];
    let mut refs = 0;
    for (k, pkg) in pkgs.iter().enumerate() {
        let l = (rng.next_u64() % g.layers as u64) as usize;
        chosen[l].insert(k);
        refs += pkg.len();
    }
    let mut ranked: Vec<usize> = (0..pkgs.len()).collect();
    shuffle(&mut ranked, rng);
    let zipf = Zipf::new(pkgs.len(), 0.7);
    let mut misses = 0;
    while refs < g.file_refs && misses < 4 * g.file_refs {
        let k = ranked[zipf.sample(rng)];
        let l = (rng.next_u64() % g.layers as u64) as usize;
        if chosen[l].insert(k) {
            refs += pkgs[k].len();
        } else {
            misses += 1;
        }
    }
    for (l, ks) in chosen.iter().enumerate() {
        for &k in ks {
            layers[l].extend(pkgs[k].clone());
        }
    }
    layers
}

/// Log-normal file sizes, the smaller ones given to the more referenced files (ranked by
/// reference count times a log-normal noise): files shared by many layers are small (shared
/// libraries, configuration, locale data), large files are mostly in one layer.
fn file_sizes(g: &GenParams, membership: &[BTreeSet<usize>], rng: &mut SplitMix64) -> Vec<f64> {
    let mut refs = vec![0u32; g.unique_files];
    for files in membership {
        for &f in files {
            refs[f] += 1;
        }
    }
    let mut sizes: Vec<f64> = (0..g.unique_files)
        .map(|_| {
            lognormal(rng, FILE_MEDIAN_BYTES, FILE_SIGMA)
                .round()
                .max(1.0)
        })
        .collect();
    sizes.sort_by(|a, b| a.total_cmp(b));
    let mut order: Vec<(f64, usize)> = refs
        .iter()
        .enumerate()
        .map(|(f, &n)| (f64::from(n) * lognormal(rng, 1.0, POPULARITY_NOISE), f))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = vec![0.0; g.unique_files];
    for ((_, f), size) in order.into_iter().zip(sizes) {
        out[f] = size;
    }
    out
}

/// Images: one shared base layer each (Zipf over the bases) plus their own layers.
fn image_layers(g: &GenParams, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    let bases = (g.layers / 10)
        .max(1)
        .min(g.layers.saturating_sub(g.images))
        .max(1);
    let base_pick = Zipf::new(bases, 1.0);
    let mut own: Vec<usize> = (bases..g.layers).collect();
    shuffle(&mut own, rng);
    let mut images: Vec<Vec<usize>> = (0..g.images).map(|_| vec![base_pick.sample(rng)]).collect();
    for (k, l) in own.into_iter().enumerate() {
        let i = if k < g.images {
            k
        } else {
            (rng.next_u64() % g.images as u64) as usize
        };
        images[i].push(l);
    }
    images
}

/// The edge registries of `g`: fixed storage and connections, or drawn from its ranges.
pub(crate) fn registries(g: &GenParams, rng: &mut SplitMix64) -> Vec<Registry> {
    (0..g.registries)
        .map(|r| Registry {
            name: format!("r{r}"),
            storage_bytes: g
                .storage_mb
                .unwrap_or_else(|| uniform(rng, g.storage_mb_range).round())
                * MB,
            connections: g
                .connections
                .unwrap_or_else(|| uniform(rng, g.connections_range).round()),
            bandwidth_bytes_per_s: g.registry_mbps * MB / 8.0,
        })
        .collect()
}

/// Generate an instance with `seed`.
pub fn generate(g: &GenParams, seed: u64) -> Instance {
    let mut rng = SplitMix64::new(seed);
    let membership = layer_membership(g, &mut rng);
    let sizes = file_sizes(g, &membership, &mut rng);
    let files = sizes
        .iter()
        .enumerate()
        .map(|(f, &size)| File {
            id: format!("f{f}"),
            size,
        })
        .collect();
    let layers = membership
        .iter()
        .enumerate()
        .map(|(l, fs)| {
            let size: f64 = fs.iter().map(|&f| sizes[f]).sum();
            Layer {
                id: format!("l{l}"),
                size,
                tau_s: size / REBUILD_BYTES_PER_S + fs.len() as f64 * PER_FILE_S,
                files: fs.iter().map(|f| format!("f{f}")).collect(),
            }
        })
        .collect();
    let images: Vec<Image> = image_layers(g, &mut rng)
        .into_iter()
        .enumerate()
        .map(|(i, ls)| Image {
            name: format!("img{i}"),
            layers: ls.iter().map(|l| format!("l{l}")).collect(),
        })
        .collect();
    let registries = registries(g, &mut rng);
    let servers: Vec<String> = (0..g.servers).map(|n| format!("n{n}")).collect();
    let mut requests = Vec::new();
    for n in &servers {
        let mut order: Vec<usize> = (0..g.images).collect();
        shuffle(&mut order, &mut rng);
        for (rank, &i) in order.iter().enumerate() {
            let (lo, hi) = g.rate_range;
            let rate = (lo + (hi - lo) / (rank + 1) as f64).round();
            requests.push(Request {
                server: n.clone(),
                image: images[i].name.clone(),
                rate,
            });
        }
    }
    let mut notes = std::collections::BTreeMap::new();
    notes.insert(
        "generator".into(),
        "strata-planner generate (see crate docs for the model)".into(),
    );
    notes.insert("seed".into(), seed.to_string());
    Instance {
        format: INSTANCE_FORMAT.to_string(),
        registries,
        central: Central {
            name: "central".into(),
            bandwidth_bytes_per_s: g.central_mbps * MB / 8.0,
        },
        servers,
        files,
        layers,
        images,
        requests,
        notes,
    }
}
