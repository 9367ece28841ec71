//! `runway kube` in a job step, when the runner pod has an executor beside
//! the job: the request goes over the executor's Unix socket
//! ($RUNWAY_KUBE_EXECUTOR, set by the controller on the runner container)
//! and the executor, which alone holds the pod's ServiceAccount token,
//! checks the allowlist, runs the action and audits it. The CLI keeps its
//! arguments, output and exit codes; only where the work happens moves.
//!
//! The executor may start after the runner (a plain sidecar before
//! Kubernetes 1.29 has no start order), so a missing or refusing socket is
//! retried for [`CONNECT_WAIT`] before the CLI gives up with exit 4.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request as HttpRequest, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::action::{Action, Outcome};
use super::audit::AuditContext;
use super::error::ActionError;
use super::run_payload::PayloadReport;
use super::wire::{JOB_HEADER, Job, MAX_MESSAGE, Reply, Request, WireAction};

/// Where the executor's socket is, set on runner containers.
pub const EXECUTOR_ENV: &str = "RUNWAY_KUBE_EXECUTOR";
/// How long a missing or refusing socket is retried.
pub const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// The executor's own bound is the action's timeout; this is the margin
/// for the answer to come back after it.
const ANSWER_MARGIN: Duration = Duration::from_secs(30);

/// The executor's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorSocket {
    path: PathBuf,
}

impl ExecutorSocket {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ExecutorSocket { path: path.into() }
    }

    /// $RUNWAY_KUBE_EXECUTOR, when set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var_os(EXECUTOR_ENV)
            .filter(|v| !v.is_empty())
            .map(ExecutorSocket::new)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one action in the executor.
    pub async fn execute(
        &self,
        action: &Action,
        audit: &AuditContext,
    ) -> Result<Outcome, ActionError> {
        let request = Request {
            action: WireAction::of(action),
            job: Some(Job::from_context(audit)),
        };
        let body = serde_json::to_vec(&request)
            .map_err(|e| ActionError::BadInput(format!("the request cannot be written: {e}")))?;
        let described = action.describe();
        let (_, answer) = self
            .post(
                "/v1/kube",
                body,
                action.timeout.saturating_add(ANSWER_MARGIN),
                &described,
            )
            .await?;
        match serde_json::from_slice::<Reply>(&answer) {
            Ok(Reply::Outcome(outcome)) => Ok(outcome),
            Ok(Reply::Failure(failure)) => Err(ActionError::Executor(failure)),
            Err(e) => Err(self.nonsense(&described, &e.to_string())),
        }
    }

    /// Runs a payload in the executor (claims in its state ConfigMap),
    /// audited as the job of `audit`.
    pub async fn run_payload(
        &self,
        payload: Vec<u8>,
        audit: &AuditContext,
        wait: Duration,
    ) -> Result<PayloadReport, ActionError> {
        let job = Job::from_context(audit).to_header();
        let (status, answer) = self
            .post_with("/v1/actions", payload, Some(&job), wait, "run-payload")
            .await?;
        if status.is_success() {
            return serde_json::from_slice(&answer)
                .map_err(|e| self.nonsense("run-payload", &e.to_string()));
        }
        // 400 names what is wrong with the payload.
        let error = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| format!("the executor answered {status}"));
        if status == StatusCode::BAD_REQUEST {
            Err(ActionError::BadInput(error))
        } else {
            Err(ActionError::Unreachable {
                action: "run-payload".into(),
                message: error,
            })
        }
    }

    fn nonsense(&self, action: &str, why: &str) -> ActionError {
        ActionError::Unreachable {
            action: action.to_string(),
            message: format!(
                "the Kubernetes actions executor at {} answered something unreadable: {why}",
                self.path.display()
            ),
        }
    }

    fn unreachable(&self, action: &str, why: impl std::fmt::Display) -> ActionError {
        ActionError::Unreachable {
            action: action.to_string(),
            message: format!(
                "cannot reach the Kubernetes actions executor at {} ({EXECUTOR_ENV}): {why}; is the runner pod's runway-executor container running?",
                self.path.display()
            ),
        }
    }

    async fn connect(&self, action: &str) -> Result<UnixStream, ActionError> {
        let started = Instant::now();
        loop {
            match UnixStream::connect(&self.path).await {
                Ok(stream) => return Ok(stream),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) && started.elapsed() < CONNECT_WAIT =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(self.unreachable(action, e)),
            }
        }
    }

    /// POSTs `body` to `path`; the status and the whole answer, within `wait`.
    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        wait: Duration,
        action: &str,
    ) -> Result<(StatusCode, axum::body::Bytes), ActionError> {
        self.post_with(path, body, None, wait, action).await
    }

    /// [`ExecutorSocket::post`], with the job's [`JOB_HEADER`] when given.
    async fn post_with(
        &self,
        path: &str,
        body: Vec<u8>,
        job: Option<&str>,
        wait: Duration,
        action: &str,
    ) -> Result<(StatusCode, axum::body::Bytes), ActionError> {
        let exchange = async {
            let stream = self.connect(action).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| self.unreachable(action, e))?;
            let connection = tokio::spawn(connection);
            let mut request = HttpRequest::post(path)
                .header(header::HOST, "runway-executor")
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(job) = job {
                request = request.header(JOB_HEADER, job);
            }
            let request = request
                .body(Body::from(body))
                .map_err(|e| self.unreachable(action, e))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.unreachable(action, e))?;
            let status = response.status();
            let answer = axum::body::to_bytes(Body::new(response.into_body()), MAX_MESSAGE)
                .await
                .map_err(|e| self.nonsense(action, &e.to_string()))?;
            connection.abort();
            Ok((status, answer))
        };
        match tokio::time::timeout(wait, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ActionError::Timeout {
                seconds: wait.as_secs(),
                what: format!(
                    "{action} (no answer from the executor at {})",
                    self.path.display()
                ),
            }),
        }
    }
}
