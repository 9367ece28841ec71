//! `runway serve`'s routes:
//!
//! - `GET /liveness`: 200 while the process serves.
//! - `GET /readiness`: 200 when the allowlist is loaded (always, once
//!   started: a bad one stops the start), the API server answers, and, with
//!   `--lease`, this replica leads. A standby is NOT ready on purpose, so the
//!   Service sends payloads to the leader only.
//! - `GET /metrics`: Prometheus text ([`super::metrics`]).
//! - `POST /v1/actions`: a payload (JSON, at most [`MAX_BODY`]), answered
//!   with the per-action [`PayloadReport`].
//!
//! Order on `POST /v1/actions`, which is the safety argument: authenticate
//! (401, before the body is even read), then leadership (503 with
//! `Retry-After` and the leader's identity), then parse (400 naming the
//! field), then run exactly once through the state ConfigMap. Nothing
//! touches Kubernetes before authentication succeeded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use kube::Client;
use runway_lease::LeaderElector;
use serde_json::json;
use tokio::sync::watch;

use super::auth::{Principal, authenticate};
use super::credentials::Credentials;
use super::metrics::Metrics;
use crate::kube::action::{Action, Outcome};
use crate::kube::error::ActionError;
use crate::kube::exec::Executor;
use crate::kube::payload::{Payload, PayloadError};
use crate::kube::run_payload::{Execute, PayloadReport, run_payload_with};
use crate::kube::state::StateStore;

/// The largest payload accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// How long readiness waits for the API server.
const READINESS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the routes share.
pub struct App {
    pub credentials: Credentials,
    pub executor: Executor,
    pub store: StateStore,
    pub metrics: Arc<Metrics>,
    pub leader: LeaderView,
    pub client: Client,
}

/// Whether this replica may execute, and how to name the one that may.
pub struct LeaderView {
    /// Always true without `--lease`.
    pub leading: watch::Receiver<bool>,
    /// To read the Lease's holder for a standby's 503.
    pub elector: Option<Arc<LeaderElector>>,
    /// `Retry-After` of a standby's 503, in seconds.
    pub retry_after_secs: u64,
}

impl LeaderView {
    /// The view of a process that does not elect: it always leads.
    pub fn alone() -> LeaderView {
        let (tx, leading) = watch::channel(true);
        // The value never changes; dropping the sender keeps it readable.
        drop(tx);
        LeaderView {
            leading,
            elector: None,
            retry_after_secs: 1,
        }
    }

    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/liveness", get(|| async { "ok\n" }))
        .route("/readiness", get(readiness))
        .route("/metrics", get(metrics))
        .route("/v1/actions", post(actions))
        .with_state(app)
}

async fn readiness(State(app): State<Arc<App>>) -> Response {
    let api_server = matches!(
        tokio::time::timeout(READINESS_PROBE_TIMEOUT, app.client.apiserver_version()).await,
        Ok(Ok(_))
    );
    let leader = app.leader.is_leading();
    let ready = api_server && leader;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": ready,
        "allowlist": true,
        "api_server": api_server,
        "leader": leader,
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn actions(State(app): State<Arc<App>>, request: Request) -> Response {
    // Not UTF-8 reads as an empty header: malformed.
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let principal = match authenticate(header, &app.credentials.current(), Utc::now()) {
        Ok(principal) => principal,
        Err(failure) => {
            app.metrics.auth_failure(failure.reason());
            tracing::warn!(reason = failure.reason(), %failure, "serve: request refused (401)");
            let mut response = error(StatusCode::UNAUTHORIZED, failure.to_string(), None);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"runway\""),
            );
            return response;
        }
    };
    if !app.leader.is_leading() {
        return not_leader(&app).await;
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_BODY).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the payload could not be read whole: at most {MAX_BODY} bytes are accepted"),
            None,
        );
    };
    let payload = match Payload::from_json(&body) {
        Ok(payload) => payload,
        Err(e) => {
            let field = match &e {
                PayloadError::Field { field, .. } => Some(field.clone()),
                PayloadError::NotJson(_) => None,
            };
            return error(StatusCode::BAD_REQUEST, e.to_string(), field);
        }
    };
    let report = run(&app, &principal, &payload).await;
    axum::Json(report).into_response()
}

/// Runs an authenticated payload on the leader and counts the outcomes.
async fn run(app: &App, principal: &Principal, payload: &Payload) -> PayloadReport {
    let executor = app.executor.with_source(format!("serve ({principal})"));
    let timed = Timed {
        executor: &executor,
        metrics: &app.metrics,
    };
    let report = run_payload_with(&timed, &app.store, payload, Utc::now()).await;
    for result in &report.results {
        app.metrics
            .action(&result.action_type, result.status.as_str());
    }
    report
}

/// A standby's answer: try again later, at the leader.
async fn not_leader(app: &App) -> Response {
    let holder = match &app.leader.elector {
        Some(elector) => elector.current_holder().await.ok().flatten(),
        None => None,
    };
    let message = match &holder {
        Some(holder) => format!(
            "this replica is not the leader; {holder} holds the Lease and executes payloads: retry (the Service routes to the ready leader)"
        ),
        None => "this replica is not the leader and no replica leads right now: retry".to_string(),
    };
    let body = json!({"error": message, "leader": holder});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(app.leader.retry_after_secs.max(1)),
    );
    response
}

/// `{"error": message, "field": field}` (field only when known).
fn error(status: StatusCode, message: String, field: Option<String>) -> Response {
    let body = match field {
        Some(field) => json!({"error": message, "field": field}),
        None => json!({"error": message}),
    };
    (status, axum::Json(body)).into_response()
}

/// The executor, timing each action that runs.
struct Timed<'a> {
    executor: &'a Executor,
    metrics: &'a Metrics,
}

impl Execute for Timed<'_> {
    async fn execute(&self, action: &Action) -> Result<Outcome, ActionError> {
        self.execute_as(action, "serve").await
    }

    /// Audited as `payload <id>/<version>`, so the audit line and Events
    /// name the dispatched action.
    async fn execute_as(&self, action: &Action, source: &str) -> Result<Outcome, ActionError> {
        let started = Instant::now();
        let result = self.executor.with_source(source).execute(action).await;
        self.metrics.duration(started.elapsed());
        result
    }

    fn admit(&self, action: &Action) -> Result<(), ActionError> {
        self.executor.admit(action)
    }
}
