//! The listener against the real fake GitHub over HTTP: jobs become
//! demand, restarts resume without conflicts or replays, conflicts back off,
//! a deleted scale set stops it, shutdown deletes the session.
//!
//! Times are milliseconds: a 300 ms long poll, a 10..80 ms listener backoff.

mod common;

use std::time::{Duration, Instant};

use common::{Connected, connected};
use runway_controller::github::ActionsClient;
use runway_controller::listener::{
    Backoff, Demand, Limits, Listener, ListenerConfig, ListenerError, MemoryCheckpoint, Resume,
};
use runway_sandbox::github::{Endpoint, FakeGitHub, NewJob};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const MIN: u32 = 1;
const MAX: u32 = 10;

fn config(scale_set_id: i64) -> ListenerConfig {
    ListenerConfig {
        backoff: Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(80),
        },
        shutdown_timeout: Duration::from_secs(5),
        ..ListenerConfig::new(
            scale_set_id,
            "runway-test",
            Limits {
                min_runners: MIN,
                max_runners: Some(MAX),
            },
        )
    }
}

/// A listener task and its handles.
struct Running {
    task: JoinHandle<Result<(), ListenerError>>,
    demand: watch::Receiver<Demand>,
    stop: watch::Sender<bool>,
    checkpoint: MemoryCheckpoint,
}

fn spawn(client: &ActionsClient, config: ListenerConfig, resume: Resume) -> Running {
    let checkpoint = MemoryCheckpoint::new(resume.clone());
    let (demand_tx, demand) = watch::channel(Demand::default());
    let (stop, stop_rx) = watch::channel(false);
    let listener = Listener::new(client.clone(), checkpoint.clone(), config, demand_tx);
    let task = tokio::spawn(async move { listener.run(resume, stop_rx).await });
    Running {
        task,
        demand,
        stop,
        checkpoint,
    }
}

impl Running {
    /// Waits (5 s at most) until the demand satisfies `done`.
    async fn demand_until(&mut self, what: &str, done: impl Fn(&Demand) -> bool) -> Demand {
        let waited = tokio::time::timeout(Duration::from_secs(5), self.demand.wait_for(&done))
            .await
            .map(|r| r.map(|demand| demand.clone()));
        match waited {
            Ok(Ok(demand)) => demand,
            Ok(Err(_)) => panic!(
                "the listener stopped before {what}: {:?}",
                *self.demand.borrow()
            ),
            Err(_) => panic!("timed out waiting for {what}: {:?}", *self.demand.borrow()),
        }
    }

    /// Asks the listener to stop and waits for it.
    async fn shutdown(self) -> (Result<(), ListenerError>, MemoryCheckpoint) {
        self.stop.send_replace(true);
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the listener stops within 10 s")
            .expect("the listener task does not panic");
        (result, self.checkpoint)
    }
}

/// Waits until `done` holds for the fake, failing after 5 s.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn sessions(fake: &FakeGitHub, scale_set_id: i64) -> Vec<String> {
    fake.snapshot()
        .sessions
        .into_iter()
        .filter(|s| s.scale_set_id == scale_set_id)
        .map(|s| s.session_id)
        .collect()
}

/// The listener is in a poll after everything before it was handled.
async fn polling(fake: &FakeGitHub, scale_set_id: i64) {
    until("the listener to poll", || {
        fake.snapshot()
            .sessions
            .iter()
            .any(|s| s.scale_set_id == scale_set_id && s.polls_in_flight > 0)
    })
    .await;
}

fn queue_jobs(fake: &FakeGitHub, scale_set_id: i64, n: usize) -> Vec<i64> {
    (0..n)
        .map(|_| {
            fake.queue_job(scale_set_id, NewJob::default())
                .runner_request_id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_are_acquired_and_become_desired_runners() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let mut listener = spawn(&client, config(set.id), Resume::default());
    let first = listener
        .demand_until("the first demand", |d| d.desired == MIN)
        .await;
    assert!(first.busy.is_empty() && first.completed.is_empty());

    let ids = queue_jobs(&fake, set.id, 3);
    let demand = listener
        .demand_until("desired = min + 3", |d| d.desired == MIN + 3)
        .await;
    assert_eq!(demand.statistics.assigned_jobs, 3);
    let snapshot = fake.snapshot();
    for id in &ids {
        assert_eq!(
            snapshot.job(*id).map(|j| j.state),
            Some(runway_sandbox::github::JobState::Assigned),
            "job {id}"
        );
    }
    // The poll told the service how many runners it may start.
    assert!(
        snapshot
            .sessions
            .iter()
            .any(|s| s.scale_set_id == set.id && s.max_capacity == Some(MAX))
    );
    let (result, checkpoint) = listener.shutdown().await;
    result.expect("a clean shutdown");
    assert!(checkpoint.resume().last_message_id > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_and_completed_jobs_show_as_busy_and_completed_runners() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let mut listener = spawn(&client, config(set.id), Resume::default());
    let ids = queue_jobs(&fake, set.id, 2);
    listener
        .demand_until("both jobs assigned", |d| d.desired == MIN + 2)
        .await;
    for name in ["runner-a", "runner-b"] {
        client
            .generate_jit_config(set.id, name, "_work")
            .await
            .expect("a JIT config");
    }
    fake.start_job(ids[0], "runner-a").expect("start job 0");
    fake.start_job(ids[1], "runner-b").expect("start job 1");
    let demand = listener
        .demand_until("both runners busy", |d| d.busy.len() == 2)
        .await;
    assert_eq!(demand.busy["runner-a"].runner_request_id, ids[0]);
    assert_eq!(demand.busy["runner-b"].runner_request_id, ids[1]);
    assert!(demand.busy["runner-a"].runner_id > 0);

    fake.complete_job(ids[0], "succeeded")
        .expect("complete job 0");
    let demand = listener
        .demand_until("runner-a completed", |d| d.completed.contains("runner-a"))
        .await;
    assert!(!demand.busy.contains_key("runner-a"));
    assert!(demand.busy.contains_key("runner-b"));
    let demand = listener
        .demand_until("one job left", |d| d.statistics.assigned_jobs == 1)
        .await;
    assert_eq!(demand.desired, MIN + 1);
    listener.shutdown().await.0.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_without_a_conflict_or_a_replay() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let mut first = spawn(&client, config(set.id), Resume::default());
    queue_jobs(&fake, set.id, 3);
    first
        .demand_until("desired = min + 3", |d| d.desired == MIN + 3)
        .await;
    polling(&fake, set.id).await;
    // A crash: no shutdown, the session stays, the checkpoint is what the
    // status would hold.
    first.task.abort();
    let _ = first.task.await;
    let resume = first.checkpoint.resume();
    let old_session = resume.session_id.clone().expect("a recorded session");
    assert_eq!(sessions(&fake, set.id), vec![old_session.clone()]);
    assert!(resume.last_message_id > 0);
    let acquired = fake.request_count(Endpoint::AcquireJobs);
    let creates = fake.request_count(Endpoint::CreateSession);
    let polls = fake.request_count(Endpoint::GetMessage);

    let mut second = spawn(&client, config(set.id), resume);
    let demand = second
        .demand_until("the session's statistics", |d| d.desired == MIN + 3)
        .await;
    assert_eq!(demand.statistics.assigned_jobs, 3);
    until("two more polls", || {
        fake.request_count(Endpoint::GetMessage) >= polls + 2
    })
    .await;
    // The recorded session was deleted first: one create, no 409 retries.
    assert_eq!(fake.request_count(Endpoint::DeleteSession), 1);
    assert_eq!(fake.request_count(Endpoint::CreateSession), creates + 1);
    let current = sessions(&fake, set.id);
    assert_eq!(current.len(), 1);
    assert_ne!(current[0], old_session);
    assert_eq!(
        second.checkpoint.resume().session_id.as_deref(),
        Some(current[0].as_str())
    );
    // Nothing handled again.
    assert_eq!(fake.request_count(Endpoint::AcquireJobs), acquired);

    // And it keeps working.
    queue_jobs(&fake, set.id, 1);
    second
        .demand_until("desired = min + 4", |d| d.desired == MIN + 4)
        .await;
    second.shutdown().await.0.expect("a clean shutdown");
}

/// What a listener that crashed mid-message leaves behind: its session,
/// and a message with two jobs delivered on it but not acknowledged.
async fn crashed_with_message_in_flight(
    fake: &FakeGitHub,
    client: &ActionsClient,
    scale_set_id: i64,
) -> (
    runway_controller::github::wire::RunnerScaleSetSession,
    runway_controller::github::ScaleSetMessage,
) {
    let mut session = client
        .create_session(scale_set_id, "crashed-listener")
        .await
        .expect("a session");
    queue_jobs(fake, scale_set_id, 2);
    let message = common::next_message(client, scale_set_id, &mut session, 0).await;
    assert_eq!(message.jobs.len(), 2);
    (session, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpointed_but_unacknowledged_message_is_not_handled_again() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    // A listener that crashed after checkpointing message M, before
    // acknowledging it: M is still in flight on the service.
    let (session, message) = crashed_with_message_in_flight(&fake, &client, set.id).await;

    let resume = Resume {
        session_id: Some(session.session_id.clone()),
        last_message_id: message.message_id,
    };
    let listener = spawn(&client, config(set.id), resume);
    let polls = fake.request_count(Endpoint::GetMessage);
    until("three polls", || {
        fake.request_count(Endpoint::GetMessage) >= polls + 3
    })
    .await;
    assert_eq!(
        fake.request_count(Endpoint::AcquireJobs),
        0,
        "message replayed"
    );
    assert_eq!(
        listener.checkpoint.resume().last_message_id,
        message.message_id
    );
    listener.shutdown().await.0.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_message_not_checkpointed_is_handled_again() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let (session, message) = crashed_with_message_in_flight(&fake, &client, set.id).await;
    let resume = Resume {
        session_id: Some(session.session_id.clone()),
        last_message_id: message.message_id - 1,
    };
    let mut listener = spawn(&client, config(set.id), resume);
    listener
        .demand_until("both jobs assigned", |d| d.desired == MIN + 2)
        .await;
    assert_eq!(fake.request_count(Endpoint::AcquireJobs), 1);
    listener.shutdown().await.0.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_controllers_session_is_retried_with_backoff_not_in_a_hot_loop() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let other = client
        .create_session(set.id, "another-controller")
        .await
        .expect("the other controller's session");
    let creates = fake.request_count(Endpoint::CreateSession);
    let mut listener = spawn(&client, config(set.id), Resume::default());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let attempts = fake.request_count(Endpoint::CreateSession) - creates;
    // Backoff 10, 20, 40, 80, 80, ... ms (50-100% jitter): about 10 tries in
    // 600 ms; a hot loop makes hundreds.
    assert!(attempts >= 3, "{attempts} attempts: not retried");
    assert!(attempts <= 25, "{attempts} attempts: a hot loop");
    assert!(
        !listener.task.is_finished(),
        "conflicts are retried forever"
    );
    assert_eq!(fake.request_count(Endpoint::DeleteSession), 0, "not ours");
    assert_eq!(sessions(&fake, set.id), vec![other.session_id.clone()]);

    // The other controller goes away: the listener takes over.
    client
        .delete_session(set.id, &other.session_id)
        .await
        .expect("delete the other session");
    until("the listener's session", || {
        sessions(&fake, set.id).len() == 1 && sessions(&fake, set.id)[0] != other.session_id
    })
    .await;
    queue_jobs(&fake, set.id, 1);
    listener
        .demand_until("desired = min + 1", |d| d.desired == MIN + 1)
        .await;
    listener.shutdown().await.0.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_conflicts_are_surfaced_after_the_configured_attempts() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    client
        .create_session(set.id, "another-controller")
        .await
        .expect("the other controller's session");
    let config = ListenerConfig {
        max_session_conflicts: Some(3),
        ..config(set.id)
    };
    let listener = spawn(&client, config, Resume::default());
    let result = tokio::time::timeout(Duration::from_secs(5), listener.task)
        .await
        .expect("the listener gives up")
        .expect("no panic");
    let error = result.expect_err("a conflict error");
    assert_eq!(error.metric_label(), "session_conflict");
    assert!(matches!(
        error,
        ListenerError::SessionConflict { attempts: 3, .. }
    ));
    assert!(error.to_string().contains("another controller"), "{error}");
    assert_eq!(fake.request_count(Endpoint::CreateSession), 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_scale_set_stops_the_listener_with_not_found() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let mut listener = spawn(&client, config(set.id), Resume::default());
    listener
        .demand_until("the first demand", |d| d.desired == MIN)
        .await;
    polling(&fake, set.id).await;
    fake.delete_scale_set(set.id);
    let result = tokio::time::timeout(Duration::from_secs(5), listener.task)
        .await
        .expect("the listener stops")
        .expect("no panic");
    let error = result.expect_err("a not-found error");
    assert_eq!(error.metric_label(), "scale_set_not_found");
    assert!(matches!(
        error,
        ListenerError::ScaleSetNotFound { scale_set_id, .. } if scale_set_id == set.id
    ));
    assert_eq!(listener.checkpoint.resume().session_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_set_deleted_before_start_stops_the_listener_too() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    fake.delete_scale_set(set.id);
    let listener = spawn(&client, config(set.id), Resume::default());
    let result = tokio::time::timeout(Duration::from_secs(5), listener.task)
        .await
        .expect("the listener stops")
        .expect("no panic");
    assert_eq!(
        result.expect_err("not found").metric_label(),
        "scale_set_not_found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_queue_tokens_are_refreshed_and_listening_goes_on() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let mut listener = spawn(&client, config(set.id), Resume::default());
    queue_jobs(&fake, set.id, 1);
    listener
        .demand_until("desired = min + 1", |d| d.desired == MIN + 1)
        .await;
    let session = sessions(&fake, set.id);
    fake.expire_queue_tokens();
    queue_jobs(&fake, set.id, 2);
    listener
        .demand_until("desired = min + 3", |d| d.desired == MIN + 3)
        .await;
    assert!(fake.request_count(Endpoint::RefreshSession) >= 1);
    assert_eq!(sessions(&fake, set.id), session, "the same session");
    assert_eq!(fake.request_count(Endpoint::CreateSession), 1);
    listener.shutdown().await.0.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_replaced() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let mut listener = spawn(&client, config(set.id), Resume::default());
    listener
        .demand_until("the first demand", |d| d.desired == MIN)
        .await;
    polling(&fake, set.id).await;
    fake.expire_sessions();
    until("a new session", || {
        fake.request_count(Endpoint::CreateSession) == 2 && sessions(&fake, set.id).len() == 1
    })
    .await;
    queue_jobs(&fake, set.id, 2);
    listener
        .demand_until("desired = min + 2", |d| d.desired == MIN + 2)
        .await;
    listener.shutdown().await.0.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deletes_the_session() {
    let Connected { fake, client, set } = connected("arm-builders").await;
    let mut listener = spawn(&client, config(set.id), Resume::default());
    listener
        .demand_until("the first demand", |d| d.desired == MIN)
        .await;
    polling(&fake, set.id).await;
    assert_eq!(sessions(&fake, set.id).len(), 1);
    let (result, checkpoint) = listener.shutdown().await;
    result.expect("a clean shutdown");
    assert!(sessions(&fake, set.id).is_empty());
    assert_eq!(fake.request_count(Endpoint::DeleteSession), 1);
    assert_eq!(checkpoint.resume().session_id, None);

    // The next listener has nothing to delete and no conflict.
    let next = spawn(&client, config(set.id), checkpoint.resume());
    polling(&fake, set.id).await;
    assert_eq!(fake.request_count(Endpoint::CreateSession), 2);
    assert_eq!(fake.request_count(Endpoint::DeleteSession), 1);
    next.shutdown().await.0.expect("a clean shutdown");
}
