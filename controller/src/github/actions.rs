//! The scale-set service client (PROTOCOL.md section 3): runner groups,
//! scale sets, JIT configs, runners and message sessions. The message queue
//! itself (poll, acknowledge, acquire) is in [`queue`](super::queue).
//!
//! Every call goes to `<actions url>/<path>?api-version=6.0-preview` with the
//! admin token from [`GitHubAuth`], through the shared [`Transport`] and the
//! retry policy. A 401 drops the cached admin token so the next call
//! connects again.

use std::sync::Arc;

use http::{HeaderValue, Method, Request};
use octocrab::OctoBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::{Credentials, GitHubAuth};
use super::config::GitHubConfig;
use super::error::Error;
use super::ratelimit::HostRateLimiter;
use super::retry::{self, RetryPolicy};
use super::secret::Secret;
use super::transport::{HttpResponse, Transport, TransportOptions};
use super::wire::{
    JitConfig, JitConfigRequest, Label, List, RunnerGroup, RunnerReference, RunnerScaleSet,
    RunnerScaleSetRequest, RunnerScaleSetSession, RunnerSetting, SessionRequest, strip_bom,
};

pub const API_VERSION: &str = "6.0-preview";

/// The runner group every organization has; ARC's `runnerGroup: default`.
pub const DEFAULT_RUNNER_GROUP_ID: i64 = 1;

const SCALE_SETS: &str = "_apis/runtime/runnerscalesets";
const AGENTS: &str = "_apis/distributedtask/pools/0/agents";

/// Everything needed to build a client besides the URL and credentials.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub transport: TransportOptions,
    pub retry: RetryPolicy,
    pub registration_retry: RetryPolicy,
    /// Share one limiter between all clients of a controller.
    pub rate_limiter: Arc<HostRateLimiter>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            transport: TransportOptions::default(),
            retry: RetryPolicy::default(),
            registration_retry: RetryPolicy::registration(),
            rate_limiter: Arc::new(HostRateLimiter::default()),
        }
    }
}

/// The client for one `githubConfigUrl`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ActionsClient {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) auth: GitHubAuth,
    pub(super) transport: Transport,
    pub(super) retry: RetryPolicy,
}

impl ActionsClient {
    /// Builds the transport (TLS, proxy) and the client. Makes no request:
    /// the first call connects.
    pub fn new(
        config: GitHubConfig,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let transport = Transport::new(options.transport, options.rate_limiter)?;
        Ok(Self::with_transport(
            config,
            credentials,
            transport,
            options.retry,
            options.registration_retry,
        ))
    }

    /// A client on an existing transport (to share its pool).
    pub fn with_transport(
        config: GitHubConfig,
        credentials: Credentials,
        transport: Transport,
        retry: RetryPolicy,
        registration_retry: RetryPolicy,
    ) -> Self {
        let auth = GitHubAuth::new(
            config,
            credentials,
            transport.clone(),
            retry,
            registration_retry,
        );
        Self {
            inner: Arc::new(Inner {
                auth,
                transport,
                retry,
            }),
        }
    }

    pub fn auth(&self) -> &GitHubAuth {
        &self.inner.auth
    }

    pub fn config(&self) -> &GitHubConfig {
        self.inner.auth.config()
    }

    /// The id of a runner group: 1 for `""` and `default` without asking,
    /// as ARC does, otherwise looked up by name.
    pub async fn resolve_runner_group_id(&self, name: &str) -> Result<i64, Error> {
        if name.is_empty() || name.eq_ignore_ascii_case("default") {
            return Ok(DEFAULT_RUNNER_GROUP_ID);
        }
        Ok(self.runner_group_by_name(name).await?.id)
    }

    pub async fn runner_group_by_name(&self, name: &str) -> Result<RunnerGroup, Error> {
        let operation = format!("look up runner group {name:?}");
        let list: List<RunnerGroup> = self
            .call(
                &operation,
                Method::GET,
                "_apis/runtime/runnergroups/",
                &[("groupName", name)],
                None::<&()>,
            )
            .await?;
        let mut groups = list.value.into_iter();
        match (groups.next(), groups.next()) {
            (Some(group), None) => Ok(group),
            (None, _) => Err(Error::protocol(
                &operation,
                "no runner group has this name; create it in GitHub or fix runnerGroup",
            )),
            (Some(_), Some(_)) => Err(Error::protocol(
                &operation,
                "more than one runner group has this name",
            )),
        }
    }

    /// `None` if the group has no scale set of that name.
    pub async fn scale_set_by_name(
        &self,
        runner_group_id: i64,
        name: &str,
    ) -> Result<Option<RunnerScaleSet>, Error> {
        let operation = format!("look up scale set {name:?} in runner group {runner_group_id}");
        let group = runner_group_id.to_string();
        let list: List<RunnerScaleSet> = self
            .call(
                &operation,
                Method::GET,
                SCALE_SETS,
                &[("runnerGroupId", &group), ("name", name)],
                None::<&()>,
            )
            .await?;
        let mut sets = list.value.into_iter();
        match (sets.next(), sets.next()) {
            (set, None) => Ok(set),
            (_, Some(_)) => Err(Error::protocol(
                &operation,
                "more than one scale set has this name",
            )),
        }
    }

    /// A deleted scale set is [`Error::ScaleSetNotFound`], whether the service
    /// names the exception or answers a bare 404.
    pub async fn scale_set(&self, id: i64) -> Result<RunnerScaleSet, Error> {
        let operation = format!("get scale set {id}");
        self.call(
            &operation,
            Method::GET,
            &format!("{SCALE_SETS}/{id}"),
            &[],
            None::<&()>,
        )
        .await
        .map_err(|e| match e {
            Error::Status {
                status: 404,
                message,
                operation,
            } => Error::ScaleSetNotFound { operation, message },
            other => other,
        })
    }

    /// Creates a scale set whose labels are its name plus `extra_labels`, with
    /// ephemeral runners and runner self-update disabled (the runner image
    /// pins the version).
    pub async fn create_scale_set(
        &self,
        name: &str,
        runner_group_id: i64,
        extra_labels: &[String],
    ) -> Result<RunnerScaleSet, Error> {
        let operation = format!("create scale set {name:?} in runner group {runner_group_id}");
        let labels = std::iter::once(name)
            .chain(extra_labels.iter().map(String::as_str))
            .map(Label::system)
            .collect();
        let body = RunnerScaleSetRequest {
            name: Some(name.to_owned()),
            runner_group_id: Some(runner_group_id),
            labels: Some(labels),
            runner_setting: Some(RunnerSetting {
                ephemeral: true,
                is_elastic: false,
                disable_update: true,
            }),
        };
        self.call(&operation, Method::POST, SCALE_SETS, &[], Some(&body))
            .await
    }

    /// PATCHes only the fields set in `patch`.
    pub async fn update_scale_set(
        &self,
        id: i64,
        patch: &RunnerScaleSetRequest,
    ) -> Result<RunnerScaleSet, Error> {
        let operation = format!("update scale set {id}");
        self.call(
            &operation,
            Method::PATCH,
            &format!("{SCALE_SETS}/{id}"),
            &[],
            Some(patch),
        )
        .await
    }

    pub async fn delete_scale_set(&self, id: i64) -> Result<(), Error> {
        let operation = format!("delete scale set {id}");
        self.call_no_content(
            &operation,
            Method::DELETE,
            &format!("{SCALE_SETS}/{id}"),
            None::<&()>,
        )
        .await
    }

    /// Registers a runner and returns its one-time JIT config.
    pub async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
        work_folder: &str,
    ) -> Result<JitConfig, Error> {
        let operation =
            format!("generate a JIT config for runner {runner_name:?} in scale set {scale_set_id}");
        let body = JitConfigRequest {
            name: runner_name.to_owned(),
            work_folder: work_folder.to_owned(),
        };
        let path = format!("{SCALE_SETS}/{scale_set_id}/generatejitconfig");
        let response = self
            .send(&operation, Method::POST, &path, &[], Some(&body), None)
            .await?;
        decode(&operation, &response, true)
    }

    /// `None` if no runner has this id.
    pub async fn runner(&self, runner_id: i64) -> Result<Option<RunnerReference>, Error> {
        let operation = format!("get runner {runner_id}");
        match self
            .call(
                &operation,
                Method::GET,
                &format!("{AGENTS}/{runner_id}"),
                &[],
                None::<&()>,
            )
            .await
        {
            Ok(runner) => Ok(Some(runner)),
            Err(Error::AgentNotFound { .. } | Error::Status { status: 404, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// `None` if no runner has this name.
    pub async fn runner_by_name(&self, name: &str) -> Result<Option<RunnerReference>, Error> {
        let operation = format!("look up runner {name:?}");
        let list: List<RunnerReference> = self
            .call(
                &operation,
                Method::GET,
                AGENTS,
                &[("agentName", name)],
                None::<&()>,
            )
            .await?;
        let mut runners = list.value.into_iter();
        match (runners.next(), runners.next()) {
            (runner, None) => Ok(runner),
            (_, Some(_)) => Err(Error::protocol(
                &operation,
                "more than one runner has this name",
            )),
        }
    }

    /// [`Error::JobStillRunning`] while the runner is busy.
    pub async fn remove_runner(&self, runner_id: i64) -> Result<(), Error> {
        let operation = format!("remove runner {runner_id}");
        self.call_no_content(
            &operation,
            Method::DELETE,
            &format!("{AGENTS}/{runner_id}"),
            None::<&()>,
        )
        .await
    }

    /// [`Error::SessionConflict`] if another session is active.
    pub async fn create_session(
        &self,
        scale_set_id: i64,
        owner: &str,
    ) -> Result<RunnerScaleSetSession, Error> {
        let operation =
            format!("create a message session for scale set {scale_set_id} as {owner:?}");
        let body = SessionRequest {
            owner_name: owner.to_owned(),
        };
        let path = format!("{SCALE_SETS}/{scale_set_id}/sessions");
        let response = self
            .send(&operation, Method::POST, &path, &[], Some(&body), None)
            .await?;
        decode(&operation, &response, true)
    }

    /// The same session with a new queue token; also how a restarted
    /// controller resumes the session it recorded.
    pub async fn refresh_session(
        &self,
        scale_set_id: i64,
        session_id: &str,
    ) -> Result<RunnerScaleSetSession, Error> {
        let operation = format!("refresh message session {session_id} of scale set {scale_set_id}");
        let path = format!("{SCALE_SETS}/{scale_set_id}/sessions/{session_id}");
        let response = self
            .send(&operation, Method::PATCH, &path, &[], None::<&()>, None)
            .await?;
        decode(&operation, &response, true)
    }

    pub async fn delete_session(&self, scale_set_id: i64, session_id: &str) -> Result<(), Error> {
        let operation = format!("delete message session {session_id} of scale set {scale_set_id}");
        let path = format!("{SCALE_SETS}/{scale_set_id}/sessions/{session_id}");
        self.call_no_content(&operation, Method::DELETE, &path, None::<&()>)
            .await
    }

    async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<T, Error> {
        let response = self
            .send(operation, method, path, query, body, None)
            .await?;
        decode(operation, &response, false)
    }

    async fn call_no_content<B: Serialize + ?Sized>(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), Error> {
        let response = self.send(operation, method, path, &[], body, None).await?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(Error::from_response(operation, &response))
        }
    }

    /// One call to the service with retries. `token` replaces the admin
    /// token (acquire jobs carries the queue token).
    pub(super) async fn send<B: Serialize + ?Sized>(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&B>,
        token: Option<&Secret>,
    ) -> Result<HttpResponse, Error> {
        let connection = self.inner.auth.actions_connection().await?;
        let url = service_url(&connection.url, path, query);
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::protocol(operation, format!("encoding the request failed: {e}")))?;
        let authorization = bearer(operation, token.unwrap_or(&connection.token))?;
        let (url, body, authorization) = (&url, &body, &authorization);
        let response = retry::run(&self.inner.retry, operation, || {
            let request = Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                .header(http::header::AUTHORIZATION, authorization.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(
                    body.clone()
                        .map(OctoBody::from)
                        .unwrap_or_else(OctoBody::empty),
                );
            async move {
                let request = request.map_err(|e| {
                    Error::protocol(operation, format!("building the request failed: {e}"))
                })?;
                self.inner.transport.send(operation, request).await
            }
        })
        .await?;
        if response.status == http::StatusCode::UNAUTHORIZED && token.is_none() {
            self.inner.auth.invalidate_actions_connection().await;
        }
        Ok(response)
    }
}

pub(super) fn bearer(operation: &str, token: &Secret) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| Error::protocol(operation, "the token is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Decodes a 2xx body or maps the error. `sensitive` bodies (sessions, JIT
/// configs) keep serde's quoting out of error messages.
pub(super) fn decode<T: DeserializeOwned>(
    operation: &str,
    response: &HttpResponse,
    sensitive: bool,
) -> Result<T, Error> {
    if !response.status.is_success() {
        return Err(Error::from_response(operation, response));
    }
    serde_json::from_slice(strip_bom(&response.body))
        .map_err(|e| Error::decode(operation, &e, sensitive))
}

/// `<actions url>/<path>?api-version=6.0-preview&<query>`. The Actions URL
/// may or may not end in `/`; `path` keeps its own trailing `/`.
pub fn service_url(base: &Url, path: &str, query: &[(&str, &str)]) -> Url {
    let joined = format!(
        "{}/{}",
        base.as_str()
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    let mut url = Url::parse(&joined).unwrap_or_else(|_| base.clone());
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("api-version", API_VERSION);
        for (key, value) in query {
            pairs.append_pair(key, value);
        }
    }
    url
}

#[cfg(test)]
mod tests;
