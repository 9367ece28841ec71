//! What every Actions handler starts with: its error type, the two kinds of
//! authentication (admin token, message queue token) as extractors, and
//! lenient JSON body parsing.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::github::auth::{self, AuthError, QueueGrant};
use crate::github::server::App;
use crate::github::state::StateError;
use crate::github::wire;

/// An Actions service error: status, exception name and message.
#[derive(Debug)]
pub struct ActionsError {
    status: StatusCode,
    type_name: &'static str,
    message: String,
}

impl ActionsError {
    pub(super) fn unauthorized(message: impl ToString) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            type_name: "VssUnauthorizedException",
            message: message.to_string(),
        }
    }

    pub(super) fn bad_request(message: impl ToString) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            type_name: "ArgumentException",
            message: message.to_string(),
        }
    }

    pub(super) fn internal(message: impl ToString) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            type_name: "InternalServerException",
            message: message.to_string(),
        }
    }
}

impl From<AuthError> for ActionsError {
    fn from(error: AuthError) -> Self {
        Self::unauthorized(error)
    }
}

impl From<StateError> for ActionsError {
    fn from(error: StateError) -> Self {
        let (status, type_name) = match &error {
            StateError::ScaleSetNotFound(_) => {
                (StatusCode::NOT_FOUND, "RunnerScaleSetNotFoundException")
            }
            StateError::ScaleSetExists(_) => {
                (StatusCode::CONFLICT, "RunnerScaleSetExistsException")
            }
            StateError::RunnerGroupNotFound(_) => {
                (StatusCode::NOT_FOUND, "RunnerGroupNotFoundException")
            }
            StateError::Invalid(_) => (StatusCode::BAD_REQUEST, "ArgumentException"),
            StateError::SessionConflict { .. } => (
                StatusCode::CONFLICT,
                "RunnerScaleSetSessionConflictException",
            ),
            StateError::SessionExpired(_) => (
                StatusCode::BAD_REQUEST,
                "RunnerScaleSetSessionExpiredException",
            ),
            StateError::RunnerExists { .. } => (StatusCode::CONFLICT, "AgentExistsException"),
            StateError::RunnerNotFound(_) | StateError::RunnerNameNotFound { .. } => {
                (StatusCode::NOT_FOUND, "AgentNotFoundException")
            }
            StateError::RunnerBusy { .. } => (StatusCode::BAD_REQUEST, "JobStillRunningException"),
            StateError::JobNotFound(_) => (StatusCode::NOT_FOUND, "JobNotFoundException"),
            StateError::JobWrongState { .. } => {
                (StatusCode::BAD_REQUEST, "InvalidJobStateException")
            }
        };
        Self {
            status,
            type_name,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ActionsError {
    fn into_response(self) -> Response {
        let body = wire::ExceptionBody {
            type_name: self.type_name,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

pub(super) type Reply<T> = Result<T, ActionsError>;

async fn path_param(parts: &mut Parts, app: &App, name: &str) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, app).await.ok()?;
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// An admin-token call into one tenant's service.
pub struct Admin {
    pub(super) tenant: u32,
    /// `<origin>/_services/pipelines/<tenant>/`
    pub(super) actions_url: String,
    /// `scheme://host:port` as the client addressed us.
    pub(super) origin: String,
}

impl FromRequestParts<App> for Admin {
    type Rejection = ActionsError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = auth::bearer(&parts.headers)?;
        let claims = app.tokens(|t| t.verify_admin_token(token, Instant::now()))?;
        let tenant = path_param(parts, app, "tenant")
            .await
            .and_then(|t| t.parse::<u32>().ok());
        if tenant != Some(claims.tid) {
            return Err(AuthError::WrongTenant.into());
        }
        Ok(Admin {
            tenant: claims.tid,
            actions_url: app.actions_url(&parts.headers, claims.tid),
            origin: app.origin(&parts.headers),
        })
    }
}

/// A message-queue-token call for one scale set's active session.
pub struct Queue {
    pub(super) grant: QueueGrant,
    pub(super) actions_url: String,
}

impl FromRequestParts<App> for Queue {
    type Rejection = ActionsError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = auth::bearer(&parts.headers)?;
        let grant = app.tokens(|t| t.queue_grant(token, Instant::now()))?;
        let tenant = path_param(parts, app, "tenant")
            .await
            .and_then(|t| t.parse::<u32>().ok());
        let id = path_param(parts, app, "id")
            .await
            .and_then(|t| t.parse::<i64>().ok());
        if id != Some(grant.scale_set_id) {
            return Err(ActionsError::unauthorized(
                "the message queue token is for another runner scale set",
            ));
        }
        let active = app.state(|s, _| {
            tenant.is_some_and(|t| s.scale_set(Some(t), grant.scale_set_id).is_ok())
                && s.session_active(grant.scale_set_id, &grant.session_id)
        });
        if !active {
            return Err(ActionsError::unauthorized(
                "the session of this message queue token has ended",
            ));
        }
        let actions_url = app.actions_url(&parts.headers, tenant.unwrap_or_default());
        Ok(Queue { grant, actions_url })
    }
}

pub(super) fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> Reply<T> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ActionsError::bad_request(format!("the request body is not valid: {e}")))
}
