//! The JSON GitHub and its scale-set service speak, field for field
//! (PROTOCOL.md sections 2-4). Nothing here is a domain type: the listener and
//! the reconcilers convert.
//!
//! Responses do not use `deny_unknown_fields`: GitHub adds fields to its
//! responses without notice and an unknown field must not stop a listener.
//! Instead the golden tests in `wire/tests.rs` decode PROTOCOL.md's shapes
//! and re-encode them, so a renamed or missing field changes the output and
//! fails the test. Fields GitHub always sends are required; fields it may
//! leave out are `default`.
//!
//! Tokens and JIT configs are [`Secret`]s, so deriving `Debug` is safe.

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::secret::Secret;

/// The scale-set service may prefix JSON with a UTF-8 byte-order mark.
pub fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// `{"count","value":[...]}`, the service's list envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    pub count: i64,
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
}

// ---- REST side (section 2) ----

/// `POST {rest}/app/installations/{id}/access_tokens` and
/// `POST {rest}/.../actions/runners/registration-token` answer with this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiringToken {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
}

/// Body of `POST {rest}/actions/runner-registration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerRegistrationRequest {
    pub url: String,
    pub runner_event: String,
}

/// Answer of `POST {rest}/actions/runner-registration`: the Actions service
/// base URL and an admin JWT. Both must be non-empty; the client checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionsServiceConnection {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub token: Option<Secret>,
}

/// `{"typeName","message"}`: how the service names its exceptions. GitHub's
/// REST errors (`{"message","documentation_url"}`) decode into it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionsErrorBody {
    #[serde(rename = "typeName", default, skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// ---- scale sets (section 3) ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerGroup {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub is_default_group: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

impl Label {
    /// Scale-set labels are all of type `System`.
    pub fn system(name: impl Into<String>) -> Self {
        Self {
            kind: "System".to_owned(),
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSetting {
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub is_elastic: bool,
    #[serde(default)]
    pub disable_update: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RunnerScaleSetStatistic {
    pub total_available_jobs: i64,
    pub total_acquired_jobs: i64,
    pub total_assigned_jobs: i64,
    pub total_running_jobs: i64,
    pub total_registered_runners: i64,
    pub total_busy_runners: i64,
    pub total_idle_runners: i64,
}

/// A scale set as the service returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSet {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub runner_group_id: i64,
    #[serde(default)]
    pub runner_group_name: String,
    #[serde(default)]
    pub labels: Vec<Label>,
    /// Capitalised on the wire, unlike every other field.
    #[serde(rename = "RunnerSetting", default)]
    pub runner_setting: RunnerSetting,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_jit_config_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<RunnerScaleSetStatistic>,
}

/// Body of create (all of it) and update (only what changes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSetRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
    #[serde(
        rename = "RunnerSetting",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runner_setting: Option<RunnerSetting>,
}

/// Body of `generatejitconfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JitConfigRequest {
    pub name: String,
    pub work_folder: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerReference {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub runner_scale_set_id: i64,
}

/// Answer of `generatejitconfig`. The encoded config is the runner's only
/// credential: it goes into the runner pod's Secret and nowhere else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JitConfig {
    pub runner: RunnerReference,
    #[serde(rename = "encodedJITConfig")]
    pub encoded_jit_config: Secret,
}

/// Body of create session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRequest {
    pub owner_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSetSession {
    pub session_id: String,
    #[serde(default)]
    pub owner_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_scale_set: Option<RunnerScaleSet>,
    pub message_queue_url: String,
    pub message_queue_access_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<RunnerScaleSetStatistic>,
}

// ---- messages (section 4) ----

/// One message from the queue. `body` is a JSON array encoded as a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSetMessage {
    pub message_id: i64,
    pub message_type: String,
    #[serde(default)]
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<RunnerScaleSetStatistic>,
}

/// The wire names of every field a job message may carry, the
/// [`JOB_MESSAGE_REQUIRED`] that the decoder needs first: what the decoder's
/// tests null, drop and mangle one by one.
pub const JOB_MESSAGE_FIELDS: [&str; 18] = [
    "messageType",
    "runnerRequestId",
    "acquireJobUrl",
    "repositoryName",
    "ownerName",
    "jobId",
    "jobWorkflowRef",
    "jobDisplayName",
    "workflowRunId",
    "eventName",
    "requestLabels",
    "queueTime",
    "scaleSetAssignTime",
    "runnerAssignTime",
    "finishTime",
    "result",
    "runnerId",
    "runnerName",
];
/// How many of [`JOB_MESSAGE_FIELDS`], from the first, a job message needs.
pub const JOB_MESSAGE_REQUIRED: usize = 2;

/// The fields every job message carries. Only `messageType` and
/// `runnerRequestId` are required: the listener acts on nothing else here,
/// so any other field of the wrong type reads as absent ([`lenient`]) rather
/// than cost the listener the job message, and timestamps take every form
/// the service writes ([`lenient_time`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessageBase {
    pub message_type: String,
    pub runner_request_id: i64,
    #[serde(default, deserialize_with = "lenient")]
    pub repository_name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub owner_name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub job_id: String,
    #[serde(default, deserialize_with = "lenient")]
    pub job_workflow_ref: String,
    #[serde(default, deserialize_with = "lenient")]
    pub job_display_name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub workflow_run_id: i64,
    #[serde(default, deserialize_with = "lenient")]
    pub event_name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub request_labels: Vec<String>,
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub queue_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub scale_set_assign_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub runner_assign_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "lenient_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub finish_time: Option<DateTime<Utc>>,
}

/// The listener acquires by `runnerRequestId`, not through this URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobAvailable {
    #[serde(default, deserialize_with = "lenient")]
    pub acquire_job_url: String,
    #[serde(flatten)]
    pub base: JobMessageBase,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAssigned {
    #[serde(flatten)]
    pub base: JobMessageBase,
}

/// `runnerName` is what marks a runner busy; an empty one is ignored by the
/// listener. The reference client reads a missing `runnerId` as 0, so does
/// this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStarted {
    #[serde(default, deserialize_with = "lenient")]
    pub runner_id: i64,
    #[serde(default, deserialize_with = "lenient")]
    pub runner_name: String,
    #[serde(flatten)]
    pub base: JobMessageBase,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCompleted {
    #[serde(default, deserialize_with = "lenient")]
    pub result: String,
    #[serde(default, deserialize_with = "lenient")]
    pub runner_id: i64,
    #[serde(default, deserialize_with = "lenient")]
    pub runner_name: String,
    #[serde(flatten)]
    pub base: JobMessageBase,
}

/// A field the listener only reports: a value of another type (a number
/// where a string belongs, an object for a list) reads as absent.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// A timestamp as the service writes it: RFC 3339 with up to 9 fractional
/// digits (.NET writes 7), with or without an offset (none means UTC). Go's
/// and .NET's zero time (`0001-01-01T00:00:00`) means "not yet" and reads as
/// absent, and so does anything that is not a timestamp: no timestamp is
/// needed to act on a job message.
fn lenient_time<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(value.as_str().and_then(parse_service_time))
}

/// See [`lenient_time`].
pub fn parse_service_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .filter(|t| t.year() > 1)
}

/// Removes every `null` (object members and array elements), so that a
/// `null` reads as the field being absent, as the reference Go client reads
/// it; a required field that is `null` is then reported missing.
pub fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            members.retain(|_, v| !v.is_null());
            members.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(elements) => {
            elements.retain(|v| !v.is_null());
            elements.iter_mut().for_each(drop_nulls);
        }
        _ => {}
    }
}

/// One element of a message body, typed by its `messageType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobMessage {
    Available(JobAvailable),
    Assigned(JobAssigned),
    Started(JobStarted),
    Completed(JobCompleted),
    /// A type this client does not know; the listener logs and skips it, as
    /// the reference clients do, so a new message type cannot stop scaling.
    Unknown {
        message_type: String,
    },
    /// An element that does not decode even with `null`s read as absent:
    /// the listener logs it, counts it and handles the rest of the message.
    /// What could be read of it is kept for the log; never the element.
    Undecodable(UndecodableJob),
}

/// What the log says about a job message that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndecodableJob {
    /// `messageType`, if it was a string.
    pub message_type: Option<String>,
    /// `runnerRequestId`, if it was a number.
    pub runner_request_id: Option<i64>,
    /// serde's error, which names the field (values redacted by the caller).
    pub error: String,
}

impl JobMessage {
    /// Decodes a message `body`: a JSON array of job messages, each on its
    /// own, so one bad element costs only itself. An empty body holds no
    /// jobs. Errors only when the body is not a JSON array.
    pub fn decode_body(body: &str) -> Result<Vec<JobMessage>, serde_json::Error> {
        if body.trim().is_empty() {
            return Ok(Vec::new());
        }
        let elements: Vec<serde_json::Value> = serde_json::from_str(body)?;
        Ok(elements.into_iter().map(JobMessage::from_value).collect())
    }

    fn from_value(mut value: serde_json::Value) -> Self {
        drop_nulls(&mut value);
        let message_type = value
            .get("messageType")
            .and_then(|t| t.as_str())
            .map(str::to_owned);
        let decoded = match message_type.as_deref() {
            Some("JobAvailable") => {
                serde_json::from_value(value.clone()).map(JobMessage::Available)
            }
            Some("JobAssigned") => serde_json::from_value(value.clone()).map(JobMessage::Assigned),
            Some("JobStarted") => serde_json::from_value(value.clone()).map(JobMessage::Started),
            Some("JobCompleted") => {
                serde_json::from_value(value.clone()).map(JobMessage::Completed)
            }
            Some(other) => Ok(JobMessage::Unknown {
                message_type: other.to_owned(),
            }),
            None => Err(serde::de::Error::custom(
                "missing field `messageType` (or not a string)",
            )),
        };
        decoded.unwrap_or_else(|error| {
            JobMessage::Undecodable(UndecodableJob {
                runner_request_id: value.get("runnerRequestId").and_then(|id| id.as_i64()),
                message_type,
                // serde quotes the offending value; a long one stays out.
                error: error.to_string().chars().take(300).collect(),
            })
        })
    }

    /// The common fields, for every known type.
    pub fn base(&self) -> Option<&JobMessageBase> {
        match self {
            JobMessage::Available(m) => Some(&m.base),
            JobMessage::Assigned(m) => Some(&m.base),
            JobMessage::Started(m) => Some(&m.base),
            JobMessage::Completed(m) => Some(&m.base),
            JobMessage::Unknown { .. } | JobMessage::Undecodable(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
