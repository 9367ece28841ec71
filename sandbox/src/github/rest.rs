//! The GitHub REST endpoints a scale-set client uses (GitHub Enterprise
//! Server shaped: the REST base of `http://host/my-org` is `http://host/api/v3`):
//! installation tokens for App JWTs, registration tokens for PATs and
//! installation tokens, and `actions/runner-registration`, which trades a
//! registration token for the Actions service URL and an admin token.

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{SecondsFormat, Utc};
use serde::Deserialize;

use super::auth::{self, AuthError, REGISTRATION_TOKEN_TTL};
use super::faults::{Endpoint, tagged};
use super::server::App;
use super::state::Scope;
use super::wire;

/// A GitHub REST error: `{"message","documentation_url"}`.
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    message: String,
}

impl RestError {
    fn new(status: StatusCode, message: impl ToString) -> Self {
        Self {
            status,
            message: message.to_string(),
        }
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found")
    }
}

impl From<AuthError> for RestError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::WrongInstallation(_) => Self::not_found(),
            AuthError::Unknown => Self::new(StatusCode::UNAUTHORIZED, "Bad credentials"),
            other => Self::new(StatusCode::UNAUTHORIZED, other),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = wire::RestErrorBody {
            message: &self.message,
            documentation_url: "https://docs.github.com/rest",
        };
        (self.status, Json(body)).into_response()
    }
}

type Reply<T> = Result<T, RestError>;

pub fn routes(app: &App) -> Router<App> {
    Router::new()
        .route(
            "/api/v3/app/installations/{installation_id}/access_tokens",
            tagged(app, Endpoint::InstallationToken, post(installation_token)),
        )
        .route(
            "/api/v3/orgs/{org}/actions/runners/registration-token",
            tagged(
                app,
                Endpoint::RegistrationToken,
                post(org_registration_token),
            ),
        )
        .route(
            "/api/v3/repos/{owner}/{repo}/actions/runners/registration-token",
            tagged(
                app,
                Endpoint::RegistrationToken,
                post(repo_registration_token),
            ),
        )
        .route(
            "/api/v3/enterprises/{enterprise}/actions/runners/registration-token",
            tagged(
                app,
                Endpoint::RegistrationToken,
                post(enterprise_registration_token),
            ),
        )
        .route(
            "/api/v3/actions/runner-registration",
            tagged(app, Endpoint::RunnerRegistration, post(runner_registration)),
        )
}

fn unix_now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn expires_at(ttl: Duration) -> String {
    let ttl = chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX);
    Utc::now()
        .checked_add_signed(ttl)
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn installation_token(
    State(app): State<App>,
    Path(installation_id): Path<String>,
    headers: HeaderMap,
) -> Reply<(StatusCode, Json<wire::TokenResponse>)> {
    let jwt = auth::bearer(&headers)?;
    let installation_id: u64 = installation_id
        .parse()
        .map_err(|_| RestError::not_found())?;
    app.tokens(|t| t.verify_app_jwt(jwt, installation_id, unix_now()))?;
    let ttl = app.opts().installation_token_ttl;
    let token = app.tokens(|t| t.issue_installation_token(Instant::now(), ttl));
    Ok((
        StatusCode::CREATED,
        Json(wire::TokenResponse {
            token,
            expires_at: expires_at(ttl),
        }),
    ))
}

fn registration_token(
    app: &App,
    headers: &HeaderMap,
    scope: Scope,
) -> Reply<(StatusCode, Json<wire::TokenResponse>)> {
    let credential = auth::bearer(headers)?;
    let now = Instant::now();
    app.tokens(|t| t.check_rest_token(credential, now))?;
    let token = app.tokens(|t| t.issue_registration_token(scope, now));
    Ok((
        StatusCode::CREATED,
        Json(wire::TokenResponse {
            token,
            expires_at: expires_at(REGISTRATION_TOKEN_TTL),
        }),
    ))
}

async fn org_registration_token(
    State(app): State<App>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Reply<(StatusCode, Json<wire::TokenResponse>)> {
    registration_token(&app, &headers, Scope::Organization(org))
}

#[derive(Deserialize)]
struct RepoPath {
    owner: String,
    repo: String,
}

async fn repo_registration_token(
    State(app): State<App>,
    Path(p): Path<RepoPath>,
    headers: HeaderMap,
) -> Reply<(StatusCode, Json<wire::TokenResponse>)> {
    registration_token(
        &app,
        &headers,
        Scope::Repository {
            owner: p.owner,
            repo: p.repo,
        },
    )
}

async fn enterprise_registration_token(
    State(app): State<App>,
    Path(enterprise): Path<String>,
    headers: HeaderMap,
) -> Reply<(StatusCode, Json<wire::TokenResponse>)> {
    registration_token(&app, &headers, Scope::Enterprise(enterprise))
}

async fn runner_registration(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply<Json<wire::RunnerRegistrationResponse>> {
    let registration = auth::remote_auth(&headers)?;
    let now = Instant::now();
    let scope = app.tokens(|t| t.registration_scope(registration, now))?;
    let request: wire::RunnerRegistrationRequest = serde_json::from_slice(&body).map_err(|e| {
        RestError::new(
            StatusCode::BAD_REQUEST,
            format!("Problems parsing JSON: {e}"),
        )
    })?;
    if request.runner_event != "register" {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "runner_event must be \"register\"",
        ));
    }
    let url = url::Url::parse(&request.url)
        .map_err(|e| RestError::new(StatusCode::BAD_REQUEST, format!("url is not a URL: {e}")))?;
    let requested = Scope::from_config_path(url.path()).ok_or_else(|| {
        RestError::new(StatusCode::BAD_REQUEST, "url is not a githubConfigUrl (https://host/org[/repo] or https://host/enterprises/name)")
    })?;
    if !requested.path().eq_ignore_ascii_case(&scope.path()) {
        // Permanent, so not 401/403 (clients retry those).
        return Err(RestError::not_found());
    }
    let tenant = app.state(|s, _| s.tenant(&scope));
    let ttl = app.opts().admin_token_ttl;
    let token = app
        .tokens(|t| t.issue_admin_token(tenant, &scope, now, unix_now(), ttl))
        .map_err(|e| RestError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(wire::RunnerRegistrationResponse {
        url: app.actions_url(&headers, tenant),
        token,
    }))
}
