//! The message queue and the life of a job: long polls, redelivery until
//! acknowledged, batching, acquire, JIT runners and requeues.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use runway_sandbox::github::{FakeOptions, JobState, NewJob};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_202_after_the_timeout_and_200_as_soon_as_a_job_arrives() {
    let (_github, _, _, session) = session_for(long_poll(300)).await;
    let started = Instant::now();
    let (status, body) = session.poll(0).await;
    let held = started.elapsed();
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    assert!(
        held >= millis(300) && held < Duration::from_secs(5),
        "held for {held:?}"
    );

    let (slow, _service, id, session) = session_for(long_poll(20_000)).await;
    let started = Instant::now();
    let poll = tokio::spawn(async move { session.poll(0).await });
    tokio::time::sleep(millis(200)).await;
    let job = slow.queue_job(id, NewJob::default());
    let (status, message) = poll.await.expect("the poll task");
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered when the job arrived"
    );
    assert_eq!(
        kinds(&job_messages(&message)),
        vec![("JobAvailable".to_string(), job.runner_request_id)]
    );
    assert_eq!(
        slow.snapshot().sessions[0].max_capacity,
        Some(10),
        "X-ScaleSetMaxCapacity is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_redelivered_until_acknowledged() {
    let (github, _service, id, session) = session_for(long_poll(100)).await;
    let first = github.queue_job(
        id,
        NewJob {
            display_name: "first".into(),
            ..Default::default()
        },
    );

    let (status, message) = session.poll(0).await;
    assert_eq!(status, StatusCode::OK);
    let first_id = message_id(&message);
    let items = job_messages(&message);
    assert_eq!(items[0]["jobDisplayName"], "first");
    assert_eq!(
        items[0]["runnerRequestId"].as_i64(),
        Some(first.runner_request_id)
    );
    assert_eq!(items[0]["jobId"].as_str(), Some(first.job_id.as_str()));
    assert!(
        items[0]["acquireJobUrl"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("runnerscalesets/{id}/acquirejobs"))
    );
    assert_eq!(message["statistics"]["totalAvailableJobs"], 1);

    let (status, again) = session.poll(0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (again["messageId"].as_i64(), &again["body"]),
        (Some(first_id), &message["body"]),
        "redelivered as is"
    );

    // lastMessageId says the client has it: the next poll moves on.
    let second = github.queue_job(id, NewJob::default());
    let (status, next) = session.poll(first_id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(message_id(&next) > first_id);
    assert_eq!(
        kinds(&job_messages(&next)),
        vec![("JobAvailable".to_string(), second.runner_request_id)]
    );

    assert_eq!(session.ack(message_id(&next)).await, StatusCode::NO_CONTENT);
    assert_eq!(
        session.ack(message_id(&next)).await,
        StatusCode::NO_CONTENT,
        "acking twice is fine"
    );
    let (status, _) = session.poll(0).await;
    assert_eq!(status, StatusCode::ACCEPTED, "nothing left after the ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_fifty_job_messages_per_message() {
    let (github, _service, id, session) = session_for(long_poll(100)).await;
    let queued: Vec<i64> = (0..120)
        .map(|_| github.queue_job(id, NewJob::default()).runner_request_id)
        .collect();
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    loop {
        let (status, message) = session.poll(0).await;
        if status == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert_eq!(message["statistics"]["totalAvailableJobs"], 120);
        let items = job_messages(&message);
        sizes.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|m| m["runnerRequestId"].as_i64().unwrap_or_default()),
        );
        session.ack(message_id(&message)).await;
    }
    assert_eq!(sizes, vec![50, 50, 20]);
    assert_eq!(seen, queued, "every job once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_a_jit_runner_that_cannot_be_removed_while_busy() {
    let (github, service, id, session) = session_for(long_poll(100)).await;

    let jit_path = format!("{}/generatejitconfig", scale_set_path(id));
    let (status, jit) = service
        .post(
            &jit_path,
            json!({"name": "arm-runner-1", "workFolder": "_work"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{jit}");
    let runner_id = jit["runner"]["id"].as_i64().expect("runner id");
    assert_eq!(
        jit["runner"],
        json!({"id": runner_id, "name": "arm-runner-1", "runnerScaleSetId": id})
    );
    let decode = |encoded: &Value, what: &str| -> Value {
        let bytes = STANDARD
            .decode(encoded.as_str().expect(what))
            .expect("base64");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let files = decode(&jit["encodedJITConfig"], "a string");
    let runner_file = decode(&files[".runner"], ".runner");
    assert_eq!(
        (
            runner_file["AgentId"].as_i64(),
            runner_file["AgentName"].as_str()
        ),
        (Some(runner_id), Some("arm-runner-1"))
    );
    expect_exception(
        service
            .post(
                &jit_path,
                json!({"name": "ARM-runner-1", "workFolder": "_work"}),
            )
            .await,
        StatusCode::CONFLICT,
        "AgentExistsException",
    );

    let (status, by_name) = service
        .get("_apis/distributedtask/pools/0/agents?agentName=arm-runner-1")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        by_name,
        json!({"count": 1, "value": [{"id": runner_id, "name": "arm-runner-1", "runnerScaleSetId": id}]})
    );

    let job = github.queue_job(id, NewJob::default());
    assert!(
        github
            .start_job(job.runner_request_id, "arm-runner-1")
            .is_err(),
        "not acquired yet"
    );
    session.first_events().await;
    let (status, acquired) = session
        .acquire(&service, &[job.runner_request_id, 424242])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        acquired,
        json!({"count": 1, "value": [job.runner_request_id]})
    );

    github
        .start_job(job.runner_request_id, "arm-runner-1")
        .expect("started");
    let (events, started) = session.events_through("JobStarted").await;
    assert_eq!(
        (started["runnerId"].as_i64(), started["runnerName"].as_str()),
        (Some(runner_id), Some("arm-runner-1"))
    );
    assert_eq!(kinds(&events)[0].0, "JobAssigned");

    let agent = agent_path(runner_id);
    expect_exception(
        service.delete(&agent).await,
        StatusCode::BAD_REQUEST,
        "JobStillRunningException",
    );
    let stats = github.snapshot().scale_sets[0].statistics;
    assert_eq!(
        (
            stats.total_running_jobs,
            stats.total_busy_runners,
            stats.total_assigned_jobs
        ),
        (1, 1, 1)
    );

    github
        .complete_job(job.runner_request_id, "succeeded")
        .expect("completed");
    let (_, completed) = session.events_through("JobCompleted").await;
    assert_eq!(
        (
            completed["result"].as_str(),
            completed["runnerId"].as_i64(),
            completed["runnerName"].as_str()
        ),
        (Some("succeeded"), Some(runner_id), Some("arm-runner-1"))
    );
    let (status, gone) = service.delete(&agent).await;
    assert_eq!(
        (status, gone["typeName"].as_str()),
        (StatusCode::NOT_FOUND, Some("AgentNotFoundException")),
        "removed by the service"
    );
    let (status, _) = service.get(&agent).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let snapshot = github.snapshot();
    assert_eq!(
        snapshot.job(job.runner_request_id).map(|j| j.state),
        Some(JobState::Completed)
    );
    assert!(snapshot.runners.is_empty());

    // An idle runner is removed on request.
    let (_, idle) = service
        .post(&jit_path, json!({"name": "idle", "workFolder": "_work"}))
        .await;
    let idle_agent = agent_path(idle["runner"]["id"].as_i64().expect("id"));
    let (status, got) = service.get(&idle_agent).await;
    assert_eq!(
        (status, got["name"].as_str()),
        (StatusCode::OK, Some("idle"))
    );
    let (status, _) = service.delete(&idle_agent).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquired_job_nobody_starts_is_requeued_three_times() {
    let (github, service, id, session) = session_for(FakeOptions {
        requeue_after: millis(150),
        ..long_poll(500)
    })
    .await;
    let job = github.queue_job(id, NewJob::default());
    session.first_events().await;
    session.acquire(&service, &[job.runner_request_id]).await;
    let acquired_at = Instant::now();

    let is_final = |seen: &[Value]| {
        seen.iter()
            .filter(|m| m["messageType"] == "JobCompleted")
            .count()
            == 4
    };
    let events = session
        .events_until(Duration::from_secs(10), is_final)
        .await;
    assert!(
        acquired_at.elapsed() >= millis(4 * 150),
        "requeues wait for requeue_after"
    );
    let id_of = job.runner_request_id;
    let expected: Vec<(String, i64)> = ["JobAssigned", "JobCompleted"]
        .repeat(4)
        .iter()
        .map(|k| (k.to_string(), id_of))
        .collect();
    assert_eq!(kinds(&events), expected);
    for completed in events.iter().filter(|m| m["messageType"] == "JobCompleted") {
        assert_eq!(completed["result"], "canceled");
    }
    let snapshot = github.snapshot();
    let view = snapshot.job(id_of).expect("the job");
    assert_eq!(
        (view.state, view.result.as_deref(), view.requeues),
        (JobState::Completed, Some("canceled"), 3)
    );
    assert_eq!(snapshot.scale_sets[0].statistics.total_assigned_jobs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_message_body_is_delivered_verbatim_next_and_until_acknowledged() {
    let (github, _service, id, session) = session_for(long_poll(100)).await;
    let job = github.queue_job(id, NewJob::default());
    let control = Control::of(&github, &client());
    let raw = r#"[{"messageType":"JobStarted","runnerRequestId":7,"runnerName":null}]"#;
    let (status, error) = control
        .post(
            &format!("scalesets/{id}/messages"),
            Some(json!({"body": raw})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{error}");
    // The handle's helper queues one too; unknown scale sets are refused.
    github.queue_raw_message(id, "not json").expect("queued");
    assert!(github.queue_raw_message(id + 1000, "[]").is_err());
    let (status, _) = control
        .post(
            &format!("scalesets/{}/messages", id + 1000),
            Some(json!({"body": "[]"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, first) = session.poll(0).await;
    assert_eq!(first["messageType"], "RunnerScaleSetJobMessages");
    assert_eq!(first["body"], raw, "verbatim");
    let (_, again) = session.poll(0).await;
    assert_eq!(message_id(&again), message_id(&first), "redelivered");
    assert_eq!(
        session.ack(message_id(&first)).await,
        StatusCode::NO_CONTENT
    );
    let (_, second) = session.poll(message_id(&first)).await;
    assert_eq!(second["body"], "not json");
    let (_, third) = session.poll(message_id(&second)).await;
    assert!(message_id(&third) > message_id(&second));
    assert_eq!(
        kinds(&job_messages(&third)),
        vec![("JobAvailable".to_string(), job.runner_request_id)]
    );
}
