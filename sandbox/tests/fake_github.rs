//! The fake GitHub over real HTTP, driven the way a scale-set client drives
//! GitHub: PAT or App -> registration token -> Actions service -> scale
//! set, session, long poll, acquire, JIT runners; plus what goes wrong
//! (expired tokens, conflicts, faults). Times are milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use runway_sandbox::github::{
    EXAMPLE_APP_PRIVATE_KEY_PEM, Endpoint, FakeApp, FakeGitHub, FakeOptions, Fault, JobState,
    NewJob,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

const PAT: &str = "ghp_integration";

fn client_trusting(ca_pem: Option<&str>) -> Client {
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

fn client() -> Client {
    client_trusting(None)
}

async fn start(opts: FakeOptions) -> FakeGitHub {
    let github = FakeGitHub::start_with(opts).await.expect("the fake starts");
    github.add_pat(PAT);
    github
}

/// Status, headers and the JSON body (BOM stripped; empty body = null).
async fn send(request: RequestBuilder) -> (StatusCode, HeaderMap, Value) {
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

/// A connection to one tenant of the Actions service.
struct Service {
    client: Client,
    url: String,
    token: String,
}

impl Service {
    /// `path` is relative to the Actions service URL (no leading slash).
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let separator = if path.contains('?') { '&' } else { '?' };
        self.client
            .request(
                method,
                format!("{}{path}{separator}api-version=6.0-preview", self.url),
            )
            .bearer_auth(&self.token)
            .header("Content-Type", "application/json")
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let (status, _, body) = send(request).await;
        (status, body)
    }

    async fn create_scale_set(&self, name: &str) -> i64 {
        let body =
            json!({"name": name, "runnerGroupId": 1, "RunnerSetting": {"disableUpdate": true}});
        let (status, created) = self
            .call(Method::POST, "_apis/runtime/runnerscalesets", Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        created["id"].as_i64().expect("an id")
    }

    async fn create_session(&self, scale_set_id: i64) -> Session {
        let path = format!("_apis/runtime/runnerscalesets/{scale_set_id}/sessions");
        let (status, session) = self
            .call(Method::POST, &path, Some(json!({"ownerName": "test"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{session}");
        Session::from_json(&self.client, &session)
    }
}

struct Session {
    client: Client,
    id: String,
    scale_set_id: i64,
    queue_url: String,
    queue_token: String,
}

impl Session {
    fn from_json(client: &Client, session: &Value) -> Session {
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
    async fn poll(&self, last_message_id: i64) -> (StatusCode, Value) {
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
        let (status, _, body) = send(request).await;
        (status, body)
    }

    async fn ack(&self, message_id: i64) -> StatusCode {
        let request = self
            .client
            .delete(format!("{}/{message_id}", self.queue_url))
            .bearer_auth(&self.queue_token);
        send(request).await.0
    }

    async fn acquire(&self, service: &Service, ids: &[i64]) -> (StatusCode, Value) {
        let url = format!(
            "{}_apis/runtime/runnerscalesets/{}/acquirejobs?api-version=6.0-preview",
            service.url, self.scale_set_id
        );
        let request = self
            .client
            .post(url)
            .bearer_auth(&self.queue_token)
            .body(json!(ids).to_string());
        let (status, _, body) = send(request).await;
        (status, body)
    }

    /// Polls and acknowledges until `done` holds for the events seen so far,
    /// or the deadline passes. Returns every job message seen.
    async fn events_until(
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
                assert_eq!(
                    self.ack(message["messageId"].as_i64().expect("messageId"))
                        .await,
                    StatusCode::NO_CONTENT
                );
            } else {
                assert_eq!(status, StatusCode::ACCEPTED, "{message}");
            }
        }
        seen
    }
}

/// The job messages of a message (its body is a JSON array in a string).
fn job_messages(message: &Value) -> Vec<Value> {
    assert_eq!(message["messageType"], "RunnerScaleSetJobMessages");
    let body = message["body"].as_str().expect("the body is a string");
    serde_json::from_str::<Vec<Value>>(body).expect("the body is a JSON array")
}

fn kinds(messages: &[Value]) -> Vec<(String, i64)> {
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

async fn registration_token(
    client: &Client,
    github: &FakeGitHub,
    path: &str,
    credential: &str,
) -> (StatusCode, Value) {
    let url = format!(
        "{}/{path}/actions/runners/registration-token",
        github.rest_url()
    );
    let (status, _, body) = send(client.post(url).bearer_auth(credential)).await;
    (status, body)
}

async fn runner_registration(
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
    let (status, _, body) = send(request).await;
    (status, body)
}

/// PAT -> registration token -> Actions service connection for `my-org`.
async fn connect(github: &FakeGitHub) -> Service {
    connect_to(github, &client(), "orgs/my-org", "my-org").await
}

async fn connect_to(
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

fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

fn app_jwt(iss: &str, iat: i64, exp: i64) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(EXAMPLE_APP_PRIVATE_KEY_PEM.as_bytes())
        .expect("the example key");
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::encode(&header, &json!({"iss": iss, "iat": iat, "exp": exp}), &key)
        .expect("signed")
}

fn unix_now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pat_gets_registration_tokens_and_the_actions_service() {
    let github = start(FakeOptions::default()).await;
    let client = client();
    for path in ["orgs/my-org", "repos/my-org/my-repo", "enterprises/acme"] {
        let (status, body) = registration_token(&client, &github, path, PAT).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
        assert!(!body["token"].as_str().unwrap_or_default().is_empty());
        assert!(
            body["expires_at"]
                .as_str()
                .unwrap_or_default()
                .ends_with('Z')
        );
    }
    let (status, body) = registration_token(&client, &github, "orgs/my-org", "ghp_wrong").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Bad credentials"))
    );
    let (status, _, _) = send(client.post(format!(
        "{}/orgs/my-org/actions/runners/registration-token",
        github.rest_url()
    )))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no credentials at all");

    let (_, registration) = registration_token(&client, &github, "repos/my-org/my-repo", PAT).await;
    let token = registration["token"].as_str().expect("token");
    let (status, _) = runner_registration(&client, &github, "WRONG", "my-org/my-repo").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = runner_registration(&client, &github, token, "other-org").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a token for another scope");
    let (status, connection) =
        runner_registration(&client, &github, token, "my-org/my-repo/").await;
    assert_eq!(status, StatusCode::OK, "{connection}");
    let url = connection["url"].as_str().expect("url");
    assert!(
        url.starts_with(&github.base_url()) && url.ends_with('/'),
        "{url}"
    );
    let claims = jwt_claims(connection["token"].as_str().expect("token"));
    assert!(
        claims["exp"].as_i64().expect("exp") > unix_now() + 3000,
        "{claims}"
    );

    let service = Service {
        client: client.clone(),
        url: url.to_string(),
        token: connection["token"].as_str().unwrap_or_default().to_string(),
    };
    let (status, groups) = service
        .call(
            Method::GET,
            "_apis/runtime/runnergroups/?groupName=default",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        groups,
        json!({"count": 1, "value": [{"id": 1, "name": "Default", "size": 0, "isDefaultGroup": true}]})
    );
    let gpu = github.add_runner_group("gpu");
    let (_, groups) = service
        .call(
            Method::GET,
            "_apis/runtime/runnergroups/?groupName=gpu",
            None,
        )
        .await;
    assert_eq!(groups["value"][0]["id"].as_i64(), Some(gpu));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_jwts_are_verified_and_installation_tokens_expire() {
    let github = start(FakeOptions {
        installation_token_ttl: millis(400),
        ..Default::default()
    })
    .await;
    github.add_app(FakeApp::example());
    let client = client();
    let url = |installation: u64| {
        format!(
            "{}/app/installations/{installation}/access_tokens",
            github.rest_url()
        )
    };
    let now = unix_now();

    let (status, _, body) = send(client.post(url(2002)).bearer_auth(app_jwt(
        "1001",
        now - 60,
        now + 540,
    )))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let installation_token = body["token"].as_str().expect("token").to_string();
    assert!(body["expires_at"].is_string());
    let (status, _, _) = send(client.post(url(2002)).bearer_auth(app_jwt(
        "Iv1.example",
        now - 60,
        now + 540,
    )))
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the client id is an issuer too"
    );

    let (status, _, _) = send(client.post(url(2002)).bearer_auth(app_jwt(
        "4242",
        now - 60,
        now + 540,
    )))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong iss");
    let (status, _, _) = send(client.post(url(2002)).bearer_auth(app_jwt(
        "1001",
        now - 900,
        now - 300,
    )))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");
    let mut tampered = app_jwt("1001", now - 60, now + 540);
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _, _) = send(client.post(url(2002)).bearer_auth(tampered)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "bad signature");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"iss": "1001", "exp": now + 540}),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .expect("signed");
    let (status, _, _) = send(client.post(url(2002)).bearer_auth(hs256)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "not RS256");
    let (status, _, _) = send(client.post(url(9999)).bearer_auth(app_jwt(
        "1001",
        now - 60,
        now + 540,
    )))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not this app's installation");

    let (status, _) =
        registration_token(&client, &github, "orgs/my-org", &installation_token).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "an installation token gets registration tokens"
    );
    tokio::time::sleep(millis(450)).await;
    let (status, _) =
        registration_token(&client, &github, "orgs/my-org", &installation_token).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the installation token expired"
    );

    let (_, _, body) = send(client.post(url(2002)).bearer_auth(app_jwt(
        "1001",
        now - 60,
        now + 540,
    )))
    .await;
    let fresh = body["token"].as_str().expect("token").to_string();
    github.expire_installation_tokens();
    let (status, _) = registration_token(&client, &github, "orgs/my-org", &fresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired on demand");
    assert_eq!(github.request_count(Endpoint::InstallationToken), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_admin_tokens_get_401_on_actions_calls() {
    let github = start(FakeOptions {
        admin_token_ttl: millis(400),
        ..Default::default()
    })
    .await;
    let service = connect(&github).await;
    let (status, _) = service
        .call(
            Method::GET,
            "_apis/runtime/runnerscalesets?runnerGroupId=1&name=x",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(millis(450)).await;
    let (status, body) = service
        .call(
            Method::GET,
            "_apis/runtime/runnerscalesets?runnerGroupId=1&name=x",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["typeName"]
            .as_str()
            .unwrap_or_default()
            .ends_with("Exception"),
        "{body}"
    );
    let (status, _) = service
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let long = start(FakeOptions::default()).await;
    let service = connect(&long).await;
    long.expire_admin_tokens();
    let (status, _) = service
        .call(
            Method::GET,
            "_apis/runtime/runnergroups?groupName=Default",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired on demand");
    let fresh = connect(&long).await;
    let (status, _) = fresh
        .call(
            Method::GET,
            "_apis/runtime/runnergroups?groupName=Default",
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a new registration gets a working token"
    );
    let (status, _) = service
        .call(
            Method::GET,
            "_apis/runtime/runnergroups?groupName=Default",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_sets_are_created_read_updated_and_deleted() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    let (status, created) = service
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets",
            Some(json!({"name": "arm-builders", "runnerGroupId": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = created["id"].as_i64().expect("id");
    assert_eq!(
        created["labels"],
        json!([{"type": "System", "name": "arm-builders"}])
    );
    assert_eq!(created["runnerGroupName"], "Default");
    assert!(
        created["RunnerSetting"].is_object(),
        "capital RunnerSetting: {created}"
    );
    assert!(created.get("runnerSetting").is_none());
    assert_eq!(created["statistics"]["totalAvailableJobs"], 0);
    for key in ["createdOn", "runnerJitConfigUrl"] {
        assert!(created[key].is_string(), "{key}: {created}");
    }

    let (status, found) = service
        .call(
            Method::GET,
            "_apis/runtime/runnerscalesets?runnerGroupId=1&name=arm-builders",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (found["count"].as_i64(), found["value"][0]["id"].as_i64()),
        (Some(1), Some(id))
    );
    let (_, none) = service
        .call(
            Method::GET,
            "_apis/runtime/runnerscalesets?runnerGroupId=1&name=missing",
            None,
        )
        .await;
    assert_eq!(none, json!({"count": 0, "value": []}));
    let (status, duplicate) = service
        .call(
            Method::POST,
            "_apis/runtime/runnerscalesets",
            Some(json!({"name": "arm-builders"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{duplicate}");

    let patch = json!({"labels": [{"type": "System", "name": "arm-builders"}, {"type": "System", "name": "arm64"}]});
    let (status, updated) = service
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            Some(patch),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "arm-builders", "PATCH is partial");
    assert_eq!(updated["labels"][1]["name"], "arm64");
    assert_eq!(updated["RunnerSetting"], created["RunnerSetting"]);
    let (status, by_id) = service
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, &by_id["labels"]),
        (StatusCode::OK, &updated["labels"])
    );

    // Another scope is another tenant: it sees none of this.
    let other = connect_to(&github, &client(), "orgs/other-org", "other-org").await;
    let (status, body) = other
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["typeName"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("RunnerScaleSetNotFoundException")
        )
    );
    let foreign = Service {
        client: client(),
        url: other.url.clone(),
        token: service.token.clone(),
    };
    let (status, _) = foreign
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an admin token works only for its own tenant"
    );

    let (status, _) = service
        .call(
            Method::DELETE,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = service
        .call(
            Method::GET,
            &format!("_apis/runtime/runnerscalesets/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["typeName"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("RunnerScaleSetNotFoundException")
        )
    );

    let again = service.create_scale_set("x86").await;
    github.delete_scale_set(again);
    let (status, body) = service
        .call(
            Method::POST,
            &format!("_apis/runtime/runnerscalesets/{again}/sessions"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, body["typeName"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("RunnerScaleSetNotFoundException")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_per_scale_set() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    let (status, conflict) = service
        .call(
            Method::POST,
            &format!("_apis/runtime/runnerscalesets/{id}/sessions"),
            Some(json!({"ownerName": "b"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        conflict["typeName"],
        "RunnerScaleSetSessionConflictException"
    );
    assert!(conflict["message"].is_string());

    let path = format!("_apis/runtime/runnerscalesets/{id}/sessions/{}", session.id);
    let (status, refreshed) = service.call(Method::PATCH, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refreshed["sessionId"].as_str(), Some(session.id.as_str()));
    assert_ne!(
        refreshed["messageQueueAccessToken"].as_str(),
        Some(session.queue_token.as_str()),
        "a new queue token"
    );
    assert!(refreshed["statistics"].is_object());

    let (status, _) = service.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, expired) = service.call(Method::PATCH, &path, None).await;
    assert_eq!(
        (status, expired["typeName"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("RunnerScaleSetSessionExpiredException")
        )
    );
    let (status, _) = session.poll(0).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the deleted session's queue token is dead"
    );
    service.create_session(id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_202_after_the_timeout_and_200_as_soon_as_a_job_arrives() {
    let github = start(FakeOptions {
        long_poll_timeout: millis(300),
        ..Default::default()
    })
    .await;
    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    let started = Instant::now();
    let (status, body) = session.poll(0).await;
    let held = started.elapsed();
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    assert!(
        held >= millis(300) && held < Duration::from_secs(5),
        "held for {held:?}"
    );

    let slow = start(FakeOptions {
        long_poll_timeout: Duration::from_secs(20),
        ..Default::default()
    })
    .await;
    let service = connect(&slow).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    let started = Instant::now();
    let poll = tokio::spawn(async move { session.poll(0).await });
    tokio::time::sleep(millis(200)).await;
    let job = slow.queue_job(id, NewJob::default());
    let (status, message) = poll.await.expect("the poll task");
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered when the job arrived"
    );
    assert_eq!(
        kinds(&job_messages(&message)),
        vec![("JobAvailable".to_string(), job.runner_request_id)]
    );
    assert_eq!(
        slow.snapshot().sessions[0].max_capacity,
        Some(10),
        "X-ScaleSetMaxCapacity is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_redelivered_until_acknowledged() {
    let github = start(FakeOptions {
        long_poll_timeout: millis(100),
        ..Default::default()
    })
    .await;
    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    let first = github.queue_job(
        id,
        NewJob {
            display_name: "first".into(),
            ..Default::default()
        },
    );

    let (status, message) = session.poll(0).await;
    assert_eq!(status, StatusCode::OK);
    let message_id = message["messageId"].as_i64().expect("messageId");
    let items = job_messages(&message);
    assert_eq!(items[0]["jobDisplayName"], "first");
    assert_eq!(
        items[0]["runnerRequestId"].as_i64(),
        Some(first.runner_request_id)
    );
    assert_eq!(items[0]["jobId"].as_str(), Some(first.job_id.as_str()));
    assert!(
        items[0]["acquireJobUrl"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("runnerscalesets/{id}/acquirejobs"))
    );
    assert_eq!(message["statistics"]["totalAvailableJobs"], 1);

    let (status, again) = session.poll(0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (again["messageId"].as_i64(), &again["body"]),
        (Some(message_id), &message["body"]),
        "redelivered as is"
    );

    // lastMessageId says the client has it: the next poll moves on.
    let second = github.queue_job(id, NewJob::default());
    let (status, next) = session.poll(message_id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(next["messageId"].as_i64().expect("messageId") > message_id);
    assert_eq!(
        kinds(&job_messages(&next)),
        vec![("JobAvailable".to_string(), second.runner_request_id)]
    );

    assert_eq!(
        session
            .ack(next["messageId"].as_i64().expect("messageId"))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        session
            .ack(next["messageId"].as_i64().expect("messageId"))
            .await,
        StatusCode::NO_CONTENT,
        "acking twice is fine"
    );
    let (status, _) = session.poll(0).await;
    assert_eq!(status, StatusCode::ACCEPTED, "nothing left after the ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_fifty_job_messages_per_message() {
    let github = start(FakeOptions {
        long_poll_timeout: millis(100),
        ..Default::default()
    })
    .await;
    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    let queued: Vec<i64> = (0..120)
        .map(|_| github.queue_job(id, NewJob::default()).runner_request_id)
        .collect();
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    loop {
        let (status, message) = session.poll(0).await;
        if status == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert_eq!(message["statistics"]["totalAvailableJobs"], 120);
        let items = job_messages(&message);
        sizes.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|m| m["runnerRequestId"].as_i64().unwrap_or_default()),
        );
        session
            .ack(message["messageId"].as_i64().expect("messageId"))
            .await;
    }
    assert_eq!(sizes, vec![50, 50, 20]);
    assert_eq!(seen, queued, "every job once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_a_jit_runner_that_cannot_be_removed_while_busy() {
    let github = start(FakeOptions {
        long_poll_timeout: millis(100),
        ..Default::default()
    })
    .await;
    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;

    let jit_path = format!("_apis/runtime/runnerscalesets/{id}/generatejitconfig");
    let (status, jit) = service
        .call(
            Method::POST,
            &jit_path,
            Some(json!({"name": "arm-runner-1", "workFolder": "_work"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{jit}");
    let runner_id = jit["runner"]["id"].as_i64().expect("runner id");
    assert_eq!(
        jit["runner"],
        json!({"id": runner_id, "name": "arm-runner-1", "runnerScaleSetId": id})
    );
    let files: Value = serde_json::from_slice(
        &STANDARD
            .decode(jit["encodedJITConfig"].as_str().expect("a string"))
            .expect("base64"),
    )
    .expect("JSON");
    let runner_file: Value = serde_json::from_slice(
        &STANDARD
            .decode(files[".runner"].as_str().expect(".runner"))
            .expect("base64"),
    )
    .expect("JSON");
    assert_eq!(
        (
            runner_file["AgentId"].as_i64(),
            runner_file["AgentName"].as_str()
        ),
        (Some(runner_id), Some("arm-runner-1"))
    );
    let (status, taken) = service
        .call(
            Method::POST,
            &jit_path,
            Some(json!({"name": "ARM-runner-1", "workFolder": "_work"})),
        )
        .await;
    assert_eq!(
        (status, taken["typeName"].as_str()),
        (StatusCode::CONFLICT, Some("AgentExistsException"))
    );

    let (status, by_name) = service
        .call(
            Method::GET,
            "_apis/distributedtask/pools/0/agents?agentName=arm-runner-1",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        by_name,
        json!({"count": 1, "value": [{"id": runner_id, "name": "arm-runner-1", "runnerScaleSetId": id}]})
    );

    let job = github.queue_job(id, NewJob::default());
    assert!(
        github
            .start_job(job.runner_request_id, "arm-runner-1")
            .is_err(),
        "not acquired yet"
    );
    session
        .events_until(Duration::from_secs(5), |seen| !seen.is_empty())
        .await;
    let (status, acquired) = session
        .acquire(&service, &[job.runner_request_id, 424242])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        acquired,
        json!({"count": 1, "value": [job.runner_request_id]})
    );

    github
        .start_job(job.runner_request_id, "arm-runner-1")
        .expect("started");
    let events = session
        .events_until(Duration::from_secs(5), |seen| {
            seen.iter().any(|m| m["messageType"] == "JobStarted")
        })
        .await;
    let started = events
        .iter()
        .find(|m| m["messageType"] == "JobStarted")
        .expect("JobStarted");
    assert_eq!(
        (started["runnerId"].as_i64(), started["runnerName"].as_str()),
        (Some(runner_id), Some("arm-runner-1"))
    );
    assert_eq!(kinds(&events)[0].0, "JobAssigned");

    let agent = format!("_apis/distributedtask/pools/0/agents/{runner_id}");
    let (status, busy) = service.call(Method::DELETE, &agent, None).await;
    assert_eq!(
        (status, busy["typeName"].as_str()),
        (StatusCode::BAD_REQUEST, Some("JobStillRunningException"))
    );
    let stats = github.snapshot().scale_sets[0].statistics;
    assert_eq!(
        (
            stats.total_running_jobs,
            stats.total_busy_runners,
            stats.total_assigned_jobs
        ),
        (1, 1, 1)
    );

    github
        .complete_job(job.runner_request_id, "succeeded")
        .expect("completed");
    let events = session
        .events_until(Duration::from_secs(5), |seen| {
            seen.iter().any(|m| m["messageType"] == "JobCompleted")
        })
        .await;
    let completed = events
        .iter()
        .find(|m| m["messageType"] == "JobCompleted")
        .expect("JobCompleted");
    assert_eq!(
        (
            completed["result"].as_str(),
            completed["runnerId"].as_i64(),
            completed["runnerName"].as_str()
        ),
        (Some("succeeded"), Some(runner_id), Some("arm-runner-1"))
    );
    let (status, gone) = service.call(Method::DELETE, &agent, None).await;
    assert_eq!(
        (status, gone["typeName"].as_str()),
        (StatusCode::NOT_FOUND, Some("AgentNotFoundException")),
        "removed by the service"
    );
    let (status, _) = service.call(Method::GET, &agent, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let snapshot = github.snapshot();
    assert_eq!(
        snapshot.job(job.runner_request_id).map(|j| j.state),
        Some(JobState::Completed)
    );
    assert!(snapshot.runners.is_empty());

    // An idle runner is removed on request.
    let (_, idle) = service
        .call(
            Method::POST,
            &jit_path,
            Some(json!({"name": "idle", "workFolder": "_work"})),
        )
        .await;
    let idle_id = idle["runner"]["id"].as_i64().expect("id");
    let (status, got) = service
        .call(
            Method::GET,
            &format!("_apis/distributedtask/pools/0/agents/{idle_id}"),
            None,
        )
        .await;
    assert_eq!(
        (status, got["name"].as_str()),
        (StatusCode::OK, Some("idle"))
    );
    let (status, _) = service
        .call(
            Method::DELETE,
            &format!("_apis/distributedtask/pools/0/agents/{idle_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquired_job_nobody_starts_is_requeued_three_times() {
    let github = start(FakeOptions {
        long_poll_timeout: millis(500),
        requeue_after: millis(150),
        ..Default::default()
    })
    .await;
    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    let job = github.queue_job(id, NewJob::default());
    session
        .events_until(Duration::from_secs(5), |seen| !seen.is_empty())
        .await;
    session.acquire(&service, &[job.runner_request_id]).await;
    let acquired_at = Instant::now();

    let is_final = |seen: &[Value]| {
        seen.iter()
            .filter(|m| m["messageType"] == "JobCompleted")
            .count()
            == 4
    };
    let events = session
        .events_until(Duration::from_secs(10), is_final)
        .await;
    assert!(
        acquired_at.elapsed() >= millis(4 * 150),
        "requeues wait for requeue_after"
    );
    let id_of = job.runner_request_id;
    let expected: Vec<(String, i64)> = [
        "JobAssigned",
        "JobCompleted",
        "JobAssigned",
        "JobCompleted",
        "JobAssigned",
        "JobCompleted",
        "JobAssigned",
        "JobCompleted",
    ]
    .iter()
    .map(|k| (k.to_string(), id_of))
    .collect();
    assert_eq!(kinds(&events), expected);
    for completed in events.iter().filter(|m| m["messageType"] == "JobCompleted") {
        assert_eq!(completed["result"], "canceled");
    }
    let snapshot = github.snapshot();
    let view = snapshot.job(id_of).expect("the job");
    assert_eq!(
        (view.state, view.result.as_deref(), view.requeues),
        (JobState::Completed, Some("canceled"), 3)
    );
    assert_eq!(snapshot.scale_sets[0].statistics.total_assigned_jobs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_tokens_expire_and_a_refresh_issues_a_new_one() {
    let github = start(FakeOptions {
        long_poll_timeout: millis(100),
        queue_token_ttl: millis(300),
        ..Default::default()
    })
    .await;
    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let mut session = service.create_session(id).await;
    assert_eq!(session.poll(0).await.0, StatusCode::ACCEPTED);
    tokio::time::sleep(millis(350)).await;
    assert_eq!(session.poll(0).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        session.acquire(&service, &[1]).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (status, refreshed) = service
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{id}/sessions/{}", session.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    session = Session::from_json(&service.client, &refreshed);
    assert_eq!(session.poll(0).await.0, StatusCode::ACCEPTED);
    github.expire_queue_tokens();
    assert_eq!(
        session.poll(0).await.0,
        StatusCode::UNAUTHORIZED,
        "expired on demand"
    );

    let with_admin_token = Session {
        queue_token: service.token.clone(),
        ..Session::from_json(&service.client, &refreshed)
    };
    assert_eq!(
        with_admin_token.poll(0).await.0,
        StatusCode::UNAUTHORIZED,
        "the admin token is not a queue token"
    );

    github.expire_sessions();
    let (status, body) = service
        .call(
            Method::PATCH,
            &format!("_apis/runtime/runnerscalesets/{id}/sessions/{}", session.id),
            None,
        )
        .await;
    assert_eq!(
        (status, body["typeName"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("RunnerScaleSetSessionExpiredException")
        )
    );
    service.create_session(id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_answer_with_status_retry_after_and_type_name_the_given_number_of_times() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    github.inject_fault(
        Endpoint::ScaleSetByName,
        Fault {
            status: 503,
            type_name: Some("ServiceUnavailableException".into()),
            retry_after: Some(2),
            times: 2,
            ..Default::default()
        },
    );
    github.inject_fault(Endpoint::ScaleSetByName, Fault::default());
    let path = "_apis/runtime/runnerscalesets?runnerGroupId=1&name=arm";
    for _ in 0..2 {
        let (status, headers, body) = send(service.request(Method::GET, path)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("2")
        );
        assert_eq!(body["typeName"], "ServiceUnavailableException");
    }
    let (status, headers, body) = send(service.request(Method::GET, path)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(headers.get("retry-after").is_none());
    assert!(
        body.get("typeName").is_none() && body["message"].is_string(),
        "{body}"
    );
    let (status, _, _) = send(service.request(Method::GET, path)).await;
    assert_eq!(status, StatusCode::OK, "the faults are used up");
    assert_eq!(
        github.request_count(Endpoint::ScaleSetByName),
        4,
        "faulted requests count"
    );

    // A fault hits before authentication: even a request without a token gets it.
    github.inject_fault(
        Endpoint::RegistrationToken,
        Fault {
            status: 429,
            retry_after: Some(60),
            ..Default::default()
        },
    );
    let (status, _) = registration_token(&client(), &github, "orgs/my-org", "nobody").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_drop_connections_and_delay_requests() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    github.inject_fault(
        Endpoint::RunnerGroups,
        Fault {
            drop_connection: true,
            times: 2,
            ..Default::default()
        },
    );
    for _ in 0..2 {
        let error = service
            .request(Method::GET, "_apis/runtime/runnergroups?groupName=Default")
            .send()
            .await;
        let error = error.expect_err("the connection is closed without a response");
        assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    }
    let (status, _) = service
        .call(
            Method::GET,
            "_apis/runtime/runnergroups?groupName=Default",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "later requests are answered");

    github.inject_fault(
        Endpoint::RunnerGroups,
        Fault {
            status: 200,
            delay: millis(300),
            ..Default::default()
        },
    );
    let started = Instant::now();
    let (status, groups) = service
        .call(
            Method::GET,
            "_apis/runtime/runnergroups?groupName=Default",
            None,
        )
        .await;
    assert_eq!(
        (status, groups["count"].as_i64()),
        (StatusCode::OK, Some(1)),
        "a slow but real answer"
    );
    assert!(started.elapsed() >= millis(300));
    assert_eq!(github.request_count(Endpoint::RunnerGroups), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_response_can_start_with_a_byte_order_mark() {
    let github = start(FakeOptions {
        bom: true,
        ..Default::default()
    })
    .await;
    let client = client();
    let url = format!(
        "{}/orgs/my-org/actions/runners/registration-token",
        github.rest_url()
    );
    for credential in [PAT, "wrong"] {
        let response = client
            .post(&url)
            .bearer_auth(credential)
            .send()
            .await
            .expect("a response");
        let bytes = response.bytes().await.expect("a body");
        assert!(
            bytes.starts_with(b"\xEF\xBB\xBF{"),
            "{credential}: {bytes:?}"
        );
        serde_json::from_slice::<Value>(&bytes[3..]).expect("JSON after the BOM");
    }
    let service = connect(&github).await;
    let request = service.request(Method::GET, "_apis/runtime/runnergroups?groupName=Default");
    let bytes = request
        .send()
        .await
        .expect("a response")
        .bytes()
        .await
        .expect("a body");
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    github.set_bom(false);
    let bytes = client
        .post(&url)
        .bearer_auth(PAT)
        .send()
        .await
        .expect("a response")
        .bytes()
        .await
        .expect("a body");
    assert!(bytes.starts_with(b"{"), "{bytes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_and_timed_per_endpoint() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    let before = Instant::now();
    for _ in 0..5 {
        service
            .call(
                Method::GET,
                "_apis/distributedtask/pools/0/agents?agentName=nobody",
                None,
            )
            .await;
    }
    let (status, _, _) = send(client().get(format!("{}/no/such/route", github.base_url()))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(github.request_count(Endpoint::GetRunnerByName), 5);
    let times = github.request_times(Endpoint::GetRunnerByName);
    assert_eq!(times.len(), 5);
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[0] >= before);
    let counters = github.counters();
    assert_eq!(counters["GetRunnerByName"], 5);
    assert_eq!(
        (
            counters["RegistrationToken"],
            counters["RunnerRegistration"]
        ),
        (1, 1)
    );
    assert_eq!((counters["GetMessage"], counters["Unmatched"]), (0, 1));
    let (_, _, over_http) =
        send(client().get(format!("{}/_control/counters", github.base_url()))).await;
    assert_eq!(over_http["GetRunnerByName"], 5);
    let (_, _, timed) = send(client().get(format!(
        "{}/_control/requests/GetRunnerByName",
        github.base_url()
    )))
    .await;
    assert_eq!(timed["millis"].as_array().map(Vec::len), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_drives_the_fake_over_http() {
    let github = start(FakeOptions {
        long_poll_timeout: millis(100),
        ..Default::default()
    })
    .await;
    let client = client();
    let control = |path: &str| format!("{}/_control/{path}", github.base_url());
    let (status, _, _) = send(
        client
            .post(control("pats"))
            .body(json!({"token": "ghp_second"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = registration_token(&client, &github, "orgs/my-org", "ghp_second").await;
    assert_eq!(status, StatusCode::CREATED);

    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    let (status, _, queued) = send(
        client
            .post(control("jobs"))
            .body(json!({"scaleSetId": id, "displayName": "lint"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    let request_id = queued["runnerRequestId"].as_i64().expect("runnerRequestId");
    let events = session
        .events_until(Duration::from_secs(5), |seen| !seen.is_empty())
        .await;
    assert_eq!(events[0]["jobDisplayName"], "lint");
    session.acquire(&service, &[request_id]).await;
    service
        .call(
            Method::POST,
            &format!("_apis/runtime/runnerscalesets/{id}/generatejitconfig"),
            Some(json!({"name": "r1"})),
        )
        .await;
    let (status, _, _) = send(
        client
            .post(control(&format!("jobs/{request_id}/start")))
            .body(json!({"runnerName": "r1"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, error) = send(
        client
            .post(control(&format!("jobs/{request_id}/start")))
            .body(json!({"runnerName": "r1"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let (status, _, _) = send(
        client
            .post(control(&format!("jobs/{request_id}/complete")))
            .body(json!({"result": "failed"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let fault = json!({"endpoint": "RunnerGroups", "status": 502, "typeName": "BadGatewayException", "retryAfter": 1});
    let (status, _, _) = send(client.post(control("faults")).body(fault.to_string())).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = service
        .call(
            Method::GET,
            "_apis/runtime/runnergroups?groupName=Default",
            None,
        )
        .await;
    assert_eq!(
        (status, body["typeName"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("BadGatewayException"))
    );

    let (_, _, state) = send(client.get(control("state"))).await;
    let job = state["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["runnerRequestId"] == request_id))
        .expect("the job");
    assert_eq!(
        (job["state"].as_str(), job["result"].as_str()),
        (Some("completed"), Some("failed"))
    );
    assert_eq!(state["sessions"][0]["scaleSetId"], id);

    let (status, _, _) = send(client.post(control("expire/admin-tokens"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service
        .call(
            Method::GET,
            "_apis/runtime/runnergroups?groupName=Default",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(client.post(control("expire/nothing"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = send(client.delete(control(&format!("scalesets/{id}")))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(github.snapshot().scale_sets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_with_the_fakes_own_ca() {
    let github = start(FakeOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(github.base_url().starts_with("https://127.0.0.1:"));
    let ca = github.ca_cert_pem().expect("a CA when TLS is on");
    let trusting = client_trusting(Some(&ca));
    let service = connect_to(&github, &trusting, "orgs/my-org", "my-org").await;
    assert!(service.url.starts_with("https://"));
    let id = service.create_scale_set("arm").await;
    assert!(id > 0);
    let untrusting = client();
    let error = untrusting
        .post(format!(
            "{}/orgs/my-org/actions/runners/registration-token",
            github.rest_url()
        ))
        .bearer_auth(PAT)
        .send()
        .await;
    assert!(
        error.is_err(),
        "a client without the CA refuses the certificate"
    );
}
