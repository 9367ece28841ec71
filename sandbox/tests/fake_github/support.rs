//! Drives the fake the way a scale-set client does: a PAT or App token ->
//! registration token -> Actions service connection ([`Service`]) -> scale
//! set and session ([`Session`]). Helpers assert only what every caller
//! needs (the happy statuses of setup steps); scenarios assert the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use runway_sandbox::github::{EXAMPLE_APP_PRIVATE_KEY_PEM, FakeGitHub, FakeOptions};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

pub const PAT: &str = "ghp_integration";

/// The runner groups call every scenario can make without setup.
pub const DEFAULT_GROUP: &str = "_apis/runtime/runnergroups?groupName=Default";

pub fn client_trusting(ca_pem: Option<&str>) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots
                .add(cert.expect("the CA is PEM"))
                .expect("the CA is a certificate");
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client")
}

pub fn client() -> Client {
    client_trusting(None)
}

pub async fn start(opts: FakeOptions) -> FakeGitHub {
    let github = FakeGitHub::start_with(opts).await.expect("the fake starts");
    github.add_pat(PAT);
    github
}

/// Options with this long-poll timeout and the defaults otherwise.
pub fn long_poll(ms: u64) -> FakeOptions {
    FakeOptions {
        long_poll_timeout: millis(ms),
        ..Default::default()
    }
}

/// Status, headers and the JSON body (BOM stripped; empty body = null).
pub async fn send(request: RequestBuilder) -> (StatusCode, HeaderMap, Value) {
    let response = request.send().await.expect("a response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("a body");
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).expect("a JSON body")
    };
    (status, headers, body)
}

/// Status and JSON body, for when the headers do not matter.
pub async fn fetch(request: RequestBuilder) -> (StatusCode, Value) {
    let (status, _, body) = send(request).await;
    (status, body)
}

/// Asserts an Actions service failure: its status and the `typeName` of its
/// `{"typeName","message"}` body.
#[track_caller]
pub fn expect_exception(reply: (StatusCode, Value), status: StatusCode, type_name: &str) {
    let (actual, body) = reply;
    assert_eq!(
        (actual, body["typeName"].as_str()),
        (status, Some(type_name)),
        "{body}"
    );
}

pub fn scale_set_path(id: i64) -> String {
    format!("_apis/runtime/runnerscalesets/{id}")
}

pub fn session_path(scale_set_id: i64, session_id: &str) -> String {
    format!("_apis/runtime/runnerscalesets/{scale_set_id}/sessions/{session_id}")
}

pub fn agent_path(runner_id: i64) -> String {
    format!("_apis/distributedtask/pools/0/agents/{runner_id}")
}

/// A connection to one tenant of the Actions service.
pub struct Service {
    pub client: Client,
    pub url: String,
    pub token: String,
}

impl Service {
    /// `path` is relative to the Actions service URL (no leading slash).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let separator = if path.contains('?') { '&' } else { '?' };
        self.client
            .request(
                method,
                format!("{}{path}{separator}api-version=6.0-preview", self.url),
            )
            .bearer_auth(&self.token)
            .header("Content-Type", "application/json")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        fetch(request).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A PATCH without a body (a session refresh).
    pub async fn patch(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn create_scale_set(&self, name: &str) -> i64 {
        let body =
            json!({"name": name, "runnerGroupId": 1, "RunnerSetting": {"disableUpdate": true}});
        let (status, created) = self.post("_apis/runtime/runnerscalesets", body).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        created["id"].as_i64().expect("an id")
    }

    pub async fn create_session(&self, scale_set_id: i64) -> Session {
        let path = format!("_apis/runtime/runnerscalesets/{scale_set_id}/sessions");
        let (status, session) = self.post(&path, json!({"ownerName": "test"})).await;
        assert_eq!(status, StatusCode::OK, "{session}");
        Session::from_json(&self.client, &session)
    }
}

/// A fake started with `opts`, connected for `my-org`, with scale set `arm`
/// (its id is the third value) and a session on it.
pub async fn session_for(opts: FakeOptions) -> (FakeGitHub, Service, i64, Session) {
    let github = start(opts).await;
    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    (github, service, id, session)
}

pub struct Session {
    pub client: Client,
    pub id: String,
    pub scale_set_id: i64,
    pub queue_url: String,
    pub queue_token: String,
}

impl Session {
    pub fn from_json(client: &Client, session: &Value) -> Session {
        Session {
            client: client.clone(),
            id: session["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
            scale_set_id: session["runnerScaleSet"]["id"]
                .as_i64()
                .expect("runnerScaleSet.id"),
            queue_url: session["messageQueueUrl"]
                .as_str()
                .expect("messageQueueUrl")
                .to_string(),
            queue_token: session["messageQueueAccessToken"]
                .as_str()
                .expect("messageQueueAccessToken")
                .to_string(),
        }
    }

    /// One poll: 200 with the message, or 202 / an error with its body.
    pub async fn poll(&self, last_message_id: i64) -> (StatusCode, Value) {
        let mut url = self.queue_url.clone();
        if last_message_id > 0 {
            url = format!("{url}?lastMessageId={last_message_id}");
        }
        let request = self
            .client
            .get(url)
            .bearer_auth(&self.queue_token)
            .header("Accept", "application/json; api-version=6.0-preview")
            .header("X-ScaleSetMaxCapacity", "10");
        fetch(request).await
    }

    pub async fn ack(&self, message_id: i64) -> StatusCode {
        let request = self
            .client
            .delete(format!("{}/{message_id}", self.queue_url))
            .bearer_auth(&self.queue_token);
        send(request).await.0
    }

    pub async fn acquire(&self, service: &Service, ids: &[i64]) -> (StatusCode, Value) {
        let url = format!(
            "{}_apis/runtime/runnerscalesets/{}/acquirejobs?api-version=6.0-preview",
            service.url, self.scale_set_id
        );
        let request = self
            .client
            .post(url)
            .bearer_auth(&self.queue_token)
            .body(json!(ids).to_string());
        fetch(request).await
    }

    /// Polls and acknowledges until `done` holds for the events seen so far,
    /// or the deadline passes. Returns every job message seen.
    pub async fn events_until(
        &self,
        deadline: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let end = Instant::now() + deadline;
        let mut seen = Vec::new();
        while !done(&seen) {
            assert!(Instant::now() < end, "gave up waiting; saw {seen:?}");
            let (status, message) = self.poll(0).await;
            if status == StatusCode::OK {
                seen.extend(job_messages(&message));
                assert_eq!(self.ack(message_id(&message)).await, StatusCode::NO_CONTENT);
            } else {
                assert_eq!(status, StatusCode::ACCEPTED, "{message}");
            }
        }
        seen
    }

    /// The job messages of the first message that has any (within 5 s).
    pub async fn first_events(&self) -> Vec<Value> {
        self.events_until(Duration::from_secs(5), |seen| !seen.is_empty())
            .await
    }

    /// Every job message up to the first of `message_type` (within 5 s), and
    /// that one.
    pub async fn events_through(&self, message_type: &str) -> (Vec<Value>, Value) {
        let is = |m: &Value| m["messageType"] == message_type;
        let events = self
            .events_until(Duration::from_secs(5), |seen| seen.iter().any(is))
            .await;
        let found = events.iter().find(|m| is(m)).cloned();
        (events, found.expect(message_type))
    }
}

pub fn message_id(message: &Value) -> i64 {
    message["messageId"].as_i64().expect("messageId")
}

/// The job messages of a message (its body is a JSON array in a string).
pub fn job_messages(message: &Value) -> Vec<Value> {
    assert_eq!(message["messageType"], "RunnerScaleSetJobMessages");
    let body = message["body"].as_str().expect("the body is a string");
    serde_json::from_str::<Vec<Value>>(body).expect("the body is a JSON array")
}

pub fn kinds(messages: &[Value]) -> Vec<(String, i64)> {
    messages
        .iter()
        .map(|m| {
            (
                m["messageType"].as_str().unwrap_or_default().to_string(),
                m["runnerRequestId"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

pub async fn registration_token(
    client: &Client,
    github: &FakeGitHub,
    path: &str,
    credential: &str,
) -> (StatusCode, Value) {
    let url = format!(
        "{}/{path}/actions/runners/registration-token",
        github.rest_url()
    );
    fetch(client.post(url).bearer_auth(credential)).await
}

pub async fn runner_registration(
    client: &Client,
    github: &FakeGitHub,
    token: &str,
    config_path: &str,
) -> (StatusCode, Value) {
    let body = json!({"url": github.config_url(config_path), "runner_event": "register"});
    let request = client
        .post(format!("{}/actions/runner-registration", github.rest_url()))
        .header("Authorization", format!("RemoteAuth {token}"))
        .body(body.to_string());
    fetch(request).await
}

/// PAT -> registration token -> Actions service connection for `my-org`.
pub async fn connect(github: &FakeGitHub) -> Service {
    connect_to(github, &client(), "orgs/my-org", "my-org").await
}

pub async fn connect_to(
    github: &FakeGitHub,
    client: &Client,
    rest_path: &str,
    config_path: &str,
) -> Service {
    let (status, registration) = registration_token(client, github, rest_path, PAT).await;
    assert_eq!(status, StatusCode::CREATED, "{registration}");
    let token = registration["token"].as_str().expect("token");
    let (status, connection) = runner_registration(client, github, token, config_path).await;
    assert_eq!(status, StatusCode::OK, "{connection}");
    Service {
        client: client.clone(),
        url: connection["url"].as_str().expect("url").to_string(),
        token: connection["token"].as_str().expect("token").to_string(),
    }
}

/// The fake's `/_control` API.
pub struct Control {
    pub client: Client,
    pub url: String,
}

impl Control {
    pub fn of(github: &FakeGitHub, client: &Client) -> Self {
        Self {
            client: client.clone(),
            url: format!("{}/_control", github.base_url()),
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        fetch(self.client.get(format!("{}/{path}", self.url))).await
    }

    /// A POST with `body` as JSON, or with no body at all.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.post(format!("{}/{path}", self.url));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        fetch(request).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        fetch(self.client.delete(format!("{}/{path}", self.url))).await
    }
}

pub fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

pub fn app_jwt(iss: &str, iat: i64, exp: i64) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(EXAMPLE_APP_PRIVATE_KEY_PEM.as_bytes())
        .expect("the example key");
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::encode(&header, &json!({"iss": iss, "iat": iat, "exp": exp}), &key)
        .expect("signed")
}

pub fn unix_now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
