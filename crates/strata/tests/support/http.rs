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
    format!("{base}{loc}")
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
