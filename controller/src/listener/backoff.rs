//! How long the listener waits after a failure: exponential, capped, and
//! jittered, so that a listener never spins on an error and a fleet of
//! listeners that failed together (GitHub outage, controller restart) does
//! not come back together.
//!
//! Pure: the jitter is an argument. The loop draws it from `rand` and sleeps
//! with `tokio::time`, so tests with `tokio::time::pause()` run instantly.

use std::time::Duration;

/// The longest server wait the listener honours. GitHub's primary rate
/// limit resets within the hour; a longer `Retry-After` or reset (a broken
/// proxy, a clock far off, a hostile answer) must not park the listener for
/// days.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(60 * 60);

/// The listener's backoff schedule. This is on top of the client's own
/// per-request retries ([`RetryPolicy`](crate::github::RetryPolicy)): it
/// paces whole listener steps (create a session, poll) that failed even
/// after those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (before jitter).
    pub base: Duration,
    /// No wait is longer than this, jitter included.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to 60 s: a conflict with another controller is retried
    /// about once a minute once it persists.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The wait after `failures` consecutive failures (1 for the first):
    /// `min(cap, base * 2^(failures-1))`, scaled by `jitter` in `[0, 1]` over
    /// 50%..100% ("equal jitter": never zero, so never a hot loop, and spread
    /// even once capped).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exponential = crate::backoff::exponential(self.base, self.cap, failures);
        exponential.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// [`Backoff::delay`], or longer if the server asked for a longer wait
    /// (`Retry-After`, rate-limit reset), up to [`MAX_SERVER_WAIT`].
    pub fn delay_honouring(
        &self,
        failures: u32,
        jitter: f64,
        server_wait: Option<Duration>,
    ) -> Duration {
        let own = self.delay(failures, jitter);
        server_wait.map_or(own, |wait| wait.min(MAX_SERVER_WAIT).max(own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn backoff() -> Backoff {
        Backoff {
            base: MS(100),
            cap: MS(1_000),
        }
    }

    #[test]
    fn grows_exponentially_then_caps() {
        // (failures, jitter, expected)
        let cases = [
            (0, 1.0, MS(100)),
            (1, 1.0, MS(100)),
            (2, 1.0, MS(200)),
            (3, 1.0, MS(400)),
            (4, 1.0, MS(800)),
            (5, 1.0, MS(1_000)),
            (6, 1.0, MS(1_000)),
            (40, 1.0, MS(1_000)),
            (u32::MAX, 1.0, MS(1_000)),
            (1, 0.0, MS(50)),
            (3, 0.0, MS(200)),
            (5, 0.0, MS(500)),
            (3, 0.5, MS(300)),
            // Out-of-range jitter is clamped.
            (3, -3.0, MS(200)),
            (3, 7.0, MS(400)),
        ];
        for (failures, jitter, expected) in cases {
            assert_eq!(
                backoff().delay(failures, jitter),
                expected,
                "failures {failures}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_half_and_full_of_the_step() {
        let backoff = backoff();
        for failures in 1..=12 {
            let step = MS(100).saturating_mul(1 << (failures - 1)).min(MS(1_000));
            for i in 0..=20 {
                let jitter = f64::from(i) / 20.0;
                let delay = backoff.delay(failures, jitter);
                assert!(delay >= step / 2, "{failures} {jitter}: {delay:?}");
                assert!(delay <= step, "{failures} {jitter}: {delay:?}");
                assert!(delay <= backoff.cap);
                assert!(delay > Duration::ZERO, "never a hot loop");
            }
        }
    }

    #[test]
    fn never_decreases_with_more_failures_at_equal_jitter() {
        let backoff = backoff();
        for jitter in [0.0, 0.3, 1.0] {
            let delays: Vec<_> = (1..20).map(|f| backoff.delay(f, jitter)).collect();
            assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        }
    }

    #[test]
    fn a_longer_server_wait_wins() {
        let backoff = backoff();
        assert_eq!(backoff.delay_honouring(1, 1.0, None), MS(100));
        assert_eq!(backoff.delay_honouring(1, 1.0, Some(MS(30))), MS(100));
        assert_eq!(backoff.delay_honouring(1, 1.0, Some(MS(5_000))), MS(5_000));
    }

    #[test]
    fn a_server_wait_is_honoured_up_to_an_hour() {
        let backoff = Backoff::default();
        for (wait, expected) in [
            (Duration::from_secs(3_599), Duration::from_secs(3_599)),
            (Duration::from_secs(3_600), MAX_SERVER_WAIT),
            (Duration::from_secs(86_400 * 365), MAX_SERVER_WAIT),
            (Duration::MAX, MAX_SERVER_WAIT),
        ] {
            assert_eq!(backoff.delay_honouring(1, 1.0, Some(wait)), expected);
        }
        // Our own backoff still wins when it is longer than the cap.
        let slow = Backoff {
            base: Duration::from_secs(7_200),
            cap: Duration::from_secs(7_200),
        };
        assert_eq!(
            slow.delay_honouring(1, 1.0, Some(Duration::MAX)),
            Duration::from_secs(7_200)
        );
    }

    #[test]
    fn the_default_is_one_second_to_a_minute() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff.delay(30, 1.0), Duration::from_secs(60));
        assert_eq!(backoff.delay(30, 0.0), Duration::from_secs(30));
    }
}
