//! Pure OCI Distribution types shared by every strata crate.
//!
//! Nothing here knows about HTTP frameworks, and only `layout` touches the filesystem (to
//! read OCI image layouts): digests and their hashers, repository names, tags and
//! references validated by the spec's grammar, manifest parsing (the facts a registry needs
//! from a manifest), the spec's error codes and their JSON envelope, and the parsing of
//! `/v2/...` request paths into routes.

pub mod digest;
pub mod error;
pub mod layout;
pub mod manifest;
pub mod name;
pub mod route;

pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use error::{ErrorCode, ErrorEnvelope};
pub use layout::{Layout, LayoutError, LayoutImage};
pub use manifest::{Descriptor, ManifestError, ParsedManifest};
pub use name::{NameError, Reference, RepoName, Tag};
pub use route::{Route, RouteError};
