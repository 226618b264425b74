//! A strata node's wiring: everything `strata serve` does between parsing its flags and
//! serving requests, as a library, so that the binary only parses flags and a test or a
//! simulator can run a node in process.
//!
//! [`run`] opens the data directory (`strata_registry::open_node`), applies the placement
//! plan (and re-reads it on SIGHUP), starts periodic garbage collection, raises the
//! open-file limit, mirrors its upstreams (`strata_site::HttpUpstream`) if it has any, and
//! serves the API (`strata_registry::server`) until SIGINT or SIGTERM.

mod placement;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_registry::server::ServerLimits;
use strata_registry::{GcOptions, Registry};
use strata_site::{HttpUpstream, UpstreamRoute};
use strata_store::{Granularity, LayeredBlobStore, Placement, StoreError};

pub use placement::{from_plan, plan_layers};

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open data directory {dir}: {source}")]
    Open { dir: PathBuf, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("plan {path}: {why}")]
    Plan { path: PathBuf, why: String },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// The resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub gc_interval: Option<Duration>,
    pub gc_grace: Duration,
    pub granularity: Granularity,
    pub rebuilt_cache_bytes: u64,
    /// A placement plan and this node's name in it.
    pub plan: Option<(PathBuf, String)>,
    pub idle_timeout: Duration,
    /// `None`: derived from the open-file limit.
    pub max_connections: Option<usize>,
    /// Upstream registries to mirror (none: the node serves only what is pushed to it).
    pub upstreams: Vec<UpstreamRoute>,
    /// How long a tag resolved upstream is served before it is resolved again.
    pub tag_ttl: Duration,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn spawn_periodic_gc(registry: Registry, config: &NodeConfig) {
    let Some(every) = config.gc_interval else {
        return;
    };
    let opts = GcOptions {
        grace: config.gc_grace,
        ..GcOptions::default()
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match registry.gc(opts).await {
                Ok(report) => tracing::info!(?report, "periodic garbage collection done"),
                Err(e) => tracing::error!(error = %e, "periodic garbage collection failed"),
            }
        }
    });
}

/// The node's placement: its plan where the plan names a layer, its granularity elsewhere.
fn placement(config: &NodeConfig) -> Result<Placement, NodeError> {
    match &config.plan {
        Some((path, name)) => from_plan(config.granularity, path, name),
        None => Ok(Placement::uniform(config.granularity)),
    }
}

/// On SIGHUP, re-reads the plan and moves the stored layers to where it puts them. A plan
/// that cannot be read leaves the current placement in force.
fn reload_plan_on_hangup(blobs: LayeredBlobStore, config: &NodeConfig) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if config.plan.is_none() {
            return;
        }
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            return;
        };
        let config = config.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match placement(&config) {
                    Ok(p) => {
                        tracing::info!(named = p.named.len(), "plan reloaded");
                        blobs.set_placement(p);
                        strata_registry::spawn_apply_placement(blobs.clone());
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "plan not reloaded; the previous one stays in force")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (blobs, config);
}

/// Raises the open-file limit to its hard limit and derives the connection limit from it
/// (unless configured).
fn server_limits(config: &NodeConfig) -> ServerLimits {
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let derived = ServerLimits::for_open_files(open_files, config.idle_timeout);
    ServerLimits {
        max_connections: config.max_connections.unwrap_or(derived.max_connections),
        ..derived
    }
}

/// Run a node until SIGINT or SIGTERM. Prints `strata listening on http://ADDR` on stdout
/// once it accepts connections (scripts that asked for port 0 learn the port from it).
pub async fn run(config: NodeConfig) -> Result<(), NodeError> {
    let (registry, blobs) = strata_registry::open_node(
        &config.data_dir,
        placement(&config)?,
        config.rebuilt_cache_bytes,
    )
    .await
    .map_err(|source| NodeError::Open {
        dir: config.data_dir.clone(),
        source,
    })?;
    let registry = if config.upstreams.is_empty() {
        registry
    } else {
        tracing::info!(upstreams = ?config.upstreams, tag_ttl_s = config.tag_ttl.as_secs(), "mirroring");
        let upstream = HttpUpstream::new(config.upstreams.clone());
        registry.with_mirror(Arc::new(upstream), config.tag_ttl)
    };
    spawn_periodic_gc(registry.clone(), &config);
    reload_plan_on_hangup(blobs, &config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(NodeError::Serve)?;
    println!("strata listening on http://{bound}");
    let limits = server_limits(&config);
    tracing::info!(
        listen = %bound,
        data_dir = %config.data_dir.display(),
        granularity = ?config.granularity,
        plan = ?config.plan,
        max_connections = limits.max_connections,
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        "strata node serving"
    );
    strata_registry::server::serve(
        listener,
        strata_registry::app(registry),
        limits,
        shutdown_signal(),
    )
    .await
    .map_err(NodeError::Serve)?;
    tracing::info!("strata node stopped");
    Ok(())
}
