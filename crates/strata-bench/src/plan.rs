//! `strata-bench plan`: the planner's strategies side by side on generated instances of the
//! MIS paper's cases, in one run: total latency T, MIS's reduction against each baseline
//! (the paper reports 28.67% against docker, 21.69% against sps and 28.94% against gfr on
//! its large case), mis's T over its LP bound, and solve times. One JSON line per instance
//! and strategy, then one summary line per instance.

use std::time::Instant;

use anyhow::Result;
use serde_json::{json, Map, Value};
use strata_planner::{generate, GenParams, Problem, Scale, SolveOptions, Strategy};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// small or large.
    #[arg(long, default_value = "large")]
    scale: String,
    /// Instances (seeds 1..=N).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// The same storage for every registry, in MB (default: the case's range); small values
    /// make storage bind.
    #[arg(long)]
    storage_mb: Option<f64>,
    /// Solves of mis per instance for its end-to-end time (median, min and max reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

const STRATEGIES: [Strategy; 5] = [
    Strategy::Docker,
    Strategy::Sps,
    Strategy::Gfr,
    Strategy::Mis,
    Strategy::MisHybrid,
];

pub fn run(args: Args) -> Result<()> {
    let scale = match args.scale.as_str() {
        "small" => Scale::Small,
        "large" => Scale::Large,
        other => anyhow::bail!("unknown scale {other:?}: small or large"),
    };
    for seed in 1..=args.seeds {
        let started = Instant::now();
        let mut g = GenParams::for_scale(scale);
        g.storage_mb = args.storage_mb;
        let p = Problem::new(generate(&g, seed))?;
        let generate_s = started.elapsed().as_secs_f64();
        let mut latency = Map::new();
        let mut mis_line = Value::Null;
        for s in STRATEGIES {
            let (_, report) = strata_planner::solve(&p, s, &SolveOptions::default())?;
            let line = serde_json::to_value(&report)?;
            println!(
                "{}",
                json!({"scale": args.scale, "seed": seed, "report": line})
            );
            latency.insert(s.name().into(), json!(report.total_latency_s));
            if s == Strategy::Mis {
                mis_line = line;
            }
        }
        // mis end to end again, for its time: the median of `repeats` solves.
        let mut times = vec![mis_line["solve_s"].as_f64().unwrap_or(f64::NAN)];
        for _ in 1..args.repeats.max(1) {
            let (_, report) = strata_planner::solve(&p, Strategy::Mis, &SolveOptions::default())?;
            times.push(report.solve_s);
        }
        times.sort_by(f64::total_cmp);
        let t = |name: &str| latency[name].as_f64().unwrap_or(f64::NAN);
        let reduction = |base: &str| 100.0 * (1.0 - t("mis") / t(base));
        let bound = mis_line["lp_bound_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{}",
            json!({
                "scale": args.scale,
                "seed": seed,
                "generate_s": generate_s,
                "mis_reduction_pct": {
                    "docker": reduction("docker"),
                    "sps": reduction("sps"),
                    "gfr": reduction("gfr"),
                },
                "mis_over_lp_bound": t("mis") / bound,
                "mis_hybrid_over_mis": t("mis-hybrid") / t("mis"),
                "storage_mb": args.storage_mb,
                "mis_solve_s_median": times[times.len() / 2],
                "mis_solve_s_min": times[0],
                "mis_solve_s_max": times[times.len() - 1],
                "mis_solves": times.len(),
                "mis_lp_s": mis_line["lp_s"],
            })
        );
    }
    Ok(())
}
