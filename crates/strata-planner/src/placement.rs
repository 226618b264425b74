//! A plan in index form: what each registry holds and where each pulled pair comes from.

use std::collections::BTreeSet;

use crate::instance::{FileGroup, Problem};
use crate::plan::{Granularity, Plan, RegistryPlan, Route, PLAN_FORMAT};

/// What the registries hold.
#[derive(Debug, Clone)]
pub struct Placement {
    pub granularity: Vec<Granularity>,
    pub whole: Vec<BTreeSet<usize>>,
    pub rebuilt: Vec<BTreeSet<usize>>,
}

impl Placement {
    pub fn empty(registries: usize, g: Granularity) -> Self {
        Placement {
            granularity: vec![g; registries],
            whole: vec![BTreeSet::new(); registries],
            rebuilt: vec![BTreeSet::new(); registries],
        }
    }

    /// File groups registry `r` stores: those of its rebuilt layers.
    pub fn stored_groups(&self, r: usize, layer_groups: &[Vec<usize>]) -> BTreeSet<usize> {
        self.rebuilt[r]
            .iter()
            .flat_map(|&l| layer_groups[l].iter().copied())
            .collect()
    }

    /// Bytes registry `r` stores: whole layers plus the union of its rebuilt layers' groups.
    pub fn storage(
        &self,
        r: usize,
        p: &Problem,
        groups: &[FileGroup],
        layer_groups: &[Vec<usize>],
    ) -> f64 {
        let whole: f64 = self.whole[r].iter().map(|&l| p.layers()[l].size).sum();
        let kept = self.stored_groups(r, layer_groups);
        whole + kept.iter().map(|&g| groups[g].size).sum::<f64>()
    }
}

/// Pull time of layer `l` from `source` (None: the central registry), or None if the
/// source does not hold it.
pub fn pull_time(p: &Problem, pl: &Placement, l: usize, source: Option<usize>) -> Option<f64> {
    let layer = &p.layers()[l];
    match source {
        None => Some(layer.size / p.instance.central.bandwidth_bytes_per_s),
        Some(r) => {
            let base = layer.size / p.registries()[r].bandwidth_bytes_per_s;
            if pl.whole[r].contains(&l) {
                Some(base)
            } else if pl.rebuilt[r].contains(&l) {
                Some(base + layer.tau_s)
            } else {
                None
            }
        }
    }
}

/// T of a placement and routing (sources per pair of `pairs`).
pub fn total_latency(
    p: &Problem,
    pl: &Placement,
    pairs: &[(usize, usize)],
    sources: &[Option<usize>],
) -> f64 {
    let mut t = vec![0.0f64; p.demands.len()];
    for (k, &(d, l)) in pairs.iter().enumerate() {
        let time = pull_time(p, pl, l, sources[k]).unwrap_or(f64::INFINITY);
        t[d] = t[d].max(time);
    }
    p.demands
        .iter()
        .zip(t)
        .map(|(&(_, _, rate), t)| rate * t)
        .sum()
}

/// Render as the plan format.
pub fn to_plan(
    p: &Problem,
    pl: &Placement,
    pairs: &[(usize, usize)],
    sources: &[Option<usize>],
    strategy: &str,
) -> Plan {
    let layer_id = |l: usize| p.layers()[l].id.clone();
    let registries = p
        .registries()
        .iter()
        .enumerate()
        .map(|(r, reg)| RegistryPlan {
            name: reg.name.clone(),
            granularity: pl.granularity[r],
            layers: pl.whole[r].iter().map(|&l| layer_id(l)).collect(),
            file_layers: pl.rebuilt[r].iter().map(|&l| layer_id(l)).collect(),
        })
        .collect();
    let routes = pairs
        .iter()
        .zip(sources)
        .map(|(&(d, l), s)| {
            let (n, i, _) = p.demands[d];
            Route {
                server: p.instance.servers[n].clone(),
                image: p.instance.images[i].name.clone(),
                layer: layer_id(l),
                source: match s {
                    Some(r) => p.registries()[*r].name.clone(),
                    None => p.instance.central.name.clone(),
                },
            }
        })
        .collect();
    Plan {
        format: PLAN_FORMAT.to_string(),
        strategy: strategy.to_string(),
        registries,
        routes,
    }
}

/// Route pulls demand by demand, most requested first. For each demand, its achievable time
/// is the largest over its layers of the fastest holder with a free connection (or the
/// central registry); layers the central registry delivers within that time go there and
/// spend no connection, the others take their fastest holder. Connections are spent only on
/// the layers that decide an image's pull time.
pub fn fastest_routes(p: &Problem, pl: &Placement, pairs: &[(usize, usize)]) -> Vec<Option<usize>> {
    let mut by_demand: Vec<Vec<usize>> = vec![Vec::new(); p.demands.len()];
    for (k, &(d, _)) in pairs.iter().enumerate() {
        by_demand[d].push(k);
    }
    let mut order: Vec<usize> = (0..p.demands.len()).collect();
    order.sort_by(|&a, &b| p.demands[b].2.total_cmp(&p.demands[a].2).then(a.cmp(&b)));
    let mut free: Vec<f64> = p.registries().iter().map(|r| r.connections).collect();
    let mut sources = vec![None; pairs.len()];
    for d in order {
        let best_of = |l: usize, free: &[f64]| {
            let mut best = (pull_time(p, pl, l, None).unwrap_or(f64::INFINITY), None);
            for (r, &left) in free.iter().enumerate() {
                if left >= 1.0 {
                    if let Some(t) = pull_time(p, pl, l, Some(r)) {
                        if t < best.0 {
                            best = (t, Some(r));
                        }
                    }
                }
            }
            best
        };
        let target = by_demand[d]
            .iter()
            .map(|&k| best_of(pairs[k].1, &free).0)
            .fold(0.0, f64::max);
        for &k in &by_demand[d] {
            let l = pairs[k].1;
            if pull_time(p, pl, l, None).unwrap_or(f64::INFINITY) <= target {
                continue;
            }
            let (_, src) = best_of(l, &free);
            if let Some(r) = src {
                free[r] -= 1.0;
            }
            sources[k] = src;
        }
    }
    sources
}
