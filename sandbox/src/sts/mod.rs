//! A fake AWS STS (issue 7): STS's real query/XML wire format over HTTP on
//! 127.0.0.1, and what AWS enforces on role chains: per-role trust
//! (who may assume, `sts:TagSession`, `sts:SetSourceIdentity`), the exact
//! AccessDenied texts, the one-hour role-chaining limit, tag, session-name
//! and source-identity validation, transitive tag inheritance and
//! conflicts, a packed-size estimate (see `rules`) with PackedPolicyTooLarge,
//! web identity tokens checked against one OIDC issuer and audience, SigV4
//! callers looked up among issued sessions, throttling and failure
//! injection, and a request log.
//!
//! ```no_run
//! # async fn example() -> Result<(), runway_sandbox::sts::StsError> {
//! use runway_sandbox::sts::{FakeSts, RoleConfig, StsConfig};
//! let config = StsConfig::default()
//!     .with_role(RoleConfig::new("base").trusting_web_identity())
//!     .with_role(RoleConfig::new("deploy").trusting("arn:aws:iam::111122223333:role/base"));
//! let sts = FakeSts::start(config).await?;
//! let token = sts.mint_web_identity_token("system:serviceaccount:runners:runner");
//! // AWS_ENDPOINT_URL_STS = sts.endpoint(), AWS_ROLE_ARN = sts.role_arn("base"), ...
//! # Ok(()) }
//! ```
//!
//! Module map: `config` (account, roles, static keys), `rules` (every
//! decision, pure), `wire` (query parsing and XML), `fault` (error codes and
//! texts), `sessions` (issued credentials), `tokens` (the OIDC key and token
//! checks), `sigv4` (who signed), `server` (HTTP), `moto` (moto_server for
//! wire-format comparisons).

mod config;
mod fault;
pub mod moto;
pub mod rules;
mod server;
mod sessions;
mod sigv4;
mod tokens;
pub mod wire;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use config::{
    DEFAULT_PACKED_BUDGET, RoleConfig, StaticCredential, StsConfig, TRUST_ANYONE,
    TRUST_WEB_IDENTITY,
};
pub use fault::Fault;
pub use moto::MotoServer;
pub use sessions::Session;

#[derive(Debug, thiserror::Error)]
pub enum StsError {
    #[error("the fake STS could not listen on 127.0.0.1: {0}")]
    Bind(std::io::Error),
    #[error(transparent)]
    Key(#[from] tokens::TokenKeyError),
    #[error("reading the fake STS config {path}: {source}")]
    ReadConfig {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the fake STS config {path} is not a valid StsConfig (fields: account_id, issuer, audience, roles, static_credentials, packed_budget, verify_signatures): {source}"
    )]
    ParseConfig {
        path: String,
        source: serde_yaml::Error,
    },
    #[error(
        "moto is not installed: neither `moto_server` on PATH nor `python3 -m moto.server` works; \
         run sandbox/scripts/install-deps.sh (pip install 'moto[server]')"
    )]
    MotoMissing,
    #[error("starting moto_server: {0}")]
    MotoSpawn(std::io::Error),
    #[error("moto_server on port {port} did not answer within {waited:?} (its output: {output})")]
    MotoNotReady {
        port: u16,
        waited: Duration,
        output: String,
    },
}

impl StsConfig {
    /// Reads a YAML `StsConfig` (for `runway-sandbox sts --config`).
    pub fn from_yaml_file(path: &Path) -> Result<StsConfig, StsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| StsError::ReadConfig {
            path: shown.clone(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| StsError::ParseConfig {
            path: shown,
            source,
        })
    }
}

/// One request the fake received, as sent, with how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggedRequest {
    /// `AssumeRole`, `AssumeRoleWithWebIdentity`, `GetCallerIdentity` (as sent).
    pub action: String,
    /// The ARN of the signing credentials (assumed-role or principal ARN).
    pub caller: Option<String>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub duration_seconds: Option<u32>,
    pub source_identity: Option<String>,
    pub external_id: Option<String>,
    pub policy: Option<String>,
    /// `ok`, or the error code answered.
    pub outcome: String,
}

/// Faults to inject and knobs tests turn; shared with the server.
#[derive(Debug, Default)]
struct State {
    sessions: sessions::Sessions,
    log: Vec<LoggedRequest>,
    throttle_next: usize,
    fail_next: usize,
    unavailable_next: usize,
    credential_lifetime: Option<Duration>,
    clock_offset: chrono::Duration,
}

struct Shared {
    config: StsConfig,
    issuer: tokens::Issuer,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }
}

/// A running fake STS. Its server runs on the tokio runtime that called
/// [`FakeSts::start`] and stops when this handle is dropped.
pub struct FakeSts {
    shared: Arc<Shared>,
    endpoint: String,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for FakeSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSts")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl FakeSts {
    /// Binds 127.0.0.1 on a free port.
    pub async fn start(config: StsConfig) -> Result<FakeSts, StsError> {
        FakeSts::start_on(config, 0).await
    }

    /// Binds 127.0.0.1:`port` (0 picks a free one).
    pub async fn start_on(config: StsConfig, port: u16) -> Result<FakeSts, StsError> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(StsError::Bind)?;
        let addr = listener.local_addr().map_err(StsError::Bind)?;
        let shared = Arc::new(Shared {
            config,
            issuer: tokens::Issuer::generate()?,
            state: Mutex::new(State::default()),
        });
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(FakeSts {
            shared,
            endpoint: format!("http://{addr}"),
            _stop: stop,
        })
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_ENDPOINT_URL_STS`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub fn config(&self) -> &StsConfig {
        &self.shared.config
    }

    /// `arn:aws:iam::<account>:role/<name>`.
    pub fn role_arn(&self, name: &str) -> String {
        self.shared.config.role_arn(name)
    }

    /// A token as the cluster would project it: the configured issuer and
    /// audience, `sub`, valid for an hour on the fake's clock.
    pub fn mint_web_identity_token(&self, subject: &str) -> String {
        let now = self.now().timestamp();
        let config = &self.shared.config;
        self.mint_token_with(json!({
            "iss": config.issuer,
            "aud": [config.audience],
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }))
    }

    /// Signs exactly `claims` with the fake issuer's key (for tests of a
    /// wrong `iss`, `aud` or `exp`).
    pub fn mint_token_with(&self, claims: serde_json::Value) -> String {
        self.shared.issuer.sign(&claims)
    }

    /// The issuer's public key (SPKI PEM), e.g. for a JWKS.
    pub fn issuer_public_key_pem(&self) -> String {
        self.shared.issuer.public_key_pem().to_owned()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.state().log.clone()
    }

    /// The session behind an access key id the fake issued.
    pub fn session(&self, access_key_id: &str) -> Option<Session> {
        self.shared.state().sessions.get(access_key_id).cloned()
    }

    /// The next `n` requests get 400 `Throttling` "Rate exceeded".
    pub fn throttle_next(&self, n: usize) {
        self.shared.state().throttle_next = n;
    }

    /// The next `n` requests get 500 `InternalFailure`.
    pub fn fail_next(&self, n: usize) {
        self.shared.state().fail_next = n;
    }

    /// The next `n` requests get 503 `ServiceUnavailable`.
    pub fn unavailable_next(&self, n: usize) {
        self.shared.state().unavailable_next = n;
    }

    /// Credentials issued from now on expire after `lifetime` instead of
    /// their DurationSeconds (`None` restores that).
    pub fn set_credential_lifetime(&self, lifetime: Option<Duration>) {
        self.shared.state().credential_lifetime = lifetime;
    }

    /// Moves the fake's clock forward: issued credentials and tokens expire
    /// without a test waiting for them.
    pub fn advance_clock(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut state = self.shared.state();
        state.clock_offset += by;
    }

    /// The fake's current time (real time plus [`FakeSts::advance_clock`]).
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.state().now()
    }
}
