use chrono::TimeZone;

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

/// `t0 + secs`.
fn at(secs: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(secs)
}

fn r(name: &str, state: RunnerState, created_secs: i64) -> Runner {
    Runner::new(name, state, at(created_secs))
}

use FailureKind::{AfterRegistration, Startup};
use RunnerState::{Busy, Failed, Finishing, Idle, Pending};

/// (minRunners, maxRunners, assigned jobs, runners, expected).
type Case<T> = (u32, Option<u32>, u32, Vec<Runner>, T);

fn input(min: u32, max: Option<u32>, assigned: u32, runners: Vec<Runner>) -> ScaleInput {
    ScaleInput {
        min_runners: min,
        max_runners: max,
        assigned_jobs: assigned,
        runners,
        failures: FailureHistory::default(),
        now: at(100),
    }
}

fn plan_default(input: &ScaleInput) -> Plan {
    plan(input, &ScalePolicy::default())
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.delete.iter().map(|d| d.name.as_str()).collect()
}

#[test]
fn desired_table() {
    // (min, max, assigned, desired)
    let cases = [
        (0, Some(10), 0, 0),
        (0, Some(10), 3, 3),
        (2, Some(10), 0, 2),
        (2, Some(10), 3, 5),
        (2, Some(10), 8, 10),
        (2, Some(10), 9, 10),
        (2, Some(10), 1000, 10),
        (0, Some(0), 5, 0),
        (5, Some(5), 0, 5),
        (5, Some(5), 3, 5),
        (0, None, 250, 250),
        (3, None, 0, 3),
        (u32::MAX, None, 1, u32::MAX),
        (1, Some(u32::MAX), u32::MAX, u32::MAX),
    ];
    for (min, max, assigned, want) in cases {
        assert_eq!(
            desired_runners(min, max, assigned),
            want,
            "min={min} max={max:?} assigned={assigned}"
        );
    }
}

#[test]
fn creation_table() {
    // (min, max, assigned, runners, create)
    let cases: Vec<Case<u32>> = vec![
        (0, Some(10), 0, vec![], 0),
        (0, Some(10), 3, vec![], 3),
        (2, Some(10), 0, vec![], 2),
        (2, Some(10), 0, vec![r("a", Idle, 0)], 1),
        (2, Some(10), 0, vec![r("a", Pending, 50)], 1),
        (2, Some(10), 1, vec![r("a", Busy, 0), r("b", Idle, 0)], 1),
        (0, Some(10), 3, vec![r("a", Busy, 0), r("b", Busy, 0)], 1),
        (0, Some(3), 10, vec![r("a", Busy, 0)], 2),
        (
            0,
            Some(3),
            10,
            vec![r("a", Busy, 0), r("b", Busy, 0), r("c", Busy, 0)],
            0,
        ),
        (0, None, 40, vec![], 40),
        // A finishing runner neither fills a slot nor blocks one.
        (1, Some(1), 0, vec![r("a", Finishing, 0)], 1),
        // Failed runners are replaced (no backoff for one failure).
        (
            2,
            Some(2),
            0,
            vec![r("a", Failed(Startup), 0), r("b", Idle, 0)],
            1,
        ),
        (
            0,
            Some(2),
            2,
            vec![r("a", Failed(AfterRegistration), 0), r("b", Busy, 0)],
            1,
        ),
    ];
    for (i, (min, max, assigned, runners, want)) in cases.into_iter().enumerate() {
        let plan = plan_default(&input(min, max, assigned, runners));
        assert_eq!(plan.create, want, "case {i}: {plan:?}");
        assert_eq!(plan.held_back, 0, "case {i}");
    }
}

#[test]
fn scale_down_table() {
    // (min, max, assigned, runners, deleted names in order)
    let cases: Vec<Case<Vec<&str>>> = vec![
        (0, Some(10), 0, vec![r("a", Idle, 0)], vec!["a"]),
        (1, Some(10), 0, vec![r("a", Idle, 0)], vec![]),
        // Oldest idle first.
        (
            1,
            Some(10),
            0,
            vec![r("new", Idle, 50), r("old", Idle, 10), r("mid", Idle, 30)],
            vec!["old", "mid"],
        ),
        // Same age: by name.
        (
            0,
            Some(10),
            0,
            vec![r("b", Idle, 0), r("a", Idle, 0)],
            vec!["a", "b"],
        ),
        // Busy never.
        (
            0,
            Some(10),
            0,
            vec![r("a", Busy, 0), r("b", Busy, 1)],
            vec![],
        ),
        // Pending never (to scale down).
        (
            0,
            Some(10),
            0,
            vec![r("a", Pending, 90), r("b", Pending, 95)],
            vec![],
        ),
        // Excess counts busy and pending but removes idle only.
        (
            1,
            Some(10),
            0,
            vec![r("a", Busy, 0), r("b", Pending, 90), r("c", Idle, 0)],
            vec!["c"],
        ),
        // maxRunners lowered below the busy count: idle go, busy stay.
        (
            0,
            Some(1),
            5,
            vec![r("a", Busy, 0), r("b", Busy, 0), r("c", Idle, 0)],
            vec!["c"],
        ),
        // Finishing runners are not deleted again.
        (0, Some(10), 0, vec![r("a", Finishing, 0)], vec![]),
    ];
    for (i, (min, max, assigned, runners, want)) in cases.into_iter().enumerate() {
        let plan = plan_default(&input(min, max, assigned, runners));
        assert_eq!(names(&plan), want, "case {i}: {plan:?}");
        assert_eq!(plan.create, 0, "case {i}");
        assert!(
            plan.delete
                .iter()
                .all(|d| d.reason == DeleteReason::ScaleDown)
        );
    }
}

#[test]
fn steady_state_does_nothing() {
    let plan = plan_default(&input(
        2,
        Some(10),
        1,
        vec![r("a", Busy, 0), r("b", Idle, 0), r("c", Idle, 0)],
    ));
    assert_eq!(plan.desired, 3);
    assert_eq!((plan.create, plan.delete.len()), (0, 0));
}

#[test]
fn busy_runner_is_never_deleted_whatever_the_inputs() {
    for min in 0..3 {
        for max in [Some(0), Some(1), Some(3), None] {
            for assigned in 0..4 {
                let runners = vec![
                    r("busy1", Busy, 0),
                    r("busy2", Busy, 99),
                    r("idle", Idle, 0),
                    r("pending", Pending, 99),
                    r("gone", Failed(Startup), 0),
                ];
                let plan = plan_default(&input(min, max, assigned, runners));
                assert!(
                    !names(&plan).iter().any(|n| n.starts_with("busy")),
                    "{min} {max:?} {assigned}: {plan:?}"
                );
                assert!(!names(&plan).contains(&"pending"));
            }
        }
    }
}

#[test]
fn creations_never_exceed_max() {
    for max in 0..6 {
        for assigned in 0..8 {
            for busy in 0..4 {
                let runners: Vec<Runner> = (0..busy)
                    .map(|i| r(&format!("b{i}"), Busy, 0))
                    .chain([r("p", Pending, 90), r("f", Failed(Startup), 0)])
                    .collect();
                let plan = plan_default(&input(1, Some(max), assigned, runners));
                let kept = busy + 1; // busy + the fresh pending one
                assert!(
                    plan.create + kept <= max.max(kept),
                    "max={max} assigned={assigned} busy={busy}: {plan:?}"
                );
            }
        }
    }
}

#[test]
fn failed_runners_are_deleted_and_free_their_slot() {
    let plan = plan_default(&input(
        0,
        Some(2),
        2,
        vec![
            r("f1", Failed(Startup), 0),
            r("f2", Failed(AfterRegistration), 0),
        ],
    ));
    assert_eq!(plan.deleted(DeleteReason::Failed), ["f1", "f2"]);
    assert_eq!(plan.create, 2);
    assert_eq!(plan.startup_failures, 1);
}

#[test]
fn failed_runner_is_deleted_even_when_nothing_is_wanted() {
    let plan = plan_default(&input(0, Some(0), 0, vec![r("f", Failed(Startup), 0)]));
    assert_eq!(plan.deleted(DeleteReason::Failed), ["f"]);
    assert_eq!(plan.create, 0);
}

#[test]
fn pending_counts_until_the_timeout() {
    let policy = ScalePolicy::default();
    let created = 0;
    // Just before the timeout: counts, no replacement, requeue at the deadline.
    let mut i = input(0, Some(1), 1, vec![r("p", Pending, created)]);
    i.now = at(created) + policy.pending_timeout - TimeDelta::seconds(1);
    let plan = super::plan(&i, &policy);
    assert_eq!((plan.create, plan.delete.len()), (0, 0));
    assert_eq!(plan.requeue_at, Some(at(created) + policy.pending_timeout));

    // At the timeout: deleted, no longer counted, replaced.
    i.now = at(created) + policy.pending_timeout;
    let plan = super::plan(&i, &policy);
    assert_eq!(plan.deleted(DeleteReason::StuckPending), ["p"]);
    assert_eq!(plan.create, 1);
    assert_eq!(plan.startup_failures, 1);
}

#[test]
fn stuck_pending_runners_stop_counting_against_max() {
    let policy = ScalePolicy::default();
    let mut i = input(
        0,
        Some(3),
        3,
        vec![
            r("s1", Pending, 0),
            r("s2", Pending, 0),
            r("fresh", Pending, 590),
        ],
    );
    i.now = at(0) + policy.pending_timeout + TimeDelta::seconds(5);
    let plan = super::plan(&i, &policy);
    assert_eq!(plan.deleted(DeleteReason::StuckPending), ["s1", "s2"]);
    assert_eq!(plan.create, 2);
    // The stuck ones go away, so pods stay at max + those being deleted.
}

#[test]
fn custom_pending_timeout() {
    let policy = ScalePolicy {
        pending_timeout: TimeDelta::seconds(30),
        ..ScalePolicy::default()
    };
    let plan = plan(&input(0, Some(5), 1, vec![r("p", Pending, 60)]), &policy);
    assert_eq!(plan.deleted(DeleteReason::StuckPending), ["p"]);
}

#[test]
fn outdated_idle_runners_are_replaced() {
    let plan = plan_default(&input(
        2,
        Some(10),
        0,
        vec![r("old", Idle, 0).outdated(), r("new", Idle, 0)],
    ));
    assert_eq!(plan.deleted(DeleteReason::Outdated), ["old"]);
    assert_eq!(plan.create, 1);
    assert_eq!(plan.startup_failures, 0);
}

#[test]
fn outdated_busy_and_pending_runners_are_left_alone() {
    let plan = plan_default(&input(
        0,
        Some(10),
        2,
        vec![r("b", Busy, 0).outdated(), r("p", Pending, 90).outdated()],
    ));
    assert!(plan.delete.is_empty());
    assert_eq!(plan.create, 0);
}

#[test]
fn outdated_idle_in_excess_is_deleted_once() {
    let plan = plan_default(&input(0, Some(10), 0, vec![r("old", Idle, 0).outdated()]));
    assert_eq!(names(&plan), ["old"]);
    assert_eq!(plan.delete[0].reason, DeleteReason::Outdated);
}

// --- failure budget and backoff ---------------------------------------------

fn history(consecutive: u32, last_secs: i64) -> FailureHistory {
    FailureHistory {
        consecutive,
        last_failure: Some(at(last_secs)),
    }
}

#[test]
fn backoff_table() {
    let policy = ScalePolicy::default(); // 3 free, 5 s base, 2 min max
    // (consecutive, seconds since the last failure, backoff remaining in s)
    let cases = [
        (0, 0, None),
        (1, 0, None),
        (3, 0, None),
        (4, 0, Some(5)),
        (4, 4, Some(1)),
        (4, 5, None),
        (5, 0, Some(10)),
        (6, 0, Some(20)),
        (7, 0, Some(40)),
        (8, 0, Some(80)),
        (9, 0, Some(120)),
        (50, 0, Some(120)),
        (u32::MAX, 0, Some(120)),
        (50, 119, Some(1)),
        (50, 120, None),
    ];
    for (consecutive, ago, want) in cases {
        let h = history(consecutive, 0);
        let got = h
            .backoff_until(&policy, at(ago))
            .map(|until| (until - at(ago)).num_seconds());
        assert_eq!(got, want, "consecutive={consecutive} ago={ago}");
    }
}

#[test]
fn backoff_is_forgotten_after_the_failure_memory() {
    let policy = ScalePolicy {
        backoff_max: TimeDelta::hours(1),
        failure_memory: TimeDelta::minutes(15),
        ..ScalePolicy::default()
    };
    let h = history(30, 0);
    assert!(h.backoff_until(&policy, at(60)).is_some());
    assert_eq!(h.backoff_until(&policy, at(15 * 60)), None);
}

#[test]
fn history_records_and_resets() {
    let mut h = FailureHistory::default();
    h.record_failures(0, at(1));
    assert_eq!(h, FailureHistory::default());
    h.record_failures(2, at(1));
    h.record_failures(3, at(7));
    assert_eq!(h, history(5, 7));
    h.record_success();
    assert_eq!(h, FailureHistory::default());
}

#[test]
fn creations_are_held_back_during_backoff() {
    let mut i = input(2, Some(10), 3, vec![r("a", Busy, 0)]);
    i.failures = history(6, 95); // 20 s backoff from t=95
    let plan = plan_default(&i);
    assert_eq!(plan.create, 0);
    assert_eq!(plan.held_back, 4);
    assert_eq!(plan.requeue_at, Some(at(115)));
}

#[test]
fn creations_resume_after_backoff() {
    let mut i = input(2, Some(10), 3, vec![r("a", Busy, 0)]);
    i.failures = history(6, 95);
    i.now = at(115);
    let plan = plan_default(&i);
    assert_eq!((plan.create, plan.held_back), (4, 0));
}

#[test]
fn failures_in_this_pass_count_towards_the_backoff() {
    // Three free failures already; two more startup failures now.
    let mut i = input(
        0,
        Some(10),
        2,
        vec![r("f1", Failed(Startup), 0), r("f2", Failed(Startup), 0)],
    );
    i.failures = history(3, 10);
    let plan = plan_default(&i);
    assert_eq!(plan.deleted(DeleteReason::Failed), ["f1", "f2"]);
    assert_eq!((plan.create, plan.held_back), (0, 2));
    assert_eq!(plan.startup_failures, 2);
    assert_eq!(plan.requeue_at, Some(at(100 + 10)));
}

#[test]
fn failures_after_registration_do_not_slow_down() {
    let runners = (0..10)
        .map(|n| r(&format!("f{n}"), Failed(AfterRegistration), 0))
        .collect();
    let plan = plan_default(&input(0, Some(10), 10, runners));
    assert_eq!(plan.startup_failures, 0);
    assert_eq!((plan.create, plan.held_back), (10, 0));
}

#[test]
fn a_spot_reclaim_of_a_few_runners_is_replaced_at_once() {
    let runners = vec![
        r("f1", Failed(Startup), 0),
        r("f2", Failed(Startup), 0),
        r("f3", Failed(Startup), 0),
        r("ok", Busy, 0),
    ];
    let plan = plan_default(&input(0, Some(4), 4, runners));
    assert_eq!((plan.create, plan.held_back), (3, 0));
}

/// ARC gives up after 5 failures; Runway keeps trying at the capped delay.
#[test]
fn never_gives_up_after_many_failures() {
    let policy = ScalePolicy::default();
    let mut h = FailureHistory::default();
    let mut now = at(0);
    for _ in 0..100 {
        h.record_failures(1, now);
        let until = h.backoff_until(&policy, now).unwrap_or(now);
        assert!(until - now <= policy.backoff_max);
        now = until;
    }
    let mut i = input(0, Some(1), 1, vec![]);
    i.failures = h;
    i.now = now + policy.backoff_max;
    assert_eq!(plan(&i, &policy).create, 1);
}

#[test]
fn backoff_does_not_hold_back_deletions() {
    let mut i = input(
        0,
        Some(10),
        0,
        vec![r("f", Failed(Startup), 0), r("i", Idle, 0)],
    );
    i.failures = history(20, 100);
    let plan = plan_default(&i);
    assert_eq!(names(&plan), ["f", "i"]);
}

#[test]
fn requeue_is_the_earliest_event() {
    let policy = ScalePolicy::default();
    let mut i = input(
        0,
        Some(10),
        5,
        vec![r("p1", Pending, 50), r("p2", Pending, 20)],
    );
    i.failures = history(4, 99); // 5 s backoff: until t=104
    let plan = super::plan(&i, &policy);
    assert_eq!(plan.requeue_at, Some(at(104)));
    i.failures = FailureHistory::default();
    let plan = super::plan(&i, &policy);
    assert_eq!(plan.requeue_at, Some(at(20) + policy.pending_timeout));
}

#[test]
fn no_requeue_when_nothing_is_time_bound() {
    let plan = plan_default(&input(1, Some(10), 0, vec![r("a", Idle, 0)]));
    assert_eq!(plan.requeue_at, None);
}

#[test]
fn a_burst_from_zero_creates_everything_in_one_plan() {
    let plan = plan_default(&input(0, Some(400), 400, vec![]));
    assert_eq!(plan.create, 400);
}

#[test]
fn job_finished_then_scale_down_to_min() {
    // Two jobs done (finishing), one idle left beyond minRunners = 1.
    let plan = plan_default(&input(
        1,
        Some(10),
        0,
        vec![
            r("done1", Finishing, 0),
            r("done2", Finishing, 0),
            r("i1", Idle, 5),
            r("i2", Idle, 6),
        ],
    ));
    assert_eq!(plan.deleted(DeleteReason::ScaleDown), ["i1"]);
    assert_eq!(plan.create, 0);
}
