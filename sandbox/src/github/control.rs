//! The control API under `/_control/`: what the Rust handle does, over HTTP
//! JSON, for tests and tools in other languages (and for people poking at
//! `runway-sandbox github` with curl). Not part of GitHub: no auth, no
//! faults, no byte-order mark, not counted.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /_control/state` | | the snapshot |
//! | `GET /_control/counters` | | `{"GetMessage": n, ...}` |
//! | `GET /_control/requests/{endpoint}` | | `{"count", "millis": [ms since start]}` |
//! | `POST /_control/pats` | `{"token"}` | 204 |
//! | `POST /_control/apps` | `{"appId","clientId","installationId","publicKeyPem"}` | 204 |
//! | `POST /_control/runner-groups` | `{"name"}` | `{"id"}` |
//! | `POST /_control/jobs` | `{"scaleSetId", "repository"?, "workflowRef"?, "displayName"?, "labels"?, "steps"?}` | `{"runnerRequestId","jobId"}` |
//! | `GET /_control/jobs/{id}/report` | | what its runner reported (`JobReport`), 404 until then |
//! | `POST /_control/jobs/{id}/start` | `{"runnerName"}` | 204 |
//! | `POST /_control/jobs/{id}/complete` | `{"result"}` | 204 |
//! | `DELETE /_control/scalesets/{id}` | | 204 |
//! | `POST /_control/scalesets/{id}/messages` | `{"body", "messageType"?}` | 204 (delivered next, verbatim) |
//! | `POST /_control/faults` | `{"endpoint","status"?,"typeName"?,"delayMs"?,"retryAfter"?,"dropConnection"?,"times"?}` | 204 |
//! | `DELETE /_control/faults` | | 204 (all queued faults cleared) |
//! | `POST /_control/expire/{what}` | what: `installation-tokens`, `admin-tokens`, `queue-tokens`, `sessions` | 204 |
//! | `PUT /_control/bom` | `{"enabled"}` | 204 |

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::auth::FakeApp;
use super::faults::{Endpoint, Fault};
use super::messages::RawMessage;
use super::server::App;
use super::state::{JobReport, NewJob, Snapshot, StateError};

#[derive(Debug)]
pub struct ControlError(StatusCode, String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<StateError> for ControlError {
    fn from(error: StateError) -> Self {
        let status = match error {
            StateError::ScaleSetNotFound(_)
            | StateError::RunnerNotFound(_)
            | StateError::RunnerNameNotFound { .. }
            | StateError::JobNotFound(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        ControlError(status, error.to_string())
    }
}

fn bad_request(message: impl ToString) -> ControlError {
    ControlError(StatusCode::BAD_REQUEST, message.to_string())
}

type Reply<T> = Result<T, ControlError>;

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Reply<T> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))
}

pub fn routes() -> Router<App> {
    Router::new()
        .route("/_control/state", get(state))
        .route("/_control/counters", get(counters))
        .route("/_control/requests/{endpoint}", get(requests))
        .route("/_control/pats", post(add_pat))
        .route("/_control/apps", post(add_app))
        .route("/_control/runner-groups", post(add_runner_group))
        .route("/_control/jobs", post(queue_job))
        .route("/_control/jobs/{id}/report", get(job_report))
        .route("/_control/jobs/{id}/start", post(start_job))
        .route("/_control/jobs/{id}/complete", post(complete_job))
        .route("/_control/scalesets/{id}", delete(delete_scale_set))
        .route("/_control/scalesets/{id}/messages", post(queue_raw_message))
        .route("/_control/faults", post(inject_fault).delete(clear_faults))
        .route("/_control/expire/{what}", post(expire))
        .route("/_control/bom", put(set_bom))
}

async fn state(State(app): State<App>) -> Json<Snapshot> {
    Json(app.state(|s, _| s.snapshot()))
}

async fn counters(State(app): State<App>) -> Json<BTreeMap<String, u64>> {
    Json(app.faults(|f| f.counters()))
}

#[derive(Serialize)]
struct Requests {
    count: u64,
    /// Arrival of each request, in milliseconds since the fake started.
    millis: Vec<f64>,
}

async fn requests(State(app): State<App>, Path(endpoint): Path<String>) -> Reply<Json<Requests>> {
    let endpoint = Endpoint::from_name(&endpoint)
        .ok_or_else(|| ControlError(StatusCode::NOT_FOUND, format!("no endpoint {endpoint:?}")))?;
    let started = app.started();
    let (count, times) = app.faults(|f| (f.count(endpoint), f.times(endpoint)));
    let millis = times
        .iter()
        .map(|t| t.saturating_duration_since(started).as_secs_f64() * 1000.0)
        .collect();
    Ok(Json(Requests { count, millis }))
}

#[derive(Deserialize)]
struct Pat {
    token: String,
}

async fn add_pat(State(app): State<App>, body: Bytes) -> Reply<StatusCode> {
    let pat: Pat = parse(&body)?;
    app.tokens(|t| t.add_pat(&pat.token));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewApp {
    app_id: u64,
    client_id: String,
    installation_id: u64,
    public_key_pem: String,
}

async fn add_app(State(app): State<App>, body: Bytes) -> Reply<StatusCode> {
    let new: NewApp = parse(&body)?;
    let fake = FakeApp {
        app_id: new.app_id,
        client_id: new.client_id,
        installation_id: new.installation_id,
        public_key_pem: new.public_key_pem,
    };
    app.tokens(|t| t.add_app(fake)).map_err(bad_request)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Serialize)]
struct Id {
    id: i64,
}

async fn add_runner_group(State(app): State<App>, body: Bytes) -> Reply<Json<Id>> {
    let group: Named = parse(&body)?;
    Ok(Json(Id {
        id: app.state(|s, _| s.add_runner_group(&group.name)),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobRequest {
    scale_set_id: i64,
    repository: Option<String>,
    workflow_ref: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    /// Shell commands for a stand-in runner; null or missing: none.
    #[serde(default)]
    steps: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Queued {
    runner_request_id: i64,
    job_id: String,
}

async fn queue_job(State(app): State<App>, body: Bytes) -> Reply<Json<Queued>> {
    let request: JobRequest = parse(&body)?;
    let defaults = NewJob::default();
    let job = NewJob {
        repository: request.repository.unwrap_or(defaults.repository),
        workflow_ref: request.workflow_ref.unwrap_or(defaults.workflow_ref),
        display_name: request.display_name.unwrap_or(defaults.display_name),
        labels: request.labels,
        steps: request.steps.unwrap_or_default(),
    };
    let (runner_request_id, job_id) =
        app.state(|s, now| s.queue_job(request.scale_set_id, job, now))?;
    Ok(Json(Queued {
        runner_request_id,
        job_id,
    }))
}

async fn job_report(State(app): State<App>, Path(id): Path<i64>) -> Reply<Json<JobReport>> {
    app.state(|s, _| s.job_report(id)).map(Json).ok_or_else(|| {
        ControlError(
            StatusCode::NOT_FOUND,
            format!("no runner has reported job {id}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Start {
    runner_name: String,
}

async fn start_job(State(app): State<App>, Path(id): Path<i64>, body: Bytes) -> Reply<StatusCode> {
    let start: Start = parse(&body)?;
    app.state(|s, now| s.start_job(id, &start.runner_name, now))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Complete {
    result: String,
}

async fn complete_job(
    State(app): State<App>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Reply<StatusCode> {
    let complete: Complete = parse(&body)?;
    app.state(|s, now| s.complete_job(id, &complete.result, now))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_scale_set(State(app): State<App>, Path(id): Path<i64>) -> Reply<StatusCode> {
    app.state(|s, _| s.delete_scale_set(None, id))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessageRequest {
    body: String,
    message_type: Option<String>,
}

async fn queue_raw_message(
    State(app): State<App>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Reply<StatusCode> {
    let request: RawMessageRequest = parse(&body)?;
    let message = RawMessage {
        message_type: request
            .message_type
            .unwrap_or_else(|| super::actions::MESSAGE_TYPE.to_string()),
        body: request.body,
    };
    app.state(|s, _| s.queue_raw_message(id, message))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultRequest {
    endpoint: String,
    status: Option<u16>,
    type_name: Option<String>,
    #[serde(default)]
    delay_ms: u64,
    retry_after: Option<u64>,
    #[serde(default)]
    drop_connection: bool,
    times: Option<u32>,
}

async fn inject_fault(State(app): State<App>, body: Bytes) -> Reply<StatusCode> {
    let request: FaultRequest = parse(&body)?;
    let endpoint = Endpoint::from_name(&request.endpoint)
        .ok_or_else(|| bad_request(format!("no endpoint {:?}", request.endpoint)))?;
    let defaults = Fault::default();
    let fault = Fault {
        status: request.status.unwrap_or(defaults.status),
        type_name: request.type_name,
        delay: Duration::from_millis(request.delay_ms),
        retry_after: request.retry_after,
        drop_connection: request.drop_connection,
        times: request.times.unwrap_or(defaults.times),
    };
    app.faults(|f| f.inject(endpoint, fault));
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(app): State<App>) -> StatusCode {
    app.faults(|f| f.clear_faults());
    StatusCode::NO_CONTENT
}

async fn expire(State(app): State<App>, Path(what): Path<String>) -> Reply<StatusCode> {
    let now = std::time::Instant::now();
    match what.as_str() {
        "installation-tokens" => app.tokens(|t| t.expire_installation_tokens(now)),
        "admin-tokens" => app.tokens(|t| t.expire_admin_tokens(now)),
        "queue-tokens" => app.tokens(|t| t.expire_queue_tokens(now)),
        "sessions" => app.state(|s, _| s.expire_sessions()),
        other => {
            return Err(ControlError(
                StatusCode::NOT_FOUND,
                format!("cannot expire {other:?}"),
            ));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Bom {
    enabled: bool,
}

async fn set_bom(State(app): State<App>, body: Bytes) -> Reply<StatusCode> {
    let bom: Bom = parse(&body)?;
    app.set_bom(bom.enabled);
    Ok(StatusCode::NO_CONTENT)
}
