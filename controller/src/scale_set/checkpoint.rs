//! The listener's [`Checkpoint`] stored where a restarted or newly elected
//! controller looks first: `status.sessionId` and `status.lastMessageId` of
//! the `RunnerScaleSet`, written through the status subresource.
//!
//! A JSON merge patch touches only those two fields, so the counts and
//! conditions other writers keep in the status survive. `None` is sent as
//! `null`, which removes `sessionId` (the session is gone).
//!
//! A change of session is written at once. A new `lastMessageId` on the same
//! session is written at most once per `min_interval` (a status write per
//! message would cost more writes than the runners themselves); a skipped
//! one goes out with the next message after the interval. That is safe
//! because the id is a second guard only: every handled message is also
//! deleted on the service, which never delivers it again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::conditions::{CONDITION_LISTENING, condition, merge};
use crate::crd::RunnerScaleSet;
use crate::listener::{BoxError, Checkpoint};

/// Saves the resume point into the status of the `RunnerScaleSet` `name`.
#[derive(Clone)]
pub struct StatusCheckpoint {
    pub api: Api<RunnerScaleSet>,
    pub name: String,
    /// The shortest time between two writes for the same session.
    pub min_interval: Duration,
    /// The session and time of the last write.
    written: Arc<Mutex<Option<Written>>>,
    /// The status conditions, shared with the other writers of this
    /// object's status; `Listening` follows the session when this is set.
    conditions: Option<SharedConditions>,
}

#[derive(Debug, Clone, PartialEq)]
struct Written {
    session_id: Option<String>,
    last_message_id: i64,
    at: Instant,
}

impl StatusCheckpoint {
    /// Writes every checkpoint (`min_interval` zero); see [`Self::every`].
    pub fn new(api: Api<RunnerScaleSet>, name: impl Into<String>) -> Self {
        Self {
            api,
            name: name.into(),
            min_interval: Duration::ZERO,
            written: Arc::default(),
            conditions: None,
        }
    }

    /// Keeps the `Listening` condition in step with the session, on top of
    /// `conditions` (the status's as last written by anyone).
    #[must_use]
    pub fn with_conditions(mut self, conditions: SharedConditions) -> Self {
        self.conditions = Some(conditions);
        self
    }

    /// Writes a new message id of the same session at most once per
    /// `min_interval`.
    #[must_use]
    pub fn every(mut self, min_interval: Duration) -> Self {
        self.min_interval = min_interval;
        self
    }
}

/// Whether a checkpoint must be written, given the last write.
fn due(
    last: Option<&Written>,
    session_id: Option<&str>,
    last_message_id: i64,
    now: Instant,
    min_interval: Duration,
) -> bool {
    match last {
        None => true,
        Some(w) if w.session_id.as_deref() != session_id => true,
        Some(w) if w.last_message_id == last_message_id => false,
        Some(w) => now.saturating_duration_since(w.at) >= min_interval,
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "saving the listener checkpoint (sessionId, lastMessageId) to the status of RunnerScaleSet {name:?}: {source}"
)]
pub struct CheckpointError {
    pub name: String,
    #[source]
    pub source: kube::Error,
}

#[derive(Debug, Serialize)]
struct StatusPatch<'a> {
    status: ResumeStatus<'a>,
}

/// `Listening` for a session (or none).
fn listening(session_id: Option<&str>) -> Condition {
    let now = chrono::Utc::now();
    match session_id {
        Some(id) => condition(
            CONDITION_LISTENING,
            true,
            "SessionOpen",
            format!("polling the scale set's message queue (session {id})"),
            None,
            now,
        ),
        None => condition(
            CONDITION_LISTENING,
            false,
            "SessionClosed",
            "no message session is open",
            None,
            now,
        ),
    }
}

/// No `skip_serializing_if`: a `None` session must reach the server as
/// `null` to clear the field.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResumeStatus<'a> {
    session_id: Option<&'a str>,
    last_message_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    conditions: Option<Vec<Condition>>,
}

impl Checkpoint for StatusCheckpoint {
    async fn save(&self, session_id: Option<&str>, last_message_id: i64) -> Result<(), BoxError> {
        let now = Instant::now();
        let last = lock(&self.written).clone();
        if !due(
            last.as_ref(),
            session_id,
            last_message_id,
            now,
            self.min_interval,
        ) {
            return Ok(());
        }
        let session_changed = last
            .as_ref()
            .is_none_or(|w| w.session_id.as_deref() != session_id);
        let conditions = self
            .conditions
            .as_ref()
            .filter(|_| session_changed)
            .map(|shared| merge(&lock(shared), [listening(session_id)]));
        let patch = StatusPatch {
            status: ResumeStatus {
                session_id,
                last_message_id,
                conditions: conditions.clone(),
            },
        };
        self.api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| CheckpointError {
                name: self.name.clone(),
                source,
            })?;
        if let (Some(shared), Some(conditions)) = (&self.conditions, conditions) {
            *lock(shared) = conditions;
        }
        *lock(&self.written) = Some(Written {
            session_id: session_id.map(str::to_owned),
            last_message_id,
            at: now,
        });
        Ok(())
    }
}

/// The conditions of one `RunnerScaleSet` as its writers last sent them:
/// each writer merges its own into these and sends the whole list.
pub type SharedConditions = Arc<Mutex<Vec<Condition>>>;

/// Never held across an await.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_changes_are_written_at_once_message_ids_at_most_every_interval() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let last = Written {
            session_id: Some("s1".into()),
            last_message_id: 5,
            at: t0,
        };
        let at = |secs| t0 + Duration::from_secs(secs);
        assert!(due(None, Some("s1"), 5, t0, minute), "first write");
        assert!(due(Some(&last), None, 5, at(1), minute), "session ended");
        assert!(
            due(Some(&last), Some("s2"), 0, at(1), minute),
            "new session"
        );
        assert!(
            !due(Some(&last), Some("s1"), 5, at(120), minute),
            "nothing new"
        );
        assert!(!due(Some(&last), Some("s1"), 6, at(59), minute), "too soon");
        assert!(
            due(Some(&last), Some("s1"), 6, at(60), minute),
            "interval over"
        );
        assert!(
            due(Some(&last), Some("s1"), 6, t0, Duration::ZERO),
            "no interval"
        );
    }

    #[test]
    fn patch_sends_null_for_no_session() {
        let patch = StatusPatch {
            status: ResumeStatus {
                session_id: None,
                last_message_id: 9,
                conditions: None,
            },
        };
        assert_eq!(
            serde_json::to_value(&patch).expect("serializes"),
            serde_json::json!({ "status": { "sessionId": null, "lastMessageId": 9 } })
        );
    }
}
