//! The pure half of leader election: what we know of the Lease
//! ([`Observed`], folded by [`observe`]), what to do about it ([`decide`]),
//! the specs we write ([`claim`], [`released`]) and whether the settings can
//! work ([`LeaderConfig::validate`]). No client, no clock of its own: the
//! caller passes `now`, so every rule here is a table test.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

use super::{LeaderConfig, LeaderError};

/// Client-go's jitter factor on the retry period.
pub(super) const JITTER: f64 = 0.2;

impl LeaderConfig {
    /// Checks the timing the way client-go does: `lease_duration` (at least
    /// 1 s) > `renew_deadline` > `retry_period` * 1.2 > 0, and a non-empty
    /// identity.
    pub(super) fn validate(&self) -> Result<(), LeaderError> {
        let problem = if self.identity.is_empty() {
            Some("identity must not be empty".to_string())
        } else if self.name.is_empty() || self.namespace.is_empty() {
            Some("the Lease's namespace and name must not be empty".to_string())
        } else if self.lease_duration < Duration::from_secs(1) {
            Some("lease_duration must be at least 1s".to_string())
        } else if self.renew_deadline >= self.lease_duration {
            Some(format!(
                "renew_deadline ({:?}) must be shorter than lease_duration ({:?})",
                self.renew_deadline, self.lease_duration
            ))
        } else if self.retry_period.is_zero()
            || self.retry_period.mul_f64(1.0 + JITTER) >= self.renew_deadline
        {
            Some(format!(
                "retry_period ({:?}) must be above zero and, with 20% jitter, shorter than \
                 renew_deadline ({:?})",
                self.retry_period, self.renew_deadline
            ))
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(reason) => Err(LeaderError::Config {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                reason,
            }),
        }
    }

    /// `lease_duration` as the Lease's whole seconds, rounded up.
    pub(super) fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

/// The fields of a Lease that election reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeaseRecord {
    /// `holderIdentity`; `None` when absent or empty (released).
    pub holder: Option<String>,
    pub lease_duration_seconds: Option<i32>,
    pub transitions: i32,
    pub acquire_time: Option<Timestamp>,
    pub renew_time: Option<Timestamp>,
}

impl LeaseRecord {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            lease_duration_seconds: spec.lease_duration_seconds,
            transitions: spec.lease_transitions.unwrap_or(0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
        }
    }
}

/// What we know of the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Observed {
    /// It does not exist (or we have not read it yet).
    Missing,
    /// Its record, unchanged since `since` by our clock.
    Seen { record: LeaseRecord, since: Instant },
}

/// Folds a fresh read into what we knew: an unchanged record keeps the time
/// we first saw it; any change (a renewal included) restarts the clock.
pub(crate) fn observe(previous: &Observed, current: Option<LeaseRecord>, now: Instant) -> Observed {
    match (previous, current) {
        (_, None) => Observed::Missing,
        (Observed::Seen { record, since }, Some(current)) if *record == current => Observed::Seen {
            record: current,
            since: *since,
        },
        (_, Some(record)) => Observed::Seen { record, since: now },
    }
}

/// What to do about the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It does not exist: create it as ours.
    Create,
    /// It is ours: write a new `renewTime`.
    Renew,
    /// It is free (released) or its holder let it expire: take it, with one
    /// more transition. `from` is the previous holder, if any.
    TakeOver { from: Option<String> },
    /// Someone else holds it: read again, at the latest at `until` (when it
    /// expires unless renewed).
    Wait { holder: String, until: Instant },
}

/// The decision on what we observed, by our clock `now`.
pub(crate) fn decide(observed: &Observed, me: &str, now: Instant, cfg: &LeaderConfig) -> Decision {
    let (record, since) = match observed {
        Observed::Missing => return Decision::Create,
        Observed::Seen { record, since } => (record, *since),
    };
    let Some(holder) = &record.holder else {
        return Decision::TakeOver { from: None };
    };
    if holder == me {
        return Decision::Renew;
    }
    // The holder's own duration, as client-go; ours if it wrote none.
    let duration = record
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(cfg.lease_duration, Duration::from_secs);
    let until = since + duration;
    if now >= until {
        Decision::TakeOver {
            from: Some(holder.clone()),
        }
    } else {
        Decision::Wait {
            holder: holder.clone(),
            until,
        }
    }
}

/// The spec that makes the Lease ours at wall-clock `now`: the acquire time
/// and transitions are kept when it is ours already, a takeover counts one
/// more transition, a new Lease starts at zero.
pub(crate) fn claim(
    current: Option<&LeaseRecord>,
    me: &str,
    now: Timestamp,
    cfg: &LeaderConfig,
) -> LeaseSpec {
    let (acquire_time, transitions) = match current {
        None => (now, 0),
        Some(record) if record.holder.as_deref() == Some(me) => {
            (record.acquire_time.unwrap_or(now), record.transitions)
        }
        Some(record) => (now, record.transitions.saturating_add(1)),
    };
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(cfg.lease_duration_seconds()),
        lease_transitions: Some(transitions),
        acquire_time: Some(MicroTime(acquire_time)),
        renew_time: Some(MicroTime(now)),
        ..LeaseSpec::default()
    }
}

/// The spec that gives the Lease up (client-go's release): no holder, a
/// one-second duration, transitions kept.
pub(crate) fn released(current: &LeaseRecord, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        lease_transitions: Some(current.transitions),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        ..LeaseSpec::default()
    }
}
