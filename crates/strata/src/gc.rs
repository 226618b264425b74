//! `strata gc`: collect garbage in a data directory, or ask the node that has it open.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use strata_registry::{GcOptions, GcReport};
use strata_store::StoreError;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Data directory of the node.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "strata-data")]
    data_dir: PathBuf,
    /// Unreferenced blobs younger than this are kept.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Uploads idle for longer than this are removed.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    upload_ttl: Duration,
    /// Accept a grace period or upload lifetime under ten minutes, which can remove the
    /// blobs and uploads of pushes in progress.
    #[arg(long)]
    force: bool,
    /// The admin listener (`--admin-listen`) of the node to ask when the data directory is
    /// in use by a running node.
    #[arg(long, env = "STRATA_NODE", default_value = "http://127.0.0.1:5001")]
    node: String,
}

async fn remote(args: &GcArgs) -> Result<GcReport> {
    let query = [
        ("grace_s", args.grace.as_secs().to_string()),
        ("upload_ttl_s", args.upload_ttl.as_secs().to_string()),
        ("force", args.force.to_string()),
    ];
    crate::node_api::post(&args.node, "/strata/v1/gc", &query).await
}

pub async fn run(args: GcArgs) -> Result<()> {
    let opts = GcOptions::requested(args.grace, args.upload_ttl, args.force)?;
    let report = match strata_registry::open_data_dir(
        &args.data_dir,
        strata_store::Granularity::Layer,
        strata_store::DEFAULT_REBUILT_CACHE_BYTES,
    )
    .await
    {
        Ok(registry) => registry.gc(opts).await?,
        Err(StoreError::Locked) => remote(&args).await?,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open {}", args.data_dir.display()))
        }
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
