//! Which peer serves a piece: nearest first, then least loaded, within a per-peer limit.

use std::collections::BTreeSet;

use crate::membership::{NodeId, Proximity};

/// A peer that holds a piece, as the asking node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub proximity: Proximity,
    /// Requests this node has in flight to it.
    pub in_flight: usize,
}

/// What [`choose`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Peer(NodeId),
    /// Holders exist but each is at the per-peer limit: ask again when a request ends.
    Busy,
    /// No usable holder (none, or all excluded).
    Nobody,
}

/// The nearest holder not in `excluded` with fewer than `per_peer_limit` requests in flight
/// (then the least loaded, then by id, so the choice is deterministic).
pub fn choose(
    candidates: &[Candidate],
    excluded: &BTreeSet<NodeId>,
    per_peer_limit: usize,
) -> Choice {
    let usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !excluded.contains(&c.id))
        .collect();
    if usable.is_empty() {
        return Choice::Nobody;
    }
    usable
        .into_iter()
        .filter(|c| c.in_flight < per_peer_limit)
        .min_by(|a, b| (a.proximity, a.in_flight, &a.id).cmp(&(b.proximity, b.in_flight, &b.id)))
        .map_or(Choice::Busy, |c| Choice::Peer(c.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, proximity: Proximity, in_flight: usize) -> Candidate {
        Candidate {
            id: id.into(),
            proximity,
            in_flight,
        }
    }

    #[test]
    fn nearest_first_then_least_loaded_within_the_limit() {
        let none = BTreeSet::new();
        let cands = [
            c("far", Proximity::SameSite, 0),
            c("rack-busy", Proximity::SameRack, 3),
            c("rack-idle", Proximity::SameRack, 1),
            c("zone", Proximity::SameZone, 0),
        ];
        assert_eq!(choose(&cands, &none, 4), Choice::Peer("rack-idle".into()));
        assert_eq!(
            choose(&cands, &none, 1),
            Choice::Peer("zone".into()),
            "rack peers at the limit: the next nearest"
        );
        let full = [
            c("a", Proximity::SameRack, 2),
            c("b", Proximity::SameZone, 2),
        ];
        assert_eq!(choose(&full, &none, 2), Choice::Busy);
        assert_eq!(choose(&[], &none, 2), Choice::Nobody);
    }

    #[test]
    fn an_excluded_peer_is_never_chosen() {
        let liar: BTreeSet<NodeId> = [NodeId::from("liar")].into();
        let cands = [
            c("liar", Proximity::SameRack, 0),
            c("honest", Proximity::SameSite, 5),
        ];
        assert_eq!(choose(&cands, &liar, 8), Choice::Peer("honest".into()));
        assert_eq!(choose(&cands[..1], &liar, 8), Choice::Nobody);
    }
}
