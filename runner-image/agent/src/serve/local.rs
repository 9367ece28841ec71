//! `runway serve --local <socket>`: the executor beside the job.
//!
//! In runner pods of a scale set with `kubernetesActions`, the runner
//! container has no Kubernetes credential; this process, in the
//! `runway-executor` container the controller adds, is the only one holding
//! the pod's ServiceAccount token. Job steps reach it through `runway kube`
//! over a Unix socket in a volume only the two containers mount, so the
//! allowlist, the protected namespaces, Secret redaction and the
//! `deleteMultiple` bound are a boundary rather than a courtesy: a step
//! that skips `runway` has nothing to call the API server with.
//!
//! Routes (HTTP/1.1 over the socket):
//! - `GET /liveness`: 200 while serving.
//! - `POST /v1/kube`: one [`wire::Request`], answered with a [`wire::Reply`]
//!   (the outcome, or the failure with the CLI's exit code).
//! - `POST /v1/actions`: a payload, run exactly once per action with claims
//!   in ConfigMap `runway-kubeactions-state-jobs` (never the standalone
//!   server's `runway-kubeactions-state`), audited as the job its
//!   `x-runway-job` header names.
//!
//! No authentication: whoever can open the socket is the job, which is who
//! the executor serves; nothing outside the pod can reach it (no TCP port,
//! which on a hostNetwork pod would be the node's). Invariants: the allowlist
//! is loaded before the socket exists (a bad one exits 2 and the CLI reports
//! the executor unreachable); every action goes through the same
//! [`Executor::execute`] as everywhere else; the audit names the job from the
//! request and the runner from this process's own environment.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;

use super::{ServeArgs, ServeError, terminated};
use crate::kube::allowlist::Allowlist;
use crate::kube::audit::AuditContext;
use crate::kube::exec::Executor;
use crate::kube::payload::Payload;
use crate::kube::run_payload::run_payload;
use crate::kube::state::{JOBS_STATE_CONFIGMAP, StateStore, default_holder};
use crate::kube::wire::{self, Failure, MAX_MESSAGE, Reply};

/// The audit `source` of actions run here.
pub const SOURCE: &str = "executor";

struct Local {
    executor: Executor,
    store: StateStore,
}

pub(super) async fn serve(args: &ServeArgs, socket: &Path) -> Result<(), ServeError> {
    let allowlist = Allowlist::load(args.allowlist.as_deref())?;
    let (client, namespace) = super::client_and_namespace(args).await?;
    let identity = args.identity.clone().unwrap_or_else(default_holder);
    let mut audit = AuditContext::from_env(SOURCE);
    // The job's fields come with each request; this process's environment
    // (the executor container's) has none worth recording.
    audit.repository = None;
    audit.run_id = None;
    audit.job = None;
    audit.workflow = None;
    audit.actor = None;
    let local = Arc::new(Local {
        executor: Executor::new(client.clone(), allowlist, audit),
        store: StateStore::new(client, &namespace, &identity).in_configmap(JOBS_STATE_CONFIGMAP),
    });

    let listener = bind(socket)?;
    eprintln!("runway serve: listening on {}", socket.display());
    tracing::info!(socket = %socket.display(), %namespace, "serve --local: started");
    // The same limits as the standalone server: a step that opens
    // connections and sends nothing cannot hold the executor for the others.
    let limits = super::listen::Limits {
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
    };
    super::listen::serve(listener, router(local), limits, terminated()).await;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Binds the socket: a stale file from an earlier run is replaced; the mode
/// lets the runner container's user (whatever its uid) connect.
fn bind(socket: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    let failed = |source: std::io::Error| ServeError::Socket {
        path: socket.display().to_string(),
        source,
    };
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let listener = tokio::net::UnixListener::bind(socket).map_err(failed)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).map_err(failed)?;
    Ok(listener)
}

fn router(local: Arc<Local>) -> Router {
    Router::new()
        .route("/liveness", get(|| async { "ok\n" }))
        .route("/v1/kube", post(kube))
        .route("/v1/actions", post(actions))
        .with_state(local)
}

async fn body_of(request: Request) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(request.into_body(), MAX_MESSAGE)
        .await
        .map_err(|_| {
            reply(Failure {
                error: format!(
                    "the request could not be read whole: at most {MAX_MESSAGE} bytes are accepted"
                ),
                reason: "bad_input".into(),
                exit_code: 2,
            })
        })
}

async fn kube(State(local): State<Arc<Local>>, request: Request) -> Response {
    let body = match body_of(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request: wire::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return reply(Failure {
                error: format!("not a runway kube request: {e}"),
                reason: "bad_input".into(),
                exit_code: 2,
            });
        }
    };
    let action = match request.action.to_action() {
        Ok(action) => action,
        Err(e) => return reply(Failure::of(&e)),
    };
    let job = request.job.unwrap_or_default();
    let executor = local.executor.with_audit(job.audit(local.executor.audit()));
    match executor.execute(&action).await {
        Ok(outcome) => (StatusCode::OK, axum::Json(Reply::Outcome(outcome))).into_response(),
        Err(e) => reply(Failure::of(&e)),
    }
}

/// A failure, with an HTTP status that says the same as its exit code.
fn reply(failure: Failure) -> Response {
    let status = match failure.exit_code {
        2 => StatusCode::BAD_REQUEST,
        3 => StatusCode::FORBIDDEN,
        5 => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    (status, axum::Json(Reply::Failure(failure))).into_response()
}

async fn actions(State(local): State<Arc<Local>>, request: Request) -> Response {
    let job = request
        .headers()
        .get(wire::JOB_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(wire::Job::from_header)
        .unwrap_or_default();
    let executor = local.executor.with_audit(job.audit(local.executor.audit()));
    let body = match body_of(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let payload = match Payload::from_json(&body) {
        Ok(payload) => payload,
        Err(e) => {
            let field = e.field().map(str::to_string);
            return super::http::error(StatusCode::BAD_REQUEST, e.to_string(), field);
        }
    };
    let report = run_payload(&executor, &local.store, &payload, Utc::now()).await;
    axum::Json(report).into_response()
}
