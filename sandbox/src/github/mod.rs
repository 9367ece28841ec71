//! A faithful fake of GitHub for Runway's tests: the REST endpoints a
//! scale-set client needs (App JWT -> installation token, registration
//! tokens, `actions/runner-registration`) and the Actions runner scale-set
//! service (scale sets, sessions, long-polled message queues, JIT configs,
//! runners), over real HTTP on 127.0.0.1, following PROTOCOL.md to the byte.
//!
//! It is GitHub Enterprise Server shaped: the githubConfigUrl
//! `http://127.0.0.1:PORT/my-org` has the REST base
//! `http://127.0.0.1:PORT/api/v3`. Tests drive what GitHub's users would do
//! (queue a job, a runner starts and completes it) and what goes wrong
//! (faults, expired tokens) through [`FakeGitHub`], or through the HTTP
//! control API under `/_control/` (see `control`).
//!
//! ```no_run
//! # async fn example() {
//! use runway_sandbox::github::{FakeGitHub, NewJob};
//! let github = FakeGitHub::start().await;
//! github.add_pat("ghp_test");
//! let config_url = github.config_url("my-org");
//! // ... the client under test creates scale set 1 and a session ...
//! let job = github.queue_job(1, NewJob::default());
//! # }
//! ```
//!
//! Module map: `state` (every decision, pure), `messages` (queue semantics
//! and message bodies), `auth` (tokens and JWTs), `faults` (fault injection
//! and counters), `rest`, `actions` and `control` (the routes), `runner_api`
//! (what the stand-in runner calls), `wire` (the JSON), `server` (accept
//! loop, TLS, router), `tls` (certificates).

mod actions;
mod auth;
mod control;
mod faults;
mod messages;
mod rest;
mod runner_api;
pub(crate) mod server;
mod state;
pub(crate) mod tls;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::{EXAMPLE_APP_PRIVATE_KEY_PEM, EXAMPLE_APP_PUBLIC_KEY_PEM, FakeApp};
pub use faults::{Endpoint, Fault};
pub use state::{
    JobReport, JobState, JobTimes, JobView, NewJob, RunnerSettings, RunnerView, ScaleSetView,
    SessionInfo, Snapshot, StateError, Statistics,
};

use server::App;

/// How the fake behaves. Times are configurable so that tests can use
/// milliseconds where GitHub uses minutes.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// How long a message poll is held before 202 (GitHub: about 50 s).
    pub long_poll_timeout: Duration,
    pub admin_token_ttl: Duration,
    pub queue_token_ttl: Duration,
    pub installation_token_ttl: Duration,
    /// An acquired job no runner starts within this is re-queued.
    pub requeue_after: Duration,
    /// Serve HTTPS with a certificate from the fake's own CA
    /// ([`FakeGitHub::ca_cert_pem`]).
    pub tls: bool,
    /// Prefix every JSON response with a UTF-8 byte-order mark.
    pub bom: bool,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// A session with no poll in flight for this long ends, and another
    /// listener may create one.
    pub session_idle_timeout: Duration,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            long_poll_timeout: Duration::from_secs(50),
            admin_token_ttl: Duration::from_secs(3600),
            queue_token_ttl: Duration::from_secs(3600),
            installation_token_ttl: Duration::from_secs(3600),
            requeue_after: Duration::from_secs(60),
            tls: false,
            bom: false,
            port: 0,
            session_idle_timeout: Duration::from_secs(5 * 60),
        }
    }
}

/// A job the fake queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub runner_request_id: i64,
    pub job_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("the fake GitHub could not listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// A running fake GitHub. Clones share one server; the server stops when the
/// last clone is dropped (or on [`FakeGitHub::shutdown`]).
///
/// The server's tasks run on the tokio runtime that called
/// [`FakeGitHub::start`]: in `#[tokio::test]`, use the multi-threaded flavour
/// or make sure the test awaits while the fake serves (a current-thread
/// runtime blocked in synchronous code serves nothing).
#[derive(Clone)]
pub struct FakeGitHub {
    inner: Arc<Running>,
}

impl std::fmt::Debug for FakeGitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGitHub")
            .field("base_url", &self.app().base_url())
            .finish_non_exhaustive()
    }
}

struct Running {
    app: App,
    addr: SocketAddr,
    ca_cert_pem: Option<String>,
    shutdown: watch::Sender<()>,
}

impl FakeGitHub {
    /// Starts with default options. Panics if it cannot bind 127.0.0.1:0.
    pub async fn start() -> FakeGitHub {
        match FakeGitHub::start_with(FakeOptions::default()).await {
            Ok(github) => github,
            Err(e) => panic!("starting the fake GitHub: {e}"),
        }
    }

    pub async fn start_with(opts: FakeOptions) -> Result<FakeGitHub, FakeError> {
        let port = opts.port;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| FakeError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| FakeError::Bind { port, source })?;
        let tls = if opts.tls {
            Some(tls::generate()?)
        } else {
            None
        };
        let scheme = if opts.tls { "https" } else { "http" };
        let app = App::new(opts, format!("{scheme}://{addr}"));
        let router = server::router(&app);
        let (shutdown, stopped) = watch::channel(());
        let ca_cert_pem = tls.as_ref().map(|t| t.ca_cert_pem.clone());
        tokio::spawn(server::serve(
            listener,
            router,
            tls.map(|t| t.acceptor),
            stopped,
        ));
        Ok(FakeGitHub {
            inner: Arc::new(Running {
                app,
                addr,
                ca_cert_pem,
                shutdown,
            }),
        })
    }

    fn app(&self) -> &App {
        &self.inner.app
    }

    /// `http://127.0.0.1:PORT` (`https` with TLS).
    pub fn base_url(&self) -> String {
        self.app().base_url().to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// A githubConfigUrl on this fake: `path` is `my-org`, `my-org/my-repo`
    /// or `enterprises/acme`.
    pub fn config_url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url(), path.trim_start_matches('/'))
    }

    /// `base_url/api/v3`, the REST base of every config URL on this fake.
    pub fn rest_url(&self) -> String {
        format!("{}/api/v3", self.base_url())
    }

    /// The fake's CA certificate (PEM) when it serves TLS.
    pub fn ca_cert_pem(&self) -> Option<String> {
        self.inner.ca_cert_pem.clone()
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(());
    }

    pub fn add_pat(&self, token: &str) {
        self.app().tokens(|t| t.add_pat(token));
    }

    /// Registers a GitHub App. A public key that does not parse is logged and
    /// makes every JWT of that app fail with 401.
    pub fn add_app(&self, app: FakeApp) {
        let app_id = app.app_id;
        if let Err(error) = self.app().tokens(|t| t.add_app(app)) {
            tracing::warn!(app_id, %error, "fake GitHub: app registered without a usable key");
        }
    }

    /// Adds a runner group (or returns the id of the one with this name).
    pub fn add_runner_group(&self, name: &str) -> i64 {
        self.app().state(|s, _| s.add_runner_group(name))
    }

    /// Queues a job for a scale set (JobAvailable). Panics if the scale set
    /// does not exist: that is a bug in the test; see [`FakeGitHub::try_queue_job`].
    pub fn queue_job(&self, scale_set_id: i64, job: NewJob) -> QueuedJob {
        match self.try_queue_job(scale_set_id, job) {
            Ok(queued) => queued,
            Err(e) => panic!("fake GitHub: cannot queue a job: {e}"),
        }
    }

    pub fn try_queue_job(&self, scale_set_id: i64, job: NewJob) -> Result<QueuedJob, FakeError> {
        let (runner_request_id, job_id) = self
            .app()
            .state(|s, now| s.queue_job(scale_set_id, job, now))?;
        Ok(QueuedJob {
            runner_request_id,
            job_id,
        })
    }

    /// The runner named `runner_name` (of the job's scale set, registered
    /// through a JIT config) starts an acquired job (JobStarted; the runner
    /// is busy).
    pub fn start_job(&self, runner_request_id: i64, runner_name: &str) -> Result<(), FakeError> {
        Ok(self
            .app()
            .state(|s, now| s.start_job(runner_request_id, runner_name, now))?)
    }

    /// The job ends with `result` (`succeeded`, `failed`, `canceled`, ...):
    /// JobCompleted, and the service removes its ephemeral runner.
    pub fn complete_job(&self, runner_request_id: i64, result: &str) -> Result<(), FakeError> {
        Ok(self
            .app()
            .state(|s, now| s.complete_job(runner_request_id, result, now))?)
    }

    /// What the runner that ran the job reported (the stand-in runner,
    /// through `/_runner/`), once it did: result, failed step, exit code
    /// and the output's last lines.
    pub fn job_report(&self, runner_request_id: i64) -> Option<JobReport> {
        self.app().state(|s, _| s.job_report(runner_request_id))
    }

    /// When the job was queued, started by a runner (JobStarted) and
    /// finished, on this machine's clock; None for an unknown id.
    pub fn job_times(&self, runner_request_id: i64) -> Option<JobTimes> {
        self.app().state(|s, _| s.job_times(runner_request_id))
    }

    /// Queues a message written by hand as the next message of the scale
    /// set: the envelope's `body` is `body`, verbatim (nulls, odd
    /// timestamps, a malformed element, or not JSON at all), its type
    /// `RunnerScaleSetJobMessages`. It is delivered alone, with the next
    /// message id, until acknowledged, like any message.
    pub fn queue_raw_message(&self, scale_set_id: i64, body: &str) -> Result<(), FakeError> {
        let message = messages::RawMessage {
            message_type: actions::MESSAGE_TYPE.to_string(),
            body: body.to_string(),
        };
        Ok(self
            .app()
            .state(|s, _| s.queue_raw_message(scale_set_id, message))?)
    }

    /// Deletes a scale set as if someone did it on GitHub's side; its
    /// runners, jobs and session go with it. Unknown ids are ignored.
    pub fn delete_scale_set(&self, id: i64) {
        let _ = self.app().state(|s, _| s.delete_scale_set(None, id));
    }

    pub fn inject_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.app().faults(|f| f.inject(endpoint, fault));
    }

    /// Drops every fault not yet used.
    pub fn clear_faults(&self) {
        self.app().faults(|f| f.clear_faults());
    }

    /// Every installation token issued so far expires now (401 from then on).
    pub fn expire_installation_tokens(&self) {
        self.app()
            .tokens(|t| t.expire_installation_tokens(Instant::now()));
    }

    /// Every admin token issued so far expires now.
    pub fn expire_admin_tokens(&self) {
        self.app().tokens(|t| t.expire_admin_tokens(Instant::now()));
    }

    /// Every message queue token issued so far expires now.
    pub fn expire_queue_tokens(&self) {
        self.app().tokens(|t| t.expire_queue_tokens(Instant::now()));
    }

    /// Ends every session (their queue tokens stop working; refreshing them
    /// gives RunnerScaleSetSessionExpiredException).
    pub fn expire_sessions(&self) {
        self.app().state(|s, _| s.expire_sessions());
    }

    /// Turns the UTF-8 byte-order mark in front of JSON responses on or off.
    pub fn set_bom(&self, on: bool) {
        self.app().set_bom(on);
    }

    pub fn request_count(&self, endpoint: Endpoint) -> u64 {
        self.app().faults(|f| f.count(endpoint))
    }

    /// When each request to `endpoint` arrived (the latest 100 000).
    pub fn request_times(&self, endpoint: Endpoint) -> Vec<Instant> {
        self.app().faults(|f| f.times(endpoint))
    }

    /// Requests per endpoint name, every endpoint listed, plus `Unmatched`.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.app().faults(|f| f.counters())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.app().state(|s, _| s.snapshot())
    }
}
