//! Which mirrored blobs leave a bounded cache: the policy is a trait (least recently pulled
//! first, or first in first out), fed entries with times the caller read from its clock.
//! Pushed content is never an entry: the node only offers what it mirrored.

use std::fmt::Debug;

/// One mirrored blob a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry<K> {
    pub key: K,
    pub size: u64,
    /// When it was stored (seconds since any fixed epoch; only the order counts).
    pub stored: u64,
    /// When a client last pulled it (`stored` if never).
    pub last_pulled: u64,
}

/// Orders a cache's entries: the first is evicted first.
pub trait EvictionPolicy: Send + Sync + Debug {
    /// The policy's name (`lru`, `fifo`), for flags and logs.
    fn name(&self) -> &'static str;
    /// A key that sorts entries to evict first before the others; ties go to the larger.
    fn rank(&self, stored: u64, last_pulled: u64) -> u64;
}

/// Least recently pulled first.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastRecentlyPulled;

impl EvictionPolicy for LeastRecentlyPulled {
    fn name(&self) -> &'static str {
        "lru"
    }
    fn rank(&self, _stored: u64, last_pulled: u64) -> u64 {
        last_pulled
    }
}

/// Oldest stored first, however often it is pulled.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstInFirstOut;

impl EvictionPolicy for FirstInFirstOut {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn rank(&self, stored: u64, _last_pulled: u64) -> u64 {
        stored
    }
}

/// The policy named `name` (`lru` or `fifo`).
pub fn policy_named(name: &str) -> Option<Box<dyn EvictionPolicy>> {
    match name {
        "lru" => Some(Box::new(LeastRecentlyPulled)),
        "fifo" => Some(Box::new(FirstInFirstOut)),
        _ => None,
    }
}

/// The entries to evict, in order, so that what stays fits in `budget` bytes; entries
/// `keep` says are in use are never chosen.
pub fn victims<K: Clone>(
    policy: &dyn EvictionPolicy,
    entries: &[CacheEntry<K>],
    budget: u64,
    keep: impl Fn(&K) -> bool,
) -> Vec<CacheEntry<K>> {
    let mut total: u64 = entries.iter().map(|e| e.size).sum();
    if total <= budget {
        return Vec::new();
    }
    let mut order: Vec<&CacheEntry<K>> = entries.iter().filter(|e| !keep(&e.key)).collect();
    order.sort_by_key(|e| {
        (
            policy.rank(e.stored, e.last_pulled),
            std::cmp::Reverse(e.size),
        )
    });
    let mut out = Vec::new();
    for e in order {
        if total <= budget {
            break;
        }
        total -= e.size;
        out.push(e.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        key: &'static str,
        size: u64,
        stored: u64,
        last_pulled: u64,
    ) -> CacheEntry<&'static str> {
        CacheEntry {
            key,
            size,
            stored,
            last_pulled,
        }
    }

    #[test]
    fn lru_evicts_the_least_recently_pulled_and_fifo_the_oldest() {
        // a: stored first, pulled last; b: stored second, never pulled again; c: newest.
        let entries = [
            entry("a", 10, 1, 9),
            entry("b", 10, 2, 2),
            entry("c", 10, 3, 3),
        ];
        let keys =
            |v: Vec<CacheEntry<&'static str>>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(
            keys(victims(&LeastRecentlyPulled, &entries, 20, |_| false)),
            ["b"]
        );
        assert_eq!(
            keys(victims(&FirstInFirstOut, &entries, 20, |_| false)),
            ["a"]
        );
        assert_eq!(
            keys(victims(&LeastRecentlyPulled, &entries, 5, |_| false)),
            ["b", "c", "a"]
        );
        assert!(
            victims(&FirstInFirstOut, &entries, 30, |_| false).is_empty(),
            "it fits"
        );
        // In use: never chosen, even if the cache then stays over its budget.
        assert_eq!(
            keys(victims(&LeastRecentlyPulled, &entries, 0, |k| *k != "c")),
            ["c"]
        );
        assert_eq!(policy_named("lru").map(|p| p.name()), Some("lru"));
        assert_eq!(policy_named("fifo").map(|p| p.name()), Some("fifo"));
        assert!(policy_named("random").is_none());
    }
}
