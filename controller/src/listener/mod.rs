//! The per-scale-set listener: one tokio task per scale set inside the
//! controller (no listener pods), speaking PROTOCOL.md section 5 to the
//! scale set's message queue and telling the runner reconciler what it
//! learns.
//!
//! ```text
//! delete the session recorded in status (if any) -> create a session
//!   -> loop: long-poll (lastMessageId = last handled)
//!        202 -> re-send the last Demand
//!        200 -> record statistics and job messages (state::Tracker)
//!               -> acquire JobAvailable ids (queue token)
//!               -> publish Demand -> checkpoint -> acknowledge
//! ```
//!
//! Inputs: a [`ScaleSetService`] (the real [`ActionsClient`] or a scripted
//! twin), a [`ListenerConfig`], the [`Resume`] point kept in the
//! `RunnerScaleSet` status, and a shutdown `watch<bool>`. Outputs: the
//! [`Demand`] watch channel, the [`Checkpoint`] trait, `tracing` events, and
//! [`ListenerError`] when the listener stops on its own. No Kubernetes code.
//! [`Listener::with_limits`] follows `minRunners`/`maxRunners` edits without
//! a new session.
//!
//! # Checkpoint, then acknowledge
//!
//! A message is checkpointed (its id saved as `lastMessageId`) *before* it
//! is acknowledged. The queue redelivers a message until it is acknowledged,
//! and a poll with `lastMessageId = N` drops an unacknowledged message whose
//! id is <= N. So whatever the crash point:
//! - before the checkpoint: the message is redelivered and handled again,
//!   which is harmless (handling is idempotent: acquiring an acquired job is
//!   a no-op, `busy`/`completed` are sets);
//! - between checkpoint and acknowledgement: the restarted listener polls
//!   with the checkpointed id and the service drops the message: it is
//!   neither lost nor handled twice;
//! - after the acknowledgement: the message is gone.
//!
//! With the opposite order the checkpointed id would never be needed (an
//! acknowledged message is gone anyway) and a failed acknowledgement
//! followed by a crash would replay the message. A failed checkpoint does
//! not stop the listener (scaling matters more than the status write): it
//! is retried before the next poll, and the acknowledgement still happens.
//!
//! # Errors
//!
//! Every failure is paced by [`Backoff`] (exponential, capped, jittered):
//! the listener never spins. A 409 session conflict deletes the session
//! recorded in status first; with none recorded (another controller, or an
//! ARC listener, owns the scale set) it is retried with backoff and logged,
//! and after [`ListenerConfig::max_session_conflicts`] (if set) returned as
//! [`ListenerError::SessionConflict`]. An expired queue token is refreshed by
//! the client (one PATCH); an expired session is replaced. A deleted scale
//! set ends the listener with [`ListenerError::ScaleSetNotFound`]: the
//! reconciler re-creates scale sets, the listener never does. On shutdown
//! the session is deleted (best effort) and the checkpoint says so.
//!
//! # Messages that cannot be read
//!
//! `null` reads as absent and each job message decodes on its own: one that
//! still does not decode is logged (type, runner request id, serde's error,
//! never the body), counted, and left out; the rest of the message is
//! handled. A JobAvailable left out is not acquired (the log says so). A
//! message that cannot be read at all ([`Error::UndecodableMessage`]) is
//! polled again with backoff; after [`ListenerConfig::max_message_tries`]
//! tries it is checkpointed, acknowledged and skipped, and
//! [`Demand::skipped`] tells the reconciler (a Warning Event), so one bad
//! message cannot stop the scale set. The tries are counted in memory: a
//! restart starts again from zero. A body that is not JSON, or has no
//! `messageId`, cannot be acknowledged and is retried with backoff.

mod backoff;
mod checkpoint;
mod run;
pub mod state;

use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use crate::github::{Error, ScaleSetService};
use crate::metrics::Metrics;

pub use backoff::Backoff;
pub use checkpoint::{BoxError, Checkpoint, MemoryCheckpoint, Resume};
pub use state::{
    Demand, Handling, JobInfo, Limits, MessageTries, Recovery, SkippedMessage, Statistics, Tracker,
    recovery,
};

#[cfg(doc)]
use crate::github::ActionsClient;

/// One listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub scale_set_id: i64,
    /// The session's `ownerName` (ARC uses the listener's name; Runway the
    /// controller's pod name), shown by GitHub on conflicts.
    pub owner: String,
    pub limits: Limits,
    pub backoff: Backoff,
    /// Session conflicts (with no session of ours to delete) tolerated
    /// before [`ListenerError::SessionConflict`]; `None` retries forever.
    pub max_session_conflicts: Option<u32>,
    /// How long shutdown waits for the session delete.
    pub shutdown_timeout: Duration,
    /// Polls of a message that cannot be read before it is acknowledged
    /// and skipped (see [`MessageTries`]); at least 1.
    pub max_message_tries: u32,
}

impl ListenerConfig {
    /// Default backoff, retries conflicts forever, 10 s to delete the
    /// session on shutdown, skips a message that cannot be read after 5
    /// tries.
    pub fn new(scale_set_id: i64, owner: impl Into<String>, limits: Limits) -> Self {
        Self {
            scale_set_id,
            owner: owner.into(),
            limits,
            backoff: Backoff::default(),
            max_session_conflicts: None,
            shutdown_timeout: Duration::from_secs(10),
            max_message_tries: 5,
        }
    }
}

/// Why a listener stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error(
        "scale set {scale_set_id} no longer exists on GitHub and must be created again: {source}"
    )]
    ScaleSetNotFound {
        scale_set_id: i64,
        #[source]
        source: Error,
    },

    #[error(
        "scale set {scale_set_id}: another message session stayed active through {attempts} \
         attempts to create one; another controller or an ARC listener may serve this scale \
         set: {source}"
    )]
    SessionConflict {
        scale_set_id: i64,
        attempts: u32,
        #[source]
        source: Error,
    },

    #[error("scale set {scale_set_id}: the listener cannot go on: {source}")]
    Client {
        scale_set_id: i64,
        #[source]
        source: Error,
    },
}

impl ListenerError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ListenerError::ScaleSetNotFound { .. } => "scale_set_not_found",
            ListenerError::SessionConflict { .. } => "session_conflict",
            ListenerError::Client { .. } => "client",
        }
    }
}

/// A scale set's listener. Run it in its own task:
///
/// ```no_run
/// # use runway_controller::listener::*;
/// # async fn demo(client: runway_controller::github::ActionsClient) {
/// let (demand, demand_rx) = tokio::sync::watch::channel(Demand::default());
/// let (stop, stop_rx) = tokio::sync::watch::channel(false);
/// let config = ListenerConfig::new(42, "runway-controller-0", Limits::default());
/// let listener = Listener::new(client, MemoryCheckpoint::default(), config, demand);
/// let task = tokio::spawn(async move { listener.run(Resume::default(), stop_rx).await });
/// // ... the reconciler reads demand_rx ...
/// stop.send_replace(true);
/// # let _ = (task.await, demand_rx);
/// # }
/// ```
pub struct Listener<S, C> {
    service: S,
    checkpoint: C,
    config: ListenerConfig,
    demand: watch::Sender<Demand>,
    limits: Option<watch::Receiver<Limits>>,
    metrics: Option<Metrics>,
}

impl<S: ScaleSetService, C: Checkpoint> Listener<S, C> {
    pub fn new(
        service: S,
        checkpoint: C,
        config: ListenerConfig,
        demand: watch::Sender<Demand>,
    ) -> Self {
        Self {
            service,
            checkpoint,
            config,
            demand,
            limits: None,
            metrics: None,
        }
    }

    /// Counts what could not be read in
    /// `runway_github_messages_undecodable_total`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Follows `minRunners`/`maxRunners` changes (the scale set's spec was
    /// edited) without a new session: the demand is recomputed and the
    /// poll in flight is restarted with the new `X-ScaleSetMaxCapacity`.
    /// The channel's current value replaces [`ListenerConfig::limits`].
    pub fn with_limits(mut self, limits: watch::Receiver<Limits>) -> Self {
        self.config.limits = *limits.borrow();
        self.limits = Some(limits);
        self
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// Listens until `shutdown` turns true (or its sender is dropped):
    /// then deletes the session and returns `Ok`. Returns an error only for
    /// what retrying cannot fix (see [`ListenerError`]).
    pub async fn run(
        &self,
        resume: Resume,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), ListenerError> {
        let span = tracing::info_span!("listener", scale_set_id = self.config.scale_set_id);
        let mut run = run::Run::new(self, resume, shutdown);
        // The first demand goes out with the session's statistics, not
        // before: a default (nothing assigned) would tell the reconciler to
        // scale down runners that wait for jobs assigned before a restart.
        async move { run.main().await }.instrument(span).await
    }
}

#[cfg(test)]
mod tests;
