//! How many runners a scale set should have, and which ones to create or
//! remove: a pure function of plain data, no client anywhere.
//!
//! The runner reconciler gathers the inputs (the scale set's limits, the
//! listener's `totalAssignedJobs`, the runner pods it sees, the failure
//! history it keeps), calls [`plan`], and applies the [`Plan`].
//!
//! Invariants the tests hold this module to:
//! - a busy runner is never deleted;
//! - a runner that has not registered yet is never deleted to scale down (it
//!   may be registering and taking a job right now); only when it has been
//!   stuck for longer than [`ScalePolicy::pending_timeout`];
//! - every failed runner is deleted at once (its JIT config is spent; it must
//!   never be restarted) and never counts against `maxRunners`;
//! - creations never take the runner count over `maxRunners`;
//! - failures slow creations down (exponential backoff) but never stop them
//!   for good, unlike ARC's hard cap of 5 failures that strands spot clusters.

use chrono::{DateTime, TimeDelta, Utc};

/// `desired = min(maxRunners, minRunners + totalAssignedJobs)`; `minRunners`
/// is the number of idle runners to keep, and `max_runners` `None` means no
/// bound (as in ARC).
pub fn desired_runners(min_runners: u32, max_runners: Option<u32>, assigned_jobs: u32) -> u32 {
    let wanted = min_runners.saturating_add(assigned_jobs);
    max_runners.map_or(wanted, |max| wanted.min(max))
}

/// What the reconciler knows about one runner (one pod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerState {
    /// The pod exists but the runner has not registered with GitHub yet
    /// (unscheduled, pulling its image, or starting).
    Pending,
    /// Registered, waiting for a job.
    Idle,
    /// Running a job.
    Busy,
    /// The pod failed (exited, evicted, OOM-killed); see [`FailureKind`].
    Failed(FailureKind),
    /// Being deleted (job done, or deletion already requested).
    Finishing,
}

/// Whether a failure says something about the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Failed before registering (image pull, crash at start, no route to
    /// GitHub): a new pod would likely fail the same way, so it counts
    /// towards the backoff.
    Startup,
    /// Failed after registering (a job OOM-killed it, a spot node went
    /// away): the pod did start, so a replacement is not slowed down.
    AfterRegistration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub name: String,
    pub state: RunnerState,
    pub created: DateTime<Utc>,
    /// The pod was built from an older template than the scale set's
    /// current one (see `runner::pod::template_hash`).
    pub outdated: bool,
}

impl Runner {
    pub fn new(name: impl Into<String>, state: RunnerState, created: DateTime<Utc>) -> Self {
        Runner {
            name: name.into(),
            state,
            created,
            outdated: false,
        }
    }

    pub fn outdated(mut self) -> Self {
        self.outdated = true;
        self
    }
}

/// Tunables; the defaults suit a cloud cluster with node autoscaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePolicy {
    /// How long a runner may stay unregistered and still count against
    /// `maxRunners`. Long enough for a new node and a large image pull;
    /// after it the pod is deleted and replaced with a fresh runner.
    pub pending_timeout: TimeDelta,
    /// Startup failures replaced at once before the backoff starts: a spot
    /// reclaim or a node going away fails a few pods together.
    pub free_failures: u32,
    /// First backoff delay after the free failures; doubles per failure.
    pub backoff_base: TimeDelta,
    /// The backoff never grows past this: creations slow down, never stop.
    pub backoff_max: TimeDelta,
    /// A failure history older than this is forgotten, so that a scale set
    /// idle at zero for a while does not start in backoff.
    pub failure_memory: TimeDelta,
}

impl Default for ScalePolicy {
    fn default() -> Self {
        ScalePolicy {
            pending_timeout: TimeDelta::minutes(10),
            free_failures: 3,
            backoff_base: TimeDelta::seconds(5),
            backoff_max: TimeDelta::minutes(2),
            failure_memory: TimeDelta::minutes(15),
        }
    }
}

/// Consecutive startup failures of a scale set, kept by the reconciler
/// (in memory; a restart forgetting it only makes the next creation early).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureHistory {
    pub consecutive: u32,
    pub last_failure: Option<DateTime<Utc>>,
}

impl FailureHistory {
    /// Records `count` startup failures seen at `now` (e.g. `Plan::startup_failures`).
    pub fn record_failures(&mut self, count: u32, now: DateTime<Utc>) {
        if count > 0 {
            self.consecutive = self.consecutive.saturating_add(count);
            self.last_failure = Some(now);
        }
    }

    /// A runner registered: the environment works again.
    pub fn record_success(&mut self) {
        *self = FailureHistory::default();
    }

    /// When creations may resume, or `None` if they may go ahead now.
    pub fn backoff_until(&self, policy: &ScalePolicy, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let last = self.last_failure?;
        if now - last >= policy.failure_memory || self.consecutive <= policy.free_failures {
            return None;
        }
        let delay = crate::backoff::exponential_delta(
            policy.backoff_base,
            policy.backoff_max,
            self.consecutive - policy.free_failures,
        );
        let until = last + delay;
        (until > now).then_some(until)
    }
}

/// Everything [`plan`] decides from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleInput {
    pub min_runners: u32,
    pub max_runners: Option<u32>,
    /// `statistics.totalAssignedJobs` from the last message or session.
    pub assigned_jobs: u32,
    pub runners: Vec<Runner>,
    pub failures: FailureHistory,
    pub now: DateTime<Utc>,
}

/// Why a runner is to be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    /// More idle runners than desired.
    ScaleDown,
    /// The pod failed; its JIT config is spent.
    Failed,
    /// Unregistered for longer than the pending timeout.
    StuckPending,
    /// Idle, but built from an older template.
    Outdated,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub name: String,
    pub reason: DeleteReason,
}

/// What the reconciler should do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub desired: u32,
    /// New runners to create (each with a new JIT config).
    pub create: u32,
    pub delete: Vec<Deletion>,
    /// Creations held back by the failure backoff.
    pub held_back: u32,
    /// Startup failures among the deletions, to feed
    /// [`FailureHistory::record_failures`] once.
    pub startup_failures: u32,
    /// When to plan again even if nothing changes (backoff end, a pending
    /// runner reaching its timeout).
    pub requeue_at: Option<DateTime<Utc>>,
}

impl Plan {
    pub fn deleted(&self, reason: DeleteReason) -> Vec<&str> {
        self.delete
            .iter()
            .filter(|d| d.reason == reason)
            .map(|d| d.name.as_str())
            .collect()
    }
}

/// Decides creations and deletions. See the module comment for the rules.
pub fn plan(input: &ScaleInput, policy: &ScalePolicy) -> Plan {
    let now = input.now;
    let desired = desired_runners(input.min_runners, input.max_runners, input.assigned_jobs);
    let mut out = Plan {
        desired,
        ..Plan::default()
    };
    let mut requeue: Vec<DateTime<Utc>> = Vec::new();

    // Runners that can take (or are taking) a job and so count towards
    // `desired` and against `maxRunners`.
    let mut busy = 0u32;
    let mut pending = 0u32;
    let mut idle: Vec<&Runner> = Vec::new();
    for runner in &input.runners {
        match runner.state {
            RunnerState::Busy => busy += 1,
            RunnerState::Idle if runner.outdated => out.delete.push(Deletion {
                name: runner.name.clone(),
                reason: DeleteReason::Outdated,
            }),
            RunnerState::Idle => idle.push(runner),
            RunnerState::Pending => {
                let deadline = runner.created + policy.pending_timeout;
                if now >= deadline {
                    out.delete.push(Deletion {
                        name: runner.name.clone(),
                        reason: DeleteReason::StuckPending,
                    });
                    out.startup_failures += 1;
                } else {
                    pending += 1;
                    requeue.push(deadline);
                }
            }
            RunnerState::Failed(kind) => {
                out.delete.push(Deletion {
                    name: runner.name.clone(),
                    reason: DeleteReason::Failed,
                });
                if kind == FailureKind::Startup {
                    out.startup_failures += 1;
                }
            }
            // Already leaving: its job is done, so it neither fills a slot
            // nor blocks one; counting it would delay the next job by the
            // time its finalizer takes.
            RunnerState::Finishing => {}
        }
    }

    let active = busy + pending + idle.len() as u32;
    if active < desired {
        // `desired <= maxRunners`, so filling up to `desired` stays in bounds.
        let wanted = desired - active;
        let mut failures = input.failures;
        failures.record_failures(out.startup_failures, now);
        match failures.backoff_until(policy, now) {
            Some(until) => {
                out.held_back = wanted;
                requeue.push(until);
            }
            None => out.create = wanted,
        }
    } else if active > desired {
        // Only idle runners are removed. Pending ones are left to register
        // (they become idle, and a later pass removes them if still in
        // excess); busy ones finish their job and leave by themselves.
        let excess = (active - desired) as usize;
        // Oldest first: all idle runners are equal for the next job, so
        // remove the ones most likely to have gone stale (an older runner
        // version pulled under a moving tag, a long-lived broker connection,
        // a node the autoscaler could otherwise reclaim), which keeps the
        // warm pool fresh. Ties by name, for a deterministic plan.
        idle.sort_by_key(|r| (r.created, r.name.as_str()));
        for runner in idle.into_iter().take(excess) {
            out.delete.push(Deletion {
                name: runner.name.clone(),
                reason: DeleteReason::ScaleDown,
            });
        }
    }

    out.requeue_at = requeue.into_iter().min();
    out
}

#[cfg(test)]
#[path = "scaler_tests.rs"]
mod tests;
