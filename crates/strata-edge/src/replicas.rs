//! How many nodes of a site keep a copy of an image: only those that pulled it (on demand),
//! a fixed number, or every node (as EdgePier does). With a fixed number the holders are the
//! first nodes of a rendezvous ranking over the live membership: every node computes the
//! same set with no coordinator, a node that joins takes over only its share, and one that
//! leaves is replaced by the next in the ranking.

use crate::pieces::score;
use crate::NodeId;

/// A site's replication factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replicas {
    /// Only nodes whose clients pulled an image hold it.
    #[default]
    OnDemand,
    /// This many live nodes hold every image the site holds (at least one).
    Copies(usize),
    /// Every live node holds every image the site holds.
    All,
}

impl std::str::FromStr for Replicas {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "on-demand" | "0" => Ok(Replicas::OnDemand),
            "all" => Ok(Replicas::All),
            n => match n.parse::<usize>() {
                Ok(n) => Ok(Replicas::Copies(n)),
                Err(_) => Err(format!(
                    "replicas {s:?}: a number of copies, `all` or `on-demand`"
                )),
            },
        }
    }
}

/// The live nodes that keep `item` (an image's name), best first.
pub fn keepers<'a>(item: &str, live: &'a [NodeId], replicas: Replicas) -> Vec<&'a NodeId> {
    let n = match replicas {
        Replicas::OnDemand => return Vec::new(),
        Replicas::Copies(n) => n.min(live.len()),
        Replicas::All => live.len(),
    };
    let mut ranked: Vec<&NodeId> = live.iter().collect();
    ranked.sort_by(|a, b| score(item, 0, b).cmp(&score(item, 0, a)).then(a.cmp(b)));
    ranked.truncate(n);
    ranked
}

/// Whether `me` should keep a copy of `item`.
pub fn keeps(me: &NodeId, item: &str, live: &[NodeId], replicas: Replicas) -> bool {
    keepers(item, live, replicas).contains(&me)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| NodeId(format!("node-{i}"))).collect()
    }

    #[test]
    fn a_fixed_number_of_keepers_moves_only_with_its_own_nodes() {
        let live = nodes(10);
        let items: Vec<String> = (0..200)
            .map(|i| format!("library/app@sha256:{i:064x}"))
            .collect();
        for item in &items {
            let k = keepers(item, &live, Replicas::Copies(3));
            assert_eq!(k.len(), 3);
            // Every node computes the same set.
            for me in &live {
                assert_eq!(keeps(me, item, &live, Replicas::Copies(3)), k.contains(&me));
            }
            // A keeper leaves: the other two stay, one node takes its place.
            let gone = k[0].clone();
            let rest: Vec<NodeId> = live.iter().filter(|n| **n != gone).cloned().collect();
            let after = keepers(item, &rest, Replicas::Copies(3));
            assert!(k[1..].iter().all(|n| after.contains(n)), "{item}");
            // A node that is not a keeper leaves: nothing moves.
            let bystander = live
                .iter()
                .find(|n| !k.contains(n))
                .expect("a bystander")
                .clone();
            let rest: Vec<NodeId> = live.iter().filter(|n| **n != bystander).cloned().collect();
            assert_eq!(keepers(item, &rest, Replicas::Copies(3)), k);
        }
        // Load spreads: every node keeps some items.
        for me in &live {
            let n = items
                .iter()
                .filter(|i| keeps(me, i, &live, Replicas::Copies(3)))
                .count();
            assert!((20..=100).contains(&n), "{me:?} keeps {n} of 200");
        }
        assert_eq!(keepers(&items[0], &live, Replicas::All).len(), 10);
        assert!(keepers(&items[0], &live, Replicas::OnDemand).is_empty());
        assert_eq!(keepers(&items[0], &live[..2], Replicas::Copies(3)).len(), 2);
        assert_eq!("all".parse(), Ok(Replicas::All));
        assert_eq!("2".parse(), Ok(Replicas::Copies(2)));
        assert_eq!("on-demand".parse(), Ok(Replicas::OnDemand));
        assert!("many".parse::<Replicas>().is_err());
    }
}
