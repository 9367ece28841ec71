//! What one pass of the runner reconciler did: counters of Kubernetes
//! writes and GitHub calls (the future metrics), the runners it touched, the
//! conditions to show on the scale set, and the errors it met.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::pod::PodError;
use super::start::StartFailure;
use crate::github::Error as GitHubError;
use crate::scaler::Plan;

/// Condition type: the API server refuses runner pods for a ResourceQuota.
pub const CONDITION_QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// Condition type: a runner pod got no IRSA credentials even when replaced.
pub const CONDITION_IRSA_MISSING: &str = "IrsaMissing";
/// Condition type: runner pods do not start (an image that cannot be
/// pulled, a container that cannot be created); see `runner::start`.
pub const CONDITION_FAILING_TO_START: &str = "RunnersFailingToStart";

/// Kubernetes writes of one pass, by kind (refused requests included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KubeWrites {
    pub pod_creates: u32,
    pub secret_creates: u32,
    pub pod_deletes: u32,
    pub finalizer_removals: u32,
    pub busy_patches: u32,
    pub events: u32,
}

impl KubeWrites {
    pub fn total(&self) -> u32 {
        self.pod_creates
            + self.secret_creates
            + self.pod_deletes
            + self.finalizer_removals
            + self.busy_patches
            + self.events
    }
}

impl std::ops::AddAssign for KubeWrites {
    fn add_assign(&mut self, other: KubeWrites) {
        self.pod_creates += other.pod_creates;
        self.secret_creates += other.secret_creates;
        self.pod_deletes += other.pod_deletes;
        self.finalizer_removals += other.finalizer_removals;
        self.busy_patches += other.busy_patches;
        self.events += other.events;
    }
}

/// GitHub calls of one pass, by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GitHubCalls {
    pub jit_configs: u32,
    pub runner_lookups: u32,
    pub runner_removals: u32,
}

impl GitHubCalls {
    pub fn total(&self) -> u32 {
        self.jit_configs + self.runner_lookups + self.runner_removals
    }
}

impl std::ops::AddAssign for GitHubCalls {
    fn add_assign(&mut self, other: GitHubCalls) {
        self.jit_configs += other.jit_configs;
        self.runner_lookups += other.runner_lookups;
        self.runner_removals += other.runner_removals;
    }
}

/// A condition for the scale set's status (`True` while it holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerCondition {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub plan: Plan,
    /// Runners created (pod and Secret made).
    pub created: Vec<String>,
    /// Pods deleted by this pass.
    pub deleted: Vec<String>,
    /// Pods whose registration was removed and finalizer released.
    pub released: Vec<String>,
    /// Pods annotated busy.
    pub marked_busy: Vec<String>,
    /// Deleted pods kept by their finalizer: the runner still runs a job.
    pub waiting_for_job: Vec<String>,
    /// Idle runners chosen for removal that had taken a job meanwhile.
    pub spared: Vec<String>,
    /// Pods replaced because they were admitted without IRSA.
    pub replaced_without_irsa: Vec<String>,
    /// Pods deleted because a container could not start.
    pub failed_to_start: Vec<StartFailure>,
    pub kube: KubeWrites,
    pub github: GitHubCalls,
    pub conditions: Vec<RunnerCondition>,
    /// Failures of single runners; the pass went on with the others.
    pub errors: Vec<ReconcileError>,
    /// When to reconcile again even if nothing changes.
    pub requeue_after: Option<Duration>,
}

impl Outcome {
    /// Adds what a part of the pass did (one concurrent creation).
    pub(super) fn absorb(&mut self, part: Outcome) {
        self.created.extend(part.created);
        self.deleted.extend(part.deleted);
        self.released.extend(part.released);
        self.marked_busy.extend(part.marked_busy);
        self.waiting_for_job.extend(part.waiting_for_job);
        self.spared.extend(part.spared);
        self.replaced_without_irsa
            .extend(part.replaced_without_irsa);
        self.failed_to_start.extend(part.failed_to_start);
        self.kube += part.kube;
        self.github += part.github;
        self.conditions.extend(part.conditions);
        self.errors.extend(part.errors);
        if let Some(after) = part.requeue_after {
            self.requeue_in(after);
        }
    }

    pub(super) fn requeue_in(&mut self, after: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }

    pub(super) fn requeue_at(&mut self, at: DateTime<Utc>, now: DateTime<Utc>) {
        self.requeue_in((at - now).to_std().unwrap_or(Duration::ZERO));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("RunnerScaleSet has no {field}; reconcile only stored objects")]
    NotStored { field: &'static str },
    #[error(
        "RunnerScaleSet {namespace}/{name} has no status.scaleSetId yet; runners are created once the scale set exists on GitHub"
    )]
    NoScaleSetId { namespace: String, name: String },
    #[error(
        "ServiceAccount {account:?} ({field}) does not exist in namespace {namespace}; create it before the runners (IRSA needs it first), or set serviceAccountName to an existing one"
    )]
    ServiceAccountMissing {
        namespace: String,
        account: String,
        field: &'static str,
    },
    #[error(
        "runner names {first:?} and {second:?} both belong to another scale set's runners on GitHub"
    )]
    NameTaken { first: String, second: String },
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action}: {source}")]
    GitHub {
        action: String,
        #[source]
        source: GitHubError,
    },
}

impl ReconcileError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::NotStored { .. } => "not_stored",
            ReconcileError::NoScaleSetId { .. } => "no_scale_set_id",
            ReconcileError::ServiceAccountMissing { .. } => "service_account_missing",
            ReconcileError::NameTaken { .. } => "name_taken",
            ReconcileError::Pod(_) => "pod_template",
            ReconcileError::Kube { .. } => "kube",
            ReconcileError::GitHub { .. } => "github",
        }
    }

    pub(super) fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        ReconcileError::Kube {
            action: action.into(),
            source,
        }
    }

    pub(super) fn github(action: impl Into<String>, source: GitHubError) -> Self {
        ReconcileError::GitHub {
            action: action.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn writes_and_calls_add_up() {
        let writes = KubeWrites {
            pod_creates: 1,
            secret_creates: 1,
            pod_deletes: 1,
            finalizer_removals: 1,
            busy_patches: 1,
            events: 0,
        };
        assert_eq!(writes.total(), 5);
        let calls = GitHubCalls {
            jit_configs: 2,
            runner_lookups: 1,
            runner_removals: 1,
        };
        assert_eq!(calls.total(), 4);
    }

    #[test]
    fn requeue_keeps_the_earliest() {
        let mut out = Outcome::default();
        out.requeue_in(Duration::from_secs(10));
        out.requeue_in(Duration::from_secs(3));
        out.requeue_in(Duration::from_secs(7));
        assert_eq!(out.requeue_after, Some(Duration::from_secs(3)));
        let now = Utc::now();
        out.requeue_at(now - TimeDelta::seconds(1), now);
        assert_eq!(out.requeue_after, Some(Duration::ZERO));
    }
}
