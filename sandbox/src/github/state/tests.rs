//! Unit tests of the state machine: time is driven by hand.

use super::*;
use crate::github::messages::EventKind;

const REQUEUE: Duration = Duration::from_secs(60);
const IDLE: Duration = Duration::from_secs(3600);

fn new_state() -> (State, Instant) {
    let now = Instant::now();
    let settings = Settings {
        requeue_after: REQUEUE,
        session_idle_timeout: IDLE,
    };
    (State::new(settings, now, DateTime::UNIX_EPOCH, 0x1234), now)
}

fn org(name: &str) -> Scope {
    Scope::Organization(name.to_string())
}

/// A scale set called `name` with everything else defaulted.
fn add_scale_set(s: &mut State, tenant: u32, name: &str, now: Instant) -> ScaleSetView {
    let new = NewScaleSet {
        name: name.into(),
        ..Default::default()
    };
    s.create_scale_set(tenant, new, now).expect("created")
}

/// A state with tenant 1 (`my-org`) holding scale set `arm` with a session.
fn with_scale_set() -> (State, Instant, i64, String) {
    let (mut s, now) = new_state();
    let tenant = s.tenant(&org("my-org"));
    let set = add_scale_set(&mut s, tenant, "arm", now);
    let session = s
        .create_session(tenant, set.id, "listener", now)
        .expect("session");
    (s, now, set.id, session.session_id)
}

/// Queues a default job and returns its runner request id.
fn queue(s: &mut State, set: i64, now: Instant) -> i64 {
    s.queue_job(set, NewJob::default(), now).expect("queued").0
}

/// Queues a default job and acquires it for the session.
fn acquired_job(s: &mut State, set: i64, session: &str, now: Instant) -> i64 {
    let id = queue(s, set, now);
    s.acquire(set, session, &[id], now).expect("acquired");
    id
}

/// One poll that must hand out a message.
fn poll_message(s: &mut State, set: i64, session: &str, last: i64, now: Instant) -> Delivery {
    s.poll(set, session, last, now)
        .expect("poll")
        .expect("a message")
}

fn kinds(delivery: &Delivery) -> Vec<(&'static str, i64)> {
    delivery
        .events
        .iter()
        .map(|e| (e.kind.message_type(), e.job.runner_request_id))
        .collect()
}

/// Polls once and acknowledges what it got.
fn drain(s: &mut State, set: i64, session: &str, now: Instant) -> Vec<(&'static str, i64)> {
    let mut all = Vec::new();
    while let Some(d) = s.poll(set, session, 0, now).expect("poll") {
        all.extend(kinds(&d));
        s.acknowledge(set, session, d.message_id, now).expect("ack");
    }
    all
}

#[test]
fn config_paths_parse_into_scopes() {
    assert_eq!(Scope::from_config_path("my-org"), Some(org("my-org")));
    assert_eq!(Scope::from_config_path("/my-org/"), Some(org("my-org")));
    assert_eq!(
        Scope::from_config_path("my-org/my-repo"),
        Some(Scope::Repository {
            owner: "my-org".into(),
            repo: "my-repo".into()
        })
    );
    assert_eq!(
        Scope::from_config_path("enterprises/acme"),
        Some(Scope::Enterprise("acme".into()))
    );
    assert_eq!(Scope::from_config_path(""), None);
    assert_eq!(Scope::from_config_path("a/b/c"), None);
    assert_eq!(Scope::from_config_path("a//b"), None);
    let repo = Scope::Repository {
        owner: "o".into(),
        repo: "r".into(),
    };
    assert_eq!(Scope::from_config_path(&repo.path()), Some(repo));
}

#[test]
fn tenants_are_per_scope_without_case() {
    let (mut s, _) = new_state();
    let a = s.tenant(&org("my-org"));
    let b = s.tenant(&Scope::Enterprise("acme".into()));
    assert_ne!(a, b);
    assert_eq!(s.tenant(&org("My-Org")), a);
    assert_eq!(s.scope(b), Some(&Scope::Enterprise("acme".into())));
    assert_eq!(s.scope(0), None);
}

#[test]
fn the_default_group_exists_and_groups_are_found_without_case() {
    let (mut s, _) = new_state();
    let groups = s.runner_groups(Some("default"));
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].id, groups[0].name.as_str(), groups[0].is_default),
        (1, "Default", true)
    );
    let id = s.add_runner_group("gpu");
    assert_ne!(id, DEFAULT_RUNNER_GROUP_ID);
    assert_eq!(s.add_runner_group("GPU"), id, "same name, same group");
    assert_eq!(s.runner_groups(None).len(), 2);
    assert!(s.runner_groups(Some("missing")).is_empty());
}

#[test]
fn a_new_scale_set_gets_its_name_as_label_and_the_default_group() {
    let (mut s, now) = new_state();
    let tenant = s.tenant(&org("my-org"));
    let set = add_scale_set(&mut s, tenant, "arm", now);
    assert_eq!(set.labels, vec!["arm".to_string()]);
    assert_eq!(
        (set.runner_group_id, set.runner_group_name.as_str()),
        (1, "Default")
    );
    assert_eq!(set.scope, "my-org");
    assert_eq!(set.statistics, Statistics::default());
    assert_eq!(s.find_scale_sets(tenant, Some(1), Some("ARM")).len(), 1);
    assert!(
        s.find_scale_sets(tenant, Some(2), Some("arm")).is_empty(),
        "other group"
    );
}

#[test]
fn scale_set_names_are_unique_per_tenant() {
    let (mut s, now) = new_state();
    let a = s.tenant(&org("a"));
    let b = s.tenant(&org("b"));
    let new = || NewScaleSet {
        name: "arm".into(),
        ..Default::default()
    };
    let first = s.create_scale_set(a, new(), now).expect("created");
    assert_eq!(
        s.create_scale_set(a, new(), now),
        Err(StateError::ScaleSetExists("arm".into()))
    );
    let other = s
        .create_scale_set(b, new(), now)
        .expect("another tenant may use the name");
    assert_eq!(
        s.scale_set(Some(b), first.id),
        Err(StateError::ScaleSetNotFound(first.id))
    );
    assert!(s.scale_set(Some(b), other.id).is_ok());
    assert!(
        s.scale_set(None, first.id).is_ok(),
        "the handle sees every tenant"
    );
}

#[test]
fn create_rejects_unknown_groups_and_empty_names() {
    let (mut s, now) = new_state();
    let t = s.tenant(&org("a"));
    let bad_group = NewScaleSet {
        name: "x".into(),
        runner_group_id: Some(42),
        ..Default::default()
    };
    assert_eq!(
        s.create_scale_set(t, bad_group, now),
        Err(StateError::RunnerGroupNotFound(42))
    );
    let no_name = NewScaleSet {
        name: "  ".into(),
        ..Default::default()
    };
    assert!(matches!(
        s.create_scale_set(t, no_name, now),
        Err(StateError::Invalid(_))
    ));
}

#[test]
fn update_changes_only_what_the_patch_names() {
    let (mut s, now) = new_state();
    let t = s.tenant(&org("a"));
    let group = s.add_runner_group("gpu");
    let settings = RunnerSettings {
        ephemeral: true,
        is_elastic: false,
        disable_update: true,
    };
    let set = s
        .create_scale_set(
            t,
            NewScaleSet {
                name: "arm".into(),
                labels: vec!["arm".into(), "fast".into()],
                settings,
                ..Default::default()
            },
            now,
        )
        .expect("created");
    let patch = ScaleSetPatch {
        runner_group_id: Some(group),
        settings: RunnerSettingsPatch {
            is_elastic: Some(true),
            ..Default::default()
        },
        ..Default::default()
    };
    let updated = s.update_scale_set(t, set.id, patch).expect("updated");
    assert_eq!(updated.name, "arm");
    assert_eq!(updated.labels, vec!["arm".to_string(), "fast".to_string()]);
    assert_eq!(
        (updated.runner_group_id, updated.runner_group_name.as_str()),
        (group, "gpu")
    );
    assert_eq!(
        updated.settings,
        RunnerSettings {
            ephemeral: true,
            is_elastic: true,
            disable_update: true
        }
    );
    add_scale_set(&mut s, t, "x86", now);
    let rename = ScaleSetPatch {
        name: Some("X86".into()),
        ..Default::default()
    };
    assert_eq!(
        s.update_scale_set(t, set.id, rename),
        Err(StateError::ScaleSetExists("X86".into()))
    );
}

#[test]
fn one_session_per_scale_set() {
    let (mut s, now, set, session) = with_scale_set();
    match s.create_session(1, set, "second", now) {
        Err(StateError::SessionConflict { session_id, .. }) => assert_eq!(session_id, session),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let refreshed = s
        .refresh_session(1, set, &session, now)
        .expect("refresh the active one");
    assert_eq!(refreshed.session_id, session);
    assert_eq!(
        s.refresh_session(1, set, "00000000-0000-4000-8000-000000000000", now),
        Err(StateError::SessionExpired(
            "00000000-0000-4000-8000-000000000000".into()
        ))
    );
    s.delete_session(1, set, &session).expect("deleted");
    s.delete_session(1, set, &session)
        .expect("deleting again is fine");
    assert_eq!(
        s.refresh_session(1, set, &session, now),
        Err(StateError::SessionExpired(session.clone()))
    );
    let next = s.create_session(1, set, "second", now).expect("free again");
    assert_ne!(next.session_id, session);
}

#[test]
fn sessions_are_uuid_shaped() {
    let (_, _, _, session) = with_scale_set();
    let groups: Vec<usize> = session.split('-').map(str::len).collect();
    assert_eq!(groups, vec![8, 4, 4, 4, 12]);
    assert_eq!(session.as_bytes()[14], b'4', "version 4");
}

#[test]
fn a_job_walks_through_its_life_and_the_statistics_follow() {
    let (mut s, now, set, session) = with_scale_set();
    let id = queue(&mut s, set, now);
    assert_eq!(s.statistics(set).total_available_jobs, 1);

    let first = poll_message(&mut s, set, &session, 0, now);
    assert_eq!(kinds(&first), vec![("JobAvailable", id)]);
    assert_eq!(first.statistics.total_available_jobs, 1);
    assert_eq!(first.events[0].job.owner_name, "runway-dev");
    assert_eq!(first.events[0].job.repository_name, "example");
    assert_eq!(first.events[0].job.request_labels, vec!["arm".to_string()]);
    s.acknowledge(set, &session, first.message_id, now)
        .expect("ack");

    assert_eq!(s.acquire(set, &session, &[id], now), Ok(vec![id]));
    let stats = s.statistics(set);
    assert_eq!(
        (
            stats.total_available_jobs,
            stats.total_acquired_jobs,
            stats.total_assigned_jobs
        ),
        (0, 1, 1)
    );

    let runner = s.register_runner(1, set, "arm-abc").expect("registered");
    assert_eq!(
        (
            s.statistics(set).total_registered_runners,
            s.statistics(set).total_idle_runners
        ),
        (1, 1)
    );
    s.start_job(id, "ARM-abc", now).expect("started");
    let stats = s.statistics(set);
    assert_eq!(
        (
            stats.total_acquired_jobs,
            stats.total_assigned_jobs,
            stats.total_running_jobs,
            stats.total_busy_runners,
            stats.total_idle_runners
        ),
        (0, 1, 1, 1, 0)
    );

    s.complete_job(id, "succeeded", now).expect("completed");
    assert_eq!(
        s.statistics(set),
        Statistics::default(),
        "the ephemeral runner is gone too"
    );
    assert_eq!(
        s.runner(1, runner.id),
        Err(StateError::RunnerNotFound(runner.id))
    );

    let events = poll_message(&mut s, set, &session, first.message_id, now);
    assert_eq!(
        kinds(&events),
        vec![
            ("JobAssigned", id),
            ("JobStarted", id),
            ("JobCompleted", id)
        ]
    );
    assert_eq!(
        events.events[2].kind,
        EventKind::Completed {
            result: "succeeded".into(),
            runner_id: runner.id,
            runner_name: "arm-abc".into()
        }
    );
    assert!(events.events[2].job.finish_time.is_some());
    assert!(events.events[1].job.runner_assign_time.is_some());
    let view = s.snapshot();
    let job = view.job(id).expect("kept in the snapshot");
    assert_eq!(
        (job.state, job.result.as_deref(), job.runner_id),
        (JobState::Completed, Some("succeeded"), Some(runner.id))
    );
}

#[test]
fn a_busy_runner_cannot_be_removed() {
    let (mut s, now, set, session) = with_scale_set();
    let id = acquired_job(&mut s, set, &session, now);
    let runner = s.register_runner(1, set, "r1").expect("registered");
    s.start_job(id, "r1", now).expect("started");
    assert_eq!(
        s.remove_runner(1, runner.id),
        Err(StateError::RunnerBusy {
            id: runner.id,
            name: "r1".into(),
            runner_request_id: id
        })
    );
    s.complete_job(id, "failed", now).expect("completed");
    assert_eq!(
        s.remove_runner(1, runner.id),
        Err(StateError::RunnerNotFound(runner.id))
    );
}

#[test]
fn an_idle_runner_is_removed_and_only_within_its_tenant() {
    let (mut s, _, set, _) = with_scale_set();
    let runner = s.register_runner(1, set, "r1").expect("registered");
    let other = s.tenant(&org("other"));
    assert_eq!(
        s.remove_runner(other, runner.id),
        Err(StateError::RunnerNotFound(runner.id))
    );
    assert_eq!(s.runner(1, runner.id).map(|r| r.busy), Ok(false));
    s.remove_runner(1, runner.id).expect("removed");
    assert!(s.runners_named(1, "r1").is_empty());
}

#[test]
fn runner_names_are_unique_per_tenant_without_case() {
    let (mut s, now, set, _) = with_scale_set();
    let other = add_scale_set(&mut s, 1, "x86", now);
    let runner = s.register_runner(1, set, "runner-1").expect("registered");
    assert_eq!(
        s.register_runner(1, other.id, "RUNNER-1"),
        Err(StateError::RunnerExists {
            id: runner.id,
            name: "runner-1".into(),
            scale_set_id: set
        })
    );
    let elsewhere = s.tenant(&org("elsewhere"));
    let foreign = add_scale_set(&mut s, elsewhere, "arm", now);
    assert!(s.register_runner(elsewhere, foreign.id, "runner-1").is_ok());
    assert_eq!(s.runners_named(1, "Runner-1").len(), 1);
}

#[test]
fn start_needs_an_assigned_job_and_an_idle_runner_of_its_scale_set() {
    let (mut s, now, set, session) = with_scale_set();
    let other = add_scale_set(&mut s, 1, "x86", now);
    let a = queue(&mut s, set, now);
    let b = queue(&mut s, set, now);
    s.register_runner(1, other.id, "foreign")
        .expect("registered");
    s.register_runner(1, set, "r1").expect("registered");
    assert_eq!(
        s.start_job(a, "r1", now),
        Err(StateError::JobWrongState {
            id: a,
            state: JobState::Available,
            expected: "assigned"
        })
    );
    s.acquire(set, &session, &[a, b], now).expect("acquired");
    assert_eq!(
        s.start_job(a, "foreign", now),
        Err(StateError::RunnerNameNotFound {
            name: "foreign".into(),
            scale_set_id: set
        })
    );
    s.start_job(a, "r1", now).expect("started");
    assert!(
        matches!(s.start_job(b, "r1", now), Err(StateError::RunnerBusy { runner_request_id, .. }) if runner_request_id == a)
    );
    assert_eq!(s.start_job(9, "r1", now), Err(StateError::JobNotFound(9)));
    s.complete_job(a, "succeeded", now).expect("completed");
    assert!(matches!(
        s.complete_job(a, "succeeded", now),
        Err(StateError::JobWrongState { .. })
    ));
}

#[test]
fn completing_a_job_nobody_started_needs_no_runner() {
    let (mut s, now, set, session) = with_scale_set();
    let id = queue(&mut s, set, now);
    s.complete_job(id, "canceled", now).expect("completed");
    let all = drain(&mut s, set, &session, now);
    assert_eq!(all, vec![("JobAvailable", id), ("JobCompleted", id)]);
    assert_eq!(s.statistics(set), Statistics::default());
}

#[test]
fn acquire_takes_only_this_scale_sets_available_jobs_and_is_idempotent() {
    let (mut s, now, set, session) = with_scale_set();
    let other = add_scale_set(&mut s, 1, "x86", now);
    let mine = queue(&mut s, set, now);
    let theirs = queue(&mut s, other.id, now);
    assert_eq!(
        s.acquire(set, &session, &[mine, theirs, 77, mine], now),
        Ok(vec![mine])
    );
    assert_eq!(
        s.acquire(set, &session, &[mine], now),
        Ok(vec![mine]),
        "a retry gets the same answer"
    );
    assert_eq!(s.statistics(other.id).total_available_jobs, 1);
    let all = drain(&mut s, set, &session, now);
    assert_eq!(
        all,
        vec![("JobAvailable", mine), ("JobAssigned", mine)],
        "one JobAssigned only"
    );
    assert_eq!(
        s.acquire(set, "not-the-session", &[mine], now),
        Err(StateError::SessionExpired("not-the-session".into()))
    );
}

#[test]
fn an_assigned_job_nobody_starts_is_requeued_three_times_then_canceled() {
    let (mut s, t0, set, session) = with_scale_set();
    let id = acquired_job(&mut s, set, &session, t0);
    drain(&mut s, set, &session, t0);
    assert_eq!(s.next_deadline(), Some(t0 + REQUEUE));

    s.advance(t0 + REQUEUE - Duration::from_millis(1));
    assert!(drain(&mut s, set, &session, t0).is_empty(), "not yet");

    for round in 1..=MAX_REQUEUES {
        let at = t0 + REQUEUE * round;
        s.advance(at);
        assert_eq!(
            drain(&mut s, set, &session, at),
            vec![("JobCompleted", id), ("JobAssigned", id)],
            "round {round}"
        );
        assert_eq!(
            s.statistics(set).total_assigned_jobs,
            1,
            "still assigned after requeue {round}"
        );
        assert_eq!(s.snapshot().job(id).map(|j| j.requeues), Some(round));
    }
    let end = t0 + REQUEUE * (MAX_REQUEUES + 1);
    s.advance(end);
    assert_eq!(
        drain(&mut s, set, &session, end),
        vec![("JobCompleted", id)]
    );
    let snapshot = s.snapshot();
    let job = snapshot.job(id).expect("job");
    assert_eq!(
        (job.state, job.result.as_deref()),
        (JobState::Completed, Some(CANCELED))
    );
    assert_eq!(s.statistics(set).total_assigned_jobs, 0);
    assert_eq!(
        s.next_deadline(),
        Some(end + IDLE),
        "no requeue is pending any more"
    );
}

#[test]
fn requeues_that_fell_due_while_nobody_looked_are_all_applied() {
    let (mut s, t0, set, session) = with_scale_set();
    let id = acquired_job(&mut s, set, &session, t0);
    drain(&mut s, set, &session, t0);
    let late = t0 + REQUEUE * 10;
    s.advance(late);
    let events = drain(&mut s, set, &session, late);
    assert_eq!(events.len(), 2 * MAX_REQUEUES as usize + 1);
    assert_eq!(events.last(), Some(&("JobCompleted", id)));
    let canceled = s
        .snapshot()
        .jobs
        .into_iter()
        .find(|j| j.runner_request_id == id)
        .map(|j| (j.state, j.requeues));
    assert_eq!(canceled, Some((JobState::Completed, MAX_REQUEUES)));
}

#[test]
fn a_started_job_is_not_requeued() {
    let (mut s, t0, set, session) = with_scale_set();
    let id = acquired_job(&mut s, set, &session, t0);
    s.register_runner(1, set, "r1").expect("registered");
    s.start_job(id, "r1", t0 + Duration::from_secs(1))
        .expect("started");
    s.advance(t0 + REQUEUE * 5);
    assert_eq!(
        s.snapshot().job(id).map(|j| (j.state, j.requeues)),
        Some((JobState::Running, 0))
    );
    assert_eq!(
        s.next_deadline(),
        Some(t0 + IDLE),
        "only the idle session is left to time out"
    );
}

#[test]
fn a_session_expires_when_idle_but_not_during_a_poll() {
    let (mut s, t0, set, session) = with_scale_set();
    s.poll_started(set, &session, Some(5), t0);
    s.advance(t0 + IDLE * 2);
    assert!(s.session_active(set, &session), "a poll is in flight");
    assert_eq!(s.snapshot().sessions[0].max_capacity, Some(5));
    let ended = t0 + IDLE * 2;
    s.poll_ended(set, &session, ended);
    assert_eq!(s.next_deadline(), Some(ended + IDLE));
    let before = s.revision();
    s.advance(ended + IDLE);
    assert!(!s.session_active(set, &session));
    assert!(
        s.revision() > before,
        "pollers are woken when a session goes"
    );
    assert!(s.create_session(1, set, "next", ended + IDLE).is_ok());
}

#[test]
fn polls_of_a_gone_session_fail() {
    let (mut s, now, set, session) = with_scale_set();
    s.expire_sessions();
    assert_eq!(
        s.poll(set, &session, 0, now),
        Err(StateError::SessionExpired(session.clone()))
    );
    assert!(s.snapshot().sessions.is_empty());
}

#[test]
fn at_most_fifty_job_events_per_message() {
    let (mut s, now, set, session) = with_scale_set();
    for _ in 0..60 {
        queue(&mut s, set, now);
    }
    let first = poll_message(&mut s, set, &session, 0, now);
    assert_eq!(first.events.len(), 50);
    assert_eq!(first.statistics.total_available_jobs, 60);
    let second = poll_message(&mut s, set, &session, first.message_id, now);
    assert_eq!(second.events.len(), 10);
    assert_eq!(second.message_id, first.message_id + 1);
}

#[test]
fn deleting_a_scale_set_takes_its_runners_jobs_and_session_along() {
    let (mut s, now, set, session) = with_scale_set();
    queue(&mut s, set, now);
    s.register_runner(1, set, "r1").expect("registered");
    s.delete_scale_set(None, set).expect("deleted");
    let snapshot = s.snapshot();
    assert!(
        snapshot.scale_sets.is_empty() && snapshot.runners.is_empty() && snapshot.jobs.is_empty()
    );
    assert!(!s.session_active(set, &session));
    assert_eq!(
        s.delete_scale_set(None, set),
        Err(StateError::ScaleSetNotFound(set))
    );
    assert_eq!(
        s.queue_job(set, NewJob::default(), now),
        Err(StateError::ScaleSetNotFound(set))
    );
}

#[test]
fn reads_do_not_change_the_revision_but_events_do() {
    let (mut s, now, set, _) = with_scale_set();
    let before = s.revision();
    s.snapshot();
    s.statistics(set);
    s.advance(now);
    assert_eq!(s.revision(), before);
    queue(&mut s, set, now);
    assert!(s.revision() > before);
}

#[test]
fn wall_times_follow_the_monotonic_clock() {
    let (mut s, t0, set, session) = with_scale_set();
    s.queue_job(set, NewJob::default(), t0 + Duration::from_secs(90))
        .expect("queued");
    let d = poll_message(&mut s, set, &session, 0, t0);
    assert_eq!(
        d.events[0].job.queue_time,
        DateTime::UNIX_EPOCH + TimeDelta::seconds(90)
    );
}

#[test]
fn job_times_stamp_queued_started_and_finished_on_the_given_clock() {
    let (mut s, t0, set, session) = with_scale_set();
    let id = acquired_job(&mut s, set, &session, t0);
    assert_eq!(
        s.job_times(id),
        Some(JobTimes {
            queued: t0,
            started: None,
            finished: None
        })
    );
    s.register_runner(1, set, "arm-abc").expect("registered");
    let t1 = t0 + Duration::from_millis(250);
    s.start_job(id, "arm-abc", t1).expect("started");
    let t2 = t1 + Duration::from_millis(40);
    s.complete_job(id, "succeeded", t2).expect("completed");
    assert_eq!(
        s.job_times(id),
        Some(JobTimes {
            queued: t0,
            started: Some(t1),
            finished: Some(t2)
        })
    );
    assert_eq!(s.job_times(id + 1000), None);
}
