//! Strategies: `mis` (LP + randomized rounding, the paper's Algorithm 1), `mis-hybrid`
//! (per-layer granularity and route refinement), `opt` (the MIP with a time limit) and the
//! `docker` baseline (everything from the central registry).

use std::str::FromStr;
use std::time::Instant;

use serde::Serialize;

use crate::eval::evaluate;
use crate::instance::Problem;
use crate::local::Scorer;
use crate::lp::{self, Formulation, Grouping, Solved};
use crate::placement::{fastest_routes, to_plan, total_latency, Placement};
use crate::plan::{Granularity, Plan};
use crate::rng::SplitMix64;
use crate::rounding::{round_placement, round_routes, Context};
use crate::PlannerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Mis,
    MisHybrid,
    Opt,
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
            "sps" | "gfr" => Err(PlannerError::Unsupported(format!(
                "strategy {s} is not implemented yet"
            ))),
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

fn keep_better(best: &mut Option<Candidate>, c: Candidate) {
    if best.as_ref().is_none_or(|b| c.latency < b.latency) {
        *best = Some(c);
    }
}

/// Algorithm 1: `trials` seeded roundings of the relaxation, the best kept.
fn rounded(
    p: &Problem,
    grouping: &Grouping,
    s: &Solved,
    hybrid: bool,
    refine: bool,
    o: &SolveOptions,
) -> (Candidate, u32) {
    let scorer = Scorer::new(p, &grouping.groups, &grouping.layer_groups);
    let c = Context {
        p,
        groups: &grouping.groups,
        layer_groups: &grouping.layer_groups,
        s,
        hybrid,
        max_tries: o.max_tries,
        scorer: &scorer,
    };
    let mut rng = SplitMix64::new(o.seed);
    let mut best = None;
    let mut rounds = 0;
    for _ in 0..o.trials.max(1) {
        let (mut placement, attempts) = round_placement(&c, &mut rng);
        rounds += attempts;
        scorer.complete(&mut placement);
        let sources = if refine {
            fastest_routes(p, &placement, &s.pairs)
        } else {
            round_routes(&c, &placement, &mut rng)
        };
        let latency = total_latency(p, &placement, &s.pairs, &sources);
        keep_better(
            &mut best,
            Candidate {
                placement,
                sources,
                latency,
            },
        );
    }
    (best.unwrap_or_else(|| docker(p, &s.pairs)), rounds)
}

/// Greedy fills from empty placements where registry r (for each r), or every registry,
/// stores files only and the others whole layers.
fn granularity_seeds(p: &Problem, grouping: &Grouping, pairs: &[(usize, usize)]) -> Vec<Candidate> {
    let scorer = Scorer::new(p, &grouping.groups, &grouping.layer_groups);
    let nr = p.registries().len();
    let patterns = (0..=nr).map(|k| {
        (0..nr)
            .map(|r| {
                if k == nr || r == k {
                    Granularity::File
                } else {
                    Granularity::Layer
                }
            })
            .collect::<Vec<_>>()
    });
    patterns
        .map(|pattern| {
            let mut placement = Placement::empty(nr, Granularity::Layer);
            placement.granularity = pattern;
            scorer.complete(&mut placement);
            let sources = fastest_routes(p, &placement, pairs);
            let latency = total_latency(p, &placement, pairs, &sources);
            Candidate {
                placement,
                sources,
                latency,
            }
        })
        .collect()
}

fn docker(p: &Problem, pairs: &[(usize, usize)]) -> Candidate {
    let placement = Placement::empty(p.registries().len(), Granularity::Layer);
    let sources = vec![None; pairs.len()];
    let latency = total_latency(p, &placement, pairs, &sources);
    Candidate {
        placement,
        sources,
        latency,
    }
}

/// The MIP's integral values as a plan.
fn from_integral(p: &Problem, s: &Solved) -> Candidate {
    let nr = p.registries().len();
    let mut placement = Placement::empty(nr, Granularity::Layer);
    for r in 0..nr {
        placement.whole[r] = (0..p.layers().len())
            .filter(|&l| s.whole[r][l] > 0.5)
            .collect();
        placement.rebuilt[r] = (0..p.layers().len())
            .filter(|&l| s.rebuilt[r][l] > 0.5)
            .collect();
        if s.x[r] > 0.5 {
            placement.granularity[r] = Granularity::File;
        }
    }
    let sources: Vec<Option<usize>> = (0..s.pairs.len())
        .map(|k| (0..nr).find(|&r| s.zw[r][k] > 0.5 || s.zr[r][k] > 0.5))
        .collect();
    let latency = total_latency(p, &placement, &s.pairs, &sources);
    Candidate {
        placement,
        sources,
        latency,
    }
}

fn lp_of(
    p: &Problem,
    grouping: &Grouping,
    hybrid: bool,
    integral: bool,
    time_limit_s: Option<f64>,
) -> Result<Solved, PlannerError> {
    lp::solve(
        p,
        grouping,
        Formulation {
            hybrid,
            integral,
            time_limit_s,
        },
    )
}

/// Solve `p` with `strategy`; returns the plan and its report.
pub fn solve(
    p: &Problem,
    strategy: Strategy,
    o: &SolveOptions,
) -> Result<(Plan, Report), PlannerError> {
    let started = Instant::now();
    let pairs = lp::pulled_pairs(p);
    let g = &Grouping::new(p);
    let (best, bound, gap, rounds) = match strategy {
        Strategy::Docker => (docker(p, &pairs), None, None, 0),
        Strategy::Mis => {
            let s = lp_of(p, g, false, false, None)?;
            let (c, rounds) = rounded(p, g, &s, false, false, o);
            (c, Some(s.objective), None, rounds)
        }
        Strategy::MisHybrid => {
            let s = lp_of(p, g, true, false, None)?;
            let (mut best, mut rounds) = rounded(p, g, &s, true, true, o);
            // Never worse than mis: its roundings compete, with refined routes.
            let faithful = lp_of(p, g, false, false, None)?;
            for refine in [false, true] {
                let (c, r) = rounded(p, g, &faithful, false, refine, o);
                rounds += r;
                if c.latency < best.latency {
                    best = c;
                }
            }
            // The relaxation undervalues file-level storage, and a greedy fill starting empty
            // never picks it (a first file layer costs as much as the whole layer, plus tau).
            // So also fill greedily with one registry, or all, held to file level.
            for c in granularity_seeds(p, g, &s.pairs) {
                if c.latency < best.latency {
                    best = c;
                }
            }
            (best, Some(s.objective), None, rounds)
        }
        Strategy::Opt => {
            let s = lp_of(p, g, false, true, Some(o.time_limit_s))?;
            (from_integral(p, &s), None, s.mip_gap, 0)
        }
    };
    let plan = to_plan(p, &best.placement, &pairs, &best.sources, strategy.name());
    let e = evaluate(p, &plan)?;
    let report = Report {
        strategy: strategy.name(),
        feasible: e.feasible(),
        total_latency_s: e.total_latency_s,
        lp_bound_s: bound,
        mip_gap: gap,
        solve_s: started.elapsed().as_secs_f64(),
        rounds,
        file_level_registries: e.file_level_registries,
        reconstruction_s: e.reconstruction_s,
        layers_stored: e.layers_stored,
        storage_used_bytes: e.storage_used_bytes.values().sum(),
    };
    Ok((plan, report))
}
