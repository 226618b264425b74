//! Repository names, tags and manifest references, validated by the distribution spec's grammar.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// Longest repository name accepted (the spec lets registries cap it; 255 is what clients assume).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag the spec's grammar allows.
pub const MAX_TAG_LEN: usize = 128;

/// Why a name, tag or reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name {0:?}")]
    InvalidName(String),
    #[error("repository name longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    #[error("invalid tag {0:?}")]
    InvalidTag(String),
    #[error("invalid reference {0:?}")]
    InvalidReference(String),
}

/// A repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or a run of `-`.
fn valid_component(c: &[u8]) -> bool {
    let mut i = 0;
    loop {
        let start = i;
        while i < c.len() && is_lower_alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == c.len() {
            return true;
        }
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if c.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while c.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong);
        }
        if s.split('/').all(|c| valid_component(c.as_bytes())) {
            Ok(RepoName(s.to_string()))
        } else {
            Err(NameError::InvalidName(s.to_string()))
        }
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for RepoName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RepoName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        let rest_ok = b[1.min(b.len())..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if first_ok && rest_ok && b.len() <= MAX_TAG_LEN {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::InvalidTag(s.to_string()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse()
                .map(Reference::Digest)
                .map_err(|_| NameError::InvalidReference(s.to_string()))
        } else {
            s.parse()
                .map(Reference::Tag)
                .map_err(|_| NameError::InvalidReference(s.to_string()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for ok in [
            "a",
            "library/alpine",
            "my-org/my--image",
            "a.b_c__d",
            "foo/bar/baz0/9",
            "x---y",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "", "Upper", "a/../b", "..", "a//b", "/a", "a/", "a___b", "a..b", "-a", "a-", "a_",
            "a b", "a/.b",
        ] {
            assert!(
                bad.parse::<RepoName>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(long.parse::<RepoName>(), Err(NameError::NameTooLong));
    }

    #[test]
    fn validates_tags() {
        for ok in ["latest", "v1.0.0-rc_1", "_x", "A"] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok:?}");
        }
        let too_long = "a".repeat(MAX_TAG_LEN + 1);
        for bad in ["", ".x", "-x", "a/b", "a:b", too_long.as_str()] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?}");
        }
        assert!("a".repeat(MAX_TAG_LEN).parse::<Tag>().is_ok());
    }

    #[test]
    fn parses_references() {
        assert!(matches!("latest".parse(), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(d.parse(), Ok(Reference::Digest(_))));
        assert!("sha256:zz".parse::<Reference>().is_err());
    }
}
