//! `strata serve`: run a registry node until SIGINT or SIGTERM (SIGHUP re-reads its plan).

use anyhow::{Context, Result};
use strata_registry::server::ServerLimits;
use strata_registry::{GcOptions, Registry};
use strata_store::{LayeredBlobStore, Placement};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, NodeConfig};

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // A log that cannot be written (its disk full, say) is dropped: the default reports the
    // failure with `eprintln!` to the same stderr, which panics and would take the request
    // being logged down with it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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
fn placement(config: &NodeConfig) -> Result<Placement> {
    let default = config.granularity.into();
    match &config.plan {
        Some((path, name)) => crate::placement::from_plan(default, path, name),
        None => Ok(Placement::uniform(default)),
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
                        tracing::error!(error = %format!("{e:#}"), "plan not reloaded; the previous one stays in force")
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

pub async fn run(config: NodeConfig) -> Result<()> {
    init_logging(config.log_format);
    let (registry, blobs) = strata_registry::open_node(
        &config.data_dir,
        placement(&config)?,
        config.rebuilt_cache_bytes,
    )
    .await
    .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?;
    spawn_periodic_gc(registry.clone(), &config);
    reload_plan_on_hangup(blobs, &config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    // One line on stdout, so scripts that asked for port 0 learn the real address.
    println!("strata listening on http://{bound}");
    tracing::info!(
        listen = %bound,
        data_dir = %config.data_dir.display(),
        granularity = ?config.granularity,
        plan = ?config.plan,
        "strata node serving"
    );
    let limits = server_limits(&config);
    tracing::info!(
        max_connections = limits.max_connections,
        idle_timeout_s = limits.idle_timeout.as_secs_f64(),
        "connection limits"
    );
    strata_registry::server::serve(
        listener,
        strata_registry::app(registry),
        limits,
        shutdown_signal(),
    )
    .await?;
    tracing::info!("strata node stopped");
    Ok(())
}
