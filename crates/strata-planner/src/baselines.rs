//! The baselines MIS is compared with, each as its source describes it and with what we had
//! to assume. All of them are routed by the same greedy router as the MIS strategies
//! ([`crate::routes::greedy_routes`]), so the comparison isolates what each one stores.
//!
//! `sps`, after Smet et al., "Docker layer placement for on-demand provisioning of services
//! on edge clouds" (IEEE TNSM 2018): layers are placed whole on the edge nodes to maximise
//! the demand served within a delay limit, under storage limits, by an iterative heuristic
//! that solves one node's sub-problem at a time with the others fixed. Assumed here: a
//! demand (server, image) is satisfied when every layer of its image is held whole by one
//! registry, which also has a connection for each of those layers (so its delay limit is
//! the image's pull time from an edge registry); a registry's sub-problem is a knapsack
//! over images (value: the rates of the demands it would newly satisfy with its free
//! connections; cost: the bytes of the layers it does not hold yet) solved greedily by value
//! per byte; passes over the registries repeat, each re-solving one registry from empty
//! with the others fixed, while the satisfied demand grows (at most [`SPS_PASSES`]).
//!
//! `gfr`, after DupHunter (Zhao et al., USENIX ATC 2020): every registry stores
//! deduplicated files, and layers that a request predictor expects to be pulled are
//! reconstructed ahead of time into a bounded cache, so those pulls skip tau. Assumed here:
//! the predictor is perfect (it knows the request rates: generous to gfr); the cache holds
//! whole layers and takes [`GFR_CACHE_SHARE`] of the registry's storage budget (the model
//! has one budget per registry); files go to every registry for the most requested images
//! first (rate per byte), as many as fit; the cache takes the most requested layers the
//! registry holds as files, as many as fit (files that only a cached layer used are not
//! kept: the model serves that layer from the copy, which favours gfr slightly).

use crate::placement::{Catalog, Hold, Placement, Stamps};
use crate::plan::Granularity;

/// Most passes of the sps heuristic over the registries.
pub const SPS_PASSES: usize = 4;

/// Share of each registry's storage that gfr keeps for its cache of reconstructed layers.
pub const GFR_CACHE_SHARE: f64 = 0.1;

/// Request rate per image, and the demands of each image, most requested first.
struct Demand {
    rate: Vec<f64>,
    of_image: Vec<Vec<usize>>,
}

impl Demand {
    fn new(c: Catalog) -> Self {
        let p = c.p;
        let mut rate = vec![0.0; p.instance.images.len()];
        let mut of_image = vec![Vec::new(); p.instance.images.len()];
        for (d, &(_, i, r)) in p.demands.iter().enumerate() {
            rate[i] += r;
            of_image[i].push(d);
        }
        for ds in &mut of_image {
            ds.sort_by(|&a, &b| p.demands[b].2.total_cmp(&p.demands[a].2).then(a.cmp(&b)));
        }
        Demand { rate, of_image }
    }
}

/// Registry `r`'s sps sub-problem: fill it from empty with the images whose unsatisfied
/// demands bring the most rate per new byte. Marks the demands it satisfies.
fn sps_fill(
    c: Catalog,
    pl: &mut Placement,
    r: usize,
    dem: &Demand,
    satisfied: &mut [Option<usize>],
) {
    let p = c.p;
    pl.clear(r);
    for s in satisfied.iter_mut() {
        if *s == Some(r) {
            *s = None;
        }
    }
    let budget = p.registries()[r].storage_bytes;
    let mut conns = p.registries()[r].connections.floor().max(0.0);
    loop {
        let mut best: Option<(f64, usize, Vec<usize>)> = None;
        for (i, layers) in p.image_layers.iter().enumerate() {
            let per_demand = layers.len() as f64;
            let room = (conns / per_demand.max(1.0)).floor() as usize;
            let gained: Vec<usize> = dem.of_image[i]
                .iter()
                .copied()
                .filter(|&d| satisfied[d].is_none())
                .take(room)
                .collect();
            if gained.is_empty() {
                continue;
            }
            let bytes: f64 = layers
                .iter()
                .filter(|&&l| pl.hold(r, l) == Hold::None)
                .map(|&l| p.layers()[l].size)
                .sum();
            if pl.used(r) + bytes > budget * (1.0 + 1e-9) {
                continue;
            }
            let value: f64 = gained.iter().map(|&d| p.demands[d].2).sum();
            let score = value / bytes.max(1.0);
            if best.as_ref().is_none_or(|b| score > b.0) {
                best = Some((score, i, gained));
            }
        }
        let Some((_, i, gained)) = best else {
            return;
        };
        for &l in &p.image_layers[i] {
            pl.set(c, r, l, Hold::Whole);
        }
        conns -= (gained.len() * p.image_layers[i].len()) as f64;
        for d in gained {
            satisfied[d] = Some(r);
        }
    }
}

/// The sps placement: whole layers only.
pub fn sps(c: Catalog) -> Placement {
    let p = c.p;
    let dem = Demand::new(c);
    let mut pl = Placement::empty(c, Granularity::Layer);
    let mut satisfied: Vec<Option<usize>> = vec![None; p.demands.len()];
    let served = |s: &[Option<usize>]| -> f64 {
        s.iter()
            .zip(&p.demands)
            .filter(|(s, _)| s.is_some())
            .map(|(_, d)| d.2)
            .sum()
    };
    let mut order: Vec<usize> = (0..c.registries()).collect();
    order.sort_by(|&a, &b| {
        let conn = |r: usize| p.registries()[r].connections;
        conn(b).total_cmp(&conn(a)).then(a.cmp(&b))
    });
    let mut last = -1.0;
    for _ in 0..SPS_PASSES {
        for &r in &order {
            let before = (pl.clone(), satisfied.clone(), served(&satisfied));
            sps_fill(c, &mut pl, r, &dem, &mut satisfied);
            if served(&satisfied) < before.2 {
                (pl, satisfied) = (before.0, before.1);
            }
        }
        let now = served(&satisfied);
        if now <= last {
            break;
        }
        last = now;
    }
    pl
}

/// The gfr placement: files of the most requested images on every registry, plus a cache
/// of whole copies of its most requested layers.
pub fn gfr(c: Catalog) -> Placement {
    let p = c.p;
    let dem = Demand::new(c);
    let mut layer_rate = vec![0.0; c.layers()];
    for (i, layers) in p.image_layers.iter().enumerate() {
        for &l in layers {
            layer_rate[l] += dem.rate[i];
        }
    }
    let wanted: Vec<usize> = (0..dem.rate.len()).filter(|&i| dem.rate[i] > 0.0).collect();
    let mut seen = Stamps::new(c.g.groups.len());
    let mut by_rate: Vec<usize> = (0..c.layers()).filter(|&l| layer_rate[l] > 0.0).collect();
    by_rate.sort_by(|&a, &b| layer_rate[b].total_cmp(&layer_rate[a]).then(a.cmp(&b)));
    let mut pl = Placement::empty(c, Granularity::Hybrid);
    for r in 0..c.registries() {
        let budget = p.registries()[r].storage_bytes;
        let files_budget = budget * (1.0 - GFR_CACHE_SHARE);
        let mut images = wanted.clone();
        // Rate per byte of what the image adds, recomputed as files accumulate.
        loop {
            let pick = images
                .iter()
                .enumerate()
                .filter_map(|(at, &i)| {
                    let missing: Vec<usize> = p.image_layers[i]
                        .iter()
                        .copied()
                        .filter(|&l| pl.hold(r, l) == Hold::None)
                        .collect();
                    let bytes = pl.files_cost(c, r, &missing, &mut seen);
                    (!missing.is_empty() && pl.used(r) + bytes <= files_budget)
                        .then(|| (dem.rate[i] / bytes.max(1.0), at, missing))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            let Some((_, at, missing)) = pick else {
                break;
            };
            for l in missing {
                pl.set(c, r, l, Hold::Rebuilt);
            }
            images.swap_remove(at);
        }
        let cache_budget = budget * GFR_CACHE_SHARE;
        let mut cached = 0.0;
        for &l in &by_rate {
            if pl.hold(r, l) != Hold::Rebuilt {
                continue;
            }
            let size = p.layers()[l].size;
            if cached + size > cache_budget {
                continue;
            }
            // The cached copy serves the layer whole; files only it used are not kept (the
            // model serves the layer from the copy), which favours gfr slightly.
            pl.set(c, r, l, Hold::Whole);
            if pl.used(r) > budget * (1.0 + 1e-9) {
                pl.set(c, r, l, Hold::Rebuilt);
            } else {
                cached += size;
            }
        }
    }
    pl
}
