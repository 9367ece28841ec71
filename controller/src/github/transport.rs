//! The one HTTP stack every GitHub request uses, octocrab's included.
//!
//! hyper-util's pooled client over hyper-rustls with the ring provider only,
//! trusting the webpki roots plus an optional extra CA (ARC's
//! `githubServerTLS`). Proxies come from `https_proxy`/`http_proxy`/
//! `no_proxy` (either case) or from ARC's `proxy` values, and are reached by
//! HTTP CONNECT tunnels. octocrab is built on the very same client (see
//! [`Transport::octocrab`]), so proxy, CA, pool and timeouts are shared.
//!
//! Every request waits for its host's rate-limit bucket, is bounded by the
//! client timeout (5 minutes: the message poll is held about 50 s), and is
//! logged as method, host and path only: queries and bodies may carry names
//! of runners or credentials, so they never reach a log line.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use hyper::body::Body;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use octocrab::service::middleware::base_uri::BaseUriLayer;
use octocrab::service::middleware::extra_headers::ExtraHeadersLayer;
use octocrab::{OctoBody, Octocrab};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::error::Error;
use super::ratelimit::HostRateLimiter;

/// Bodies above this are refused rather than buffered: no legitimate answer
/// of the scale-set service comes close.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Where the proxy settings come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyConfig {
    /// Connect directly.
    None,
    /// `https_proxy`, `http_proxy`, `all_proxy`, `no_proxy` (and their
    /// upper-case forms), read once when the transport is built.
    #[default]
    FromEnv,
    /// ARC's `proxy` values.
    Explicit(ProxySettings),
}

/// ARC's `proxy` value: `http.url`, `https.url`, `noProxy`. Credentials go in
/// the URL's user-info, percent-encoded (its `Debug` hides them).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    pub http_url: Option<String>,
    pub https_url: Option<String>,
    pub no_proxy: Vec<String>,
}

impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |url: &Option<String>| url.as_deref().map(without_user_info);
        f.debug_struct("ProxySettings")
            .field("http_url", &hidden(&self.http_url))
            .field("https_url", &hidden(&self.https_url))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// `scheme://***@host:port/` for a URL with user-info; others unchanged.
fn without_user_info(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// PEM bundle trusted in addition to the webpki roots.
    pub extra_root_ca_pem: Option<Vec<u8>>,
    pub proxy: ProxyConfig,
    /// Whole request, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub user_agent: String,
    /// Where to count each request by endpoint and status.
    pub metrics: Option<Metrics>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            extra_root_ca_pem: None,
            proxy: ProxyConfig::FromEnv,
            timeout: Duration::from_secs(5 * 60),
            connect_timeout: Duration::from_secs(30),
            user_agent: concat!("runway/", env!("CARGO_PKG_VERSION")).to_owned(),
            metrics: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("githubServerTLS: the certificate bundle is not valid PEM: {0}")]
    BadCaPem(String),
    #[error("githubServerTLS: the certificate bundle holds no certificate")]
    NoCaCertificate,
    #[error("githubServerTLS: certificate rejected: {0}")]
    BadCaCertificate(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error(
        "proxy {proxy} is not supported: only http:// proxies (HTTP CONNECT) are; \
         check proxy.http.url / proxy.https.url or https_proxy / http_proxy / all_proxy"
    )]
    UnsupportedProxy { proxy: String },
    /// The value is not quoted: it may hold proxy credentials.
    #[error("{setting} is not a usable proxy URL; expected http://[user:password@]host:port")]
    BadProxyUrl { setting: &'static str },
    #[error("user agent {0:?} is not a valid header value")]
    BadUserAgent(String),
    /// `url` accepts some hosts (`{`, `}`, `"`, backtick) that the HTTP
    /// stack refuses.
    #[error("githubConfigUrl: the REST API base {url} is not a URI the HTTP client accepts")]
    BadBaseUrl { url: String },
}

/// A response with its body read.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type DirectClient = Client<HttpsConnector<HttpConnector>, OctoBody>;
type TunnelClient = Client<HttpsConnector<Tunnel<HttpConnector>>, OctoBody>;

/// The two connector shapes; octocrab needs the concrete type, so this is an
/// enum rather than a boxed service.
#[derive(Clone)]
enum HttpClient {
    Direct(DirectClient),
    Tunneled(TunnelClient),
}

/// Cheap to clone; clones share pools and the rate limiter.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    tls: rustls::ClientConfig,
    direct: DirectClient,
    proxies: Matcher,
    tunnels: Mutex<HashMap<String, TunnelClient>>,
    limiter: Arc<HostRateLimiter>,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: HeaderValue,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("proxies", &self.inner.proxies)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub fn new(
        options: TransportOptions,
        limiter: Arc<HostRateLimiter>,
    ) -> Result<Self, TransportError> {
        let tls = tls_config(options.extra_root_ca_pem.as_deref())?;
        let proxies = match &options.proxy {
            ProxyConfig::None => Matcher::builder().build(),
            ProxyConfig::FromEnv => Matcher::from_env(),
            ProxyConfig::Explicit(settings) => {
                // The matcher silently ignores a URL it cannot parse; a typo
                // must not quietly mean "no proxy".
                for (setting, url, probe) in [
                    (
                        "proxy.http.url",
                        &settings.http_url,
                        "http://runway-probe.invalid/",
                    ),
                    (
                        "proxy.https.url",
                        &settings.https_url,
                        "https://runway-probe.invalid/",
                    ),
                ] {
                    let Some(url) = url.as_deref().filter(|u| !u.trim().is_empty()) else {
                        continue;
                    };
                    let alone = Matcher::builder().http(url).https(url).build();
                    if alone.intercept(&Uri::from_static(probe)).is_none() {
                        return Err(TransportError::BadProxyUrl { setting });
                    }
                }
                Matcher::builder()
                    .http(settings.http_url.clone().unwrap_or_default())
                    .https(settings.https_url.clone().unwrap_or_default())
                    .no(settings.no_proxy.join(","))
                    .build()
            }
        };
        // Refuse unusable proxies now rather than on the first request.
        for probe in [
            "http://runway-probe.invalid/",
            "https://runway-probe.invalid/",
        ] {
            if let Some(intercept) = proxies.intercept(&Uri::from_static(probe)) {
                check_proxy(intercept.uri())?;
            }
        }
        let user_agent = HeaderValue::from_str(&options.user_agent)
            .map_err(|_| TransportError::BadUserAgent(options.user_agent.clone()))?;
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http_connector(options.connect_timeout));
        let direct = Client::builder(TokioExecutor::new()).build(https);
        Ok(Self {
            inner: Arc::new(Inner {
                tls,
                direct,
                proxies,
                tunnels: Mutex::new(HashMap::new()),
                limiter,
                timeout: options.timeout,
                connect_timeout: options.connect_timeout,
                user_agent,
                metrics: options.metrics,
            }),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Waits for `uri`'s host bucket. For requests that do not go through
    /// [`Transport::send`] (octocrab's).
    pub(crate) async fn throttle(&self, uri: &Uri) {
        self.inner
            .limiter
            .acquire(uri.host().unwrap_or_default())
            .await;
    }

    /// Sends one request (no retries) and reads the whole response.
    pub(crate) async fn send(
        &self,
        operation: &str,
        mut request: Request<OctoBody>,
    ) -> Result<HttpResponse, Error> {
        self.throttle(request.uri()).await;
        let (client, uri) = self.route(request.uri()).map_err(Error::Setup)?;
        *request.uri_mut() = uri;
        request
            .headers_mut()
            .entry(http::header::USER_AGENT)
            .or_insert_with(|| self.inner.user_agent.clone());
        let method = request.method().clone();
        let host = request.uri().host().unwrap_or_default().to_owned();
        let path = request.uri().path().to_owned();
        let started = Instant::now();

        let exchange = async {
            let response = match &client {
                HttpClient::Direct(c) => c.request(request).await,
                HttpClient::Tunneled(c) => c.request(request).await,
            }
            .map_err(|e| transport_error(operation, &e))?;
            let (parts, body) = response.into_parts();
            let body = collect(body).await.map_err(|detail| Error::Transport {
                operation: operation.to_owned(),
                detail,
            })?;
            Ok(HttpResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let result = match tokio::time::timeout(self.inner.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                operation: operation.to_owned(),
                timeout: self.inner.timeout,
            }),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if let Some(metrics) = &self.inner.metrics {
            let status = result.as_ref().map_or(0, |r| r.status.as_u16());
            metrics.github_request(super::endpoint::endpoint(&method, &path), status);
        }
        match &result {
            Ok(response) => {
                tracing::debug!(%method, %host, %path, status = response.status.as_u16(), elapsed_ms, "GitHub request")
            }
            Err(error) => {
                tracing::debug!(%method, %host, %path, elapsed_ms, error = %error, "GitHub request failed")
            }
        }
        result
    }

    /// An octocrab instance for the REST API at `base`, on this transport's
    /// client for that host (direct or through the proxy). It sends no
    /// credentials of its own: callers put the `Authorization` header on each
    /// request, and call [`Transport::throttle`] first.
    pub(crate) fn octocrab(&self, base: &url::Url) -> Result<Octocrab, TransportError> {
        let base = http_uri(base)?;
        let (client, base) = self.route(&base)?;
        let headers = Arc::new(vec![
            (http::header::USER_AGENT, self.inner.user_agent.clone()),
            (
                http::header::ACCEPT,
                HeaderValue::from_static("application/vnd.github+json"),
            ),
        ]);
        // `build` on this path cannot fail (its error type is Infallible).
        macro_rules! on {
            ($client:expr) => {{
                let Ok(crab) = octocrab::OctocrabBuilder::new_empty()
                    .with_service($client)
                    .with_layer(&BaseUriLayer::new(base))
                    .with_layer(&ExtraHeadersLayer::new(headers))
                    .with_auth(octocrab::AuthState::None)
                    .build();
                crab
            }};
        }
        Ok(match client {
            HttpClient::Direct(c) => on!(c),
            HttpClient::Tunneled(c) => on!(c),
        })
    }

    /// The client for `uri`, and the URI to request through it.
    fn route(&self, uri: &Uri) -> Result<(HttpClient, Uri), TransportError> {
        let Some(intercept) = self.inner.proxies.intercept(uri) else {
            return Ok((HttpClient::Direct(self.inner.direct.clone()), uri.clone()));
        };
        let proxy = intercept.uri();
        check_proxy(proxy)?;
        let key = proxy.to_string();
        let mut tunnels = self.inner.tunnels.lock().unwrap_or_else(|e| e.into_inner());
        let client = tunnels.entry(key).or_insert_with(|| {
            let mut tunnel = Tunnel::new(proxy.clone(), http_connector(self.inner.connect_timeout));
            if let Some(auth) = intercept.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let https = HttpsConnectorBuilder::new()
                .with_tls_config(self.inner.tls.clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(tunnel);
            Client::builder(TokioExecutor::new()).build(https)
        });
        // The tunnel assumes port 443 when the URI names none; plain http
        // must say 80 explicitly.
        Ok((
            HttpClient::Tunneled(client.clone()),
            with_explicit_http_port(uri),
        ))
    }
}

/// `url` as an `http::Uri`, or a typed error naming it.
pub(crate) fn http_uri(url: &url::Url) -> Result<Uri, TransportError> {
    url.as_str()
        .parse()
        .map_err(|_| TransportError::BadBaseUrl {
            url: url.to_string(),
        })
}

fn http_connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector
}

fn check_proxy(proxy: &Uri) -> Result<(), TransportError> {
    match proxy.scheme_str() {
        Some("http") => Ok(()),
        _ => Err(TransportError::UnsupportedProxy {
            // The matcher keeps credentials apart from the URI.
            proxy: proxy.to_string(),
        }),
    }
}

fn with_explicit_http_port(uri: &Uri) -> Uri {
    let (Some("http"), None, Some(host)) = (uri.scheme_str(), uri.port(), uri.host()) else {
        return uri.clone();
    };
    let mut parts = uri.clone().into_parts();
    parts.authority = format!("{host}:80").parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// rustls with ring, webpki roots and the optional extra CA bundle.
pub(crate) fn tls_config(
    extra_root_ca_pem: Option<&[u8]>,
) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_root_ca_pem {
        let certificates = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TransportError::BadCaPem(e.to_string()))?;
        if certificates.is_empty() {
            return Err(TransportError::NoCaCertificate);
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| TransportError::BadCaCertificate(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Reads a whole body, refusing more than [`MAX_BODY_BYTES`].
pub(crate) async fn collect<B>(mut body: B) -> Result<Bytes, String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buffer = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| format!("reading the response body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > MAX_BODY_BYTES {
                return Err(format!("response body larger than {MAX_BODY_BYTES} bytes"));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// A transport failure with its whole cause chain ("client error (Connect):
/// tcp connect error: Connection refused"), which is what an operator needs.
pub(crate) fn transport_error(operation: &str, error: &(dyn std::error::Error + 'static)) -> Error {
    let mut detail = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = cause.source();
    }
    Error::Transport {
        operation: operation.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests;
