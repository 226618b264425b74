//! Users and their bcrypt password hashes from an htpasswd file (`htpasswd -B`), as the
//! CNCF registry reads them.
//!
//! bcrypt is slow on purpose (tens of milliseconds a check), and registry clients send
//! their basic credentials with every request: a check that succeeded is remembered for a
//! while under a salted digest of the user and password (never the password itself), so a
//! pull of many blobs costs one bcrypt. Callers run [`Users::check`] off the async runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::AuthError;

/// The users of an htpasswd file.
#[derive(Debug)]
pub struct Users {
    hashes: BTreeMap<String, String>,
    /// Salt of the remembered checks (random per process).
    salt: [u8; 32],
    remember: Duration,
    /// Salted digest of `user:password` → until when the check holds.
    checked: Mutex<HashMap<[u8; 32], Instant>>,
}

/// Most remembered checks at once.
const REMEMBERED: usize = 4096;

impl Users {
    /// Reads an htpasswd file's text; only bcrypt hashes (`$2a$`, `$2b$`, `$2y$`) are
    /// taken. Errors name the line, never the hash.
    pub fn parse(text: &str, salt: [u8; 32], remember: Duration) -> Result<Users, AuthError> {
        let mut hashes = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| AuthError::Users(format!("line {n}: not user:hash")))?;
            if user.is_empty() {
                return Err(AuthError::Users(format!("line {n}: an empty user name")));
            }
            if !["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
                return Err(AuthError::Users(format!(
                    "line {n} (user {user:?}): not a bcrypt hash (make it with htpasswd -B)"
                )));
            }
            if hashes.insert(user.to_string(), hash.to_string()).is_some() {
                return Err(AuthError::Users(format!("line {n}: user {user:?} again")));
            }
        }
        Ok(Users {
            hashes,
            salt,
            remember,
            checked: Mutex::new(HashMap::new()),
        })
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether `password` is `user`'s, at `now`. Blocking (bcrypt) unless remembered.
    pub fn check(&self, user: &str, password: &str, now: Instant) -> bool {
        let Some(hash) = self.hashes.get(user) else {
            // The same work for an unknown user as for a wrong password: the time taken
            // does not tell which users exist.
            let _ = bcrypt::verify(password, DUMMY_HASH);
            return false;
        };
        let key = self.key(user, password);
        {
            let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.get(&key).is_some_and(|until| now < *until) {
                return true;
            }
        }
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if checked.len() >= REMEMBERED {
            checked.retain(|_, until| now < *until);
            if checked.len() >= REMEMBERED {
                checked.clear();
            }
        }
        checked.insert(key, now + self.remember);
        true
    }
}

/// A well-formed bcrypt hash of cost 10, checked (its verdict ignored) for unknown users.
const DUMMY_HASH: &str = "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn users() -> Users {
        let alice = bcrypt::hash("wonderland", 4).unwrap();
        let bob = bcrypt::hash("builder", 4).unwrap();
        Users::parse(
            &format!("# users\nalice:{alice}\n\nbob:{bob}\n"),
            [7; 32],
            Duration::from_secs(60),
        )
        .unwrap()
    }

    #[test]
    fn passwords_are_checked_and_a_success_is_remembered_for_a_while() {
        let u = users();
        let t0 = Instant::now();
        assert_eq!(u.len(), 2);
        assert!(u.check("alice", "wonderland", t0));
        assert!(!u.check("alice", "wonderlanD", t0));
        assert!(
            !u.check("alice", "builder", t0),
            "bob's password is not alice's"
        );
        assert!(!u.check("carol", "wonderland", t0));
        assert!(!u.check("", "", t0));
        // Remembered: true again without bcrypt, and only for that pair.
        assert!(u.check("alice", "wonderland", t0 + Duration::from_secs(30)));
        assert!(u.check("alice", "wonderland", t0 + Duration::from_secs(90)));
        assert!(!u.check("bob", "wonderland", t0));
    }

    #[test]
    fn files_that_are_not_bcrypt_htpasswd_are_refused_without_showing_hashes() {
        for (text, says) in [
            ("alice", "not user:hash"),
            (":$2y$05$abc", "empty user"),
            (
                "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
                "not a bcrypt hash",
            ),
            ("alice:$apr1$x$y", "not a bcrypt hash"),
        ] {
            let e = Users::parse(text, [0; 32], Duration::ZERO)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(!e.contains("W6ph5") && !e.contains("$apr1"), "{e}");
        }
        let h = bcrypt::hash("x", 4).unwrap();
        let e = Users::parse(&format!("a:{h}\na:{h}"), [0; 32], Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("again"));
    }
}
