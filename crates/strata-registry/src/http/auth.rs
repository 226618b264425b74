//! Who sends a request, and whether it may: Basic credentials checked against the
//! htpasswd users, Bearer tokens from the node's own token endpoint or from a trusted token
//! server, and the access policy per repository. Answers 401 with a challenge (Basic, or
//! Bearer with the realm, service and scope a token needs), 403 DENIED when the caller is
//! known but not allowed, 429 after too many failed logins from one address.
//!
//! Layer rule: the handlers ask this module before they call a service; the decisions
//! (patterns, rules, scopes, token checks, the failure window) are `strata-auth`'s, pure.
//! Credentials never reach a log line or an error body: messages say what failed, not with
//! what.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use strata_auth::token::{Grant, Issuer, Verifier};
use strata_auth::{Action, Actions, Caller, FailedLogins, Policy, Scope, Users};
use strata_oci::ErrorCode;

use super::ApiError;

/// Failed logins from one address within [`FAILURE_WINDOW`] before it must wait.
pub const MAX_FAILURES: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses whose failures are tracked at once.
const TRACKED_ADDRESSES: usize = 65_536;

/// Bearer tokens: where clients get them and how they are checked.
#[derive(Debug)]
pub struct Tokens {
    /// The token endpoint clients are sent to (`WWW-Authenticate: Bearer realm=...`).
    pub realm: String,
    /// This registry's name in tokens (`aud`) and challenges.
    pub service: String,
    /// Signs the tokens of the node's own endpoint (`GET /strata/v1/token`), if it has one.
    pub issuer: Option<Issuer>,
    /// Checks tokens: the node's own issuer's key and any trusted token server's.
    pub verifier: Verifier,
}

/// How the node authenticates and authorizes requests.
#[derive(Debug)]
pub struct Auth {
    users: Option<Users>,
    policy: Policy,
    tokens: Option<Tokens>,
    admins: BTreeSet<String>,
    failures: Mutex<FailedLogins>,
}

/// The caller of a request, once its credentials are checked.
#[derive(Debug, Clone)]
pub enum Who {
    Anonymous,
    /// Signed in with a password.
    User(Caller),
    /// Presented a token: it alone says what the caller may do.
    Token(Grant),
}

/// What a request needs.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// `GET /v2/`: any caller the node would serve at all.
    Base,
    /// `_catalog`: listed are only the repositories the caller may use.
    Listing,
    Repo(&'a str, Action),
    /// `/metrics` and `/strata/v1/...`: an administrator.
    Admin,
}

impl Auth {
    pub fn new(
        users: Option<Users>,
        policy: Policy,
        tokens: Option<Tokens>,
        admins: BTreeSet<String>,
    ) -> Auth {
        Auth {
            users,
            policy,
            tokens,
            admins,
            failures: Mutex::new(FailedLogins::new(
                MAX_FAILURES,
                FAILURE_WINDOW,
                TRACKED_ADDRESSES,
            )),
        }
    }

    /// The challenge of a 401, naming the scope a token would need.
    fn challenge(&self, scope: Option<&Scope>) -> String {
        match &self.tokens {
            Some(t) => {
                let mut c = format!("Bearer realm=\"{}\",service=\"{}\"", t.realm, t.service);
                if let Some(s) = scope {
                    c.push_str(&format!(",scope=\"{s}\""));
                }
                c
            }
            None => "Basic realm=\"strata\"".to_string(),
        }
    }

    fn unauthorized(&self, message: &str, scope: Option<&Scope>) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, message)
            .with_header("www-authenticate", self.challenge(scope))
    }

    fn peer(headers_ext: Option<&ConnectInfo<SocketAddr>>) -> IpAddr {
        headers_ext.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
    }

    /// Checks `user`'s `password` (bcrypt off the runtime), counting failures per address.
    async fn login(
        self: &Arc<Self>,
        user: String,
        password: String,
        ip: IpAddr,
    ) -> Result<Caller, ApiError> {
        if let Some(wait) = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocked(ip, Instant::now())
        {
            tracing::warn!(%ip, "login refused: too many failed logins from this address");
            return Err(ApiError::new(
                ErrorCode::TooManyRequests,
                "too many failed logins: try again later",
            )
            .with_header("retry-after", wait.as_secs().max(1).to_string()));
        }
        let me = self.clone();
        let checked_user = user.clone();
        let ok = tokio::task::spawn_blocking(move || {
            me.users
                .as_ref()
                .is_some_and(|u| u.check(&checked_user, &password, Instant::now()))
        })
        .await
        .unwrap_or(false);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            failures.succeeded(ip);
            Ok(Caller::user(&user))
        } else {
            failures.failed(ip, Instant::now());
            tracing::info!(%ip, "login failed");
            Err(self.unauthorized("authentication failed", None))
        }
    }

    /// Who sent a request with these headers from `peer`.
    pub async fn authenticate(
        self: &Arc<Self>,
        headers: &HeaderMap,
        peer: Option<&ConnectInfo<SocketAddr>>,
    ) -> Result<Who, ApiError> {
        let Some(value) = headers.get("authorization") else {
            return Ok(Who::Anonymous);
        };
        let malformed = || self.unauthorized("malformed authorization header", None);
        let value = value.to_str().map_err(|_| malformed())?;
        let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| malformed())?;
            let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
            let (user, password) = decoded.split_once(':').ok_or_else(malformed)?;
            if self.users.is_none() {
                return Err(self.unauthorized("this node takes no passwords: use a token", None));
            }
            let caller = self
                .login(user.to_string(), password.to_string(), Self::peer(peer))
                .await?;
            return Ok(Who::User(caller));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let Some(tokens) = &self.tokens else {
                return Err(self.unauthorized("this node takes no tokens", None));
            };
            return match tokens.verifier.verify(rest, unix_now()) {
                Ok(grant) => Ok(Who::Token(grant)),
                Err(e) => {
                    tracing::info!(ip = %Self::peer(peer), reason = %e, "token refused");
                    Err(self.unauthorized(&format!("invalid token: {e}"), None))
                }
            };
        }
        Err(malformed())
    }

    /// What `who` may do on `repo`.
    pub fn allowed(&self, who: &Who, repo: &str) -> Actions {
        match who {
            Who::Anonymous => self.policy.allowed(&Caller::Anonymous, repo),
            Who::User(c) => self.policy.allowed(c, repo),
            Who::Token(g) => g.allowed(repo),
        }
    }

    /// Whether `who` may do what a request needs; the error to answer if not.
    pub fn authorize(&self, who: &Who, need: Need<'_>) -> Result<(), ApiError> {
        let anonymous = matches!(who, Who::Anonymous);
        match need {
            Need::Base | Need::Listing => {
                if anonymous && !self.policy.anonymous_anywhere() {
                    return Err(self.unauthorized("authentication required", None));
                }
                Ok(())
            }
            Need::Repo(repo, action) => {
                if self.allowed(who, repo).contains(action) {
                    return Ok(());
                }
                let scope = Scope::needed(repo, action);
                if anonymous {
                    Err(self.unauthorized("authentication required", Some(&scope)))
                } else {
                    Err(ApiError::new(
                        ErrorCode::Denied,
                        format!("requested access to the resource is denied: {scope}"),
                    ))
                }
            }
            Need::Admin => match who {
                Who::User(c) if c.name().is_some_and(|n| self.admins.contains(n)) => Ok(()),
                Who::Anonymous => Err(self.unauthorized("authentication required", None)),
                _ => Err(ApiError::new(ErrorCode::Denied, "administrators only")),
            },
        }
    }

    /// `GET /strata/v1/token?service=S&scope=...`: a token granting, of the scopes asked
    /// for, what the caller may do.
    pub async fn token(
        self: &Arc<Self>,
        headers: &HeaderMap,
        query: Option<&str>,
        peer: Option<&ConnectInfo<SocketAddr>>,
    ) -> Response {
        match self.issue(headers, query, peer).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    /// `POST /strata/v1/token` (OAuth2, as containerd asks first): a form with
    /// `grant_type=password`, `username`, `password`, `service` and `scope`s.
    pub async fn token_form(
        self: &Arc<Self>,
        form: &[u8],
        peer: Option<&ConnectInfo<SocketAddr>>,
    ) -> Response {
        match self.issue_for_form(form, peer).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    async fn issue_for_form(
        self: &Arc<Self>,
        form: &[u8],
        peer: Option<&ConnectInfo<SocketAddr>>,
    ) -> Result<Response, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(form).map_err(|_| {
            ApiError::new(ErrorCode::Unsupported, "invalid form")
                .with_status(StatusCode::BAD_REQUEST)
        })?;
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match get("grant_type") {
            Some("password") => {}
            _ => {
                // RFC 6749 5.2: refresh tokens are not issued, so only passwords are taken.
                return Ok((
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    r#"{"error":"unsupported_grant_type"}"#,
                )
                    .into_response());
            }
        }
        let (Some(user), Some(password)) = (get("username"), get("password")) else {
            return Err(self.unauthorized("username and password required", None));
        };
        if self.users.is_none() {
            return Err(self.unauthorized("this node takes no passwords", None));
        }
        let caller = self
            .login(user.to_string(), password.to_string(), Self::peer(peer))
            .await?;
        let scopes: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect();
        self.grant(&Who::User(caller), get("service"), &scopes)
    }

    async fn issue(
        self: &Arc<Self>,
        headers: &HeaderMap,
        query: Option<&str>,
        peer: Option<&ConnectInfo<SocketAddr>>,
    ) -> Result<Response, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|_| {
                ApiError::new(ErrorCode::Unsupported, "invalid query string")
                    .with_status(StatusCode::BAD_REQUEST)
            })?;
        self.issuer()?;
        let who = match self.authenticate(headers, peer).await? {
            Who::Token(_) => {
                return Err(self.unauthorized("a token is not exchanged for another", None))
            }
            who => who,
        };
        let service = pairs
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.as_str());
        let scopes: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect();
        self.grant(&who, service, &scopes)
    }

    /// The node's own token issuer (404 when it issues none).
    fn issuer(&self) -> Result<(&Tokens, &Issuer), ApiError> {
        let none = || ApiError::unsupported().with_status(StatusCode::NOT_FOUND);
        let tokens = self.tokens.as_ref().ok_or_else(none)?;
        let issuer = tokens.issuer.as_ref().ok_or_else(none)?;
        Ok((tokens, issuer))
    }

    /// A token granting `who`, of the `scopes` asked for (each parameter may hold several,
    /// space separated), what the policy allows.
    fn grant(
        &self,
        who: &Who,
        service: Option<&str>,
        scopes: &[&str],
    ) -> Result<Response, ApiError> {
        let (tokens, issuer) = self.issuer()?;
        if let Some(s) = service {
            if s != tokens.service {
                return Err(ApiError::new(
                    ErrorCode::Denied,
                    format!("this endpoint issues tokens for {:?} only", tokens.service),
                ));
            }
        }
        let mut granted = Vec::new();
        for one in scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter(|x| !x.is_empty())
        {
            // Scopes other than repositories (e.g. the catalog's) are granted nothing.
            let Ok(scope) = Scope::parse(one) else {
                continue;
            };
            let actions = scope
                .actions
                .intersect(self.allowed(who, &scope.repository));
            granted.push(Scope {
                repository: scope.repository,
                actions,
            });
        }
        let subject = match who {
            Who::User(c) => c.name().unwrap_or_default().to_string(),
            _ => String::new(),
        };
        let now = unix_now();
        let token = issuer
            .issue(&subject, &granted, now, &uuid::Uuid::new_v4().to_string())
            .map_err(|e| ApiError::new(ErrorCode::Unsupported, e.to_string()))?;
        let scope: Vec<String> = granted
            .iter()
            .filter(|s| !s.actions.is_empty())
            .map(ToString::to_string)
            .collect();
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": issuer.ttl,
            "scope": scope.join(" "),
        });
        Ok((
            StatusCode::OK,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response())
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
