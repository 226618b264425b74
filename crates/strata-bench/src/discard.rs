//! A registry that stores nothing: it reads every upload to its end and keeps only each
//! blob's digest and size, so skopeo can push to it (blob checks, cross-repository mounts,
//! manifests) exactly as to a real registry. Pushing to it measures the client alone: the
//! throughput no registry can beat on the push figure.
//!
//! It checks nothing: the digest a client names is believed. Never a registry to use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use strata_oci::{Algorithm, DigestHasher};

#[derive(Default)]
struct Discard {
    next_upload: AtomicU64,
    /// Bytes received so far per upload path.
    uploads: Mutex<HashMap<String, u64>>,
    /// Size per digest of every blob "stored".
    blobs: Mutex<HashMap<String, u64>>,
}

/// Serves the discard registry on a free loopback port until the runtime ends; returns
/// `host:port`.
pub async fn start() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let host = listener.local_addr()?.to_string();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(Arc::new(Discard::default()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(host)
}

fn respond(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

/// The value of `key` in a query string, its `:` unescaped.
fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.replace("%3A", ":").replace("%3a", ":"))
}

async fn handle(State(d): State<Arc<Discard>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let manifest = path.contains("/manifests/");
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    let mut received = 0u64;
    let mut body = req.into_body().into_data_stream();
    while let Some(Ok(chunk)) = body.next().await {
        received += chunk.len() as u64;
        if manifest {
            hasher.update(&chunk);
        }
    }
    let Some(rest) = path.strip_prefix("/v2/").filter(|r| !r.is_empty()) else {
        return respond(StatusCode::OK, &[]);
    };
    let name = rest
        .split("/blobs/")
        .next()
        .and_then(|n| n.split("/manifests/").next())
        .unwrap_or_default();
    let blobs = || d.blobs.lock().unwrap_or_else(|e| e.into_inner());
    match method {
        Method::HEAD if path.contains("/blobs/") && !path.contains("/uploads/") => {
            let digest = path.rsplit('/').next().unwrap_or_default().to_string();
            match blobs().get(&digest) {
                Some(size) => respond(
                    StatusCode::OK,
                    &[
                        ("content-length", size.to_string()),
                        ("docker-content-digest", digest),
                    ],
                ),
                None => respond(StatusCode::NOT_FOUND, &[]),
            }
        }
        Method::POST => match query_param(&query, "mount") {
            Some(digest) if blobs().contains_key(&digest) => respond(
                StatusCode::CREATED,
                &[("location", format!("/v2/{name}/blobs/{digest}"))],
            ),
            _ => {
                let id = d.next_upload.fetch_add(1, Ordering::Relaxed);
                respond(
                    StatusCode::ACCEPTED,
                    &[
                        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
                        ("range", "0-0".into()),
                    ],
                )
            }
        },
        Method::PATCH => {
            let mut uploads = d.uploads.lock().unwrap_or_else(|e| e.into_inner());
            let total = uploads.entry(path.clone()).or_default();
            *total += received;
            let range = format!("0-{}", total.saturating_sub(1));
            respond(
                StatusCode::ACCEPTED,
                &[("location", path), ("range", range)],
            )
        }
        Method::PUT if manifest => respond(
            StatusCode::CREATED,
            &[
                ("docker-content-digest", hasher.finish().to_string()),
                ("location", path),
            ],
        ),
        Method::PUT => {
            let earlier = d
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&path);
            let digest = query_param(&query, "digest").unwrap_or_default();
            blobs().insert(digest.clone(), earlier.unwrap_or(0) + received);
            respond(
                StatusCode::CREATED,
                &[
                    ("location", format!("/v2/{name}/blobs/{digest}")),
                    ("docker-content-digest", digest),
                ],
            )
        }
        _ => respond(StatusCode::NOT_FOUND, &[]),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use reqwest::StatusCode;
    use strata_oci::Digest;

    /// The calls skopeo makes: check, upload in a POST, PATCH and PUT, check again, mount.
    #[tokio::test]
    async fn answers_a_push_as_a_registry_would_without_keeping_the_bytes() {
        let host = super::start().await.unwrap();
        let http = reqwest::Client::new();
        let url = |p: &str| format!("http://{host}{p}");
        let data = b"layer bytes".repeat(1000);
        let d = Digest::sha256(&data).to_string();
        let blob = url(&format!("/v2/a/blobs/{d}"));
        assert_eq!(http.get(url("/v2/")).send().await.unwrap().status(), 200);
        let head = http.head(&blob).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::NOT_FOUND);

        let post = http.post(url("/v2/a/blobs/uploads/")).send().await.unwrap();
        assert_eq!(post.status(), StatusCode::ACCEPTED);
        let loc = post.headers()["location"].to_str().unwrap().to_string();
        let patch = http
            .patch(url(&loc))
            .body(data[..7000].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), StatusCode::ACCEPTED);
        assert_eq!(patch.headers()["range"], "0-6999");
        let put = http
            .put(format!("{}?digest={}", url(&loc), d.replace(':', "%3A")))
            .body(data[7000..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);

        let head = http.head(&blob).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(head.headers()["content-length"], data.len().to_string());
        let mount = url(&format!("/v2/b/blobs/uploads/?mount={d}&from=a"));
        let mounted = http.post(mount).send().await.unwrap();
        assert_eq!(mounted.status(), StatusCode::CREATED);
        let unknown = url("/v2/b/blobs/uploads/?mount=sha256:00&from=a");
        let not_mounted = http.post(unknown).send().await.unwrap();
        assert_eq!(
            not_mounted.status(),
            StatusCode::ACCEPTED,
            "unknown: upload"
        );

        let manifest = b"{\"schemaVersion\":2}".to_vec();
        let put = http
            .put(url("/v2/a/manifests/v1"))
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
        let expected = Digest::sha256(&manifest).to_string();
        assert_eq!(put.headers()["docker-content-digest"], expected.as_str());
    }
}
