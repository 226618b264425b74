//! `strata plan experiment`: the MIS paper's parameter sweeps (its Figs. 2-8) on generated
//! instances, every strategy side by side. Each sweep writes a CSV (one row per value, seed
//! and strategy, with the whole solve report) and an SVG plot of the mean over seeds, and
//! shows a progress bar on stderr while it runs. `opt` runs on the small case only.
//!
//! A storage sweep holds the connection limits at the top of the case's range, and a
//! connections sweep the storage, so the swept resource is the one that binds (with both
//! drawn, connections bind first and a storage sweep is flat); `--connections` and
//! `--storage-mb` override. Everything else is drawn per seed as `plan generate` does.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use strata_planner::{generate, GenParams, Problem, Report, Scale, SolveOptions, Strategy};

use strata_plot::{Chart, Series};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sweep {
    /// Storage per registry (MB): total latency.
    Storage,
    /// Connection limit per registry: total latency.
    Connections,
    /// Number of edge registries: total latency.
    Registries,
    /// Number of images: total latency.
    Images,
    /// Number of images: solve time.
    Runtime,
}

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    #[arg(value_enum)]
    sweep: Sweep,
    /// small or large.
    #[arg(long, default_value = "small")]
    scale: String,
    /// Instances per value (seeds 1..=N).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Values of the swept parameter, comma separated (default: the case's range).
    #[arg(long, value_delimiter = ',')]
    values: Option<Vec<f64>>,
    /// Strategies, comma separated (default: all; opt only on the small case).
    #[arg(long, value_delimiter = ',')]
    strategies: Option<Vec<String>>,
    /// Fix every registry's storage (MB) where the sweep does not set it (default: drawn
    /// from the case's range, as `plan generate` does).
    #[arg(long)]
    storage_mb: Option<f64>,
    /// Fix every registry's connection limit where the sweep does not set it.
    #[arg(long)]
    connections: Option<f64>,
    /// Time limit of each `opt` solve, seconds.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Where the CSV and the plot go.
    #[arg(long, default_value = "experiments")]
    out_dir: PathBuf,
}

impl Sweep {
    fn name(self) -> &'static str {
        match self {
            Sweep::Storage => "storage",
            Sweep::Connections => "connections",
            Sweep::Registries => "registries",
            Sweep::Images => "images",
            Sweep::Runtime => "runtime",
        }
    }

    fn x_label(self) -> &'static str {
        match self {
            Sweep::Storage => "storage per registry (MB)",
            Sweep::Connections => "connections per registry",
            Sweep::Registries => "edge registries",
            Sweep::Images | Sweep::Runtime => "images",
        }
    }

    /// The paper's ranges for each case.
    fn default_values(self, scale: Scale) -> Vec<f64> {
        let small = scale == Scale::Small;
        match self {
            Sweep::Storage if small => vec![250.0, 500.0, 750.0, 1000.0, 1300.0, 1600.0],
            Sweep::Storage => vec![200.0, 750.0, 1300.0, 1900.0, 2400.0, 3000.0],
            Sweep::Connections if small => vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
            Sweep::Connections => vec![100.0, 200.0, 300.0, 400.0, 500.0, 600.0],
            Sweep::Registries if small => vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            Sweep::Registries => vec![2.0, 4.0, 6.0, 8.0, 10.0],
            Sweep::Images | Sweep::Runtime if small => vec![10.0, 15.0, 20.0, 25.0, 30.0, 35.0],
            Sweep::Images | Sweep::Runtime => vec![25.0, 50.0, 75.0, 100.0, 131.0],
        }
    }

    fn params(self, a: &ExperimentArgs, scale: Scale, x: f64) -> GenParams {
        let g = GenParams::for_scale(scale);
        let g = GenParams {
            storage_mb: a
                .storage_mb
                .or((self == Sweep::Connections).then_some(g.storage_mb_range.1)),
            connections: a
                .connections
                .or((self == Sweep::Storage).then_some(g.connections_range.1)),
            ..g
        };
        match self {
            Sweep::Storage => GenParams {
                storage_mb: Some(x),
                ..g
            },
            Sweep::Connections => GenParams {
                connections: Some(x),
                ..g
            },
            Sweep::Registries => GenParams {
                registries: x.round().max(1.0) as usize,
                ..g
            },
            Sweep::Images | Sweep::Runtime => g.with_images(x.round().max(1.0) as usize),
        }
    }

    /// What the plot shows of a report.
    fn y(self, r: &Report) -> f64 {
        match self {
            Sweep::Runtime => r.solve_s,
            _ => r.total_latency_s,
        }
    }
}

fn parse_scale(s: &str) -> Result<Scale> {
    match s {
        "small" => Ok(Scale::Small),
        "large" => Ok(Scale::Large),
        other => anyhow::bail!("unknown scale {other:?}: small or large"),
    }
}

fn strategies(a: &ExperimentArgs, scale: Scale) -> Result<Vec<Strategy>> {
    let names: Vec<String> = match &a.strategies {
        Some(names) => names.clone(),
        None => ["docker", "sps", "gfr", "mis", "mis-hybrid", "opt"]
            .map(String::from)
            .to_vec(),
    };
    let mut out = Vec::new();
    for n in &names {
        let s: Strategy = n.parse()?;
        if s == Strategy::Opt && scale == Scale::Large {
            eprintln!("opt runs on the small case only: left out of this sweep");
            continue;
        }
        out.push(s);
    }
    anyhow::ensure!(!out.is_empty(), "no strategy to run");
    Ok(out)
}

const CSV_HEADER: &str = "sweep,scale,x,seed,strategy,feasible,total_latency_s,lp_bound_s,mip_gap,solve_s,lp_s,rounds,file_level_registries,reconstruction_s,layers_stored,storage_used_bytes";

fn csv_row(sweep: Sweep, scale: &str, x: f64, seed: u64, r: &Report) -> String {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    format!(
        "{},{scale},{x},{seed},{},{},{},{},{},{},{},{},{},{},{},{}",
        sweep.name(),
        r.strategy,
        r.feasible,
        r.total_latency_s,
        opt(r.lp_bound_s),
        opt(r.mip_gap),
        r.solve_s,
        r.lp_s,
        r.rounds,
        r.file_level_registries,
        r.reconstruction_s,
        r.layers_stored,
        r.storage_used_bytes
    )
}

fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} solves, eta {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub fn experiment(a: ExperimentArgs) -> Result<()> {
    let started = Instant::now();
    let scale = parse_scale(&a.scale)?;
    let strategies = strategies(&a, scale)?;
    let values = a
        .values
        .clone()
        .unwrap_or_else(|| a.sweep.default_values(scale));
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("cannot create {}", a.out_dir.display()))?;
    let stem = format!("{}-{}", a.sweep.name(), a.scale);
    let csv_path = a.out_dir.join(format!("{stem}.csv"));
    let mut csv = std::fs::File::create(&csv_path)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    writeln!(csv, "{CSV_HEADER}")?;
    let bar = progress((values.len() * strategies.len()) as u64 * a.seeds);
    let opts = SolveOptions {
        time_limit_s: a.time_limit,
        ..SolveOptions::default()
    };
    // Per strategy: (x, sum of y, count) per value.
    let mut sums: Vec<Vec<(f64, f64, u32)>> = vec![Vec::new(); strategies.len()];
    for &x in &values {
        for seed in 1..=a.seeds {
            bar.set_message(format!("{} = {x}, seed {seed}", a.sweep.name()));
            let problem = Problem::new(generate(&a.sweep.params(&a, scale, x), seed))?;
            for (k, &s) in strategies.iter().enumerate() {
                let opts = SolveOptions { seed, ..opts };
                let (_, report) = strata_planner::solve(&problem, s, &opts)?;
                writeln!(csv, "{}", csv_row(a.sweep, &a.scale, x, seed, &report))?;
                match sums[k].last_mut() {
                    Some(acc) if acc.0 == x => {
                        acc.1 += a.sweep.y(&report);
                        acc.2 += 1;
                    }
                    _ => sums[k].push((x, a.sweep.y(&report), 1)),
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    csv.flush()?;
    let chart = Chart {
        title: format!(
            "{} case: {} vs {} (mean of {} seed{})",
            a.scale,
            if a.sweep == Sweep::Runtime {
                "solve time"
            } else {
                "total pull latency"
            },
            a.sweep.x_label(),
            a.seeds,
            if a.seeds == 1 { "" } else { "s" }
        ),
        x_label: a.sweep.x_label().to_string(),
        y_label: if a.sweep == Sweep::Runtime {
            "solve time (s)".to_string()
        } else {
            "total latency T (s)".to_string()
        },
        series: strategies
            .iter()
            .zip(&sums)
            .map(|(s, pts)| Series {
                name: s.name().to_string(),
                points: pts.iter().map(|&(x, y, n)| (x, y / f64::from(n))).collect(),
            })
            .collect(),
        notes: Vec::new(),
    };
    let plot_path = a.out_dir.join(format!("{stem}.svg"));
    std::fs::write(&plot_path, chart.to_svg())
        .with_context(|| format!("cannot write {}", plot_path.display()))?;
    println!(
        "{}",
        json!({
            "sweep": a.sweep.name(), "scale": a.scale, "values": values, "seeds": a.seeds,
            "strategies": strategies.iter().map(|s| s.name()).collect::<Vec<_>>(),
            "csv": csv_path, "plot": plot_path, "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
