//! The scale-set service client (PROTOCOL.md section 3): runner groups,
//! scale sets, JIT configs, runners and message sessions. The message queue
//! itself (poll, acknowledge, acquire) is in [`queue`](super::queue).
//!
//! Every call goes to `<actions url>/<path>?api-version=6.0-preview` with the
//! admin token from [`GitHubAuth`], by the one request path in
//! [`request`](super::request): the shared [`Transport`], the retry policy,
//! and a 401 drops the cached admin token so the next call connects again.

use std::sync::Arc;

use http::Method;
use url::Url;

use super::auth::{Credentials, GitHubAuth};
use super::config::GitHubConfig;
use super::error::Error;
use super::ratelimit::HostRateLimiter;
use super::retry::RetryPolicy;
use super::transport::{Transport, TransportOptions};
use super::wire::{
    JitConfig, JitConfigRequest, Label, List, RunnerGroup, RunnerReference, RunnerScaleSet,
    RunnerScaleSetRequest, RunnerScaleSetSession, RunnerSetting, SessionRequest,
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
        let list = self
            .call(&operation, Method::GET, "_apis/runtime/runnergroups/")
            .query(&[("groupName", name)])
            .fetch()
            .await?;
        at_most_one(&operation, list, "runner group")?.ok_or_else(|| {
            Error::protocol(
                &operation,
                "no runner group has this name; create it in GitHub or fix runnerGroup",
            )
        })
    }

    /// `None` if the group has no scale set of that name.
    pub async fn scale_set_by_name(
        &self,
        runner_group_id: i64,
        name: &str,
    ) -> Result<Option<RunnerScaleSet>, Error> {
        let operation = format!("look up scale set {name:?} in runner group {runner_group_id}");
        let group = runner_group_id.to_string();
        let list = self
            .call(&operation, Method::GET, SCALE_SETS)
            .query(&[("runnerGroupId", &group), ("name", name)])
            .fetch()
            .await?;
        at_most_one(&operation, list, "scale set")
    }

    /// A deleted scale set is [`Error::ScaleSetNotFound`], whether the service
    /// names the exception or answers a bare 404.
    pub async fn scale_set(&self, id: i64) -> Result<RunnerScaleSet, Error> {
        let operation = format!("get scale set {id}");
        self.call(&operation, Method::GET, format!("{SCALE_SETS}/{id}"))
            .fetch()
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
        self.call(&operation, Method::POST, SCALE_SETS)
            .json(&body)
            .fetch()
            .await
    }

    /// PATCHes only the fields set in `patch`.
    pub async fn update_scale_set(
        &self,
        id: i64,
        patch: &RunnerScaleSetRequest,
    ) -> Result<RunnerScaleSet, Error> {
        let operation = format!("update scale set {id}");
        self.call(&operation, Method::PATCH, format!("{SCALE_SETS}/{id}"))
            .json(patch)
            .fetch()
            .await
    }

    pub async fn delete_scale_set(&self, id: i64) -> Result<(), Error> {
        let operation = format!("delete scale set {id}");
        self.call(&operation, Method::DELETE, format!("{SCALE_SETS}/{id}"))
            .no_content()
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
        self.call(&operation, Method::POST, path)
            .json(&body)
            .sensitive()
            .fetch()
            .await
    }

    /// `None` if no runner has this id.
    pub async fn runner(&self, runner_id: i64) -> Result<Option<RunnerReference>, Error> {
        let operation = format!("get runner {runner_id}");
        match self
            .call(&operation, Method::GET, format!("{AGENTS}/{runner_id}"))
            .fetch()
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
        let list = self
            .call(&operation, Method::GET, AGENTS)
            .query(&[("agentName", name)])
            .fetch()
            .await?;
        at_most_one(&operation, list, "runner")
    }

    /// [`Error::JobStillRunning`] while the runner is busy.
    pub async fn remove_runner(&self, runner_id: i64) -> Result<(), Error> {
        let operation = format!("remove runner {runner_id}");
        self.call(&operation, Method::DELETE, format!("{AGENTS}/{runner_id}"))
            .no_content()
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
        self.call(&operation, Method::POST, path)
            .json(&body)
            .sensitive()
            .fetch()
            .await
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
        self.call(&operation, Method::PATCH, path)
            .sensitive()
            .fetch()
            .await
    }

    pub async fn delete_session(&self, scale_set_id: i64, session_id: &str) -> Result<(), Error> {
        let operation = format!("delete message session {session_id} of scale set {scale_set_id}");
        let path = format!("{SCALE_SETS}/{scale_set_id}/sessions/{session_id}");
        self.call(&operation, Method::DELETE, path)
            .no_content()
            .await
    }
}

/// The only item of a lookup by name, `None` if there is none; more than one
/// is a protocol error (names are unique within their scope).
fn at_most_one<T>(operation: &str, list: List<T>, what: &str) -> Result<Option<T>, Error> {
    let mut items = list.value.into_iter();
    match (items.next(), items.next()) {
        (item, None) => Ok(item),
        (_, Some(_)) => Err(Error::protocol(
            operation,
            format!("more than one {what} has this name"),
        )),
    }
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
