//! Test helpers: a scripted HTTP server that records every request and
//! answers from a closure, and a GHES-shaped GitHub (REST under `/api/v3`,
//! the Actions service under `/svc/`) built on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::actions::{ActionsClient, ClientOptions};
use super::auth::Credentials;
use super::config::GitHubConfig;
use super::retry::RetryPolicy;
use super::secret::Secret;
use super::transport::{ProxyConfig, TransportOptions};

#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_bom(mut self) -> Self {
        self.body.splice(0..0, *b"\xEF\xBB\xBF");
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

pub(crate) struct ScriptedServer {
    pub base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl ScriptedServer {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = requests.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let handler = handler.clone();
                let log = log.clone();
                async move {
                    let recorded = Recorded {
                        method,
                        path: uri.path().to_owned(),
                        query: uri.query().unwrap_or_default().to_owned(),
                        headers,
                        body,
                    };
                    let reply = handler(&recorded);
                    log.lock().unwrap().push(recorded);
                    let mut response: Response =
                        (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
                    for (name, value) in reply.headers {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    response
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, requests }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    pub fn last(&self, method: &str, path: &str) -> Recorded {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("no {method} {path} in {:?}", self.paths()))
    }

    pub fn paths(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

/// An unsigned JWT with this `exp`; enough for a client that never verifies.
pub(crate) fn fake_jwt(exp: i64, tag: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&format!(r#"{{"exp":{exp},"tag":"{tag}"}}"#)),
        b64("signature")
    )
}

pub(crate) const PAT: &str = "ghp_testpersonalaccesstoken0123456789";
pub(crate) const REGISTRATION_TOKEN: &str = "AABF3JGZDX3P5PMEXLND6TS6FCWO6";

pub(crate) fn admin_token() -> String {
    fake_jwt(chrono::Utc::now().timestamp() + 3600, "admin")
}

/// The REST half of a GHES-shaped GitHub: registration token for `my-org`
/// and the runner-registration exchange pointing at `<this server>/svc/`. `None`
/// for any other path, so that callers can add the Actions service.
pub(crate) fn rest(request: &Recorded, admin: &str) -> Option<Reply> {
    let base = format!("http://{}", request.header("host"));
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/api/v3/orgs/my-org/actions/runners/registration-token") => Some(Reply::json(
            201,
            serde_json::json!({
                "token": REGISTRATION_TOKEN,
                "expires_at": (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339(),
            }),
        )),
        ("POST", "/api/v3/actions/runner-registration") => Some(Reply::json(
            201,
            serde_json::json!({"url": format!("{base}/svc/"), "token": admin}),
        )),
        _ => None,
    }
}

pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(50),
        attempts: 4,
    }
}

/// A client for `{base}/my-org` with a PAT, no proxy and millisecond retries.
pub(crate) fn client(base: &str) -> ActionsClient {
    let config = GitHubConfig::parse(&format!("{base}/my-org")).unwrap();
    let options = ClientOptions {
        transport: TransportOptions {
            proxy: ProxyConfig::None,
            timeout: Duration::from_secs(10),
            ..TransportOptions::default()
        },
        retry: fast_retry(),
        registration_retry: fast_retry(),
        ..ClientOptions::default()
    };
    ActionsClient::new(config, Credentials::Token(Secret::new(PAT)), options).unwrap()
}
