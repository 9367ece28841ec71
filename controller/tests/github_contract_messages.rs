//! Contract tests for the message queue (PROTOCOL.md section 4): the long
//! poll, redelivery until acknowledged, `lastMessageId`, batches of at most
//! 50 job messages, acquiring with the queue token, requeues of jobs nobody
//! takes, and a whole job from JobAvailable to JobCompleted with the
//! statistics checked at every step.

mod common;

use std::time::{Duration, Instant};

use common::{
    LONG_POLL, Listening, fake_options, listening, messages_until, next_message, start_fake_with,
};
use runway_controller::github::ScaleSetMessage;
use runway_controller::github::wire::{JobMessage, RunnerScaleSetStatistic};
use runway_sandbox::github::{Endpoint, FakeOptions, JobState, NewJob};

/// The service writes .NET's zero time (year 1) for "not yet"; the wire
/// types keep it, so "happened" means a real date.
fn happened(time: Option<chrono::DateTime<chrono::Utc>>) -> bool {
    time.is_some_and(|t| t > chrono::DateTime::UNIX_EPOCH)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_poll_is_none_after_the_long_poll() {
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = listening("quiet").await;

    let started = Instant::now();
    let polled = client
        .get_message(set.id, &mut session, 0, 7)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(polled, None);
    assert!(waited >= LONG_POLL, "answered 202 after {waited:?}");
    assert!(waited < LONG_POLL * 5, "held for {waited:?}");
    // X-ScaleSetMaxCapacity reached the service.
    assert_eq!(fake.snapshot().sessions[0].max_capacity, Some(7));
    assert_eq!(fake.request_count(Endpoint::GetMessage), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_redelivered_until_acknowledged() {
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = listening("redeliver").await;

    let first = fake.queue_job(set.id, NewJob::default());
    let message = next_message(&client, set.id, &mut session, 0).await;
    let again = next_message(&client, set.id, &mut session, 0).await;
    assert_eq!(again, message, "not acknowledged: the same message again");

    client
        .acknowledge_message(set.id, &mut session, message.message_id)
        .await
        .unwrap();
    let second = fake.queue_job(set.id, NewJob::default());
    let next = next_message(&client, set.id, &mut session, message.message_id).await;
    assert!(next.message_id > message.message_id);

    // Not acknowledged, but `lastMessageId` says it was handled: a restarted
    // listener that kept its last id gets the next message, not a replay.
    let third = fake.queue_job(set.id, NewJob::default());
    let after = next_message(&client, set.id, &mut session, next.message_id).await;
    assert!(after.message_id > next.message_id);

    let ids: Vec<i64> = [&message, &next, &after]
        .iter()
        .map(|m| m.jobs[0].base().unwrap().runner_request_id)
        .collect();
    assert_eq!(
        ids,
        [
            first.runner_request_id,
            second.runner_request_id,
            third.runner_request_id
        ]
    );
    assert_eq!(fake.request_count(Endpoint::DeleteMessage), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_carries_at_most_fifty_jobs_and_all_are_acquired() {
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = listening("batches").await;
    let queued: Vec<i64> = (0..120)
        .map(|_| fake.queue_job(set.id, NewJob::default()).runner_request_id)
        .collect();

    let mut last = 0;
    let messages = messages_until(&client, set.id, &mut session, &mut last, |seen| {
        seen.iter().map(|m| m.jobs.len()).sum::<usize>() >= queued.len()
    })
    .await;
    let sizes: Vec<usize> = messages.iter().map(|m| m.jobs.len()).collect();
    assert_eq!(sizes, [50, 50, 20]);
    let available: Vec<i64> = messages
        .iter()
        .flat_map(|m| &m.jobs)
        .map(|job| match job {
            JobMessage::Available(a) => a.base.runner_request_id,
            other => panic!("expected JobAvailable, got {other:?}"),
        })
        .collect();
    assert_eq!(available, queued);

    let acquired = client
        .acquire_jobs(set.id, &mut session, &available)
        .await
        .unwrap();
    assert_eq!(acquired, queued);
    let statistics = client.scale_set(set.id).await.unwrap().statistics.unwrap();
    assert_eq!(statistics.total_acquired_jobs, 120);
    assert_eq!(statistics.total_available_jobs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_runner_takes_is_requeued() {
    let fake = start_fake_with(FakeOptions {
        requeue_after: Duration::from_millis(200),
        ..fake_options()
    })
    .await;
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = Listening::on(fake, "requeue").await;
    let job = fake.queue_job(set.id, NewJob::default());
    let mut last = 0;
    messages_until(&client, set.id, &mut session, &mut last, |seen| {
        !seen.is_empty()
    })
    .await;
    client
        .acquire_jobs(set.id, &mut session, &[job.runner_request_id])
        .await
        .unwrap();

    // JobAssigned; then, as nobody starts it, JobCompleted (canceled) and
    // JobAssigned again, three times; then a final JobCompleted (canceled).
    let canceled = |seen: &[ScaleSetMessage]| {
        seen.iter()
            .flat_map(|m| &m.jobs)
            .filter(|j| matches!(j, JobMessage::Completed(c) if c.result == "canceled"))
            .count()
    };
    let messages = messages_until(&client, set.id, &mut session, &mut last, |seen| {
        canceled(seen) == 4
    })
    .await;
    let kinds: Vec<&str> = messages
        .iter()
        .flat_map(|m| &m.jobs)
        .map(|j| {
            assert_eq!(j.base().unwrap().runner_request_id, job.runner_request_id);
            j.base().unwrap().message_type.as_str()
        })
        .collect();
    let requeue = ["JobCompleted", "JobAssigned"];
    let expected: Vec<&str> = std::iter::once("JobAssigned")
        .chain(requeue.iter().copied().cycle().take(6))
        .chain(std::iter::once("JobCompleted"))
        .collect();
    assert_eq!(kinds, expected);
    let snapshot = fake.snapshot();
    let view = snapshot.job(job.runner_request_id).unwrap();
    assert_eq!(
        (view.state, view.result.as_deref(), view.requeues),
        (JobState::Completed, Some("canceled"), 3)
    );
}

fn statistics_of(message: &ScaleSetMessage) -> RunnerScaleSetStatistic {
    message
        .statistics
        .clone()
        .expect("a message carries statistics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_flows_from_available_to_completed() {
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = listening("flow").await;
    let job = fake.queue_job(set.id, NewJob::default());
    let id = job.runner_request_id;

    // JobAvailable.
    let message = next_message(&client, set.id, &mut session, 0).await;
    let [JobMessage::Available(available)] = message.jobs.as_slice() else {
        panic!("expected one JobAvailable: {message:?}")
    };
    assert_eq!(available.base.runner_request_id, id);
    assert_eq!(available.base.job_id, job.job_id);
    assert_eq!(available.base.request_labels, ["flow"]);
    assert_eq!(available.base.repository_name, "example");
    assert_eq!(available.base.owner_name, "runway-dev");
    assert!(happened(available.base.queue_time));
    assert!(!happened(available.base.scale_set_assign_time));
    assert!(!happened(available.base.runner_assign_time));
    assert!(!happened(available.base.finish_time));
    assert!(
        available
            .acquire_job_url
            .contains(&format!("/runnerscalesets/{}/acquirejobs", set.id)),
        "{}",
        available.acquire_job_url
    );
    assert_eq!(
        statistics_of(&message),
        RunnerScaleSetStatistic {
            total_available_jobs: 1,
            ..Default::default()
        }
    );
    client
        .acknowledge_message(set.id, &mut session, message.message_id)
        .await
        .unwrap();
    let last = message.message_id;

    // Acquired with the queue token -> JobAssigned.
    let acquired = client
        .acquire_jobs(set.id, &mut session, &[id])
        .await
        .unwrap();
    assert_eq!(acquired, [id]);
    let message = next_message(&client, set.id, &mut session, last).await;
    let [JobMessage::Assigned(assigned)] = message.jobs.as_slice() else {
        panic!("expected one JobAssigned: {message:?}")
    };
    assert_eq!(assigned.base.runner_request_id, id);
    assert!(happened(assigned.base.scale_set_assign_time));
    assert!(!happened(assigned.base.runner_assign_time));
    assert_eq!(
        statistics_of(&message),
        RunnerScaleSetStatistic {
            total_acquired_jobs: 1,
            total_assigned_jobs: 1,
            ..Default::default()
        }
    );
    client
        .acknowledge_message(set.id, &mut session, message.message_id)
        .await
        .unwrap();
    let last = message.message_id;

    // A JIT runner registers and starts the job -> JobStarted.
    let jit = client
        .generate_jit_config(set.id, "flow-runner", "_work")
        .await
        .unwrap();
    assert_eq!(
        client.scale_set(set.id).await.unwrap().statistics,
        Some(RunnerScaleSetStatistic {
            total_acquired_jobs: 1,
            total_assigned_jobs: 1,
            total_registered_runners: 1,
            total_idle_runners: 1,
            ..Default::default()
        })
    );
    fake.start_job(id, "flow-runner").unwrap();
    let message = next_message(&client, set.id, &mut session, last).await;
    let [JobMessage::Started(started)] = message.jobs.as_slice() else {
        panic!("expected one JobStarted: {message:?}")
    };
    assert_eq!(started.base.runner_request_id, id);
    assert_eq!(
        (started.runner_id, started.runner_name.as_str()),
        (jit.runner.id, "flow-runner")
    );
    assert!(happened(started.base.runner_assign_time));
    assert!(!happened(started.base.finish_time));
    assert_eq!(
        statistics_of(&message),
        RunnerScaleSetStatistic {
            total_assigned_jobs: 1,
            total_running_jobs: 1,
            total_registered_runners: 1,
            total_busy_runners: 1,
            ..Default::default()
        }
    );
    assert!(fake.snapshot().runner_named("flow-runner").unwrap().busy);
    client
        .acknowledge_message(set.id, &mut session, message.message_id)
        .await
        .unwrap();
    let last = message.message_id;

    // The job ends -> JobCompleted; the service removes the ephemeral runner.
    fake.complete_job(id, "succeeded").unwrap();
    let message = next_message(&client, set.id, &mut session, last).await;
    let [JobMessage::Completed(completed)] = message.jobs.as_slice() else {
        panic!("expected one JobCompleted: {message:?}")
    };
    assert_eq!(completed.base.runner_request_id, id);
    assert_eq!(completed.result, "succeeded");
    assert_eq!(
        (completed.runner_id, completed.runner_name.as_str()),
        (jit.runner.id, "flow-runner")
    );
    assert!(happened(completed.base.finish_time));
    assert_eq!(completed.base.job_id, job.job_id);
    assert_eq!(statistics_of(&message), RunnerScaleSetStatistic::default());
    client
        .acknowledge_message(set.id, &mut session, message.message_id)
        .await
        .unwrap();

    assert_eq!(
        client
            .get_message(set.id, &mut session, message.message_id, 10)
            .await
            .unwrap(),
        None,
        "everything was acknowledged"
    );
    let snapshot = fake.snapshot();
    let view = snapshot.job(id).unwrap();
    assert_eq!(view.state, JobState::Completed);
    assert_eq!(view.result.as_deref(), Some("succeeded"));
    assert_eq!(view.runner_id, Some(jit.runner.id));
    assert!(snapshot.runners.is_empty());
    assert_eq!(client.runner(jit.runner.id).await.unwrap(), None);

    client
        .delete_session(set.id, &session.session_id)
        .await
        .unwrap();
    assert_eq!(fake.request_count(Endpoint::AcquireJobs), 1);
    assert_eq!(fake.request_count(Endpoint::DeleteMessage), 4);
    assert_eq!(fake.request_count(Endpoint::RefreshSession), 0);
}
