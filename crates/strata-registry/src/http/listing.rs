//! Listings: `GET /v2/<name>/tags/list`, `GET /v2/_catalog` (both paginated with `n`/`last`
//! and a `Link` header) and `GET /v2/<name>/referrers/<digest>`.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use strata_oci::manifest::OCI_INDEX;
use strata_oci::{Digest, ErrorCode, RepoName};

use super::{respond, ApiError, AppState, Query};

/// Page size when the client gives no `n`.
const DEFAULT_PAGE: usize = 10_000;

fn page_size(q: &Query) -> Result<usize, ApiError> {
    match q.get("n") {
        None => Ok(DEFAULT_PAGE),
        Some(n) => n.parse().map_err(|_| {
            ApiError::new(ErrorCode::Unsupported, format!("invalid page size n={n:?}"))
                .with_status(StatusCode::BAD_REQUEST)
        }),
    }
}

fn json_page(body: serde_json::Value, next: Option<String>) -> Response {
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(link) = next {
        headers.push(("link", format!("<{link}>; rel=\"next\"")));
    }
    respond(StatusCode::OK, &headers, Body::from(body.to_string()))
}

/// The query string of the next page, if there is one.
fn next_page(base: &str, more: bool, n: usize, items: &[String]) -> Option<String> {
    let last = items.last().filter(|_| more)?;
    let q = serde_urlencoded::to_string([("n", n.to_string()), ("last", last.clone())]).ok()?;
    Some(format!("{base}?{q}"))
}

pub fn tags(st: &AppState, repo: &RepoName, q: &Query) -> Result<Response, ApiError> {
    let n = page_size(q)?;
    let (tags, more) = st
        .registry
        .tags(repo, q.get("last").map(String::as_str), n)?;
    let next = next_page(&format!("/v2/{repo}/tags/list"), more, n, &tags);
    Ok(json_page(
        json!({ "name": repo.as_str(), "tags": tags }),
        next,
    ))
}

/// The catalog as the caller sees it: only the repositories `visible` to it.
pub fn catalog(
    st: &AppState,
    q: &Query,
    visible: &dyn Fn(&str) -> bool,
) -> Result<Response, ApiError> {
    let n = page_size(q)?;
    let (repos, more) = st
        .registry
        .catalog(q.get("last").map(String::as_str), n, visible)?;
    let next = next_page("/v2/_catalog", more, n, &repos);
    Ok(json_page(json!({ "repositories": repos }), next))
}

pub fn referrers(
    st: &AppState,
    repo: &RepoName,
    subject: &Digest,
    q: &Query,
) -> Result<Response, ApiError> {
    let filter = q.get("artifactType").map(String::as_str);
    let manifests = st.registry.referrers(repo, subject, filter)?;
    let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut headers = vec![("content-type", OCI_INDEX.to_string())];
    if filter.is_some() {
        headers.push(("oci-filters-applied", "artifactType".to_string()));
    }
    Ok(respond(
        StatusCode::OK,
        &headers,
        Body::from(body.to_string()),
    ))
}
