//! Credentials for upstream registries, in the format every registry client already writes:
//! Docker's `config.json` (`{"auths": {"HOST": {"auth": base64("USER:PASSWORD")}}}`, or
//! `username` and `password` fields), which `docker login`, `podman login --authfile`,
//! `skopeo login` and Kubernetes' `kubernetes.io/dockerconfigjson` secrets hold.
//!
//! They come from a file that others cannot read (mode 0600 or stricter) or from the
//! environment. A password never appears in logs, metrics or errors: [`Login`]'s `Debug`
//! shows the user name only, and parse errors give a position, never the text.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("upstream credentials {path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("upstream credentials from {from}: {why}")]
    Format { from: String, why: String },
}

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    password: String,
}

impl Login {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Login {
        Login {
            username: username.into(),
            password: password.into(),
        }
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Logins by registry host (`host` or `host:port`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    by_host: HashMap<String, Login>,
}

#[derive(serde::Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The host (and port) a `config.json` key or an upstream URL names, lowercased; Docker
/// Hub's names (`docker.io`, `index.docker.io`, `https://index.docker.io/v1/`) are all
/// `registry-1.docker.io`, the host its registry API answers on.
fn host_key(name: &str) -> String {
    let rest = name
        .trim()
        .strip_prefix("https://")
        .or_else(|| name.trim().strip_prefix("http://"))
        .unwrap_or(name.trim());
    let host = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry.hub.docker.com" => {
            "registry-1.docker.io".to_string()
        }
        _ => host,
    }
}

impl Credentials {
    /// No logins: every upstream is asked anonymously.
    pub fn none() -> Credentials {
        Credentials::default()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// The hosts that have a login, sorted (safe to log).
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = self.by_host.keys().map(String::as_str).collect();
        hosts.sort_unstable();
        hosts
    }

    /// Adds (or replaces) the login for `host`.
    pub fn insert(&mut self, host: &str, login: Login) {
        self.by_host.insert(host_key(host), login);
    }

    /// Reads a `config.json` file, which must not be readable by group or others.
    pub fn from_file(path: &Path) -> Result<Credentials, CredentialsError> {
        let err = |why: String| CredentialsError::File {
            path: path.to_path_buf(),
            why,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| err(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "is readable by others (mode {:o}): chmod 600 it",
                    mode & 0o777
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Credentials::from_json(&text, &path.display().to_string())
    }

    /// Reads `config.json` text; `from` names where it came from in errors.
    pub fn from_json(text: &str, from: &str) -> Result<Credentials, CredentialsError> {
        let err = |why: String| CredentialsError::Format {
            from: from.to_string(),
            why,
        };
        // serde_json's messages can quote the text (a password among it): say where only.
        let config: ConfigJson = serde_json::from_str(text).map_err(|e| {
            err(format!(
                "not a config.json with \"auths\" (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let mut out = Credentials::default();
        for (name, entry) in config.auths {
            let login = match (entry.username, entry.password, entry.auth) {
                (Some(u), Some(p), _) if !u.is_empty() => Login::new(u, p),
                (_, _, Some(auth)) if !auth.is_empty() => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| err(format!("the auth of {name:?} is not base64 text")))?;
                    let (u, p) = decoded.split_once(':').ok_or_else(|| {
                        err(format!("the auth of {name:?} is not \"user:password\""))
                    })?;
                    Login::new(u, p)
                }
                _ => {
                    return Err(err(format!(
                        "{name:?} has neither \"auth\" nor \"username\" and \"password\""
                    )))
                }
            };
            out.insert(&name, login);
        }
        Ok(out)
    }

    /// The login for the registry at `url` (`http[s]://host[:port]/...`), if any.
    pub fn for_url(&self, url: &str) -> Option<&Login> {
        self.by_host.get(&host_key(url))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &str = "pa:ss-w0rd";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn logins_are_read_from_auth_or_username_and_password_and_found_by_host() {
        let text = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "registry.example:5000": {{"username": "bob", "password": "{SECRET}"}},
                "Quay.IO": {{"auth": "{}", "email": "ignored@example"}}
            }}, "credsStore": "ignored"}}"#,
            b64(&format!("alice:{SECRET}")),
            b64("carol:x")
        );
        let c = Credentials::from_json(&text, "test").unwrap();
        assert_eq!(
            c.hosts(),
            ["quay.io", "registry-1.docker.io", "registry.example:5000"]
        );
        let hub = c.for_url("https://registry-1.docker.io").unwrap();
        assert_eq!((hub.username.as_str(), hub.password()), ("alice", SECRET));
        let own = c.for_url("http://registry.example:5000/v2/x").unwrap();
        assert_eq!((own.username.as_str(), own.password()), ("bob", SECRET));
        assert_eq!(c.for_url("https://quay.io").unwrap().username, "carol");
        assert!(
            c.for_url("http://registry.example").is_none(),
            "another port"
        );
        assert!(c.for_url("https://ghcr.io").is_none());
    }

    #[test]
    fn a_password_is_never_printed() {
        let login = Login::new("alice", SECRET);
        assert!(!format!("{login:?}").contains(SECRET));
        let mut c = Credentials::none();
        c.insert("docker.io", login);
        assert!(!format!("{c:?}").contains(SECRET));
        // Broken JSON and broken entries name the place, not the text around it.
        for text in [
            format!(r#"{{"auths": {{"h": {{"auth": {SECRET}}}}}}}"#),
            format!(r#"{{"auths": {{"h": {{"auth": "{SECRET}"}}}}}}"#),
            format!(
                r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#,
                b64("no-colon-here")
            ),
            format!(r#"{{"auths": {{"h": {{"password": "{SECRET}"}}}}}}"#),
            format!(r#"{{"auths": ["{SECRET}"]}}"#),
        ] {
            let e = Credentials::from_json(&text, "test")
                .unwrap_err()
                .to_string();
            assert!(!e.contains(SECRET) && !e.contains("no-colon"), "{e}");
            assert!(e.starts_with("upstream credentials from test: "), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let text = format!(r#"{{"auths": {{"h:1": {{"auth": "{}"}}}}}}"#, b64("u:p"));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Credentials::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Credentials::from_file(&path).unwrap();
        assert_eq!(c.for_url("http://h:1").unwrap().username, "u");
    }
}
