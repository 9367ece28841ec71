//! From credentials to an Actions service connection (PROTOCOL.md section 2),
//! on octocrab.
//!
//! App -> installation token (`POST /app/installations/{id}/access_tokens`
//! with our RS256 JWT), PAT or installation token -> registration token,
//! registration token -> Actions service URL and admin token
//! (`POST /actions/runner-registration`, `Authorization: RemoteAuth`). Each
//! token is cached and replaced once it expires within 60 s, or as soon as
//! the next step refuses it (401), since GitHub revokes tokens early;
//! concurrent callers wait for one refresh instead of each starting their own.
//!
//! octocrab runs on the shared [`Transport`]'s client, so proxy, extra CA and
//! pool apply; it holds no credentials itself (`AuthState::None`): every
//! request carries the `Authorization` it needs, set here. The JWT is ours,
//! not octocrab's, because octocrab 0.54 only puts numeric app ids in `iss`
//! and sets `exp` 10 minutes after `iat`, where PROTOCOL.md says 9.

mod credentials;

use std::future::Future;
use std::sync::OnceLock;

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use http::{HeaderValue, Method};
use octocrab::Octocrab;
use serde::Serialize;
use tokio::sync::Mutex;
use url::Url;

pub use credentials::{
    APP_ID_KEY, AppIdentifier, Credentials, CredentialsError, GitHubApp, INSTALLATION_ID_KEY,
    PRIVATE_KEY_KEY, TOKEN_KEY,
};

use super::config::GitHubConfig;
use super::error::Error;
use super::request::{bearer, decode};
use super::retry::{self, RetryPolicy};
use super::secret::Secret;
use super::transport::{self, HttpResponse, Transport};
use super::wire::{ActionsServiceConnection, ExpiringToken, RunnerRegistrationRequest};

/// Tokens are replaced once they expire within this margin.
const REFRESH_MARGIN: TimeDelta = TimeDelta::seconds(60);

/// Whether a token that expires at `expires_at` is still good to use at `now`.
pub fn is_fresh(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    expires_at - now > REFRESH_MARGIN
}

/// Where the scale-set service lives for this `githubConfigUrl`, and the admin
/// token its calls carry.
#[derive(Debug, Clone)]
pub struct ActionsConnection {
    pub url: Url,
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
}

/// The REST side of one `githubConfigUrl` + credentials pair.
pub struct GitHubAuth {
    config: GitHubConfig,
    credentials: Credentials,
    transport: Transport,
    retry: RetryPolicy,
    registration_retry: RetryPolicy,
    octocrab: OnceLock<Octocrab>,
    installation_token: TokenCache<Secret>,
    registration_token: TokenCache<Secret>,
    connection: TokenCache<ActionsConnection>,
}

impl std::fmt::Debug for GitHubAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubAuth")
            .field("config", &self.config)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl GitHubAuth {
    /// `retry` covers connection errors, 429 and 5xx on every call;
    /// `registration_retry` the 401/403 that `actions/runner-registration`
    /// answers transiently ([`RetryPolicy::registration`]).
    pub fn new(
        config: GitHubConfig,
        credentials: Credentials,
        transport: Transport,
        retry: RetryPolicy,
        registration_retry: RetryPolicy,
    ) -> Self {
        Self {
            config,
            credentials,
            transport,
            retry,
            registration_retry,
            octocrab: OnceLock::new(),
            installation_token: TokenCache::default(),
            registration_token: TokenCache::default(),
            connection: TokenCache::default(),
        }
    }

    pub fn config(&self) -> &GitHubConfig {
        &self.config
    }

    /// The token REST calls carry: the PAT, or a cached installation token.
    pub async fn access_token(&self) -> Result<Secret, Error> {
        let app = match &self.credentials {
            Credentials::Token(token) => return Ok(token.clone()),
            Credentials::App(app) => app,
        };
        self.installation_token
            .get(|| async {
                let operation = format!(
                    "create an installation token for GitHub App {} installation {}",
                    app.app, app.installation_id
                );
                let jwt = app.jwt(Utc::now().timestamp())?;
                let path = format!("/app/installations/{}/access_tokens", app.installation_id);
                let response = self
                    .post(
                        &operation,
                        &path,
                        bearer(&operation, &jwt)?,
                        None::<&()>,
                        &self.retry,
                    )
                    .await?;
                let token: ExpiringToken = decode(&operation, &response, true)?;
                Ok((token.token, token.expires_at))
            })
            .await
    }

    /// A runner registration token for the configured scope, cached.
    pub async fn registration_token(&self) -> Result<Secret, Error> {
        self.registration_token
            .get(|| async {
                let operation = format!(
                    "create a runner registration token for {}",
                    self.config.scope()
                );
                let access = self.access_token().await?;
                let path = self.config.scope().registration_token_path();
                let response = self
                    .post(
                        &operation,
                        &path,
                        bearer(&operation, &access)?,
                        None::<&()>,
                        &self.retry,
                    )
                    .await?;
                if response.status == http::StatusCode::UNAUTHORIZED {
                    // GitHub revokes installation tokens before their
                    // `expires_at` (app permissions changed, token deleted);
                    // kept, it would fail every call until then. 403 is a
                    // missing permission, which a new token does not fix.
                    self.installation_token.clear().await;
                }
                let token: ExpiringToken = decode(&operation, &response, true)?;
                Ok((token.token, token.expires_at))
            })
            .await
    }

    /// The Actions service URL and admin token, cached until 60 s before the
    /// admin token's `exp`.
    pub async fn actions_connection(&self) -> Result<ActionsConnection, Error> {
        self.connection
            .get(|| async {
                let connection = self.register().await?;
                let expires_at = connection.expires_at;
                Ok((connection, expires_at))
            })
            .await
    }

    /// Forgets the admin token (the service refused it), so that the next
    /// call connects again.
    pub async fn invalidate_actions_connection(&self) {
        self.connection.clear().await;
    }

    async fn register(&self) -> Result<ActionsConnection, Error> {
        let operation = format!(
            "connect to the Actions service for {}",
            self.config.config_url()
        );
        let registration = self.registration_token().await?;
        let mut authorization =
            HeaderValue::from_str(&format!("RemoteAuth {}", registration.expose())).map_err(
                |_| {
                    Error::protocol(
                        &operation,
                        "the registration token is not a valid header value",
                    )
                },
            )?;
        authorization.set_sensitive(true);
        let body = RunnerRegistrationRequest {
            url: self.config.config_url().to_owned(),
            runner_event: "register".to_owned(),
        };
        let mut attempt = 1;
        let response = loop {
            let response = self
                .post(
                    &operation,
                    "/actions/runner-registration",
                    authorization.clone(),
                    Some(&body),
                    &self.retry,
                )
                .await?;
            let status = response.status.as_u16();
            if !matches!(status, 401 | 403) || attempt >= self.registration_retry.attempts {
                break response;
            }
            let wait = self
                .registration_retry
                .backoff(attempt, rand::random::<f64>());
            tracing::warn!(
                status,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "{operation}: refused, retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        };
        if !response.status.is_success() {
            // The registration token may be the problem; do not reuse it.
            self.registration_token.clear().await;
        }
        let connection: ActionsServiceConnection = decode(&operation, &response, true)?;
        let url = connection.url.filter(|u| !u.is_empty());
        let token = connection.token.filter(|t| !t.is_empty());
        let (Some(url), Some(token)) = (url, token) else {
            return Err(Error::protocol(
                &operation,
                "the Actions service URL or admin token is empty",
            ));
        };
        let url = Url::parse(&url).map_err(|e| {
            Error::protocol(
                &operation,
                format!("the Actions service URL is not a URL: {e}"),
            )
        })?;
        let expires_at = jwt_expiry(&token).ok_or_else(|| {
            Error::protocol(&operation, "the admin token is not a JWT with an exp claim")
        })?;
        Ok(ActionsConnection {
            url,
            token,
            expires_at,
        })
    }

    /// One REST POST through octocrab (all three exchanges are POSTs), with
    /// rate limit, timeout and retries.
    async fn post<B: Serialize + ?Sized>(
        &self,
        operation: &str,
        path: &str,
        authorization: HeaderValue,
        body: Option<&B>,
        policy: &RetryPolicy,
    ) -> Result<HttpResponse, Error> {
        let crab = self.octocrab()?;
        let rest_host = transport::http_uri(self.config.rest_base())?;
        let (rest_host, authorization) = (&rest_host, &authorization);
        retry::run(policy, operation, move || async move {
            self.transport.throttle(rest_host).await;
            let builder = http::Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(http::header::AUTHORIZATION, authorization.clone());
            let request = crab.build_request(builder, body).map_err(|e| {
                Error::protocol(operation, format!("building the request failed: {e}"))
            })?;
            let exchange = async {
                let response = crab
                    .execute(request)
                    .await
                    .map_err(|e| transport::transport_error(operation, &e))?;
                let (parts, body) = response.into_parts();
                let body = transport::collect(body)
                    .await
                    .map_err(|detail| Error::Transport {
                        operation: operation.to_owned(),
                        detail,
                    })?;
                tracing::debug!(
                    method = "POST",
                    path,
                    status = parts.status.as_u16(),
                    "GitHub REST request"
                );
                Ok(HttpResponse {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                })
            };
            tokio::time::timeout(self.transport.timeout(), exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Timeout {
                        operation: operation.to_owned(),
                        timeout: self.transport.timeout(),
                    })
                })
        })
        .await
    }

    fn octocrab(&self) -> Result<&Octocrab, Error> {
        if let Some(crab) = self.octocrab.get() {
            return Ok(crab);
        }
        // Built on first use rather than in `new`, because octocrab spawns
        // its worker task and so needs the runtime.
        let crab = self.transport.octocrab(self.config.rest_base())?;
        Ok(self.octocrab.get_or_init(|| crab))
    }
}

/// The `exp` claim of a JWT, read without verifying the signature: the
/// client only needs to know when to fetch a new one.
pub fn jwt_expiry(token: &Secret) -> Option<DateTime<Utc>> {
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: i64,
    }
    let payload = token.expose().split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Claims = serde_json::from_slice(&json).ok()?;
    DateTime::from_timestamp(claims.exp, 0)
}

/// A token and its expiry behind an async lock, so that one caller refreshes
/// while the others wait for its result.
struct TokenCache<T> {
    slot: Mutex<Option<(T, DateTime<Utc>)>>,
}

impl<T> Default for TokenCache<T> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(None),
        }
    }
}

impl<T: Clone> TokenCache<T> {
    async fn get<F, Fut>(&self, refresh: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, DateTime<Utc>), Error>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((value, expires_at)) = slot.as_ref()
            && is_fresh(*expires_at, Utc::now())
        {
            return Ok(value.clone());
        }
        let (value, expires_at) = refresh().await?;
        *slot = Some((value.clone(), expires_at));
        Ok(value)
    }

    async fn clear(&self) {
        *self.slot.lock().await = None;
    }
}

#[cfg(test)]
mod tests;
