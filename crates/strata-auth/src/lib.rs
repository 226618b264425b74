//! Who may do what on a node, as pure code: no I/O and no clock of its own.
//!
//! - [`access`]: callers ([`Caller`]), the actions on a repository ([`Action`]), repository
//!   patterns and the rules that grant actions to users and groups ([`Policy`]), and the
//!   token scopes of the Docker/OCI token flow ([`Scope`]).
//! - [`htpasswd`]: users and bcrypt hashes of an htpasswd file ([`Users`]).
//! - [`token`]: bearer tokens of the token flow, issued ([`token::Issuer`]) and verified
//!   ([`token::Verifier`]) against `now` passed in.
//! - [`limiter`]: failed logins per client address, then a pause ([`FailedLogins`]).
//!
//! The HTTP layer authenticates a request into a [`Caller`], asks the [`Policy`] what that
//! caller may do on the repository the request names, and answers 401 or 403 itself; the
//! services below it receive the caller to filter what they list.

pub mod access;
pub mod htpasswd;
pub mod limiter;
pub mod token;

pub use access::{Action, Actions, Caller, Pattern, Policy, Rule, Scope};
pub use htpasswd::Users;
pub use limiter::FailedLogins;

/// A policy or scope that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("access policy: {0}")]
    Policy(String),
    #[error("scope {0:?}: {1}")]
    Scope(String, String),
    #[error("users file: {0}")]
    Users(String),
    #[error("{0}")]
    Key(String),
}
