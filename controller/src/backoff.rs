//! The one exponential schedule behind every retry in the controller
//! (GitHub requests, the listener, quota refusals, the scaler's failure
//! budget). Each caller adds its own jitter and units; the doubling and the
//! cap live here.

use std::time::Duration;

/// The wait after `failures` consecutive failures (1 for the first):
/// `min(cap, base * 2^(failures-1))`, saturating at `cap`; zero failures
/// count as one.
pub fn exponential(base: Duration, cap: Duration, failures: u32) -> Duration {
    2u32.checked_pow(failures.saturating_sub(1))
        .and_then(|factor| base.checked_mul(factor))
        .map_or(cap, |delay| delay.min(cap))
}

/// [`exponential`] for `chrono` durations (schedules kept as timestamps).
pub fn exponential_delta(
    base: chrono::TimeDelta,
    cap: chrono::TimeDelta,
    failures: u32,
) -> chrono::TimeDelta {
    let std = |d: chrono::TimeDelta| d.to_std().unwrap_or_default();
    chrono::TimeDelta::from_std(exponential(std(base), std(cap), failures)).unwrap_or(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let table = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 4),
            (4, 8),
            (5, 16),
            (6, 30),
            (7, 30),
        ];
        for (failures, secs) in table {
            assert_eq!(
                exponential(S(1), S(30), failures),
                S(secs),
                "{failures} failures"
            );
        }
    }

    #[test]
    fn never_overflows() {
        assert_eq!(exponential(S(1), S(60), 40), S(60));
        assert_eq!(exponential(S(u64::MAX / 2), S(60), 3), S(60));
        assert_eq!(exponential(S(1), S(60), u32::MAX), S(60));
    }

    #[test]
    fn chrono_durations_follow_the_same_schedule() {
        let secs = chrono::TimeDelta::seconds;
        assert_eq!(exponential_delta(secs(5), secs(120), 1), secs(5));
        assert_eq!(exponential_delta(secs(5), secs(120), 3), secs(20));
        assert_eq!(exponential_delta(secs(5), secs(120), 30), secs(120));
    }
}
