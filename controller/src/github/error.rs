//! Everything a GitHub call can fail with.
//!
//! The scale-set service names its errors in a `{"typeName","message"}` body;
//! each name PROTOCOL.md lists has a variant, because callers act on them
//! (take over a session, re-create a deleted scale set, wait for a busy
//! runner). Messages say which operation failed and with what input; server
//! text is passed through [`redact`](super::secret) first and no token is ever
//! formatted into one.

use std::time::{Duration, SystemTime};

use super::auth::CredentialsError;
use super::config::ConfigError;
use super::retry;
use super::secret::redact;
use super::transport::{HttpResponse, TransportError};
use super::wire::{ActionsErrorBody, strip_bom};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{operation}: the runner name is already taken (AgentExistsException): {message}")]
    AgentExists { operation: String, message: String },

    #[error("{operation}: no such runner (AgentNotFoundException): {message}")]
    AgentNotFound { operation: String, message: String },

    #[error("{operation}: the runner is still running a job (JobStillRunningException): {message}")]
    JobStillRunning { operation: String, message: String },

    #[error(
        "{operation}: another message session is active for this scale set \
         (RunnerScaleSetSessionConflictException): {message}"
    )]
    SessionConflict { operation: String, message: String },

    #[error(
        "{operation}: the message session expired (RunnerScaleSetSessionExpiredException): {message}"
    )]
    SessionExpired { operation: String, message: String },

    #[error(
        "{operation}: the runner scale set does not exist any more \
         (RunnerScaleSetNotFoundException): {message}"
    )]
    ScaleSetNotFound { operation: String, message: String },

    #[error(
        "{operation}: GitHub refused the credentials (HTTP {status}): {message}; check the \
         GitHub App or token in githubConfigSecret and its permissions"
    )]
    Unauthorized {
        operation: String,
        status: u16,
        message: String,
    },

    #[error("{operation}: rate limited by GitHub (HTTP {status}{}): {message}", wait_hint(*retry_after))]
    RateLimited {
        operation: String,
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },

    #[error("{operation}: HTTP {status}: {message}")]
    Status {
        operation: String,
        status: u16,
        message: String,
    },

    #[error("{operation}: request failed: {detail}")]
    Transport { operation: String, detail: String },

    #[error("{operation}: no response within {timeout:?}")]
    Timeout {
        operation: String,
        timeout: Duration,
    },

    #[error("{operation}: could not decode the response: {detail}")]
    Decode { operation: String, detail: String },

    #[error("{operation}: unexpected response: {problem}")]
    Protocol { operation: String, problem: String },

    #[error("message {message_id} has type {message_type:?}, expected RunnerScaleSetJobMessages")]
    UnexpectedMessageType {
        message_id: i64,
        message_type: String,
    },

    #[error(
        "{operation}: message {message_id} cannot be read: {problem}; it is skipped after a few tries"
    )]
    UndecodableMessage {
        operation: String,
        message_id: i64,
        problem: String,
    },

    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(transparent)]
    Credentials(#[from] CredentialsError),

    #[error(transparent)]
    Setup(#[from] TransportError),
}

/// Builds a variant from (operation, message).
type MakeError = fn(String, String) -> Error;

fn wait_hint(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl Error {
    /// A short, stable label for metrics (`error` label values).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::AgentExists { .. } => "agent_exists",
            Error::AgentNotFound { .. } => "agent_not_found",
            Error::JobStillRunning { .. } => "job_still_running",
            Error::SessionConflict { .. } => "session_conflict",
            Error::SessionExpired { .. } => "session_expired",
            Error::ScaleSetNotFound { .. } => "scale_set_not_found",
            Error::Unauthorized { .. } => "unauthorized",
            Error::RateLimited { .. } => "rate_limited",
            Error::Status { .. } => "http_status",
            Error::Transport { .. } => "transport",
            Error::Timeout { .. } => "timeout",
            Error::Decode { .. } => "decode",
            Error::Protocol { .. } => "protocol",
            Error::UnexpectedMessageType { .. } => "unexpected_message_type",
            Error::UndecodableMessage { .. } => "undecodable_message",
            Error::Config(_) => "config",
            Error::Credentials(_) => "credentials",
            Error::Setup(_) => "transport_setup",
        }
    }

    /// No response arrived: worth retrying.
    pub fn is_connection_failure(&self) -> bool {
        matches!(self, Error::Transport { .. } | Error::Timeout { .. })
    }

    /// The HTTP status, for errors that came with a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { status, .. }
            | Error::RateLimited { status, .. }
            | Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn decode(operation: &str, error: &serde_json::Error, sensitive: bool) -> Self {
        // serde_json quotes offending values; a body that carries a token must
        // not have it quoted back into a message.
        let detail = if sensitive {
            format!(
                "{:?} error at line {} column {} (details withheld: the body carries credentials)",
                error.classify(),
                error.line(),
                error.column()
            )
        } else {
            redact(&error.to_string())
        };
        Error::Decode {
            operation: operation.to_owned(),
            detail,
        }
    }

    pub(crate) fn protocol(operation: &str, problem: impl Into<String>) -> Self {
        Error::Protocol {
            operation: operation.to_owned(),
            problem: problem.into(),
        }
    }

    /// Maps a non-success response to the error it means: a named exception
    /// first (they come with assorted statuses), then by status.
    pub(crate) fn from_response(operation: &str, response: &HttpResponse) -> Self {
        let operation = operation.to_owned();
        let (type_name, message) = error_text(response);
        let message = redact(&message);
        if let Some(type_name) = type_name {
            let known: [(&str, MakeError); 6] = [
                ("AgentExistsException", |operation, message| {
                    Error::AgentExists { operation, message }
                }),
                ("AgentNotFoundException", |operation, message| {
                    Error::AgentNotFound { operation, message }
                }),
                ("JobStillRunningException", |operation, message| {
                    Error::JobStillRunning { operation, message }
                }),
                (
                    "RunnerScaleSetSessionConflictException",
                    |operation, message| Error::SessionConflict { operation, message },
                ),
                (
                    "RunnerScaleSetSessionExpiredException",
                    |operation, message| Error::SessionExpired { operation, message },
                ),
                ("RunnerScaleSetNotFoundException", |operation, message| {
                    Error::ScaleSetNotFound { operation, message }
                }),
            ];
            // The service may qualify the name with a namespace and assembly.
            if let Some((_, make)) = known.iter().find(|(name, _)| type_name.contains(name)) {
                return make(operation, message);
            }
        }
        let status = response.status.as_u16();
        let now = SystemTime::now();
        if retry::is_rate_limited(response.status, &response.headers, now) {
            return Error::RateLimited {
                operation,
                status,
                retry_after: retry::server_wait(&response.headers, now),
                message,
            };
        }
        match status {
            401 | 403 => Error::Unauthorized {
                operation,
                status,
                message,
            },
            _ => Error::Status {
                operation,
                status,
                message,
            },
        }
    }
}

/// The exception name (if any) and the human message of an error response.
fn error_text(response: &HttpResponse) -> (Option<String>, String) {
    let body = strip_bom(&response.body);
    let text = String::from_utf8_lossy(body).trim().to_owned();
    let is_plain_text = response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/plain"));
    if !is_plain_text && let Ok(parsed) = serde_json::from_slice::<ActionsErrorBody>(body) {
        let message = parsed.message.unwrap_or_default();
        return (parsed.type_name.filter(|t| !t.is_empty()), message);
    }
    let fallback = response
        .status
        .canonical_reason()
        .unwrap_or("no message")
        .to_owned();
    (None, if text.is_empty() { fallback } else { text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn named_exceptions_map_to_variants() {
        let cases = [
            (400, "AgentExistsException", "agent_exists"),
            (404, "AgentNotFoundException", "agent_not_found"),
            (400, "JobStillRunningException", "job_still_running"),
            (
                409,
                "RunnerScaleSetSessionConflictException",
                "session_conflict",
            ),
            (
                400,
                "RunnerScaleSetSessionExpiredException",
                "session_expired",
            ),
            (
                404,
                "RunnerScaleSetNotFoundException",
                "scale_set_not_found",
            ),
            (
                400,
                "GitHub.DistributedTask.WebApi.AgentExistsException, GitHub.DistributedTask.WebApi",
                "agent_exists",
            ),
            (400, "SomethingElseException", "http_status"),
        ];
        for (status, type_name, label) in cases {
            let body = format!(r#"{{"typeName":"{type_name}","message":"it failed"}}"#);
            let error = Error::from_response("remove runner 7", &response(status, &body));
            assert_eq!(error.metric_label(), label, "{type_name}");
            let text = error.to_string();
            assert!(text.starts_with("remove runner 7: "), "{text}");
            assert!(text.contains("it failed"), "{text}");
        }
    }

    #[test]
    fn statuses_map_to_variants() {
        let cases = [
            (401, "", "unauthorized"),
            (
                403,
                r#"{"message":"Resource not accessible by integration"}"#,
                "unauthorized",
            ),
            (429, "", "rate_limited"),
            (404, "Not Found", "http_status"),
            (500, "\u{feff}{\"message\":\"boom\"}", "http_status"),
        ];
        for (status, body, label) in cases {
            let error = Error::from_response("op", &response(status, body));
            assert_eq!(error.metric_label(), label, "{status}");
            assert_eq!(error.status(), Some(status));
        }
        let error = Error::from_response("op", &response(500, "\u{feff}{\"message\":\"boom\"}"));
        assert_eq!(error.to_string(), "op: HTTP 500: boom");
    }

    #[test]
    fn messages_are_redacted() {
        let body = r#"{"message":"token ghs_16C7e42F292c6912E7710c838347Ae178B4a is bad"}"#;
        let error = Error::from_response("get registration token", &response(401, body));
        let text = error.to_string();
        assert!(!text.contains("ghs_16C7"), "{text}");
        assert!(text.contains("token *** is bad"), "{text}");
    }

    #[test]
    fn errors_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }

    #[test]
    fn sensitive_decode_errors_do_not_quote_the_body() {
        let err = serde_json::from_str::<i64>("\"AABF3JGZDX3P5PMEXLND6TS6FCWO6\"").unwrap_err();
        let text = Error::decode("op", &err, true).to_string();
        assert!(!text.contains("AABF3JG"), "{text}");
        let text = Error::decode("op", &err, false).to_string();
        assert!(text.contains("invalid type"), "{text}");
    }
}
