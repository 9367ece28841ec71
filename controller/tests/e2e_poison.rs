//! Poison messages end to end: `run_scale_set` against the sandbox's real
//! kube-apiserver and the fake GitHub, which delivers hand-written message
//! bodies first (`FakeGitHub::queue_raw_message`). A scale set must go on
//! serving jobs after a message full of `null`s and after a message that can
//! never be decoded; the latter is skipped after the bound and an Event on
//! the `RunnerScaleSet` says so.

mod common;

use common::scale_set::start;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::Api;
use kube::api::ListParams;
use runway_controller::github::wire::{JOB_MESSAGE_FIELDS, JOB_MESSAGE_REQUIRED};
use runway_sandbox::github::{Endpoint, JobState};
use serde_json::{Map, Value, json};

/// One element per job message type, with `null` in each string field (and
/// in the list and the optional numbers too); runner request ids the fake
/// does not know, so acquiring them is a no-op.
fn nulls_body() -> String {
    let elements: Vec<Value> = ["JobAvailable", "JobAssigned", "JobStarted", "JobCompleted"]
        .iter()
        .zip(900_001..)
        .map(|(message_type, id)| {
            let mut element = Map::new();
            element.insert("messageType".into(), json!(message_type));
            element.insert("runnerRequestId".into(), json!(id));
            for field in &JOB_MESSAGE_FIELDS[JOB_MESSAGE_REQUIRED..] {
                element.insert((*field).into(), Value::Null);
            }
            Value::Object(element)
        })
        .collect();
    Value::Array(elements).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_and_a_message_that_never_decodes_do_not_stop_the_scale_set() {
    let mut s = start("e2e-poison", 0, 5).await;

    // Delivered in this order, before the normal job's JobAvailable.
    s.fake
        .queue_raw_message(s.scale_set_id, &nulls_body())
        .expect("queue the message of nulls");
    s.fake
        .queue_raw_message(s.scale_set_id, "[{\"messageType\":\"JobAvailable\"")
        .expect("queue the message that never decodes");
    let polls_before = s.fake.request_count(Endpoint::GetMessage);
    let jobs = s.queue_jobs(1);

    // The normal job is served: acquired, and a runner pod made for it.
    s.until("the normal job acquired", || async {
        (s.jobs_in(JobState::Assigned) == 1).then_some(())
    })
    .await;
    let pod = s.runners(1).await;
    assert_eq!(pod.len(), 1);
    assert_eq!(s.job(jobs[0]).state, JobState::Assigned);
    // The bad message was polled the bound (5) times, then acknowledged:
    // 5 tries and the normal job's message at least (the message of nulls
    // may have answered the poll already in flight).
    let polls = s.fake.request_count(Endpoint::GetMessage) - polls_before;
    assert!(polls >= 6, "{polls} polls");

    let events: Api<KubeEvent> = s.ns.api();
    let skipped = s
        .until("a MessageSkipped Event on the RunnerScaleSet", || async {
            let listed = events.list(&ListParams::default()).await.ok()?;
            listed.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("MessageSkipped")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(s.name.as_str())
            })
        })
        .await;
    assert_eq!(skipped.type_.as_deref(), Some("Warning"));
    let note = skipped.note.unwrap_or_default();
    assert!(
        note.contains("after 5 tries") && note.contains("not a JSON array"),
        "{note}"
    );
    // Exactly one: the message of nulls was handled, not skipped.
    let listed = events.list(&ListParams::default()).await.unwrap();
    let count = listed
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("MessageSkipped"))
        .count();
    assert_eq!(count, 1);

    // Skipped for good: checkpointed past it, never delivered again.
    let skipped_id: i64 = note
        .strip_prefix("message ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a message id in {note:?}"));
    s.until("lastMessageId past the skipped message", || async {
        let status = s.status().await;
        status
            .last_message_id
            .is_some_and(|id| id >= skipped_id)
            .then_some(())
    })
    .await;
    s.shutdown().await.expect("run_scale_set ends cleanly");
}
