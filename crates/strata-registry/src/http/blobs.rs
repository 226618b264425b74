//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single byte ranges.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::TryStreamExt;
use strata_oci::{Digest, RepoName};

use super::{header_str, respond, ApiError, AppState};

/// What a `Range` header asks of a blob (RFC 9110, section 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// One range, `start..end` (end exclusive), clamped to the blob.
    Part(u64, u64),
    /// A range the blob cannot satisfy (it starts at or past the end): 416.
    Unsatisfiable,
    /// A header to ignore, answered with the whole blob: another unit, several ranges (only
    /// single ranges are served), or a ranges-specifier that is not valid syntax.
    Ignore,
}

/// Parse a `Range` header against a blob of `size` bytes.
pub fn parse_range(value: &str, size: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    // Digits beyond u64 are a position past any blob: saturate.
    let number = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    if a.is_empty() {
        if !digits(b) {
            return RangeAsk::Ignore;
        }
        let suffix = number(b);
        if suffix == 0 || size == 0 {
            return RangeAsk::Unsatisfiable;
        }
        return RangeAsk::Part(size.saturating_sub(suffix), size);
    }
    if !digits(a) || !(b.is_empty() || digits(b)) {
        return RangeAsk::Ignore;
    }
    let start = number(a);
    let last = if b.is_empty() { u64::MAX } else { number(b) };
    if last < start {
        return RangeAsk::Ignore;
    }
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(start, last.saturating_add(1).min(size))
}

pub async fn get(
    st: &AppState,
    repo: &RepoName,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let (info, open) = if head {
        (st.registry.blob_check_for_push(repo, digest).await?, None)
    } else {
        let (info, open) = st.registry.blob_open(repo, digest).await?;
        (info, Some(open))
    };
    let size = info.size;
    let (status, start, end) = match header_str(headers, "range") {
        None => (StatusCode::OK, 0, size),
        Some(r) => match parse_range(r, size) {
            RangeAsk::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
            RangeAsk::Ignore => (StatusCode::OK, 0, size),
            RangeAsk::Unsatisfiable => return Err(ApiError::range_not_satisfiable(size)),
        },
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
    let Some(open) = open else {
        return Ok(respond(status, &hs, Body::empty()));
    };
    let chunks = st.registry.blob_read_open(open, digest, start, end).await?;
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
    use super::{parse_range, RangeAsk};

    #[test]
    fn parses_single_ranges() {
        let part = |a, b| RangeAsk::Part(a, b);
        assert_eq!(parse_range("bytes=0-9", 100), part(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), part(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), part(90, 100));
        assert_eq!(parse_range("bytes=-1000", 100), part(0, 100));
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            part(50, 100),
            "end clamped"
        );
        assert_eq!(
            parse_range("bytes=0-18446744073709551615", 100),
            part(0, 100),
            "the largest end is clamped like any other"
        );
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 100),
            part(0, 100),
            "an end past u64 is clamped too"
        );
    }

    #[test]
    fn unsatisfiable_ranges_start_past_the_end() {
        for bad in [
            "bytes=100-",
            "bytes=200-300",
            "bytes=-0",
            "bytes=18446744073709551615-18446744073709551615",
        ] {
            assert_eq!(parse_range(bad, 100), RangeAsk::Unsatisfiable, "{bad:?}");
        }
        assert_eq!(
            parse_range("bytes=0-0", 0),
            RangeAsk::Unsatisfiable,
            "empty blob has no satisfiable range"
        );
    }

    #[test]
    fn other_units_several_ranges_and_bad_syntax_are_ignored() {
        for ignored in [
            "items=0-9",
            "bytes=0-1,3-4",
            "bytes=abc",
            "bytes=a-b",
            "bytes=",
            "bytes=5-2",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(ignored, 100), RangeAsk::Ignore, "{ignored:?}");
        }
    }
}
