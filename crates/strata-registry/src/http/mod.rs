//! HTTP handlers: the OCI Distribution API v1.1 over axum.
//!
//! Layer rule: handlers parse requests and render responses; every decision about content
//! belongs to [`crate::services`]. Repository names contain slashes, so `/v2/...` paths are
//! parsed by [`strata_oci::Route`] in one fallback handler rather than by the router.

mod admin;
mod blobs;
mod body;
mod error;
mod listing;
mod manifests;
mod uploads;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use strata_oci::Route;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::metrics::{self, Metrics};
use crate::services::Registry;
pub use error::ApiError;

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
}

/// The node's HTTP application: the distribution API, `/metrics` and the admin endpoints.
pub fn app(registry: Registry) -> Router {
    let state = AppState {
        registry,
        metrics: Arc::new(Metrics::new()),
    };
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/metrics", get(metrics::render))
        .route("/strata/v1/gc", post(admin::gc))
        .route("/strata/v1/convert", post(admin::convert))
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Result<Query, ApiError> {
    serde_urlencoded::from_str(q.unwrap_or("")).map_err(|e| {
        ApiError::new(
            strata_oci::ErrorCode::Unsupported,
            format!("invalid query string: {e}"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Build a response with a status, headers and body.
fn respond(status: StatusCode, headers: &[(&'static str, String)], body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
    resp
}

async fn dispatch(State(st): State<AppState>, req: Request) -> Response {
    match route(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(st: AppState, req: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let route = match parts.extensions.remove::<metrics::ParsedRoute>() {
        Some(parsed) => parsed.0?,
        None => Route::parse(parts.uri.path())?,
    };
    let q = parse_query(parts.uri.query())?;
    let h = &parts.headers;
    let head = parts.method == Method::HEAD;
    match (parts.method.clone(), route) {
        (Method::GET | Method::HEAD, Route::Base) => Ok(respond(
            StatusCode::OK,
            &[("content-type", "application/json".into())],
            Body::from("{}"),
        )),
        (Method::GET, Route::Catalog) => listing::catalog(&st, &q),
        (Method::GET, Route::Tags(n)) => listing::tags(&st, &n, &q),
        (Method::GET, Route::Referrers(n, d)) => listing::referrers(&st, &n, &d, &q),
        (Method::GET | Method::HEAD, Route::Manifest(n, r)) => {
            let n = st
                .registry
                .name_in_namespace(q.get("ns").map(String::as_str), n);
            manifests::get(&st, &n, &r, head).await
        }
        (Method::PUT, Route::Manifest(n, r)) => {
            manifests::put(&st, &n, &r, parts.uri.query(), h, body).await
        }
        (Method::DELETE, Route::Manifest(n, r)) => manifests::delete(&st, &n, &r).await,
        (Method::GET | Method::HEAD, Route::Blob(n, d)) => {
            let n = st
                .registry
                .name_in_namespace(q.get("ns").map(String::as_str), n);
            blobs::get(&st, &n, &d, h, head).await
        }
        (Method::DELETE, Route::Blob(n, d)) => blobs::delete(&st, &n, &d).await,
        (Method::POST, Route::UploadStart(n)) => uploads::start(&st, &n, &q, body).await,
        (Method::GET, Route::Upload(n, id)) => uploads::status(&st, &n, &id).await,
        (Method::PATCH, Route::Upload(n, id)) => uploads::patch(&st, &n, &id, h, body).await,
        (Method::PUT, Route::Upload(n, id)) => uploads::put(&st, &n, &id, &q, h, body).await,
        (Method::DELETE, Route::Upload(n, id)) => uploads::cancel(&st, &n, &id).await,
        _ => Err(ApiError::unsupported()),
    }
}
