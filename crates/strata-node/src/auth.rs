//! The node's authentication, read from its files: htpasswd users, the access policy,
//! the token signing key and the public keys of trusted token servers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strata_auth::token::{Algorithm, Issuer, Verifier};
use strata_auth::{Policy, Users};
use strata_registry::http::auth::{Auth, Tokens};

use crate::NodeError;

/// How the node authenticates callers (none of it set: every caller may do everything).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// htpasswd file of users and bcrypt hashes (`htpasswd -B`).
    pub htpasswd: Option<PathBuf>,
    /// Access policy (TOML: groups and rules); without it every signed-in user may do
    /// everything and anonymous callers nothing.
    pub policy: Option<PathBuf>,
    /// Anonymous callers may pull every repository.
    pub anonymous_pull: bool,
    /// Users who may call `/metrics` and `/strata/v1/...`.
    pub admins: Vec<String>,
    /// Where clients get tokens (the challenge's realm); with it, the node asks for tokens.
    pub token_realm: Option<String>,
    /// This registry's name in tokens.
    pub token_service: String,
    /// ES256 private key (PKCS#8 PEM) of the node's own token endpoint.
    pub token_key: Option<PathBuf>,
    /// Token servers trusted: issuer name and the PEM file of its public key.
    pub token_trust: Vec<(String, PathBuf)>,
}

impl AuthSettings {
    /// Whether the node authenticates at all.
    pub fn enabled(&self) -> bool {
        self.htpasswd.is_some()
            || self.policy.is_some()
            || self.token_realm.is_some()
            || self.token_key.is_some()
            || !self.token_trust.is_empty()
    }
}

/// How long a password check that succeeded is remembered (bcrypt is slow on purpose).
const REMEMBER_LOGIN: Duration = Duration::from_secs(300);
/// Lifetime of the node's own tokens, seconds.
const TOKEN_TTL: u64 = 300;

fn auth_error(path: &Path, why: impl std::fmt::Display) -> NodeError {
    NodeError::Auth(format!("{}: {why}", path.display()))
}

/// A secret's file: refused if others may read it.
fn read_private(path: &Path) -> Result<Vec<u8>, NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| auth_error(path, e))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(auth_error(
            path,
            format!("is open to others (mode {:o}): chmod 600 it", mode & 0o777),
        ));
    }
    std::fs::read(path).map_err(|e| auth_error(path, e))
}

fn read_text(path: &Path) -> Result<String, NodeError> {
    std::fs::read_to_string(path).map_err(|e| auth_error(path, e))
}

/// The node's [`Auth`] from `settings`; `None` when it authenticates nobody.
pub fn load(settings: &AuthSettings) -> Result<Option<Arc<Auth>>, NodeError> {
    if !settings.enabled() {
        if settings.anonymous_pull || !settings.admins.is_empty() {
            return Err(NodeError::Auth(
                "--anonymous-pull and --admin-users need users (--htpasswd) or tokens".into(),
            ));
        }
        return Ok(None);
    }
    let users = match &settings.htpasswd {
        Some(path) => {
            let text = String::from_utf8(read_private(path)?)
                .map_err(|_| auth_error(path, "not UTF-8 text"))?;
            let salt: [u8; 32] = rand::random();
            Some(Users::parse(&text, salt, REMEMBER_LOGIN).map_err(|e| auth_error(path, e))?)
        }
        None => None,
    };
    let mut policy = match &settings.policy {
        Some(path) => Policy::from_toml(&read_text(path)?).map_err(|e| auth_error(path, e))?,
        None => Policy::users_do_everything(),
    };
    if settings.anonymous_pull {
        policy = policy.with_anonymous_pull();
    }
    let tokens = match &settings.token_realm {
        None => {
            if settings.token_key.is_some() || !settings.token_trust.is_empty() {
                return Err(NodeError::Auth(
                    "token keys are given without --token-realm (where clients get tokens)".into(),
                ));
            }
            None
        }
        Some(realm) => {
            let service = settings.token_service.clone();
            let mut verifier = Verifier::new(&service);
            let issuer = match &settings.token_key {
                Some(path) => {
                    let pem = String::from_utf8(read_private(path)?)
                        .map_err(|_| auth_error(path, "not a PEM file"))?;
                    let public = rcgen::KeyPair::from_pem(&pem)
                        .map_err(|e| auth_error(path, format!("not an ES256 key: {e}")))?
                        .public_key_pem();
                    let issuer = Issuer::es256(pem.as_bytes(), "strata", &service, TOKEN_TTL)
                        .map_err(|e| auth_error(path, e))?;
                    verifier
                        .trust("strata", Algorithm::ES256, public.as_bytes())
                        .map_err(|e| auth_error(path, e))?;
                    Some(issuer)
                }
                None => None,
            };
            for (name, path) in &settings.token_trust {
                let pem = read_text(path)?;
                // An EC key signs ES256 tokens, an RSA key RS256 ones.
                verifier
                    .trust(name, Algorithm::ES256, pem.as_bytes())
                    .or_else(|_| verifier.trust(name, Algorithm::RS256, pem.as_bytes()))
                    .map_err(|e| auth_error(path, e))?;
            }
            if issuer.is_none() && settings.token_trust.is_empty() {
                return Err(NodeError::Auth(
                    "--token-realm needs a key: --token-key (the node issues tokens) or \
                     --token-trust (a token server's)"
                        .into(),
                ));
            }
            Some(Tokens {
                realm: realm.clone(),
                service,
                issuer,
                verifier,
            })
        }
    };
    if users.is_none() && tokens.is_none() {
        return Err(NodeError::Auth(
            "an access policy without users (--htpasswd) or tokens lets nobody in".into(),
        ));
    }
    let admins: BTreeSet<String> = settings.admins.iter().cloned().collect();
    tracing::info!(
        users = users.as_ref().map_or(0, Users::len),
        policy = ?settings.policy,
        anonymous_pull = settings.anonymous_pull,
        tokens = tokens.is_some(),
        admins = admins.len(),
        "authentication on"
    );
    Ok(Some(Arc::new(Auth::new(users, policy, tokens, admins))))
}
