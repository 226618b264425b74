//! Administrative endpoints of a node (not part of the distribution API).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::services::{GcOptions, GcReport};

#[derive(Debug, Deserialize)]
pub struct GcParams {
    grace_s: Option<u64>,
    upload_ttl_s: Option<u64>,
}

/// `POST /strata/v1/gc`: run a garbage collection now.
pub async fn gc(
    State(st): State<AppState>,
    Query(p): Query<GcParams>,
) -> Result<Json<GcReport>, ApiError> {
    let defaults = GcOptions::default();
    let opts = GcOptions {
        grace: p.grace_s.map_or(defaults.grace, Duration::from_secs),
        upload_ttl: p
            .upload_ttl_s
            .map_or(defaults.upload_ttl, Duration::from_secs),
    };
    let report = st.registry.gc(opts).await?;
    tracing::info!(?report, "garbage collection done");
    Ok(Json(report))
}
