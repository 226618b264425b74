//! Parsing of `/v2/...` request paths.
//!
//! Repository names contain slashes, so routes are recognised from the end of the path: the
//! last segments say what is addressed (`manifests/<ref>`, `blobs/<digest>`, `blobs/uploads/<id>`,
//! `tags/list`, `referrers/<digest>`) and everything before them is the repository name.

use crate::digest::{Digest, DigestError};
use crate::name::{NameError, Reference, RepoName};

/// An addressed resource of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

/// Why a path is not a valid API route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no such api endpoint")]
    NotFound,
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("invalid upload id {0:?}")]
    UploadId(String),
}

fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn name_of(segs: &[&str]) -> Result<RepoName, RouteError> {
    if segs.is_empty() {
        return Err(RouteError::NotFound);
    }
    Ok(segs.join("/").parse()?)
}

impl Route {
    /// Parse a request path (without query string).
    pub fn parse(path: &str) -> Result<Route, RouteError> {
        let rest = path.strip_prefix("/v2").ok_or(RouteError::NotFound)?;
        if rest.is_empty() || rest == "/" {
            return Ok(Route::Base);
        }
        let rest = rest.strip_prefix('/').ok_or(RouteError::NotFound)?;
        if rest == "_catalog" {
            return Ok(Route::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        if n < 2 {
            return Err(RouteError::NotFound);
        }
        let (last2, last) = (segs[n - 2], segs[n - 1]);
        if n >= 3 && segs[n - 3] == "blobs" && last2 == "uploads" {
            let name = name_of(&segs[..n - 3])?;
            return match last {
                "" => Ok(Route::UploadStart(name)),
                id if valid_upload_id(id) => Ok(Route::Upload(name, id.to_string())),
                id => Err(RouteError::UploadId(id.to_string())),
            };
        }
        match (last2, last) {
            ("tags", "list") => Ok(Route::Tags(name_of(&segs[..n - 2])?)),
            ("blobs", "uploads") => Ok(Route::UploadStart(name_of(&segs[..n - 2])?)),
            ("manifests", r) => {
                let name = name_of(&segs[..n - 2])?;
                Ok(Route::Manifest(name, r.parse()?))
            }
            ("blobs", d) => {
                let name = name_of(&segs[..n - 2])?;
                Ok(Route::Blob(name, d.parse()?))
            }
            ("referrers", d) => {
                let name = name_of(&segs[..n - 2])?;
                Ok(Route::Referrers(name, d.parse()?))
            }
            _ => Err(RouteError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dg() -> String {
        format!("sha256:{}", "0".repeat(64))
    }

    #[test]
    fn parses_every_route() {
        assert_eq!(Route::parse("/v2/"), Ok(Route::Base));
        assert_eq!(Route::parse("/v2"), Ok(Route::Base));
        assert_eq!(Route::parse("/v2/_catalog"), Ok(Route::Catalog));
        assert!(
            matches!(Route::parse("/v2/a/b/tags/list"), Ok(Route::Tags(n)) if n.as_str() == "a/b")
        );
        assert!(matches!(
            Route::parse("/v2/a/manifests/latest"),
            Ok(Route::Manifest(_, Reference::Tag(_)))
        ));
        assert!(matches!(
            Route::parse(&format!("/v2/a/manifests/{}", dg())),
            Ok(Route::Manifest(_, Reference::Digest(_)))
        ));
        assert!(matches!(
            Route::parse(&format!("/v2/a/blobs/{}", dg())),
            Ok(Route::Blob(..))
        ));
        assert!(matches!(
            Route::parse("/v2/a/blobs/uploads/"),
            Ok(Route::UploadStart(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/blobs/uploads"),
            Ok(Route::UploadStart(_))
        ));
        assert!(
            matches!(Route::parse("/v2/x/y/blobs/uploads/abc-123"), Ok(Route::Upload(n, id)) if n.as_str() == "x/y" && id == "abc-123")
        );
        assert!(matches!(
            Route::parse(&format!("/v2/a/referrers/{}", dg())),
            Ok(Route::Referrers(..))
        ));
    }

    #[test]
    fn names_may_contain_route_words() {
        let r = Route::parse("/v2/blobs/manifests/manifests/latest").expect("valid");
        assert!(matches!(r, Route::Manifest(n, _) if n.as_str() == "blobs/manifests"));
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(Route::parse("/v3/"), Err(RouteError::NotFound));
        assert_eq!(Route::parse("/v2/a"), Err(RouteError::NotFound));
        assert!(matches!(
            Route::parse("/v2/A/tags/list"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/../b/tags/list"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/blobs/sha256:00"),
            Err(RouteError::Digest(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/blobs/uploads/..%2f"),
            Err(RouteError::UploadId(_))
        ));
        assert!(matches!(
            Route::parse("/v2/a/manifests/-bad"),
            Err(RouteError::Name(_))
        ));
    }
}
