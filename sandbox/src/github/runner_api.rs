//! The runner's side, under `/_runner/`: what the stand-in runner
//! (`runway-runner-standin`) needs to come online with its JIT config, take
//! one job and report it. Not GitHub's runner protocol (that is not
//! Runway's to speak), just enough of its effects: the runner is the one
//! the JIT config registered, taking a job is JobStarted and the report is
//! JobCompleted on the scale set's queue (see `state::runner_side`).
//!
//! Every request carries `Authorization: Bearer <clientId>`, the
//! `.credentials` client id inside the JIT config. Not counted, no faults,
//! no byte-order mark.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /_runner/runners/{id}/online` | | `{"runnerId","runnerName","scaleSetId"}` |
//! | `GET /_runner/runners/{id}/job?waitMs=` | | `{"runnerRequestId","jobId","displayName","steps"}`, or 204 after the wait (at most the long-poll timeout) |
//! | `POST /_runner/runners/{id}/jobs/{requestId}/result` | `{"result","failedStep"?,"failedCommand"?,"exitCode"?,"outputTail"?}` | 204 |
//!
//! Failures are `{"error","reason"}` with reason `unknown` (401: no such
//! config), `spent` (410: its runner took a job or was deleted),
//! `not-online` (409), `not-its-job` (409), `invalid` (400), `state` (404
//! or 409, from the job's state).

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::server::App;
use super::state::{JobReport, RunnerError, StateError};

#[derive(Debug)]
pub struct RunnerApiError(RunnerError);

#[derive(Serialize)]
struct ErrorBody {
    error: String,
    reason: &'static str,
}

impl IntoResponse for RunnerApiError {
    fn into_response(self) -> Response {
        let (status, reason) = match &self.0 {
            RunnerError::UnknownJitConfig(_) => (StatusCode::UNAUTHORIZED, "unknown"),
            RunnerError::SpentByJob { .. } | RunnerError::SpentByDeletion(_) => {
                (StatusCode::GONE, "spent")
            }
            RunnerError::NotOnline(_) => (StatusCode::CONFLICT, "not-online"),
            RunnerError::NotItsJob { .. } => (StatusCode::CONFLICT, "not-its-job"),
            RunnerError::InvalidReport(_) => (StatusCode::BAD_REQUEST, "invalid"),
            RunnerError::State(StateError::JobNotFound(_)) => (StatusCode::NOT_FOUND, "state"),
            RunnerError::State(_) => (StatusCode::CONFLICT, "state"),
        };
        let body = ErrorBody {
            error: self.0.to_string(),
            reason,
        };
        (status, Json(body)).into_response()
    }
}

impl From<RunnerError> for RunnerApiError {
    fn from(error: RunnerError) -> Self {
        RunnerApiError(error)
    }
}

type Reply<T> = Result<T, RunnerApiError>;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/_runner/runners/{id}/online", post(online))
        .route("/_runner/runners/{id}/job", get(take_job))
        .route(
            "/_runner/runners/{id}/jobs/{request_id}/result",
            post(report),
        )
}

/// The bearer credential, or "" (which matches no config).
fn credential(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Online {
    runner_id: i64,
    runner_name: String,
    scale_set_id: i64,
}

async fn online(
    State(app): State<App>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Reply<Json<Online>> {
    let credential = credential(&headers);
    let runner = app.state(|s, _| s.runner_online(id, &credential))?;
    Ok(Json(Online {
        runner_id: runner.id,
        runner_name: runner.name,
        scale_set_id: runner.scale_set_id,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wait {
    wait_ms: Option<u64>,
}

/// A long poll like the message queue's: answers as soon as the runner can
/// take a job, or with 204 after the wait. Wakes on every state change and
/// on the state's own deadlines.
async fn take_job(
    State(app): State<App>,
    Path(id): Path<i64>,
    Query(wait): Query<Wait>,
    headers: HeaderMap,
) -> Reply<Response> {
    let credential = credential(&headers);
    let limit = app.opts().long_poll_timeout;
    let wait = wait
        .wait_ms
        .map_or(limit, |ms| Duration::from_millis(ms).min(limit));
    let mut changes = app.subscribe();
    let start = Instant::now();
    let deadline = start.checked_add(wait).unwrap_or(start);
    loop {
        changes.borrow_and_update();
        let (taken, next_deadline) =
            app.state(|s, now| (s.runner_take_job(id, &credential, now), s.next_deadline()));
        if let Some(job) = taken? {
            return Ok(Json(job).into_response());
        }
        if Instant::now() >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let wake = next_deadline.map_or(deadline, |d| d.min(deadline));
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// The report as sent: lenient (missing fields default, nulls allowed).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportRequest {
    #[serde(default)]
    result: String,
    failed_step: Option<u32>,
    failed_command: Option<String>,
    exit_code: Option<i32>,
    #[serde(default)]
    output_tail: Option<Vec<String>>,
}

async fn report(
    State(app): State<App>,
    Path((id, request_id)): Path<(i64, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<StatusCode> {
    let credential = credential(&headers);
    let request: ReportRequest = serde_json::from_slice(&body)
        .map_err(|e| RunnerError::InvalidReport(format!("invalid JSON body: {e}")))?;
    let report = JobReport {
        runner_name: String::new(),
        result: request.result,
        failed_step: request.failed_step,
        failed_command: request.failed_command,
        exit_code: request.exit_code,
        output_tail: request.output_tail.unwrap_or_default(),
    };
    app.state(|s, now| s.runner_report(id, &credential, request_id, report, now))?;
    Ok(StatusCode::NO_CONTENT)
}
