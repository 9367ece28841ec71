//! `runway-sandbox`: a real Kubernetes control plane on this machine, for
//! people (`up`, `down`, `status`, `env`); the fake GitHub (`github`); and
//! the real `runway-controller` run against both (`demo`, `bench scale-up`).
#![forbid(unsafe_code)]

use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use runway_sandbox::bench::ScaleUpOptions;
use runway_sandbox::binaries::Binaries;
use runway_sandbox::cluster::StartOptions;
use runway_sandbox::demo::DemoOptions;
use runway_sandbox::github::{FakeApp, FakeGitHub, FakeOptions};
use runway_sandbox::node::ForwardBy;
use runway_sandbox::sts::{FakeSts, StsConfig};
use runway_sandbox::{ControlPlane, paths};

#[derive(Parser)]
#[command(name = "runway-sandbox", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a control plane (etcd, kube-apiserver, kube-controller-manager)
    /// on free 127.0.0.1 ports and a real node (kube-scheduler, containerd,
    /// kubelet in a network namespace of its own), and print the KUBECONFIG
    /// to use.
    Up(UpArgs),
    /// Stop a control plane; returns once every process it started is gone.
    Down(NameArg),
    /// Show the processes of a control plane and whether the API server answers.
    Status(NameArg),
    /// Print `export KUBECONFIG=...` for a running control plane.
    Env(NameArg),
    /// (internal) Forward 127.0.0.1 ports of the machine into a node's
    /// network namespace; `up` starts it for the API server's port.
    #[command(hide = true)]
    Forward(ForwardArgs),
    /// Run the real runway-controller against a throw-away control plane and
    /// the fake GitHub: jobs in waves, runner pods scale up to maxRunners and
    /// back down to minRunners; fails if an invariant breaks.
    Demo(DemoArgs),
    /// Benchmarks of the real runway-controller on a throw-away control plane.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Start the fake GitHub (REST and the Actions runner scale-set service)
    /// on 127.0.0.1, print how to reach it, and serve until Ctrl-C.
    Github(GithubArgs),
    /// Start the fake AWS STS on 127.0.0.1, print `AWS_ENDPOINT_URL_STS`
    /// and a web identity token to try it with, and serve until Ctrl-C.
    Sts(StsArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Queue N jobs at once: time until N runner pods exist, latency per
    /// pod, Kubernetes writes and GitHub calls per job, peak memory, and a
    /// bare-client baseline at the same rate limit.
    ScaleUp(ScaleUpArgs),
    /// The `runway` tool's Kubernetes actions: cold latency of one
    /// `runway kube get` from process start, and actions/s through
    /// `runway serve` (one at a time and 8 at once), exactly-once included.
    KubeActions(KubeActionsArgs),
    /// The real node (kubelet, containerd): pod created -> runner container
    /// running (baseline: a one-container pod), job queued -> first step
    /// running cold and warm (baseline: warm), and how many runner pods the
    /// node runs at once. Starts its own sandbox with a node.
    Node(NodeArgs),
}

#[derive(clap::Args)]
struct NodeArgs {
    /// Runner-shaped pods timed (and as many baseline pods).
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// Pods created at once; each batch is gone before the next.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Jobs run cold (minRunners 0) and as many warm (minRunners 1).
    #[arg(long, default_value_t = 10)]
    jobs: usize,
    /// The most runner-shaped pods the capacity count creates.
    #[arg(long, default_value_t = 110)]
    max_pods: usize,
    /// Sandbox name (files in ~/.cache/runway/sandbox/NAME/).
    #[arg(long, default_value = "bench-node")]
    name: String,
}

#[derive(clap::Args)]
struct KubeActionsArgs {
    /// Payload actions sent through `runway serve`.
    #[arg(long, default_value_t = 200)]
    actions: usize,
    /// The `runway` binary (default: next to this one; `cargo build -p runway-agent`).
    #[arg(long)]
    runway: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct ScaleUpArgs {
    /// Jobs queued at once (the scale set's maxRunners).
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    /// The controller's (and the baseline's) Kubernetes requests per second.
    #[arg(long, default_value_t = 50)]
    kube_qps: u32,
    /// The controller's (and the baseline's) Kubernetes request burst.
    #[arg(long, default_value_t = 100)]
    kube_burst: u32,
}

#[derive(clap::Args)]
struct GithubArgs {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Serve HTTPS with a certificate from a CA made for this run (printed).
    #[arg(long)]
    tls: bool,
    /// The personal access token to accept (default: a random one, printed).
    #[arg(long)]
    pat: Option<String>,
}

#[derive(clap::Args)]
struct StsArgs {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// A YAML StsConfig (account_id, issuer, audience, roles,
    /// static_credentials, ...); default: a demo account with roles
    /// runner-base, deploy and ecr-push (no sts:TagSession).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Leave the node out: the player writes pod status and plays the
    /// runners instead of the kubelet and the stand-in runner.
    #[arg(long)]
    player: bool,
}

#[derive(clap::Args)]
struct UpArgs {
    #[command(flatten)]
    name: NameArg,
    /// Start the control plane only, without the node (no pod ever runs).
    #[arg(long)]
    no_node: bool,
}

#[derive(clap::Args)]
struct ForwardArgs {
    /// The node's network namespace (a /run/netns file).
    #[arg(long)]
    netns: std::path::PathBuf,
    /// A port to forward (repeatable).
    #[arg(long = "port", required = true)]
    ports: Vec<u16>,
    /// The sandbox folder (named on the command line so that `down` finds
    /// this process).
    #[arg(long)]
    dir: std::path::PathBuf,
}

#[derive(clap::Args)]
struct NameArg {
    /// Name of the sandbox (its files live in ~/.cache/runway/sandbox/NAME/).
    #[arg(long, default_value = "default")]
    name: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Up(UpArgs {
            name: NameArg { name },
            no_node,
        }) => up(&name, !no_node).await,
        Command::Forward(args) => {
            let _ = args.dir;
            runway_sandbox::node::forward::run_process(args.netns, args.ports).await?;
            Ok(())
        }
        Command::Down(NameArg { name }) => down(&name),
        Command::Status(NameArg { name }) => status(&name).await,
        Command::Env(NameArg { name }) => {
            let plane = ControlPlane::load(&paths::sandbox_dir(&name))?;
            println!("export KUBECONFIG={}", plane.kubeconfig_path().display());
            Ok(())
        }
        Command::Demo(args) => demo(args.player).await,
        Command::Bench(BenchCommand::ScaleUp(args)) => bench_scale_up(args).await,
        Command::Bench(BenchCommand::KubeActions(args)) => bench_kube_actions(args).await,
        Command::Bench(BenchCommand::Node(args)) => bench_node(args).await,
        Command::Github(args) => github(args).await,
        Command::Sts(args) => sts(args).await,
    }
}

async fn github(args: GithubArgs) -> anyhow::Result<()> {
    let opts = FakeOptions {
        port: args.port,
        tls: args.tls,
        ..FakeOptions::default()
    };
    let github = FakeGitHub::start_with(opts)
        .await
        .context("starting the fake GitHub")?;
    let pat = args
        .pat
        .unwrap_or_else(|| format!("ghp_sandbox{:016x}", rand::random::<u64>()));
    github.add_pat(&pat);
    let app = FakeApp::example();
    let (app_id, installation_id) = (app.app_id, app.installation_id);
    github.add_app(app);
    println!("fake GitHub serving at {}", github.base_url());
    println!("  githubConfigUrl: {}", github.config_url("my-org"));
    println!("  PAT:             {pat}");
    println!("  REST base:       {}", github.rest_url());
    println!(
        "  GitHub App:      id {app_id}, installation {installation_id} (key: runway_sandbox::github::EXAMPLE_APP_PRIVATE_KEY_PEM)"
    );
    println!("  control API:     {}/_control/state", github.base_url());
    if let Some(ca) = github.ca_cert_pem() {
        println!("  CA certificate:\n{ca}");
    }
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    github.shutdown();
    eprintln!("fake GitHub stopped");
    Ok(())
}

async fn sts(args: StsArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => StsConfig::from_yaml_file(path)?,
        None => StsConfig::demo(),
    };
    let sts = FakeSts::start_on(config, args.port)
        .await
        .context("starting the fake STS")?;
    let token_file = std::env::temp_dir().join(format!("runway-sts-token-{}", std::process::id()));
    std::fs::write(
        &token_file,
        sts.mint_web_identity_token("system:serviceaccount:runners:runner"),
    )
    .with_context(|| format!("writing {}", token_file.display()))?;
    println!("fake STS serving at {}", sts.endpoint());
    println!("export AWS_ENDPOINT_URL_STS={}", sts.endpoint());
    println!(
        "export AWS_WEB_IDENTITY_TOKEN_FILE={}   # valid 1 h",
        token_file.display()
    );
    for role in &sts.config().roles {
        println!(
            "  role {} trusts {:?}",
            sts.role_arn(&role.name),
            role.trusted
        );
    }
    for key in &sts.config().static_credentials {
        println!(
            "  static key {} is {}",
            key.access_key_id, key.principal_arn
        );
    }
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let _ = std::fs::remove_file(&token_file);
    eprintln!("fake STS stopped");
    Ok(())
}

async fn up(name: &str, with_node: bool) -> anyhow::Result<()> {
    let dir = paths::sandbox_dir(name);
    if let Ok(running) = ControlPlane::load(&dir) {
        if running.live_processes().len() == running.state().processes.len() {
            eprintln!(
                "sandbox {name:?} is already running at {}",
                running.server_url()
            );
            println!("export KUBECONFIG={}", running.kubeconfig_path().display());
            return Ok(());
        }
        // Half-dead from an earlier run (machine restarted, process killed):
        // clear what is left and start over.
        running.stop()?;
    }
    let bins = Binaries::locate_or_install()?;
    let started = Instant::now();
    let options = StartOptions {
        node: with_node
            .then(std::env::current_exe)
            .transpose()?
            .map(ForwardBy::Process),
    };
    let plane = ControlPlane::start_with(name, &dir, &bins, &options)
        .await
        .with_context(|| {
            format!(
                "starting sandbox {name:?} (logs in {})",
                dir.join("logs").display()
            )
        })?;
    eprintln!(
        "sandbox {name:?} up in {:.1} s: kube-apiserver {} at {}",
        started.elapsed().as_secs_f64(),
        paths::K8S_VERSION,
        plane.server_url()
    );
    if let Some(node) = plane.node() {
        eprintln!(
            "node {} Ready at {} (network namespace {}; pods use hostNetwork to reach 127.0.0.1)",
            node.name, node.network.node_ip, node.network.netns
        );
    }
    println!("export KUBECONFIG={}", plane.kubeconfig_path().display());
    Ok(())
}

fn down(name: &str) -> anyhow::Result<()> {
    let plane = ControlPlane::load(&paths::sandbox_dir(name))?;
    let pids: Vec<u32> = plane.state().processes.iter().map(|p| p.pid).collect();
    plane.stop()?;
    let left: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| runway_sandbox::process::is_alive(*p))
        .collect();
    anyhow::ensure!(
        left.is_empty(),
        "processes still alive after stop: {left:?}"
    );
    if let Some(left) = plane.node_leftovers() {
        anyhow::ensure!(left.is_empty(), "the node left behind: {left}");
    }
    eprintln!("sandbox {name:?} stopped (pids {pids:?} gone)");
    Ok(())
}

async fn status(name: &str) -> anyhow::Result<()> {
    let plane = ControlPlane::load(&paths::sandbox_dir(name))?;
    println!("sandbox {name:?}: {}", plane.server_url());
    for p in &plane.state().processes {
        let alive = plane.live_processes().iter().any(|l| l.pid == p.pid);
        println!(
            "  {:<24} pid {:<8} {}",
            p.component,
            p.pid,
            if alive { "running" } else { "GONE" }
        );
    }
    match plane.admin_client().await?.apiserver_version().await {
        Ok(v) => println!("  API server answers: {}", v.git_version),
        Err(e) => println!("  API server does not answer: {e}"),
    }
    println!("  kubeconfig: {}", plane.kubeconfig_path().display());
    Ok(())
}

async fn demo(player: bool) -> anyhow::Result<()> {
    let mut options = DemoOptions::default();
    options.stage.node = !player;
    let record = runway_sandbox::demo::run(&options).await?;
    let violations = runway_sandbox::demo::check(&record);
    if violations.is_empty() {
        println!("demo: every invariant held");
        return Ok(());
    }
    for violation in &violations {
        println!("INVARIANT BROKEN: {violation}");
    }
    anyhow::bail!("demo: {} invariant(s) broken", violations.len())
}

async fn bench_kube_actions(args: KubeActionsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.actions > 0, "--actions must be at least 1");
    let runway = match args.runway {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("runway"))
            .filter(|p| p.is_file())
            .context("no `runway` binary next to runway-sandbox: run `cargo build -p runway-agent` or pass --runway")?,
    };
    let report = runway_sandbox::bench::kube_actions::kube_actions(&runway, args.actions)
        .await
        .context("bench kube-actions did not finish")?;
    print!("{}", report.render());
    Ok(())
}

async fn bench_scale_up(args: ScaleUpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.jobs > 0, "--jobs must be at least 1");
    let mut options = ScaleUpOptions::new(args.jobs);
    options.kube_qps = args.kube_qps;
    options.kube_burst = args.kube_burst;
    let report = runway_sandbox::bench::scale_up(&options)
        .await
        .context("bench scale-up did not finish")?;
    print!("{}", report.render());
    Ok(())
}

async fn bench_node(args: NodeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.pods > 0 && args.batch > 0 && args.jobs > 0 && args.max_pods > 0,
        "--pods, --batch, --jobs and --max-pods must be at least 1"
    );
    let options = runway_sandbox::bench::node::NodeOptions {
        sandbox: args.name,
        pods: args.pods,
        batch: args.batch,
        jobs: args.jobs,
        max_pods: args.max_pods,
        ..runway_sandbox::bench::node::NodeOptions::default()
    };
    let report = runway_sandbox::bench::node::node(&options)
        .await
        .context("bench node did not finish")?;
    print!("{}", report.render());
    Ok(())
}
