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
//! Then routes are rounded ([`round_routes`]) and connections left over are spent by
//! [`crate::routes::upgrade`] (our addition too). With `hybrid`, there is no x: whole and
//! reassemblable layers are rounded side by side.

use crate::local::Scorer;
use crate::lp::Solved;
use crate::placement::{Catalog, Hold, Placement};
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
    pub c: Catalog<'a>,
    pub s: &'a Solved,
    pub hybrid: bool,
    pub max_tries: u32,
    pub scorer: &'a Scorer<'a>,
}

/// One registry's rounding: each layer whole, rebuilt or not held.
fn draw_registry(
    c: &Context,
    r: usize,
    rng: &mut SplitMix64,
    file_level: bool,
    pl: &mut Placement,
) {
    let x = c.s.x[r];
    pl.clear(r);
    for l in 0..c.c.layers() {
        let (pw, pr) = if c.hybrid {
            (c.s.whole[r][l], c.s.rebuilt[r][l])
        } else if file_level {
            (0.0, given(c.s.rebuilt[r][l], x))
        } else {
            (given(c.s.whole[r][l], 1.0 - x), 0.0)
        };
        if pw > EPS && rng.bernoulli(pw) {
            pl.set(c.c, r, l, Hold::Whole);
        } else if pr > EPS && rng.bernoulli(pr) {
            pl.set(c.c, r, l, Hold::Rebuilt);
        }
    }
}

/// Round the placement; returns it and the number of rounding attempts made.
pub fn round_placement(c: &Context, rng: &mut SplitMix64) -> (Placement, u32) {
    let nr = c.c.registries();
    let mut pl = Placement::empty(
        c.c,
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
        let limit = c.c.p.registries()[r].storage_bytes;
        let mut fits = false;
        for _ in 0..c.max_tries.max(1) {
            attempts += 1;
            draw_registry(c, r, rng, file_level, &mut pl);
            if pl.used(r) <= limit * (1.0 + 1e-9) {
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

/// Round the routing: one uniform draw per demand, shared by all its layers, picks each
/// pair's source by the relaxed routing values of the registries holding its layer (in
/// registry order; the rest of the unit is the central registry's). Each pair keeps its
/// relaxed probabilities, and the layers of a demand the relaxation routes together stay
/// together (independent draws would leave almost every demand with one slow layer). Then
/// registries over their connection limit send whole demands to the central registry,
/// least requested first.
pub fn round_routes(c: &Context, pl: &Placement, rng: &mut SplitMix64) -> Vec<Option<usize>> {
    let p = c.c.p;
    let draws: Vec<f64> = (0..p.demands.len()).map(|_| rng.next_f64()).collect();
    let mut sources = vec![None; c.s.pairs.len()];
    for (k, &(d, l)) in c.s.pairs.iter().enumerate() {
        let mut pick = draws[d];
        for r in 0..c.c.registries() {
            let w = match pl.hold(r, l) {
                Hold::None => 0.0,
                Hold::Whole => c.s.zw[r][k],
                Hold::Rebuilt => c.s.zr[r][k],
            }
            .max(0.0);
            if pick < w {
                sources[k] = Some(r);
                break;
            }
            pick -= w;
        }
    }
    let mut by_rate: Vec<usize> = (0..c.s.pairs.len()).collect();
    by_rate.sort_by(|&a, &b| {
        let rate = |k: usize| p.demands[c.s.pairs[k].0].2;
        rate(a).total_cmp(&rate(b)).then(a.cmp(&b))
    });
    // Pairs of one demand are adjacent in this order, so demands leave whole.
    for r in 0..c.c.registries() {
        let limit = p.registries()[r].connections.floor().max(0.0) as usize;
        let mut over = sources.iter().filter(|&&s| s == Some(r)).count();
        for &k in &by_rate {
            if over <= limit {
                break;
            }
            if sources[k] == Some(r) {
                sources[k] = None;
                over -= 1;
            }
        }
    }
    sources
}
