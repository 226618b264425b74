//! Who is in the site, where they sit, and who is alive.
//!
//! Liveness comes from what this node hears (a ping answered, a request served), each with
//! the caller's time in milliseconds: a node not heard from for the liveness timeout is dead
//! at once, whatever content records it published still say.

use std::collections::BTreeMap;

/// A node of the site (its libp2p peer id, as text).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub String);

impl NodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(s: &str) -> Self {
        NodeId(s.to_string())
    }
}

/// Where a node sits. An empty label matches nothing, so unlabelled nodes are "far".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub site: String,
    pub zone: String,
    pub rack: String,
}

/// How near another node is, nearest first (the derived order sorts nearest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proximity {
    SameRack,
    SameZone,
    SameSite,
    Elsewhere,
}

impl Labels {
    pub fn new(site: &str, zone: &str, rack: &str) -> Self {
        Labels {
            site: site.into(),
            zone: zone.into(),
            rack: rack.into(),
        }
    }

    /// How near `other` is to a node labelled `self`. A zone or rack counts only within
    /// the same site (and zone).
    pub fn proximity(&self, other: &Labels) -> Proximity {
        let same = |a: &str, b: &str| !a.is_empty() && a == b;
        if !same(&self.site, &other.site) {
            return Proximity::Elsewhere;
        }
        if !same(&self.zone, &other.zone) {
            return Proximity::SameSite;
        }
        if !same(&self.rack, &other.rack) {
            return Proximity::SameZone;
        }
        Proximity::SameRack
    }
}

#[derive(Debug, Clone)]
struct Member {
    labels: Labels,
    last_heard_ms: u64,
}

/// The nodes this node knows of, with when it last heard from each.
#[derive(Debug, Clone)]
pub struct Membership {
    timeout_ms: u64,
    members: BTreeMap<NodeId, Member>,
}

impl Membership {
    /// Nodes not heard from for `timeout_ms` count as dead.
    pub fn new(timeout_ms: u64) -> Self {
        Membership {
            timeout_ms,
            members: BTreeMap::new(),
        }
    }

    /// `id` (labelled `labels`) was heard from at `now_ms`. A node that rejoins is live again.
    pub fn heard(&mut self, id: NodeId, labels: Labels, now_ms: u64) {
        let m = self.members.entry(id).or_insert(Member {
            labels: Labels::default(),
            last_heard_ms: now_ms,
        });
        m.labels = labels;
        m.last_heard_ms = m.last_heard_ms.max(now_ms);
    }

    /// `id` failed to answer (a refused connection, a reset): dead from now on, until heard
    /// from again.
    pub fn failed(&mut self, id: &NodeId) {
        if let Some(m) = self.members.get_mut(id) {
            m.last_heard_ms = 0;
        }
    }

    /// `id` left the site for good.
    pub fn remove(&mut self, id: &NodeId) {
        self.members.remove(id);
    }

    pub fn is_live(&self, id: &NodeId, now_ms: u64) -> bool {
        self.members.get(id).is_some_and(|m| {
            m.last_heard_ms > 0 && now_ms.saturating_sub(m.last_heard_ms) < self.timeout_ms
        })
    }

    /// The live nodes at `now_ms`, in id order.
    pub fn live(&self, now_ms: u64) -> Vec<NodeId> {
        self.members
            .keys()
            .filter(|id| self.is_live(id, now_ms))
            .cloned()
            .collect()
    }

    pub fn labels(&self, id: &NodeId) -> Option<&Labels> {
        self.members.get(id).map(|m| &m.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proximity_orders_rack_zone_site_elsewhere() {
        let me = Labels::new("s", "z", "r");
        assert_eq!(
            me.proximity(&Labels::new("s", "z", "r")),
            Proximity::SameRack
        );
        assert_eq!(
            me.proximity(&Labels::new("s", "z", "q")),
            Proximity::SameZone
        );
        assert_eq!(
            me.proximity(&Labels::new("s", "y", "r")),
            Proximity::SameSite
        );
        assert_eq!(
            me.proximity(&Labels::new("t", "z", "r")),
            Proximity::Elsewhere
        );
        assert_eq!(
            Labels::default().proximity(&Labels::default()),
            Proximity::Elsewhere
        );
        assert!(Proximity::SameRack < Proximity::SameZone);
    }

    #[test]
    fn a_node_is_dead_once_not_heard_from_for_the_timeout_and_live_again_when_heard() {
        let mut m = Membership::new(3_000);
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        m.heard(a.clone(), Labels::default(), 1_000);
        m.heard(b.clone(), Labels::default(), 2_000);
        assert_eq!(m.live(3_500), vec![a.clone(), b.clone()]);
        assert_eq!(m.live(4_000), vec![b.clone()], "a silent for 3 s");
        m.failed(&b);
        assert!(m.live(4_000).is_empty(), "a failed request kills at once");
        m.heard(b.clone(), Labels::default(), 4_100);
        assert_eq!(m.live(4_200), vec![b.clone()]);
        m.heard(b.clone(), Labels::default(), 100);
        assert!(m.is_live(&b, 4_200), "an older report does not age a node");
        m.remove(&b);
        assert!(m.live(4_200).is_empty());
    }
}
