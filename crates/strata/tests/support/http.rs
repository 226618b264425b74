//! Small HTTP helpers for end-to-end tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;

use strata_oci::Digest;

/// Deterministic pseudo-random bytes (xorshift), so tests need no fixtures.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Start an upload session; returns its absolute URL.
pub async fn start_upload(base: &str, repo: &str) -> String {
    let r = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    // strata answers with a path, the CNCF registry with an absolute URL.
    if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    }
}

/// Monolithic push; returns the status code and body.
pub async fn push_blob(base: &str, repo: &str, data: Vec<u8>) -> (u16, String) {
    let d = Digest::sha256(&data);
    let r = client()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(data)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Bytes received so far by an upload, from its status endpoint.
pub async fn upload_offset(url: &str) -> u64 {
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 204, "upload status");
    let range = r.headers()["range"].to_str().unwrap().to_string();
    let end: u64 = range.trim_start_matches("0-").parse().unwrap();
    if end == 0 {
        // "0-0" means empty for a fresh upload; the node reports 0-0 for one byte too, so
        // callers that need the distinction look at the data they sent.
        0
    } else {
        end + 1
    }
}

pub async fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Write the head and part of a request body, then drop the connection.
pub fn abandon_request(host: &str, head: &str, partial_body: &[u8]) {
    let mut s = TcpStream::connect(host).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(partial_body).unwrap();
    s.flush().unwrap();
    drop(s);
}

/// Send a GET, read only `n` bytes of the response, then drop the connection.
pub fn abandon_download(host: &str, path: &str, n: usize) {
    let mut s = TcpStream::connect(host).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).unwrap();
    drop(s);
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI image manifest for `config` and one gzip `layer`.
pub fn image_manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": Digest::sha256(layer).to_string(), "size": layer.len()}],
    }))
    .unwrap()
}

/// Push a blob by POST then PUT, which every registry takes (the CNCF registry takes no
/// monolithic POST); returns the PUT's status.
pub async fn push_blob_in_session(base: &str, repo: &str, data: &[u8]) -> u16 {
    let loc = start_upload(base, repo).await;
    let sep = if loc.contains('?') { '&' } else { '?' };
    client()
        .put(format!("{loc}{sep}digest={}", Digest::sha256(data)))
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub async fn put_manifest(base: &str, repo: &str, tag: &str, manifest: &[u8]) -> u16 {
    client()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Push `config` and `layer`, then their manifest tagged `tag`; returns the manifest.
pub async fn push_image(base: &str, repo: &str, tag: &str, config: &[u8], layer: &[u8]) -> Vec<u8> {
    for blob in [config, layer] {
        assert_eq!(
            push_blob_in_session(base, repo, blob).await,
            201,
            "blob push"
        );
    }
    let manifest = image_manifest(config, layer);
    assert_eq!(
        put_manifest(base, repo, tag, &manifest).await,
        201,
        "manifest push"
    );
    manifest
}
