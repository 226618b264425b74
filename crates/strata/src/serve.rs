//! `strata serve`: set up logging, then run the node (`strata-node`) until SIGINT or
//! SIGTERM (SIGHUP re-reads its plan).

use anyhow::Result;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServeConfig};

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

pub async fn run(config: ServeConfig) -> Result<()> {
    init_logging(config.log_format);
    Ok(strata_node::run(config.node).await?)
}
