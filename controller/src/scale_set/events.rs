//! The Kubernetes Events a runner pass leaves on its `RunnerScaleSet`: one
//! per kind of change (new runners, scale-down, replaced runners), not one
//! per pod, so `kubectl describe rss` stays readable under churn. Pure: the
//! supervisor records what [`scale_events`] returns.

use kube::runtime::events::EventType;

use crate::listener::SkippedMessage;
use crate::runner;
use crate::scaler::DeleteReason;

/// The events for one pass: `(type, reason, note)`. A deletion counts only
/// if the plan asked for it and the pass actually deleted the pod.
pub(super) fn scale_events(outcome: &runner::Outcome) -> Vec<(EventType, &'static str, String)> {
    let desired = outcome.plan.desired;
    let mut events = Vec::new();
    if !outcome.created.is_empty() {
        events.push((
            EventType::Normal,
            "ScaledUp",
            format!(
                "created {} runner(s) for {desired} desired: {}",
                outcome.created.len(),
                names(&outcome.created)
            ),
        ));
    }
    for (reason, type_, kind, what) in [
        (
            DeleteReason::ScaleDown,
            EventType::Normal,
            "ScaledDown",
            "idle runner(s) removed",
        ),
        (
            DeleteReason::Failed,
            EventType::Warning,
            "RunnerFailed",
            "failed runner pod(s) replaced",
        ),
        (
            DeleteReason::StuckPending,
            EventType::Warning,
            "RunnerStuckPending",
            "runner pod(s) pending too long replaced",
        ),
        (
            DeleteReason::Outdated,
            EventType::Normal,
            "RunnerOutdated",
            "idle runner(s) with an old template replaced",
        ),
    ] {
        let gone: Vec<String> = outcome
            .plan
            .delete
            .iter()
            .filter(|d| d.reason == reason && outcome.deleted.contains(&d.name))
            .map(|d| d.name.clone())
            .collect();
        if !gone.is_empty() {
            let note = format!(
                "{} {what} ({desired} desired): {}",
                gone.len(),
                names(&gone)
            );
            events.push((type_, kind, note));
        }
    }
    // One per pod: each names its container, image and kubelet message.
    for failure in &outcome.failed_to_start {
        events.push((
            EventType::Warning,
            failure.blocked.reason(),
            failure.describe(),
        ));
    }
    events
}

/// One Warning Event per message the listener skipped since `reported`
/// (its `skipped_total` when last reported). The listener keeps only the
/// latest skips: older ones unreported are summed up in one more Event.
pub(super) fn skip_events(
    skipped: &[SkippedMessage],
    total: u64,
    reported: u64,
) -> Vec<(EventType, &'static str, String)> {
    const REASON_CHARS: usize = 400;
    let new = total.saturating_sub(reported);
    let shown = usize::try_from(new)
        .unwrap_or(usize::MAX)
        .min(skipped.len());
    let mut events = Vec::new();
    let unshown = new.saturating_sub(shown as u64);
    if unshown > 0 {
        events.push((
            EventType::Warning,
            "MessageSkipped",
            format!(
                "{unshown} more message(s) from GitHub could not be read and were skipped; \
                 see the controller log"
            ),
        ));
    }
    for message in skipped.iter().skip(skipped.len() - shown) {
        let reason: String = message.reason.chars().take(REASON_CHARS).collect();
        events.push((
            EventType::Warning,
            "MessageSkipped",
            format!(
                "message {} from GitHub could not be read after {} tries and was skipped \
                 (jobs in it are not acquired by this scale set): {reason}",
                message.message_id, message.tries
            ),
        ));
    }
    events
}

/// The first few names, and how many more.
fn names(all: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = all
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > SHOWN {
        text.push_str(&format!(" and {} more", all.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::{Deletion, Plan};

    fn names_of(all: &[&str]) -> Vec<String> {
        all.iter().map(|n| (*n).to_string()).collect()
    }

    fn deletion(name: &str, reason: DeleteReason) -> Deletion {
        Deletion {
            name: name.into(),
            reason,
        }
    }

    #[test]
    fn one_event_per_kind_of_change_and_only_for_pods_actually_deleted() {
        let outcome = runner::Outcome {
            plan: Plan {
                desired: 3,
                delete: vec![
                    deletion("idle-a", DeleteReason::ScaleDown),
                    // Planned but not deleted (it took a job meanwhile).
                    deletion("idle-b", DeleteReason::ScaleDown),
                    deletion("dead", DeleteReason::Failed),
                ],
                ..Plan::default()
            },
            created: names_of(&["new-a", "new-b"]),
            // Deleted, but not for a reason the plan gave: no event.
            deleted: names_of(&["idle-a", "dead", "unplanned"]),
            ..runner::Outcome::default()
        };
        assert_eq!(
            scale_events(&outcome),
            vec![
                (
                    EventType::Normal,
                    "ScaledUp",
                    "created 2 runner(s) for 3 desired: new-a, new-b".to_string()
                ),
                (
                    EventType::Normal,
                    "ScaledDown",
                    "1 idle runner(s) removed (3 desired): idle-a".to_string()
                ),
                (
                    EventType::Warning,
                    "RunnerFailed",
                    "1 failed runner pod(s) replaced (3 desired): dead".to_string()
                ),
            ]
        );
    }

    #[test]
    fn a_pod_that_failed_to_start_is_a_warning_naming_its_image() {
        use crate::runner::start::{Blocked, StartFailure};
        let failure = StartFailure {
            pod: "r-1".into(),
            container: "runner".into(),
            image: "example.invalid/runner:1".into(),
            blocked: Blocked::ImagePull,
            message: "Back-off pulling image".into(),
        };
        let outcome = runner::Outcome {
            failed_to_start: vec![failure.clone()],
            ..runner::Outcome::default()
        };
        assert_eq!(
            scale_events(&outcome),
            vec![(EventType::Warning, "ImagePullBackOff", failure.describe())]
        );
        assert!(
            failure
                .describe()
                .starts_with("runner container image \"example.invalid/runner:1\" cannot be pulled: Back-off pulling image (runner pod r-1)")
        );
    }

    #[test]
    fn a_quiet_pass_records_nothing() {
        let outcome = runner::Outcome {
            plan: Plan {
                desired: 2,
                delete: vec![deletion("idle-a", DeleteReason::ScaleDown)],
                ..Plan::default()
            },
            ..runner::Outcome::default()
        };
        assert!(scale_events(&outcome).is_empty());
    }

    fn skipped(message_id: i64) -> SkippedMessage {
        SkippedMessage {
            message_id,
            tries: 5,
            reason: "the body is not a JSON array".into(),
        }
    }

    #[test]
    fn one_warning_per_skipped_message_not_yet_reported() {
        let kept = [skipped(4), skipped(9)];
        let note = |id: i64| {
            format!(
                "message {id} from GitHub could not be read after 5 tries and was skipped (jobs \
                 in it are not acquired by this scale set): the body is not a JSON array"
            )
        };
        // (kept, total, reported) -> notes
        let cases: [(&[SkippedMessage], u64, u64, Vec<String>); 5] = [
            (&[], 0, 0, vec![]),
            (&kept, 2, 2, vec![]),
            (&kept, 2, 1, vec![note(9)]),
            (&kept, 2, 0, vec![note(4), note(9)]),
            (
                &kept,
                5,
                0,
                vec![
                    "3 more message(s) from GitHub could not be read and were skipped; see the \
                     controller log"
                        .to_string(),
                    note(4),
                    note(9),
                ],
            ),
        ];
        for (kept, total, reported, notes) in cases {
            let events = skip_events(kept, total, reported);
            assert!(
                events
                    .iter()
                    .all(|(t, r, _)| *t == EventType::Warning && *r == "MessageSkipped")
            );
            let got: Vec<String> = events.into_iter().map(|(_, _, n)| n).collect();
            assert_eq!(got, notes, "total {total}, reported {reported}");
        }
    }

    #[test]
    fn names_shows_five_and_counts_the_rest() {
        assert_eq!(names(&names_of(&["a", "b"])), "a, b");
        assert_eq!(
            names(&names_of(&["a", "b", "c", "d", "e", "f", "g"])),
            "a, b, c, d, e and 2 more"
        );
    }
}
