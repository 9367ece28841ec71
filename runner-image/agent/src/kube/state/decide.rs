//! The exactly-once decisions, on plain data: whether an action is too old or
//! too far in the future, what to write when claiming it given what the
//! state ConfigMap already holds, what to write when recording its result,
//! and which records retention drops. No client here; [`super::StateStore`]
//! reads, calls these, and writes with optimistic concurrency.
//!
//! Invariants:
//! - A key (`<id>.v<version>`) that is present means the action was decided
//!   once; nothing that finds a key ever runs the action, whatever the record
//!   says (even a record that cannot be parsed, even `claimed` with no result:
//!   the process may have died mid-action, and running it again could do it
//!   twice).
//! - Retention (24 h) is far longer than the expiry (60 s old, 10 s ahead), so
//!   a pruned record's action would be `expired` if it came back: pruning
//!   never reopens the door to a second run.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Older than this (by its timestamp) and an action is `expired`.
pub const MAX_AGE: Duration = Duration::seconds(60);
/// Further ahead than this and an action is `rejected` (a clock is wrong).
pub const MAX_SKEW: Duration = Duration::seconds(10);
/// How long records are kept.
pub const RETENTION: Duration = Duration::hours(24);
/// The API server refuses a ConfigMap over 1 MiB (data plus metadata); keep a
/// margin for the metadata.
pub const MAX_DATA_BYTES: usize = 1024 * 1024 - 16 * 1024;
/// Messages are cut to this many characters in records, so one chatty error
/// cannot fill the ConfigMap.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// Where an action stands. Records hold any of these; a report never says
/// `claimed` (it says what this run did).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Claimed,
    Succeeded,
    Failed,
    Expired,
    Skipped,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Claimed => "claimed",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Skipped => "skipped",
            Status::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One action's record, the value under its key in the ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub status: Status,
    /// Who claimed it: pod name and process, so that a stuck claim can be
    /// traced to the process that died.
    pub claimed_by: String,
    pub claimed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Record {
    /// When it last changed; retention counts from here.
    pub fn last_change(&self) -> DateTime<Utc> {
        self.finished_at.unwrap_or(self.claimed_at)
    }
}

/// A `metadata.id` that cannot be a ConfigMap data key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "metadata.id `{id}` cannot be recorded: use 1 to 200 letters, digits, '-', '_' or '.' (it becomes a key of the ConfigMap runway-kubeactions-state)"
)]
pub struct BadId {
    pub id: String,
}

/// The data key of (id, version): `<id>.v<version>`. Unambiguous because the
/// version is all digits: the key splits at its last `.v`.
pub fn record_key(id: &str, version: u64) -> Result<String, BadId> {
    let valid = !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(BadId { id: id.to_string() });
    }
    Ok(format!("{id}.v{version}"))
}

/// Whether an action's timestamp lets it run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Fresh,
    /// Older than [`MAX_AGE`] by this much in total.
    Expired {
        age: Duration,
    },
    /// Ahead of our clock by more than [`MAX_SKEW`].
    Future {
        ahead: Duration,
    },
}

pub fn admit(timestamp: DateTime<Utc>, now: DateTime<Utc>) -> Admission {
    let age = now - timestamp;
    if age > MAX_AGE {
        Admission::Expired { age }
    } else if -age > MAX_SKEW {
        Admission::Future { ahead: -age }
    } else {
        Admission::Fresh
    }
}

/// What the caller wants recorded if the action was never seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Claim it, then run it.
    Run,
    /// Record a final status without running (`expired`, `rejected`).
    Settle { status: Status, message: String },
}

/// What an existing key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Existing {
    Record(Record),
    /// Not a record we can read (edited by hand?). Still a decision made.
    Unreadable(String),
}

impl Existing {
    pub fn parse(raw: &str) -> Existing {
        match serde_json::from_str(raw) {
            Ok(record) => Existing::Record(record),
            Err(_) => Existing::Unreadable(raw.to_string()),
        }
    }

    /// Why the action is skipped, for the report.
    pub fn skip_message(&self) -> String {
        match self {
            Existing::Record(r) if r.status == Status::Claimed => format!(
                "already claimed by {} at {} with no result recorded (that process may have died mid-action); not run again, check the target by hand",
                r.claimed_by,
                r.claimed_at.to_rfc3339()
            ),
            Existing::Record(r) => {
                let mut m = format!(
                    "already {} (claimed by {} at {})",
                    r.status,
                    r.claimed_by,
                    r.claimed_at.to_rfc3339()
                );
                if let Some(msg) = &r.message {
                    m.push_str(": ");
                    m.push_str(msg);
                }
                m
            }
            Existing::Unreadable(raw) => {
                format!("already recorded (unreadable record {raw:?}); not run again")
            }
        }
    }
}

/// The claim step's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimDecision {
    /// Seen before: do nothing, report `skipped`.
    Skip(Existing),
    /// Never seen: write this record (with the resourceVersion read).
    Write(Record),
}

pub fn decide_claim(
    existing: Option<&str>,
    intent: &Intent,
    holder: &str,
    now: DateTime<Utc>,
) -> ClaimDecision {
    if let Some(raw) = existing {
        return ClaimDecision::Skip(Existing::parse(raw));
    }
    let record = match intent {
        Intent::Run => Record {
            status: Status::Claimed,
            claimed_by: holder.to_string(),
            claimed_at: now,
            finished_at: None,
            message: None,
        },
        Intent::Settle { status, message } => Record {
            status: *status,
            claimed_by: holder.to_string(),
            claimed_at: now,
            finished_at: Some(now),
            message: Some(shorten(message)),
        },
    };
    ClaimDecision::Write(record)
}

/// Why a result cannot be recorded over what the key holds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FinishRefusal {
    #[error("the claim is gone from the ConfigMap (deleted by hand?)")]
    Missing,
    #[error("the record is no longer this process's claim: {0}")]
    NotOurs(String),
}

/// The record of a finished action, replacing our own claim.
pub fn decide_finish(
    existing: Option<&str>,
    holder: &str,
    status: Status,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Record, FinishRefusal> {
    let raw = existing.ok_or(FinishRefusal::Missing)?;
    match Existing::parse(raw) {
        Existing::Record(claim)
            if claim.status == Status::Claimed && claim.claimed_by == holder =>
        {
            Ok(Record {
                status,
                finished_at: Some(now),
                message: Some(shorten(message)),
                ..claim
            })
        }
        _ => Err(FinishRefusal::NotOurs(raw.to_string())),
    }
}

/// The keys retention drops: records last changed more than [`RETENTION`]
/// ago. Unreadable values are kept (we cannot tell their age, and a key
/// present is a decision made).
pub fn expired_keys(data: &BTreeMap<String, String>, now: DateTime<Utc>) -> Vec<String> {
    data.iter()
        .filter_map(|(key, raw)| match Existing::parse(raw) {
            Existing::Record(r) if now - r.last_change() > RETENTION => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// The bytes the data takes (what counts against the 1 MiB limit).
pub fn data_bytes(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn shorten(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message.to_string();
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn record(status: Status, by: &str, at: i64, finished: Option<i64>) -> Record {
        Record {
            status,
            claimed_by: by.into(),
            claimed_at: t(at),
            finished_at: finished.map(t),
            message: None,
        }
    }

    fn raw(r: &Record) -> String {
        serde_json::to_string(r).unwrap()
    }

    #[test]
    fn keys_are_id_and_version_and_refuse_what_a_configmap_cannot_hold() {
        let cases: &[(&str, u64, Option<&str>)] = &[
            ("a1b2", 3, Some("a1b2.v3")),
            ("a.v1", 2, Some("a.v1.v2")),
            ("ID_9-x", 0, Some("ID_9-x.v0")),
            ("", 1, None),
            ("a/b", 1, None),
            ("a b", 1, None),
            ("é", 1, None),
        ];
        for (id, version, want) in cases {
            let got = record_key(id, *version).ok();
            assert_eq!(got.as_deref(), *want, "id {id:?} version {version}");
        }
        assert!(record_key(&"x".repeat(201), 1).is_err());
        let err = record_key("a/b", 1).unwrap_err().to_string();
        assert!(err.starts_with("metadata.id `a/b`"), "{err}");
    }

    #[test]
    fn admission_by_age_and_skew() {
        let now = t(1000);
        let cases = [
            (0, Admission::Fresh),
            (-60, Admission::Fresh),
            (
                -61,
                Admission::Expired {
                    age: Duration::seconds(61),
                },
            ),
            (
                -86_400,
                Admission::Expired {
                    age: Duration::seconds(86_400),
                },
            ),
            (10, Admission::Fresh),
            (
                11,
                Admission::Future {
                    ahead: Duration::seconds(11),
                },
            ),
        ];
        for (offset, want) in cases {
            assert_eq!(admit(t(1000 + offset), now), want, "offset {offset}");
        }
    }

    #[test]
    fn claim_writes_only_when_the_key_is_absent() {
        let now = t(5);
        let done = raw(&record(Status::Succeeded, "pod-a/1", 1, Some(2)));
        let stuck = raw(&record(Status::Claimed, "pod-a/1", 1, None));
        let rejected = raw(&record(Status::Rejected, "pod-b/7", 1, Some(1)));
        let settle = Intent::Settle {
            status: Status::Expired,
            message: "too old".into(),
        };
        // (existing, intent, expected)
        let cases: Vec<(Option<&str>, &Intent, ClaimDecision)> = vec![
            (
                None,
                &Intent::Run,
                ClaimDecision::Write(record(Status::Claimed, "me", 5, None)),
            ),
            (
                None,
                &settle,
                ClaimDecision::Write(Record {
                    message: Some("too old".into()),
                    ..record(Status::Expired, "me", 5, Some(5))
                }),
            ),
            (
                Some(&done),
                &Intent::Run,
                ClaimDecision::Skip(Existing::Record(record(
                    Status::Succeeded,
                    "pod-a/1",
                    1,
                    Some(2),
                ))),
            ),
            (
                Some(&stuck),
                &Intent::Run,
                ClaimDecision::Skip(Existing::Record(record(
                    Status::Claimed,
                    "pod-a/1",
                    1,
                    None,
                ))),
            ),
            // A settled intent never overwrites either.
            (
                Some(&rejected),
                &settle,
                ClaimDecision::Skip(Existing::Record(record(
                    Status::Rejected,
                    "pod-b/7",
                    1,
                    Some(1),
                ))),
            ),
            (
                Some("garbage"),
                &Intent::Run,
                ClaimDecision::Skip(Existing::Unreadable("garbage".into())),
            ),
        ];
        for (i, (existing, intent, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide_claim(existing, intent, "me", now), want, "case {i}");
        }
    }

    #[test]
    fn even_our_own_claim_is_skipped_when_seen_again() {
        // A restarted process with the same identity must not resume a
        // claim it cannot know the fate of.
        let mine = raw(&record(Status::Claimed, "me", 1, None));
        assert!(matches!(
            decide_claim(Some(&mine), &Intent::Run, "me", t(2)),
            ClaimDecision::Skip(_)
        ));
    }

    #[test]
    fn skip_messages_report_the_recorded_status() {
        let stuck = Existing::Record(record(Status::Claimed, "pod-a/1", 1, None));
        assert!(stuck.skip_message().contains("no result recorded"));
        assert!(stuck.skip_message().contains("pod-a/1"));
        let failed = Existing::Record(Record {
            message: Some("Kubernetes refused".into()),
            ..record(Status::Failed, "pod-a/1", 1, Some(2))
        });
        let m = failed.skip_message();
        assert!(m.starts_with("already failed"), "{m}");
        assert!(m.ends_with(": Kubernetes refused"), "{m}");
    }

    #[test]
    fn finish_replaces_only_our_own_claim() {
        let mine = raw(&record(Status::Claimed, "me", 1, None));
        let theirs = raw(&record(Status::Claimed, "other", 1, None));
        let done = raw(&record(Status::Succeeded, "me", 1, Some(2)));
        let got = decide_finish(Some(&mine), "me", Status::Succeeded, "ok", t(3)).unwrap();
        assert_eq!(
            got,
            Record {
                message: Some("ok".into()),
                ..record(Status::Succeeded, "me", 1, Some(3))
            }
        );
        assert_eq!(
            decide_finish(None, "me", Status::Failed, "x", t(3)),
            Err(FinishRefusal::Missing)
        );
        for other in [&theirs, &done] {
            assert!(matches!(
                decide_finish(Some(other), "me", Status::Failed, "x", t(3)),
                Err(FinishRefusal::NotOurs(_))
            ));
        }
    }

    #[test]
    fn retention_drops_records_idle_for_a_day_and_keeps_the_rest() {
        let day = 86_400;
        let now = t(2 * day);
        let data: BTreeMap<String, String> = [
            (
                "old-done.v1",
                raw(&record(Status::Succeeded, "a", 0, Some(day - 1))),
            ),
            (
                "recent-done.v1",
                raw(&record(Status::Failed, "a", 0, Some(day + 1))),
            ),
            (
                "old-claim.v1",
                raw(&record(Status::Claimed, "a", day - 5, None)),
            ),
            (
                "new-claim.v1",
                raw(&record(Status::Claimed, "a", 2 * day - 5, None)),
            ),
            ("junk.v1", "not json".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            expired_keys(&data, now),
            vec!["old-claim.v1", "old-done.v1"]
        );
    }

    #[test]
    fn long_messages_are_cut_and_records_round_trip() {
        let intent = Intent::Settle {
            status: Status::Rejected,
            message: "x".repeat(10_000),
        };
        let ClaimDecision::Write(r) = decide_claim(None, &intent, "me", t(0)) else {
            panic!("absent key must be written");
        };
        assert_eq!(
            r.message.as_ref().unwrap().chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
        let json = raw(&r);
        assert!(json.contains(r#""status":"rejected""#), "{json}");
        assert!(json.contains(r#""claimedBy":"me""#), "{json}");
        assert!(json.contains(r#""finishedAt":"#), "{json}");
        assert_eq!(Existing::parse(&json), Existing::Record(r));
        let data = BTreeMap::from([("k".to_string(), "vv".to_string())]);
        assert_eq!(data_bytes(&data), 3);
    }
}
