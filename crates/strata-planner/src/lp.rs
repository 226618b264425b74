//! The MIS program, solved by HiGHS as an LP relaxation (for `mis`, `mis-hybrid`) or as a
//! MIP (for `opt`). `STRATA_HIGHS_LOG=1` in the environment shows HiGHS's log;
//! `STRATA_HIGHS_OPTS=name=value,...` sets HiGHS options (for trials of its settings).
//!
//! Variables, all in [0, 1] (binary in the MIP):
//! - `x[r]`: registry r stores files (1) or whole layers (0) (absent with `hybrid`);
//! - `whole[r][l]`: layer l stored whole at r; `group[r][g]`: file group g stored at r;
//! - `rebuilt[r][l]`: layer l reassemblable at r;
//! - per pulled pair k = (demand (n,i), layer l): `zw[r][k]` served whole from r,
//!   `zr[r][k]` rebuilt at r (no column where that route is not faster than the central
//!   registry); the central registry takes the rest, 1 - sum_r (zw + zr);
//! - `t[d]` >= 0: pull time of demand d.
//!
//! Exact linearisation of the bilinear storage constraint
//! x_r * sum_f y(r,f) s_f + (1 - x_r) * sum_l y(r,l) s_l <= S_r: split the budget by
//! granularity, sum_l whole[r][l] s_l <= S_r (1 - x[r]) and sum_g group[r][g] s_g <= S_r x[r].
//! For binary x this is the original constraint (x = 1 forbids whole layers, x = 0 files);
//! without `x` (hybrid) one row sum_l whole s_l + sum_g group s_g <= S_r lets a registry mix.
//! Storage rows are in MB (bytes next to 0/1 coefficients slow the interior point method).
//! Constraint 2, one row per (r, l): sum over the groups g of l of s_g (group[r][g] -
//! rebuilt[r][l]) >= 0. For binary values (and groups of positive size) rebuilt[r][l] = 1
//! forces every group of l to be stored, so the MIP is exact; the relaxation is weaker than
//! one row per (r, l, g) but far smaller. Constraint 3, summed over the P_l pairs of layer l:
//! sum_k zw[r][k] <= P_l whole[r][l] (and the same for zr, rebuilt), exact for a binary
//! holding variable (0 forbids every route, 1 allows them all), P_l times fewer rows.
//! Constraint 4: sum_r (zw + zr) <= 1. Constraint 5: sum_k (zw[r][k] + zr[r][k]) <= C_r.
//! The image time max over layers becomes t[d] >= central time of l - the savings of the
//! routes taken, for each layer l of d, plus one staircase row per demand
//! ([`add_staircases`]); the objective is sum_d lambda_d t[d], exact for binary z.
//!
//! Size on the generated large case: 23k rows, 90k columns, 0.58M nonzeros; HiGHS's
//! interior point method (no crossover: rounding needs no basis) takes 53 iterations. `opt`
//! solves this program as a MIP; `mis` rounds the smaller relaxation of
//! [`crate::relaxation`] where several servers pull the same images.

use highs::{Col, HighsModelStatus, RowProblem, Sense};

use crate::instance::{FileGroup, Problem};
use crate::placement::Hold;
use crate::PlannerError;

/// An integral plan the MIP starts from: HiGHS keeps it as its incumbent until it finds a
/// better one, so `opt` never ends a time-limited search worse than the plan it was given.
#[derive(Debug, Clone)]
pub struct Start {
    /// Per registry: stores files (true) or whole layers.
    pub files: Vec<bool>,
    /// Per registry and layer: how the layer is held.
    pub held: Vec<Vec<Hold>>,
    /// Per pulled pair (as [`pulled_pairs`]): the registry serving it, None for central.
    pub sources: Vec<Option<usize>>,
}

/// The program's columns, for reading a start into them.
struct Cols<'a> {
    h: &'a Holdings,
    zw: &'a Routes,
    zr: &'a Routes,
    t: &'a [(Col, usize)],
}

/// Column values of `start`. A route the program has no column for (one no faster than the
/// central registry) goes to the central registry; each demand's time is its slowest layer.
fn start_values(
    p: &Problem,
    grouping: &Grouping,
    pairs: &[(usize, usize)],
    cols: &Cols,
    start: &Start,
    count: usize,
) -> Vec<f64> {
    let mut v = vec![0.0; count];
    for (r, &(_, i)) in cols.h.x.iter().enumerate() {
        v[i] = if start.files[r] { 1.0 } else { 0.0 };
    }
    for (r, held) in start.held.iter().enumerate() {
        for (l, h) in held.iter().enumerate() {
            match h {
                Hold::None => {}
                Hold::Whole => v[cols.h.whole[r][l].1] = 1.0,
                Hold::Rebuilt => {
                    v[cols.h.rebuilt[r][l].1] = 1.0;
                    for &g in &grouping.layer_groups[l] {
                        v[cols.h.group[r][g].1] = 1.0;
                    }
                }
            }
        }
    }
    let central_bw = p.instance.central.bandwidth_bytes_per_s;
    let mut times = vec![0.0f64; p.demands.len()];
    for (k, &(d, l)) in pairs.iter().enumerate() {
        let layer = &p.layers()[l];
        let mut time = layer.size / central_bw;
        if let Some(r) = start.sources[k] {
            let edge = layer.size / p.registries()[r].bandwidth_bytes_per_s;
            let route = match start.held[r][l] {
                Hold::Whole => cols.zw[r][k].map(|c| (c, edge)),
                Hold::Rebuilt => cols.zr[r][k].map(|c| (c, edge + layer.tau_s)),
                Hold::None => None,
            };
            if let Some(((_, i), t)) = route {
                v[i] = 1.0;
                time = t;
            }
        }
        times[d] = times[d].max(time);
    }
    for (d, &(_, i)) in cols.t.iter().enumerate() {
        v[i] = times[d];
    }
    v
}

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
    /// Seconds HiGHS took.
    pub seconds: f64,
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
pub(crate) struct Builder {
    pub pb: RowProblem,
    pub count: usize,
    pub integral: bool,
}

impl Builder {
    pub fn var(&mut self, cost: f64, upper: f64) -> (Col, usize) {
        let col = if self.integral && upper <= 1.0 {
            self.pb.add_integer_column(cost, 0.0..=upper)
        } else {
            self.pb.add_column(cost, 0.0..=upper)
        };
        self.count += 1;
        (col, self.count - 1)
    }

    pub fn vars(&mut self, n: usize) -> Vec<(Col, usize)> {
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

/// Route columns of one registry: per pair, None where the route would save nothing.
type Routes = Vec<Vec<Option<(Col, usize)>>>;

/// One valid inequality per demand that the per-layer time rows miss. With the demand's
/// layers sorted by central time c_1 >= c_2 >= ... >= c_m and f the fastest the demand can
/// be at all (its slowest layer from its fastest source), c'_j = max(c_j, f), c'_{m+1} = f:
/// t_d >= c'_1 - sum_j (c'_j - c'_{j+1}) * (edge routes of layer j). An integral routing
/// that takes layers 1..j-1 off the central registry but not layer j leaves t_d >= c_j,
/// and the sum telescopes to at most that, so no plan is cut off. A fractional one, though,
/// can no longer shave the slowest layer a little at almost no connection cost: the
/// relaxation of a demand with several equally slow layers pays for all of them.
/// `edge(k)` gives the columns whose sum is the share of pair k taken off the central
/// registry.
pub(crate) fn add_staircases(
    b: &mut Builder,
    p: &Problem,
    pairs: &[(usize, usize)],
    edge: impl Fn(usize) -> Vec<Col>,
    t: &[(Col, usize)],
) {
    let central_bw = p.instance.central.bandwidth_bytes_per_s;
    let fastest = p
        .registries()
        .iter()
        .map(|r| r.bandwidth_bytes_per_s)
        .fold(central_bw, f64::max);
    let mut by_demand = vec![Vec::new(); p.demands.len()];
    for (k, &(d, l)) in pairs.iter().enumerate() {
        by_demand[d].push((p.layers()[l].size / central_bw, k, l));
    }
    for (d, mut layers) in by_demand.into_iter().enumerate() {
        let floor = layers
            .iter()
            .map(|&(_, _, l)| p.layers()[l].size / fastest)
            .fold(0.0, f64::max);
        layers.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top = layers.first().map_or(floor, |x| x.0).max(floor);
        let mut row = vec![(t[d].0, 1.0)];
        for (j, &(c, k, _)) in layers.iter().enumerate() {
            let next = layers.get(j + 1).map_or(floor, |x| x.0).max(floor);
            let step = c.max(floor) - next;
            if step <= 0.0 {
                continue;
            }
            row.extend(edge(k).into_iter().map(|col| (col, step)));
        }
        if row.len() > 1 {
            b.pb.add_row(top.., row);
        }
    }
}

/// Storage rows in MB: bytes next to 0/1 coefficients make the interior point method slow.
const STORAGE_UNIT: f64 = 1e6;

/// The holding columns of the program (indices per registry, then layer or group).
pub(crate) struct Holdings {
    pub x: Vec<(Col, usize)>,
    pub whole: Vec<Vec<(Col, usize)>>,
    pub group: Vec<Vec<(Col, usize)>>,
    pub rebuilt: Vec<Vec<(Col, usize)>>,
}

impl Holdings {
    /// Values of x in a solution: all 0 in the hybrid program, which has no x columns.
    pub fn x_values(&self, v: &[f64], registries: usize) -> Vec<f64> {
        if self.x.is_empty() {
            vec![0.0; registries]
        } else {
            self.x.iter().map(|&(_, i)| v[i]).collect()
        }
    }
}

/// The holding columns with their storage rows (constraint 1) and reassembly rows
/// (constraint 2).
pub(crate) fn add_holdings(
    b: &mut Builder,
    p: &Problem,
    grouping: &Grouping,
    hybrid: bool,
) -> Holdings {
    let (groups, layer_groups) = (&grouping.groups, &grouping.layer_groups);
    let regs = p.registries();
    let (nr, nl, ng) = (regs.len(), p.layers().len(), groups.len());
    let h = Holdings {
        x: if hybrid { Vec::new() } else { b.vars(nr) },
        whole: (0..nr).map(|_| b.vars(nl)).collect(),
        group: (0..nr).map(|_| b.vars(ng)).collect(),
        rebuilt: (0..nr).map(|_| b.vars(nl)).collect(),
    };
    for (r, reg) in regs.iter().enumerate() {
        let whole_mb: Vec<(Col, f64)> = (0..nl)
            .map(|l| (h.whole[r][l].0, p.layers()[l].size / STORAGE_UNIT))
            .collect();
        let files_mb: Vec<(Col, f64)> = (0..ng)
            .map(|g| (h.group[r][g].0, groups[g].size / STORAGE_UNIT))
            .collect();
        let budget = reg.storage_bytes / STORAGE_UNIT;
        if hybrid {
            b.pb.add_row(..=budget, whole_mb.into_iter().chain(files_mb));
        } else {
            // The budget goes to whole layers (x = 0) or to files (x = 1), not both.
            let mut row = whole_mb;
            row.push((h.x[r].0, budget));
            b.pb.add_row(..=budget, row);
            let mut row = files_mb;
            row.push((h.x[r].0, -budget));
            b.pb.add_row(..=0.0, row);
        }
        // What cannot fit alone is never held (valid for binary values, and it keeps the
        // relaxation from holding a share of a layer larger than the registry).
        let fix_zero = |b: &mut Builder, col: Col| b.pb.add_row(..=0.0, [(col, 1.0)]);
        for (l, layer) in p.layers().iter().enumerate() {
            if layer.size > reg.storage_bytes {
                fix_zero(b, h.whole[r][l].0);
            }
        }
        for (g, group) in groups.iter().enumerate() {
            if group.size > reg.storage_bytes {
                fix_zero(b, h.group[r][g].0);
            }
        }
        for (l, of_layer) in layer_groups.iter().enumerate() {
            let files: f64 = of_layer.iter().map(|&g| groups[g].size).sum();
            if files > reg.storage_bytes {
                fix_zero(b, h.rebuilt[r][l].0);
            }
            let scale = files.max(1.0);
            let mut row: Vec<(Col, f64)> = of_layer
                .iter()
                .map(|&g| (h.group[r][g].0, groups[g].size / scale))
                .collect();
            row.push((h.rebuilt[r][l].0, -files / scale));
            b.pb.add_row(0.0.., row);
        }
    }
    h
}

/// Seconds a pull of layer l from registry r saves against the central registry: served
/// whole, rebuilt.
pub(crate) fn savings(p: &Problem, r: usize, l: usize) -> (f64, f64) {
    let layer = &p.layers()[l];
    let central = layer.size / p.instance.central.bandwidth_bytes_per_s;
    let base = layer.size / p.registries()[r].bandwidth_bytes_per_s;
    (central - base, central - base - layer.tau_s)
}

/// Constraint 3 summed over a layer's route columns, `sum routes <= count * held`: exact
/// for a binary holding variable (0 forbids every route, 1 allows them all).
pub(crate) fn add_route_limit(b: &mut Builder, routes: Vec<Col>, count: f64, held: Col) {
    if routes.is_empty() {
        return;
    }
    let mut row: Vec<(Col, f64)> = routes.into_iter().map(|c| (c, 1.0)).collect();
    row.push((held, -count));
    b.pb.add_row(..=0.0, row);
}

/// A solved program: column values, objective, seconds, MIP gap.
pub(crate) struct Run {
    pub values: Vec<f64>,
    pub objective: f64,
    pub seconds: f64,
    pub mip_gap: Option<f64>,
}

/// Solve what `b` holds with HiGHS.
pub(crate) fn run(b: Builder, f: Formulation, start: Option<&[f64]>) -> Result<Run, PlannerError> {
    let count = b.count;
    // Nothing to decide (no layer is pulled, or no image is requested): T = 0, which
    // HiGHS reports as an empty model rather than solving.
    if count == 0 {
        return Ok(Run {
            values: Vec::new(),
            objective: 0.0,
            seconds: 0.0,
            mip_gap: f.integral.then_some(0.0),
        });
    }
    let mut model = b.pb.optimise(Sense::Minimise);
    if let Some(values) = start {
        model
            .try_set_solution(Some(values), None, None, None)
            .map_err(|e| PlannerError::Solver(format!("highs refused the start: {e:?}")))?;
    }
    if std::env::var_os("STRATA_HIGHS_LOG").is_some() {
        model.set_option("output_flag", true);
        model.set_option("log_to_console", true);
    } else {
        model.make_quiet();
    }
    if !f.integral {
        // The relaxation is large and degenerate: interior point without crossover is far
        // faster than simplex here, and rounding needs no basic solution.
        model.set_option("solver", "ipm");
        model.set_option("run_crossover", "off");
    }
    if let Ok(opts) = std::env::var("STRATA_HIGHS_OPTS") {
        for kv in opts.split(',').filter(|x| !x.is_empty()) {
            if let Some((k, v)) = kv.split_once('=') {
                if let Ok(n) = v.parse::<i32>() {
                    model.set_option(k, n);
                } else if let Ok(x) = v.parse::<f64>() {
                    model.set_option(k, x);
                } else {
                    model.set_option(k, v);
                }
            }
        }
    }
    if let Some(limit) = f.time_limit_s {
        model.set_option("time_limit", limit);
    }
    let started = std::time::Instant::now();
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
    if values.len() != count {
        return Err(PlannerError::Solver("highs returned no solution".into()));
    }
    Ok(Run {
        values,
        objective: solved.objective_value(),
        seconds: started.elapsed().as_secs_f64(),
        mip_gap: f.integral.then(|| solved.mip_gap()),
    })
}

/// Values of per-registry column lists.
pub(crate) fn read2(values: &[f64], m: &[Vec<(Col, usize)>]) -> Vec<Vec<f64>> {
    m.iter()
        .map(|v| v.iter().map(|&(_, i)| values[i]).collect())
        .collect()
}

/// Solve the program `f` asks for: the exact per-server program for the MIP (optionally
/// started from `start`); for the relaxation, whichever of it and the relaxation aggregated
/// over servers ([`crate::relaxation`]) has fewer route columns (the aggregated one when
/// several servers pull the same images).
pub fn solve(
    p: &Problem,
    grouping: &Grouping,
    f: Formulation,
    start: Option<&Start>,
) -> Result<Solved, PlannerError> {
    if f.integral || !crate::relaxation::pays(p) {
        exact(p, grouping, f, start)
    } else {
        crate::relaxation::solve(p, grouping, f)
    }
}

/// The program with one route column per (registry, server, image, layer): exact for
/// binary values, so `opt` solves this one.
pub(crate) fn exact(
    p: &Problem,
    grouping: &Grouping,
    f: Formulation,
    start: Option<&Start>,
) -> Result<Solved, PlannerError> {
    let regs = p.registries();
    let (nr, nl) = (regs.len(), p.layers().len());
    let pairs = pulled_pairs(p);
    let mut b = Builder {
        pb: RowProblem::default(),
        count: 0,
        integral: f.integral,
    };
    let central_bw = p.instance.central.bandwidth_bytes_per_s;
    let h = add_holdings(&mut b, p, grouping, f.hybrid);
    // A route that saves nothing is never taken: no column.
    let route_vars = |b: &mut Builder, rebuilt: bool| -> Routes {
        (0..nr)
            .map(|r| {
                pairs
                    .iter()
                    .map(|&(_, l)| {
                        let (w, rb) = savings(p, r, l);
                        let gain = if rebuilt { rb } else { w };
                        (gain > 0.0).then(|| b.var(0.0, 1.0))
                    })
                    .collect()
            })
            .collect()
    };
    let zw = route_vars(&mut b, false);
    let zr = route_vars(&mut b, true);
    let t: Vec<(Col, usize)> = p
        .demands
        .iter()
        .map(|&(_, _, rate)| b.var(rate, f64::INFINITY))
        .collect();

    let mut pairs_of_layer = vec![Vec::new(); nl];
    for (k, &(_, l)) in pairs.iter().enumerate() {
        pairs_of_layer[l].push(k);
    }
    for (r, reg) in regs.iter().enumerate() {
        for (l, of_layer) in pairs_of_layer.iter().enumerate() {
            for (z, held) in [(&zw[r], &h.whole[r][l]), (&zr[r], &h.rebuilt[r][l])] {
                let routes: Vec<Col> = of_layer.iter().filter_map(|&k| z[k].map(|v| v.0)).collect();
                let count = routes.len() as f64;
                add_route_limit(&mut b, routes, count, held.0);
            }
        }
        let conn: Vec<(Col, f64)> = zw[r]
            .iter()
            .chain(&zr[r])
            .flatten()
            .map(|v| (v.0, 1.0))
            .collect();
        b.pb.add_row(..=reg.connections, conn);
    }
    // Constraint 4 with the central registry's share implicit (1 - the edge routes), and the
    // image time: t_d >= central time - the savings of the routes taken.
    for (k, &(d, l)) in pairs.iter().enumerate() {
        let central = p.layers()[l].size / central_bw;
        let mut one = Vec::with_capacity(2 * nr);
        let mut time = vec![(t[d].0, 1.0)];
        for r in 0..nr {
            let (w, rb) = savings(p, r, l);
            for (z, gain) in [(zw[r][k], w), (zr[r][k], rb)] {
                if let Some(v) = z {
                    one.push((v.0, 1.0));
                    time.push((v.0, gain));
                }
            }
        }
        if !one.is_empty() {
            b.pb.add_row(..=1.0, one);
        }
        b.pb.add_row(central.., time);
    }
    let edge = |k: usize| -> Vec<Col> {
        zw.iter()
            .chain(&zr)
            .filter_map(|routes| routes[k].map(|v| v.0))
            .collect()
    };
    add_staircases(&mut b, p, &pairs, edge, &t);
    let start = start.map(|s| {
        let cols = Cols {
            h: &h,
            zw: &zw,
            zr: &zr,
            t: &t,
        };
        start_values(p, grouping, &pairs, &cols, s, b.count)
    });
    let solved = run(b, f, start.as_deref())?;
    let values = &solved.values;
    let read_routes = |m: &Routes| -> Vec<Vec<f64>> {
        m.iter()
            .map(|v| {
                v.iter()
                    .map(|c| c.map_or(0.0, |(_, i)| values[i]))
                    .collect()
            })
            .collect()
    };
    Ok(Solved {
        objective: solved.objective,
        seconds: solved.seconds,
        mip_gap: solved.mip_gap,
        x: h.x_values(values, nr),
        whole: read2(values, &h.whole),
        rebuilt: read2(values, &h.rebuilt),
        zw: read_routes(&zw),
        zr: read_routes(&zr),
        pairs,
    })
}
