//! The controller's Kubernetes client: kube's default stack plus one layer
//! that rate-limits and counts every request, and refuses writes once the
//! process no longer leads (its [`Fence`] closed).
//!
//! The limit is client-go's token bucket (`qps` sustained, `burst` on top),
//! shared by every clone of the client: a controller reconciling hundreds of
//! scale sets must not flood the API server. Over the limit a request
//! waits; it never fails. Each request is counted in
//! [`Metrics::kube_request`] with the verb and resource the API server would
//! see, derived from the method and path by [`classify`].
//!
//! The fence is checked after the token wait, right before the request
//! goes out: a write queued behind the rate limit while the process was
//! paused (SIGSTOP, a frozen node) must not reach the API server when the
//! process wakes up after a standby took over. A refused write fails with
//! [`NotLeading`] (kube's `Error::Service`).

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{Method, Request};
use kube::client::ClientBuilder;
use tower::BoxError;

use crate::leader::Fence;
use crate::metrics::Metrics;

/// How fast the controller may talk to the API server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KubeClientOptions {
    /// Sustained requests per second; `0` (or less) means unlimited.
    pub qps: f32,
    /// Requests allowed at once above the sustained rate (at least 1 when
    /// `qps` is positive).
    pub burst: u32,
}

impl Default for KubeClientOptions {
    /// 50 requests per second with bursts of 100: what controller-runtime
    /// managers commonly configure, ten times client-go's 5/10 default that
    /// is too slow for hundreds of runner pods.
    fn default() -> Self {
        Self {
            qps: 50.0,
            burst: 100,
        }
    }
}

/// Why the Kubernetes client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    /// Neither the in-cluster environment nor a kubeconfig was usable.
    #[error(
        "no Kubernetes configuration found (neither in-cluster nor a kubeconfig; set KUBECONFIG): {0}"
    )]
    Infer(#[source] kube::config::InferConfigError),
    /// kube rejected the configuration (TLS, auth or proxy settings).
    #[error("cannot build the Kubernetes client from its configuration: {0}")]
    Build(#[source] kube::Error),
    /// `qps` and `burst` do not make a token bucket.
    #[error("invalid Kubernetes client rate limit (qps {qps}, burst {burst}): {reason}")]
    RateLimit {
        qps: f32,
        burst: u32,
        reason: &'static str,
    },
}

/// A write refused because the process no longer leads.
#[derive(Debug, thiserror::Error)]
#[error(
    "not sending {verb} {resource}: this process no longer holds the leader Lease (another replica may lead); it stops writing and exits"
)]
pub struct NotLeading {
    pub verb: &'static str,
    pub resource: String,
}

/// Whether a request must pass the fence: every write, except to Leases
/// (the election itself writes them while not leading).
pub fn fenced(kind: &RequestKind) -> bool {
    matches!(
        kind.verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) && kind.resource != "leases"
}

/// Builds the controller's client from `config`, rate-limited by `opts` and
/// counted in `metrics`; never fenced.
pub fn build(
    config: kube::Config,
    opts: &KubeClientOptions,
    metrics: Metrics,
) -> Result<kube::Client, KubeClientError> {
    build_fenced(config, opts, metrics, Fence::unfenced())
}

/// [`build`], refusing writes (see [`fenced`]) once `fence` closes.
pub fn build_fenced(
    config: kube::Config,
    opts: &KubeClientOptions,
    metrics: Metrics,
    fence: Fence,
) -> Result<kube::Client, KubeClientError> {
    let layer = RequestLayer {
        limiter: limiter(opts)?,
        metrics,
        fence,
    };
    Ok(ClientBuilder::try_from(config)
        .map_err(KubeClientError::Build)?
        .with_layer(&layer)
        .build())
}

/// [`build`] with the configuration kube infers: in-cluster when run in a
/// pod, else `$KUBECONFIG` or `~/.kube/config`.
pub async fn infer(
    opts: &KubeClientOptions,
    metrics: Metrics,
) -> Result<kube::Client, KubeClientError> {
    infer_fenced(opts, metrics, Fence::unfenced()).await
}

/// [`infer`], fenced as [`build_fenced`].
pub async fn infer_fenced(
    opts: &KubeClientOptions,
    metrics: Metrics,
    fence: Fence,
) -> Result<kube::Client, KubeClientError> {
    let config = kube::Config::infer()
        .await
        .map_err(KubeClientError::Infer)?;
    build_fenced(config, opts, metrics, fence)
}

/// The token bucket for `opts`, or `None` for unlimited.
fn limiter(
    opts: &KubeClientOptions,
) -> Result<Option<Arc<DefaultDirectRateLimiter>>, KubeClientError> {
    let invalid = |reason| KubeClientError::RateLimit {
        qps: opts.qps,
        burst: opts.burst,
        reason,
    };
    if opts.qps.is_nan() {
        return Err(invalid("qps is not a number"));
    }
    if opts.qps <= 0.0 || opts.qps.is_infinite() {
        return Ok(None);
    }
    let burst = NonZeroU32::new(opts.burst).ok_or_else(|| invalid("burst must be at least 1"))?;
    let period = Duration::try_from_secs_f64(1.0 / f64::from(opts.qps))
        .map_err(|_| invalid("qps is too small"))?;
    // A period under a nanosecond is as good as unlimited.
    let Some(quota) = Quota::with_period(period) else {
        return Ok(None);
    };
    Ok(Some(Arc::new(RateLimiter::direct(
        quota.allow_burst(burst),
    ))))
}

/// The tower layer that rate-limits and counts requests.
#[derive(Clone)]
struct RequestLayer {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    metrics: Metrics,
    fence: Fence,
}

impl<S> tower::Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            limiter: self.limiter.clone(),
            waiting: None,
            permitted: false,
            metrics: self.metrics.clone(),
            fence: self.fence.clone(),
        }
    }
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Waits for a token in `poll_ready`, not in `call`: kube's inner stack is
/// not `Clone`, so the wait cannot move into the response future. kube's
/// client puts a buffer in front of the stack, so callers queue there in
/// order while one request waits for its token, as in client-go.
struct RequestService<S> {
    inner: S,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    waiting: Option<Wait>,
    /// A token was taken for the next `call`.
    permitted: bool,
    metrics: Metrics,
    fence: Fence,
}

type Responding<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

impl<S, B> tower::Service<Request<B>> for RequestService<S>
where
    S: tower::Service<Request<B>>,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Responding<S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            if let Some(limiter) = &self.limiter {
                let waiting = self.waiting.get_or_insert_with(|| {
                    let limiter = Arc::clone(limiter);
                    Box::pin(async move { limiter.until_ready().await })
                });
                ready!(waiting.as_mut().poll(cx));
                self.waiting = None;
            }
            self.permitted = true;
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.permitted = false;
        let kind = classify(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        if fenced(&kind) && !self.fence.is_leading() {
            tracing::debug!(verb = kind.verb, resource = %kind.resource, "write refused: no longer leading");
            let refused = NotLeading {
                verb: kind.verb,
                resource: kind.resource,
            };
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        self.metrics.kube_request(kind.verb, &kind.resource);
        let response = self.inner.call(request);
        Box::pin(async move { response.await.map_err(Into::into) })
    }
}

/// What the API server would call a request: its verb and resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKind {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `proxy`; for paths outside `/api` and `/apis`
    /// resources (discovery, `/version`), the lower-case method.
    pub verb: &'static str,
    /// The plural resource, with its subresource after a slash
    /// (`pods/status`); empty for paths that name no resource.
    pub resource: String,
}

/// The verb and resource of a request to `path` (and `query`), as the API
/// server's request-info parser derives them.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> RequestKind {
    let non_resource = || RequestKind {
        verb: lower_case_method(method),
        resource: String::new(),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/api/<version>/...` or `/apis/<group>/<version>/...`, with something
    // after the version; shorter paths are discovery.
    let rest = match parts.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => rest,
        ["apis", _group, _version, rest @ ..] if !rest.is_empty() => rest,
        _ => return non_resource(),
    };

    // The deprecated `/watch/...` and `/proxy/...` forms put the verb first.
    let (mut verb, mut rest) = match rest {
        ["watch", after @ ..] if !after.is_empty() => ("watch", after),
        ["proxy", after @ ..] if !after.is_empty() => ("proxy", after),
        _ => (resource_verb(method), rest),
    };

    // `namespaces/<ns>/<resource>...` is `<resource>` in namespace `<ns>`;
    // `namespaces/<ns>`, `namespaces/<ns>/status` and `.../finalize` are the
    // namespace itself.
    if let ["namespaces", _namespace, next, ..] = rest
        && !matches!(*next, "status" | "finalize")
    {
        rest = &rest[2..];
    }

    // resource / name / subresource / ...
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, subresource, ..] if verb != "proxy" => {
            (*resource, Some(*name), Some(*subresource))
        }
        [resource, name, ..] => (*resource, Some(*name), None),
        [] => return non_resource(),
    };
    let has_name = name.is_some_and(|n| !n.is_empty());
    if !has_name {
        verb = match verb {
            "get" if query.is_some_and(watch_requested) => "watch",
            "get" => "list",
            "delete" => "deletecollection",
            other => other,
        };
    }
    RequestKind {
        verb,
        resource: match subresource {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        },
    }
}

fn resource_verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

fn lower_case_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        _ => "unknown",
    }
}

/// `watch=true` (or another spelling of true Go's `ParseBool` accepts).
fn watch_requested(query: &str) -> bool {
    query.split('&').any(|pair| {
        matches!(
            pair.split_once('=').unwrap_or((pair, "")),
            ("watch", "true" | "1" | "t" | "T" | "TRUE" | "True")
        )
    })
}

#[cfg(test)]
#[path = "kube_client_tests.rs"]
mod tests;
