//! Evaluate a plan against an instance: latency, resources and violated constraints.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::instance::{resolve, Problem};
use crate::plan::{Granularity, Plan, PLAN_FORMAT};
use crate::PlannerError;

/// A constraint a plan breaks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// Constraint 1.
    Storage {
        registry: String,
        used_bytes: f64,
        limit_bytes: f64,
    },
    /// Constraint 5.
    Connections {
        registry: String,
        used: u64,
        limit: f64,
    },
    /// Constraint 3: a layer pulled from a registry that does not hold it.
    NotHeld { registry: String, layer: String },
    /// Constraint 4: a needed layer with no source.
    Unserved {
        server: String,
        image: String,
        layer: String,
    },
    /// Constraint 4: a layer with more than one source.
    MultipleSources {
        server: String,
        image: String,
        layer: String,
    },
    /// A layer-level registry with file layers, or a file-level one with whole layers.
    Granularity { registry: String },
}

/// What a plan achieves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// T = sum over (n,i) of lambda(n,i) * t(n,i), seconds.
    pub total_latency_s: f64,
    /// t(n,i) averaged over servers, weighted by lambda.
    pub per_image_latency_s: BTreeMap<String, f64>,
    pub storage_used_bytes: BTreeMap<String, f64>,
    pub connections_used: BTreeMap<String, u64>,
    /// Registries storing any layer as files.
    pub file_level_registries: usize,
    /// sum of lambda * tau_l over pulls served by reconstruction.
    pub reconstruction_s: f64,
    /// Layers stored whole or reassemblable, summed over registries.
    pub layers_stored: usize,
    pub violations: Vec<Violation>,
}

impl Evaluation {
    pub fn feasible(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Where each registry can serve each layer from: whole (no tau) or rebuilt (tau).
struct Holdings {
    whole: Vec<HashSet<usize>>,
    rebuilt: Vec<HashSet<usize>>,
}

fn holdings(p: &Problem, plan: &Plan, out: &mut Evaluation) -> Result<Holdings, PlannerError> {
    let nreg = p.registries().len();
    let mut h = Holdings {
        whole: vec![HashSet::new(); nreg],
        rebuilt: vec![HashSet::new(); nreg],
    };
    for rp in &plan.registries {
        let owner = format!("plan of registry {:?}", rp.name);
        let r = resolve(&p.registry_index, &owner, "registry", &rp.name)?;
        if r >= nreg {
            return Err(PlannerError::Unknown {
                owner,
                what: "edge registry",
                id: rp.name.clone(),
            });
        }
        let mismatch = match rp.granularity {
            Granularity::Layer => !rp.file_layers.is_empty(),
            Granularity::File => !rp.layers.is_empty(),
            Granularity::Hybrid => false,
        };
        if mismatch {
            out.violations.push(Violation::Granularity {
                registry: rp.name.clone(),
            });
        }
        for l in &rp.layers {
            h.whole[r].insert(resolve(&p.layer_index, &owner, "layer", l)?);
        }
        for l in &rp.file_layers {
            h.rebuilt[r].insert(resolve(&p.layer_index, &owner, "layer", l)?);
        }
    }
    Ok(h)
}

fn account_storage(p: &Problem, h: &Holdings, out: &mut Evaluation) {
    for (r, reg) in p.registries().iter().enumerate() {
        let whole: f64 = h.whole[r].iter().map(|&l| p.layers()[l].size).sum();
        let files: HashSet<usize> = h.rebuilt[r]
            .iter()
            .flat_map(|&l| p.layer_files[l].iter().copied())
            .collect();
        let file_bytes: f64 = files.iter().map(|&f| p.file_size(f)).sum();
        let used = whole + file_bytes;
        out.storage_used_bytes.insert(reg.name.clone(), used);
        // Rounding slack of a millionth of a byte per stored byte.
        if used > reg.storage_bytes * (1.0 + 1e-9) + 1e-6 {
            out.violations.push(Violation::Storage {
                registry: reg.name.clone(),
                used_bytes: used,
                limit_bytes: reg.storage_bytes,
            });
        }
        if !h.rebuilt[r].is_empty() {
            out.file_level_registries += 1;
        }
        out.layers_stored += h.whole[r].union(&h.rebuilt[r]).count();
    }
}

/// Evaluate `plan` on `p`. Names unknown to the instance are an error; broken constraints
/// are reported in [`Evaluation::violations`].
pub fn evaluate(p: &Problem, plan: &Plan) -> Result<Evaluation, PlannerError> {
    if plan.format != PLAN_FORMAT {
        return Err(PlannerError::Format {
            found: plan.format.clone(),
            expected: PLAN_FORMAT,
        });
    }
    let mut out = Evaluation {
        total_latency_s: 0.0,
        per_image_latency_s: BTreeMap::new(),
        storage_used_bytes: BTreeMap::new(),
        connections_used: BTreeMap::new(),
        file_level_registries: 0,
        reconstruction_s: 0.0,
        layers_stored: 0,
        violations: Vec::new(),
    };
    let h = holdings(p, plan, &mut out)?;
    account_storage(p, &h, &mut out);

    let nreg = p.registries().len();
    let central = nreg;
    let mut sources: HashMap<(usize, usize, usize), Vec<usize>> = HashMap::new();
    let mut connections = vec![0u64; nreg];
    for route in &plan.routes {
        let owner = format!(
            "route of layer {:?} of {:?} to {:?}",
            route.layer, route.image, route.server
        );
        let n = resolve(&p.server_index, &owner, "server", &route.server)?;
        let i = resolve(&p.image_index, &owner, "image", &route.image)?;
        let l = resolve(&p.layer_index, &owner, "layer", &route.layer)?;
        let r = resolve(&p.registry_index, &owner, "registry", &route.source)?;
        // A route given twice (e.g. once per listing of a layer an image lists twice) is
        // one pull.
        let srcs = sources.entry((n, i, l)).or_default();
        if srcs.contains(&r) {
            continue;
        }
        srcs.push(r);
        if r < nreg {
            connections[r] += 1;
        }
    }
    for (r, reg) in p.registries().iter().enumerate() {
        out.connections_used
            .insert(reg.name.clone(), connections[r]);
        if connections[r] as f64 > reg.connections + 1e-9 {
            out.violations.push(Violation::Connections {
                registry: reg.name.clone(),
                used: connections[r],
                limit: reg.connections,
            });
        }
    }

    let names = |n: usize, i: usize, l: usize| {
        (
            p.instance.servers[n].clone(),
            p.instance.images[i].name.clone(),
            p.layers()[l].id.clone(),
        )
    };
    let mut weighted: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    for &(n, i, rate) in &p.demands {
        let mut t_image: f64 = 0.0;
        for &l in &p.image_layers[i] {
            let layer = &p.layers()[l];
            let srcs = sources.get(&(n, i, l)).map(Vec::as_slice).unwrap_or(&[]);
            let (server, image, lid) = names(n, i, l);
            let r = match srcs {
                [] => {
                    out.violations.push(Violation::Unserved {
                        server,
                        image,
                        layer: lid,
                    });
                    central
                }
                [r] => *r,
                [r, ..] => {
                    out.violations.push(Violation::MultipleSources {
                        server,
                        image,
                        layer: lid,
                    });
                    *r
                }
            };
            let t = if r == central {
                layer.size / p.instance.central.bandwidth_bytes_per_s
            } else {
                let b = p.registries()[r].bandwidth_bytes_per_s;
                if h.whole[r].contains(&l) {
                    layer.size / b
                } else {
                    if !h.rebuilt[r].contains(&l) {
                        out.violations.push(Violation::NotHeld {
                            registry: p.registries()[r].name.clone(),
                            layer: layer.id.clone(),
                        });
                    }
                    out.reconstruction_s += rate * layer.tau_s;
                    layer.size / b + layer.tau_s
                }
            };
            t_image = t_image.max(t);
        }
        out.total_latency_s += rate * t_image;
        let e = weighted.entry(i).or_insert((0.0, 0.0));
        e.0 += rate * t_image;
        e.1 += rate;
    }
    for (i, (sum, rates)) in weighted {
        out.per_image_latency_s
            .insert(p.instance.images[i].name.clone(), sum / rates);
    }
    Ok(out)
}
