//! A blob cut into pieces, and who fetches each from the upstream.
//!
//! Rendezvous (highest random weight) hashing: each live node scores every piece with a
//! hash of (blob, piece, node) and the highest score is responsible for it. Every node with
//! the same view of the live membership computes the same owner, with no coordinator; a
//! piece's owner changes only when that owner dies (or a node with a higher score joins),
//! so a membership change moves about 1/N of the pieces.

use sha2::{Digest as _, Sha256};

use crate::membership::NodeId;

/// Pieces of a blob of `size` bytes, `piece_size` each (the last may be shorter). An empty
/// blob has none.
pub fn piece_count(size: u64, piece_size: u64) -> u64 {
    size.div_ceil(piece_size.max(1))
}

/// The piece size every node uses for a blob of `size` bytes: about 64 pieces (so a blob
/// spreads over the owners of a site), a power of two between 1 MiB and 16 MiB (small pieces
/// cost a request each; large ones delay the first byte). Every node derives the same size
/// from the blob's size alone.
pub fn piece_size_for(size: u64) -> u64 {
    const MIN: u64 = 1 << 20;
    const MAX: u64 = 16 << 20;
    (size / 64).next_power_of_two().clamp(MIN, MAX)
}

/// How many pieces one node fetches from the upstream at once when `live` nodes share the
/// uplink: about [`SITE_UPSTREAM_STREAMS`] for the whole site, at least one per node. Few
/// pieces in flight at a time each arrive fast, in blob order, so readers (clients, and
/// peers taking whole pieces) trail the uplink by a piece instead of waiting for a wave of
/// slow pieces; a site of one or two nodes still opens several streams.
pub fn upstream_streams(live: usize) -> usize {
    SITE_UPSTREAM_STREAMS.div_ceil(live.max(1))
}

/// Upstream streams a site opens at once, over all its nodes.
pub const SITE_UPSTREAM_STREAMS: usize = 4;

/// Byte range `start..end` of piece `index`.
pub fn piece_range(index: u64, size: u64, piece_size: u64) -> (u64, u64) {
    let start = index.saturating_mul(piece_size).min(size);
    (start, start.saturating_add(piece_size).min(size))
}

pub(crate) fn score(blob: &str, piece: u64, node: &NodeId) -> u64 {
    let mut h = Sha256::new();
    h.update(blob.as_bytes());
    h.update([0]);
    h.update(piece.to_le_bytes());
    h.update(node.as_str().as_bytes());
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    u64::from_be_bytes(first)
}

/// The node of `live` responsible for fetching piece `piece` of `blob` (its digest) from
/// the upstream; `None` if no node is live.
pub fn responsible<'a>(blob: &str, piece: u64, live: &'a [NodeId]) -> Option<&'a NodeId> {
    live.iter().max_by(|a, b| {
        score(blob, piece, a)
            .cmp(&score(blob, piece, b))
            .then(b.cmp(a))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| NodeId(format!("node-{i}"))).collect()
    }

    #[test]
    fn the_site_opens_a_few_upstream_streams_whatever_its_size() {
        assert_eq!(upstream_streams(0), 4);
        assert_eq!(upstream_streams(1), 4);
        assert_eq!(upstream_streams(2), 2);
        assert_eq!(upstream_streams(3), 2);
        assert_eq!(upstream_streams(4), 1);
        assert_eq!(upstream_streams(200), 1);
    }

    #[test]
    fn piece_sizes_stay_within_bounds() {
        assert_eq!(piece_size_for(0), 1 << 20);
        assert_eq!(piece_size_for(51 << 20), 1 << 20);
        assert_eq!(piece_size_for(256 << 20), 4 << 20);
        assert_eq!(piece_size_for(1 << 30), 16 << 20);
        assert_eq!(piece_size_for(1 << 40), 16 << 20);
    }

    #[test]
    fn pieces_cover_the_blob_exactly() {
        assert_eq!(piece_count(0, 4), 0);
        assert_eq!(piece_count(8, 4), 2);
        assert_eq!(piece_count(9, 4), 3);
        assert_eq!(piece_range(2, 9, 4), (8, 9));
        assert_eq!(piece_range(0, 9, 4), (0, 4));
        let covered: u64 = (0..piece_count(1001, 64))
            .map(|i| {
                let (a, b) = piece_range(i, 1001, 64);
                b - a
            })
            .sum();
        assert_eq!(covered, 1001);
    }

    #[test]
    fn every_node_agrees_and_the_pieces_spread_evenly() {
        let live = nodes(6);
        let mut counts = [0usize; 6];
        for p in 0..6000 {
            let owner = responsible("sha256:abc", p, &live).expect("live nodes");
            // The order a node lists its peers in does not matter.
            let mut reversed = live.clone();
            reversed.reverse();
            assert_eq!(responsible("sha256:abc", p, &reversed), Some(owner));
            counts[live.iter().position(|n| n == owner).expect("a member")] += 1;
        }
        for c in counts {
            assert!(
                (800..1200).contains(&c),
                "about 1000 pieces each: {counts:?}"
            );
        }
        assert_eq!(responsible("sha256:abc", 0, &[]), None);
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_pieces() {
        let live = nodes(5);
        let gone = live[2].clone();
        let rest: Vec<NodeId> = live.iter().filter(|n| **n != gone).cloned().collect();
        let mut moved = 0;
        for p in 0..2000 {
            let before = responsible("sha256:def", p, &live).cloned();
            let after = responsible("sha256:def", p, &rest).cloned();
            if before.as_ref() == Some(&gone) {
                moved += 1;
                assert_ne!(after.as_ref(), Some(&gone));
            } else {
                assert_eq!(before, after, "piece {p} moved though its owner stayed");
            }
        }
        assert!(moved > 0);
    }
}
