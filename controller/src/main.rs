//! `runway-controller`: watches `RunnerScaleSet` objects, keeps one listener
//! per scale set on GitHub's scale-set message queue, and runs each queued job
//! in an ephemeral runner pod.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Args, Parser, Subcommand};
use runway_controller::kube_client::{self, KubeClientOptions};
use runway_controller::leader::{LeaderConfig, LeaderElector, default_identity};
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let seconds = |name: &str, secs: f64| {
        Duration::try_from_secs_f64(secs)
            .with_context(|| format!("--{name} must be a non-negative number of seconds"))
    };
    let status_interval = seconds("status-interval", args.status_interval)?;
    let deletion_timeout = seconds("deletion-timeout", args.deletion_timeout)?;

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
        let config = LeaderConfig::new(&args.lease_namespace, &args.lease_name, default_identity());
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
        ..SupervisorOptions::default()
    };
    supervisor.github.transport.metrics = Some(metrics.clone());
    supervisor.runners.sidecars = sidecars;
    let opts = ManagerOptions {
        supervisor,
        namespace: args.namespace.clone(),
        deletion_timeout,
        ..ManagerOptions::default()
    };

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
    manager::run(kube, opts, manager_stop).await?;
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
