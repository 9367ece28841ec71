//! The listener's I/O loop: sessions, polls, acquisitions, checkpoints and
//! acknowledgements, paced by the backoff. Every decision is in
//! [`state`](super::state); this file only calls the service and sleeps.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use super::checkpoint::{Checkpoint, Resume};
use super::state::{MessageTries, Recovery, SkippedMessage, Tracker, recovery};
use super::{Limits, Listener, ListenerError};
use crate::github::queue::ScaleSetMessage;
use crate::github::wire::RunnerScaleSetSession;
use crate::github::{Error, ScaleSetService};

/// How serving one session ended.
enum End {
    Shutdown,
    NewSession,
    Stop(ListenerError),
}

/// After an error: go on with this session, or end it.
enum Flow {
    Continue,
    End(End),
}

/// One run's state; the decisions are in [`state`](super::state), this
/// only does I/O.
pub(super) struct Run<'a, S, C> {
    listener: &'a Listener<S, C>,
    tracker: Tracker,
    last_message_id: i64,
    /// A session of ours that may still exist: deleted before creating one.
    stale_session: Option<String>,
    /// Consecutive failures, for the backoff; a successful poll resets it.
    failures: u32,
    /// The last checkpoint failed; try again before the next poll.
    checkpoint_pending: bool,
    /// Failed reads of the message in flight, to skip it after the bound.
    tries: MessageTries,
    shutdown: watch::Receiver<bool>,
    /// `None` when the limits are fixed (or their sender is gone).
    limits: Option<watch::Receiver<Limits>>,
}

impl<'a, S: ScaleSetService, C: Checkpoint> Run<'a, S, C> {
    pub(super) fn new(
        listener: &'a Listener<S, C>,
        resume: Resume,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Run {
            listener,
            tracker: Tracker::new(listener.config.limits),
            last_message_id: resume.last_message_id,
            stale_session: resume.session_id,
            failures: 0,
            checkpoint_pending: false,
            tries: MessageTries::default(),
            shutdown,
            limits: listener.limits.clone(),
        }
    }

    fn id(&self) -> i64 {
        self.listener.config.scale_set_id
    }

    pub(super) async fn main(&mut self) -> Result<(), ListenerError> {
        loop {
            let mut session = match self.open_session().await {
                Ok(Some(session)) => session,
                Ok(None) => return Ok(()),
                Err(error) => {
                    if matches!(error, ListenerError::ScaleSetNotFound { .. }) {
                        self.save(None).await;
                    }
                    return Err(error);
                }
            };
            self.tracker.on_statistics(session.statistics.as_ref());
            tracing::debug!(
                desired = self.tracker.demand().desired,
                statistics = ?session.statistics,
                "demand from the session's statistics"
            );
            self.publish();
            match self.serve(&mut session).await {
                End::Shutdown => {
                    self.close(&session).await;
                    return Ok(());
                }
                End::NewSession => self.stale_session = Some(session.session_id),
                End::Stop(error @ ListenerError::ScaleSetNotFound { .. }) => {
                    // The session went with the scale set.
                    self.save(None).await;
                    return Err(error);
                }
                End::Stop(error) => {
                    self.close(&session).await;
                    return Err(error);
                }
            }
        }
    }

    /// Deletes our previous session if there is one, then creates a session,
    /// backing off on every failure. `None`: shutdown.
    async fn open_session(&mut self) -> Result<Option<RunnerScaleSetSession>, ListenerError> {
        let listener = self.listener;
        let (id, owner) = (self.id(), listener.config.owner.as_str());
        let mut conflicts = 0u32;
        loop {
            if let Some(stale) = self.stale_session.clone() {
                let deleted = until_shutdown(
                    &mut self.shutdown,
                    listener.service.delete_session(id, &stale),
                );
                match deleted.await {
                    None => return Ok(None),
                    Some(Ok(())) => {
                        tracing::info!(session_id = %stale, "deleted the previous message session");
                        self.stale_session = None;
                    }
                    Some(Err(error)) if recovery(&error) == Recovery::ScaleSetGone => {
                        return Err(self.gone(error));
                    }
                    Some(Err(error)) => tracing::warn!(
                        session_id = %stale,
                        %error,
                        "could not delete the previous message session; creating one anyway"
                    ),
                }
            }
            let created = until_shutdown(
                &mut self.shutdown,
                listener.service.create_session(id, owner),
            );
            let error = match created.await {
                None => return Ok(None),
                Some(Ok(session)) => {
                    tracing::info!(
                        session_id = %session.session_id,
                        owner,
                        last_message_id = self.last_message_id,
                        "message session created"
                    );
                    self.stale_session = None;
                    self.save(Some(&session.session_id)).await;
                    return Ok(Some(session));
                }
                Some(Err(error)) => self.confirm_not_found(error).await,
            };
            match recovery(&error) {
                Recovery::ScaleSetGone => return Err(self.gone(error)),
                Recovery::Fatal => return Err(self.fatal(error)),
                Recovery::Conflict => {
                    conflicts += 1;
                    let max = listener.config.max_session_conflicts;
                    if max.is_some_and(|max| conflicts >= max) {
                        return Err(ListenerError::SessionConflict {
                            scale_set_id: id,
                            attempts: conflicts,
                            source: error,
                        });
                    }
                    tracing::warn!(
                        attempt = conflicts,
                        %error,
                        "another message session is active for this scale set (another \
                         controller or an ARC listener?); retrying with backoff"
                    );
                    if !self.pause(conflicts, None).await {
                        return Ok(None);
                    }
                }
                Recovery::Retry { server_wait } => {
                    self.failures += 1;
                    tracing::warn!(attempt = self.failures, %error, "could not create a message session; retrying with backoff");
                    if !self.pause(self.failures, server_wait).await {
                        return Ok(None);
                    }
                }
                Recovery::NewSession | Recovery::SkipMessage(_) | Recovery::Undecodable(_) => {
                    self.failures += 1;
                    tracing::warn!(attempt = self.failures, %error, "could not create a message session; retrying with backoff");
                    if !self.pause(self.failures, None).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Polls and handles messages until the session ends.
    async fn serve(&mut self, session: &mut RunnerScaleSetSession) -> End {
        let (listener, id) = (self.listener, self.id());
        loop {
            if self.checkpoint_pending {
                self.save(Some(&session.session_id)).await;
            }
            self.follow_limits();
            let max_capacity = self.tracker.limits().max_capacity();
            let (shutdown, limits) = (&mut self.shutdown, &mut self.limits);
            let poll =
                listener
                    .service
                    .get_message(id, session, self.last_message_id, max_capacity);
            let polled = until_shutdown(shutdown, async {
                tokio::select! {
                    polled = poll => Some(polled),
                    () = limits_changed(limits) => None,
                }
            });
            let message = match polled.await {
                None => return End::Shutdown,
                // New limits: poll again with the new capacity.
                Some(None) => continue,
                Some(Some(polled)) => polled,
            };
            let message = match message {
                Ok(None) => {
                    self.failures = 0;
                    // PROTOCOL.md: on 202, re-apply the last count.
                    self.publish();
                    continue;
                }
                Ok(Some(message)) => {
                    self.failures = 0;
                    self.tries.clear();
                    message
                }
                Err(error) => match self.after_error(error, session).await {
                    Flow::Continue => continue,
                    Flow::End(end) => return end,
                },
            };
            if let Some(end) = self.handle(session, message).await {
                return end;
            }
        }
    }

    /// One message: record, acquire, publish, checkpoint, acknowledge.
    async fn handle(
        &mut self,
        session: &mut RunnerScaleSetSession,
        message: ScaleSetMessage,
    ) -> Option<End> {
        let listener = self.listener;
        let id = self.id();
        let message_id = message.message_id;
        let handling = self.tracker.on_message(&message);
        for runner in &handling.started {
            tracing::info!(message_id, runner, "job started: runner is busy");
        }
        for runner in &handling.completed {
            tracing::info!(message_id, runner, "job completed: runner is done");
        }
        for job in &handling.undecodable {
            self.count_undecodable("element");
            let message_type = job.message_type.as_deref().unwrap_or("(none)");
            let runner_request_id = job.runner_request_id;
            if message_type == "JobAvailable" {
                tracing::warn!(
                    message_id,
                    message_type,
                    runner_request_id,
                    error = %job.error,
                    "a job message does not decode and is left out: this job cannot be acquired \
                     by this scale set"
                );
            } else {
                tracing::warn!(
                    message_id,
                    message_type,
                    runner_request_id,
                    error = %job.error,
                    "a job message does not decode and is left out"
                );
            }
        }
        if !handling.acquire.is_empty() {
            let acquired = until_shutdown(
                &mut self.shutdown,
                listener
                    .service
                    .acquire_jobs(id, session, &handling.acquire),
            );
            match acquired.await {
                None => {
                    self.publish();
                    return Some(End::Shutdown);
                }
                Some(Ok(acquired)) => tracing::info!(
                    message_id,
                    available = handling.acquire.len(),
                    acquired = acquired.len(),
                    "acquired jobs"
                ),
                Some(Err(error)) => {
                    // Neither checkpointed nor acknowledged: the message comes
                    // again and is handled again.
                    self.publish();
                    return match self.after_error(error, session).await {
                        Flow::Continue => None,
                        Flow::End(end) => Some(end),
                    };
                }
            }
        }
        self.publish();
        tracing::debug!(
            message_id,
            desired = self.tracker.demand().desired,
            jobs = message.jobs.len(),
            "message handled"
        );
        match self.checkpoint_and_acknowledge(message_id, session).await {
            None => Some(End::Shutdown),
            Some(Ok(())) => None,
            // The next poll's lastMessageId drops it anyway.
            Some(Err(error)) => match self.after_error(error, session).await {
                Flow::Continue => None,
                Flow::End(end) => Some(end),
            },
        }
    }

    /// What to do after a call on an open session failed; sleeps the
    /// backoff where the answer is to try again.
    async fn after_error(&mut self, error: Error, session: &mut RunnerScaleSetSession) -> Flow {
        match recovery(&error) {
            Recovery::ScaleSetGone => Flow::End(End::Stop(self.gone(error))),
            Recovery::Fatal => Flow::End(End::Stop(self.fatal(error))),
            Recovery::SkipMessage(message_id) => {
                tracing::warn!(message_id, %error, "skipping a message this listener cannot read");
                self.skip(message_id, session).await
            }
            Recovery::Undecodable(message_id) => {
                let max = self.listener.config.max_message_tries;
                let (tries, give_up) = self.tries.failed(message_id, max);
                if !give_up {
                    self.failures += 1;
                    tracing::warn!(
                        message_id,
                        attempt = tries,
                        max_tries = max,
                        %error,
                        "a message cannot be read; polling it again with backoff"
                    );
                    return if self.pause(self.failures, None).await {
                        Flow::Continue
                    } else {
                        Flow::End(End::Shutdown)
                    };
                }
                tracing::error!(
                    message_id,
                    tries,
                    %error,
                    "skipping a message that could not be read: any job in it is not acquired \
                     and any runner it names is not tracked by this listener"
                );
                self.tries.clear();
                self.count_undecodable("message");
                let reason = match &error {
                    Error::UndecodableMessage { problem, .. } => problem.clone(),
                    other => other.to_string(),
                };
                self.tracker.on_skipped(SkippedMessage {
                    message_id,
                    tries,
                    reason,
                });
                self.publish();
                self.skip(message_id, session).await
            }
            Recovery::NewSession | Recovery::Conflict => {
                self.failures += 1;
                tracing::warn!(
                    attempt = self.failures,
                    session_id = %session.session_id,
                    %error,
                    "the message session ended; creating a new one"
                );
                if self.pause(self.failures, None).await {
                    Flow::End(End::NewSession)
                } else {
                    Flow::End(End::Shutdown)
                }
            }
            Recovery::Retry { server_wait } => {
                self.failures += 1;
                tracing::warn!(attempt = self.failures, %error, "message queue call failed; retrying with backoff");
                if self.pause(self.failures, server_wait).await {
                    Flow::Continue
                } else {
                    Flow::End(End::Shutdown)
                }
            }
        }
    }

    /// Checkpoints past `message_id` and acknowledges it, so that it is
    /// never delivered again.
    async fn skip(&mut self, message_id: i64, session: &mut RunnerScaleSetSession) -> Flow {
        match self.checkpoint_and_acknowledge(message_id, session).await {
            None => Flow::End(End::Shutdown),
            Some(Ok(())) => Flow::Continue,
            // The next poll's lastMessageId drops it anyway.
            Some(Err(error)) => {
                tracing::warn!(message_id, %error, "could not acknowledge a skipped message");
                Flow::Continue
            }
        }
    }

    /// Checkpoints past `message_id`, then acknowledges it; `None` when
    /// shutdown came first. Checkpoint first: a crash in between replays
    /// nothing, while the other order could lose the message's jobs.
    async fn checkpoint_and_acknowledge(
        &mut self,
        message_id: i64,
        session: &mut RunnerScaleSetSession,
    ) -> Option<Result<(), Error>> {
        self.last_message_id = self.last_message_id.max(message_id);
        self.save(Some(&session.session_id)).await;
        let (listener, id) = (self.listener, self.id());
        until_shutdown(
            &mut self.shutdown,
            listener
                .service
                .acknowledge_message(id, session, message_id),
        )
        .await
    }

    fn count_undecodable(&self, kind: &'static str) {
        if let Some(metrics) = &self.listener.metrics {
            metrics.message_undecodable(kind);
        }
    }

    /// A bare 404 from session creation may mean the scale set is gone:
    /// ask for the scale set, which maps a bare 404 to not found.
    async fn confirm_not_found(&mut self, error: Error) -> Error {
        if error.status() != Some(404) {
            return error;
        }
        match self.listener.service.scale_set(self.id()).await {
            Err(gone @ Error::ScaleSetNotFound { .. }) => gone,
            _ => error,
        }
    }

    /// Shutdown (or a fatal error): delete the session, best effort.
    async fn close(&mut self, session: &RunnerScaleSetSession) {
        let listener = self.listener;
        let deleted = tokio::time::timeout(
            listener.config.shutdown_timeout,
            listener
                .service
                .delete_session(self.id(), &session.session_id),
        );
        match deleted.await {
            Ok(Ok(())) => {
                tracing::info!(session_id = %session.session_id, "message session deleted");
                self.save(None).await;
            }
            Ok(Err(error)) => tracing::warn!(
                session_id = %session.session_id,
                %error,
                "could not delete the message session; the next listener deletes it"
            ),
            Err(_) => tracing::warn!(
                session_id = %session.session_id,
                "deleting the message session timed out; the next listener deletes it"
            ),
        }
    }

    async fn save(&mut self, session_id: Option<&str>) {
        let saved = self
            .listener
            .checkpoint
            .save(session_id, self.last_message_id)
            .await;
        match saved {
            Ok(()) => self.checkpoint_pending = false,
            Err(error) => {
                tracing::warn!(
                    last_message_id = self.last_message_id,
                    error = %error,
                    "could not checkpoint the listener; retrying before the next poll"
                );
                self.checkpoint_pending = true;
            }
        }
    }

    /// Sleeps the backoff for `failures`; false if shutdown came first.
    async fn pause(&mut self, failures: u32, server_wait: Option<Duration>) -> bool {
        let jitter = rand::random::<f64>();
        let delay = self
            .listener
            .config
            .backoff
            .delay_honouring(failures, jitter, server_wait);
        tracing::debug!(delay_ms = delay.as_millis() as u64, "backing off");
        until_shutdown(&mut self.shutdown, tokio::time::sleep(delay))
            .await
            .is_some()
    }

    /// Takes new limits, if any, and publishes the demand they give. Reads
    /// the value whether or not it is marked changed: [`limits_changed`]
    /// marks it seen when it wakes the poll.
    fn follow_limits(&mut self) {
        let Some(limits) = self.limits.as_mut() else {
            return;
        };
        let limits = *limits.borrow_and_update();
        if self.tracker.set_limits(limits) {
            tracing::info!(
                min_runners = limits.min_runners,
                max_runners = ?limits.max_runners,
                desired = self.tracker.demand().desired,
                "new runner limits"
            );
            self.publish();
        }
    }

    /// Sends the current demand, changed or not (receivers re-apply).
    pub(super) fn publish(&self) {
        self.listener
            .demand
            .send_replace(self.tracker.demand().clone());
    }

    fn gone(&self, source: Error) -> ListenerError {
        tracing::warn!(%source, "the scale set was deleted on GitHub");
        ListenerError::ScaleSetNotFound {
            scale_set_id: self.id(),
            source,
        }
    }

    fn fatal(&self, source: Error) -> ListenerError {
        tracing::error!(%source, "the listener stops: retrying cannot fix this");
        ListenerError::Client {
            scale_set_id: self.id(),
            source,
        }
    }
}

/// Returns when the limits change; never if they are fixed. A dropped
/// sender means fixed from then on.
async fn limits_changed(limits: &mut Option<watch::Receiver<Limits>>) {
    if let Some(receiver) = limits {
        if receiver.changed().await.is_ok() {
            return;
        }
        *limits = None;
    }
    std::future::pending::<()>().await
}

/// `work`, unless shutdown is asked for first (`None`). A dropped sender
/// counts as shutdown: nobody is left to keep the listener running for.
async fn until_shutdown<T>(
    shutdown: &mut watch::Receiver<bool>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => None,
        value = work => Some(value),
    }
}
