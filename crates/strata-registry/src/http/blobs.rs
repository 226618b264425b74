//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single byte ranges.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::TryStreamExt;
use strata_oci::{Digest, RepoName};

use super::{header_str, respond, ApiError, AppState};

/// Parse a `Range: bytes=...` header against a blob of `size` bytes into `start..end`
/// (end exclusive). Only single ranges are served.
pub fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let suffix: u64 = b.parse().ok()?;
        if suffix == 0 {
            return None;
        }
        (size.saturating_sub(suffix), size)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>().ok()?.checked_add(1)?.min(size)
        };
        (start, end)
    };
    (start < end).then_some((start, end))
}

pub async fn get(
    st: &AppState,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let info = if head {
        st.registry.blob_check_for_push(repo, digest).await?
    } else {
        st.registry.blob_stat(repo, digest).await?
    };
    let size = info.size;
    let (status, start, end) = match header_str(headers, "range") {
        None => (StatusCode::OK, 0, size),
        Some(r) => {
            let (s, e) =
                parse_range(r, size).ok_or_else(|| ApiError::range_not_satisfiable(size))?;
            (StatusCode::PARTIAL_CONTENT, s, e)
        }
    };
    let mut hs = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("docker-content-digest", digest.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("content-length", (end - start).to_string()),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        hs.push(("content-range", format!("bytes {start}-{}/{size}", end - 1)));
    }
    if head {
        return Ok(respond(status, &hs, Body::empty()));
    }
    let chunks = st.registry.blob_read(repo, digest, start, end).await?;
    let m = st.metrics.clone();
    let stream = chunks.inspect_ok(move |b| m.bytes_sent(b.len()));
    Ok(respond(status, &hs, Body::from_stream(stream)))
}

pub async fn delete(st: &AppState, repo: &RepoName, digest: &Digest) -> Result<Response, ApiError> {
    st.registry.blob_delete(repo, digest).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        &[("content-length", "0".into())],
        Body::empty(),
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn parses_single_ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-1000", 100), Some((0, 100)));
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            Some((50, 100)),
            "end is clamped"
        );
    }

    #[test]
    fn rejects_unsatisfiable_or_malformed() {
        for bad in [
            "bytes=100-",
            "bytes=200-300",
            "bytes=5-2",
            "bytes=-0",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=",
            "bytes=18446744073709551615-18446744073709551615",
        ] {
            assert_eq!(parse_range(bad, 100), None, "{bad:?}");
        }
        assert_eq!(
            parse_range("bytes=0-0", 0),
            None,
            "empty blob has no satisfiable range"
        );
    }
}
