use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::github::wire::JobMessage;

fn stats(assigned: i64) -> RunnerScaleSetStatistic {
    RunnerScaleSetStatistic {
        total_assigned_jobs: assigned,
        ..RunnerScaleSetStatistic::default()
    }
}

fn available(id: i64) -> Value {
    json!({"messageType": "JobAvailable", "runnerRequestId": id, "acquireJobUrl": "http://x/acquirejobs"})
}

fn assigned(id: i64) -> Value {
    json!({"messageType": "JobAssigned", "runnerRequestId": id})
}

fn started(id: i64, runner: &str) -> Value {
    json!({
        "messageType": "JobStarted", "runnerRequestId": id, "runnerId": id + 1000,
        "runnerName": runner, "jobId": format!("job-{id}"), "repositoryName": "org/repo",
        "jobWorkflowRef": "org/repo/.github/workflows/ci.yml@refs/heads/main",
        "jobDisplayName": "build", "workflowRunId": 77,
        "runnerAssignTime": "2026-11-21T10:00:00Z"
    })
}

fn completed(id: i64, runner: &str) -> Value {
    json!({
        "messageType": "JobCompleted", "runnerRequestId": id, "runnerId": id + 1000,
        "runnerName": runner, "result": "succeeded"
    })
}

fn message(
    id: i64,
    statistics: Option<RunnerScaleSetStatistic>,
    jobs: &[Value],
) -> ScaleSetMessage {
    let body = serde_json::to_string(jobs).unwrap();
    ScaleSetMessage {
        message_id: id,
        statistics,
        jobs: JobMessage::decode_body(&body).unwrap(),
    }
}

fn limits(min: u32, max: Option<u32>) -> Limits {
    Limits {
        min_runners: min,
        max_runners: max,
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn desired_follows_min_max_and_assigned_jobs() {
    // (min, max, assigned, desired)
    let cases = [
        (0, None, 0, 0),
        (0, None, 3, 3),
        (2, None, 0, 2),
        (2, None, 3, 5),
        (2, Some(4), 3, 4),
        (0, Some(10), 10, 10),
        (0, Some(10), 11, 10),
        (5, Some(3), 0, 3),
        (0, Some(0), 7, 0),
        (1, Some(100), 0, 1),
        (u32::MAX, None, 5, u32::MAX),
    ];
    for (min, max, assigned, expected) in cases {
        let mut tracker = Tracker::new(limits(min, max));
        tracker.on_statistics(Some(&stats(assigned)));
        assert_eq!(
            tracker.demand().desired,
            expected,
            "min {min}, max {max:?}, assigned {assigned}"
        );
        assert_eq!(
            limits(min, max).desired(&Statistics::from(&stats(assigned))),
            expected
        );
    }
}

#[test]
fn a_new_tracker_wants_min_runners() {
    let tracker = Tracker::new(limits(3, Some(10)));
    assert_eq!(tracker.demand().desired, 3);
    assert_eq!(tracker.demand().generation, 0);
    assert!(tracker.demand().busy.is_empty());
    assert!(tracker.demand().completed.is_empty());
    assert_eq!(Tracker::new(limits(3, Some(1))).demand().desired, 1);
}

#[test]
fn statistics_are_clamped_into_u32() {
    let wire = RunnerScaleSetStatistic {
        total_available_jobs: -1,
        total_acquired_jobs: 5,
        total_assigned_jobs: i64::MAX,
        total_running_jobs: 2,
        total_registered_runners: 9,
        total_busy_runners: 2,
        total_idle_runners: 7,
    };
    let ours = Statistics::from(&wire);
    assert_eq!(
        ours,
        Statistics {
            available_jobs: 0,
            acquired_jobs: 5,
            assigned_jobs: u32::MAX,
            running_jobs: 2,
            registered_runners: 9,
            busy_runners: 2,
            idle_runners: 7,
        }
    );
    let mut tracker = Tracker::new(limits(1, Some(50)));
    tracker.on_statistics(Some(&wire));
    assert_eq!(tracker.demand().desired, 50);
}

#[test]
fn max_capacity_is_max_runners_or_max_int32() {
    assert_eq!(limits(0, Some(7)).max_capacity(), 7);
    assert_eq!(limits(0, None).max_capacity(), 2_147_483_647);
}

#[test]
fn job_available_asks_to_acquire_each_id_once_in_order() {
    let mut tracker = Tracker::new(limits(0, None));
    let handling = tracker.on_message(&message(
        1,
        Some(stats(0)),
        &[available(30), available(10), available(30), available(20)],
    ));
    assert_eq!(handling.acquire, vec![30, 10, 20]);
    assert!(handling.started.is_empty() && handling.completed.is_empty());
    assert_eq!(tracker.demand().desired, 0, "not assigned yet");
}

#[test]
fn job_assigned_changes_nothing_but_statistics() {
    let mut tracker = Tracker::new(limits(1, None));
    let handling = tracker.on_message(&message(1, Some(stats(2)), &[assigned(1), assigned(2)]));
    assert_eq!(handling, Handling::default());
    assert_eq!(tracker.demand().desired, 3);
    assert_eq!(tracker.demand().statistics.assigned_jobs, 2);
    assert!(tracker.demand().busy.is_empty());
}

#[test]
fn job_started_marks_the_runner_busy_with_its_job() {
    let mut tracker = Tracker::new(limits(0, None));
    let handling = tracker.on_message(&message(1, None, &[started(5, "runner-a")]));
    assert_eq!(handling.started, names(&["runner-a"]));
    let info = &tracker.demand().busy["runner-a"];
    assert_eq!(info.runner_request_id, 5);
    assert_eq!(info.runner_id, 1005);
    assert_eq!(info.job_id, "job-5");
    assert_eq!(info.repository, "org/repo");
    assert_eq!(info.display_name, "build");
    assert_eq!(info.workflow_run_id, 77);
    assert!(info.workflow_ref.ends_with("@refs/heads/main"));
    assert_eq!(
        info.started.map(|t| t.to_rfc3339()),
        Some("2026-11-21T10:00:00+00:00".to_owned())
    );
}

#[test]
fn job_completed_moves_the_runner_from_busy_to_completed() {
    let mut tracker = Tracker::new(limits(0, None));
    tracker.on_message(&message(
        1,
        None,
        &[started(5, "runner-a"), started(6, "runner-b")],
    ));
    let handling = tracker.on_message(&message(2, None, &[completed(5, "runner-a")]));
    assert_eq!(handling.completed, names(&["runner-a"]));
    let demand = tracker.demand();
    assert_eq!(
        demand.busy.keys().cloned().collect::<Vec<_>>(),
        names(&["runner-b"])
    );
    assert_eq!(
        demand.completed.iter().cloned().collect::<Vec<_>>(),
        names(&["runner-a"])
    );
}

#[test]
fn started_and_completed_in_one_message() {
    let mut tracker = Tracker::new(limits(0, None));
    let handling = tracker.on_message(&message(
        1,
        None,
        &[started(5, "runner-a"), completed(5, "runner-a")],
    ));
    assert_eq!(handling.started, names(&["runner-a"]));
    assert_eq!(handling.completed, names(&["runner-a"]));
    assert!(tracker.demand().busy.is_empty());
    assert!(tracker.demand().completed.contains("runner-a"));
}

#[test]
fn a_completed_runner_is_never_busy_again() {
    let mut tracker = Tracker::new(limits(0, None));
    tracker.on_message(&message(1, None, &[completed(5, "runner-a")]));
    let handling = tracker.on_message(&message(2, None, &[started(5, "runner-a")]));
    assert!(handling.started.is_empty());
    assert!(tracker.demand().busy.is_empty());
}

#[test]
fn completion_without_a_start_is_still_recorded() {
    let mut tracker = Tracker::new(limits(0, None));
    let handling = tracker.on_message(&message(1, None, &[completed(5, "runner-z")]));
    assert_eq!(handling.completed, names(&["runner-z"]));
    assert!(tracker.demand().completed.contains("runner-z"));
}

#[test]
fn messages_without_a_runner_name_are_ignored() {
    // A job canceled before any runner took it (requeue) names no runner.
    let mut tracker = Tracker::new(limits(0, None));
    let handling = tracker.on_message(&message(1, None, &[completed(5, ""), started(6, "")]));
    assert_eq!(handling, Handling::default());
    assert!(tracker.demand().busy.is_empty());
    assert!(tracker.demand().completed.is_empty());
    assert_eq!(tracker.demand().generation, 0);
}

#[test]
fn unknown_job_messages_are_skipped() {
    let mut tracker = Tracker::new(limits(0, None));
    let handling = tracker.on_message(&message(
        1,
        Some(stats(1)),
        &[
            json!({"messageType": "JobSomethingNew", "runnerRequestId": 1}),
            available(2),
        ],
    ));
    assert_eq!(handling.acquire, vec![2]);
    assert_eq!(tracker.demand().desired, 1);
}

#[test]
fn a_message_without_statistics_keeps_the_last_ones() {
    let mut tracker = Tracker::new(limits(1, None));
    tracker.on_message(&message(1, Some(stats(4)), &[]));
    tracker.on_message(&message(2, None, &[assigned(9)]));
    assert_eq!(tracker.demand().desired, 5);
    assert_eq!(tracker.demand().statistics.assigned_jobs, 4);
}

#[test]
fn statistics_can_lower_desired() {
    let mut tracker = Tracker::new(limits(1, Some(10)));
    tracker.on_message(&message(1, Some(stats(6)), &[]));
    assert_eq!(tracker.demand().desired, 7);
    tracker.on_message(&message(2, Some(stats(0)), &[]));
    assert_eq!(tracker.demand().desired, 1);
}

#[test]
fn redelivery_is_idempotent() {
    let messages = [
        message(1, Some(stats(0)), &[available(1), available(2)]),
        message(2, Some(stats(2)), &[assigned(1), assigned(2)]),
        message(3, Some(stats(2)), &[started(1, "runner-a")]),
        message(
            4,
            Some(stats(1)),
            &[completed(1, "runner-a"), started(2, "runner-b")],
        ),
    ];
    for (i, m) in messages.iter().enumerate() {
        let mut tracker = Tracker::new(limits(1, Some(10)));
        for earlier in &messages[..i] {
            tracker.on_message(earlier);
        }
        let first = tracker.on_message(m);
        let after_first = tracker.demand().clone();
        let second = tracker.on_message(m);
        assert_eq!(*tracker.demand(), after_first, "message {}", m.message_id);
        assert_eq!(
            second.acquire, first.acquire,
            "the same ids are acquired again"
        );
        assert!(second.started.is_empty() && second.completed.is_empty());
    }
}

#[test]
fn generation_bumps_once_per_change_and_never_without_one() {
    let mut tracker = Tracker::new(limits(1, None));
    assert_eq!(tracker.demand().generation, 0);
    // Statistics and a busy runner in one message: one bump.
    tracker.on_message(&message(1, Some(stats(1)), &[started(1, "runner-a")]));
    assert_eq!(tracker.demand().generation, 1);
    // The same again: none.
    tracker.on_message(&message(1, Some(stats(1)), &[started(1, "runner-a")]));
    assert_eq!(tracker.demand().generation, 1);
    // JobAvailable alone changes nothing the reconciler sees.
    tracker.on_message(&message(2, Some(stats(1)), &[available(3)]));
    assert_eq!(tracker.demand().generation, 1);
    assert!(!tracker.on_statistics(Some(&stats(1))));
    assert!(!tracker.on_statistics(None));
    assert!(tracker.on_statistics(Some(&stats(2))));
    assert_eq!(tracker.demand().generation, 2);
    // Other statistics change the generation but not desired.
    let mut more = stats(2);
    more.total_idle_runners = 3;
    assert!(tracker.on_statistics(Some(&more)));
    assert_eq!(tracker.demand().generation, 3);
    assert_eq!(tracker.demand().desired, 3);
}

#[test]
fn new_limits_recompute_desired() {
    let mut tracker = Tracker::new(limits(1, Some(10)));
    tracker.on_statistics(Some(&stats(4)));
    assert_eq!(tracker.demand().desired, 5);
    assert!(tracker.set_limits(limits(0, Some(2))));
    assert_eq!(tracker.demand().desired, 2);
    assert_eq!(tracker.limits(), limits(0, Some(2)));
    assert!(!tracker.set_limits(limits(0, Some(2))));
}

#[test]
fn completed_names_are_bounded_oldest_first() {
    let mut tracker = Tracker::new(limits(0, None));
    let total = COMPLETED_MEMORY + 10;
    for i in 0..total {
        tracker.on_message(&message(
            i as i64,
            None,
            &[completed(i as i64, &format!("runner-{i:05}"))],
        ));
    }
    let completed = &tracker.demand().completed;
    assert_eq!(completed.len(), COMPLETED_MEMORY);
    assert!(!completed.contains("runner-00000"));
    assert!(!completed.contains("runner-00009"));
    assert!(completed.contains("runner-00010"));
    assert!(completed.contains(&format!("runner-{:05}", total - 1)));
}

#[test]
fn a_full_job_lifecycle() {
    let mut tracker = Tracker::new(limits(1, Some(5)));
    // (message, acquire, desired, busy, completed)
    type Step = (
        ScaleSetMessage,
        Vec<i64>,
        u32,
        &'static [&'static str],
        &'static [&'static str],
    );
    let steps: Vec<Step> = vec![
        (
            message(
                1,
                Some(stats(0)),
                &[available(1), available(2), available(3)],
            ),
            vec![1, 2, 3],
            1,
            &[],
            &[],
        ),
        (
            message(2, Some(stats(3)), &[assigned(1), assigned(2), assigned(3)]),
            vec![],
            4,
            &[],
            &[],
        ),
        (
            message(3, Some(stats(3)), &[started(1, "r1"), started(2, "r2")]),
            vec![],
            4,
            &["r1", "r2"],
            &[],
        ),
        (
            message(4, Some(stats(2)), &[completed(1, "r1")]),
            vec![],
            3,
            &["r2"],
            &["r1"],
        ),
        (
            message(5, Some(stats(0)), &[completed(2, "r2"), completed(3, "")]),
            vec![],
            1,
            &[],
            &["r1", "r2"],
        ),
    ];
    for (m, acquire, desired, busy, completed) in steps {
        let handling = tracker.on_message(&m);
        let demand = tracker.demand();
        assert_eq!(handling.acquire, acquire, "message {}", m.message_id);
        assert_eq!(demand.desired, desired, "message {}", m.message_id);
        assert_eq!(demand.busy.keys().cloned().collect::<Vec<_>>(), names(busy));
        assert_eq!(
            demand.completed.iter().cloned().collect::<Vec<_>>(),
            names(completed)
        );
    }
}

fn err(make: fn(String, String) -> Error) -> Error {
    make("op".to_owned(), "message".to_owned())
}

#[test]
fn recovery_per_error() {
    let cases: Vec<(Error, Recovery)> = vec![
        (
            err(|operation, message| Error::ScaleSetNotFound { operation, message }),
            Recovery::ScaleSetGone,
        ),
        (
            err(|operation, message| Error::SessionConflict { operation, message }),
            Recovery::Conflict,
        ),
        (
            err(|operation, message| Error::SessionExpired { operation, message }),
            Recovery::NewSession,
        ),
        (
            Error::Unauthorized {
                operation: "op".into(),
                status: 401,
                message: "m".into(),
            },
            Recovery::NewSession,
        ),
        (
            Error::UnexpectedMessageType {
                message_id: 12,
                message_type: "Other".into(),
            },
            Recovery::SkipMessage(12),
        ),
        (
            Error::UndecodableMessage {
                operation: "op".into(),
                message_id: 13,
                problem: "the body is not a JSON array".into(),
            },
            Recovery::Undecodable(13),
        ),
        (
            Error::RateLimited {
                operation: "op".into(),
                status: 429,
                retry_after: Some(Duration::from_secs(9)),
                message: "m".into(),
            },
            Recovery::Retry {
                server_wait: Some(Duration::from_secs(9)),
            },
        ),
        (
            Error::Status {
                operation: "op".into(),
                status: 503,
                message: "m".into(),
            },
            Recovery::Retry { server_wait: None },
        ),
        (
            Error::Status {
                operation: "op".into(),
                status: 404,
                message: "m".into(),
            },
            Recovery::Retry { server_wait: None },
        ),
        (
            Error::Transport {
                operation: "op".into(),
                detail: "reset".into(),
            },
            Recovery::Retry { server_wait: None },
        ),
        (
            Error::Timeout {
                operation: "op".into(),
                timeout: Duration::from_secs(1),
            },
            Recovery::Retry { server_wait: None },
        ),
        (
            Error::Decode {
                operation: "op".into(),
                detail: "bad".into(),
            },
            Recovery::Retry { server_wait: None },
        ),
        (
            Error::Protocol {
                operation: "op".into(),
                problem: "bad".into(),
            },
            Recovery::Retry { server_wait: None },
        ),
        (
            err(|operation, message| Error::AgentExists { operation, message }),
            Recovery::Retry { server_wait: None },
        ),
        (
            Error::Credentials(crate::github::CredentialsError::Missing),
            Recovery::Fatal,
        ),
    ];
    for (error, expected) in cases {
        assert_eq!(recovery(&error), expected, "{error:?}");
    }
}

#[test]
fn message_tries_count_per_message_id() {
    // (message id, expected tries, skip?) in order, bound 3.
    let steps = [
        (5, 1, false),
        (5, 2, false),
        // Another message: its own count.
        (6, 1, false),
        (6, 2, false),
        (6, 3, true),
        (6, 4, true),
        (5, 1, false),
    ];
    let mut tries = MessageTries::default();
    for (i, (id, expected, skip)) in steps.into_iter().enumerate() {
        assert_eq!(tries.failed(id, 3), (expected, skip), "step {i}");
    }
    tries.clear();
    assert_eq!(tries.failed(5, 3), (1, false));
    // A bound of 0 or 1 skips at the first failure.
    assert_eq!(MessageTries::default().failed(1, 0), (1, true));
    assert_eq!(MessageTries::default().failed(1, 1), (1, true));
}

#[test]
fn an_undecodable_element_is_reported_and_the_rest_is_handled() {
    let mut tracker = Tracker::new(limits(0, Some(10)));
    let bad = json!({"messageType": "JobAvailable", "runnerRequestId": "3"});
    let handling = tracker.on_message(&message(
        1,
        Some(stats(2)),
        &[available(1), bad, started(2, "r-2")],
    ));
    assert_eq!(handling.acquire, [1]);
    assert_eq!(handling.started, names(&["r-2"]));
    assert_eq!(handling.undecodable.len(), 1);
    assert_eq!(
        handling.undecodable[0].message_type.as_deref(),
        Some("JobAvailable")
    );
    assert_eq!(tracker.demand().desired, 2);
}

#[test]
fn busy_runners_are_bounded_when_completions_are_lost() {
    assert_eq!(busy_memory(limits(0, None)), BUSY_MEMORY);
    assert_eq!(busy_memory(limits(0, Some(3))), BUSY_MEMORY_MIN);
    assert_eq!(busy_memory(limits(0, Some(1000))), 2000);
    assert_eq!(
        busy_memory(limits(0, Some(u32::MAX))),
        2 * u32::MAX as usize
    );

    let mut tracker = Tracker::new(limits(0, Some(3)));
    // Every JobStarted's JobCompleted is lost.
    let total = BUSY_MEMORY_MIN as i64 + 100;
    for id in 0..total {
        tracker.on_message(&message(id + 1, None, &[started(id, &format!("r-{id}"))]));
    }
    let busy = &tracker.demand().busy;
    assert_eq!(busy.len(), BUSY_MEMORY_MIN);
    // The oldest went first.
    assert!(!busy.contains_key("r-0"));
    assert!(!busy.contains_key("r-99"));
    assert!(busy.contains_key("r-100"));
    assert!(busy.contains_key(&format!("r-{}", total - 1)));
    // A completion still frees its slot, and its order entry with it.
    tracker.on_message(&message(
        total + 1,
        None,
        &[completed(total - 1, &format!("r-{}", total - 1))],
    ));
    assert_eq!(tracker.demand().busy.len(), BUSY_MEMORY_MIN - 1);
    assert_eq!(tracker.busy_order.len(), BUSY_MEMORY_MIN - 1);
}

#[test]
fn skipped_messages_are_kept_bounded_and_counted() {
    let mut tracker = Tracker::new(limits(0, None));
    let generation = tracker.demand().generation;
    for id in 0..(SKIPPED_MEMORY as i64 + 4) {
        tracker.on_skipped(SkippedMessage {
            message_id: id,
            tries: 5,
            reason: "bad".into(),
        });
    }
    let demand = tracker.demand();
    assert_eq!(demand.skipped_total, SKIPPED_MEMORY as u64 + 4);
    assert_eq!(demand.skipped.len(), SKIPPED_MEMORY);
    assert_eq!(demand.skipped[0].message_id, 4);
    assert!(demand.generation > generation, "the reconciler is woken");
}
