//! The LP relaxation `mis` and `mis-hybrid` round: the MIS program of [`crate::lp`] with
//! its route variables aggregated over servers.
//!
//! A layer's pull time depends on the registry it comes from, never on the server pulling
//! it, so the servers that request an image differ only in their rates. The relaxation
//! keeps, per (registry, image, layer) q, how many of the servers pulling q are served
//! whole (`ZW`) or rebuilt (`ZR`) by the registry, in [0, N_q], and per pulled pair k of a
//! server: `u_k` in [0, 1], the share of k taken off the central registry, and `e_k` in
//! [0, g_l], the seconds saved (g_l: the best saving any registry offers for layer l).
//! Rows, besides the holdings' (constraints 1 and 2):
//! - per q: sum_{k in q} u_k = sum_r (ZW + ZR) and sum_{k in q} e_k <= sum_r (w_r ZW + w'_r ZR)
//!   (w, w': savings whole and rebuilt);
//! - per k: t_d >= c_l - e_k (c_l: central time), e_k <= g_l u_k;
//! - constraint 3 (per registry and layer, over the q of the layer), constraint 5
//!   (connections: sum of `ZW + ZR`), and the staircase per demand in the u's.
//!
//! Every routing of the per-server program maps onto this one (Z = the sum over servers of
//! the routes, u_k = the routes of k, e_k = their savings), so its optimum is a lower bound
//! too. It has a column per (registry, image, layer) instead of per (registry, server,
//! image, layer): on the generated large case (6 servers) about a third of the columns
//! and half the nonzeros. It is not exact for integral values (it lets servers share
//! savings), which is why `opt` solves the per-server program. For rounding, each pair's
//! share u_k is split over registries in proportion to q's `ZW` and `ZR`. Where each image
//! has one server (the paper's Fig. 1) aggregating saves nothing, and the per-server program
//! is solved instead ([`pays`]).

use std::collections::HashMap;

use highs::{Col, RowProblem};

use crate::instance::Problem;
use crate::lp::{
    add_holdings, add_route_limit, add_staircases, pulled_pairs, read2, run, savings, Builder,
    Formulation, Grouping, Solved,
};
use crate::PlannerError;

/// Per registry, per image-layer group q: the column, where that route saves anything.
type Aggregated = Vec<Vec<Option<(Col, usize)>>>;

/// A pair's savings `e` and share `u` columns.
#[derive(Clone, Copy)]
struct PairCols {
    e: Col,
    u: (Col, usize),
}

/// The pulled pairs grouped by (image, layer): members (pair indices) and layer of each.
struct ImageLayers {
    members: Vec<Vec<usize>>,
    layer: Vec<usize>,
    of_pair: Vec<usize>,
}

fn image_layers(p: &Problem, pairs: &[(usize, usize)]) -> ImageLayers {
    let mut index: HashMap<(usize, usize), usize> = HashMap::new();
    let mut il = ImageLayers {
        members: Vec::new(),
        layer: Vec::new(),
        of_pair: Vec::with_capacity(pairs.len()),
    };
    for (k, &(d, l)) in pairs.iter().enumerate() {
        let image = p.demands[d].1;
        let q = *index.entry((image, l)).or_insert_with(|| {
            il.members.push(Vec::new());
            il.layer.push(l);
            il.members.len() - 1
        });
        il.members[q].push(k);
        il.of_pair.push(q);
    }
    il
}

/// Whether aggregating is smaller: per registry two columns per (image, layer) plus two per
/// pair, against two per registry and pair.
pub fn pays(p: &Problem) -> bool {
    let pairs = pulled_pairs(p);
    let groups = image_layers(p, &pairs).members.len();
    let nr = p.registries().len();
    2 * nr * groups + 2 * pairs.len() < 2 * nr * pairs.len()
}

pub fn solve(p: &Problem, grouping: &Grouping, f: Formulation) -> Result<Solved, PlannerError> {
    let (nr, nl) = (p.registries().len(), p.layers().len());
    let pairs = pulled_pairs(p);
    let il = image_layers(p, &pairs);
    let nq = il.members.len();
    let mut b = Builder {
        pb: RowProblem::default(),
        count: 0,
        integral: false,
    };
    let h = add_holdings(&mut b, p, grouping, f.hybrid);
    let aggregated = |b: &mut Builder, rebuilt: bool| -> Aggregated {
        (0..nr)
            .map(|r| {
                (0..nq)
                    .map(|q| {
                        let (w, rb) = savings(p, r, il.layer[q]);
                        let gain = if rebuilt { rb } else { w };
                        let servers = il.members[q].len() as f64;
                        (gain > 0.0).then(|| b.var(0.0, servers))
                    })
                    .collect()
            })
            .collect()
    };
    let zw = aggregated(&mut b, false);
    let zr = aggregated(&mut b, true);
    let best: Vec<f64> = (0..nl)
        .map(|l| (0..nr).map(|r| savings(p, r, l).0).fold(0.0, f64::max))
        .collect();
    // Per pair, where some registry can save time on the layer.
    let eu: Vec<Option<PairCols>> = pairs
        .iter()
        .map(|&(_, l)| {
            (best[l] > 0.0).then(|| PairCols {
                e: b.var(0.0, best[l]).0,
                u: b.var(0.0, 1.0),
            })
        })
        .collect();
    let t: Vec<(Col, usize)> = p
        .demands
        .iter()
        .map(|&(_, _, rate)| b.var(rate, f64::INFINITY))
        .collect();

    let mut qs_of_layer = vec![Vec::new(); nl];
    for (q, &l) in il.layer.iter().enumerate() {
        qs_of_layer[l].push(q);
    }
    for r in 0..nr {
        for (l, of_layer) in qs_of_layer.iter().enumerate() {
            for (z, held) in [(&zw[r], &h.whole[r][l]), (&zr[r], &h.rebuilt[r][l])] {
                let present: Vec<usize> = of_layer
                    .iter()
                    .copied()
                    .filter(|&q| z[q].is_some())
                    .collect();
                let count: usize = present.iter().map(|&q| il.members[q].len()).sum();
                let routes = present.iter().filter_map(|&q| z[q].map(|c| c.0)).collect();
                add_route_limit(&mut b, routes, count as f64, held.0);
            }
        }
        let conn: Vec<(Col, f64)> = zw[r]
            .iter()
            .chain(&zr[r])
            .flatten()
            .map(|c| (c.0, 1.0))
            .collect();
        b.pb.add_row(..=p.registries()[r].connections, conn);
    }
    for q in 0..nq {
        let mut share: Vec<(Col, f64)> = Vec::new();
        let mut saved: Vec<(Col, f64)> = Vec::new();
        for r in 0..nr {
            let (w, rb) = savings(p, r, il.layer[q]);
            for (z, gain) in [(zw[r][q], w), (zr[r][q], rb)] {
                if let Some(c) = z {
                    share.push((c.0, -1.0));
                    saved.push((c.0, -gain));
                }
            }
        }
        for &k in &il.members[q] {
            if let Some(c) = eu[k] {
                share.push((c.u.0, 1.0));
                saved.push((c.e, 1.0));
            }
        }
        b.pb.add_row(0.0..=0.0, share);
        b.pb.add_row(..=0.0, saved);
    }
    let central_bw = p.instance.central.bandwidth_bytes_per_s;
    for (k, &(d, l)) in pairs.iter().enumerate() {
        let central = p.layers()[l].size / central_bw;
        let mut time = vec![(t[d].0, 1.0)];
        if let Some(c) = eu[k] {
            time.push((c.e, 1.0));
            b.pb.add_row(..=0.0, [(c.e, 1.0), (c.u.0, -best[l])]);
        }
        b.pb.add_row(central.., time);
    }
    let edge = |k: usize| eu[k].map(|c| c.u.0).into_iter().collect();
    add_staircases(&mut b, p, &pairs, edge, &t);

    let solved = run(b, f, None)?;
    let v = &solved.values;
    let value = |c: Option<(Col, usize)>| c.map_or(0.0, |(_, i)| v[i]);
    // Split each pair's share over the registries as its (image, layer) group's routes are.
    let routed: Vec<f64> = (0..nq)
        .map(|q| (0..nr).map(|r| value(zw[r][q]) + value(zr[r][q])).sum())
        .collect();
    let split = |z: &Aggregated| -> Vec<Vec<f64>> {
        z.iter()
            .map(|of_registry| {
                (0..pairs.len())
                    .map(|k| {
                        let q = il.of_pair[k];
                        let u = eu[k].map_or(0.0, |c| v[c.u.1]);
                        if routed[q] > 1e-12 {
                            u * value(of_registry[q]) / routed[q]
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect()
    };
    Ok(Solved {
        objective: solved.objective,
        seconds: solved.seconds,
        mip_gap: None,
        x: h.x_values(v, nr),
        whole: read2(v, &h.whole),
        rebuilt: read2(v, &h.rebuilt),
        zw: split(&zw),
        zr: split(&zr),
        pairs,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{generate, GenParams, Scale};

    #[test]
    fn aggregating_over_servers_keeps_the_bound() {
        let g = GenParams::for_scale(Scale::Small).with_images(12);
        for seed in 1..=3 {
            let p = Problem::new(generate(&g, seed)).unwrap();
            assert!(pays(&p), "3 servers share images");
            let grouping = Grouping::new(&p);
            for hybrid in [false, true] {
                let f = Formulation {
                    hybrid,
                    integral: false,
                    time_limit_s: None,
                };
                let agg = solve(&p, &grouping, f).unwrap().objective;
                let exact = crate::lp::exact(&p, &grouping, f, None).unwrap().objective;
                // A relaxation of the per-server program: never above its bound, and (as
                // measured) as strong.
                assert!(agg <= exact * (1.0 + 1e-6), "seed {seed}: {agg} > {exact}");
                assert!(
                    agg >= exact * 0.999,
                    "seed {seed}: {agg} much below {exact}"
                );
            }
        }
    }
}
