//! Client-side rate limits, one bucket per GitHub host.
//!
//! GitHub's secondary rate limits punish bursts (a scale-up of hundreds of
//! JIT configs) with minutes of 403s. Every request, REST and Actions
//! service alike, waits here for its host's bucket first. One limiter is
//! shared by all clients of a controller, so hundreds of scale sets talking
//! to the same host share one budget.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Sustained requests per second and the burst allowed on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `None` if either number is zero.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Some(Self {
            per_second: NonZeroU32::new(per_second)?,
            burst: NonZeroU32::new(burst)?,
        })
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

impl Default for RateLimit {
    /// 20 requests per second sustained (ARC's measured client budget, QPS
    /// 20, with room for a poll and an acknowledge on top: 1,000 JIT configs
    /// take under a minute and stay clear of GitHub's secondary limits), and
    /// a burst of 200 so that a burst of jobs is not held back by it: 200
    /// runners get their JIT configs at once, and the Kubernetes client's
    /// QPS sets the pace, as it does without GitHub in the way.
    fn default() -> Self {
        Self::new(20, 200).expect("non-zero")
    }
}

/// Limits per host (lower-case, without port), and the one for any other host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub default: RateLimit,
    pub per_host: BTreeMap<String, RateLimit>,
}

impl RateLimits {
    pub fn for_host(&self, host: &str) -> RateLimit {
        self.per_host
            .get(&host.to_ascii_lowercase())
            .copied()
            .unwrap_or(self.default)
    }
}

/// The shared set of buckets; create one per controller and hand it to every
/// [`Transport`](super::transport::Transport).
#[derive(Debug)]
pub struct HostRateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
}

impl HostRateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Waits until a request to `host` may go out.
    pub async fn acquire(&self, host: &str) {
        let bucket = self.bucket(host);
        bucket.until_ready().await;
    }

    fn bucket(&self, host: &str) -> Arc<DefaultDirectRateLimiter> {
        let host = host.to_ascii_lowercase();
        // A poisoned lock only means another task panicked while inserting;
        // the map itself is still consistent.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.limits.for_host(&host);
        buckets
            .entry(host)
            .or_insert_with(|| Arc::new(RateLimiter::direct(limit.quota())))
            .clone()
    }
}

impl Default for HostRateLimiter {
    fn default() -> Self {
        Self::new(RateLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn per_host_limits_fall_back_to_the_default() {
        let limits = RateLimits {
            default: RateLimit::new(5, 10).unwrap(),
            per_host: BTreeMap::from([(
                "api.github.com".to_owned(),
                RateLimit::new(1, 2).unwrap(),
            )]),
        };
        assert_eq!(
            limits.for_host("API.github.com"),
            RateLimit::new(1, 2).unwrap()
        );
        assert_eq!(
            limits.for_host("ghes.example.com"),
            RateLimit::new(5, 10).unwrap()
        );
        assert_eq!(RateLimit::new(0, 1), None);
        assert_eq!(RateLimit::new(1, 0), None);
    }

    #[tokio::test]
    async fn burst_passes_then_requests_are_paced() {
        let limiter = HostRateLimiter::new(RateLimits {
            default: RateLimit::new(1000, 1000).unwrap(),
            per_host: BTreeMap::from([("slow.example".to_owned(), RateLimit::new(20, 3).unwrap())]),
        });
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire("slow.example").await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(40),
            "the burst is free"
        );
        // Two more at 20/s need about 100 ms.
        limiter.acquire("slow.example").await;
        limiter.acquire("slow.example").await;
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "{:?}",
            start.elapsed()
        );
        // Another host has its own bucket.
        let other = Instant::now();
        for _ in 0..50 {
            limiter.acquire("fast.example").await;
        }
        assert!(other.elapsed() < Duration::from_millis(40));
    }
}
