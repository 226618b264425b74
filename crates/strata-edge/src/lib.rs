//! The decisions of an edge site, as pure code: no I/O, no clock of its own, no randomness
//! but what the caller seeds (sans-IO, as quinn-proto is). The node feeds it what it hears
//! (peers seen, pieces arriving, sources failing) with the time it heard it, and carries out
//! what it answers; a simulator feeds it the same events at hundreds of nodes and runs the
//! very same decisions.
//!
//! - [`membership`]: who is alive (liveness from what was heard, not from record expiry)
//!   and where each node sits (site, zone, rack labels);
//! - [`pieces`]: a blob cut into pieces, and for each piece the one live node responsible
//!   for fetching it from the upstream (rendezvous hashing over the live membership: every
//!   node computes the same answer with no coordinator, and a node that leaves moves only
//!   its own pieces);
//! - [`choose`]: which source serves a piece: nearest first (rack, zone, site), then least
//!   loaded, never over a per-peer limit, never an excluded peer;
//! - [`schedule`]: one blob's fetch: which piece to ask of whom next, what a failure or a
//!   digest mismatch changes, and which peer a cross-check convicts;
//! - [`replicas`]: which nodes keep a copy of an image (on demand, a fixed number by
//!   rendezvous over the live membership, or every node);
//! - [`cache`]: which mirrored blobs leave a bounded cache (least recently pulled, or first
//!   in first out).

pub mod cache;
pub mod choose;
pub mod membership;
pub mod pieces;
pub mod replicas;
pub mod schedule;

pub use cache::{victims, CacheEntry, EvictionPolicy, FirstInFirstOut, LeastRecentlyPulled};
pub use choose::{choose, Candidate, Choice};
pub use membership::{Labels, Membership, NodeId, Proximity};
pub use pieces::{piece_count, piece_range, piece_size_for, responsible, upstream_streams};
pub use replicas::{keepers, keeps, Replicas};
pub use schedule::{Action, PieceState, Schedule, Source};
