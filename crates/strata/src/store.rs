//! `strata store convert`: move stored layers between granularities, in a data directory or
//! through the node that has it open. The layer stays readable throughout.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use strata_oci::Digest;
use strata_store::{Conversion, StoreError};

use crate::config::GranularityArg;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Store layers whole (`layer`) or as deduplicated files plus a recipe (`file`); prints
    /// one JSON line per layer: `digest`, `granularity`, `changed`, `reason`.
    Convert(ConvertArgs),
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Granularity to store the layers at.
    #[arg(long)]
    to: GranularityArg,
    /// Data directory of the node.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "strata-data")]
    data_dir: PathBuf,
    /// Node to ask when the data directory is in use by a running node.
    #[arg(long, env = "STRATA_NODE", default_value = "http://127.0.0.1:5000")]
    node: String,
    /// Layer digests.
    #[arg(required = true)]
    digests: Vec<Digest>,
}

async fn remote(args: &ConvertArgs, digest: &Digest) -> Result<Conversion> {
    let to = match args.to {
        GranularityArg::Layer => "layer",
        GranularityArg::File => "file",
    };
    let url = format!("{}/strata/v1/convert", args.node.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .query(&[("digest", digest.to_string().as_str()), ("to", to)])
        .send()
        .await
        .with_context(|| {
            format!(
                "data directory is in use, and the node at {} did not answer",
                args.node
            )
        })?;
    if !resp.status().is_success() {
        bail!(
            "node answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(serde_json::from_str(&resp.text().await?)?)
}

pub async fn run(cmd: StoreCommand) -> Result<()> {
    let StoreCommand::Convert(args) = cmd;
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
    let mut failed = 0;
    for digest in &args.digests {
        let done = match &local {
            Some(registry) => registry
                .store_as(digest, args.to.into())
                .await
                .map_err(anyhow::Error::from),
            None => remote(&args, digest).await,
        };
        match done {
            Ok(c) => println!("{}", serde_json::to_string(&c)?),
            Err(e) => {
                eprintln!("strata store convert: {digest}: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} layers not converted", args.digests.len());
    }
    Ok(())
}
