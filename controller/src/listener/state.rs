//! The listener's decisions, apart from its I/O: what a queue message means
//! for the scale set ([`Tracker::on_message`]), the desired runner count, and
//! what to do after an error ([`recovery`]). No client, no clock, no
//! randomness: the loop in the parent module gathers those and calls these.
//!
//! Invariants the tests hold this module to:
//! - handling a message twice changes nothing the second time (messages are
//!   delivered again until acknowledged, and a restart may re-handle the one
//!   message it had not checkpointed), so `busy` and `completed` are sets and
//!   acquiring an id again is harmless;
//! - a runner whose job completed is never busy again;
//! - `busy`, `completed` and `skipped` are bounded: a lost JobCompleted
//!   cannot grow the listener's memory without end;
//! - `desired` is always `min(maxRunners, minRunners + totalAssignedJobs)` of
//!   the last statistics seen.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::github::Error;
use crate::github::queue::ScaleSetMessage;
use crate::github::wire::{JobMessage, RunnerScaleSetStatistic, UndecodableJob};
use crate::scaler::desired_runners;

/// How many completed runner names [`Demand::completed`] remembers. The
/// reconciler deletes those pods within seconds; older names only cost
/// memory, so the oldest are forgotten first.
pub const COMPLETED_MEMORY: usize = 1024;

/// How many busy runners [`Demand::busy`] remembers when `maxRunners` is
/// unset; with `maxRunners` set, twice that (at least [`BUSY_MEMORY_MIN`]).
/// A scale set never has more busy runners than runners, so only runners
/// whose JobCompleted was lost go over: the oldest are forgotten first.
/// Forgetting is safe for a runner still busy: the reconciler has marked
/// its pod busy by then, and the mark alone keeps it.
pub const BUSY_MEMORY: usize = 4096;
/// The least [`Demand::busy`] remembers, for small `maxRunners`.
pub const BUSY_MEMORY_MIN: usize = 256;

/// How many skipped messages [`Demand::skipped`] keeps for the reconciler
/// to report; [`Demand::skipped_total`] counts them all.
pub const SKIPPED_MEMORY: usize = 16;

/// The scale set's `minRunners` and `maxRunners`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Idle runners to keep on top of the assigned jobs.
    pub min_runners: u32,
    /// `None`: no upper bound (ARC's default).
    pub max_runners: Option<u32>,
}

/// How many busy runners the listener remembers (see [`BUSY_MEMORY`]).
pub fn busy_memory(limits: Limits) -> usize {
    limits.max_runners.map_or(BUSY_MEMORY, |max| {
        usize::try_from(max)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .max(BUSY_MEMORY_MIN)
    })
}

impl Limits {
    /// The `X-ScaleSetMaxCapacity` a poll sends: `maxRunners`, or ARC's
    /// `math.MaxInt32` when unbounded.
    pub fn max_capacity(&self) -> u32 {
        self.max_runners.unwrap_or(i32::MAX as u32)
    }

    /// `min(maxRunners, minRunners + totalAssignedJobs)`.
    pub fn desired(&self, statistics: &Statistics) -> u32 {
        desired_runners(self.min_runners, self.max_runners, statistics.assigned_jobs)
    }
}

/// The scale set's statistics as the service last reported them (negative
/// or oversized wire values are clamped into `u32`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    pub available_jobs: u32,
    pub acquired_jobs: u32,
    /// Jobs assigned to this scale set: what the runner count follows.
    pub assigned_jobs: u32,
    pub running_jobs: u32,
    pub registered_runners: u32,
    pub busy_runners: u32,
    pub idle_runners: u32,
}

impl From<&RunnerScaleSetStatistic> for Statistics {
    fn from(wire: &RunnerScaleSetStatistic) -> Self {
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        Statistics {
            available_jobs: count(wire.total_available_jobs),
            acquired_jobs: count(wire.total_acquired_jobs),
            assigned_jobs: count(wire.total_assigned_jobs),
            running_jobs: count(wire.total_running_jobs),
            registered_runners: count(wire.total_registered_runners),
            busy_runners: count(wire.total_busy_runners),
            idle_runners: count(wire.total_idle_runners),
        }
    }
}

/// The job a busy runner is running, from its JobStarted message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobInfo {
    pub runner_request_id: i64,
    pub runner_id: i64,
    pub job_id: String,
    /// `owner/repo`.
    pub repository: String,
    pub workflow_ref: String,
    pub display_name: String,
    pub workflow_run_id: i64,
    /// When the runner was assigned the job, if the service said.
    pub started: Option<DateTime<Utc>>,
}

/// What the listener tells the runner reconciler, through a
/// `tokio::sync::watch` channel. Each value is the listener's whole current
/// view, not a delta: the latest replaces the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// Runners the scale set should have:
    /// `min(maxRunners, minRunners + totalAssignedJobs)`.
    pub desired: u32,
    /// The statistics of the last message (or of the session, before the
    /// first message), for metrics and for a reconciler that computes its
    /// own count (a scheduled `minRunners`).
    pub statistics: Statistics,
    /// Runners (by name) running a job (JobStarted seen, JobCompleted not
    /// yet): mark their pods busy; never scale them down.
    pub busy: BTreeMap<String, JobInfo>,
    /// Runners (by name) whose job completed: delete their pods, even if the
    /// runner process has not exited yet. Bounded to the latest
    /// [`COMPLETED_MEMORY`] names.
    pub completed: BTreeSet<String>,
    /// The latest messages the listener acknowledged without handling them
    /// (at most [`SKIPPED_MEMORY`], oldest first): the reconciler reports
    /// them as Warning Events.
    pub skipped: Vec<SkippedMessage>,
    /// Every message skipped since the listener started; the reconciler
    /// compares it with the last value it reported.
    pub skipped_total: u64,
    /// Bumped whenever any other field changes. The listener also re-sends
    /// an unchanged value after a poll with no message (PROTOCOL.md: "on 202
    /// re-apply the last count"), so a receiver woken with the same
    /// generation should re-apply, not skip.
    pub generation: u64,
}

/// A message the listener acknowledged and skipped because it could not be
/// read after [`ListenerConfig::max_message_tries`](super::ListenerConfig)
/// tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedMessage {
    pub message_id: i64,
    pub tries: u32,
    /// Why it could not be read.
    pub reason: String,
}

/// What the I/O loop must do for one message, after [`Tracker::on_message`]
/// has recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handling {
    /// JobAvailable runner request ids to acquire, in message order, without
    /// repeats.
    pub acquire: Vec<i64>,
    /// Runners newly marked busy by this message (for logs).
    pub started: Vec<String>,
    /// Runners newly marked completed by this message (for logs).
    pub completed: Vec<String>,
    /// Job messages that did not decode, left out (for logs and metrics).
    pub undecodable: Vec<UndecodableJob>,
}

/// The listener's memory of one scale set: the [`Demand`] it publishes and
/// what it needs to keep it bounded.
#[derive(Debug, Clone)]
pub struct Tracker {
    limits: Limits,
    demand: Demand,
    /// `demand.completed` in the order names arrived, to forget the oldest.
    completed_order: VecDeque<String>,
    /// `demand.busy` in the order names arrived, to forget the oldest.
    busy_order: VecDeque<String>,
}

impl Tracker {
    /// Nothing seen yet: desired is `minRunners`.
    pub fn new(limits: Limits) -> Self {
        let mut demand = Demand::default();
        demand.desired = limits.desired(&demand.statistics);
        Tracker {
            limits,
            demand,
            completed_order: VecDeque::new(),
            busy_order: VecDeque::new(),
        }
    }

    pub fn demand(&self) -> &Demand {
        &self.demand
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// New limits (the scale set's spec changed); true if the demand changed.
    pub fn set_limits(&mut self, limits: Limits) -> bool {
        self.limits = limits;
        self.update(|demand| demand.desired = limits.desired(&demand.statistics))
    }

    /// Records statistics (a session's, or a message's) and recomputes
    /// `desired`; `None` keeps the last ones. True if the demand changed.
    pub fn on_statistics(&mut self, statistics: Option<&RunnerScaleSetStatistic>) -> bool {
        let Some(statistics) = statistics else {
            return false;
        };
        let statistics = Statistics::from(statistics);
        let limits = self.limits;
        self.update(|demand| {
            demand.statistics = statistics;
            demand.desired = limits.desired(&statistics);
        })
    }

    /// Records one message: statistics first, then each job message in
    /// order. Returns what to do about it. Idempotent: the same message again
    /// leaves the demand (and its generation) as it was and asks to acquire
    /// the same ids, which the service answers the same way.
    pub fn on_message(&mut self, message: &ScaleSetMessage) -> Handling {
        let mut handling = Handling::default();
        let before = self.demand.clone();
        self.on_statistics(message.statistics.as_ref());
        for job in &message.jobs {
            match job {
                JobMessage::Available(available) => {
                    let id = available.base.runner_request_id;
                    if !handling.acquire.contains(&id) {
                        handling.acquire.push(id);
                    }
                }
                // Already ours; the statistics carry it.
                JobMessage::Assigned(_) => {}
                JobMessage::Started(started) => {
                    let name = &started.runner_name;
                    if name.is_empty()
                        || self.demand.completed.contains(name)
                        || self.demand.busy.contains_key(name)
                    {
                        continue;
                    }
                    let base = &started.base;
                    let info = JobInfo {
                        runner_request_id: base.runner_request_id,
                        runner_id: started.runner_id,
                        job_id: base.job_id.clone(),
                        repository: base.repository_name.clone(),
                        workflow_ref: base.job_workflow_ref.clone(),
                        display_name: base.job_display_name.clone(),
                        workflow_run_id: base.workflow_run_id,
                        started: base.runner_assign_time,
                    };
                    self.demand.busy.insert(name.clone(), info);
                    self.busy_order.push_back(name.clone());
                    handling.started.push(name.clone());
                }
                JobMessage::Completed(completed) => {
                    // A job canceled before any runner took it names none.
                    let name = &completed.runner_name;
                    if name.is_empty() {
                        continue;
                    }
                    if self.demand.busy.remove(name).is_some() {
                        self.busy_order.retain(|busy| busy != name);
                    }
                    if self.demand.completed.insert(name.clone()) {
                        self.completed_order.push_back(name.clone());
                        handling.completed.push(name.clone());
                    }
                }
                JobMessage::Unknown { .. } => {}
                JobMessage::Undecodable(job) => handling.undecodable.push(job.clone()),
            }
        }
        while self.completed_order.len() > COMPLETED_MEMORY {
            if let Some(oldest) = self.completed_order.pop_front() {
                self.demand.completed.remove(&oldest);
            }
        }
        let busy_memory = busy_memory(self.limits);
        while self.busy_order.len() > busy_memory {
            if let Some(oldest) = self.busy_order.pop_front() {
                self.demand.busy.remove(&oldest);
            }
        }
        self.bump_if_changed(&before);
        handling
    }

    /// Records a message acknowledged without being handled, for the
    /// reconciler to report.
    pub fn on_skipped(&mut self, skipped: SkippedMessage) {
        self.update(|demand| {
            demand.skipped.push(skipped);
            let over = demand.skipped.len().saturating_sub(SKIPPED_MEMORY);
            demand.skipped.drain(..over);
            demand.skipped_total += 1;
        });
    }

    fn update(&mut self, change: impl FnOnce(&mut Demand)) -> bool {
        let before = self.demand.clone();
        change(&mut self.demand);
        self.bump_if_changed(&before)
    }

    fn bump_if_changed(&mut self, before: &Demand) -> bool {
        // `before` has the same generation unless a nested update bumped it.
        let mut now = self.demand.clone();
        now.generation = before.generation;
        if now == *before {
            self.demand.generation = before.generation;
            return false;
        }
        self.demand.generation = before.generation + 1;
        true
    }
}

/// What the listener does after a service call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The scale set is gone: stop and let the reconciler re-create it.
    ScaleSetGone,
    /// Another session is active (creating a session).
    Conflict,
    /// The session is no longer usable: back off, then delete it (in case
    /// it still exists) and create a new one.
    NewSession,
    /// The queue delivered a message this client cannot read, with this id:
    /// acknowledge it and go on, so that it cannot block the queue.
    SkipMessage(i64),
    /// The message with this id could not be read: try it again (a glitch
    /// on the way may have caused it), and skip it once it has failed
    /// [`MessageTries`]' bound.
    Undecodable(i64),
    /// Transient: back off (at least `server_wait`) and try again.
    Retry { server_wait: Option<Duration> },
    /// Retrying cannot help (configuration, a credentials Secret that does
    /// not parse, TLS setup): stop.
    Fatal,
}

/// Classifies an error from any listener call. 401/403 after the client's
/// one session refresh means the session is gone (a bad admin credential
/// shows up on session creation, where it is retried with backoff).
pub fn recovery(error: &Error) -> Recovery {
    match error {
        Error::ScaleSetNotFound { .. } => Recovery::ScaleSetGone,
        Error::SessionConflict { .. } => Recovery::Conflict,
        Error::SessionExpired { .. } | Error::Unauthorized { .. } => Recovery::NewSession,
        Error::UnexpectedMessageType { message_id, .. } => Recovery::SkipMessage(*message_id),
        Error::UndecodableMessage { message_id, .. } => Recovery::Undecodable(*message_id),
        Error::RateLimited { retry_after, .. } => Recovery::Retry {
            server_wait: *retry_after,
        },
        Error::Config(_) | Error::Credentials(_) | Error::Setup(_) => Recovery::Fatal,
        Error::AgentExists { .. }
        | Error::AgentNotFound { .. }
        | Error::JobStillRunning { .. }
        | Error::Status { .. }
        | Error::Transport { .. }
        | Error::Timeout { .. }
        | Error::Decode { .. }
        | Error::Protocol { .. } => Recovery::Retry { server_wait: None },
    }
}

/// How often the message in flight failed to be read. Only one message is
/// in flight at a time (the queue redelivers it until it is acknowledged),
/// so one slot is enough: another id starts again at one. Kept in memory
/// only: a restarted listener counts from zero again, so a message that can
/// never be read costs at most the bound per restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageTries {
    current: Option<(i64, u32)>,
}

impl MessageTries {
    /// Records one more failed try at `message_id`; returns the tries so
    /// far and whether that reaches `max` (then skip it).
    pub fn failed(&mut self, message_id: i64, max: u32) -> (u32, bool) {
        let tries = match self.current {
            Some((id, tries)) if id == message_id => tries.saturating_add(1),
            _ => 1,
        };
        self.current = Some((message_id, tries));
        (tries, tries >= max)
    }

    /// The message was handled or skipped: nothing to count any more.
    pub fn clear(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests;
