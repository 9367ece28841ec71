//! `runway serve`'s Prometheus metrics, kept in memory and rendered as the
//! text exposition format by hand (four families do not need a registry):
//!
//! - `runway_actions_total{action_type,status}`: payload actions by outcome
//!   (`succeeded`, `failed`, `expired`, `skipped`, `rejected`).
//! - `runway_action_duration_seconds`: time spent executing actions that
//!   ran (claims, skips and expired ones are not timed). No labels: the
//!   executor sees the action, not the payload's `action_type`.
//! - `runway_auth_failures_total{reason}`: 401s by [`AuthFailure::reason`].
//! - `runway_leader`: 1 while this process holds the Lease (always 1
//!   without `--lease`: it is the only executor).
//!
//! [`AuthFailure::reason`]: super::auth::AuthFailure::reason

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Upper bounds of the duration histogram, in seconds.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

#[derive(Clone, Debug, Default, PartialEq)]
struct Histogram {
    /// Count per bucket of [`BUCKETS`] (not cumulative; summed on render).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Families {
    actions: BTreeMap<(String, String), u64>,
    durations: Histogram,
    auth_failures: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<Families>,
    leader: AtomicBool,
}

impl Metrics {
    pub fn action(&self, action_type: &str, status: &str) {
        let mut f = self.lock();
        *f.actions
            .entry((action_type.to_string(), status.to_string()))
            .or_default() += 1;
    }

    pub fn duration(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut f = self.lock();
        let h = &mut f.durations;
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn auth_failure(&self, reason: &str) {
        *self
            .lock()
            .auth_failures
            .entry(reason.to_string())
            .or_default() += 1;
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.store(leading, Ordering::Relaxed);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let f = self.lock();
        let mut out = String::new();
        out.push_str("# HELP runway_actions_total Payload actions by type and outcome.\n");
        out.push_str("# TYPE runway_actions_total counter\n");
        for ((action_type, status), n) in &f.actions {
            let _ = writeln!(
                out,
                "runway_actions_total{{action_type=\"{}\",status=\"{}\"}} {n}",
                escape(action_type),
                escape(status)
            );
        }
        out.push_str(
            "# HELP runway_action_duration_seconds Time executing payload actions that ran.\n",
        );
        out.push_str("# TYPE runway_action_duration_seconds histogram\n");
        let h = &f.durations;
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "runway_action_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "runway_action_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "runway_action_duration_seconds_sum {}", h.sum);
        let _ = writeln!(out, "runway_action_duration_seconds_count {}", h.count);
        out.push_str("# HELP runway_auth_failures_total Requests refused with 401, by reason.\n");
        out.push_str("# TYPE runway_auth_failures_total counter\n");
        for (reason, n) in &f.auth_failures {
            let _ = writeln!(
                out,
                "runway_auth_failures_total{{reason=\"{}\"}} {n}",
                escape(reason)
            );
        }
        out.push_str("# HELP runway_leader 1 while this process may execute payloads.\n");
        out.push_str("# TYPE runway_leader gauge\n");
        let _ = writeln!(
            out,
            "runway_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        // A panic while holding the lock leaves plain counters: still usable.
        self.families.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A label value escaped per the exposition format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        m.action("delete_pod", "succeeded");
        m.action("delete_pod", "succeeded");
        m.action("delete_pod", "skipped");
        m.duration(Duration::from_millis(20));
        m.duration(Duration::from_secs(3));
        m.auth_failure("expired");
        m.set_leader(true);
        let text = m.render();
        for line in [
            "runway_actions_total{action_type=\"delete_pod\",status=\"succeeded\"} 2",
            "runway_actions_total{action_type=\"delete_pod\",status=\"skipped\"} 1",
            "runway_action_duration_seconds_bucket{le=\"0.01\"} 0",
            "runway_action_duration_seconds_bucket{le=\"0.025\"} 1",
            "runway_action_duration_seconds_bucket{le=\"2.5\"} 1",
            "runway_action_duration_seconds_bucket{le=\"10\"} 2",
            "runway_action_duration_seconds_bucket{le=\"+Inf\"} 2",
            "runway_action_duration_seconds_count 2",
            "runway_auth_failures_total{reason=\"expired\"} 1",
            "runway_leader 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        m.set_leader(false);
        assert!(m.render().lines().any(|l| l == "runway_leader 0"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
