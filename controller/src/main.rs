//! `runway-controller`: watches `RunnerScaleSet` objects, keeps one listener
//! per scale set on GitHub's scale-set message queue, and runs each queued job
//! in an ephemeral runner pod.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use runway_controller::github::{HostRateLimiter, RateLimit, RateLimits};
use runway_controller::kube_client::{self, KubeClientOptions};
use runway_controller::leader::{
    Fence, LeaderElector, Leadership, controller_config, default_identity,
};
use runway_controller::manager::{self, ManagerOptions};
use runway_controller::metrics::{self, Metrics};
use runway_controller::runner::pod::SidecarSupport;
use runway_controller::scale_set::SupervisorOptions;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "runway-controller", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run(RunArgs),
    /// Print the RunnerScaleSet CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    /// Where to serve `/metrics` and `/healthz`.
    #[arg(long, env = "RUNWAY_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Kubernetes API requests per second (client-go's QPS); 0: no limit.
    #[arg(long, env = "RUNWAY_KUBE_QPS", default_value_t = 50.0)]
    kube_qps: f32,
    /// Kubernetes API requests allowed in a burst above the QPS.
    #[arg(long, env = "RUNWAY_KUBE_BURST", default_value_t = 100)]
    kube_burst: u32,
    /// Watch RunnerScaleSets in this namespace only (default: all).
    #[arg(long, env = "RUNWAY_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Run listeners only while holding the leader Lease (run two replicas
    /// for a warm standby).
    #[arg(long, env = "RUNWAY_LEADER_ELECT", default_value_t = true, action = ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "RUNWAY_LEASE_NAME", default_value = "runway-controller")]
    lease_name: String,
    /// Shortest seconds between two status writes of a scale set's counts.
    #[arg(long, env = "RUNWAY_STATUS_INTERVAL", default_value_t = 5.0)]
    status_interval: f64,
    /// Seconds a deleted RunnerScaleSet waits for busy runners before it
    /// is let go (an Event says what is left).
    #[arg(long, env = "RUNWAY_DELETION_TIMEOUT", default_value_t = 900.0)]
    deletion_timeout: f64,
    /// Log lines as human-readable text or as one JSON object per line (the
    /// filter is RUST_LOG, default info).
    #[arg(long, env = "RUNWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// GitHub requests per second, sustained, per GitHub host; one budget
    /// shared by all scale sets.
    #[arg(
        long,
        env = "RUNWAY_GITHUB_RATE",
        value_name = "PER_SECOND",
        value_parser = at_least_one,
        default_value_t = RateLimit::default().per_second,
    )]
    github_rate: NonZeroU32,
    /// GitHub requests allowed at once before --github-rate paces them (the
    /// bucket size), per GitHub host.
    #[arg(
        long,
        env = "RUNWAY_GITHUB_BURST",
        value_name = "N",
        value_parser = at_least_one,
        default_value_t = RateLimit::default().burst,
    )]
    github_burst: NonZeroU32,
    /// Test only, hidden: the first supervisor of this RunnerScaleSet
    /// panics, once, so that the end-to-end tests can check that a panic is
    /// retried and shutdown stays bounded. Safe in production: off unless
    /// set, absent from --help, it names exactly one object, fires once per
    /// process, and what it exercises is the path every real panic takes.
    #[arg(
        long,
        env = "RUNWAY_TEST_PANIC_SUPERVISOR",
        value_name = "NAMESPACE/NAME",
        value_parser = namespace_name,
        hide = true
    )]
    test_panic_supervisor: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A whole number of at least 1 (clap names the flag in its error).
fn at_least_one(value: &str) -> Result<NonZeroU32, String> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| "must be a whole number of at least 1".to_owned())
}

/// `namespace/name`, both parts non-empty.
fn namespace_name(value: &str) -> Result<(String, String), String> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err("must be NAMESPACE/NAME".to_owned()),
    }
}

/// The longest `--status-interval`: counts older than this are not news.
const MAX_STATUS_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// The longest `--deletion-timeout`: a week, far from where timestamp
/// arithmetic on the deletion time overflows.
const MAX_DELETION_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A seconds flag as a duration in `[0, max]`, or an error naming the flag.
fn seconds(flag: &str, secs: f64, max: Duration) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= max)
        .with_context(|| {
            format!(
                "--{flag} must be a number of seconds from 0 to {}; got {secs}",
                max.as_secs()
            )
        })
}

/// Logs to stderr, filtered by RUST_LOG (default info), in `format`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The one GitHub rate limiter every scale set's client shares: the same
/// limit for every host, one bucket per host.
fn github_rate_limiter(args: &RunArgs) -> Arc<HostRateLimiter> {
    let limit = RateLimit {
        per_second: args.github_rate,
        burst: args.github_burst,
    };
    Arc::new(HostRateLimiter::new(RateLimits {
        default: limit,
        per_host: BTreeMap::new(),
    }))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", runway_controller::crd::crd_yaml()?);
            Ok(())
        }
        Some(Command::Run(args)) => run(args),
        None => match Cli::parse_from(["runway-controller", "run"]).command {
            Some(Command::Run(args)) => run(args),
            _ => unreachable!("parsed as run"),
        },
    }
}

#[tokio::main]
async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);

    let status_interval = seconds("status-interval", args.status_interval, MAX_STATUS_INTERVAL)?;
    let deletion_timeout = seconds(
        "deletion-timeout",
        args.deletion_timeout,
        MAX_DELETION_TIMEOUT,
    )?;

    let metrics = Metrics::new();
    let kube_options = KubeClientOptions {
        qps: args.kube_qps,
        burst: args.kube_burst,
    };
    let kube = kube_client::infer(&kube_options, metrics.clone())
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;

    let (shutdown_tx, mut shutdown) = watch::channel(false);
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down: stopping the listeners (their sessions are deleted)");
        shutdown_tx.send_replace(true);
    });

    let server = metrics::bind(args.metrics_addr, metrics.clone())
        .await
        .context("--metrics-addr")?;
    tracing::info!(addr = %server.local_addr(), "serving /metrics and /healthz");
    let mut server_stop = shutdown.clone();
    tokio::spawn(async move {
        let stopped = async move {
            let _ = server_stop.wait_for(|s| *s).await;
        };
        if let Err(error) = server.run(stopped).await {
            tracing::error!(%error, "the metrics server failed");
        }
    });

    let leadership = if args.leader_elect {
        let config = controller_config(&args.lease_namespace, &args.lease_name, default_identity());
        let elector =
            LeaderElector::new(kube.clone(), config).context("--lease-namespace / --lease-name")?;
        tracing::info!(lease = %format!("{}/{}", args.lease_namespace, args.lease_name), "waiting to lead");
        match elector.acquire(&mut shutdown).await? {
            Some(leadership) => Some(leadership),
            None => return Ok(()),
        }
    } else {
        None
    };

    // Everything a leader writes goes through a client of its own, fenced:
    // once the Lease may be someone else's (renew deadline passed, lost,
    // released) it refuses writes, even those queued behind its rate limit
    // while the process was paused. Its own rate limit also keeps Lease
    // renewals (on `kube`) from queueing behind a burst of pod creates.
    let fence = leadership
        .as_ref()
        .map_or_else(Fence::unfenced, Leadership::fence);
    let writer = kube_client::infer_fenced(&kube_options, metrics.clone(), fence.clone())
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;

    // dind as a native sidecar where the API server runs them (1.29+).
    let version = kube
        .apiserver_version()
        .await
        .context("reading the Kubernetes API server's version")?;
    let sidecars = SidecarSupport::for_server(&version);
    tracing::info!(version = %version.git_version, ?sidecars, "Kubernetes API server");
    let mut supervisor = SupervisorOptions {
        status_interval,
        metrics: Some(metrics.clone()),
        fence,
        ..SupervisorOptions::default()
    };
    supervisor.github.transport.metrics = Some(metrics.clone());
    supervisor.github.rate_limiter = github_rate_limiter(&args);
    supervisor.runners.sidecars = sidecars;
    let opts = ManagerOptions {
        supervisor,
        namespace: args.namespace.clone(),
        deletion_timeout,
        test_panic_once: args.test_panic_supervisor.clone(),
        ..ManagerOptions::default()
    };
    if let Some((ns, name)) = &opts.test_panic_once {
        tracing::warn!(namespace = %ns, name = %name, "test hook --test-panic-supervisor set: this scale set's first supervisor will panic");
    }

    // The manager stops on shutdown, or when the Lease is lost (another
    // replica may lead already: stop writing at once).
    let (stop_manager, manager_stop) = watch::channel(false);
    let (lost_tx, lost) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(async move {
        let mut leadership = leadership;
        let lost_lease = async {
            match leadership.as_mut() {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        let was_lost = tokio::select! {
            () = lost_lease => true,
            _ = shutdown.wait_for(|s| *s) => false,
        };
        stop_manager.send_replace(true);
        let _ = lost_tx.send(was_lost);
        leadership
    });
    manager::run(writer, opts, manager_stop).await?;
    let was_lost = lost.await.unwrap_or(false);
    let leadership = watcher.await.context("the leader watch panicked")?;
    if was_lost {
        anyhow::bail!("lost the leader Lease; exiting so that a standby takes over");
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["runway-controller", "run"].iter().chain(extra);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::Run(args)) => Ok(args),
            _ => unreachable!("parsed as run"),
        }
    }

    #[test]
    fn log_format_and_github_limits_default_and_parse() {
        let args = run_args(&[]).expect("defaults parse");
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.test_panic_supervisor, None);
        let args = run_args(&["--test-panic-supervisor", "ci/arm"]).expect("parses");
        assert_eq!(
            args.test_panic_supervisor,
            Some(("ci".to_owned(), "arm".to_owned()))
        );
        let limiter = github_rate_limiter(&args);
        assert_eq!(limiter.limits().default, RateLimit::default());
        assert!(limiter.limits().per_host.is_empty());

        let args = run_args(&[
            "--log-format",
            "json",
            "--github-rate",
            "5",
            "--github-burst",
            "50",
        ])
        .expect("parses");
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(
            github_rate_limiter(&args).limits().default,
            RateLimit::new(5, 50).unwrap()
        );
    }

    #[test]
    fn zero_or_invalid_values_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--github-rate", "0"),
            ("--github-rate", "-1"),
            ("--github-rate", "1.5"),
            ("--github-burst", "0"),
            ("--github-burst", "lots"),
            ("--log-format", "xml"),
            ("--test-panic-supervisor", "ci"),
            ("--test-panic-supervisor", "ci/"),
        ] {
            let error = match run_args(&[&format!("{flag}={value}")]) {
                Ok(_) => panic!("{flag} {value} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(error.contains(flag), "{flag} {value}: {error}");
            assert!(error.contains(value), "{flag} {value}: {error}");
        }
        let error = run_args(&["--github-rate", "0"]).err().unwrap().to_string();
        assert!(error.contains("at least 1"), "{error}");
    }

    #[test]
    fn seconds_flags_are_bounded() {
        let week = MAX_DELETION_TIMEOUT;
        for secs in [-1.0, f64::NAN, f64::INFINITY, 1e13, 1e300, 604_800.5] {
            let error = seconds("deletion-timeout", secs, week)
                .expect_err("refused")
                .to_string();
            assert!(error.contains("--deletion-timeout"), "{secs}: {error}");
        }
        assert_eq!(seconds("deletion-timeout", 604_800.0, week).unwrap(), week);
        assert_eq!(
            seconds("status-interval", 0.5, MAX_STATUS_INTERVAL).unwrap(),
            Duration::from_millis(500)
        );
        assert!(seconds("status-interval", 3_601.0, MAX_STATUS_INTERVAL).is_err());
    }

    /// Any seconds value: a duration within the bound, or an error.
    #[test]
    fn any_seconds_value_is_bounded_or_refused() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 10_000,
            failure_persistence: None,
            ..Config::default()
        });
        let value = prop_oneof![any::<f64>(), -10.0..1e6f64, 1e6..1e20f64];
        let result = runner.run(&value, |secs| {
            if let Ok(d) = seconds("deletion-timeout", secs, MAX_DELETION_TIMEOUT) {
                prop_assert!(d <= MAX_DELETION_TIMEOUT);
                // What cleanup does with it: a deadline after the deletion.
                let delta = chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
                prop_assert!(chrono::Utc::now().checked_add_signed(delta).is_some());
            }
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
}
