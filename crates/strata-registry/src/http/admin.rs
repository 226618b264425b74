//! Administrative endpoints of a node (not part of the distribution API).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

use strata_oci::{Digest, ErrorCode};
use strata_store::{Conversion, Granularity};

use super::{ApiError, AppState};
use crate::services::{GcOptions, GcReport};

#[derive(Debug, Deserialize)]
pub struct GcParams {
    grace_s: Option<u64>,
    upload_ttl_s: Option<u64>,
    #[serde(default)]
    force: bool,
}

/// `POST /strata/v1/gc[?grace_s=&upload_ttl_s=&force=true]`: run a garbage collection now
/// (a grace or upload lifetime under ten minutes only with `force`).
pub async fn gc(
    State(st): State<AppState>,
    Query(p): Query<GcParams>,
) -> Result<Json<GcReport>, ApiError> {
    let defaults = GcOptions::default();
    let opts = GcOptions::requested(
        p.grace_s.map_or(defaults.grace, Duration::from_secs),
        p.upload_ttl_s
            .map_or(defaults.upload_ttl, Duration::from_secs),
        p.force,
    )
    .map_err(|e| ApiError::from(e).with_status(axum::http::StatusCode::BAD_REQUEST))?;
    let report = st.registry.gc(opts).await?;
    tracing::info!(?report, "garbage collection done");
    Ok(Json(report))
}

#[derive(Debug, Deserialize)]
pub struct ConvertParams {
    digest: String,
    to: Granularity,
}

/// `POST /strata/v1/convert?digest=<digest>&to=layer|file`: move a stored layer between
/// granularities (`strata store convert`).
pub async fn convert(
    State(st): State<AppState>,
    Query(p): Query<ConvertParams>,
) -> Result<Json<Conversion>, ApiError> {
    let digest: Digest = p
        .digest
        .parse()
        .map_err(|e| ApiError::new(ErrorCode::DigestInvalid, format!("{e}")))?;
    let done = st.registry.store_as(&digest, p.to).await?;
    tracing::info!(?done, "layer conversion requested");
    Ok(Json(done))
}
