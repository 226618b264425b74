//! Failed logins per client address: after `max` failures within `window`, the address is
//! refused (429) until the oldest of them leaves the window. Time is passed in, so tests
//! (and a simulator) need no clock.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins of each client address within a sliding window.
#[derive(Debug)]
pub struct FailedLogins {
    max: usize,
    window: Duration,
    /// Most addresses tracked at once: beyond it the least recently failing is forgotten
    /// (a flood of addresses costs bounded memory).
    capacity: usize,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

impl FailedLogins {
    pub fn new(max: usize, window: Duration, capacity: usize) -> FailedLogins {
        FailedLogins {
            max: max.max(1),
            window,
            capacity: capacity.max(1),
            failures: HashMap::new(),
        }
    }

    fn prune(&mut self, ip: IpAddr, now: Instant) {
        if let Some(times) = self.failures.get_mut(&ip) {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
            {
                times.pop_front();
            }
            if times.is_empty() {
                self.failures.remove(&ip);
            }
        }
    }

    /// How long `ip` must wait before its next login is looked at; `None` if it may try now.
    pub fn blocked(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.prune(ip, now);
        let times = self.failures.get(&ip)?;
        if times.len() < self.max {
            return None;
        }
        let oldest = *times.front()?;
        Some(
            self.window
                .saturating_sub(now.saturating_duration_since(oldest)),
        )
    }

    /// A login from `ip` failed at `now`.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) {
        self.prune(ip, now);
        if !self.failures.contains_key(&ip) && self.failures.len() >= self.capacity {
            let stalest = self
                .failures
                .iter()
                .filter_map(|(a, t)| t.back().map(|last| (*last, *a)))
                .min()
                .map(|(_, a)| a);
            if let Some(a) = stalest {
                self.failures.remove(&a);
            }
        }
        let times = self.failures.entry(ip).or_default();
        times.push_back(now);
        // Only the last `max` matter.
        while times.len() > self.max {
            times.pop_front();
        }
    }

    /// A login from `ip` succeeded: its failures are forgiven.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_paused_after_max_failures_within_the_window() {
        let mut l = FailedLogins::new(3, Duration::from_secs(60), 100);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(l.blocked(ip, t0 + Duration::from_secs(i)), None);
            l.failed(ip, t0 + Duration::from_secs(i));
        }
        assert_eq!(
            l.blocked(ip, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(l.blocked(other, t0 + Duration::from_secs(10)), None);
        // The oldest failure leaves the window: one more try.
        assert_eq!(l.blocked(ip, t0 + Duration::from_secs(60)), None);
        l.failed(ip, t0 + Duration::from_secs(60));
        assert_eq!(
            l.blocked(ip, t0 + Duration::from_secs(60)),
            Some(Duration::from_secs(1)),
            "failures at 1, 2 and 60 s: free again when the one at 1 s leaves"
        );
        l.succeeded(ip);
        assert_eq!(l.blocked(ip, t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let mut l = FailedLogins::new(2, Duration::from_secs(60), 10);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(i));
            l.failed(ip, t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(l.tracked(), 10);
        // The most recent ones are the ones kept.
        let last = IpAddr::from(std::net::Ipv4Addr::from(999u32));
        l.failed(last, t0 + Duration::from_secs(1));
        assert!(l.blocked(last, t0 + Duration::from_secs(1)).is_some());
    }
}
