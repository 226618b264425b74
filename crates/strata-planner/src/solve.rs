//! Strategies: `mis` (LP + randomized rounding, the paper's Algorithm 1), `mis-hybrid`
//! (per-layer granularity and route refinement), `opt` (the MIP with a time limit, started
//! from mis's plan) and the baselines `sps`, `gfr` ([`crate::baselines`]) and `docker`
//! (everything from the central registry).

use std::str::FromStr;
use std::time::Instant;

use serde::Serialize;

use crate::baselines;
use crate::eval::evaluate;
use crate::instance::Problem;
use crate::local::Scorer;
use crate::lp::{self, Formulation, Grouping, Solved};
use crate::placement::{to_plan, total_latency, Catalog, Hold, Placement};
use crate::plan::{Granularity, Plan};
use crate::rng::SplitMix64;
use crate::rounding::{round_placement, round_routes, Context};
use crate::routes::{greedy_routes, upgrade};
use crate::PlannerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Mis,
    MisHybrid,
    Opt,
    Sps,
    Gfr,
    Docker,
}

impl FromStr for Strategy {
    type Err = PlannerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mis" => Ok(Strategy::Mis),
            "mis-hybrid" => Ok(Strategy::MisHybrid),
            "opt" => Ok(Strategy::Opt),
            "docker" => Ok(Strategy::Docker),
            "sps" => Ok(Strategy::Sps),
            "gfr" => Ok(Strategy::Gfr),
            other => Err(PlannerError::Unsupported(format!(
                "unknown strategy {other:?}"
            ))),
        }
    }
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Mis => "mis",
            Strategy::MisHybrid => "mis-hybrid",
            Strategy::Opt => "opt",
            Strategy::Sps => "sps",
            Strategy::Gfr => "gfr",
            Strategy::Docker => "docker",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SolveOptions {
    pub seed: u64,
    /// Wall-clock limit of the MIP (`opt`).
    pub time_limit_s: f64,
    /// Independent roundings; the best is kept.
    pub trials: u32,
    /// Re-roundings of a registry that breaks its storage budget before repair.
    pub max_tries: u32,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            seed: 1,
            time_limit_s: 60.0,
            trials: 16,
            max_tries: 20,
        }
    }
}

/// The last line `strata plan solve` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub strategy: &'static str,
    pub feasible: bool,
    pub total_latency_s: f64,
    pub lp_bound_s: Option<f64>,
    pub mip_gap: Option<f64>,
    pub solve_s: f64,
    /// Seconds HiGHS took (the relaxation, or the MIP).
    pub lp_s: f64,
    pub rounds: u32,
    pub file_level_registries: usize,
    pub reconstruction_s: f64,
    pub layers_stored: usize,
    pub storage_used_bytes: f64,
}

/// A candidate plan in index form with its T.
struct Candidate {
    placement: Placement,
    sources: Vec<Option<usize>>,
    latency: f64,
}

impl Candidate {
    fn new(
        c: Catalog,
        pairs: &[(usize, usize)],
        placement: Placement,
        sources: Vec<Option<usize>>,
    ) -> Self {
        let latency = total_latency(c, &placement, pairs, &sources);
        Candidate {
            placement,
            sources,
            latency,
        }
    }
}

fn keep_better(best: &mut Option<Candidate>, c: Candidate) {
    if best.as_ref().is_none_or(|b| c.latency < b.latency) {
        *best = Some(c);
    }
}

/// Algorithm 1: `trials` seeded roundings of the relaxation, the best kept. With `greedy`,
/// each rounded placement is also routed from scratch ([`greedy_routes`]) and the better
/// routing kept.
fn rounded(
    c: Catalog,
    s: &Solved,
    hybrid: bool,
    greedy: bool,
    o: &SolveOptions,
) -> (Candidate, u32) {
    let scorer = Scorer::new(c);
    let ctx = Context {
        c,
        s,
        hybrid,
        max_tries: o.max_tries,
        scorer: &scorer,
    };
    let mut rng = SplitMix64::new(o.seed);
    let mut best = None;
    let mut rounds = 0;
    for _ in 0..o.trials.max(1) {
        let (mut placement, attempts) = round_placement(&ctx, &mut rng);
        rounds += attempts;
        scorer.complete(&mut placement);
        let mut sources = round_routes(&ctx, &placement, &mut rng);
        upgrade(c, &placement, &s.pairs, &mut sources);
        if greedy {
            let fresh = greedy_routes(c, &placement, &s.pairs);
            let latency = |x: &[Option<usize>]| total_latency(c, &placement, &s.pairs, x);
            if latency(&fresh) <= latency(&sources) {
                sources = fresh;
            }
        }
        keep_better(&mut best, Candidate::new(c, &s.pairs, placement, sources));
    }
    (best.unwrap_or_else(|| docker(c, &s.pairs)), rounds)
}

/// Greedy fills from empty placements where registry r (for each r), or every registry,
/// stores files only and the others whole layers.
fn granularity_seeds(c: Catalog, pairs: &[(usize, usize)]) -> Vec<Candidate> {
    let scorer = Scorer::new(c);
    let nr = c.registries();
    (0..=nr)
        .map(|k| {
            let mut placement = Placement::empty(c, Granularity::Layer);
            for r in 0..nr {
                if k == nr || r == k {
                    placement.granularity[r] = Granularity::File;
                }
            }
            scorer.complete(&mut placement);
            let sources = greedy_routes(c, &placement, pairs);
            Candidate::new(c, pairs, placement, sources)
        })
        .collect()
}

fn docker(c: Catalog, pairs: &[(usize, usize)]) -> Candidate {
    let placement = Placement::empty(c, Granularity::Layer);
    Candidate::new(c, pairs, placement, vec![None; pairs.len()])
}

/// The MIP's integral values as a plan.
fn from_integral(c: Catalog, s: &Solved) -> Candidate {
    let mut placement = Placement::empty(c, Granularity::Layer);
    for r in 0..c.registries() {
        for l in 0..c.layers() {
            if s.whole[r][l] > 0.5 {
                placement.set(c, r, l, Hold::Whole);
            } else if s.rebuilt[r][l] > 0.5 {
                placement.set(c, r, l, Hold::Rebuilt);
            }
        }
        if s.x[r] > 0.5 {
            placement.granularity[r] = Granularity::File;
        }
    }
    let sources: Vec<Option<usize>> = (0..s.pairs.len())
        .map(|k| (0..c.registries()).find(|&r| s.zw[r][k] > 0.5 || s.zr[r][k] > 0.5))
        .collect();
    Candidate::new(c, &s.pairs, placement, sources)
}

fn lp_of(
    p: &Problem,
    grouping: &Grouping,
    hybrid: bool,
    integral: bool,
    time_limit_s: Option<f64>,
) -> Result<Solved, PlannerError> {
    let f = Formulation {
        hybrid,
        integral,
        time_limit_s,
    };
    lp::solve(p, grouping, f, None)
}

/// A candidate as the MIP's start.
fn as_start(c: Catalog, cand: &Candidate) -> lp::Start {
    lp::Start {
        files: cand
            .placement
            .granularity
            .iter()
            .map(|g| *g == Granularity::File)
            .collect(),
        held: (0..c.registries())
            .map(|r| (0..c.layers()).map(|l| cand.placement.hold(r, l)).collect())
            .collect(),
        sources: cand.sources.clone(),
    }
}

/// Solve `p` with `strategy`; returns the plan and its report.
pub fn solve(
    p: &Problem,
    strategy: Strategy,
    o: &SolveOptions,
) -> Result<(Plan, Report), PlannerError> {
    let started = Instant::now();
    let mut lp_s = 0.0;
    let pairs = lp::pulled_pairs(p);
    let g = &Grouping::new(p);
    let c = Catalog { p, g };
    let (best, bound, gap, rounds) = match strategy {
        Strategy::Docker => (docker(c, &pairs), None, None, 0),
        Strategy::Sps | Strategy::Gfr => {
            let placement = if strategy == Strategy::Sps {
                baselines::sps(c)
            } else {
                baselines::gfr(c)
            };
            let sources = greedy_routes(c, &placement, &pairs);
            (Candidate::new(c, &pairs, placement, sources), None, None, 0)
        }
        Strategy::Mis => {
            let s = lp_of(p, g, false, false, None)?;
            lp_s = s.seconds;
            let (best, rounds) = rounded(c, &s, false, false, o);
            (best, Some(s.objective), None, rounds)
        }
        Strategy::MisHybrid => {
            let s = lp_of(p, g, true, false, None)?;
            let (hybrid, mut rounds) = rounded(c, &s, true, true, o);
            let mut best = Some(hybrid);
            // Never worse than mis: the same roundings (same seed) compete, with a fresh
            // greedy routing beside each.
            let faithful = lp_of(p, g, false, false, None)?;
            lp_s = s.seconds + faithful.seconds;
            let (other, r) = rounded(c, &faithful, false, true, o);
            rounds += r;
            keep_better(&mut best, other);
            // The relaxation undervalues file-level storage, and a greedy fill starting empty
            // may never pick it. So also fill greedily with one registry, or all, held to
            // file level.
            for seed in granularity_seeds(c, &s.pairs) {
                keep_better(&mut best, seed);
            }
            let best = best.unwrap_or_else(|| docker(c, &pairs));
            (best, Some(s.objective), None, rounds)
        }
        Strategy::Opt => {
            // Start the MIP from mis's plan: a time-limited search then ends no worse.
            let relaxed = lp_of(p, g, false, false, None)?;
            let (mis, _) = rounded(c, &relaxed, false, false, o);
            let f = Formulation {
                hybrid: false,
                integral: true,
                time_limit_s: Some(o.time_limit_s),
            };
            let s = lp::solve(p, g, f, Some(&as_start(c, &mis)))?;
            lp_s = relaxed.seconds + s.seconds;
            (from_integral(c, &s), None, s.mip_gap, 0)
        }
    };
    let plan = to_plan(c, &best.placement, &pairs, &best.sources, strategy.name());
    let e = evaluate(p, &plan)?;
    let report = Report {
        strategy: strategy.name(),
        feasible: e.feasible(),
        total_latency_s: e.total_latency_s,
        lp_bound_s: bound,
        mip_gap: gap,
        solve_s: started.elapsed().as_secs_f64(),
        lp_s,
        rounds,
        file_level_registries: e.file_level_registries,
        reconstruction_s: e.reconstruction_s,
        layers_stored: e.layers_stored,
        // Folded from +0: an empty f64 sum is -0.
        storage_used_bytes: e.storage_used_bytes.values().fold(0.0, |a, b| a + b),
    };
    Ok((plan, report))
}
