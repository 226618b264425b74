//! An upstream registry over the distribution API, as `strata_registry::Upstream`.
//!
//! Routes map this node's repository names to upstreams: a route with a namespace (as
//! containerd's `hosts.toml` mirrors send it, `?ns=docker.io`) serves the repositories
//! named `<namespace>/...` here and strips the namespace upstream; a route without one
//! serves every other repository under its own name. Registries that ask for a bearer token
//! (Docker Hub) get the anonymous token flow: the 401's `WWW-Authenticate` challenge is
//! answered from its realm and the request retried once. With a login for the upstream's
//! host ([`Credentials`]), the token is asked for with it, and a `Basic` challenge is
//! answered with it; without one, requests stay anonymous.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use reqwest::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use strata_oci::{Digest, Reference, RepoName};
use strata_registry::{Upstream, UpstreamBlob, UpstreamError, UpstreamManifest};
use strata_store::ByteStream;

use crate::credentials::{Credentials, Login};

/// The manifest media types a mirror accepts.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The first component of this node's names for the repositories of namespace `ns`: the
/// namespace itself, lowercased, with a port's `:` as `-` (repository names allow no `:`),
/// so `127.0.0.1:5000` is `127.0.0.1-5000`.
pub fn local_prefix(ns: &str) -> String {
    ns.to_ascii_lowercase().replace(':', "-")
}

/// Longest wait for a connection to an upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of an upstream's answer.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One upstream registry and the namespace it serves (`None`: every other repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRoute {
    pub namespace: Option<String>,
    /// Base URL, e.g. `https://registry-1.docker.io` (no trailing slash).
    pub url: String,
}

impl std::str::FromStr for UpstreamRoute {
    type Err = String;

    /// `URL` or `NAMESPACE=URL`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (namespace, url) = match s.split_once('=') {
            Some((ns, url)) => (Some(ns.trim().to_string()), url.trim()),
            None => (None, s.trim()),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "upstream {url:?} is not an http:// or https:// URL"
            ));
        }
        let authority = url.split("://").nth(1).unwrap_or_default();
        if authority
            .split('/')
            .next()
            .unwrap_or_default()
            .contains('@')
        {
            // Not echoed: the URL holds a password.
            return Err("an upstream URL carries a user and password: give them in \
                 --upstream-credentials instead, where they stay out of logs"
                .to_string());
        }
        if namespace
            .as_deref()
            .is_some_and(|ns| ns.is_empty() || ns.contains('/'))
        {
            return Err(format!(
                "upstream namespace in {s:?} must be one name, like docker.io"
            ));
        }
        Ok(UpstreamRoute {
            namespace,
            url: url.trim_end_matches('/').to_string(),
        })
    }
}

/// Upstream registries reached over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    client: reqwest::Client,
    routes: Vec<UpstreamRoute>,
    /// Set once an upstream answered a `Range` request with something other than that range:
    /// pieces cannot come from it, whole blobs still can.
    ranges_broken: Arc<AtomicBool>,
    credentials: Arc<Credentials>,
    /// The `Authorization` that last worked per repository upstream (a bearer token until it
    /// expires, or a login), sent with the first request so a pull does not pay a 401 and a
    /// token round trip for every blob.
    authorized: Arc<Mutex<HashMap<String, Authorized>>>,
}

/// An `Authorization` header value that an upstream accepted (sensitive: `Debug` hides it).
#[derive(Clone, Debug)]
struct Authorized {
    header: HeaderValue,
    /// When a token stops being sent (`None`: a login, sent until refused).
    until: Option<Instant>,
}

/// At most this many repositories' authorizations are remembered.
const AUTHORIZED_MAX: usize = 4096;

/// The part of an upstream URL a token's scope covers: the repository
/// (`.../v2/NAME` of `.../v2/NAME/blobs/DIGEST`).
fn scope_key(url: &str) -> &str {
    ["/blobs/", "/manifests/"]
        .iter()
        .filter_map(|p| url.rfind(p))
        .max()
        .map_or(url, |i| &url[..i])
}

fn unreachable(e: impl std::fmt::Display) -> UpstreamError {
    UpstreamError(format!("unreachable: {e}"))
}

/// The parameters of a `Bearer realm="...",service="...",scope="..."` challenge.
fn bearer_challenge(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim().strip_prefix("Bearer ")?;
    // Parameters are separated by commas outside quotes (a scope may hold "pull,push").
    let mut parts = Vec::new();
    let (mut current, mut quoted) = (String::new(), false);
    for c in rest.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    let mut params = Vec::new();
    for part in parts.iter().filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once('=')?;
        params.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
    }
    Some(params)
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    /// Seconds the token is valid; the distribution spec's default is 60.
    expires_in: Option<u64>,
}

impl HttpUpstream {
    pub fn new(routes: Vec<UpstreamRoute>) -> Self {
        // A stalled upstream must not hold a fetch, and every request waiting on it, forever.
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .unwrap_or_default();
        HttpUpstream {
            client,
            routes,
            ranges_broken: Arc::default(),
            credentials: Arc::default(),
            authorized: Arc::default(),
        }
    }

    /// Gives up on an upstream that sends nothing for `timeout` (default 60 s): its fetch
    /// fails, and the clients waiting on it get an error instead of waiting for ever.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(timeout)
            .build()
            .unwrap_or_default();
        self
    }

    /// Logs in to the upstreams `credentials` has a login for.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Arc::new(credentials);
        self
    }

    /// The route serving `repo` and the repository's name upstream.
    fn route(&self, repo: &RepoName) -> Option<(&UpstreamRoute, String)> {
        let name = repo.as_str();
        for r in &self.routes {
            if let Some(ns) = &r.namespace {
                let prefix = local_prefix(ns);
                if let Some(rest) = name
                    .strip_prefix(prefix.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    return Some((r, rest.to_string()));
                }
            }
        }
        self.routes
            .iter()
            .find(|r| r.namespace.is_none())
            .map(|r| (r, name.to_string()))
    }

    /// GET `url`, answering one bearer challenge if the registry asks for a token.
    async fn get(&self, url: &str, accept: Option<&str>) -> Result<Response, UpstreamError> {
        self.send(Method::GET, url, accept, None).await
    }

    /// A request to `url`, answering one authentication challenge: a bearer challenge with a
    /// token (asked for with the host's login, if there is one), a basic one with the login.
    /// What worked is remembered for the repository and sent first next time.
    async fn send(
        &self,
        method: Method,
        url: &str,
        accept: Option<&str>,
        range: Option<String>,
    ) -> Result<Response, UpstreamError> {
        let login: Option<&Login> = self.credentials.for_url(url);
        let key = scope_key(url);
        let request = |authorization: Option<&HeaderValue>| {
            let mut req = self.client.request(method.clone(), url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(r) = &range {
                req = req.header(RANGE, r.as_str());
            }
            if let Some(a) = authorization {
                req = req.header(AUTHORIZATION, a.clone());
            }
            req
        };
        let remembered = self.remembered(key);
        let first = request(remembered.as_ref())
            .send()
            .await
            .map_err(unreachable)?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        if remembered.is_some() {
            self.forget(key);
        }
        let challenge = first
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if challenge.trim_start().starts_with("Basic") {
            let Some(l) = login else {
                return Ok(first);
            };
            let header = basic_header(l);
            let resp = request(Some(&header)).send().await.map_err(unreachable)?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                self.remember(key, header, None);
            }
            return Ok(resp);
        }
        let Some(params) = bearer_challenge(&challenge) else {
            return Ok(first);
        };
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| UpstreamError("sent a bearer challenge without a realm".into()))?;
        let query: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "realm").collect();
        let mut ask = self.client.get(&realm).query(&query);
        if let Some(l) = login {
            ask = ask.header(AUTHORIZATION, basic_header(l));
        }
        let answer: TokenAnswer = ask
            .send()
            .await
            .map_err(unreachable)?
            .error_for_status()
            .map_err(|e| UpstreamError(format!("refused a token: {e}")))?
            .json()
            .await
            .map_err(|e| UpstreamError(format!("sent an unreadable token: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError("sent a token answer without a token".into()))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| UpstreamError("sent a token that is not a header value".into()))?;
        header.set_sensitive(true);
        let resp = request(Some(&header)).send().await.map_err(unreachable)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            // Sent until shortly before it expires (at least 60 s, the spec's default).
            let lifetime = answer.expires_in.unwrap_or(60).max(60);
            let until = Instant::now() + Duration::from_secs(lifetime - lifetime / 10);
            self.remember(key, header, Some(until));
        }
        Ok(resp)
    }

    fn remembered(&self, key: &str) -> Option<HeaderValue> {
        let map = self.authorized.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|a| a.until.is_none_or(|t| Instant::now() < t))
            .map(|a| a.header.clone())
    }

    fn remember(&self, key: &str, header: HeaderValue, until: Option<Instant>) {
        let mut map = self.authorized.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= AUTHORIZED_MAX {
            let now = Instant::now();
            map.retain(|_, a| a.until.is_none_or(|t| now < t));
            if map.len() >= AUTHORIZED_MAX {
                map.clear();
            }
        }
        map.insert(key.to_string(), Authorized { header, until });
    }

    fn forget(&self, key: &str) {
        let mut map = self.authorized.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
    }
}

/// `Authorization: Basic ...` for `login`, marked sensitive (never printed by `Debug`).
fn basic_header(login: &Login) -> HeaderValue {
    let raw = format!("{}:{}", login.username, login.password());
    let mut header = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
    .expect("base64 is a valid header value");
    header.set_sensitive(true);
    header
}

impl HttpUpstream {
    /// The size of blob `digest` of `repo` upstream; `None` if the upstream does not have it.
    pub async fn blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let Some((route, name)) = self.route(repo) else {
            return Ok(None);
        };
        let url = format!("{}/v2/{name}/blobs/{digest}", route.url);
        let resp = self.send(Method::HEAD, &url, None, None).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if !s.is_success() => Err(UpstreamError(format!("answered {s} for {url}"))),
            _ => resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Some)
                .ok_or_else(|| UpstreamError(format!("sent no blob size for {url}"))),
        }
    }

    /// Bytes `start..end` of blob `digest` (of `size` bytes) of `repo`, by a `Range`
    /// request. An upstream that sends more or fewer bytes than asked, or ignores the range
    /// of a part of the blob, is refused.
    /// Whether an upstream answered a `Range` request with another range or the whole
    /// blob: the site then takes whole blobs from the upstream instead of pieces.
    pub fn ranges_broken(&self) -> bool {
        self.ranges_broken.load(Ordering::Relaxed)
    }

    pub async fn blob_range(
        &self,
        repo: &RepoName,
        digest: &Digest,
        (start, end): (u64, u64),
        size: u64,
    ) -> Result<Bytes, UpstreamError> {
        let Some((route, name)) = self.route(repo) else {
            return Err(UpstreamError(format!("no upstream serves {repo}")));
        };
        let url = format!("{}/v2/{name}/blobs/{digest}", route.url);
        let range = format!("bytes={start}-{}", end.saturating_sub(1));
        let resp = self.send(Method::GET, &url, None, Some(range)).await?;
        let whole = start == 0 && end == size;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let header = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !content_range_matches(header, start, end, size) {
                    self.ranges_broken.store(true, Ordering::Relaxed);
                    return Err(UpstreamError(format!(
                        "answered Content-Range {header:?} to bytes {start}-{} of {size} for {url}",
                        end.saturating_sub(1)
                    )));
                }
            }
            StatusCode::OK if whole => {}
            StatusCode::OK => {
                self.ranges_broken.store(true, Ordering::Relaxed);
                return Err(UpstreamError(format!("ignored a Range request for {url}")));
            }
            s => return Err(UpstreamError(format!("answered {s} for {url}"))),
        }
        let want = (end - start) as usize;
        let mut body = resp.bytes_stream();
        let mut buf = BytesMut::with_capacity(want);
        while let Some(chunk) = body.try_next().await.map_err(unreachable)? {
            if buf.len() + chunk.len() > want {
                return Err(UpstreamError(format!(
                    "sent more than the {want} bytes asked of {url}"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() != want {
            return Err(UpstreamError(format!(
                "sent {} of the {want} bytes asked of {url}",
                buf.len()
            )));
        }
        Ok(buf.freeze())
    }
}

/// Whether a 206's `Content-Range` (RFC 9110 14.4) is the range `start..end` of a blob of
/// `size` bytes (an unknown total, `*`, is accepted).
fn content_range_matches(header: &str, start: u64, end: u64, size: u64) -> bool {
    let Some((range, total)) = header
        .strip_prefix("bytes ")
        .and_then(|r| r.trim().split_once('/'))
    else {
        return false;
    };
    let total_ok = total == "*" || total.parse::<u64>() == Ok(size);
    let Some((a, b)) = range.split_once('-') else {
        return false;
    };
    total_ok && a.parse::<u64>() == Ok(start) && b.parse::<u64>() == Ok(end.saturating_sub(1))
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn serves(&self, repo: &RepoName) -> bool {
        self.route(repo).is_some()
    }

    fn mirror_only(&self, repo: &RepoName) -> bool {
        self.route(repo)
            .is_some_and(|(route, _)| route.namespace.is_some())
    }

    fn local_name(&self, ns: &str, repo: &RepoName) -> Option<RepoName> {
        // Always under the namespace, routed or not: a namespace without a route must not
        // be answered from the default upstream or the node's own repositories (quay.io's
        // x/y is not Docker Hub's x/y).
        format!("{}/{repo}", local_prefix(ns)).parse().ok()
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<UpstreamManifest>, UpstreamError> {
        let Some((route, name)) = self.route(repo) else {
            return Ok(None);
        };
        let url = format!("{}/v2/{name}/manifests/{reference}", route.url);
        let resp = self.get(&url, Some(MANIFEST_TYPES)).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            s if !s.is_success() => {
                return Err(UpstreamError(format!("answered {s} for {url}")));
            }
            _ => {}
        }
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        // Manifests are small (the parser refuses more than 4 MiB).
        let bytes = resp.bytes().await.map_err(unreachable)?;
        Ok(Some(UpstreamManifest { bytes, media_type }))
    }

    async fn blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<UpstreamBlob>, UpstreamError> {
        let Some((route, name)) = self.route(repo) else {
            return Ok(None);
        };
        let url = format!("{}/v2/{name}/blobs/{digest}", route.url);
        let resp = self.get(&url, None).await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if !s.is_success() => Err(UpstreamError(format!("answered {s} for {url}"))),
            _ => {
                let size = resp.content_length();
                let body: ByteStream = Box::pin(resp.bytes_stream().map_err(io::Error::other));
                Ok(Some(UpstreamBlob::Stream { size, body }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(specs: &[&str]) -> HttpUpstream {
        HttpUpstream::new(specs.iter().map(|s| s.parse().expect("route")).collect())
    }

    fn name(s: &str) -> RepoName {
        s.parse().expect("name")
    }

    #[test]
    fn a_partial_answer_must_name_the_range_asked_for() {
        assert!(content_range_matches("bytes 0-99/1000", 0, 100, 1000));
        assert!(content_range_matches("bytes 100-199/*", 100, 200, 1000));
        assert!(!content_range_matches("bytes 0-99/1000", 100, 200, 1000));
        assert!(!content_range_matches("bytes 100-198/1000", 100, 200, 1000));
        assert!(!content_range_matches("bytes 100-199/999", 100, 200, 1000));
        assert!(!content_range_matches("", 0, 100, 1000));
        assert!(!content_range_matches("items 0-99/1000", 0, 100, 1000));
        assert!(!content_range_matches("bytes 0-x/1000", 0, 100, 1000));
    }

    #[test]
    fn routes_parse_and_refuse_what_is_not_a_url() {
        let r: UpstreamRoute = "docker.io=https://registry-1.docker.io/"
            .parse()
            .expect("ns route");
        assert_eq!(r.namespace.as_deref(), Some("docker.io"));
        assert_eq!(r.url, "https://registry-1.docker.io");
        assert!("registry-1.docker.io".parse::<UpstreamRoute>().is_err());
        assert!("a/b=http://x".parse::<UpstreamRoute>().is_err());
        assert!("=http://x".parse::<UpstreamRoute>().is_err());
        // A password in the URL is refused without being repeated; an '@' in a path is not.
        let e = "https://u:hunter2@registry.example".parse::<UpstreamRoute>();
        assert!(e.is_err_and(|e| !e.contains("hunter2") && e.contains("--upstream-credentials")));
        assert!("http://x/a@b".parse::<UpstreamRoute>().is_ok());
    }

    #[test]
    fn namespaces_route_to_their_upstream_and_the_rest_to_the_default() {
        let u = routes(&["docker.io=https://hub", "http://default"]);
        let (r, upstream_name) = u.route(&name("docker.io/library/alpine")).expect("routed");
        assert_eq!(
            (r.url.as_str(), upstream_name.as_str()),
            ("https://hub", "library/alpine")
        );
        let (r, upstream_name) = u.route(&name("team/app")).expect("default");
        assert_eq!(
            (r.url.as_str(), upstream_name.as_str()),
            ("http://default", "team/app")
        );
        assert_eq!(
            u.local_name("docker.io", &name("library/alpine")),
            Some(name("docker.io/library/alpine"))
        );
        let unrouted = u.local_name("quay.io", &name("x/y")).expect("a name");
        assert_eq!(unrouted, name("quay.io/x/y"));
        assert!(
            u.route(&unrouted)
                .is_some_and(|(r, _)| r.url == "http://default"),
            "the default upstream serves quay.io/x/y under that full name, never as x/y"
        );
        let port = routes(&["127.0.0.1:5000=http://127.0.0.1:5000"]);
        let local = port
            .local_name("127.0.0.1:5000", &name("library/app"))
            .expect("routed");
        assert_eq!(local, name("127.0.0.1-5000/library/app"));
        let (_, upstream_name) = port.route(&local).expect("served");
        assert_eq!(upstream_name, "library/app");
        let only_ns = routes(&["docker.io=https://hub"]);
        assert!(
            !only_ns.serves(&name("team/app")),
            "without a default, others are local only"
        );
    }

    #[test]
    fn bearer_challenges_are_read() {
        let p = bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        )
        .expect("challenge");
        assert_eq!(
            p[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(p[2].1, "repository:library/alpine:pull");
        assert!(bearer_challenge("Basic realm=x").is_none());
        let p =
            bearer_challenge(r#"Bearer realm="https://a/token",scope="repository:x:pull,push""#)
                .expect("comma inside quotes");
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].1, "repository:x:pull,push");
    }
}
