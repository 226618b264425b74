//! Requests between the nodes of a site, signed with a key derived from the site's key.
//!
//! A site with a key (`--site-key`) serves its peers' endpoints (`/strata/v1/site/...`) to
//! its members only: every request a node sends a peer carries `x-strata-site:
//! NODE.TIME.MAC`, an HMAC-SHA256 over the method, the path with its query, the time, the
//! sender and the body's SHA-256, keyed with SHA-256 of a label and the site key (never the
//! libp2p key itself). A peer takes it within [`MAX_SKEW`] of its own clock. Over plain
//! HTTP the bytes are visible and one request can be replayed within that window unchanged
//! (to read what was already seen); the node's TLS keeps the bytes private.
//!
//! The members of a site trust each other: each node checks its own clients (sign-in,
//! permissions) before it asks its peers, so a private image reaches a caller only through
//! a node that checked that caller.

use std::sync::Arc;
use std::time::Duration;

use ring::hmac;
use sha2::{Digest as _, Sha256};

/// The header that carries a signature.
pub const HEADER: &str = "x-strata-site";
/// How far a signature's time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(120);
const LABEL: &[u8] = b"strata site http v1\0";

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no site signature")]
    Missing,
    #[error("malformed site signature")]
    Malformed,
    #[error("site signature {0} s away from this node's clock")]
    Skewed(u64),
    #[error("site signature does not match: a different site key")]
    Mismatch,
}

/// Signs and checks the requests of one site.
pub struct SiteKey {
    key: hmac::Key,
}

impl std::fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteKey(..)")
    }
}

impl SiteKey {
    /// The key of a site whose libp2p key has this text (its file's contents, normalized).
    pub fn derive(site_key_text: &str) -> SiteKey {
        let mut h = Sha256::new();
        h.update(LABEL);
        h.update(site_key_text.trim().as_bytes());
        SiteKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, &h.finalize()),
        }
    }

    /// What a signature covers: each field length-prefixed, then the body's SHA-256.
    fn message(method: &str, path_and_query: &str, time: u64, node: &str, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(path_and_query.len() + 128);
        for part in [
            method.as_bytes(),
            path_and_query.as_bytes(),
            time.to_string().as_bytes(),
            node.as_bytes(),
        ] {
            m.extend_from_slice(&(part.len() as u64).to_be_bytes());
            m.extend_from_slice(part);
        }
        m.extend_from_slice(&Sha256::digest(body));
        m
    }

    /// The header value for a request `node` sends at `now` (Unix seconds).
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        node: &str,
        now: u64,
    ) -> String {
        let tag = hmac::sign(
            &self.key,
            &Self::message(method, path_and_query, now, node, body),
        );
        format!("{node}.{now}.{}", hex::encode(tag.as_ref()))
    }

    /// The sending node of a request whose header is `value`, if its signature holds at
    /// `now`.
    pub fn verify(
        &self,
        value: Option<&str>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: u64,
    ) -> Result<String, SignatureError> {
        let value = value.ok_or(SignatureError::Missing)?;
        let mut parts = value.rsplitn(3, '.');
        let (Some(mac), Some(time), Some(node)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SignatureError::Malformed);
        };
        let time: u64 = time.parse().map_err(|_| SignatureError::Malformed)?;
        let mac = hex::decode(mac).map_err(|_| SignatureError::Malformed)?;
        if node.is_empty() || node.len() > 128 {
            return Err(SignatureError::Malformed);
        }
        let skew = now.abs_diff(time);
        if skew > MAX_SKEW.as_secs() {
            return Err(SignatureError::Skewed(skew));
        }
        let message = Self::message(method, path_and_query, time, node, body);
        hmac::verify(&self.key, &message, &mac).map_err(|_| SignatureError::Mismatch)?;
        Ok(node.to_string())
    }
}

/// The HTTP client a node asks its peers with: every request signed when the site has a
/// key.
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    key: Option<Arc<SiteKey>>,
    me: String,
}

/// How a node reaches peers whose API speaks TLS.
#[derive(Debug, Clone, Default)]
pub struct PeerTls {
    /// CA certificates (PEM) that sign the peers' certificates, beside the system's roots.
    pub roots_pem: Option<Vec<u8>>,
    /// This node's certificate chain and key (PEM), shown to peers that ask for one
    /// (mutual TLS).
    pub identity_pem: Option<Vec<u8>>,
}

impl PeerClient {
    /// A client for the peers of a site: `key` signs its requests, `me` is this node's id.
    pub fn new(key: Option<Arc<SiteKey>>, me: &str, tls: &PeerTls) -> Result<PeerClient, String> {
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2));
        if let Some(pem) = &tls.roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("site CA certificates: {e}"))?;
            if roots.is_empty() {
                return Err("site CA file holds no certificate".into());
            }
            for root in roots {
                http = http.add_root_certificate(root);
            }
        }
        if let Some(pem) = &tls.identity_pem {
            http = http.identity(
                reqwest::Identity::from_pem(pem)
                    .map_err(|e| format!("this node's certificate for its peers: {e}"))?,
            );
        }
        let http = http.build().map_err(|e| format!("peer client: {e}"))?;
        Ok(PeerClient {
            http,
            key,
            me: me.to_string(),
        })
    }

    /// The site's key (`None`: an open site).
    pub fn key(&self) -> Option<Arc<SiteKey>> {
        self.key.clone()
    }

    pub fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.http.get(url)
    }

    pub fn head(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.http.head(url)
    }

    pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::RequestBuilder {
        self.http.post(url)
    }

    /// `req` with its signature (unchanged in an open site), ready to send.
    pub fn signed(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, String> {
        let (client, req) = req.build_split();
        let mut req = req.map_err(|e| e.to_string())?;
        if let Some(key) = &self.key {
            let url = req.url();
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            let body = req.body().and_then(|b| b.as_bytes()).unwrap_or_default();
            let value = key.sign(req.method().as_str(), &path, body, &self.me, unix_now());
            let value =
                reqwest::header::HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
            req.headers_mut().insert(HEADER, value);
        }
        Ok(reqwest::RequestBuilder::from_parts(client, req))
    }
}

/// Seconds since the Unix epoch by this node's clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_signature_holds_for_the_same_request_and_key_only() {
        let key = SiteKey::derive("/key/swarm/psk/1.0.0/\n/base16/\naa");
        let other = SiteKey::derive("/key/swarm/psk/1.0.0/\n/base16/\nbb");
        let path = "/strata/v1/site/pieces/sha256:ab?repo=a&size=3&piece=0";
        let sig = key.sign("GET", path, b"", "12D3KooWnode", NOW);
        assert_eq!(
            key.verify(Some(&sig), "GET", path, b"", NOW + 5)
                .expect("signed"),
            "12D3KooWnode"
        );
        assert_eq!(
            other.verify(Some(&sig), "GET", path, b"", NOW),
            Err(SignatureError::Mismatch)
        );
        let changed = "/strata/v1/site/pieces/sha256:ab?repo=b&size=3&piece=0";
        assert_eq!(
            key.verify(Some(&sig), "GET", changed, b"", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(Some(&sig), "HEAD", path, b"", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(Some(&sig), "GET", path, b"x", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(Some(&sig), "GET", path, b"", NOW + 121),
            Err(SignatureError::Skewed(121))
        );
        let forged_node = sig.replacen("12D3KooWnode", "12D3KooWother", 1);
        assert_eq!(
            key.verify(Some(&forged_node), "GET", path, b"", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            key.verify(None, "GET", path, b"", NOW),
            Err(SignatureError::Missing)
        );
        for bad in ["", "x", "a.b.c", "n.1.zz", ".1.00"] {
            assert_eq!(
                key.verify(Some(bad), "GET", path, b"", NOW),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }
}
