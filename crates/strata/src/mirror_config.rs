//! `strata mirror-config containerd`: write the `hosts.toml` files that send containerd's
//! pulls through the local node (the files come from `strata_site::containerd`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum MirrorConfigCommand {
    /// containerd (and so the kubelet): `<dir>/<registry>/hosts.toml` for each registry.
    Containerd(ContainerdArgs),
}

#[derive(Debug, Args)]
pub struct ContainerdArgs {
    /// The local node, as containerd reaches it.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    node: String,
    /// A registry whose pulls go through the node: `HOST` (its fallback `https://HOST`,
    /// `registry-1.docker.io` for docker.io) or `HOST=URL`. Repeatable.
    #[arg(long = "upstream", required = true)]
    upstreams: Vec<String>,
    /// containerd's registry configuration directory (its `config_path`).
    #[arg(long, default_value = "/etc/containerd/certs.d")]
    dir: PathBuf,
}

pub fn run(cmd: MirrorConfigCommand) -> Result<()> {
    let MirrorConfigCommand::Containerd(args) = cmd;
    let mut serve_flags = Vec::new();
    for spec in &args.upstreams {
        let (host, server) = match spec.split_once('=') {
            Some((h, url)) => (
                h.trim().to_string(),
                url.trim().trim_end_matches('/').to_string(),
            ),
            None => (
                spec.trim().to_string(),
                strata_site::containerd::default_server(spec.trim()),
            ),
        };
        anyhow::ensure!(
            !host.is_empty() && !host.contains('/'),
            "registry {host:?} must be a host name, like docker.io"
        );
        let dir = args.dir.join(&host);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let file = dir.join("hosts.toml");
        std::fs::write(
            &file,
            strata_site::containerd::hosts_toml(&args.node, &server),
        )
        .with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("wrote {}", file.display());
        serve_flags.push(format!("--upstream {host}={server}"));
    }
    // The node needs the matching routes; print them for `strata serve`.
    println!("{}", serve_flags.join(" "));
    Ok(())
}
