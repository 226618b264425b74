//! `strata serve`: run a registry node until SIGINT or SIGTERM.

use anyhow::{Context, Result};
use strata_registry::{GcOptions, Registry};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, NodeConfig};

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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

pub async fn run(config: NodeConfig) -> Result<()> {
    init_logging(config.log_format);
    let granularity = config.granularity.into();
    let registry =
        strata_registry::open_data_dir(&config.data_dir, granularity, config.rebuilt_cache_bytes)
            .await
            .with_context(|| format!("cannot open data directory {}", config.data_dir.display()))?;
    spawn_periodic_gc(registry.clone(), &config);
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
        "strata node serving"
    );
    axum::serve(listener, strata_registry::app(registry))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("strata node stopped");
    Ok(())
}
