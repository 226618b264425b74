//! Loss-aware storage repair and greedy completion of a rounded placement.
//!
//! Both use the same fact of the model: a layer pulls equally fast for every server from a
//! given source, so with unlimited connections each layer's best time is the minimum over
//! its holders (and the central registry), and an image's time is the maximum of its layers'
//! best times. The effect of adding or removing holdings therefore touches only the images
//! containing those layers. Connection limits are applied afterwards, when pairs are routed
//! ([`crate::routes`]). This is our addition to the paper's Algorithm 1 (which only
//! re-rounds and routes what is left to the central registry).
//!
//! Completion adds whole images, not single layers: an image is as slow as its slowest
//! layer, so speeding up one of two equally slow layers gains nothing, and a greedy over
//! single layers would never start on an image whose layers are alike.

use crate::placement::{Catalog, Hold, Placement, Stamps};
use crate::plan::Granularity;

/// A completion move: registry `r` takes the listed layers of one image as `hold`.
struct Move {
    r: usize,
    hold: Hold,
    layers: Vec<usize>,
    score: f64,
}

pub struct Scorer<'a> {
    c: Catalog<'a>,
    /// Sum of request rates per image.
    weight: Vec<f64>,
    images_of_layer: Vec<Vec<usize>>,
}

impl<'a> Scorer<'a> {
    pub fn new(c: Catalog<'a>) -> Self {
        let p = c.p;
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
            c,
            weight,
            images_of_layer,
        }
    }

    /// Best time of layer `l` over its holders, ignoring registry `skip`.
    fn best(&self, pl: &Placement, l: usize, skip: Option<usize>) -> f64 {
        (0..self.c.registries())
            .filter(|&r| Some(r) != skip)
            .map(|r| self.c.time(r, l, pl.hold(r, l)))
            .fold(self.c.central_time(l), f64::min)
    }

    fn best_times(&self, pl: &Placement) -> Vec<f64> {
        (0..self.c.layers())
            .map(|l| self.best(pl, l, None))
            .collect()
    }

    /// Change of T if the best times of the `changed` layers become the given values.
    fn delta(&self, bt: &[f64], changed: &[(usize, f64)]) -> f64 {
        let mut images: Vec<usize> = changed
            .iter()
            .flat_map(|&(l, _)| self.images_of_layer[l].iter().copied())
            .collect();
        images.sort_unstable();
        images.dedup();
        let mut d = 0.0;
        for i in images {
            let (mut old, mut new) = (0.0f64, 0.0f64);
            for &m in &self.c.p.image_layers[i] {
                old = old.max(bt[m]);
                let t = changed.iter().find(|c| c.0 == m).map_or(bt[m], |c| c.1);
                new = new.max(t);
            }
            d += self.weight[i] * (new - old);
        }
        d
    }

    /// Drop layers of `r`, least loss of T per byte freed first, until it fits its budget.
    pub fn repair(&self, pl: &mut Placement, r: usize) {
        let limit = self.c.p.registries()[r].storage_bytes * (1.0 + 1e-9);
        let mut bt = self.best_times(pl);
        while pl.used(r) > limit {
            let pick = (0..self.c.layers())
                .filter(|&l| pl.hold(r, l) != Hold::None)
                .map(|l| {
                    let loss = self.delta(&bt, &[(l, self.best(pl, l, Some(r)))]);
                    (loss / pl.freed(self.c, r, l).max(1.0), l)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((_, l)) = pick else {
                break;
            };
            pl.set(self.c, r, l, Hold::None);
            bt[l] = self.best(pl, l, None);
        }
    }

    /// The move of registry `r` that brings image `i` down to the fastest time `r` can give
    /// it as `hold`, if it fits and helps.
    fn image_move(
        &self,
        pl: &Placement,
        bt: &[f64],
        r: usize,
        i: usize,
        hold: Hold,
        scratch: &mut Stamps,
    ) -> Option<Move> {
        let layers = &self.c.p.image_layers[i];
        let old = layers.iter().map(|&l| bt[l]).fold(0.0, f64::max);
        let new = layers
            .iter()
            .map(|&l| match pl.hold(r, l) {
                Hold::None => bt[l].min(self.c.time(r, l, hold)),
                _ => bt[l],
            })
            .fold(0.0, f64::max);
        if new >= old - 1e-12 {
            return None;
        }
        let needed: Vec<usize> = layers.iter().copied().filter(|&l| bt[l] > new).collect();
        let cost = match hold {
            Hold::Rebuilt => pl.files_cost(self.c, r, &needed, scratch),
            _ => needed.iter().map(|&l| pl.cost(self.c, r, l, hold)).sum(),
        };
        let free = self.c.p.registries()[r].storage_bytes - pl.used(r);
        if cost > free + 1e-6 {
            return None;
        }
        let changed: Vec<(usize, f64)> = needed
            .iter()
            .map(|&l| (l, self.c.time(r, l, hold)))
            .collect();
        let gain = -self.delta(bt, &changed);
        (gain > 1e-9).then(|| Move {
            r,
            hold,
            layers: needed,
            score: gain / cost.max(1.0),
        })
    }

    /// Apply the move that lowers T most per byte, while any fits and helps.
    pub fn complete(&self, pl: &mut Placement) {
        let mut bt = self.best_times(pl);
        let mut scratch = Stamps::new(self.c.g.groups.len());
        let images: Vec<usize> = (0..self.weight.len())
            .filter(|&i| self.weight[i] > 0.0)
            .collect();
        loop {
            let mut best: Option<Move> = None;
            for r in 0..self.c.registries() {
                let holds: &[Hold] = match pl.granularity[r] {
                    Granularity::Layer => &[Hold::Whole],
                    Granularity::File => &[Hold::Rebuilt],
                    Granularity::Hybrid => &[Hold::Whole, Hold::Rebuilt],
                };
                for &i in &images {
                    for &hold in holds {
                        if let Some(m) = self.image_move(pl, &bt, r, i, hold, &mut scratch) {
                            if best.as_ref().is_none_or(|b| m.score > b.score) {
                                best = Some(m);
                            }
                        }
                    }
                }
            }
            let Some(m) = best else {
                return;
            };
            for l in m.layers {
                pl.set(self.c, m.r, l, m.hold);
                bt[l] = bt[l].min(self.c.time(m.r, l, m.hold));
            }
        }
    }
}
