//! Pure OCI Distribution types shared by every strata crate.
//!
//! Nothing here does I/O or knows about HTTP frameworks: digests and their hashers,
//! repository names, tags and references validated by the spec's grammar, manifest parsing
//! (the facts a registry needs from a manifest), the spec's error codes and their JSON
//! envelope, and the parsing of `/v2/...` request paths into routes.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod name;
pub mod route;

pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use error::{ErrorCode, ErrorEnvelope};
pub use manifest::{Descriptor, ManifestError, ParsedManifest};
pub use name::{NameError, Reference, RepoName, Tag};
pub use route::{Route, RouteError};
