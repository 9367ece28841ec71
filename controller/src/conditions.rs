//! The `Ready` and `Listening` conditions of a `RunnerScaleSet`: how they are
//! built and merged into the status. Pure: the writers patch the result.
//!
//! `status.conditions` is a list, which a JSON merge patch replaces whole, so
//! every writer sends the full list built by [`merge`] from the conditions it
//! knows: a condition keeps its `lastTransitionTime` while its status stays
//! the same, and conditions of other types are kept.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub use crate::crd::{CONDITION_LISTENING, CONDITION_READY};

/// A condition of `type_`, true or false, as of `now`.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: truncate(message.into()),
        observed_generation,
        last_transition_time: from_chrono(now),
    }
}

/// `previous` with `updates` applied: an update replaces the condition of its
/// type, keeping the old `lastTransitionTime` if the status did not change.
/// The result is sorted by type, so equal inputs give equal lists.
pub fn merge(
    previous: &[Condition],
    updates: impl IntoIterator<Item = Condition>,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = previous.to_vec();
    for mut update in updates {
        match merged.iter_mut().find(|c| c.type_ == update.type_) {
            Some(old) => {
                if old.status == update.status {
                    update.last_transition_time = old.last_transition_time.clone();
                }
                *old = update;
            }
            None => merged.push(update),
        }
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

/// Whether `conditions` already say `update` (type, status, reason and
/// message), so that writing it would change nothing a reader cares about.
pub fn says(conditions: &[Condition], update: &Condition) -> bool {
    conditions.iter().any(|c| {
        c.type_ == update.type_
            && c.status == update.status
            && c.reason == update.reason
            && c.message == update.message
    })
}

/// Second precision, as the API server stores it.
pub fn from_chrono(time: DateTime<Utc>) -> Time {
    Time(Timestamp::from_second(time.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The API server limits a condition message to 32768 bytes.
fn truncate(mut message: String) -> String {
    const MAX: usize = 32 * 1024;
    if message.len() > MAX {
        let mut end = MAX - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_transition_moves_the_time_and_a_repeat_keeps_it() {
        let ready = condition(
            CONDITION_READY,
            true,
            "ScaleSetReady",
            "id 5",
            Some(1),
            at(0),
        );
        let listening = condition(CONDITION_LISTENING, false, "Connecting", "", Some(1), at(0));
        let first = merge(&[], [listening, ready]);
        assert_eq!(first[0].type_, CONDITION_LISTENING, "sorted by type");

        let again = condition(
            CONDITION_READY,
            true,
            "ScaleSetReady",
            "id 6",
            Some(2),
            at(10),
        );
        let second = merge(&first, [again]);
        let ready = second.iter().find(|c| c.type_ == CONDITION_READY).unwrap();
        assert_eq!(
            ready.last_transition_time,
            from_chrono(at(0)),
            "same status"
        );
        assert_eq!(ready.message, "id 6");
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!(second.len(), 2, "Listening kept");

        let failed = condition(CONDITION_READY, false, "Conflict", "taken", Some(2), at(20));
        let third = merge(&second, [failed.clone()]);
        let ready = third.iter().find(|c| c.type_ == CONDITION_READY).unwrap();
        assert_eq!(
            ready.last_transition_time,
            from_chrono(at(20)),
            "a transition"
        );
        assert!(says(&third, &failed));
        assert!(!says(&second, &failed));
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(20_000);
        let c = condition(CONDITION_READY, false, "X", long, None, at(0));
        assert!(c.message.len() <= 32 * 1024);
        assert!(c.message.ends_with("..."));
    }
}
