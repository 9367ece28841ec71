//! What the state hands out: statistics, views of its objects, the
//! snapshot, a delivered message. Plain data (serializable for the control API).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::RunnerSettings;
use crate::github::messages::{JobEvent, RawMessage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub total_available_jobs: i64,
    /// Acquired by the scale set, no runner has started it yet.
    pub total_acquired_jobs: i64,
    /// Acquired and not completed: waiting for a runner or running.
    pub total_assigned_jobs: i64,
    pub total_running_jobs: i64,
    pub total_registered_runners: i64,
    pub total_busy_runners: i64,
    pub total_idle_runners: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerGroupView {
    pub id: i64,
    pub name: String,
    pub is_default: bool,
    /// Runners registered in the group's scale sets.
    pub size: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetView {
    pub id: i64,
    pub tenant: u32,
    /// The githubConfigUrl path it was registered under (`my-org`, ...).
    pub scope: String,
    pub name: String,
    pub runner_group_id: i64,
    pub runner_group_name: String,
    pub labels: Vec<String>,
    pub settings: RunnerSettings,
    pub created_on: DateTime<Utc>,
    pub statistics: Statistics,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub session_id: String,
    pub owner_name: String,
    pub scale_set: ScaleSetView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub session_id: String,
    pub scale_set_id: i64,
    pub owner_name: String,
    /// The last `X-ScaleSetMaxCapacity` a poll sent.
    pub max_capacity: Option<u32>,
    pub polls_in_flight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerView {
    pub id: i64,
    pub name: String,
    pub scale_set_id: i64,
    pub busy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum JobState {
    Available,
    Assigned,
    Running,
    Completed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub runner_request_id: i64,
    pub job_id: String,
    pub scale_set_id: i64,
    pub state: JobState,
    pub result: Option<String>,
    pub runner_id: Option<i64>,
    pub runner_name: Option<String>,
    pub requeues: u32,
}

/// Everything the fake holds, for tests to assert on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub scale_sets: Vec<ScaleSetView>,
    pub sessions: Vec<SessionInfo>,
    pub runners: Vec<RunnerView>,
    pub jobs: Vec<JobView>,
}

impl Snapshot {
    pub fn job(&self, runner_request_id: i64) -> Option<&JobView> {
        self.jobs
            .iter()
            .find(|j| j.runner_request_id == runner_request_id)
    }

    pub fn runner_named(&self, name: &str) -> Option<&RunnerView> {
        self.runners
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(name))
    }
}

/// One message handed to a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: i64,
    pub events: Vec<JobEvent>,
    pub statistics: Statistics,
    /// Set when the message is a test's raw message: send it, not `events`.
    pub raw: Option<RawMessage>,
}
