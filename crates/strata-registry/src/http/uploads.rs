//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic, mount) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use strata_oci::{Digest, ErrorCode, RepoName};

use super::body::{upload_body, BodyRest};
use super::error::upload_range;
use super::{header_str, respond, ApiError, AppState, Query};
use crate::services::ServiceError;

/// On an upload failure, drain the rest of the body so the client reads the error.
async fn drained<T>(result: Result<T, ServiceError>, rest: BodyRest) -> Result<T, ServiceError> {
    if result.is_err() {
        rest.drain().await;
    }
    result
}

fn upload_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// 202 with where to continue and how much arrived.
fn accepted(repo: &RepoName, id: &str, size: u64) -> Response {
    respond(
        StatusCode::ACCEPTED,
        &[
            ("location", upload_location(repo, id)),
            ("range", upload_range(size)),
            ("docker-upload-uuid", id.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

/// 201 for a blob now available in `repo`.
fn created(repo: &RepoName, digest: &Digest) -> Response {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{repo}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

fn digest_param(q: &Query, name: &str) -> Result<Option<Digest>, ApiError> {
    q.get(name)
        .map(|s| {
            s.parse::<Digest>()
                .map_err(|e| ApiError::new(ErrorCode::DigestInvalid, e.to_string()))
        })
        .transpose()
}

pub async fn start(
    st: &AppState,
    repo: &RepoName,
    q: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(mount) = digest_param(q, "mount")? {
        // Without `from`, any stored blob may be mounted (an anonymous mount).
        let from = q
            .get("from")
            .map(|f| f.parse::<RepoName>())
            .transpose()
            .map_err(|e| ApiError::new(ErrorCode::NameInvalid, e.to_string()))?;
        if st.registry.blob_mount(repo, &mount, from.as_ref()).await? {
            return Ok(created(repo, &mount));
        }
        // Not mountable: fall back to a regular upload session, as the spec prescribes.
        let id = st.registry.upload_start(repo).await?;
        return Ok(accepted(repo, &id, 0));
    }
    if let Some(digest) = digest_param(q, "digest")? {
        let (stream, rest) = upload_body(body, &st.metrics);
        drained(
            st.registry.upload_monolithic(repo, &digest, stream).await,
            rest,
        )
        .await?;
        return Ok(created(repo, &digest));
    }
    let id = st.registry.upload_start(repo).await?;
    Ok(accepted(repo, &id, 0))
}

pub async fn status(st: &AppState, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    let size = st.registry.upload_status(repo, id).await?;
    let mut resp = accepted(repo, id, size);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// First and last byte of a `Content-Range: <start>-<end>` (also `bytes <start>-<end>/<total>`).
fn content_range(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next()?;
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (end >= start).then_some((start, end))
}

/// Where a chunk says it starts (its `Content-Range`), if it says. A range whose length
/// differs from the body's `Content-Length` is refused (416, with where the upload stands)
/// before anything is written.
async fn chunk_start(
    st: &AppState,
    repo: &RepoName,
    id: &str,
    headers: &HeaderMap,
) -> Result<Option<u64>, ApiError> {
    let Some(v) = header_str(headers, "content-range") else {
        return Ok(None);
    };
    let (start, end) = content_range(v).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("invalid content-range {v:?}"),
        )
    })?;
    let declared = header_str(headers, "content-length").and_then(|l| l.trim().parse::<u64>().ok());
    let range_len = (end - start).checked_add(1);
    if let Some(len) = declared.filter(|&len| Some(len) != range_len) {
        let size = st.registry.upload_status(repo, id).await?;
        return Err(ApiError::new(
            ErrorCode::BlobUploadInvalid,
            format!("content-range {start}-{end} does not span the body's {len} bytes"),
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header("range", upload_range(size)));
    }
    Ok(Some(start))
}

pub async fn patch(
    st: &AppState,
    repo: &RepoName,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (stream, rest) = upload_body(body, &st.metrics);
    let start = match chunk_start(st, repo, id, headers).await {
        Ok(start) => start,
        Err(e) => {
            rest.drain().await;
            return Err(e);
        }
    };
    let size = drained(
        st.registry.upload_append(repo, id, start, stream).await,
        rest,
    )
    .await?;
    Ok(accepted(repo, id, size))
}

pub async fn put(
    st: &AppState,
    repo: &RepoName,
    id: &str,
    q: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let digest = digest_param(q, "digest")?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            "digest query parameter is required",
        )
    })?;
    let has_body = header_str(headers, "content-length").is_none_or(|l| l.trim() != "0");
    let (stream, rest) = upload_body(body, &st.metrics);
    let start = match chunk_start(st, repo, id, headers).await {
        Ok(start) => start,
        Err(e) => {
            rest.drain().await;
            return Err(e);
        }
    };
    let last_chunk = has_body.then_some((start, stream));
    let finished = st
        .registry
        .upload_finish(repo, id, &digest, last_chunk)
        .await;
    drained(finished, rest).await?;
    Ok(created(repo, &digest))
}

pub async fn cancel(st: &AppState, repo: &RepoName, id: &str) -> Result<Response, ApiError> {
    st.registry.upload_cancel(repo, id).await?;
    Ok(respond(
        StatusCode::NO_CONTENT,
        &[("content-length", "0".into())],
        Body::empty(),
    ))
}

#[cfg(test)]
mod tests {
    use super::content_range;

    #[test]
    fn parses_content_range() {
        assert_eq!(content_range("0-99"), Some((0, 99)));
        assert_eq!(content_range("100-199"), Some((100, 199)));
        assert_eq!(content_range("bytes 100-199/*"), Some((100, 199)));
        assert_eq!(content_range("5-2"), None);
        assert_eq!(content_range("x-y"), None);
        assert_eq!(content_range(""), None);
    }
}
