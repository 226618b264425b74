//! A node's outside world: the upstream registries it mirrors ([`upstream`]), and, as the
//! edge site is built (issue 15), the peers of its site. Everything here does I/O; the
//! decisions it carries out live in the pure crate `strata-edge`. Nothing here is visible
//! to `strata-registry` or `strata-store` but through their traits (`Upstream`,
//! `BlobSource`).

pub mod containerd;
pub mod p2p;
pub mod partial;
pub mod upstream;

pub use upstream::{HttpUpstream, UpstreamRoute};
