//! `strata plan`: the storage planner's commands. Each prints one JSON object as its last
//! stdout line, for scripts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use strata_planner::{evaluate, GenParams, Instance, Plan, Problem, Scale, SolveOptions, Strategy};

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Generate a seeded instance calibrated to the MIS paper's small or large case, or from
    /// a registry's metadata (--from-metadata: images, layer digests and sizes, pulls).
    Generate(GenerateArgs),
    /// Compute a plan for an instance.
    Solve(SolveArgs),
    /// Evaluate a plan against an instance.
    Eval(EvalArgs),
    /// Build an instance from real OCI image layouts (images, layers, files, measured tau).
    Inventory(crate::inventory::InventoryArgs),
    /// Sweep one parameter of the paper's cases; every strategy; CSV and SVG plot.
    Experiment(crate::experiment::ExperimentArgs),
}

#[derive(Debug, Args)]
pub struct SolveArgs {
    #[arg(long)]
    instance: PathBuf,
    /// mis, mis-hybrid, opt, sps, gfr or docker.
    #[arg(long)]
    strategy: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time limit of `opt`, seconds.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Independent randomized roundings (`mis`, `mis-hybrid`); the best is kept.
    #[arg(long, default_value_t = SolveOptions::default().trials)]
    trials: u32,
    /// Where to write the plan (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScaleArg {
    Small,
    Large,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The paper's case to generate, or whose topology (registries, servers, storage,
    /// connections, bandwidths, rate range) to use with --from-metadata [default there:
    /// large].
    #[arg(long, value_enum, required_unless_present = "from_metadata")]
    scale: Option<ScaleArg>,
    /// A catalogue (`strata-registry-metadata/v1` JSON: images with their layers' digests
    /// and sizes and their pull counts; examples/registry-metadata/): its images and layers
    /// as they are, files modelled (see strata_planner::metadata).
    #[arg(long)]
    from_metadata: Option<PathBuf>,
    /// With --from-metadata: share of each layer's bytes made of packages other layers may
    /// hold too.
    #[arg(long, default_value_t = strata_planner::FileModel::default().shared_fraction)]
    shared_fraction: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The same storage for every registry, in MB (default: drawn from the case's range).
    #[arg(long)]
    storage_mb: Option<f64>,
    /// The same connection limit for every registry (default: drawn from the case's range).
    #[arg(long)]
    connections: Option<f64>,
    #[arg(long)]
    registries: Option<usize>,
    /// Number of images; layers and files scale in proportion.
    #[arg(long)]
    images: Option<usize>,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long)]
    instance: PathBuf,
    #[arg(long)]
    plan: PathBuf,
}

fn load_instance(path: &Path) -> Result<Problem> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let p =
        Instance::from_json(&text).with_context(|| format!("bad instance {}", path.display()))?;
    for w in &p.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(p)
}

fn solve(a: SolveArgs) -> Result<()> {
    let p = load_instance(&a.instance)?;
    let strategy: Strategy = a.strategy.parse()?;
    let opts = SolveOptions {
        seed: a.seed,
        time_limit_s: a.time_limit,
        ..SolveOptions::default()
    };
    let (plan, report) = strata_planner::solve(&p, strategy, &opts)?;
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_vec_pretty(&plan)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn generate(a: GenerateArgs) -> Result<()> {
    let scale = match a.scale {
        Some(ScaleArg::Small) => Scale::Small,
        Some(ScaleArg::Large) | None => Scale::Large,
    };
    let mut g = GenParams::for_scale(scale);
    g.storage_mb = a.storage_mb;
    g.connections = a.connections;
    if let Some(r) = a.registries {
        g.registries = r;
    }
    let instance = match &a.from_metadata {
        Some(path) => {
            anyhow::ensure!(
                a.images.is_none(),
                "--images scales a generated case: a catalogue has the images it lists"
            );
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let meta = strata_planner::Metadata::from_json(&text)
                .with_context(|| format!("bad metadata {}", path.display()))?;
            let files = strata_planner::FileModel {
                shared_fraction: a.shared_fraction,
            };
            strata_planner::from_metadata(&meta, &g, files, a.seed)
                .with_context(|| format!("bad metadata {}", path.display()))?
        }
        None => {
            if let Some(n) = a.images {
                g = g.with_images(n);
            }
            strata_planner::generate(&g, a.seed)
        }
    };
    // What `plan solve` will load: the instance is checked (and its warnings shown) now.
    let checked = Problem::new(instance.clone()).context("generated a bad instance")?;
    for w in &checked.warnings {
        eprintln!("warning: {w}");
    }
    let layer_bytes: f64 = instance.layers.iter().map(|l| l.size).sum();
    let file_bytes: f64 = instance.files.iter().map(|f| f.size).sum();
    std::fs::write(&a.out, serde_json::to_vec(&instance)?)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let summary = serde_json::json!({
        "out": a.out, "images": instance.images.len(), "layers": instance.layers.len(),
        "unique_files": instance.files.len(),
        "file_refs": instance.layers.iter().map(|l| l.files.len()).sum::<usize>(),
        "layer_level_bytes": layer_bytes, "file_level_bytes": file_bytes,
        "dedup_ratio": layer_bytes / file_bytes,
    });
    println!("{summary}");
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let p = load_instance(&a.instance)?;
    let text = std::fs::read_to_string(&a.plan)
        .with_context(|| format!("cannot read {}", a.plan.display()))?;
    let plan: Plan =
        serde_json::from_str(&text).with_context(|| format!("bad plan {}", a.plan.display()))?;
    let e = evaluate(&p, &plan)?;
    println!("{}", serde_json::to_string(&e)?);
    Ok(())
}

pub fn run(cmd: PlanCommand) -> Result<()> {
    match cmd {
        PlanCommand::Generate(a) => generate(a),
        PlanCommand::Solve(a) => solve(a),
        PlanCommand::Eval(a) => eval(a),
        PlanCommand::Inventory(a) => crate::inventory::inventory(a),
        PlanCommand::Experiment(a) => crate::experiment::experiment(a),
    }
}
