//! A node's outside world: the upstream registries it mirrors ([`upstream`]) and the peers
//! of its site ([`p2p`]: who they are and whether they live; [`site`]: blobs assembled from
//! them piece by piece, each piece crossing the uplink once; [`partial`]: the blobs being
//! assembled). Everything here does I/O; the
//! decisions it carries out live in the pure crate `strata-edge`. Nothing here is visible
//! to `strata-registry` or `strata-store` but through their traits (`Upstream`,
//! `BlobSource`).

pub mod containerd;
pub mod credentials;
pub mod p2p;
pub mod partial;
pub mod preheat;
pub mod sign;
pub mod site;
pub mod upstream;

pub use credentials::{Credentials, CredentialsError, Login};
pub use libp2p::Multiaddr;
pub use p2p::{join, read_psk, Peers, SiteConfig, SiteError};
pub use site::Site;
pub use strata_edge::Labels;
pub use upstream::{HttpUpstream, UpstreamRoute};
