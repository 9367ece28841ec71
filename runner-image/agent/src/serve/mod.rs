//! `runway serve`: the executor behind authenticated HTTP (KUBE-ACTIONS.md
//! "Entry points" 4), as a sidecar in runner pods or as the scale-set
//! chart's standalone Deployment.
//!
//! - [`auth`]: the pure decision on a request's credential (bearer token or
//!   ES256 JWT); [`credentials`]: where the token and key come from;
//!   [`replay`]: the JWT ids already used.
//! - [`listen`]: the accept loop (connection limit, header timeout,
//!   graceful shutdown); [`tls`]: `--tls-cert`/`--tls-key`, re-read when
//!   the files change.
//! - [`http`]: the routes; [`metrics`]: what `/metrics` shows.
//!
//! Routes: `GET /liveness`, `GET /readiness` (ready = API server reachable
//! and, with `--lease`, this replica leads), `GET /metrics`, `POST
//! /v1/actions` (a payload, answered with per-action results). Every POST
//! needs `Authorization: Bearer <token or JWT>`; a JWT also carries `jti`
//! (good for one request) and `body_sha256` (the lowercase hex SHA-256 of
//! the exact body).
//!
//! Limits, so a slow client cannot hold the server: `--max-connections`
//! (64) at once, `--header-timeout` (10 s) for a request's headers (and the
//! TLS handshake, and an idle keep-alive connection), `--body-timeout`
//! (30 s) for its body, at most 1 MiB.
//!
//! Invariants: at least one authentication method or no start (exit 2); a
//! request that does not authenticate never reaches Kubernetes; with
//! `--lease NAME` only the Lease's holder executes, and exactly-once itself
//! rests on the state ConfigMap (a leader that loses its Lease mid-payload
//! cannot make a standby run an action twice, since each action is claimed
//! there first).

pub mod auth;
pub mod credentials;
pub mod http;
pub mod listen;
pub mod local;
pub mod metrics;
pub mod replay;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use runway_lease::{LeaderConfig, LeaderElector, LeaderError, default_identity};
use tokio::sync::watch;

use self::credentials::{Credentials, CredentialsError, Settings};
use self::http::{App, LeaderView};
use self::metrics::Metrics;
use crate::kube::allowlist::{Allowlist, AllowlistError};
use crate::kube::audit::AuditContext;
use crate::kube::exec::Executor;
use crate::kube::state::{StateStore, choose_namespace};

/// The default port (KUBE-ACTIONS.md).
pub const DEFAULT_PORT: u16 = 9016;
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Serve job steps of this runner pod on a Unix socket instead (the
    /// executor beside the job; see `runway kube --help`): no TCP port, no
    /// authentication (the socket's volume is the boundary), no Lease, claims
    /// in ConfigMap runway-kubeactions-state-jobs.
    #[arg(
        long,
        value_name = "SOCKET",
        conflicts_with_all = ["port", "listen", "token_file", "jwt_public_key", "lease", "tls_cert"]
    )]
    pub local: Option<PathBuf>,
    /// Port to listen on, on all interfaces; 0 picks a free port (the
    /// address is printed on stderr at start).
    #[arg(long, default_value_t = DEFAULT_PORT, conflicts_with = "listen")]
    pub port: u16,
    /// Address to listen on instead of 0.0.0.0:<port>, e.g. 127.0.0.1:9016.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token (a mounted Secret); re-read when it
    /// changes.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the dispatcher's ES256 (P-256) public key; JWTs signed by
    /// its private half are accepted. Needs --runner-urn.
    #[arg(long, value_name = "PATH")]
    pub jwt_public_key: Option<PathBuf>,
    /// The `sub` every JWT must carry: this runner's URN.
    #[arg(long, value_name = "URN", requires = "jwt_public_key")]
    pub runner_urn: Option<String>,
    /// When set, a JWT's `aud` must be (or contain) this value; unset, `aud`
    /// is not checked (`sub` already binds a token to this runner).
    #[arg(long, value_name = "AUD", requires = "jwt_public_key")]
    pub jwt_audience: Option<String>,
    /// The allowlist file [default: $RUNWAY_KUBE_ALLOWLIST].
    #[arg(long, value_name = "PATH")]
    pub allowlist: Option<PathBuf>,
    /// Namespace of the state ConfigMap and the Lease [default:
    /// $RUNWAY_NAMESPACE, else the pod's own, else the kubeconfig's].
    #[arg(long, value_name = "NS", env = "RUNWAY_NAMESPACE")]
    pub namespace: Option<String>,
    /// Elect a leader on this Lease (for replicas > 1): only the leader
    /// executes, a standby answers 503 and is not ready.
    #[arg(long, value_name = "NAME")]
    pub lease: Option<String>,
    /// This replica's identity in the Lease and in claims [default:
    /// $POD_NAME (else the host name) plus a random suffix].
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// Lease duration in seconds; renew deadline and retry period scale with
    /// it (client-go's 15/10/2). For tests.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0, hide = true)]
    pub lease_duration: f64,
    /// PEM certificate (chain) to serve HTTPS with; needs --tls-key.
    /// Re-read when the file changes (a rotated Secret needs no restart).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; needs --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a client may take to send a request's headers (and the TLS
    /// handshake); an idle keep-alive connection is closed after as long.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub header_timeout: Duration,
    /// Seconds a client may take to send a request's body (408 after).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub body_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = listen::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
}

/// A timeout flag: seconds (fractions allowed), from 0.1 to 3600.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(d))
        .ok_or_else(|| format!("`{value}`: a number of seconds from 0.1 to 3600"))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("{0} (--allowlist)")]
    Allowlist(#[from] AllowlistError),
    #[error(transparent)]
    Kube(crate::kube::client::ClientError),
    #[error("--lease-duration {0}: must be a number of seconds from 1 to 3600")]
    LeaseDuration(f64),
    #[error("--lease: {0}")]
    Lease(#[source] LeaderError),
    #[error("cannot listen on {addr} (--port / --listen): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Server(#[source] std::io::Error),
    #[error("cannot serve on the socket {path} (--local): {source}")]
    Socket {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl ServeError {
    /// 2 for settings to fix, 1 for what failed at run time.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Credentials(_)
            | ServeError::Allowlist(_)
            | ServeError::LeaseDuration(_)
            | ServeError::Tls(_) => 2,
            ServeError::Lease(LeaderError::Config { .. }) => 2,
            _ => 1,
        }
    }
}

pub async fn run(args: ServeArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("runway serve: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// The longest `--lease-duration`: a standby waits this long after a crash,
/// and the election's deadlines must stay far from overflowing.
pub const MAX_LEASE_DURATION: Duration = Duration::from_secs(3600);

/// The Lease timing for `--lease-duration`: client-go's 15 s / 10 s / 2 s,
/// scaled.
pub fn lease_timing(seconds: f64) -> Result<(Duration, Duration, Duration), ServeError> {
    let lease = Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| (Duration::from_secs(1)..=MAX_LEASE_DURATION).contains(d))
        .ok_or(ServeError::LeaseDuration(seconds))?;
    Ok((lease, lease.mul_f64(10.0 / 15.0), lease.mul_f64(2.0 / 15.0)))
}

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    if let Some(socket) = &args.local {
        return local::serve(&args, socket).await;
    }
    // Settings first, so that a mistake exits 2 before anything connects.
    let credentials = Credentials::load(&Settings {
        token_file: args.token_file.clone(),
        jwt_public_key: args.jwt_public_key.clone(),
        runner_urn: args.runner_urn.clone(),
        jwt_audience: args.jwt_audience.clone(),
    })?;
    let allowlist = Allowlist::load(args.allowlist.as_deref())?;
    let timing = lease_timing(args.lease_duration)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls::TlsFiles::load(cert, key)?)),
        // clap refuses one without the other.
        _ => None,
    };
    let (client, namespace) = client_and_namespace(&args).await?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(Metrics::default());

    let (stop, stop_rx) = watch::channel(false);
    let (fatal_tx, mut fatal_rx) = watch::channel(false);
    let (leader, campaign) = match &args.lease {
        None => {
            metrics.set_leader(true);
            (LeaderView::alone(), None)
        }
        Some(name) => {
            let (lease_duration, renew_deadline, retry_period) = timing;
            let config = LeaderConfig {
                lease_duration,
                renew_deadline,
                retry_period,
                ..LeaderConfig::new(&namespace, name, &identity)
            }
            .with_label("app.kubernetes.io/managed-by", "runway")
            .with_label("app.kubernetes.io/component", "serve");
            let elector =
                Arc::new(LeaderElector::new(client.clone(), config).map_err(ServeError::Lease)?);
            let (leading_tx, leading) = watch::channel(false);
            let task = tokio::spawn(campaign(
                elector.clone(),
                leading_tx,
                metrics.clone(),
                stop_rx,
                fatal_tx,
            ));
            let view = LeaderView {
                leading,
                elector: Some(elector),
                retry_after_secs: retry_period.as_secs_f64().ceil() as u64,
            };
            (view, Some(task))
        }
    };

    let addr = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], args.port)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    // Machine-readable: tests and scripts read the port from this line.
    eprintln!(
        "runway serve: listening on {bound}{}",
        if tls.is_some() { " (https)" } else { "" }
    );
    tracing::info!(
        %bound, %namespace, %identity, lease = args.lease.as_deref().unwrap_or(""),
        "serve: started"
    );

    let app = Arc::new(App {
        credentials,
        executor: Executor::new(client.clone(), allowlist, AuditContext::from_env("serve")),
        store: StateStore::new(client.clone(), &namespace, &identity),
        metrics,
        leader,
        client,
        requests: http::RequestLimits {
            body_timeout: args.body_timeout,
            ..http::RequestLimits::default()
        },
    });
    let shutdown = async move {
        tokio::select! {
            () = terminated() => {}
            _ = fatal_rx.wait_for(|fatal| *fatal) => {}
        }
    };
    let limits = listen::Limits {
        max_connections: args.max_connections,
        header_timeout: args.header_timeout,
    };
    let router = http::router(app);
    match tls {
        Some(tls) => listen::serve_tls(listener, router, limits, tls, shutdown).await,
        None => listen::serve(listener, router, limits, shutdown).await,
    }
    // In-flight requests are done: only now give the Lease up.
    let _ = stop.send(true);
    let campaigned = match campaign {
        Some(task) => task.await.unwrap_or(Ok(())),
        None => Ok(()),
    };
    campaigned.map_err(ServeError::Lease)
}

/// The Kubernetes client (the pod's ServiceAccount, or $KUBECONFIG) and the
/// namespace of the state ConfigMap and Lease: --namespace /
/// $RUNWAY_NAMESPACE, else the pod's own, else the kubeconfig's.
async fn client_and_namespace(args: &ServeArgs) -> Result<(kube::Client, String), ServeError> {
    let client = crate::kube::client::client(None, None)
        .await
        .map_err(ServeError::Kube)?;
    let namespace = choose_namespace(
        args.namespace.clone(),
        std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok(),
        client.default_namespace(),
    );
    Ok((client, namespace))
}

/// Campaigns for the Lease until `stop`, again after each loss; publishes
/// whether we lead. An error retrying cannot fix (RBAC) sets `fatal`, which
/// stops the server: a replica that can never lead should fail visibly.
async fn campaign(
    elector: Arc<LeaderElector>,
    leading: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    fatal: watch::Sender<bool>,
) -> Result<(), LeaderError> {
    let set = |value: bool| {
        leading.send_replace(value);
        metrics.set_leader(value);
    };
    loop {
        let leadership = match elector.acquire(&mut stop).await {
            Ok(Some(leadership)) => leadership,
            Ok(None) => return Ok(()),
            Err(error) => {
                let _ = fatal.send(true);
                return Err(error);
            }
        };
        let mut leadership = leadership;
        set(true);
        // The watch's guard must not live across the release's await.
        let stopped = tokio::select! {
            () = leadership.lost() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        set(false);
        if stopped {
            leadership.release().await;
            return Ok(());
        }
        tracing::warn!("serve: lost the Lease; standing by");
    }
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_timing_scales_client_go_defaults() {
        let (lease, renew, retry) = lease_timing(15.0).unwrap();
        assert_eq!(lease, Duration::from_secs(15));
        assert_eq!(renew, Duration::from_secs(10));
        assert_eq!(retry, Duration::from_secs(2));
        let (lease, renew, retry) = lease_timing(3.0).unwrap();
        assert_eq!(lease, Duration::from_secs(3));
        assert_eq!(renew, Duration::from_secs(2));
        assert!((retry.as_secs_f64() - 0.4).abs() < 1e-9);
        for bad in [
            0.5,
            0.0,
            -1.0,
            f64::NAN,
            3600.5,
            1e15,
            1.8e19,
            f64::INFINITY,
        ] {
            assert!(
                matches!(lease_timing(bad), Err(ServeError::LeaseDuration(_))),
                "{bad}"
            );
        }
    }

    /// Any `--lease-duration`: timings the election can add to an
    /// `Instant`, or the setting's error.
    #[test]
    fn any_lease_duration_gives_usable_timing_or_an_error() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 10_000,
            failure_persistence: None,
            ..Config::default()
        });
        let value = prop_oneof![any::<f64>(), -1.0..5_000.0f64, 1e4..1e20f64];
        let result = runner.run(&value, |seconds| {
            if let Ok((lease, renew, retry)) = lease_timing(seconds) {
                prop_assert!(retry < renew && renew < lease);
                prop_assert!(std::time::Instant::now().checked_add(lease).is_some());
                prop_assert!(lease.as_secs().checked_add(1).is_some());
                prop_assert!(lease <= MAX_LEASE_DURATION);
            }
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }

    #[test]
    fn timeouts_are_seconds_within_bounds() {
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "0.05", "-1", "3601", "NaN", "inf", "ten", ""] {
            let error = parse_seconds(bad).expect_err(bad);
            assert!(error.contains("seconds"), "{error}");
        }
    }

    #[test]
    fn setting_errors_exit_2() {
        let err = ServeError::Credentials(CredentialsError::NoneConfigured);
        assert_eq!(err.exit_code(), 2);
        assert_eq!(ServeError::LeaseDuration(0.0).exit_code(), 2);
        assert_eq!(
            ServeError::Server(std::io::Error::other("x")).exit_code(),
            1
        );
    }
}
