//! The fake service's memory and every decision it makes: runner groups,
//! scale sets, their single session, runners, jobs and the job events each
//! scale set's message queue carries. No I/O and no clock: every operation
//! that depends on time takes `now`, so the unit tests below drive time by
//! hand.
//!
//! Invariants:
//! - a scale set has at most one session;
//! - a runner belongs to exactly one scale set and runs at most one job; a
//!   job in `Running` names a runner that exists and is busy with it;
//! - runner and scale set names are unique per tenant, compared without case
//!   (GitHub's names are case-insensitive);
//! - statistics are never stored, always counted from jobs and runners;
//! - `revision` changes whenever something a long poll waits for happens (a
//!   job event, a session or scale set going away), so the HTTP layer knows
//!   when to wake pollers.
//!
//! Job life: `Available` (JobAvailable) -> acquired by the scale set's
//! listener: `Assigned` (JobAssigned) -> a runner starts it: `Running`
//! (JobStarted) -> `Completed` (JobCompleted; the ephemeral runner is removed).
//! An `Assigned` job no runner starts within `requeue_after` is re-queued:
//! JobCompleted with result `canceled` for the abandoned assignment, then
//! JobAssigned for the new one, at most [`MAX_REQUEUES`] times; after that it
//! stays `Completed` with result `canceled`.
//!
//! Files: this one holds the types, tenants, runner groups, time and the
//! snapshot; `scale_sets`, `runners`, `sessions` and `jobs` add the
//! operations on each; `views` holds what the state hands out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::messages::MessageQueue;
pub use jobs::JobTimes;
use runner_side::JitRecord;
pub use runner_side::{JobReport, RunnerError};

pub const DEFAULT_RUNNER_GROUP_ID: i64 = 1;
pub const DEFAULT_RUNNER_GROUP_NAME: &str = "Default";
/// How often an assigned job nobody starts is re-queued before it is canceled.
pub const MAX_REQUEUES: u32 = 3;
pub const CANCELED: &str = "canceled";

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub requeue_after: Duration,
    /// A session nobody polls (no poll in flight) for this long is gone.
    pub session_idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StateError {
    #[error("no runner scale set with id {0}")]
    ScaleSetNotFound(i64),
    #[error("a runner scale set named {0:?} already exists")]
    ScaleSetExists(String),
    #[error("no runner group with id {0}")]
    RunnerGroupNotFound(i64),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("runner scale set {scale_set_id} already has an active session ({session_id})")]
    SessionConflict {
        scale_set_id: i64,
        session_id: String,
    },
    #[error("session {0} of this runner scale set has expired or was deleted")]
    SessionExpired(String),
    #[error("a runner named {name:?} already exists (id {id}, runner scale set {scale_set_id})")]
    RunnerExists {
        id: i64,
        name: String,
        scale_set_id: i64,
    },
    #[error("no runner with id {0}")]
    RunnerNotFound(i64),
    #[error("no runner named {name:?} in runner scale set {scale_set_id}")]
    RunnerNameNotFound { name: String, scale_set_id: i64 },
    #[error("runner {name:?} (id {id}) is running job {runner_request_id}")]
    RunnerBusy {
        id: i64,
        name: String,
        runner_request_id: i64,
    },
    #[error("no job with runner request id {0}")]
    JobNotFound(i64),
    #[error("job {id} is {state:?}, expected {expected}")]
    JobWrongState {
        id: i64,
        state: JobState,
        expected: &'static str,
    },
}

/// Where a githubConfigUrl points: runners, scale sets and the Actions
/// service tenant all belong to one of these.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Organization(String),
    Repository { owner: String, repo: String },
    Enterprise(String),
}

impl Scope {
    /// The path of a githubConfigUrl: `my-org`, `my-org/my-repo` or
    /// `enterprises/acme`, with or without slashes around it.
    pub fn from_config_path(path: &str) -> Option<Scope> {
        let path = path.trim_start_matches('/').trim_end_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        match parts.as_slice() {
            ["enterprises", enterprise] => Some(Scope::Enterprise(enterprise.to_string())),
            [org] => Some(Scope::Organization(org.to_string())),
            [owner, repo] => Some(Scope::Repository {
                owner: owner.to_string(),
                repo: repo.to_string(),
            }),
            _ => None,
        }
    }

    /// The inverse of [`Scope::from_config_path`].
    pub fn path(&self) -> String {
        match self {
            Scope::Organization(org) => org.clone(),
            Scope::Repository { owner, repo } => format!("{owner}/{repo}"),
            Scope::Enterprise(enterprise) => format!("enterprises/{enterprise}"),
        }
    }

    pub fn owner(&self) -> &str {
        match self {
            Scope::Organization(name) | Scope::Enterprise(name) => name,
            Scope::Repository { owner, .. } => owner,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSettings {
    pub ephemeral: bool,
    pub is_elastic: bool,
    pub disable_update: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunnerSettingsPatch {
    pub ephemeral: Option<bool>,
    pub is_elastic: Option<bool>,
    pub disable_update: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct NewScaleSet {
    pub name: String,
    /// None or 0: the default group.
    pub runner_group_id: Option<i64>,
    /// Empty: one label, the name.
    pub labels: Vec<String>,
    pub settings: RunnerSettings,
}

#[derive(Debug, Clone, Default)]
pub struct ScaleSetPatch {
    pub name: Option<String>,
    pub runner_group_id: Option<i64>,
    pub labels: Option<Vec<String>>,
    pub settings: RunnerSettingsPatch,
}

/// A job to queue (what a workflow run would produce).
#[derive(Debug, Clone)]
pub struct NewJob {
    /// `owner/repo`, or just `repo` (the owner is then the scale set's owner).
    pub repository: String,
    pub workflow_ref: String,
    pub display_name: String,
    /// The job's `runs-on` labels; empty means the scale set's name.
    pub labels: Vec<String>,
    /// Shell commands a stand-in runner runs in order (`sh -c`); see
    /// `runner_side`. The player ignores them.
    pub steps: Vec<String>,
}

impl Default for NewJob {
    fn default() -> Self {
        Self {
            repository: "runway-dev/example".to_string(),
            workflow_ref: "runway-dev/example/.github/workflows/ci.yml@refs/heads/main".to_string(),
            display_name: "build".to_string(),
            labels: Vec::new(),
            steps: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct ScaleSet {
    id: i64,
    tenant: u32,
    name: String,
    runner_group_id: i64,
    labels: Vec<String>,
    settings: RunnerSettings,
    created_on: DateTime<Utc>,
    session: Option<Session>,
    queue: MessageQueue,
}

#[derive(Debug)]
struct Session {
    id: String,
    owner_name: String,
    last_activity: Instant,
    polls_in_flight: u32,
    max_capacity: Option<u32>,
}

#[derive(Debug)]
struct Runner {
    id: i64,
    name: String,
    scale_set_id: i64,
    job: Option<i64>,
}

#[derive(Debug)]
enum Phase {
    Available,
    Assigned {
        since: Instant,
    },
    Running {
        runner_id: i64,
        runner_name: String,
    },
    Completed {
        result: String,
        runner: Option<(i64, String)>,
    },
}

impl Session {
    /// When the session ends for lack of polls (never while one is in flight).
    fn idle_at(&self, timeout: Duration) -> Option<Instant> {
        if self.polls_in_flight > 0 {
            None
        } else {
            deadline(self.last_activity, timeout)
        }
    }
}

impl Phase {
    fn state(&self) -> JobState {
        match self {
            Phase::Available => JobState::Available,
            Phase::Assigned { .. } => JobState::Assigned,
            Phase::Running { .. } => JobState::Running,
            Phase::Completed { .. } => JobState::Completed,
        }
    }
}

#[derive(Debug)]
struct Job {
    runner_request_id: i64,
    job_id: String,
    scale_set_id: i64,
    repository_name: String,
    owner_name: String,
    workflow_ref: String,
    display_name: String,
    workflow_run_id: i64,
    request_labels: Vec<String>,
    queue_time: Instant,
    scale_set_assign_time: Option<Instant>,
    runner_assign_time: Option<Instant>,
    finish_time: Option<Instant>,
    phase: Phase,
    requeues: u32,
    steps: Vec<String>,
    /// What the stand-in runner that ran the job reported.
    report: Option<JobReport>,
}

impl Job {
    /// When this job is due for a requeue, if it waits for a runner.
    fn requeue_at(&self, requeue_after: Duration) -> Option<Instant> {
        match self.phase {
            Phase::Assigned { since } => deadline(since, requeue_after),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct State {
    settings: Settings,
    epoch: Instant,
    epoch_wall: DateTime<Utc>,
    nonce: u64,
    revision: u64,
    next_uuid: u64,
    next_group_id: i64,
    next_scale_set_id: i64,
    next_runner_id: i64,
    next_request_id: i64,
    next_run_id: i64,
    next_message_id: i64,
    tenants: Vec<Scope>,
    groups: BTreeMap<i64, String>,
    scale_sets: BTreeMap<i64, ScaleSet>,
    runners: BTreeMap<i64, Runner>,
    jobs: BTreeMap<i64, Job>,
    /// Every JIT config issued, by runner id (kept after the runner goes,
    /// so that a spent config is refused as spent).
    jit_configs: BTreeMap<i64, JitRecord>,
}

fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

impl State {
    /// `now` and `wall` are the same moment on the monotonic and the wall
    /// clock; `nonce` makes ids differ between servers.
    pub fn new(settings: Settings, now: Instant, wall: DateTime<Utc>, nonce: u64) -> Self {
        let mut groups = BTreeMap::new();
        groups.insert(
            DEFAULT_RUNNER_GROUP_ID,
            DEFAULT_RUNNER_GROUP_NAME.to_string(),
        );
        Self {
            settings,
            epoch: now,
            epoch_wall: wall,
            nonce,
            revision: 0,
            next_uuid: 1,
            next_group_id: DEFAULT_RUNNER_GROUP_ID + 1,
            // Different ranges for different kinds of ids catch a client
            // that passes one where another belongs.
            next_scale_set_id: 1,
            next_runner_id: 101,
            next_request_id: 5001,
            next_run_id: 90_001,
            next_message_id: 1,
            tenants: Vec::new(),
            groups,
            scale_sets: BTreeMap::new(),
            runners: BTreeMap::new(),
            jobs: BTreeMap::new(),
            jit_configs: BTreeMap::new(),
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn changed(&mut self) {
        self.revision += 1;
    }

    fn wall(&self, t: Instant) -> DateTime<Utc> {
        let since = TimeDelta::from_std(t.saturating_duration_since(self.epoch))
            .unwrap_or(TimeDelta::zero());
        self.epoch_wall + since
    }

    /// A fresh id shaped like a version-4 UUID.
    fn uuid(&mut self) -> String {
        let counter = self.next_uuid;
        self.next_uuid += 1;
        let hi = (self.nonce & 0xffff_ffff_ffff_0fff) | 0x4000;
        let lo = (counter & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }

    // ---- tenants and runner groups ----

    /// The Actions service tenant of a scope; made on first use.
    pub fn tenant(&mut self, scope: &Scope) -> u32 {
        let path = scope.path();
        if let Some(i) = self
            .tenants
            .iter()
            .position(|s| s.path().eq_ignore_ascii_case(&path))
        {
            return i as u32 + 1;
        }
        self.tenants.push(scope.clone());
        self.tenants.len() as u32
    }

    pub fn scope(&self, tenant: u32) -> Option<&Scope> {
        self.tenants.get((tenant as usize).checked_sub(1)?)
    }

    /// Adds a runner group, or returns the id of the one with that name.
    pub fn add_runner_group(&mut self, name: &str) -> i64 {
        if let Some((id, _)) = self
            .groups
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
        {
            return *id;
        }
        let id = self.next_group_id;
        self.next_group_id += 1;
        self.groups.insert(id, name.to_string());
        id
    }

    /// Groups whose name matches (without case), or all of them.
    pub fn runner_groups(&self, name: Option<&str>) -> Vec<RunnerGroupView> {
        self.groups
            .iter()
            .filter(|(_, n)| name.is_none_or(|want| n.eq_ignore_ascii_case(want)))
            .map(|(id, n)| RunnerGroupView {
                id: *id,
                name: n.clone(),
                is_default: *id == DEFAULT_RUNNER_GROUP_ID,
                size: self
                    .runners
                    .values()
                    .filter(|r| {
                        self.scale_sets
                            .get(&r.scale_set_id)
                            .is_some_and(|s| s.runner_group_id == *id)
                    })
                    .count() as i64,
            })
            .collect()
    }

    /// Applies everything that was due by `now`: re-queues of assigned jobs
    /// nobody started, and sessions that went idle.
    pub fn advance(&mut self, now: Instant) {
        self.requeue_due(now);
        self.expire_idle_sessions(now);
    }

    /// When [`State::advance`] will next have something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let requeues = self
            .jobs
            .values()
            .filter_map(|j| j.requeue_at(self.settings.requeue_after));
        let sessions = self
            .scale_sets
            .values()
            .filter_map(|s| s.session.as_ref())
            .filter_map(|s| s.idle_at(self.settings.session_idle_timeout));
        requeues.chain(sessions).min()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            scale_sets: self.scale_sets.values().map(|s| self.view(s)).collect(),
            sessions: self
                .scale_sets
                .values()
                .filter_map(|set| {
                    set.session.as_ref().map(|s| SessionInfo {
                        session_id: s.id.clone(),
                        scale_set_id: set.id,
                        owner_name: s.owner_name.clone(),
                        max_capacity: s.max_capacity,
                        polls_in_flight: s.polls_in_flight,
                    })
                })
                .collect(),
            runners: self.runners.values().map(Self::runner_view).collect(),
            jobs: self
                .jobs
                .values()
                .map(|j| {
                    let (result, runner) = match &j.phase {
                        Phase::Running {
                            runner_id,
                            runner_name,
                        } => (None, Some((*runner_id, runner_name.clone()))),
                        Phase::Completed { result, runner } => {
                            (Some(result.clone()), runner.clone())
                        }
                        Phase::Available | Phase::Assigned { .. } => (None, None),
                    };
                    JobView {
                        runner_request_id: j.runner_request_id,
                        job_id: j.job_id.clone(),
                        scale_set_id: j.scale_set_id,
                        state: j.phase.state(),
                        result,
                        runner_id: runner.as_ref().map(|r| r.0),
                        runner_name: runner.map(|r| r.1),
                        requeues: j.requeues,
                    }
                })
                .collect(),
        }
    }
}

mod jobs;
mod runner_side;
mod runners;
mod scale_sets;
mod sessions;
#[cfg(test)]
mod tests;
mod views;

pub use views::*;
