//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::BytesMut;
use futures_util::StreamExt;
use strata_oci::manifest::MAX_MANIFEST_BYTES;
use strata_oci::{ErrorCode, ManifestError, Reference, RepoName, Tag};

use super::body::upload_body;
use super::{header_str, respond, ApiError, AppState};
use crate::services::ServiceError;

pub async fn get(
    st: &AppState,
    repo: &RepoName,
    reference: &Reference,
    head: bool,
) -> Result<Response, ApiError> {
    let (record, body) = if head {
        (
            st.registry.manifest_record(repo, reference).await?,
            Body::empty(),
        )
    } else {
        let c = st.registry.manifest_get(repo, reference).await?;
        st.metrics.bytes_sent(c.bytes.len());
        (c.record, Body::from(c.bytes))
    };
    let headers = [
        ("content-type", record.media_type.clone()),
        ("docker-content-digest", record.digest.to_string()),
        ("content-length", record.size.to_string()),
    ];
    Ok(respond(StatusCode::OK, &headers, body))
}

fn too_large() -> ApiError {
    ServiceError::ManifestInvalid(ManifestError::TooLarge).into()
}

/// Every `tag` parameter of a query (`?tag=a&tag=b`), validated.
fn tag_params(query: Option<&str>) -> Result<Vec<Tag>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::new(ErrorCode::Unsupported, format!("invalid query: {e}")))?;
    pairs
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| {
            v.parse::<Tag>()
                .map_err(|e| ApiError::new(ErrorCode::ManifestInvalid, e.to_string()))
        })
        .collect()
}

/// `PUT /v2/<name>/manifests/<reference>[?tag=...]`: the tags given as parameters (with a
/// digest reference) point at the manifest too, and come back in `OCI-Tag`.
pub async fn put(
    st: &AppState,
    repo: &RepoName,
    reference: &Reference,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let extra_tags = tag_params(query)?;
    let declared = header_str(headers, "content-length").and_then(|l| l.trim().parse::<u64>().ok());
    // A manifest over the limit is refused only once its body has been read away (within
    // the drain's bounds), so the client reads the 413 rather than a broken pipe.
    let (mut stream, rest) = upload_body(body, &st.metrics);
    if declared.is_some_and(|l| l > MAX_MANIFEST_BYTES as u64) {
        rest.drain().await;
        return Err(too_large());
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::from(ServiceError::BodyInterrupted(e.to_string())))?;
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_MANIFEST_BYTES {
            rest.drain().await;
            return Err(too_large());
        }
    }
    let bytes = buf.freeze();
    let content_type = header_str(headers, "content-type");
    let pushed = st
        .registry
        .manifest_put(repo, reference, &extra_tags, content_type, bytes)
        .await?;
    let mut hs = vec![
        (
            "location",
            format!("/v2/{repo}/manifests/{}", pushed.digest),
        ),
        ("docker-content-digest", pushed.digest.to_string()),
        ("content-length", "0".to_string()),
    ];
    if let Some(subject) = pushed.subject {
        hs.push(("oci-subject", subject.to_string()));
    }
    if !extra_tags.is_empty() {
        let names: Vec<&str> = pushed.tags.iter().map(Tag::as_str).collect();
        hs.push(("oci-tag", names.join(", ")));
    }
    Ok(respond(StatusCode::CREATED, &hs, Body::empty()))
}

pub async fn delete(
    st: &AppState,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Response, ApiError> {
    st.registry.manifest_delete(repo, reference).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        &[("content-length", "0".into())],
        Body::empty(),
    ))
}
