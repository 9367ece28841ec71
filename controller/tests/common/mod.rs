//! Setup shared by the contract tests: the real client (`runway-controller`'s
//! `github` module) against the real fake (`runway-sandbox`'s `FakeGitHub`)
//! over HTTP on 127.0.0.1.
//!
//! Every test starts its own fake, so tests share nothing. Times are
//! milliseconds: a 300 ms long poll, millisecond retries, a client rate limit
//! high enough that only the rate-limit test ever waits for it.
//!
//! [`scale_set`] holds the end-to-end harness: one `RunnerScaleSet` run by
//! `run_scale_set` against the sandbox's kube-apiserver and a fake.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod scale_set;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runway_controller::github::wire::{RunnerScaleSet, RunnerScaleSetSession};
use runway_controller::github::{
    ActionsClient, AppIdentifier, ClientOptions, Credentials, DEFAULT_RUNNER_GROUP_ID, Error,
    GitHubApp, GitHubConfig, HostRateLimiter, ProxyConfig, RateLimit, RateLimits, RetryPolicy,
    ScaleSetMessage, Secret, TransportOptions,
};
use runway_sandbox::github::{
    EXAMPLE_APP_PRIVATE_KEY_PEM, Endpoint, FakeApp, FakeGitHub, FakeOptions, Fault,
};

/// The PAT every fake accepts. Shaped like a real one, so that the client's
/// redaction of server text would recognise it too.
pub const PAT: &str = "ghp_runwayContractTestToken0123456789ab";

/// How long the fake holds a poll before answering 202.
pub const LONG_POLL: Duration = Duration::from_millis(300);

/// Milliseconds instead of PROTOCOL.md's 1 s to 30 s; four tries.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_millis(100),
        attempts: 4,
    }
}

/// Test client options: no proxy, a 10 s request timeout, fast retries, and
/// a rate limit no ordinary test reaches.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        transport: TransportOptions {
            proxy: ProxyConfig::None,
            timeout: Duration::from_secs(10),
            ..TransportOptions::default()
        },
        retry: fast_retry(),
        registration_retry: fast_retry(),
        rate_limiter: Arc::new(limiter(10_000, 10_000)),
    }
}

pub fn limiter(per_second: u32, burst: u32) -> HostRateLimiter {
    HostRateLimiter::new(RateLimits {
        default: RateLimit::new(per_second, burst).expect("non-zero limits"),
        per_host: BTreeMap::new(),
    })
}

/// Fake options with a short long poll; everything else as GitHub does it.
pub fn fake_options() -> FakeOptions {
    FakeOptions {
        long_poll_timeout: LONG_POLL,
        ..FakeOptions::default()
    }
}

/// A fake with [`fake_options`] that accepts [`PAT`].
pub async fn start_fake() -> FakeGitHub {
    start_fake_with(fake_options()).await
}

pub async fn start_fake_with(options: FakeOptions) -> FakeGitHub {
    let fake = FakeGitHub::start_with(options)
        .await
        .expect("the fake GitHub starts");
    fake.add_pat(PAT);
    fake
}

/// A client for `<fake>/<path>` (`my-org`, `my-org/repo`, `enterprises/e`).
pub fn client_with(
    fake: &FakeGitHub,
    path: &str,
    credentials: Credentials,
    options: ClientOptions,
) -> ActionsClient {
    let config = GitHubConfig::parse(&fake.config_url(path)).expect("the fake's config URL");
    ActionsClient::new(config, credentials, options).expect("the client builds")
}

/// A PAT client for `<fake>/<path>` with [`client_options`].
pub fn pat_client(fake: &FakeGitHub, path: &str) -> ActionsClient {
    client_with(fake, path, pat(), client_options())
}

pub fn pat() -> Credentials {
    Credentials::Token(Secret::new(PAT))
}

/// The credentials of [`FakeApp::example`] (register it with `add_app`).
pub fn example_app(identifier: AppIdentifier) -> Credentials {
    let example = FakeApp::example();
    let app = GitHubApp::new(
        identifier,
        example.installation_id,
        EXAMPLE_APP_PRIVATE_KEY_PEM.as_bytes(),
    )
    .expect("the example key is an RSA key");
    Credentials::App(app)
}

/// An error status for the next `times` requests to an endpoint.
pub fn fault(status: u16, times: u32) -> Fault {
    Fault {
        status,
        times,
        ..Fault::default()
    }
}

/// Creates a scale set in the default group with no extra labels.
pub async fn scale_set(client: &ActionsClient, name: &str) -> RunnerScaleSet {
    client
        .create_scale_set(name, DEFAULT_RUNNER_GROUP_ID, &[])
        .await
        .unwrap_or_else(|e| panic!("creating scale set {name}: {e}"))
}

/// A fake, a PAT client for `my-org`, and one scale set: where most tests
/// start.
pub struct Connected {
    pub fake: FakeGitHub,
    pub client: ActionsClient,
    pub set: RunnerScaleSet,
}

/// A fresh fake with a scale set named `name`.
pub async fn connected(name: &str) -> Connected {
    Connected::on(start_fake().await, name).await
}

impl Connected {
    /// On a fake the test started itself (other [`FakeOptions`]).
    pub async fn on(fake: FakeGitHub, name: &str) -> Self {
        let client = pat_client(&fake, "my-org");
        let set = scale_set(&client, name).await;
        Self { fake, client, set }
    }
}

/// [`Connected`] plus a message session owned by `runway-test`.
pub struct Listening {
    pub fake: FakeGitHub,
    pub client: ActionsClient,
    pub set: RunnerScaleSet,
    pub session: RunnerScaleSetSession,
}

/// A fresh fake with a scale set named `name` and a session on it.
pub async fn listening(name: &str) -> Listening {
    Listening::on(start_fake().await, name).await
}

impl Listening {
    pub async fn on(fake: FakeGitHub, name: &str) -> Self {
        let Connected { fake, client, set } = Connected::on(fake, name).await;
        let session = client
            .create_session(set.id, "runway-test")
            .await
            .unwrap_or_else(|e| panic!("creating a session for scale set {name}: {e}"));
        Self {
            fake,
            client,
            set,
            session,
        }
    }
}

/// Panics unless each endpoint saw exactly its count of requests.
pub fn assert_requests(fake: &FakeGitHub, expected: &[(Endpoint, u64)]) {
    for &(endpoint, count) in expected {
        assert_eq!(fake.request_count(endpoint), count, "{endpoint:?}");
    }
}

/// Panics unless `error` is the variant with this
/// [`metric_label`](Error::metric_label), or if it shows any of `secrets`.
pub fn assert_exception(error: &Error, label: &str, secrets: &Secrets) {
    assert_eq!(error.metric_label(), label, "{error:?}");
    secrets.assert_hidden_in(error);
}

/// Polls until a message arrives (each poll is held [`LONG_POLL`] at most),
/// failing after 5 s.
pub async fn next_message(
    client: &ActionsClient,
    scale_set_id: i64,
    session: &mut RunnerScaleSetSession,
    last_message_id: i64,
) -> ScaleSetMessage {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let polled = client
            .get_message(scale_set_id, session, last_message_id, 10)
            .await
            .unwrap_or_else(|e| panic!("polling scale set {scale_set_id}: {e}"));
        if let Some(message) = polled {
            return message;
        }
        assert!(
            Instant::now() < deadline,
            "no message for scale set {scale_set_id} after message {last_message_id}"
        );
    }
}

/// Polls, acknowledges and collects every message until `done` holds for the
/// job messages seen so far; fails after 5 s.
pub async fn messages_until(
    client: &ActionsClient,
    scale_set_id: i64,
    session: &mut RunnerScaleSetSession,
    last_message_id: &mut i64,
    done: impl Fn(&[ScaleSetMessage]) -> bool,
) -> Vec<ScaleSetMessage> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while !done(&seen) {
        assert!(Instant::now() < deadline, "gave up waiting; saw {seen:#?}");
        let polled = client
            .get_message(scale_set_id, session, *last_message_id, 10)
            .await
            .unwrap_or_else(|e| panic!("polling scale set {scale_set_id}: {e}"));
        if let Some(message) = polled {
            client
                .acknowledge_message(scale_set_id, session, message.message_id)
                .await
                .expect("acknowledge");
            *last_message_id = message.message_id;
            seen.push(message);
        }
    }
    seen
}

/// Every credential a test has seen, to prove that none of them reaches a
/// log line, an error message or a `Debug` dump.
#[derive(Default)]
pub struct Secrets {
    values: Vec<(&'static str, String)>,
}

impl Secrets {
    pub fn new() -> Self {
        let mut secrets = Self::default();
        secrets.add("PAT", PAT);
        secrets
    }

    /// The PAT plus the client's registration and admin tokens.
    pub async fn of(client: &ActionsClient) -> Self {
        let mut secrets = Self::new();
        secrets.add_client_tokens(client).await;
        secrets
    }

    /// [`Secrets::of`] plus the session's queue token.
    pub async fn of_session(client: &ActionsClient, session: &RunnerScaleSetSession) -> Self {
        let mut secrets = Self::of(client).await;
        secrets.add_session(session);
        secrets
    }

    pub fn add(&mut self, what: &'static str, value: impl Into<String>) {
        let value = value.into();
        assert!(!value.is_empty(), "an empty {what} proves nothing");
        if !self.values.iter().any(|(_, v)| *v == value) {
            self.values.push((what, value));
        }
    }

    pub fn add_secret(&mut self, what: &'static str, value: &Secret) {
        self.add(what, value.expose());
    }

    /// The registration token and the admin token the client holds (cached:
    /// this makes no request unless they are due).
    pub async fn add_client_tokens(&mut self, client: &ActionsClient) {
        let registration = client
            .auth()
            .registration_token()
            .await
            .expect("registration token");
        self.add_secret("registration token", &registration);
        let connection = client
            .auth()
            .actions_connection()
            .await
            .expect("Actions service connection");
        self.add_secret("admin token", &connection.token);
    }

    pub fn add_session(&mut self, session: &RunnerScaleSetSession) {
        self.add_secret("queue token", &session.message_queue_access_token);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Panics if any secret appears in `text`.
    pub fn assert_absent(&self, context: &str, text: &str) {
        for (what, value) in &self.values {
            assert!(
                !text.contains(value.as_str()),
                "the {what} leaked into {context}:\n{text}"
            );
        }
    }

    /// Panics if any secret appears in the error's `Display` or `Debug`.
    pub fn assert_hidden_in(&self, error: &Error) {
        self.assert_absent("an error", &format!("{error}\n{error:?}\n{error:#?}"));
    }
}

/// The RunnerScaleSet CRD, installed once per test process: the control
/// plane is shared by the whole process and CRDs are cluster-scoped.
pub async fn install_crd(client: &kube::Client) {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            runway_sandbox::apply_crd(client, &runway_controller::crd::crd())
                .await
                .expect("install the RunnerScaleSet CRD");
        })
        .await;
}

/// A scale set on `fake`'s organization whose credentials are in Secret
/// `secret`, with a plain runner container as its template.
pub fn scale_set_spec(
    fake: &FakeGitHub,
    secret: &str,
    min: i32,
    max: Option<i32>,
) -> runway_controller::crd::RunnerScaleSetSpec {
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    runway_controller::crd::RunnerScaleSetSpec {
        github_config_url: fake.config_url("my-org"),
        github_config_secret: secret.into(),
        runner_group: None,
        runner_scale_set_name: None,
        runner_scale_set_labels: Vec::new(),
        min_runners: Some(min),
        max_runners: max,
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "runner".into(),
                    image: Some("ghcr.io/actions/actions-runner:2.330.0".into()),
                    command: Some(vec!["/home/runner/run.sh".into()]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        },
        container_mode: None,
        proxy: None,
        github_server_tls: None,
        service_account_name: None,
        kube_actions: None,
    }
}
