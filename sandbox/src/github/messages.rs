//! One scale set's message queue, and how its job events become the
//! `RunnerScaleSetJobMessages` body.
//!
//! Delivery semantics (what a client can rely on):
//!
//! - Events wait in `pending` in the order they happened. A poll that finds
//!   no message in flight turns the oldest events, at most
//!   [`MAX_EVENTS_PER_MESSAGE`], into one message with the next message id
//!   (ids come from one server-wide counter, so they only ever grow, even
//!   across scale sets that are deleted and created again).
//! - At most one message is in flight per scale set. Until it is
//!   acknowledged, every poll delivers that same message again (same id, same
//!   body; the statistics are recomputed at each delivery).
//! - `DELETE <queue>/<messageId>` acknowledges it. Acknowledging any other id
//!   is a no-op (a retried DELETE must not fail).
//! - `lastMessageId=N` on a poll says "I have processed every message up to
//!   N": a message in flight with id <= N counts as acknowledged and is
//!   dropped before the poll looks for something to deliver. An N larger
//!   than anything issued never loses events: new messages are always
//!   delivered, whatever N says.
//!
//! - A raw message (a test's [`RawMessage`], see `FakeGitHub::queue_raw_message`)
//!   is delivered as the next message, before pending events, alone, with
//!   the next message id and the same redelivery rules.
//!
//! The queue belongs to the scale set, not to a session, so messages survive
//! a session being deleted and created again (a restarted listener with the
//! same `lastMessageId` neither loses nor replays them).

use std::collections::VecDeque;

use chrono::{DateTime, SecondsFormat, Utc};

use super::wire::{self, ZERO_TIME};

/// GitHub puts at most this many job messages in one message body.
pub const MAX_EVENTS_PER_MESSAGE: usize = 50;

/// What happened to a job, as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Available,
    Assigned,
    Started {
        runner_id: i64,
        runner_name: String,
    },
    Completed {
        result: String,
        runner_id: i64,
        runner_name: String,
    },
}

impl EventKind {
    pub fn message_type(&self) -> &'static str {
        match self {
            EventKind::Available => "JobAvailable",
            EventKind::Assigned => "JobAssigned",
            EventKind::Started { .. } => "JobStarted",
            EventKind::Completed { .. } => "JobCompleted",
        }
    }
}

/// The job's facts at the moment of the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub runner_request_id: i64,
    pub scale_set_id: i64,
    pub repository_name: String,
    pub owner_name: String,
    pub job_id: String,
    pub workflow_ref: String,
    pub display_name: String,
    pub workflow_run_id: i64,
    pub event_name: String,
    pub request_labels: Vec<String>,
    pub queue_time: DateTime<Utc>,
    pub scale_set_assign_time: Option<DateTime<Utc>>,
    pub runner_assign_time: Option<DateTime<Utc>>,
    pub finish_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    pub kind: EventKind,
    pub job: JobFacts,
}

/// A message a test wrote by hand, to send what the real service may send
/// (nulls, odd timestamps, malformed elements) exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The envelope's `messageType`.
    pub message_type: String,
    /// The envelope's `body`, verbatim: normally a JSON array encoded as a
    /// string, but anything goes.
    pub body: String,
}

#[derive(Debug, Default)]
pub struct MessageQueue {
    pending: VecDeque<JobEvent>,
    in_flight: Option<(i64, Vec<JobEvent>)>,
    /// Raw messages, delivered before the pending events.
    raw: VecDeque<RawMessage>,
    /// Set while the message in flight is a raw one (its events are empty).
    in_flight_raw: Option<RawMessage>,
}

impl MessageQueue {
    pub fn push(&mut self, event: JobEvent) {
        self.pending.push_back(event);
    }

    pub fn push_raw(&mut self, message: RawMessage) {
        self.raw.push_back(message);
    }

    /// The raw message in flight, if the message in flight is one.
    pub fn raw_in_flight(&self) -> Option<&RawMessage> {
        self.in_flight.as_ref().and(self.in_flight_raw.as_ref())
    }

    /// The message to deliver to a poll carrying `last_message_id` (0 when
    /// the client sent none), or `None` when there is nothing to deliver.
    /// `next_id` is the server-wide message id counter.
    pub fn next(
        &mut self,
        last_message_id: i64,
        next_id: &mut i64,
    ) -> Option<(i64, Vec<JobEvent>)> {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|(id, _)| *id <= last_message_id)
        {
            self.in_flight = None;
            self.in_flight_raw = None;
        }
        if self.in_flight.is_none()
            && let Some(raw) = self.raw.pop_front()
        {
            let id = *next_id;
            *next_id += 1;
            self.in_flight = Some((id, Vec::new()));
            self.in_flight_raw = Some(raw);
        }
        if self.in_flight.is_none() && !self.pending.is_empty() {
            let take = self.pending.len().min(MAX_EVENTS_PER_MESSAGE);
            let events: Vec<JobEvent> = self.pending.drain(..take).collect();
            let id = *next_id;
            *next_id += 1;
            self.in_flight = Some((id, events));
        }
        self.in_flight.clone()
    }

    /// Acknowledges the message in flight if it has this id; true if it did.
    pub fn ack(&mut self, message_id: i64) -> bool {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|(id, _)| *id == message_id)
        {
            self.in_flight = None;
            self.in_flight_raw = None;
            return true;
        }
        false
    }

    #[cfg(test)]
    pub fn in_flight_id(&self) -> Option<i64> {
        self.in_flight.as_ref().map(|(id, _)| *id)
    }
}

pub fn wire_time(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ZERO_TIME.to_string(),
    }
}

/// One job event as the wire's job message. `acquire_job_url` is the URL a
/// JobAvailable points at (it depends on the host the client used).
pub fn job_message(event: &JobEvent, acquire_job_url: &str) -> wire::JobMessage {
    let job = &event.job;
    let mut message = wire::JobMessage {
        message_type: event.kind.message_type(),
        acquire_job_url: None,
        runner_request_id: job.runner_request_id,
        repository_name: job.repository_name.clone(),
        owner_name: job.owner_name.clone(),
        job_id: job.job_id.clone(),
        job_workflow_ref: job.workflow_ref.clone(),
        job_display_name: job.display_name.clone(),
        workflow_run_id: job.workflow_run_id,
        event_name: job.event_name.clone(),
        request_labels: job.request_labels.clone(),
        queue_time: wire_time(Some(job.queue_time)),
        scale_set_assign_time: wire_time(job.scale_set_assign_time),
        runner_assign_time: wire_time(job.runner_assign_time),
        finish_time: wire_time(job.finish_time),
        result: None,
        runner_id: None,
        runner_name: None,
    };
    match &event.kind {
        EventKind::Available => message.acquire_job_url = Some(acquire_job_url.to_string()),
        EventKind::Assigned => {}
        EventKind::Started {
            runner_id,
            runner_name,
        } => {
            message.runner_id = Some(*runner_id);
            message.runner_name = Some(runner_name.clone());
        }
        EventKind::Completed {
            result,
            runner_id,
            runner_name,
        } => {
            message.result = Some(result.clone());
            message.runner_id = Some(*runner_id);
            message.runner_name = Some(runner_name.clone());
        }
    }
    message
}

/// The message body: the job messages as a JSON array, encoded as a string.
pub fn render_body(
    events: &[JobEvent],
    acquire_job_url: &str,
) -> Result<String, serde_json::Error> {
    let messages: Vec<wire::JobMessage> = events
        .iter()
        .map(|e| job_message(e, acquire_job_url))
        .collect();
    serde_json::to_string(&messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, kind: EventKind) -> JobEvent {
        JobEvent {
            kind,
            job: JobFacts {
                runner_request_id: id,
                scale_set_id: 1,
                repository_name: "repo".into(),
                owner_name: "org".into(),
                job_id: format!("job-{id}"),
                workflow_ref: "org/repo/.github/workflows/ci.yml@refs/heads/main".into(),
                display_name: "build".into(),
                workflow_run_id: 7,
                event_name: "push".into(),
                request_labels: vec!["linux".into()],
                queue_time: DateTime::UNIX_EPOCH,
                scale_set_assign_time: None,
                runner_assign_time: None,
                finish_time: None,
            },
        }
    }

    fn ids(events: &[JobEvent]) -> Vec<i64> {
        events.iter().map(|e| e.job.runner_request_id).collect()
    }

    #[test]
    fn nothing_pending_means_nothing_to_deliver() {
        let mut queue = MessageQueue::default();
        let mut next_id = 1;
        assert_eq!(queue.next(0, &mut next_id), None);
        assert_eq!(next_id, 1, "no id is spent on an empty poll");
    }

    #[test]
    fn unacknowledged_message_is_delivered_again_with_the_same_id() {
        let mut queue = MessageQueue::default();
        let mut next_id = 10;
        queue.push(event(1, EventKind::Available));
        let (first, events) = queue.next(0, &mut next_id).expect("a message");
        assert_eq!(first, 10);
        assert_eq!(ids(&events), vec![1]);
        queue.push(event(2, EventKind::Available));
        let (again, events) = queue.next(0, &mut next_id).expect("redelivery");
        assert_eq!(again, 10);
        assert_eq!(
            ids(&events),
            vec![1],
            "events that arrived later wait for the next message"
        );
        assert!(queue.ack(10));
        let (second, events) = queue.next(0, &mut next_id).expect("next message");
        assert_eq!(second, 11);
        assert_eq!(ids(&events), vec![2]);
    }

    #[test]
    fn last_message_id_acknowledges_what_the_client_has_seen() {
        let mut queue = MessageQueue::default();
        let mut next_id = 5;
        queue.push(event(1, EventKind::Available));
        let (id, _) = queue.next(0, &mut next_id).expect("a message");
        queue.push(event(2, EventKind::Assigned));
        let (next, events) = queue.next(id, &mut next_id).expect("the following message");
        assert_eq!(next, id + 1);
        assert_eq!(ids(&events), vec![2]);
        // A lower lastMessageId does not drop the message in flight.
        assert_eq!(queue.next(id, &mut next_id).map(|(i, _)| i), Some(next));
    }

    #[test]
    fn a_last_message_id_from_the_future_does_not_lose_events() {
        let mut queue = MessageQueue::default();
        let mut next_id = 1;
        queue.push(event(1, EventKind::Available));
        let (id, events) = queue.next(1_000, &mut next_id).expect("delivered anyway");
        assert_eq!((id, ids(&events)), (1, vec![1]));
    }

    #[test]
    fn at_most_fifty_events_per_message_in_order() {
        let mut queue = MessageQueue::default();
        let mut next_id = 1;
        for i in 0..120 {
            queue.push(event(i, EventKind::Available));
        }
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        while let Some((id, events)) = queue.next(0, &mut next_id) {
            sizes.push(events.len());
            seen.extend(ids(&events));
            assert!(queue.ack(id));
        }
        assert_eq!(sizes, vec![50, 50, 20]);
        assert_eq!(seen, (0..120).collect::<Vec<_>>());
    }

    #[test]
    fn ack_of_an_unknown_id_changes_nothing() {
        let mut queue = MessageQueue::default();
        let mut next_id = 1;
        queue.push(event(1, EventKind::Available));
        let (id, _) = queue.next(0, &mut next_id).expect("a message");
        assert!(!queue.ack(id + 1));
        assert_eq!(queue.in_flight_id(), Some(id));
    }

    #[test]
    fn body_is_a_json_array_with_type_specific_fields() {
        let mut started = event(
            3,
            EventKind::Started {
                runner_id: 9,
                runner_name: "r-1".into(),
            },
        );
        started.job.runner_assign_time = Some(DateTime::UNIX_EPOCH);
        let body = render_body(
            &[
                event(1, EventKind::Available),
                started,
                event(
                    4,
                    EventKind::Completed {
                        result: "succeeded".into(),
                        runner_id: 9,
                        runner_name: "r-1".into(),
                    },
                ),
            ],
            "http://x/acquire",
        )
        .expect("serializes");
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
        let items = parsed.as_array().expect("an array");
        assert_eq!(items[0]["messageType"], "JobAvailable");
        assert_eq!(items[0]["acquireJobUrl"], "http://x/acquire");
        assert!(items[0].get("runnerId").is_none());
        assert_eq!(items[0]["finishTime"], ZERO_TIME);
        assert_eq!(items[1]["messageType"], "JobStarted");
        assert_eq!(items[1]["runnerId"], 9);
        assert_eq!(items[1]["runnerName"], "r-1");
        assert_eq!(items[1]["runnerAssignTime"], "1970-01-01T00:00:00.000Z");
        assert!(items[1].get("acquireJobUrl").is_none());
        assert_eq!(items[2]["result"], "succeeded");
        assert_eq!(items[2]["jobId"], "job-4");
        assert_eq!(items[2]["requestLabels"][0], "linux");
    }

    #[test]
    fn a_raw_message_goes_next_alone_and_is_redelivered_until_acknowledged() {
        let mut queue = MessageQueue::default();
        let mut next_id = 1;
        queue.push(event(1, EventKind::Available));
        let raw = RawMessage {
            message_type: "RunnerScaleSetJobMessages".into(),
            body: "not json".into(),
        };
        queue.push_raw(raw.clone());
        let (id, events) = queue.next(0, &mut next_id).expect("the raw message");
        assert!(events.is_empty());
        assert_eq!(queue.raw_in_flight(), Some(&raw));
        let (again, _) = queue.next(0, &mut next_id).expect("redelivered");
        assert_eq!((again, queue.raw_in_flight()), (id, Some(&raw)));
        assert!(queue.ack(id));
        let (next, events) = queue.next(id, &mut next_id).expect("the events");
        assert!(next > id);
        assert_eq!(ids(&events), [1]);
        assert_eq!(queue.raw_in_flight(), None);
    }
}
