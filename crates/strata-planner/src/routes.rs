//! Routing pulls under connection limits.
//!
//! Given what the registries hold, every pulled pair (demand, layer) needs one source. A
//! demand (server n pulling image i at rate lambda) is as slow as its slowest layer, so
//! connections pay only when they bring a demand's slow layers down together. [`upgrade`]
//! is a greedy over levels: lowering a demand from its time T_cur to a level T < T_cur needs
//! every layer slower than T moved to a source that delivers it within T (the central
//! registry if it is fast enough, else a registry holding it with a free connection); the
//! value is lambda (T_cur - T), the cost the connections it takes. The upgrade with the best
//! value per connection, over all demands and levels, is applied first, until none helps.
//! Values only fall as connections run out, so candidates are re-evaluated lazily.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::placement::{pull_time, Catalog, Placement};

/// Pair k to a new source (None: the central registry).
type Move = (usize, Option<usize>);

/// One demand's way down to a faster level.
struct Upgrade {
    moves: Vec<Move>,
    density: f64,
}

/// A heap entry: an upgrade of demand `d` worth `density` when last evaluated.
struct Candidate {
    density: f64,
    d: usize,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.density
            .total_cmp(&other.density)
            .then(other.d.cmp(&self.d))
    }
}

struct Router<'a> {
    c: Catalog<'a>,
    pl: &'a Placement,
    pairs: &'a [(usize, usize)],
    by_demand: Vec<Vec<usize>>,
    free: Vec<f64>,
}

impl Router<'_> {
    fn time(&self, k: usize, source: Option<usize>) -> f64 {
        pull_time(self.c, self.pl, self.pairs[k].1, source).unwrap_or(f64::INFINITY)
    }

    fn current(&self, d: usize, sources: &[Option<usize>]) -> f64 {
        self.by_demand[d]
            .iter()
            .map(|&k| self.time(k, sources[k]))
            .fold(0.0, f64::max)
    }

    /// The fastest registry holding pair `k`'s layer within `level`, with a free connection.
    fn edge_within(&self, k: usize, level: f64, free: &[f64]) -> Option<usize> {
        (0..free.len())
            .filter(|&r| free[r] >= 1.0)
            .map(|r| (r, self.time(k, Some(r))))
            .filter(|&(_, t)| t <= level)
            .min_by(|a, b| a.1.total_cmp(&b.1).then(free[b.0].total_cmp(&free[a.0])))
            .map(|(r, _)| r)
    }

    /// Moves that bring demand `d` to `level`, and the connections they take; None if
    /// some layer cannot make it.
    fn moves_to(
        &self,
        d: usize,
        level: f64,
        sources: &[Option<usize>],
    ) -> Option<(Vec<Move>, f64)> {
        let mut free = self.free.clone();
        let mut moves = Vec::new();
        let mut cost = 0.0;
        for &k in &self.by_demand[d] {
            if self.time(k, sources[k]) <= level {
                continue;
            }
            if self.time(k, None) <= level {
                moves.push((k, None));
                cost -= 1.0;
                continue;
            }
            let r = self.edge_within(k, level, &free)?;
            free[r] -= 1.0;
            if sources[k].is_none() {
                cost += 1.0;
            }
            moves.push((k, Some(r)));
        }
        Some((moves, cost))
    }

    fn best_upgrade(&self, d: usize, sources: &[Option<usize>]) -> Option<Upgrade> {
        let now = self.current(d, sources);
        let mut levels: Vec<f64> = self.by_demand[d]
            .iter()
            .flat_map(|&k| {
                let edge = (0..self.free.len()).map(move |r| self.time(k, Some(r)));
                std::iter::once(self.time(k, None)).chain(edge)
            })
            .filter(|&t| t < now)
            .collect();
        levels.sort_by(|a, b| b.total_cmp(a));
        levels.dedup();
        let rate = self.c.p.demands[d].2;
        let mut best: Option<Upgrade> = None;
        for level in levels {
            // A layer that cannot reach this level cannot reach a lower one either.
            let Some((moves, cost)) = self.moves_to(d, level, sources) else {
                break;
            };
            let value = rate * (now - level);
            let density = if cost <= 0.0 {
                f64::INFINITY
            } else {
                value / cost
            };
            if best.as_ref().is_none_or(|b| density > b.density) {
                best = Some(Upgrade { moves, density });
            }
        }
        best
    }

    fn apply(&mut self, u: Upgrade, sources: &mut [Option<usize>]) {
        for (k, to) in u.moves {
            if let Some(r) = sources[k] {
                self.free[r] += 1.0;
            }
            if let Some(r) = to {
                self.free[r] -= 1.0;
            }
            sources[k] = to;
        }
    }

    /// Send back to the central registry every edge pull it delivers within its demand's
    /// time: the connection is better spent elsewhere.
    fn release(&mut self, sources: &mut [Option<usize>]) {
        for d in 0..self.by_demand.len() {
            let now = self.current(d, sources);
            for &k in &self.by_demand[d] {
                if let Some(r) = sources[k] {
                    if self.time(k, None) <= now {
                        sources[k] = None;
                        self.free[r] += 1.0;
                    }
                }
            }
        }
    }
}

/// Improve `sources` (one per pair of `pairs`, within the connection limits) greedily, as
/// the module docs describe. Pairs routed to a registry not holding their layer are sent to
/// the central registry first.
pub fn upgrade(
    c: Catalog,
    pl: &Placement,
    pairs: &[(usize, usize)],
    sources: &mut [Option<usize>],
) {
    let mut by_demand = vec![Vec::new(); c.p.demands.len()];
    for (k, &(d, _)) in pairs.iter().enumerate() {
        by_demand[d].push(k);
    }
    let mut router = Router {
        c,
        pl,
        pairs,
        by_demand,
        free: c.p.registries().iter().map(|r| r.connections).collect(),
    };
    for (k, s) in sources.iter_mut().enumerate() {
        match *s {
            Some(r) if router.time(k, Some(r)).is_finite() => router.free[r] -= 1.0,
            _ => *s = None,
        }
    }
    router.release(sources);
    let mut heap: BinaryHeap<Candidate> = (0..router.by_demand.len())
        .filter_map(|d| {
            let u = router.best_upgrade(d, sources)?;
            Some(Candidate {
                density: u.density,
                d,
            })
        })
        .collect();
    while let Some(top) = heap.pop() {
        let Some(u) = router.best_upgrade(top.d, sources) else {
            continue;
        };
        if heap.peek().is_some_and(|next| u.density < next.density) {
            heap.push(Candidate {
                density: u.density,
                d: top.d,
            });
            continue;
        }
        router.apply(u, sources);
        if let Some(u) = router.best_upgrade(top.d, sources) {
            heap.push(Candidate {
                density: u.density,
                d: top.d,
            });
        }
    }
}

/// Routes from scratch: everything from the central registry, then [`upgrade`].
pub fn greedy_routes(c: Catalog, pl: &Placement, pairs: &[(usize, usize)]) -> Vec<Option<usize>> {
    let mut sources = vec![None; pairs.len()];
    upgrade(c, pl, pairs, &mut sources);
    sources
}
