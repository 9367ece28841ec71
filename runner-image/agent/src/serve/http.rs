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
//! (401, before the body is even read: signature and claims, `jti` and
//! `body_sha256` present), then leadership (503 with `Retry-After` and the
//! leader's identity), then read the body (at most [`MAX_BODY`] bytes: 413;
//! within `--body-timeout`: 408), then, for a JWT, the body's SHA-256 must be
//! its `body_sha256` (401) and its `jti` must be new (401 when seen before,
//! 503 when the replay cache is full), then parse (400 naming the field),
//! then run exactly once through the state ConfigMap. Nothing touches
//! Kubernetes before authentication succeeded.

use std::sync::{Arc, Mutex};
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

use super::auth::{AuthFailure, Principal, authenticate, check_body};
use super::credentials::Credentials;
use super::metrics::Metrics;
use super::replay::{ReplayCache, Seen};
use crate::kube::action::{Action, Outcome};
use crate::kube::error::ActionError;
use crate::kube::exec::Executor;
use crate::kube::payload::Payload;
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
    /// The body timeout and the JWT replay cache.
    pub requests: RequestLimits,
}

/// What bounds one request beyond its credential.
#[derive(Debug)]
pub struct RequestLimits {
    /// How long reading the body may take (`--body-timeout`): 408 after.
    pub body_timeout: Duration,
    /// The `jti`s accepted, until their tokens expire.
    pub replay: Mutex<ReplayCache>,
}

/// `--body-timeout`'s default.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            body_timeout: DEFAULT_BODY_TIMEOUT,
            replay: Mutex::new(ReplayCache::default()),
        }
    }
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
        Err(failure) => return unauthorized(&app, &failure),
    };
    if !app.leader.is_leading() {
        return not_leader(&app).await;
    }
    let timeout = app.requests.body_timeout;
    let body =
        match tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), MAX_BODY))
            .await
        {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the payload could not be read whole: at most {MAX_BODY} bytes are accepted"
                    ),
                    None,
                );
            }
            Err(_) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the body did not arrive within {}s (--body-timeout)",
                        timeout.as_secs_f64()
                    ),
                    None,
                );
            }
        };
    if let Err(refusal) = bind(&app.requests, &principal, &body, Utc::now().timestamp()) {
        return match refusal {
            Refusal::Unauthorized(failure) => unauthorized(&app, &failure),
            Refusal::Full => {
                tracing::warn!("serve: the JWT replay cache is full; refusing new JWTs (503)");
                let mut response = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many JWTs alive at once: retry when some have expired".into(),
                    None,
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
        };
    }
    let payload = match Payload::from_json(&body) {
        Ok(payload) => payload,
        Err(e) => {
            let field = e.field().map(str::to_string);
            return error(StatusCode::BAD_REQUEST, e.to_string(), field);
        }
    };
    let report = run(&app, &principal, &payload).await;
    axum::Json(report).into_response()
}

/// Why a request authenticated but not bound to its body is refused.
enum Refusal {
    /// 401: the body is not the signed one, or the `jti` was used.
    Unauthorized(AuthFailure),
    /// 503: no room to remember one more `jti`.
    Full,
}

/// A JWT is good for the body it names, once: the hash first (a token
/// presented with another body is not consumed), then the `jti`, checked
/// and recorded in one step at `now`.
fn bind(
    limits: &RequestLimits,
    principal: &Principal,
    body: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    check_body(principal, body).map_err(Refusal::Unauthorized)?;
    let Principal::Jwt { binding, .. } = principal else {
        return Ok(());
    };
    let seen = limits
        .replay
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check_and_record(&binding.jti, binding.exp, now);
    match seen {
        Seen::New => Ok(()),
        Seen::Replayed => Err(Refusal::Unauthorized(AuthFailure::Replayed)),
        Seen::Full => Err(Refusal::Full),
    }
}

/// 401, counted and logged by reason.
fn unauthorized(app: &App, failure: &AuthFailure) -> Response {
    app.metrics.auth_failure(failure.reason());
    tracing::warn!(reason = failure.reason(), %failure, "serve: request refused (401)");
    let mut response = error(StatusCode::UNAUTHORIZED, failure.to_string(), None);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"runway\""),
    );
    response
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
pub(super) fn error(status: StatusCode, message: String, field: Option<String>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::auth::{Binding, sha256_hex};

    fn jwt(jti: &str, body: &[u8]) -> Principal {
        Principal::Jwt {
            subject: "urn:x".into(),
            binding: Binding {
                jti: jti.into(),
                body_sha256: sha256_hex(body),
                exp: 1_000,
            },
        }
    }

    #[test]
    fn a_jwt_binds_to_its_body_once_and_a_mismatch_does_not_use_it_up() {
        let limits = RequestLimits {
            body_timeout: DEFAULT_BODY_TIMEOUT,
            replay: Mutex::new(ReplayCache::new(2)),
        };
        let verdict = |principal: &Principal, body: &[u8]| match bind(&limits, principal, body, 900)
        {
            Ok(()) => "ok".to_string(),
            Err(Refusal::Unauthorized(failure)) => failure.reason().to_string(),
            Err(Refusal::Full) => "full".to_string(),
        };
        let a = jwt("a", b"one");
        assert_eq!(verdict(&a, b"two"), "body_hash");
        assert_eq!(verdict(&a, b"one"), "ok");
        assert_eq!(verdict(&a, b"one"), "replay");
        assert_eq!(verdict(&a, b"two"), "body_hash");
        assert_eq!(verdict(&jwt("b", b""), b""), "ok");
        assert_eq!(verdict(&jwt("c", b""), b""), "full");
        // Bearer tokens carry no `jti` and are never refused here.
        for _ in 0..3 {
            assert_eq!(verdict(&Principal::Token, b"any"), "ok");
        }
    }
}
