//! The HTTP side: what every handler shares ([`App`]), the router, and the
//! accept loop (plain TCP or TLS, HTTP/1.1 with keep-alive).
//!
//! The loop is hand-written rather than `axum::serve` for two reasons: TLS,
//! and faults that close a connection without answering. Each connection
//! carries a [`ConnectionControl`] in its requests' extensions; a fault
//! that drops the connection signals it, and the connection task drops the
//! connection (and with it the socket and the pending request).
//!
//! Request paths are normalized before routing: repeated slashes collapse and
//! a trailing slash is dropped, because real clients send both
//! (`<actions url>/` + `/_apis/...`, `runnergroups/?groupName=`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use super::FakeOptions;
use super::auth::TokenStore;
use super::faults::{Endpoint, Fault, FaultBook};
use super::state::{Settings, State};
use super::{actions, control, rest, runner_api, wire};

/// The path under which each tenant's Actions service lives.
pub const ACTIONS_PREFIX: &str = "/_services/pipelines";

pub struct Shared {
    opts: FakeOptions,
    base_url: String,
    started: Instant,
    state: Mutex<State>,
    tokens: Mutex<TokenStore>,
    faults: Mutex<FaultBook>,
    /// The state's revision, for long polls to wait on.
    changes: watch::Sender<u64>,
    bom: AtomicBool,
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct App(Arc<Shared>);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler never panics while holding a lock; if something did, the data
    // is still consistent enough for a fake.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl App {
    pub fn new(opts: FakeOptions, base_url: String) -> App {
        let now = Instant::now();
        let settings = Settings {
            requeue_after: opts.requeue_after,
            session_idle_timeout: opts.session_idle_timeout,
        };
        let state = State::new(settings, now, chrono::Utc::now(), rand::random());
        let secret: [u8; 32] = rand::random();
        let bom = AtomicBool::new(opts.bom);
        App(Arc::new(Shared {
            opts,
            base_url,
            started: now,
            state: Mutex::new(state),
            tokens: Mutex::new(TokenStore::new(secret.to_vec())),
            faults: Mutex::new(FaultBook::default()),
            changes: watch::Sender::new(0),
            bom,
        }))
    }

    pub fn opts(&self) -> &FakeOptions {
        &self.0.opts
    }

    pub fn base_url(&self) -> &str {
        &self.0.base_url
    }

    pub fn started(&self) -> Instant {
        self.0.started
    }

    /// Runs `f` on the state after applying whatever fell due, and wakes the
    /// long polls if that changed anything they wait for.
    pub fn state<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        let now = Instant::now();
        let (result, changed) = {
            let mut state = lock(&self.0.state);
            let before = state.revision();
            state.advance(now);
            let result = f(&mut state, now);
            let after = state.revision();
            (result, (after != before).then_some(after))
        };
        if let Some(revision) = changed {
            self.0.changes.send_replace(revision);
        }
        result
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    pub fn tokens<R>(&self, f: impl FnOnce(&mut TokenStore) -> R) -> R {
        f(&mut lock(&self.0.tokens))
    }

    pub fn faults<R>(&self, f: impl FnOnce(&mut FaultBook) -> R) -> R {
        f(&mut lock(&self.0.faults))
    }

    pub fn record_request(&self, endpoint: Endpoint) -> Option<Fault> {
        self.faults(|book| book.record(endpoint, Instant::now()))
    }

    pub fn bom(&self) -> bool {
        self.0.bom.load(Ordering::Relaxed)
    }

    pub fn set_bom(&self, on: bool) {
        self.0.bom.store(on, Ordering::Relaxed);
    }

    /// `scheme://host:port` for URLs handed to a client: the host the client
    /// addressed (so `localhost` stays `localhost`), else the bound address.
    pub fn origin(&self, headers: &HeaderMap) -> String {
        let scheme = if self.0.opts.tls { "https" } else { "http" };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
            });
        match host {
            Some(host) => format!("{scheme}://{host}"),
            None => self.0.base_url.clone(),
        }
    }

    /// The Actions service base URL of a tenant (ends in `/`).
    pub fn actions_url(&self, headers: &HeaderMap, tenant: u32) -> String {
        format!("{}{ACTIONS_PREFIX}/{tenant}/", self.origin(headers))
    }
}

/// Lets a handler close its own connection without a response.
#[derive(Clone, Default)]
pub struct ConnectionControl(Arc<Notify>);

impl ConnectionControl {
    pub fn drop_now(&self) {
        self.0.notify_one();
    }

    async fn dropped(&self) {
        self.0.notified().await;
    }
}

pub fn router(app: &App) -> Router {
    let github = Router::new()
        .merge(rest::routes(app))
        .merge(actions::routes(app))
        .layer(middleware::from_fn_with_state(app.clone(), byte_order_mark));
    Router::new()
        .merge(control::routes())
        .merge(runner_api::routes())
        .merge(github)
        .fallback(unmatched)
        .with_state(app.clone())
}

async fn unmatched(AxumState(app): AxumState<App>) -> Response {
    app.faults(FaultBook::record_unmatched);
    let body = wire::RestErrorBody {
        message: "Not Found",
        documentation_url: "https://docs.github.com/rest",
    };
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// Prefixes JSON responses with a UTF-8 byte-order mark when the option is on
/// (the real service sometimes does; clients must strip it).
async fn byte_order_mark(AxumState(app): AxumState<App>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !app.bom() || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut with_bom = Vec::with_capacity(bytes.len() + 3);
    with_bom.extend_from_slice(b"\xEF\xBB\xBF");
    with_bom.extend_from_slice(&bytes);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Response::from_parts(parts, Body::from(with_bom))
}

/// `path` with repeated slashes collapsed and no trailing slash, if that
/// differs from `path`.
pub fn normalized_path(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    (out != path).then_some(out)
}

fn normalize_uri(request: &mut hyper::Request<Incoming>) {
    let Some(path) = normalized_path(request.uri().path()) else {
        return;
    };
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = request.uri().clone().into_parts();
    let Ok(path_and_query) = PathAndQuery::try_from(path_and_query) else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// Accepts connections until `shutdown` changes or its sender is dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, router.clone(), tls.clone(), shutdown.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(%error, "fake GitHub: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

async fn connection(
    stream: TcpStream,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_connection(stream, router, shutdown).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => serve_connection(stream, router, shutdown).await,
            Err(error) => tracing::debug!(%error, "fake GitHub: TLS handshake failed"),
        },
    }
}

async fn serve_connection<I>(io: I, router: Router, mut shutdown: watch::Receiver<()>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let control = ConnectionControl::default();
    let per_request = control.clone();
    let service = TowerToHyperService::new(router);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        normalize_uri(&mut request);
        request.extensions_mut().insert(per_request.clone());
        service.call(request)
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "fake GitHub: connection ended with an error");
            }
        }
        // Dropping the connection future closes the socket unanswered.
        _ = control.dropped() => {}
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalized_path("/a//b/"), Some("/a/b".to_string()));
        assert_eq!(
            normalized_path("/x/_apis/runtime/runnergroups/"),
            Some("/x/_apis/runtime/runnergroups".to_string())
        );
        assert_eq!(normalized_path("//"), Some("/".to_string()));
        assert_eq!(normalized_path("/a/b"), None);
        assert_eq!(normalized_path("/"), None);
    }
}
