//! `strata-bench`: strata's benchmarks. Each runs strata and its baseline side by side in one
//! invocation and reports both figures and their ratio (above 1: strata does better).

mod discard;
mod edge_site;
mod plan;
mod rebuild;
mod registry;
mod targets;
mod wrk;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "strata-bench",
    about = "strata benchmarks against their baselines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The registry node against the CNCF registry (docker-registry).
    Registry(registry::Args),
    /// Exact layer rebuild from the file store, per compressor, beside the compressor.
    Rebuild(rebuild::Args),
    /// The planner's strategies side by side on generated instances of the paper's cases.
    Plan(plan::Args),
    /// An edge site in network namespaces: strata against every node pulling from the
    /// upstream, concurrent and sequential starts, behind a limited uplink (root).
    EdgeSite(edge_site::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Rebuild(args) => return rebuild::run(args),
        Command::Plan(args) => return plan::run(args),
        Command::EdgeSite(args) => return edge_site::run(args),
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli {
            Command::Registry(args) => registry::run(args).await,
            Command::Rebuild(_) | Command::Plan(_) | Command::EdgeSite(_) => {
                unreachable!("runs without the async runtime")
            }
        }
    })
}
