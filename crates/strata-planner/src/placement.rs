//! A plan in index form: what each registry holds, with its storage kept up to date on every
//! change (file groups are reference-counted per registry, so adding or dropping a file layer
//! costs the groups it brings or frees, in time proportional to its groups).

use crate::instance::Problem;
use crate::lp::Grouping;
use crate::plan::{Granularity, Plan, RegistryPlan, Route, PLAN_FORMAT};

/// How a registry holds a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    None,
    /// Stored whole: served in s_l / b_r.
    Whole,
    /// Rebuilt from the registry's files: s_l / b_r + tau_l.
    Rebuilt,
}

/// The instance with its file groups: everything sizes and times are computed from.
#[derive(Clone, Copy)]
pub struct Catalog<'a> {
    pub p: &'a Problem,
    pub g: &'a Grouping,
}

impl Catalog<'_> {
    pub fn registries(&self) -> usize {
        self.p.registries().len()
    }

    pub fn layers(&self) -> usize {
        self.p.layers().len()
    }

    /// Pull time of layer `l` from the central registry.
    pub fn central_time(&self, l: usize) -> f64 {
        self.p.layers()[l].size / self.p.instance.central.bandwidth_bytes_per_s
    }

    /// Pull time of layer `l` from registry `r` holding it as `h` (infinite for `None`).
    pub fn time(&self, r: usize, l: usize, h: Hold) -> f64 {
        let layer = &self.p.layers()[l];
        let base = layer.size / self.p.registries()[r].bandwidth_bytes_per_s;
        match h {
            Hold::None => f64::INFINITY,
            Hold::Whole => base,
            Hold::Rebuilt => base + layer.tau_s,
        }
    }
}

/// What the registries hold.
#[derive(Debug, Clone)]
pub struct Placement {
    pub granularity: Vec<Granularity>,
    held: Vec<Vec<Hold>>,
    group_refs: Vec<Vec<u32>>,
    used: Vec<f64>,
}

impl Placement {
    pub fn empty(c: Catalog, g: Granularity) -> Self {
        let nr = c.registries();
        Placement {
            granularity: vec![g; nr],
            held: vec![vec![Hold::None; c.layers()]; nr],
            group_refs: vec![vec![0; c.g.groups.len()]; nr],
            used: vec![0.0; nr],
        }
    }

    pub fn hold(&self, r: usize, l: usize) -> Hold {
        self.held[r][l]
    }

    /// Bytes registry `r` stores: whole layers plus the union of its file layers' groups.
    pub fn used(&self, r: usize) -> f64 {
        self.used[r]
    }

    /// Layers registry `r` holds as `h`, ascending.
    pub fn layers(&self, r: usize, h: Hold) -> impl Iterator<Item = usize> + '_ {
        self.held[r]
            .iter()
            .enumerate()
            .filter(move |&(_, &x)| x == h)
            .map(|(l, _)| l)
    }

    /// Bytes of layer `l`'s file groups that exactly `refs` file layers of `r` use.
    fn group_bytes(&self, c: Catalog, r: usize, l: usize, refs: u32) -> f64 {
        c.g.layer_groups[l]
            .iter()
            .filter(|&&g| self.group_refs[r][g] == refs)
            .map(|&g| c.g.groups[g].size)
            .sum()
    }

    /// Bytes that holding layer `l` as `h` adds to registry `r` (which does not hold it).
    pub fn cost(&self, c: Catalog, r: usize, l: usize, h: Hold) -> f64 {
        match h {
            Hold::None => 0.0,
            Hold::Whole => c.p.layers()[l].size,
            Hold::Rebuilt => self.group_bytes(c, r, l, 0),
        }
    }

    /// Bytes that holding all of `layers` as files adds to registry `r`: the groups it does
    /// not store yet, each counted once.
    pub fn files_cost(&self, c: Catalog, r: usize, layers: &[usize], seen: &mut Stamps) -> f64 {
        seen.next();
        let mut bytes = 0.0;
        for &l in layers {
            for &g in &c.g.layer_groups[l] {
                if self.group_refs[r][g] == 0 && seen.mark(g) {
                    bytes += c.g.groups[g].size;
                }
            }
        }
        bytes
    }

    /// Bytes that dropping layer `l` frees at registry `r`.
    pub fn freed(&self, c: Catalog, r: usize, l: usize) -> f64 {
        match self.held[r][l] {
            Hold::None => 0.0,
            Hold::Whole => c.p.layers()[l].size,
            Hold::Rebuilt => self.group_bytes(c, r, l, 1),
        }
    }

    /// Make registry `r` hold layer `l` as `h`, updating its storage.
    pub fn set(&mut self, c: Catalog, r: usize, l: usize, h: Hold) {
        let before = self.held[r][l];
        if before == h {
            return;
        }
        self.used[r] -= self.freed(c, r, l);
        if before == Hold::Rebuilt {
            for &g in &c.g.layer_groups[l] {
                self.group_refs[r][g] -= 1;
            }
        }
        self.used[r] += self.cost(c, r, l, h);
        if h == Hold::Rebuilt {
            for &g in &c.g.layer_groups[l] {
                self.group_refs[r][g] += 1;
            }
        }
        self.held[r][l] = h;
    }

    /// Drop everything registry `r` holds.
    pub fn clear(&mut self, r: usize) {
        self.held[r].iter_mut().for_each(|h| *h = Hold::None);
        self.group_refs[r].iter_mut().for_each(|n| *n = 0);
        self.used[r] = 0.0;
    }
}

/// Pull time of layer `l` from `source` (None: the central registry), or None if the
/// source does not hold it.
pub fn pull_time(c: Catalog, pl: &Placement, l: usize, source: Option<usize>) -> Option<f64> {
    match source {
        None => Some(c.central_time(l)),
        Some(r) => match pl.hold(r, l) {
            Hold::None => None,
            h => Some(c.time(r, l, h)),
        },
    }
}

/// T of a placement and routing (sources per pair of `pairs`).
pub fn total_latency(
    c: Catalog,
    pl: &Placement,
    pairs: &[(usize, usize)],
    sources: &[Option<usize>],
) -> f64 {
    let mut t = vec![0.0f64; c.p.demands.len()];
    for (k, &(d, l)) in pairs.iter().enumerate() {
        let time = pull_time(c, pl, l, sources[k]).unwrap_or(f64::INFINITY);
        t[d] = t[d].max(time);
    }
    c.p.demands
        .iter()
        .zip(t)
        .map(|(&(_, _, rate), t)| rate * t)
        .sum()
}

/// Render as the plan format.
pub fn to_plan(
    c: Catalog,
    pl: &Placement,
    pairs: &[(usize, usize)],
    sources: &[Option<usize>],
    strategy: &str,
) -> Plan {
    let p = c.p;
    let layer_id = |l: usize| p.layers()[l].id.clone();
    let registries = p
        .registries()
        .iter()
        .enumerate()
        .map(|(r, reg)| RegistryPlan {
            name: reg.name.clone(),
            granularity: pl.granularity[r],
            layers: pl.layers(r, Hold::Whole).map(layer_id).collect(),
            file_layers: pl.layers(r, Hold::Rebuilt).map(layer_id).collect(),
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

/// Marks that reset in O(1): a set of small integers for one computation at a time.
pub struct Stamps {
    stamp: Vec<u32>,
    now: u32,
}

impl Stamps {
    pub fn new(n: usize) -> Self {
        Stamps {
            stamp: vec![0; n],
            now: 0,
        }
    }

    fn next(&mut self) {
        self.now += 1;
    }

    /// Mark `i`; `true` if it was not marked in this round.
    fn mark(&mut self, i: usize) -> bool {
        let fresh = self.stamp[i] != self.now;
        self.stamp[i] = self.now;
        fresh
    }
}
