//! `strata store convert`: move stored layers between granularities, in a data directory or
//! through the node that has it open, by name or as a placement plan says for one registry.
//! The layer stays readable throughout.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use strata_oci::Digest;
use strata_store::{Conversion, Granularity, StoreError};

use crate::config::GranularityArg;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Store layers whole (`layer`) or as deduplicated files plus a recipe (`file`), given
    /// by digest (`--to`) or by a plan (`--plan --registry`); prints one JSON line per
    /// layer: `digest`, `granularity`, `changed`, `reason`.
    Convert(ConvertArgs),
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Granularity to store the given layers at.
    #[arg(long, required_unless_present = "plan", conflicts_with = "plan")]
    to: Option<GranularityArg>,
    /// A plan (`strata plan solve`): store this node's layers as it says for `--registry`
    /// (its `layers` whole, its `file_layers` as files). Layers the node does not hold are
    /// reported on stderr and skipped.
    #[arg(long, requires = "registry")]
    plan: Option<PathBuf>,
    /// The plan's name for this node.
    #[arg(long)]
    registry: Option<String>,
    /// Data directory of the node.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "strata-data")]
    data_dir: PathBuf,
    /// The admin listener (`--admin-listen`) of the node to ask when the data directory is
    /// in use by a running node.
    #[arg(long, env = "STRATA_NODE", default_value = "http://127.0.0.1:5001")]
    node: String,
    /// Layer digests.
    #[arg(required_unless_present = "plan", conflicts_with = "plan")]
    digests: Vec<Digest>,
}

/// (digest, granularity) for every layer to convert.
fn work(args: &ConvertArgs) -> Result<Vec<(Digest, Granularity)>> {
    let (Some(path), Some(name)) = (&args.plan, &args.registry) else {
        let to = args.to.context("--to is required without --plan")?;
        return Ok(args
            .digests
            .iter()
            .map(|d| (d.clone(), to.into()))
            .collect());
    };
    Ok(strata_node::plan_layers(path, name)?)
}

async fn remote(args: &ConvertArgs, digest: &Digest, to: Granularity) -> Result<Conversion> {
    let to = match to {
        Granularity::Layer => "layer",
        Granularity::File => "file",
    };
    let query = [("digest", digest.to_string()), ("to", to.to_string())];
    crate::node_api::post(&args.node, "/strata/v1/convert", &query).await
}

pub async fn run(cmd: StoreCommand) -> Result<()> {
    let StoreCommand::Convert(args) = cmd;
    let work = work(&args)?;
    let local = match strata_registry::open_data_dir(
        &args.data_dir,
        strata_store::Granularity::Layer,
        strata_store::DEFAULT_REBUILT_CACHE_BYTES,
    )
    .await
    {
        Ok(registry) => Some(registry),
        Err(StoreError::Locked) => None,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open {}", args.data_dir.display()))
        }
    };
    let (mut failed, mut absent) = (0, 0);
    for (digest, to) in &work {
        let done = match &local {
            Some(registry) => registry
                .store_as(digest, *to)
                .await
                .map_err(anyhow::Error::from),
            None => remote(&args, digest, *to).await,
        };
        match done {
            Ok(c) => println!("{}", serde_json::to_string(&c)?),
            Err(e) if args.plan.is_some() && is_not_stored(&e) => {
                eprintln!("strata store convert: {digest}: not stored on this node, skipped");
                absent += 1;
            }
            Err(e) => {
                eprintln!("strata store convert: {digest}: {e:#}");
                failed += 1;
            }
        }
    }
    if absent > 0 {
        eprintln!("strata store convert: {absent} layers of the plan are not on this node");
    }
    if failed > 0 {
        bail!("{failed} of {} layers not converted", work.len());
    }
    Ok(())
}

/// `true` for "this node does not hold the blob", locally or from the node.
fn is_not_stored(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    matches!(
        e.downcast_ref::<strata_registry::ServiceError>(),
        Some(strata_registry::ServiceError::BlobUnknown)
    ) || text.contains("BLOB_UNKNOWN")
}
