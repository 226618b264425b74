//! Randomized rounding of the relaxed MIS program (the paper's Algorithm 1).
//!
//! Per registry: x_r is rounded with probability x~_r; then, at a layer-level registry, each
//! layer is kept whole with probability whole~/(1 - x~) (its probability given layer level);
//! at a file-level registry, each layer is made reassemblable with probability rebuilt~/x~
//! and the registry stores exactly the files of those layers (so constraint 2 holds by
//! construction; rounding file groups independently would almost never complete a layer of
//! many groups). A registry whose rounding breaks its storage budget is rounded again, up
//! to `max_tries` times; past that, the items whose loss raises T least per byte freed are
//! dropped until it fits ([`crate::local::Scorer::repair`]), and leftover space is filled
//! greedily ([`crate::local::Scorer::complete`]).
//! Then each pulled pair picks a source among the registries holding its layer with
//! probability proportional to its relaxed routing value (the fastest holder if none has
//! any; the central registry when nobody holds the layer), and pairs over a registry's
//! connection limit go to the central registry, least likely first. With
//! `hybrid`, there is no x: whole and reassemblable layers are rounded side by side.

use crate::instance::{FileGroup, Problem};
use crate::local::Scorer;
use crate::lp::Solved;
use crate::placement::Placement;
use crate::plan::Granularity;
use crate::rng::SplitMix64;

const EPS: f64 = 1e-9;

/// Conditional probability `v / given`, 0 when the condition has no mass.
fn given(v: f64, mass: f64) -> f64 {
    if mass <= EPS {
        0.0
    } else {
        (v / mass).clamp(0.0, 1.0)
    }
}

pub struct Context<'a> {
    pub p: &'a Problem,
    pub groups: &'a [FileGroup],
    pub layer_groups: &'a [Vec<usize>],
    pub s: &'a Solved,
    pub hybrid: bool,
    pub max_tries: u32,
    pub scorer: &'a Scorer<'a>,
}

/// One registry's rounding: (granularity, whole layers, rebuilt layers).
fn draw_registry(
    c: &Context,
    r: usize,
    rng: &mut SplitMix64,
    file_level: bool,
    pl: &mut Placement,
) {
    let nl = c.p.layers().len();
    let x = c.s.x[r];
    pl.whole[r].clear();
    pl.rebuilt[r].clear();
    for l in 0..nl {
        let (pw, pr) = if c.hybrid {
            (c.s.whole[r][l], c.s.rebuilt[r][l])
        } else if file_level {
            (0.0, given(c.s.rebuilt[r][l], x))
        } else {
            (given(c.s.whole[r][l], 1.0 - x), 0.0)
        };
        if pw > EPS && rng.bernoulli(pw) {
            pl.whole[r].insert(l);
        } else if pr > EPS && rng.bernoulli(pr) {
            pl.rebuilt[r].insert(l);
        }
    }
}

/// Round the placement; returns it and the number of rounding attempts made.
pub fn round_placement(c: &Context, rng: &mut SplitMix64) -> (Placement, u32) {
    let nr = c.p.registries().len();
    let mut pl = Placement::empty(
        nr,
        if c.hybrid {
            Granularity::Hybrid
        } else {
            Granularity::Layer
        },
    );
    let mut attempts = 0;
    for r in 0..nr {
        let file_level = !c.hybrid && rng.bernoulli(c.s.x[r]);
        if file_level {
            pl.granularity[r] = Granularity::File;
        }
        let limit = c.p.registries()[r].storage_bytes;
        let mut fits = false;
        for _ in 0..c.max_tries.max(1) {
            attempts += 1;
            draw_registry(c, r, rng, file_level, &mut pl);
            if pl.storage(r, c.p, c.groups, c.layer_groups) <= limit * (1.0 + 1e-9) {
                fits = true;
                break;
            }
        }
        if !fits {
            c.scorer.repair(&mut pl, r);
        }
    }
    (pl, attempts)
}

/// Draw one source for layer `l` of pair `k` among the registries that hold it, in
/// proportion to the relaxed routing values; a holder the relaxation never routed to is
/// taken at its speed when no holder has weight; `None` (central) when nobody holds it.
fn draw_source(
    c: &Context,
    pl: &Placement,
    k: usize,
    l: usize,
    rng: &mut SplitMix64,
) -> (Option<usize>, f64) {
    let holders: Vec<(usize, f64)> = (0..c.p.registries().len())
        .filter_map(|r| {
            if pl.whole[r].contains(&l) {
                Some((r, c.s.zw[r][k].max(0.0)))
            } else if pl.rebuilt[r].contains(&l) {
                Some((r, c.s.zr[r][k].max(0.0)))
            } else {
                None
            }
        })
        .collect();
    let total: f64 = holders.iter().map(|h| h.1).sum();
    if total <= EPS {
        let fastest = holders
            .iter()
            .map(|&(r, _)| {
                (
                    r,
                    crate::placement::pull_time(c.p, pl, l, Some(r)).unwrap_or(f64::INFINITY),
                )
            })
            .min_by(|a, b| a.1.total_cmp(&b.1));
        return (fastest.map(|f| f.0), 0.0);
    }
    let mut pick = rng.next_f64() * total;
    for &(r, w) in &holders {
        if pick < w {
            return (Some(r), w);
        }
        pick -= w;
    }
    let last = holders
        .iter()
        .rev()
        .find(|h| h.1 > 0.0)
        .copied()
        .unwrap_or(holders[0]);
    (Some(last.0), last.1)
}

/// Round the routing of every pair, then enforce connection limits (pairs over a limit go
/// to the central registry, least likely first).
pub fn round_routes(c: &Context, pl: &Placement, rng: &mut SplitMix64) -> Vec<Option<usize>> {
    let nr = c.p.registries().len();
    let mut sources = vec![None; c.s.pairs.len()];
    let mut weight_of = vec![0.0; c.s.pairs.len()];
    for (k, &(_, l)) in c.s.pairs.iter().enumerate() {
        let (src, w) = draw_source(c, pl, k, l, rng);
        sources[k] = src;
        weight_of[k] = w;
    }
    for r in 0..nr {
        let mut mine: Vec<usize> = (0..sources.len())
            .filter(|&k| sources[k] == Some(r))
            .collect();
        let limit = c.p.registries()[r].connections.floor().max(0.0) as usize;
        if mine.len() > limit {
            mine.sort_by(|&a, &b| weight_of[a].total_cmp(&weight_of[b]));
            for &k in &mine[..mine.len() - limit] {
                sources[k] = None;
            }
        }
    }
    sources
}
