//! Bearer tokens of the Docker/OCI token flow: JWTs whose `access` claim lists the
//! repositories and actions granted, signed by the node's own token endpoint or by an
//! external token server whose public key the node is given.
//!
//! Time is passed in (seconds since the Unix epoch): expiry and not-before are checked
//! here against it, not by the JWT library against the system clock.

use serde::{Deserialize, Serialize};

use crate::access::{Action, Actions, Scope};
use crate::AuthError;

pub use jsonwebtoken::Algorithm;

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// The claims of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: String,
    pub scopes: Vec<Scope>,
}

impl Grant {
    /// What the token allows on `repository`.
    pub fn allowed(&self, repository: &str) -> Actions {
        self.scopes
            .iter()
            .filter(|s| s.repository == repository)
            .fold(Actions::NONE, |acc, s| acc.union(s.actions))
    }

    pub fn allows(&self, repository: &str, action: Action) -> bool {
        self.allowed(repository).contains(action)
    }
}

/// Signs tokens (the node's own token endpoint).
pub struct Issuer {
    key: jsonwebtoken::EncodingKey,
    algorithm: Algorithm,
    pub issuer: String,
    pub service: String,
    /// Lifetime of a token, seconds.
    pub ttl: u64,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// An issuer signing with the ES256 private key `pem` (PKCS#8).
    pub fn es256(pem: &[u8], issuer: &str, service: &str, ttl: u64) -> Result<Issuer, AuthError> {
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem)
            .map_err(|e| AuthError::Key(format!("token signing key: {e}")))?;
        Ok(Issuer {
            key,
            algorithm: Algorithm::ES256,
            issuer: issuer.to_string(),
            service: service.to_string(),
            ttl,
        })
    }

    /// A token for `subject` granting `scopes`, issued at `now`; `jti` makes it unique.
    pub fn issue(
        &self,
        subject: &str,
        scopes: &[Scope],
        now: u64,
        jti: &str,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: self.service.clone(),
            exp: now + self.ttl,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: jti.to_string(),
            access: scopes
                .iter()
                .filter(|s| !s.actions.is_empty())
                .map(|s| Access {
                    kind: "repository".into(),
                    name: s.repository.clone(),
                    actions: s.actions.iter().map(|a| a.as_str().to_string()).collect(),
                })
                .collect(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(self.algorithm),
            &claims,
            &self.key,
        )
        .map_err(|e| AuthError::Key(format!("signing a token: {e}")))
    }
}

/// Checks tokens against the public keys of their issuers.
pub struct Verifier {
    keys: Vec<(Algorithm, jsonwebtoken::DecodingKey)>,
    issuers: Vec<String>,
    service: String,
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    pub leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("issuers", &self.issuers)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// Why a token is refused (the message goes to logs; the client reads 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature does not verify")]
    Invalid,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYet,
    #[error("the token is for another service or issuer")]
    WrongAudience,
}

impl Verifier {
    pub fn new(service: &str) -> Verifier {
        Verifier {
            keys: Vec::new(),
            issuers: Vec::new(),
            service: service.to_string(),
            leeway: 30,
        }
    }

    /// Trusts tokens of `issuer` signed by the key whose public half is `pem` (SPKI, an
    /// EC P-256 key for ES256, RSA for RS256).
    pub fn trust(
        &mut self,
        issuer: &str,
        algorithm: Algorithm,
        pem: &[u8],
    ) -> Result<(), AuthError> {
        let key = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => jsonwebtoken::DecodingKey::from_ec_pem(pem),
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                jsonwebtoken::DecodingKey::from_rsa_pem(pem)
            }
            other => {
                return Err(AuthError::Key(format!(
                    "token algorithm {other:?}: ES256, ES384, RS256, RS384 or RS512"
                )))
            }
        }
        .map_err(|e| AuthError::Key(format!("token verification key: {e}")))?;
        self.keys.push((algorithm, key));
        if !self.issuers.iter().any(|i| i == issuer) {
            self.issuers.push(issuer.to_string());
        }
        Ok(())
    }

    /// What `token` grants at `now`, if one of the trusted keys signed it for this
    /// service.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let mut claims = None;
        for (algorithm, key) in self.keys.iter().filter(|(a, _)| *a == header.alg) {
            let mut v = jsonwebtoken::Validation::new(*algorithm);
            // Time and audience are checked below, against `now` and this service.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.validate_aud = false;
            v.required_spec_claims.clear();
            if let Ok(data) = jsonwebtoken::decode::<Claims>(token, key, &v) {
                claims = Some(data.claims);
                break;
            }
        }
        let claims = claims.ok_or(TokenError::Invalid)?;
        if claims.aud != self.service || !self.issuers.contains(&claims.iss) {
            return Err(TokenError::WrongAudience);
        }
        if now > claims.exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        if now.saturating_add(self.leeway) < claims.nbf {
            return Err(TokenError::NotYet);
        }
        let scopes = claims
            .access
            .iter()
            .filter(|a| a.kind == "repository")
            .map(|a| Scope {
                repository: a.name.clone(),
                actions: a.actions.iter().filter_map(|s| Action::parse(s)).collect(),
            })
            .collect();
        Ok(Grant {
            subject: claims.sub,
            scopes,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keypair() -> (String, String) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        (kp.serialize_pem(), kp.public_key_pem())
    }

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn a_token_grants_its_scopes_until_it_expires_and_nothing_else() {
        let (private, public) = keypair();
        let issuer = Issuer::es256(private.as_bytes(), "strata", "registry.test", 300).unwrap();
        let mut verifier = Verifier::new("registry.test");
        verifier
            .trust("strata", Algorithm::ES256, public.as_bytes())
            .unwrap();
        let now = 1_800_000_000;
        let token = issuer
            .issue(
                "alice",
                &[scope("repository:team/app:pull,push")],
                now,
                "j1",
            )
            .unwrap();
        let grant = verifier.verify(&token, now + 10).unwrap();
        assert_eq!(grant.subject, "alice");
        assert!(grant.allows("team/app", Action::Push));
        assert!(!grant.allows("team/app", Action::Delete));
        assert!(
            !grant.allows("team/other", Action::Pull),
            "one repository's token"
        );
        assert_eq!(
            verifier.verify(&token, now + 300 + 31),
            Err(TokenError::Expired)
        );
        assert_eq!(verifier.verify(&token, now - 100), Err(TokenError::NotYet));
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let (private, public) = keypair();
        let (other_private, _) = keypair();
        let issuer = Issuer::es256(private.as_bytes(), "strata", "registry.test", 300).unwrap();
        let forger =
            Issuer::es256(other_private.as_bytes(), "strata", "registry.test", 300).unwrap();
        let elsewhere = Issuer::es256(private.as_bytes(), "strata", "other.service", 300).unwrap();
        let mut verifier = Verifier::new("registry.test");
        verifier
            .trust("strata", Algorithm::ES256, public.as_bytes())
            .unwrap();
        let now = 1_800_000_000;
        let scopes = [scope("repository:a:pull")];
        let forged = forger.issue("mallory", &scopes, now, "f").unwrap();
        assert_eq!(verifier.verify(&forged, now), Err(TokenError::Invalid));
        let foreign = elsewhere.issue("alice", &scopes, now, "e").unwrap();
        assert_eq!(
            verifier.verify(&foreign, now),
            Err(TokenError::WrongAudience)
        );
        // Claims changed after signing: the signature no longer holds.
        let good = issuer.issue("alice", &scopes, now, "g").unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Claims = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims.access[0].name = "b".into();
        let altered = format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&claims).unwrap()),
            parts[2]
        );
        assert_eq!(verifier.verify(&altered, now), Err(TokenError::Invalid));
        // An unsigned token ("alg": "none") and plain garbage.
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(verifier.verify(&none, now), Err(TokenError::Invalid));
        for junk in ["", "a.b.c", "not a token", "...."] {
            assert_eq!(
                verifier.verify(junk, now),
                Err(TokenError::Invalid),
                "{junk:?}"
            );
        }
        assert!(verifier.verify(&good, now).is_ok());
    }
}
