//! The JSON that crosses the wire, field for field as PROTOCOL.md gives it
//! (note the capital `RunnerSetting` and the message body that is a JSON
//! array encoded as a string). Responses are built from these types only;
//! requests are parsed leniently (missing fields default, unknown fields are
//! ignored) because the Go clients send zero values and extra fields.

use serde::{Deserialize, Serialize};

/// What .NET's `DateTime.MinValue` looks like on the wire: the service sends
/// it for times that have not happened yet, and Go clients parse it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The Actions service's error body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExceptionBody<'a> {
    pub type_name: &'a str,
    pub message: &'a str,
}

/// GitHub REST's error body.
#[derive(Debug, Serialize)]
pub struct RestErrorBody<'a> {
    pub message: &'a str,
    pub documentation_url: &'a str,
}

/// `{"count","value"}`, the Actions service's list envelope.
#[derive(Debug, Serialize)]
pub struct List<T> {
    pub count: usize,
    pub value: Vec<T>,
}

impl<T> List<T> {
    pub fn new(value: Vec<T>) -> Self {
        Self {
            count: value.len(),
            value,
        }
    }
}

// ---- REST ----

/// Installation access tokens and registration tokens: 201 `{"token","expires_at"}`.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct RunnerRegistrationRequest {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub runner_event: String,
}

#[derive(Debug, Serialize)]
pub struct RunnerRegistrationResponse {
    pub url: String,
    pub token: String,
}

// ---- Actions service ----

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerGroup {
    pub id: i64,
    pub name: String,
    pub size: i64,
    pub is_default_group: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Label {
    #[serde(rename = "type", default = "system")]
    pub kind: String,
    pub name: String,
}

fn system() -> String {
    "System".to_string()
}

impl Label {
    pub fn system(name: &str) -> Self {
        Self {
            kind: system(),
            name: name.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSetting {
    pub ephemeral: bool,
    pub is_elastic: bool,
    pub disable_update: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    pub total_available_jobs: i64,
    pub total_acquired_jobs: i64,
    pub total_assigned_jobs: i64,
    pub total_running_jobs: i64,
    pub total_registered_runners: i64,
    pub total_busy_runners: i64,
    pub total_idle_runners: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSet {
    pub id: i64,
    pub name: String,
    pub runner_group_id: i64,
    pub runner_group_name: String,
    pub labels: Vec<Label>,
    #[serde(rename = "RunnerSetting")]
    pub runner_setting: RunnerSetting,
    pub created_on: String,
    pub runner_jit_config_url: String,
    pub statistics: Statistics,
}

/// Body of create (POST) and update (PATCH). Everything is optional: PATCH is
/// partial, and Go clients leave out zero values (`omitempty`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSetRequest {
    pub name: Option<String>,
    pub runner_group_id: Option<i64>,
    pub runner_group_name: Option<String>,
    pub labels: Option<Vec<Label>>,
    #[serde(rename = "RunnerSetting", alias = "runnerSetting")]
    pub runner_setting: Option<RunnerSettingRequest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSettingRequest {
    pub ephemeral: Option<bool>,
    pub is_elastic: Option<bool>,
    pub disable_update: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitConfigRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub work_folder: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerReference {
    pub id: i64,
    pub name: String,
    pub runner_scale_set_id: i64,
}

#[derive(Debug, Serialize)]
pub struct JitConfigResponse {
    pub runner: RunnerReference,
    #[serde(rename = "encodedJITConfig")]
    pub encoded_jit_config: String,
}

/// The `.runner` file inside an encoded JIT config (what the runner reads).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JitRunnerFile {
    pub agent_id: i64,
    pub agent_name: String,
    pub pool_id: i64,
    pub runner_scale_set_id: i64,
    pub server_url: String,
    pub git_hub_url: String,
    pub work_folder: String,
    pub ephemeral: bool,
    pub disable_update: bool,
}

/// The `.credentials` file inside an encoded JIT config.
#[derive(Debug, Serialize)]
pub struct JitCredentialsFile {
    pub scheme: &'static str,
    pub data: JitCredentialsData,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JitCredentialsData {
    pub client_id: String,
    pub authorization_url: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    #[serde(default)]
    pub owner_name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: String,
    pub owner_name: String,
    pub runner_scale_set: RunnerScaleSet,
    pub message_queue_url: String,
    pub message_queue_access_token: String,
    pub statistics: Statistics,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub message_id: i64,
    pub message_type: String,
    /// A JSON array of [`JobMessage`], encoded as a string.
    pub body: String,
    pub statistics: Statistics,
}

/// One element of a message body. The type-specific fields are left out of
/// the messages that do not carry them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    pub message_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquire_job_url: Option<String>,
    pub runner_request_id: i64,
    pub repository_name: String,
    pub owner_name: String,
    pub job_id: String,
    pub job_workflow_ref: String,
    pub job_display_name: String,
    pub workflow_run_id: i64,
    pub event_name: String,
    pub request_labels: Vec<String>,
    pub queue_time: String,
    pub scale_set_assign_time: String,
    pub runner_assign_time: String,
    pub finish_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_name: Option<String>,
}
