//! Loss-aware storage repair and greedy completion of a rounded placement.
//!
//! Both use the same fact of the model: a layer pulls equally fast for every server from a
//! given source, so with unlimited connections each layer's best time is the minimum over
//! its holders (and the central registry), and an image's time is the maximum of its layers'
//! best times. The effect of adding or removing one (registry, layer) therefore touches only
//! the images containing that layer. Connection limits are applied afterwards, when pairs are
//! routed. This is our addition to the paper's Algorithm 1 (which only re-rounds and routes
//! what is left to the central registry).

use std::collections::BTreeSet;

use crate::instance::{FileGroup, Problem};
use crate::placement::Placement;
use crate::plan::Granularity;

/// Stored whole (`true`) or as files.
type Item = (usize, usize, bool);

pub struct Scorer<'a> {
    p: &'a Problem,
    groups: &'a [FileGroup],
    layer_groups: &'a [Vec<usize>],
    /// Sum of request rates per image.
    weight: Vec<f64>,
    images_of_layer: Vec<Vec<usize>>,
}

impl<'a> Scorer<'a> {
    pub fn new(p: &'a Problem, groups: &'a [FileGroup], layer_groups: &'a [Vec<usize>]) -> Self {
        let mut weight = vec![0.0; p.instance.images.len()];
        for &(_, i, rate) in &p.demands {
            weight[i] += rate;
        }
        let mut images_of_layer = vec![Vec::new(); p.layers().len()];
        for (i, layers) in p.image_layers.iter().enumerate() {
            if weight[i] > 0.0 {
                for &l in layers {
                    images_of_layer[l].push(i);
                }
            }
        }
        Scorer {
            p,
            groups,
            layer_groups,
            weight,
            images_of_layer,
        }
    }

    fn time(&self, r: usize, l: usize, whole: bool) -> f64 {
        let layer = &self.p.layers()[l];
        let base = layer.size / self.p.registries()[r].bandwidth_bytes_per_s;
        if whole {
            base
        } else {
            base + layer.tau_s
        }
    }

    /// Best time of layer `l` over its holders, optionally ignoring one item.
    fn best(&self, pl: &Placement, l: usize, without: Option<Item>) -> f64 {
        let mut best = self.p.layers()[l].size / self.p.instance.central.bandwidth_bytes_per_s;
        for r in 0..pl.whole.len() {
            for (whole, set) in [(true, &pl.whole[r]), (false, &pl.rebuilt[r])] {
                if set.contains(&l) && without != Some((r, l, whole)) {
                    best = best.min(self.time(r, l, whole));
                }
            }
        }
        best
    }

    /// Change of T if layer `l`'s best time becomes `new_best`.
    fn delta(&self, bt: &[f64], l: usize, new_best: f64) -> f64 {
        let mut d = 0.0;
        for &i in &self.images_of_layer[l] {
            let others = self.p.image_layers[i]
                .iter()
                .filter(|&&m| m != l)
                .map(|&m| bt[m])
                .fold(0.0, f64::max);
            d += self.weight[i] * (others.max(new_best) - others.max(bt[l]));
        }
        d
    }

    fn best_times(&self, pl: &Placement) -> Vec<f64> {
        (0..self.p.layers().len())
            .map(|l| self.best(pl, l, None))
            .collect()
    }

    /// Bytes that adding layer `l` as files costs a registry storing `stored`: its groups
    /// not stored yet.
    fn file_cost(&self, stored: &BTreeSet<usize>, l: usize) -> f64 {
        self.layer_groups[l]
            .iter()
            .filter(|g| !stored.contains(g))
            .map(|&g| self.groups[g].size)
            .sum()
    }

    /// Bytes that removing an item frees.
    fn freed(&self, pl: &Placement, (r, l, whole): Item) -> f64 {
        if whole {
            return self.p.layers()[l].size;
        }
        let others: BTreeSet<usize> = pl.rebuilt[r]
            .iter()
            .filter(|&&m| m != l)
            .flat_map(|&m| self.layer_groups[m].iter().copied())
            .collect();
        self.layer_groups[l]
            .iter()
            .filter(|g| !others.contains(g))
            .map(|&g| self.groups[g].size)
            .sum()
    }

    /// Remove items of `r`, least loss of T per byte freed first, until it fits its budget.
    pub fn repair(&self, pl: &mut Placement, r: usize) {
        let limit = self.p.registries()[r].storage_bytes * (1.0 + 1e-9);
        while pl.storage(r, self.p, self.groups, self.layer_groups) > limit {
            let bt = self.best_times(pl);
            let items: Vec<Item> = pl.whole[r]
                .iter()
                .map(|&l| (r, l, true))
                .chain(pl.rebuilt[r].iter().map(|&l| (r, l, false)))
                .collect();
            let pick = items
                .into_iter()
                .map(|it| {
                    let loss = self.delta(&bt, it.1, self.best(pl, it.1, Some(it)));
                    (loss / self.freed(pl, it).max(1.0), it)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((_, (_, l, whole))) = pick else {
                break;
            };
            if whole {
                pl.whole[r].remove(&l);
            } else {
                pl.rebuilt[r].remove(&l);
            }
        }
    }

    /// Add the item that lowers T most per byte, while any fits and helps.
    pub fn complete(&self, pl: &mut Placement) {
        loop {
            let bt = self.best_times(pl);
            let mut best: Option<(f64, Item)> = None;
            for r in 0..pl.whole.len() {
                let stored = pl.stored_groups(r, self.layer_groups);
                let free = self.p.registries()[r].storage_bytes
                    - pl.storage(r, self.p, self.groups, self.layer_groups);
                let modes: &[bool] = match pl.granularity[r] {
                    Granularity::Layer => &[true],
                    Granularity::File => &[false],
                    Granularity::Hybrid => &[true, false],
                };
                for l in 0..self.p.layers().len() {
                    if self.images_of_layer[l].is_empty()
                        || pl.whole[r].contains(&l)
                        || pl.rebuilt[r].contains(&l)
                    {
                        continue;
                    }
                    for &whole in modes {
                        let cost = if whole {
                            self.p.layers()[l].size
                        } else {
                            self.file_cost(&stored, l)
                        };
                        let t = self.time(r, l, whole);
                        if cost > free + 1e-6 || t >= bt[l] {
                            continue;
                        }
                        let gain = -self.delta(&bt, l, t);
                        let score = gain / cost.max(1.0);
                        if gain > 1e-9 && best.is_none_or(|b| score > b.0) {
                            best = Some((score, (r, l, whole)));
                        }
                    }
                }
            }
            let Some((_, (r, l, whole))) = best else {
                return;
            };
            if whole {
                pl.whole[r].insert(l);
            } else {
                pl.rebuilt[r].insert(l);
            }
        }
    }
}
