//! The MIS program, solved by HiGHS as an LP relaxation (for `mis`, `mis-hybrid`) or as a
//! MIP (for `opt`).
//!
//! Variables, all in [0, 1] (binary in the MIP):
//! - `x[r]`: registry r stores files (1) or whole layers (0) (absent with `hybrid`);
//! - `whole[r][l]`: layer l stored whole at r; `group[r][g]`: file group g stored at r;
//! - `rebuilt[r][l]`: layer l reassemblable at r;
//! - per pulled pair k = (demand (n,i), layer l): `zw[r][k]` served whole from r,
//!   `zr[r][k]` rebuilt at r, `zc[k]` from the central registry;
//! - `t[d]` >= 0: pull time of demand d.
//!
//! Exact linearisation of the bilinear storage constraint
//! x_r * sum_f y(r,f) s_f + (1 - x_r) * sum_l y(r,l) s_l <= S_r: split storage by granularity,
//! `whole[r][l] <= 1 - x[r]`, `group[r][g] <= x[r]`, and
//! sum_l whole[r][l] s_l + sum_g group[r][g] s_g <= S_r. For binary values this is the
//! original constraint; without `x` (hybrid) a registry may mix both.
//! Constraint 2, one row per (r, l): sum over the groups g of l of s_g (group[r][g] -
//! rebuilt[r][l]) >= 0. For binary values (and groups of positive size) rebuilt[r][l] = 1
//! forces every group of l to be stored, so the MIP is exact; the relaxation is weaker than
//! one row per (r, l, g) but thousands of times smaller (6 x 744 rows instead of ~500,000 on
//! the large case). Constraint 3:
//! `zw[r][k] <= whole[r][l]`, `zr[r][k] <= rebuilt[r][l]`. Constraint 4:
//! sum_r (zw + zr) + zc = 1. Constraint 5: sum_k (zw[r][k] + zr[r][k]) <= C_r.
//! The image time max over layers becomes t[d] >= time of each of its layers' pulls, and the
//! objective is sum_d lambda_d t[d], exact for binary z.

use highs::{Col, HighsModelStatus, RowProblem, Sense};

use crate::instance::{FileGroup, Problem};
use crate::PlannerError;

/// Which program to build.
#[derive(Debug, Clone, Copy)]
pub struct Formulation {
    /// Per-layer granularity (no `x`).
    pub hybrid: bool,
    /// Binary variables (the MIP).
    pub integral: bool,
    pub time_limit_s: Option<f64>,
}

/// Values of the solved program, indexed like the instance.
#[derive(Debug, Clone)]
pub struct Solved {
    pub objective: f64,
    pub mip_gap: Option<f64>,
    pub x: Vec<f64>,
    pub whole: Vec<Vec<f64>>,
    pub rebuilt: Vec<Vec<f64>>,
    /// k -> (demand index into `Problem::demands`, layer)
    pub pairs: Vec<(usize, usize)>,
    pub zw: Vec<Vec<f64>>,
    pub zr: Vec<Vec<f64>>,
}

/// Columns in creation order, so solution values can be read back by index.
struct Builder {
    pb: RowProblem,
    count: usize,
    integral: bool,
}

impl Builder {
    fn var(&mut self, cost: f64, upper: f64) -> (Col, usize) {
        let col = if self.integral && upper <= 1.0 {
            self.pb.add_integer_column(cost, 0.0..=upper)
        } else {
            self.pb.add_column(cost, 0.0..=upper)
        };
        self.count += 1;
        (col, self.count - 1)
    }

    fn vars(&mut self, n: usize) -> Vec<(Col, usize)> {
        (0..n).map(|_| self.var(0.0, 1.0)).collect()
    }
}

/// The file groups of an instance and, per layer, the groups it is made of; computed once
/// per solve and shared by the program, the rounding and the local search.
#[derive(Debug, Clone)]
pub struct Grouping {
    pub groups: Vec<FileGroup>,
    pub layer_groups: Vec<Vec<usize>>,
}

impl Grouping {
    pub fn new(p: &Problem) -> Self {
        let groups = p.file_groups();
        let layer_groups = groups_of_layers(p, &groups);
        Grouping {
            groups,
            layer_groups,
        }
    }
}

/// Per layer: the file groups it is made of.
fn groups_of_layers(p: &Problem, groups: &[FileGroup]) -> Vec<Vec<usize>> {
    let mut of = vec![Vec::new(); p.layers().len()];
    for (g, group) in groups.iter().enumerate() {
        for &l in &group.layers {
            of[l].push(g);
        }
    }
    of
}

/// Every (demand, layer) pair that must be pulled.
pub fn pulled_pairs(p: &Problem) -> Vec<(usize, usize)> {
    p.demands
        .iter()
        .enumerate()
        .flat_map(|(d, &(_, i, _))| p.image_layers[i].iter().map(move |&l| (d, l)))
        .collect()
}

pub fn solve(p: &Problem, grouping: &Grouping, f: Formulation) -> Result<Solved, PlannerError> {
    let (groups, layer_groups) = (&grouping.groups, &grouping.layer_groups);
    let regs = p.registries();
    let (nr, nl, ng) = (regs.len(), p.layers().len(), groups.len());
    let pairs = pulled_pairs(p);
    let mut b = Builder {
        pb: RowProblem::default(),
        count: 0,
        integral: f.integral,
    };

    let x: Vec<(Col, usize)> = if f.hybrid { Vec::new() } else { b.vars(nr) };
    let whole: Vec<Vec<(Col, usize)>> = (0..nr).map(|_| b.vars(nl)).collect();
    let group: Vec<Vec<(Col, usize)>> = (0..nr).map(|_| b.vars(ng)).collect();
    let rebuilt: Vec<Vec<(Col, usize)>> = (0..nr).map(|_| b.vars(nl)).collect();
    let zw: Vec<Vec<(Col, usize)>> = (0..nr).map(|_| b.vars(pairs.len())).collect();
    let zr: Vec<Vec<(Col, usize)>> = (0..nr).map(|_| b.vars(pairs.len())).collect();
    let zc = b.vars(pairs.len());
    let t: Vec<(Col, usize)> = p
        .demands
        .iter()
        .map(|&(_, _, rate)| b.var(rate, f64::INFINITY))
        .collect();

    for r in 0..nr {
        if !f.hybrid {
            for w in &whole[r] {
                b.pb.add_row(..=1.0, [(w.0, 1.0), (x[r].0, 1.0)]);
            }
            for g in &group[r] {
                b.pb.add_row(..=0.0, [(g.0, 1.0), (x[r].0, -1.0)]);
            }
        }
        let storage = (0..nl)
            .map(|l| (whole[r][l].0, p.layers()[l].size))
            .chain((0..ng).map(|g| (group[r][g].0, groups[g].size)));
        b.pb.add_row(..=regs[r].storage_bytes, storage.collect::<Vec<_>>());
        for l in 0..nl {
            let files: f64 = layer_groups[l].iter().map(|&g| groups[g].size).sum();
            let mut row: Vec<(Col, f64)> = layer_groups[l]
                .iter()
                .map(|&g| (group[r][g].0, groups[g].size))
                .collect();
            row.push((rebuilt[r][l].0, -files));
            b.pb.add_row(0.0.., row);
        }
        let mut conn = Vec::with_capacity(2 * pairs.len());
        for (k, &(_, l)) in pairs.iter().enumerate() {
            b.pb.add_row(..=0.0, [(zw[r][k].0, 1.0), (whole[r][l].0, -1.0)]);
            b.pb.add_row(..=0.0, [(zr[r][k].0, 1.0), (rebuilt[r][l].0, -1.0)]);
            conn.push((zw[r][k].0, 1.0));
            conn.push((zr[r][k].0, 1.0));
        }
        b.pb.add_row(..=regs[r].connections, conn);
    }
    let central_bw = p.instance.central.bandwidth_bytes_per_s;
    for (k, &(d, l)) in pairs.iter().enumerate() {
        let layer = &p.layers()[l];
        let mut one = vec![(zc[k].0, 1.0)];
        let mut time = vec![(t[d].0, 1.0), (zc[k].0, -layer.size / central_bw)];
        for r in 0..nr {
            let base = layer.size / regs[r].bandwidth_bytes_per_s;
            one.push((zw[r][k].0, 1.0));
            one.push((zr[r][k].0, 1.0));
            time.push((zw[r][k].0, -base));
            time.push((zr[r][k].0, -(base + layer.tau_s)));
        }
        b.pb.add_row(1.0..=1.0, one);
        b.pb.add_row(0.0.., time);
    }

    let mut model = b.pb.optimise(Sense::Minimise);
    model.make_quiet();
    if !f.integral {
        // The relaxation is large and degenerate: interior point without crossover is far
        // faster than simplex here, and rounding needs no basic solution.
        model.set_option("solver", "ipm");
        model.set_option("run_crossover", "off");
    }
    if let Some(limit) = f.time_limit_s {
        model.set_option("time_limit", limit);
    }
    let solved = model
        .try_solve()
        .map_err(|e| PlannerError::Solver(format!("highs failed: {e:?}")))?;
    let status = solved.status();
    let usable = matches!(status, HighsModelStatus::Optimal)
        || (f.integral && status == HighsModelStatus::ReachedTimeLimit);
    if !usable {
        return Err(PlannerError::Solver(format!(
            "highs ended with status {status:?}"
        )));
    }
    let values = solved.get_solution().columns().to_vec();
    if values.len() != b.count {
        return Err(PlannerError::Solver("highs returned no solution".into()));
    }
    let read = |cols: &[(Col, usize)]| cols.iter().map(|&(_, i)| values[i]).collect::<Vec<f64>>();
    let read2 = |m: &[Vec<(Col, usize)>]| m.iter().map(|v| read(v)).collect::<Vec<_>>();
    Ok(Solved {
        objective: solved.objective_value(),
        mip_gap: f.integral.then(|| solved.mip_gap()),
        x: if f.hybrid { vec![0.0; nr] } else { read(&x) },
        whole: read2(&whole),
        rebuilt: read2(&rebuilt),
        pairs,
        zw: read2(&zw),
        zr: read2(&zr),
    })
}
