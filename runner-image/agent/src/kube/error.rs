//! Why an action did not run or did not finish, and the exit code each
//! reason gives (KUBE-ACTIONS.md): 2 bad input, 3 denied by the allowlist or
//! policy, 4 Kubernetes refused, 5 timeout.

use super::allowlist::{AllowlistError, Denial};

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The request itself is wrong (a missing name, a bad selector, a body
    /// that is not an object): fix the call.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Allowlist(#[from] AllowlistError),
    /// No usable Kubernetes configuration.
    #[error(transparent)]
    Client(#[from] super::client::ClientError),
    #[error(transparent)]
    Denied(#[from] Denial),
    /// A safety rule refused it (empty selector for deleteMultiple, over
    /// `--max`, kind not matching the action).
    #[error("refused: {0}")]
    Policy(String),
    /// The API server answered with an error (403, 404, 409, 422...).
    #[error("Kubernetes refused {action}: {message} ({code} {reason})")]
    Refused {
        action: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// The API server could not be reached, or answered nonsense.
    #[error("cannot reach Kubernetes for {action}: {message}")]
    Unreachable { action: String, message: String },
    #[error("timed out after {seconds}s: {what}")]
    Timeout { seconds: u64, what: String },
    /// The executor beside the job (`runway serve --local`) did not run the
    /// action or it failed there: the executor's own words and exit code.
    #[error("{}", .0.error)]
    Executor(super::wire::Failure),
}

impl ActionError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ActionError::BadInput(_) | ActionError::Allowlist(_) | ActionError::Client(_) => 2,
            ActionError::Denied(_) | ActionError::Policy(_) => 3,
            ActionError::Refused { .. } | ActionError::Unreachable { .. } => 4,
            ActionError::Timeout { .. } => 5,
            ActionError::Executor(failure) => super::wire::exit_code_of(failure),
        }
    }

    /// The error of a Kubernetes call made for `action`.
    pub fn from_kube(action: &str, err: kube::Error) -> ActionError {
        match err {
            kube::Error::Api(status) => ActionError::Refused {
                action: action.to_string(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => ActionError::Unreachable {
                action: action.to_string(),
                message: other.to_string(),
            },
        }
    }

    /// A short machine word for results and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionError::BadInput(_) | ActionError::Allowlist(_) | ActionError::Client(_) => {
                "bad_input"
            }
            ActionError::Denied(_) => "denied",
            ActionError::Policy(_) => "policy",
            ActionError::Refused { .. } => "refused",
            ActionError::Unreachable { .. } => "unreachable",
            ActionError::Timeout { .. } => "timeout",
            ActionError::Executor(failure) => match failure.reason.as_str() {
                "bad_input" => "bad_input",
                "denied" => "denied",
                "policy" => "policy",
                "refused" => "refused",
                "timeout" => "timeout",
                _ => "unreachable",
            },
        }
    }
}
