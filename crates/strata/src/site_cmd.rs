//! `strata site ...`: ask a running node of a site to act (the work is the node's,
//! `strata_site::preheat`).

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use strata_site::preheat::{PreheatRequest, Spread};

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Pull images into the node (and with --all-nodes into every live node of its site)
    /// before any client asks; each byte still crosses the uplink once.
    Preheat(PreheatArgs),
}

#[derive(Debug, Args)]
pub struct PreheatArgs {
    /// The admin listener (`--admin-listen`) of the node to ask.
    #[arg(long, default_value = "http://127.0.0.1:5001")]
    node: String,
    /// Every live node of the site, not only this one (EdgePier's "every node" replication).
    #[arg(long)]
    all_nodes: bool,
    /// Images as the node names them: `REPOSITORY:TAG` or `REPOSITORY@DIGEST` (a namespace's
    /// repositories under its prefix, e.g. `docker.io/library/nginx:1.27`).
    #[arg(required = true)]
    images: Vec<String>,
}

pub async fn run(cmd: SiteCommand) -> Result<()> {
    let SiteCommand::Preheat(args) = cmd;
    let request = PreheatRequest {
        images: args.images,
        spread: if args.all_nodes {
            Spread::Site
        } else {
            Spread::Node
        },
    };
    let url = format!("{}/strata/v1/site/preheat", args.node.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&request)
        .send()
        .await
        .with_context(|| format!("the node at {} did not answer", args.node))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::NOT_FOUND {
        bail!(
            "the node at {} is not in a site (start it with --site-listen)",
            args.node
        );
    }
    println!("{body}");
    if !status.is_success() {
        bail!("preheat failed on some node ({status})");
    }
    Ok(())
}
