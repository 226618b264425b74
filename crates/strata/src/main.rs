//! The `strata` command: `serve` runs a registry node, `gc` collects garbage, `plan` plans
//! placement, `inspect` measures file-level storage on given layers.

mod config;
mod experiment;
mod gc;
mod inspect;
mod inventory;
mod mirror_config;
mod node_api;
mod plan;
mod serve;
mod site_cmd;
mod store;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "A registry node for container and VM images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a registry node (OCI Distribution API v1.1).
    Serve(Box<config::ServeArgs>),
    /// Remove blobs no manifest references and abandoned uploads.
    Gc(gc::GcArgs),
    /// Plan what each registry stores and where each server pulls from.
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Measure file-level storage (decomposition, exact rebuild, dedup) on given layers.
    #[command(subcommand)]
    Inspect(inspect::InspectCommand),
    /// Manage how a node stores its layers.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Point a container runtime's pulls at the local node (with the registry as fallback).
    #[command(subcommand)]
    MirrorConfig(mirror_config::MirrorConfigCommand),
    /// Act on a running node's site (preheat).
    #[command(subcommand)]
    Site(site_cmd::SiteCommand),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Plan(cmd) => return plan::run(cmd),
        Command::Inspect(cmd) => return inspect::run(cmd),
        Command::MirrorConfig(cmd) => return mirror_config::run(cmd),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args.resolve()?).await,
            Command::Gc(args) => gc::run(args).await,
            Command::Store(cmd) => store::run(cmd).await,
            Command::Site(cmd) => site_cmd::run(cmd).await,
            Command::Plan(_) | Command::Inspect(_) | Command::MirrorConfig(_) => {
                unreachable!("handled without the async runtime")
            }
        }
    })
}
