//! One blob's fetch, piece by piece: from which peer, or from the upstream, and what a
//! failure or a wrong blob changes.
//!
//! A piece some live peer holds comes from the nearest such peer (see [`crate::choose`]);
//! a piece nobody holds yet comes from the upstream only at the node responsible for it
//! ([`crate::responsible`]), and every other node asks that node for it (the owner fetches
//! it from the upstream once and serves everyone who asks), so each byte crosses the uplink
//! once. When the assembled blob does not match its digest, every
//! piece a peer supplied becomes a suspect and is fetched again from the upstream, the one
//! source the digest vouches for (a second peer could share the first one's bad copy, and
//! two peers that disagree cannot tell which of them lies); the caller compares the two
//! copies, and a peer whose copy differs is excluded from then on. With the upstream
//! unreachable a mismatch cannot be settled and the suspect pieces wait for it.
//!
//! Events are taken only for the request they answer: a reply that arrives after its
//! request was given up (and the piece asked of someone else) changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::choose::{choose, Candidate, Choice};
use crate::membership::NodeId;
use crate::pieces::{piece_count, responsible};

/// Where a piece comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Upstream,
    Peer(NodeId),
}

/// Where a piece stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceState {
    Missing,
    InFlight(Source),
    Have(Source),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Fetch {
        piece: u64,
        from: Source,
    },
    /// Nothing to start now: wait for a piece, the end of a request, or a peer to advertise
    /// a piece its owner fetched.
    Wait,
    /// Every piece is here: check the blob against its digest ([`Schedule::verified`] or
    /// [`Schedule::mismatch`]).
    Verify,
}

/// The fetch of one blob by one node.
#[derive(Debug, Clone)]
pub struct Schedule {
    me: NodeId,
    blob: String,
    pieces: Vec<PieceState>,
    per_peer_limit: usize,
    upstream_limit: usize,
    in_flight: BTreeMap<NodeId, usize>,
    upstream_in_flight: usize,
    /// Pieces asked of their owner while nobody held them: the owner fetches each from the
    /// upstream, so it is asked for no more at once than a node fetches from there, in
    /// piece order (readers stream a blob from its start).
    owner_asks: BTreeMap<u64, NodeId>,
    excluded: BTreeSet<NodeId>,
    /// Pieces being fetched again after a mismatch, with the peer whose copy is in doubt.
    suspects: BTreeMap<u64, NodeId>,
}

impl Schedule {
    /// The fetch by node `me` of `blob` (its digest) of `size` bytes in pieces of
    /// `piece_size`, asking any one peer for at most `per_peer_limit` pieces at once and
    /// the upstream for at most `upstream_limit`.
    pub fn new(
        me: NodeId,
        blob: &str,
        size: u64,
        piece_size: u64,
        per_peer_limit: usize,
        upstream_limit: usize,
    ) -> Self {
        let n = piece_count(size, piece_size) as usize;
        Schedule {
            me,
            blob: blob.to_string(),
            pieces: vec![PieceState::Missing; n],
            per_peer_limit: per_peer_limit.max(1),
            upstream_limit: upstream_limit.max(1),
            in_flight: BTreeMap::new(),
            upstream_in_flight: 0,
            owner_asks: BTreeMap::new(),
            excluded: BTreeSet::new(),
            suspects: BTreeMap::new(),
        }
    }

    /// Piece `piece` is already here (fetched earlier, e.g. by this node as its owner for
    /// another node): it is not fetched again.
    pub fn have(&mut self, piece: u64, from: Source) {
        if let Some(state) = self.pieces.get_mut(piece as usize) {
            if *state == PieceState::Missing {
                *state = PieceState::Have(from);
            }
        }
    }

    pub fn state(&self, piece: u64) -> Option<&PieceState> {
        self.pieces.get(piece as usize)
    }

    pub fn excluded(&self) -> &BTreeSet<NodeId> {
        &self.excluded
    }

    /// The next fetch to start. `live` is the live membership (this node included);
    /// `holders(piece)` the live peers that advertise the piece, as candidates (their
    /// in-flight counts are this schedule's own and need not be filled in).
    pub fn next(&mut self, live: &[NodeId], holders: impl Fn(u64) -> Vec<Candidate>) -> Action {
        if self.pieces.iter().all(|p| matches!(p, PieceState::Have(_))) {
            return Action::Verify;
        }
        for index in 0..self.pieces.len() {
            if self.pieces[index] != PieceState::Missing {
                continue;
            }
            let piece = index as u64;
            if self.suspects.contains_key(&piece) {
                if self.upstream_in_flight >= self.upstream_limit {
                    continue;
                }
                self.upstream_in_flight += 1;
                self.pieces[index] = PieceState::InFlight(Source::Upstream);
                return Action::Fetch {
                    piece,
                    from: Source::Upstream,
                };
            }
            let mut excluded = self.excluded.clone();
            excluded.insert(self.me.clone());
            let mut cands = holders(piece);
            for c in &mut cands {
                c.in_flight = self.in_flight.get(&c.id).copied().unwrap_or(0);
            }
            let from = match choose(&cands, &excluded, self.per_peer_limit) {
                Choice::Peer(id) => Source::Peer(id),
                Choice::Busy => continue,
                Choice::Nobody => {
                    // Only the piece's owner (or anyone, if no owner is live or the owner
                    // is excluded) goes upstream; everyone else asks the owner, which
                    // fetches the piece once for the whole site.
                    let owner = responsible(&self.blob, piece, live);
                    match owner {
                        Some(o) if *o != self.me && !self.excluded.contains(o) => {
                            let load = self.in_flight.get(o).copied().unwrap_or(0);
                            let asked = self.owner_asks.values().filter(|a| *a == o).count();
                            if load >= self.per_peer_limit || asked >= self.upstream_limit {
                                continue;
                            }
                            self.owner_asks.insert(piece, o.clone());
                            Source::Peer(o.clone())
                        }
                        _ if self.upstream_in_flight >= self.upstream_limit => continue,
                        _ => Source::Upstream,
                    }
                }
            };
            match &from {
                Source::Peer(id) => *self.in_flight.entry(id.clone()).or_default() += 1,
                Source::Upstream => self.upstream_in_flight += 1,
            }
            self.pieces[index] = PieceState::InFlight(from.clone());
            return Action::Fetch { piece, from };
        }
        Action::Wait
    }

    fn settle(&mut self, piece: u64, from: &Source) {
        self.owner_asks.remove(&piece);
        match from {
            Source::Peer(id) => {
                if let Some(n) = self.in_flight.get_mut(id) {
                    *n = n.saturating_sub(1);
                }
            }
            Source::Upstream => self.upstream_in_flight = self.upstream_in_flight.saturating_sub(1),
        }
    }

    /// `peer` is asked for nothing more in this fetch (it failed too often); pieces it owns
    /// are fetched from the upstream by this node.
    pub fn exclude(&mut self, peer: NodeId) {
        self.excluded.insert(peer);
    }

    /// Whether `piece` is being fetched from `from` (else an event about it is stale).
    pub fn awaited(&self, piece: u64, from: &Source) -> bool {
        matches!(self.pieces.get(piece as usize), Some(PieceState::InFlight(f)) if f == from)
    }

    /// Piece `piece` arrived whole from `from`. For a suspect piece (refetched from the
    /// upstream), `matches_first` says whether this copy equals the one the suspect peer
    /// sent; if not, that peer is excluded. Returns the peer convicted, if any. A reply to a
    /// request already given up is ignored.
    pub fn arrived(&mut self, piece: u64, from: &Source, matches_first: bool) -> Option<NodeId> {
        if !self.awaited(piece, from) {
            return None;
        }
        self.settle(piece, from);
        self.pieces[piece as usize] = PieceState::Have(from.clone());
        let suspect = self.suspects.remove(&piece)?;
        if matches_first {
            return None;
        }
        self.excluded.insert(suspect.clone());
        Some(suspect)
    }

    /// The fetch of `piece` from `from` failed (the source died, refused or timed out):
    /// the piece is asked of someone else.
    pub fn failed(&mut self, piece: u64, from: &Source) {
        if !self.awaited(piece, from) {
            return;
        }
        self.settle(piece, from);
        self.pieces[piece as usize] = PieceState::Missing;
    }

    /// The assembled blob does not match its digest: every piece a peer supplied is fetched
    /// again from another source. Returns those pieces; none means the upstream itself sent
    /// the wrong bytes and the fetch has failed.
    pub fn mismatch(&mut self) -> Vec<u64> {
        let mut again = Vec::new();
        for (index, state) in self.pieces.iter_mut().enumerate() {
            if let PieceState::Have(Source::Peer(id)) = state {
                self.suspects.insert(index as u64, id.clone());
                *state = PieceState::Missing;
                again.push(index as u64);
            }
        }
        again
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Proximity;
    use crate::pieces::responsible;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::from(*n)).collect()
    }

    fn holder(id: &str) -> Candidate {
        Candidate {
            id: id.into(),
            proximity: Proximity::SameSite,
            in_flight: 0,
        }
    }

    /// Starts every fetch `s` allows now.
    fn drain(
        s: &mut Schedule,
        live: &[NodeId],
        holders: impl Fn(u64) -> Vec<Candidate>,
    ) -> Vec<(u64, Source)> {
        let mut out = Vec::new();
        while let Action::Fetch { piece, from } = s.next(live, &holders) {
            out.push((piece, from));
        }
        out
    }

    #[test]
    fn on_a_cold_site_each_node_fetches_only_its_own_pieces_upstream_and_asks_the_owners() {
        let live = ids(&["a", "b", "c"]);
        let blob = "sha256:cold";
        let mut upstream_pieces = 0;
        for me in &live {
            let mut s = Schedule::new(me.clone(), blob, 64 * 10, 64, 100, 100);
            let started = drain(&mut s, &live, |_| Vec::new());
            assert_eq!(started.len(), 10, "every piece is asked of someone at once");
            for (piece, from) in &started {
                let owner = responsible(blob, *piece, &live).expect("an owner");
                match from {
                    Source::Upstream => {
                        assert_eq!(owner, me);
                        upstream_pieces += 1;
                    }
                    Source::Peer(p) => assert_eq!(p, owner, "a piece nobody holds: its owner"),
                }
            }
        }
        assert_eq!(
            upstream_pieces, 10,
            "every piece crosses the uplink exactly once"
        );
    }

    #[test]
    fn owners_are_asked_within_the_per_peer_limit() {
        let live = ids(&["a", "b"]);
        let mut s = Schedule::new("a".into(), "sha256:limit", 64 * 40, 64, 2, 100);
        let started = drain(&mut s, &live, |_| Vec::new());
        let to_b = started
            .iter()
            .filter(|(_, f)| *f == Source::Peer("b".into()))
            .count();
        assert_eq!(to_b, 2, "at most two requests to b at once");
    }

    #[test]
    fn an_owner_is_asked_for_its_pieces_in_order_as_fast_as_it_fetches_them_upstream() {
        let live = ids(&["a", "b"]);
        let blob = "sha256:order";
        let mut s = Schedule::new("a".into(), blob, 64 * 40, 64, 4, 1);
        let b: NodeId = "b".into();
        let owned_by_b: Vec<u64> = (0..40)
            .filter(|p| responsible(blob, *p, &live) == Some(&b))
            .collect();
        let to_b = |started: &[(u64, Source)]| -> Vec<u64> {
            started
                .iter()
                .filter(|(_, f)| *f == Source::Peer(b.clone()))
                .map(|(p, _)| *p)
                .collect()
        };
        let started = drain(&mut s, &live, |_| Vec::new());
        assert_eq!(
            to_b(&started),
            owned_by_b[..1],
            "one piece at a time, the first"
        );
        s.arrived(owned_by_b[0], &Source::Peer(b.clone()), true);
        let started = drain(&mut s, &live, |_| Vec::new());
        assert_eq!(to_b(&started), owned_by_b[1..2], "then the next one");
        s.failed(owned_by_b[1], &Source::Peer(b.clone()));
        let started = drain(&mut s, &live, |_| Vec::new());
        assert_eq!(
            to_b(&started),
            owned_by_b[1..2],
            "a failed one is asked again first"
        );
        // A piece b already holds is not limited by what b fetches upstream.
        let mut s = Schedule::new("a".into(), blob, 64 * 40, 64, 4, 1);
        let started = drain(&mut s, &live, |_| vec![holder("b")]);
        assert_eq!(
            to_b(&started).len(),
            4,
            "the per-peer limit for held pieces"
        );
    }

    #[test]
    fn pieces_held_by_peers_come_from_them_within_the_per_peer_limit() {
        let live = ids(&["me", "p"]);
        let mut s = Schedule::new("me".into(), "sha256:x", 10 * 4, 4, 2, 1);
        let started = drain(&mut s, &live, |_| vec![holder("p")]);
        assert_eq!(started.len(), 2, "at most two pieces from one peer at once");
        assert!(started.iter().all(|(_, f)| *f == Source::Peer("p".into())));
        s.arrived(started[0].0, &started[0].1, true);
        assert!(matches!(
            s.next(&live, |_| vec![holder("p")]),
            Action::Fetch { .. }
        ));
    }

    #[test]
    fn a_dead_owner_hands_its_pieces_to_the_next_node() {
        let blob = "sha256:owner";
        let all = ids(&["a", "b"]);
        let piece = (0..100)
            .find(|&p| responsible(blob, p, &all) == Some(&"b".into()))
            .expect("some piece is b's");
        let mut s = Schedule::new("a".into(), blob, 100 * 8, 8, 1000, 1000);
        let started = drain(&mut s, &all, |_| Vec::new());
        assert!(
            started.contains(&(piece, Source::Peer("b".into()))),
            "b's piece is asked of b"
        );
        s.failed(piece, &Source::Peer("b".into()));
        let started = drain(&mut s, &ids(&["a"]), |_| Vec::new());
        assert_eq!(
            started,
            vec![(piece, Source::Upstream)],
            "b is dead: a fetches it"
        );
    }

    #[test]
    fn an_excluded_owner_is_replaced_by_the_upstream() {
        let blob = "sha256:excl";
        let all = ids(&["a", "b"]);
        let piece = (0..100)
            .find(|&p| responsible(blob, p, &all) == Some(&"b".into()))
            .expect("some piece is b's");
        let mut s = Schedule::new("a".into(), blob, 100 * 8, 8, 1000, 1000);
        let started = drain(&mut s, &all, |_| Vec::new());
        assert!(started.contains(&(piece, Source::Peer("b".into()))));
        s.failed(piece, &Source::Peer("b".into()));
        s.exclude("b".into());
        let started = drain(&mut s, &all, |_| Vec::new());
        assert_eq!(
            started,
            vec![(piece, Source::Upstream)],
            "b is live but excluded"
        );
    }

    #[test]
    fn pieces_already_here_are_not_fetched_again() {
        let live = ids(&["a"]);
        let mut s = Schedule::new("a".into(), "sha256:h", 8 * 3, 8, 4, 4);
        s.have(1, Source::Upstream);
        let started = drain(&mut s, &live, |_| Vec::new());
        assert_eq!(
            started.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            vec![0, 2]
        );
    }

    #[test]
    fn a_failed_piece_is_asked_of_another_source() {
        let live = ids(&["me", "p", "q"]);
        let mut s = Schedule::new("me".into(), "sha256:f", 4, 4, 1, 1);
        let holders = |_| vec![holder("p"), holder("q")];
        let Action::Fetch { piece, from } = s.next(&live, holders) else {
            panic!("a fetch")
        };
        assert_eq!(from, Source::Peer("p".into()));
        s.failed(piece, &from);
        // The caller marks p dead in its membership, so p no longer advertises.
        let Action::Fetch { from, .. } = s.next(&live, |_| vec![holder("q")]) else {
            panic!("again")
        };
        assert_eq!(from, Source::Peer("q".into()));
        s.arrived(piece, &from, true);
        assert_eq!(s.next(&live, |_| Vec::new()), Action::Verify);
    }

    #[test]
    fn a_lying_peer_is_convicted_by_another_source_never_by_itself() {
        let live = ids(&["me", "liar", "honest"]);
        let mut s = Schedule::new("me".into(), "sha256:lie", 3 * 4, 4, 8, 8);
        let holders = |p: u64| {
            if p == 1 {
                vec![holder("liar")]
            } else {
                vec![holder("honest")]
            }
        };
        for (piece, from) in drain(&mut s, &live, holders) {
            s.arrived(piece, &from, true);
        }
        assert_eq!(s.next(&live, holders), Action::Verify);
        let again = s.mismatch();
        assert_eq!(
            again,
            vec![0, 1, 2],
            "every peer-supplied piece is in doubt"
        );
        // Refetched from the upstream, never from a peer (the liar would lie again, and a
        // second peer could hold the same bad copy).
        let refetch = drain(&mut s, &live, |_| vec![holder("liar"), holder("honest")]);
        assert_eq!(refetch.len(), 3);
        assert!(refetch.iter().all(|(_, from)| *from == Source::Upstream));
        // The upstream's copies of 0 and 2 agree with honest's; piece 1's differs from the
        // liar's: the liar is out, honest is not.
        let mut convicted = Vec::new();
        for (piece, from) in refetch {
            convicted.extend(s.arrived(piece, &from, piece != 1));
        }
        assert_eq!(convicted, vec![NodeId::from("liar")]);
        assert!(s.excluded().contains(&NodeId::from("liar")));
        assert_eq!(s.next(&live, holders), Action::Verify);
    }

    #[test]
    fn a_reply_to_a_request_given_up_changes_nothing() {
        let live = ids(&["me", "slow", "q"]);
        let mut s = Schedule::new("me".into(), "sha256:late", 4, 4, 1, 1);
        let Action::Fetch { piece, from } = s.next(&live, |_| vec![holder("slow")]) else {
            panic!("a fetch")
        };
        s.failed(piece, &from); // timed out
        let Action::Fetch { from: again, .. } = s.next(&live, |_| vec![holder("q")]) else {
            panic!("asked of q")
        };
        assert_eq!(again, Source::Peer("q".into()));
        // The slow peer's reply and a late failure report arrive: both ignored.
        assert_eq!(s.arrived(piece, &from, true), None);
        s.failed(piece, &from);
        assert_eq!(s.state(piece), Some(&PieceState::InFlight(again.clone())));
        assert_eq!(
            s.next(&live, |_| vec![holder("q")]),
            Action::Wait,
            "still awaited from q"
        );
        s.arrived(piece, &again, true);
        assert_eq!(s.next(&live, |_| Vec::new()), Action::Verify);
    }

    #[test]
    fn a_suspect_piece_nobody_else_holds_is_checked_against_the_upstream() {
        let live = ids(&["me", "p", "owner"]);
        let mut s = Schedule::new("me".into(), "sha256:u", 4, 4, 8, 8);
        let Action::Fetch { piece, from } = s.next(&live, |_| vec![holder("p")]) else {
            panic!()
        };
        s.arrived(piece, &from, true);
        s.mismatch();
        assert_eq!(
            s.next(&live, |_| vec![holder("p")]),
            Action::Fetch {
                piece: 0,
                from: Source::Upstream
            }
        );
        let mut upstream_only = Schedule::new("me".into(), "sha256:u", 4, 4, 8, 8);
        let Action::Fetch { piece, from } = upstream_only.next(&ids(&["me"]), |_| Vec::new())
        else {
            panic!()
        };
        upstream_only.arrived(piece, &from, true);
        assert!(
            upstream_only.mismatch().is_empty(),
            "the upstream's own bytes are wrong: give up"
        );
    }
}
