//! The listener's [`Checkpoint`] stored where a restarted or newly elected
//! controller looks first: `status.sessionId` and `status.lastMessageId` of
//! the `RunnerScaleSet`, written through the status subresource.
//!
//! A JSON patch touches only those two fields (and `Listening`), so the
//! counts and conditions other writers keep in the status survive. `None`
//! removes `sessionId` (the session is gone).
//!
//! Fenced: nothing is written once the process no longer leads, and every
//! write `test`s that `sessionId` still holds what this checkpoint last
//! knew it to hold. A leader that lost its Lease while paused, and wakes up
//! after a standby recorded its own session, is refused (422) instead of
//! replacing the new leader's session id; see [`guard`] for what a refused
//! write does next.
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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::conditions::{CONDITION_LISTENING, condition, merge};
use crate::crd::RunnerScaleSet;
use crate::leader::Fence;
use crate::listener::{BoxError, Checkpoint};
use crate::patch::{Op, json_patch};

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
    /// What `status.sessionId` holds as far as this checkpoint knows: what
    /// it last wrote, or what the status held when the listener started.
    recorded: Arc<Mutex<Option<String>>>,
    fence: Fence,
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
            recorded: Arc::default(),
            fence: Fence::unfenced(),
        }
    }

    /// The status holds `session_id` now (read when the listener starts).
    #[must_use]
    pub fn recorded(self, session_id: Option<String>) -> Self {
        *lock(&self.recorded) = session_id;
        self
    }

    /// Writes only while `fence` is open.
    #[must_use]
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
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
pub enum CheckpointError {
    #[error(
        "saving the listener checkpoint (sessionId, lastMessageId) to the status of RunnerScaleSet {name:?}: {source}"
    )]
    Write {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "not saving the listener checkpoint of RunnerScaleSet {name:?}: this process no longer holds the leader Lease"
    )]
    NotLeading { name: String },
    #[error(
        "not saving the listener checkpoint of RunnerScaleSet {name:?}: status.sessionId holds session {stored:?}, which another listener (a newer leader, another controller or an ARC listener) recorded; it is left alone"
    )]
    Foreign { name: String, stored: String },
    #[error(
        "not saving the listener checkpoint of RunnerScaleSet {name:?}: status.sessionId kept changing under it"
    )]
    Changing { name: String },
}

/// What `status.sessionId` holds: what this checkpoint believes (before a
/// write), or what a read after a refused write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored<'a> {
    Believed(Option<&'a str>),
    Read(Option<&'a str>),
}

/// What to do with a checkpoint of `session_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Guard {
    /// Not leading: write nothing.
    NotLeading,
    /// Write, conditional on `sessionId` holding `expect` (absent: `None`).
    Write { expect: Option<String> },
    /// Another listener's session is recorded: leave it.
    Foreign(String),
}

/// Whether and how to write a checkpoint of `session_id`. A first attempt
/// expects what we believe. After a refused `test`: nothing recorded (a
/// listener closed, or a stale belief) may be claimed; our own session
/// (an earlier write whose answer was lost) is adopted; any other session
/// belongs to someone else, who wrote it after us.
fn guard(leading: bool, stored: Stored<'_>, session_id: Option<&str>) -> Guard {
    let write = |expect: Option<&str>| Guard::Write {
        expect: expect.map(str::to_owned),
    };
    match stored {
        _ if !leading => Guard::NotLeading,
        Stored::Believed(expect) => write(expect),
        Stored::Read(None) => write(None),
        Stored::Read(Some(stored)) if Some(stored) == session_id => write(Some(stored)),
        Stored::Read(Some(stored)) => Guard::Foreign(stored.to_owned()),
    }
}

/// The JSON patch of a checkpoint: `test` the stored session, then set
/// (or remove) it, the message id and the conditions.
fn checkpoint_ops(
    expect: Option<&str>,
    session_id: Option<&str>,
    last_message_id: i64,
    conditions: Option<&[Condition]>,
) -> Vec<Op> {
    // A `test` for null passes on an absent member.
    let mut ops = vec![Op {
        op: "test",
        path: "/status/sessionId".into(),
        value: Some(expect.map_or(serde_json::Value::Null, Into::into)),
    }];
    match (expect, session_id) {
        (_, Some(id)) => ops.push(Op::add("/status/sessionId", id)),
        (Some(_), None) => ops.push(Op {
            op: "remove",
            path: "/status/sessionId".into(),
            value: None,
        }),
        (None, None) => {}
    }
    ops.push(Op::add("/status/lastMessageId", last_message_id));
    if let Some(conditions) = conditions {
        ops.push(Op::add(
            "/status/conditions",
            serde_json::to_value(conditions).unwrap_or_default(),
        ));
    }
    ops
}

/// A refused JSON patch `test` (the API server answers 422).
fn test_failed(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 422)
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
        self.write(session_id, last_message_id, conditions.as_deref())
            .await?;
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

impl StatusCheckpoint {
    /// The fenced, conditional write (see [`guard`]); one retry after a
    /// refused `test`, on what a read then finds.
    async fn write(
        &self,
        session_id: Option<&str>,
        last_message_id: i64,
        conditions: Option<&[Condition]>,
    ) -> Result<(), CheckpointError> {
        let believed = lock(&self.recorded).clone();
        let first = Stored::Believed(believed.as_deref());
        if self
            .attempt(first, session_id, last_message_id, conditions)
            .await?
        {
            return Ok(());
        }
        let current = self
            .api
            .get_status(&self.name)
            .await
            .map_err(|source| self.write_error(source))?;
        let read = current.status.and_then(|s| s.session_id);
        tracing::info!(
            scale_set = %self.name, believed = ?believed, stored = ?read,
            "status.sessionId changed under the listener's checkpoint"
        );
        let second = Stored::Read(read.as_deref());
        if self
            .attempt(second, session_id, last_message_id, conditions)
            .await?
        {
            return Ok(());
        }
        Err(CheckpointError::Changing {
            name: self.name.clone(),
        })
    }

    /// One guarded write; false if its `test` was refused.
    async fn attempt(
        &self,
        stored: Stored<'_>,
        session_id: Option<&str>,
        last_message_id: i64,
        conditions: Option<&[Condition]>,
    ) -> Result<bool, CheckpointError> {
        let name = self.name.clone();
        let expect = match guard(self.fence.is_leading(), stored, session_id) {
            Guard::NotLeading => return Err(CheckpointError::NotLeading { name }),
            Guard::Foreign(stored) => return Err(CheckpointError::Foreign { name, stored }),
            Guard::Write { expect } => expect,
        };
        let ops = checkpoint_ops(expect.as_deref(), session_id, last_message_id, conditions);
        let patch = Patch::<()>::Json(json_patch(ops).map_err(|source| self.write_error(source))?);
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                *lock(&self.recorded) = session_id.map(str::to_owned);
                Ok(true)
            }
            Err(error) if test_failed(&error) => Ok(false),
            Err(error) => Err(self.write_error(error)),
        }
    }

    fn write_error(&self, source: kube::Error) -> CheckpointError {
        CheckpointError::Write {
            name: self.name.clone(),
            source,
        }
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
    fn guard_writes_only_while_leading_and_never_over_another_session() {
        use Stored::{Believed, Read};
        let write = |expect: Option<&str>| Guard::Write {
            expect: expect.map(str::to_owned),
        };
        // (case, leading, stored, session to write, expected)
        let table = [
            (
                "not leading",
                false,
                Believed(Some("a")),
                Some("a"),
                Guard::NotLeading,
            ),
            (
                "not leading, after a read",
                false,
                Read(None),
                Some("a"),
                Guard::NotLeading,
            ),
            (
                "first write: expect the belief",
                true,
                Believed(Some("old")),
                Some("new"),
                write(Some("old")),
            ),
            (
                "first write, nothing believed",
                true,
                Believed(None),
                Some("a"),
                write(None),
            ),
            (
                "closing: expect our session",
                true,
                Believed(Some("a")),
                None,
                write(Some("a")),
            ),
            (
                "refused, nothing stored: claim",
                true,
                Read(None),
                Some("a"),
                write(None),
            ),
            (
                "refused, ours stored: adopt",
                true,
                Read(Some("a")),
                Some("a"),
                write(Some("a")),
            ),
            (
                "refused, a newer leader's session stored: leave it",
                true,
                Read(Some("theirs")),
                Some("ours"),
                Guard::Foreign("theirs".into()),
            ),
            (
                "closing, another session stored: leave it",
                true,
                Read(Some("theirs")),
                None,
                Guard::Foreign("theirs".into()),
            ),
        ];
        for (case, leading, stored, session, expected) in table {
            assert_eq!(guard(leading, stored, session), expected, "{case}");
        }
    }

    #[test]
    fn ops_test_the_stored_session_then_set_or_remove_it() {
        let json = |ops: Vec<Op>| serde_json::to_value(ops).expect("serializes");
        assert_eq!(
            json(checkpoint_ops(Some("old"), Some("new"), 7, None)),
            serde_json::json!([
                {"op": "test", "path": "/status/sessionId", "value": "old"},
                {"op": "add", "path": "/status/sessionId", "value": "new"},
                {"op": "add", "path": "/status/lastMessageId", "value": 7},
            ])
        );
        assert_eq!(
            json(checkpoint_ops(Some("old"), None, 9, Some(&[]))),
            serde_json::json!([
                {"op": "test", "path": "/status/sessionId", "value": "old"},
                {"op": "remove", "path": "/status/sessionId"},
                {"op": "add", "path": "/status/lastMessageId", "value": 9},
                {"op": "add", "path": "/status/conditions", "value": []},
            ])
        );
        assert_eq!(
            json(checkpoint_ops(None, None, 0, None)),
            serde_json::json!([
                {"op": "test", "path": "/status/sessionId", "value": null},
                {"op": "add", "path": "/status/lastMessageId", "value": 0},
            ])
        );
    }
}
