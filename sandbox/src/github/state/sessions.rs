//! Sessions (one per scale set) and what flows through them: polls,
//! acknowledgements and job acquisition.

use std::time::Instant;

use super::{Delivery, Phase, ScaleSet, Session, SessionView, State, StateError};
use crate::github::messages::{EventKind, RawMessage};

impl State {
    pub(super) fn session_view(&self, set: &ScaleSet) -> Option<SessionView> {
        let session = set.session.as_ref()?;
        Some(SessionView {
            session_id: session.id.clone(),
            owner_name: session.owner_name.clone(),
            scale_set: self.view(set),
        })
    }

    pub fn create_session(
        &mut self,
        tenant: u32,
        scale_set_id: i64,
        owner: &str,
        now: Instant,
    ) -> Result<SessionView, StateError> {
        let set = self.scale_set_in(Some(tenant), scale_set_id)?;
        if let Some(active) = &set.session {
            return Err(StateError::SessionConflict {
                scale_set_id,
                session_id: active.id.clone(),
            });
        }
        let id = self.uuid();
        let set = self.scale_set_in_mut(Some(tenant), scale_set_id)?;
        set.session = Some(Session {
            id,
            owner_name: owner.to_string(),
            last_activity: now,
            polls_in_flight: 0,
            max_capacity: None,
        });
        let set = self.scale_set_in(Some(tenant), scale_set_id)?;
        self.session_view(set)
            .ok_or_else(|| StateError::SessionExpired(String::new()))
    }

    /// The session with this id, if it is the scale set's active one.
    pub(super) fn session_mut(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
    ) -> Result<&mut Session, StateError> {
        let set = self
            .scale_sets
            .get_mut(&scale_set_id)
            .ok_or(StateError::ScaleSetNotFound(scale_set_id))?;
        set.session
            .as_mut()
            .filter(|s| s.id.eq_ignore_ascii_case(session_id))
            .ok_or_else(|| StateError::SessionExpired(session_id.to_string()))
    }

    pub fn refresh_session(
        &mut self,
        tenant: u32,
        scale_set_id: i64,
        session_id: &str,
        now: Instant,
    ) -> Result<SessionView, StateError> {
        self.scale_set_in(Some(tenant), scale_set_id)?;
        self.session_mut(scale_set_id, session_id)?.last_activity = now;
        let set = self.scale_set_in(Some(tenant), scale_set_id)?;
        self.session_view(set)
            .ok_or_else(|| StateError::SessionExpired(session_id.to_string()))
    }

    /// Deleting a session that is already gone succeeds: a retried DELETE
    /// must not fail.
    pub fn delete_session(
        &mut self,
        tenant: u32,
        scale_set_id: i64,
        session_id: &str,
    ) -> Result<(), StateError> {
        let set = self.scale_set_in_mut(Some(tenant), scale_set_id)?;
        if set
            .session
            .as_ref()
            .is_some_and(|s| s.id.eq_ignore_ascii_case(session_id))
        {
            set.session = None;
            self.changed();
        }
        Ok(())
    }

    pub fn session_active(&self, scale_set_id: i64, session_id: &str) -> bool {
        self.scale_sets
            .get(&scale_set_id)
            .and_then(|s| s.session.as_ref())
            .is_some_and(|s| s.id.eq_ignore_ascii_case(session_id))
    }

    /// Ends every session, as if their listeners had gone quiet for too long.
    pub fn expire_sessions(&mut self) {
        for set in self.scale_sets.values_mut() {
            set.session = None;
        }
        self.changed();
    }

    /// A long poll begins: the session counts as active until it ends.
    pub fn poll_started(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
        max_capacity: Option<u32>,
        now: Instant,
    ) {
        if let Ok(session) = self.session_mut(scale_set_id, session_id) {
            session.polls_in_flight += 1;
            session.last_activity = now;
            if max_capacity.is_some() {
                session.max_capacity = max_capacity;
            }
        }
    }

    pub fn poll_ended(&mut self, scale_set_id: i64, session_id: &str, now: Instant) {
        if let Ok(session) = self.session_mut(scale_set_id, session_id) {
            session.polls_in_flight = session.polls_in_flight.saturating_sub(1);
            session.last_activity = now;
        }
    }

    /// The message for a poll, see `messages` for the semantics.
    pub fn poll(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
        last_message_id: i64,
        now: Instant,
    ) -> Result<Option<Delivery>, StateError> {
        self.session_mut(scale_set_id, session_id)?.last_activity = now;
        let statistics = self.statistics(scale_set_id);
        let set = self
            .scale_sets
            .get_mut(&scale_set_id)
            .ok_or(StateError::ScaleSetNotFound(scale_set_id))?;
        let next = set.queue.next(last_message_id, &mut self.next_message_id);
        let raw = set.queue.raw_in_flight().cloned();
        Ok(next.map(|(message_id, events)| Delivery {
            message_id,
            events,
            statistics,
            raw,
        }))
    }

    /// Queues a message written by hand; see `messages::RawMessage`.
    pub fn queue_raw_message(
        &mut self,
        scale_set_id: i64,
        message: RawMessage,
    ) -> Result<(), StateError> {
        self.scale_sets
            .get_mut(&scale_set_id)
            .ok_or(StateError::ScaleSetNotFound(scale_set_id))?
            .queue
            .push_raw(message);
        self.changed();
        Ok(())
    }

    pub fn acknowledge(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
        message_id: i64,
        now: Instant,
    ) -> Result<(), StateError> {
        self.session_mut(scale_set_id, session_id)?.last_activity = now;
        if let Some(set) = self.scale_sets.get_mut(&scale_set_id) {
            set.queue.ack(message_id);
        }
        Ok(())
    }

    /// Acquires the listed jobs for the scale set. Returns the ids that are
    /// now the scale set's: jobs that were available, and (so that a retried
    /// request gets the same answer) jobs it had already acquired and no
    /// runner has started. Unknown ids and other scale sets' jobs are left out.
    pub fn acquire(
        &mut self,
        scale_set_id: i64,
        session_id: &str,
        ids: &[i64],
        now: Instant,
    ) -> Result<Vec<i64>, StateError> {
        self.session_mut(scale_set_id, session_id)?.last_activity = now;
        let mut acquired = Vec::new();
        for id in ids {
            let Some(job) = self
                .jobs
                .get_mut(id)
                .filter(|j| j.scale_set_id == scale_set_id)
            else {
                continue;
            };
            match job.phase {
                Phase::Available => {
                    job.phase = Phase::Assigned { since: now };
                    job.scale_set_assign_time = Some(now);
                    self.emit(*id, EventKind::Assigned);
                    acquired.push(*id);
                }
                Phase::Assigned { .. } if !acquired.contains(id) => acquired.push(*id),
                _ => {}
            }
        }
        Ok(acquired)
    }

    /// Ends the sessions nobody has polled for `session_idle_timeout`.
    pub(super) fn expire_idle_sessions(&mut self, now: Instant) {
        let timeout = self.settings.session_idle_timeout;
        let mut expired = false;
        for set in self.scale_sets.values_mut() {
            if set
                .session
                .as_ref()
                .and_then(|s| s.idle_at(timeout))
                .is_some_and(|d| d <= now)
            {
                set.session = None;
                expired = true;
            }
        }
        if expired {
            self.changed();
        }
    }
}
