//! `runway kube ...`: kubectl-like arguments, a short human line by default
//! and JSON with `-o json`. Exit codes: 0 done, 2 bad input, 3 denied by the
//! allowlist or policy, 4 Kubernetes refused, 5 timeout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::action::{Action, CustomKind, DEFAULT_MAX, Outcome, PatchKind};
use super::allowlist::Allowlist;
use super::audit::AuditContext;
use super::catalog::{Resource, Verb};
use super::error::ActionError;
use super::exec::Executor;
use super::via_executor::ExecutorSocket;

/// `runway kube --help`: what it does, examples, exit codes.
pub const LONG_ABOUT: &str = "Kubernetes actions for job steps, limited to what the scale set's `kubernetesActions` \
allow. In a runner pod they run in the executor beside the job (the runway-executor container, reached over \
the socket at $RUNWAY_KUBE_EXECUTOR), which alone holds the pod's ServiceAccount token and enforces the \
allowlist; elsewhere with --kubeconfig (or $KUBECONFIG) and the allowlist at --allowlist / $RUNWAY_KUBE_ALLOWLIST.\n\n\
Examples:\n  runway kube get deployments/api -n prod -o json\n  runway kube restart deployments/api -n prod\n  \
runway kube scale deployments/api --replicas 3 -n prod\n  runway kube delete-multiple pods -l app=flaky -n ci --max 10\n  \
runway kube drain nodes/ip-10-0-1-2 --timeout 5m\n  runway kube get customObjects/canary --api-version argoproj.io/v1alpha1 --kind Rollout\n\n\
Exit codes: 0 done, 2 bad input, 3 denied by the allowlist or a safety rule, 4 Kubernetes refused \
(RBAC 403, not found, conflict), 5 timeout.";

#[derive(Args, Debug)]
pub struct KubeArgs {
    #[command(subcommand)]
    command: KubeCommand,
    #[command(flatten)]
    global: Global,
}

/// Flags every `runway kube` command takes.
#[derive(Args, Debug, Clone)]
struct Global {
    /// Namespace of the object (default: the pod's own, or the kubeconfig's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    /// Output: `text` (one short line) or `json` ({"summary", "changed", "result"}).
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Ask the API server to check everything and change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Give up after this long: `30s`, `5m`, `1h` or seconds (at most 24h).
    #[arg(long, global = true, value_parser = parse_duration, default_value = "5m")]
    timeout: Duration,
    /// The allowlist file (default: $RUNWAY_KUBE_ALLOWLIST, mounted by the chart).
    #[arg(
        long,
        global = true,
        env = "RUNWAY_KUBE_ALLOWLIST",
        hide_env_values = true
    )]
    allowlist: Option<PathBuf>,
    /// A kubeconfig to use instead of the executor or the pod's
    /// ServiceAccount ($KUBECONFIG works too).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum KubeCommand {
    /// Show one object: `get deployments/api`. Secret values stay hidden
    /// unless `kubernetesActions.secrets` lists `getData`.
    Get(ObjectArgs),
    /// List objects, optionally by label: `list pods -l app=api`.
    List(SelectorArgs),
    /// Create an object from a JSON or YAML body: `create configmaps -f cm.yaml`.
    Create(BodyArgs),
    /// Replace an object with a body: `update configmaps/settings -f cm.yaml`.
    Update(BodyArgs),
    /// Patch an object: `patch deployments/api --body '{"spec":{"paused":true}}'`.
    Patch(PatchArgs),
    /// Delete one object: `delete pods/api-7f9c`.
    Delete(ObjectArgs),
    /// Delete the objects a label selector matches, refusing more than --max:
    /// `delete-multiple pods -l app=flaky`.
    DeleteMultiple(DeleteMultipleArgs),
    /// Restart a deployment, statefulSet or daemonSet's pods, as
    /// `kubectl rollout restart` does.
    Restart(ObjectArgs),
    /// Set the replicas of a deployment, statefulSet or replicaSet.
    Scale(ScaleArgs),
    /// Roll a deployment back to its previous revision.
    Rollback(ObjectArgs),
    /// Wait until a deployment, statefulSet or daemonSet is rolled out
    /// (bounded by --timeout; exit 5 when it is not).
    RolloutStatus(ObjectArgs),
    /// Mark a node unschedulable.
    Cordon(ObjectArgs),
    /// Mark a node schedulable again.
    Uncordon(ObjectArgs),
    /// Cordon a node and evict its pods through the Eviction API:
    /// PodDisruptionBudgets are honoured, never forced.
    Drain(ObjectArgs),
    /// Start a Job from a CronJob now: `trigger cronjobs/nightly`.
    Trigger(ObjectArgs),
    /// Print a pod's logs: `logs pods/api-7f9c -c app --tail 100`.
    Logs(LogsArgs),
    /// Run a payload file of actions (the Datadog cluster agent's format),
    /// each at most once (recorded in the ConfigMap runway-kubeactions-state).
    RunPayload(RunPayloadArgs),
}

/// The object: `RESOURCE/NAME` or `RESOURCE NAME`.
#[derive(Args, Debug, Clone)]
struct ObjectArgs {
    /// `deployments/api`, or `deployments` with NAME. Resources are the
    /// `kubernetesActions` keys; kubectl's names work too (deploy, po, cm, ...).
    target: String,
    /// The object's name, when not given as RESOURCE/NAME.
    name: Option<String>,
    /// customObjects: the `group/version` (e.g. argoproj.io/v1alpha1).
    #[arg(long)]
    api_version: Option<String>,
    /// customObjects: the kind (e.g. Rollout).
    #[arg(long)]
    kind: Option<String>,
}

#[derive(Args, Debug)]
struct SelectorArgs {
    #[command(flatten)]
    object: ObjectArgs,
    /// Label selector: `app=api,tier!=cache`.
    #[arg(short = 'l', long)]
    selector: Option<String>,
}

#[derive(Args, Debug)]
struct DeleteMultipleArgs {
    #[command(flatten)]
    object: ObjectArgs,
    /// Label selector (required, never empty: deleteMultiple never deletes everything).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Refuse (and delete nothing) when the selector matches more objects.
    #[arg(long, default_value_t = DEFAULT_MAX)]
    max: usize,
}

#[derive(Args, Debug)]
struct BodyArgs {
    #[command(flatten)]
    object: ObjectArgs,
    /// The body from a JSON or YAML file (`-` for stdin).
    #[arg(short = 'f', long, conflicts_with = "body")]
    file: Option<PathBuf>,
    /// The body as JSON.
    #[arg(long)]
    body: Option<String>,
}

#[derive(Args, Debug)]
struct PatchArgs {
    #[command(flatten)]
    body: BodyArgs,
    /// How the patch applies: merge (RFC 7386), strategic, or json (RFC 6902).
    #[arg(long = "type", value_enum, default_value_t = PatchType::Merge)]
    patch_type: PatchType,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum PatchType {
    Merge,
    Strategic,
    Json,
}

#[derive(Args, Debug)]
struct ScaleArgs {
    #[command(flatten)]
    object: ObjectArgs,
    /// The replicas to set.
    #[arg(long)]
    replicas: i32,
}

#[derive(Args, Debug)]
struct LogsArgs {
    #[command(flatten)]
    object: ObjectArgs,
    /// The container (default: the pod's only one).
    #[arg(short, long)]
    container: Option<String>,
    /// Only the last N lines.
    #[arg(long)]
    tail: Option<i64>,
}

#[derive(Args, Debug)]
struct RunPayloadArgs {
    /// The payload file (JSON; `-` for stdin).
    file: PathBuf,
}

/// `30s`, `5m`, `1h`, `90` (seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use 30s, 5m, 1h or seconds"))?;
    let per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(format!(
                "`{text}` is not a duration: use 30s, 5m, 1h or seconds"
            ));
        }
    };
    let max = super::action::MAX_TIMEOUT;
    let too_long = || {
        format!(
            "the timeout `{text}` is over the {}h limit",
            max.as_secs() / 3600
        )
    };
    let seconds = n.checked_mul(per_unit).ok_or_else(too_long)?;
    if seconds == 0 {
        return Err("the timeout must be more than 0".into());
    }
    let duration = Duration::from_secs(seconds);
    if duration > max {
        return Err(too_long());
    }
    Ok(duration)
}

/// `deployments/api` or (`deployments`, `api`) into the resource and name.
fn parse_target(object: &ObjectArgs, verb: Verb) -> Result<Action, ActionError> {
    let (word, name) = match object.target.split_once('/') {
        Some((word, name)) => {
            if object.name.is_some() {
                return Err(ActionError::BadInput(format!(
                    "give the name once: `{}` or `{word} {name}`",
                    object.target
                )));
            }
            (word, Some(name.to_string()))
        }
        None => (object.target.as_str(), object.name.clone()),
    };
    let resource = Resource::from_cli(word).ok_or_else(|| {
        ActionError::BadInput(format!(
            "unknown resource `{word}`; known: {}",
            Resource::ALL.map(Resource::key).join(", ")
        ))
    })?;
    let mut action = Action::new(verb, resource);
    action.name = name.filter(|n| !n.is_empty());
    match (resource, &object.api_version, &object.kind) {
        (Resource::CustomObjects, Some(api_version), Some(kind)) => {
            let (group, version) = api_version.split_once('/').ok_or_else(|| {
                ActionError::BadInput(format!(
                    "--api-version `{api_version}` must be group/version, e.g. argoproj.io/v1alpha1"
                ))
            })?;
            action.custom = Some(CustomKind {
                group: group.into(),
                version: version.into(),
                kind: kind.clone(),
                plural: None,
            });
        }
        (Resource::CustomObjects, _, _) => {
            return Err(ActionError::BadInput(
                "customObjects need --api-version group/version and --kind".into(),
            ));
        }
        (_, None, None) => {}
        (_, _, _) => {
            return Err(ActionError::BadInput(format!(
                "--api-version and --kind are for customObjects only, not {resource}"
            )));
        }
    }
    Ok(action)
}

fn read_body(args: &BodyArgs) -> Result<Option<Value>, ActionError> {
    let text = match (&args.file, &args.body) {
        (Some(path), _) if path.as_os_str() == "-" => std::io::read_to_string(std::io::stdin())
            .map_err(|e| ActionError::BadInput(format!("reading the body from stdin: {e}")))?,
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
            ActionError::BadInput(format!("reading the body from {}: {e}", path.display()))
        })?,
        (None, Some(body)) => body.clone(),
        (None, None) => return Ok(None),
    };
    // YAML is a superset of JSON: one parser reads both.
    let value: Value = serde_yaml::from_str(&text)
        .map_err(|e| ActionError::BadInput(format!("the body is neither JSON nor YAML: {e}")))?;
    Ok(Some(value))
}

/// The action a command describes (all but `run-payload`).
fn action_of(command: &KubeCommand, global: &Global) -> Result<Action, ActionError> {
    let mut action = match command {
        KubeCommand::Get(o) => parse_target(o, Verb::Get)?,
        KubeCommand::Delete(o) => parse_target(o, Verb::Delete)?,
        KubeCommand::Restart(o) => parse_target(o, Verb::Restart)?,
        KubeCommand::Rollback(o) => parse_target(o, Verb::Rollback)?,
        KubeCommand::RolloutStatus(o) => parse_target(o, Verb::RolloutStatus)?,
        KubeCommand::Cordon(o) => parse_target(o, Verb::Cordon)?,
        KubeCommand::Uncordon(o) => parse_target(o, Verb::Uncordon)?,
        KubeCommand::Drain(o) => parse_target(o, Verb::Drain)?,
        KubeCommand::Trigger(o) => parse_target(o, Verb::Trigger)?,
        KubeCommand::List(a) => {
            let mut action = parse_target(&a.object, Verb::List)?;
            action.selector = a.selector.clone();
            action
        }
        KubeCommand::DeleteMultiple(a) => {
            let mut action = parse_target(&a.object, Verb::DeleteMultiple)?;
            action.selector = a.selector.clone();
            action.max = a.max;
            action
        }
        KubeCommand::Create(b) => {
            let mut action = parse_target(&b.object, Verb::Create)?;
            action.body = read_body(b)?;
            action
        }
        KubeCommand::Update(b) => {
            let mut action = parse_target(&b.object, Verb::Update)?;
            action.body = read_body(b)?;
            action
        }
        KubeCommand::Patch(p) => {
            let mut action = parse_target(&p.body.object, Verb::Patch)?;
            action.body = read_body(&p.body)?;
            action.patch_kind = match p.patch_type {
                PatchType::Merge => PatchKind::Merge,
                PatchType::Strategic => PatchKind::Strategic,
                PatchType::Json => PatchKind::Json,
            };
            action
        }
        KubeCommand::Scale(s) => {
            let mut action = parse_target(&s.object, Verb::Scale)?;
            action.replicas = Some(s.replicas);
            action
        }
        KubeCommand::Logs(l) => {
            let mut action = parse_target(&l.object, Verb::Logs)?;
            action.container = l.container.clone();
            action.tail_lines = l.tail;
            action
        }
        KubeCommand::RunPayload(_) => {
            return Err(ActionError::BadInput(
                "run-payload runs many actions".into(),
            ));
        }
    };
    action.namespace = global.namespace.clone();
    action.dry_run = global.dry_run;
    action.timeout = global.timeout;
    Ok(action)
}

pub async fn run(args: KubeArgs) -> ExitCode {
    let output = args.global.output;
    let executor = executor_of(&args.global);
    if let KubeCommand::RunPayload(p) = &args.command {
        return match run_payload_file(&args.global, &p.file, executor.as_ref()).await {
            Ok(code) => code,
            Err(error) => fail(output, &error),
        };
    }
    let result = match &executor {
        Some(socket) => run_via(socket, &args).await,
        None => run_inner(args).await,
    };
    match result {
        Ok(outcome) => {
            print_outcome(output, &outcome);
            ExitCode::SUCCESS
        }
        Err(error) => fail(output, &error),
    }
}

fn fail(output: Output, error: &ActionError) -> ExitCode {
    if output == Output::Json {
        println!(
            "{}",
            json!({"error": error.to_string(), "reason": error.kind(), "exitCode": error.exit_code()})
        );
    }
    eprintln!("runway kube: {error}");
    ExitCode::from(error.exit_code())
}

/// The executor to send actions to: $RUNWAY_KUBE_EXECUTOR in a runner pod
/// that has one, unless a kubeconfig or context is named (running
/// elsewhere, with credentials of one's own).
fn executor_of(global: &Global) -> Option<ExecutorSocket> {
    if global.kubeconfig.is_some() || global.context.is_some() {
        return None;
    }
    ExecutorSocket::from_env()
}

/// One action through the executor beside the job. The arguments are
/// checked here first (exit 2 without a round trip); the allowlist is the
/// executor's.
async fn run_via(socket: &ExecutorSocket, args: &KubeArgs) -> Result<Outcome, ActionError> {
    let action = action_of(&args.command, &args.global)?;
    socket
        .execute(&action, &AuditContext::from_env("cli"))
        .await
}

/// Runs a payload file: prints the report (JSON) and exits with the
/// highest exit code of its actions.
async fn run_payload_file(
    global: &Global,
    file: &std::path::Path,
    executor: Option<&ExecutorSocket>,
) -> Result<ExitCode, ActionError> {
    let bytes = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| ActionError::BadInput(format!("reading the payload from stdin: {e}")))?;
        buf
    } else {
        std::fs::read(file).map_err(|e| {
            ActionError::BadInput(format!("reading the payload {}: {e}", file.display()))
        })?
    };
    let payload = super::payload::Payload::from_json(&bytes)
        .map_err(|e| ActionError::BadInput(format!("{}: {e}", file.display())))?;
    if let Some(socket) = executor {
        let audit = AuditContext::from_env("payload");
        let report = socket.run_payload(bytes, &audit, global.timeout).await?;
        return Ok(print_report(&report));
    }
    let allowlist = Allowlist::load(global.allowlist.as_deref())?;
    let client =
        super::client::client(global.kubeconfig.as_deref(), global.context.as_deref()).await?;
    let audit = AuditContext::from_env("payload");
    let store = super::state::StateStore::from_env(client.clone());
    let executor = Executor::new(client, allowlist, audit);
    let report =
        super::run_payload::run_payload(&executor, &store, &payload, chrono::Utc::now()).await;
    Ok(print_report(&report))
}

fn print_report(report: &super::run_payload::PayloadReport) -> ExitCode {
    println!(
        "{}",
        serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".into())
    );
    ExitCode::from(report.exit_code())
}

async fn run_inner(args: KubeArgs) -> Result<Outcome, ActionError> {
    let global = &args.global;
    let allowlist = Allowlist::load(global.allowlist.as_deref())?;
    let action = action_of(&args.command, global)?;
    // The executor validates and checks the allowlist before any call:
    // building a client talks to no one.
    let client =
        super::client::client(global.kubeconfig.as_deref(), global.context.as_deref()).await?;
    let executor = Executor::new(client, allowlist, AuditContext::from_env("cli"));
    executor.execute(&action).await
}

fn print_outcome(output: Output, outcome: &Outcome) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(outcome).unwrap_or_else(|_| "{}".into())
        ),
        Output::Text => match outcome.result.get("log").and_then(Value::as_str) {
            Some(log) => print!("{log}"),
            None => println!("{}", outcome.summary),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        kube: KubeArgs,
    }

    fn action(args: &[&str]) -> Result<Action, ActionError> {
        let mut all = vec!["runway"];
        all.extend_from_slice(args);
        let w = Wrap::try_parse_from(all).expect("arguments parse");
        action_of(&w.kube.command, &w.kube.global)
    }

    #[test]
    fn kubectl_like_arguments() {
        let a = action(&["restart", "deploy/api", "-n", "prod", "--dry-run"]).unwrap();
        assert_eq!((a.verb, a.resource), (Verb::Restart, Resource::Deployments));
        assert_eq!(a.name.as_deref(), Some("api"));
        assert_eq!(a.namespace.as_deref(), Some("prod"));
        assert!(a.dry_run);
        let a = action(&["delete-multiple", "pods", "-l", "app=flaky", "--max", "3"]).unwrap();
        assert_eq!((a.selector.as_deref(), a.max), (Some("app=flaky"), 3));
        let a = action(&["get", "secrets", "db", "-o", "json", "--timeout", "30s"]).unwrap();
        assert_eq!(a.name.as_deref(), Some("db"));
        assert_eq!(a.timeout, Duration::from_secs(30));
        let a = action(&["patch", "cm/x", "--body", "{\"data\":{\"a\":\"b\"}}"]).unwrap();
        assert_eq!(a.body, Some(json!({"data": {"a": "b"}})));
        let a = action(&[
            "get",
            "customObjects/c",
            "--api-version",
            "argoproj.io/v1alpha1",
            "--kind",
            "Rollout",
        ])
        .unwrap();
        assert_eq!(a.custom.unwrap().group, "argoproj.io");
    }

    #[test]
    fn bad_arguments_say_what_to_fix() {
        let e = action(&["get", "widgets/x"]).unwrap_err();
        assert!(
            e.to_string().starts_with("unknown resource `widgets`"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
        let e = action(&["get", "pods/a", "b"]).unwrap_err();
        assert!(e.to_string().contains("give the name once"), "{e}");
        let e = action(&["get", "customObjects/c"]).unwrap_err();
        assert!(e.to_string().contains("--api-version"), "{e}");
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            crate::kube::action::DEFAULT_TIMEOUT,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn timeouts_that_overflow_or_exceed_a_day_are_refused() {
        for text in [
            "5124095576030432h",
            "307445734561825861m",
            "18446744073709551615h",
            "25h",
            "1441m",
            "86401",
        ] {
            let e = parse_duration(text).expect_err(text);
            assert!(e.contains("limit"), "{text}: {e}");
        }
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("86400s"), Ok(Duration::from_secs(86_400)));
        // Through clap, the refusal is an argument error, not a panic.
        let args = ["runway", "get", "pods/p", "--timeout", "5124095576030432h"];
        assert!(Wrap::try_parse_from(args).is_err());
    }

    /// Any `--timeout` text: a duration in (0, MAX_TIMEOUT] or an error.
    #[test]
    fn any_timeout_text_gives_a_bounded_duration_or_an_error() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let text = prop_oneof![
            3 => ("[0-9]{0,22}", prop::sample::select(vec!["s", "m", "h", "", "ms", "d", " s", "hh"]))
                .prop_map(|(n, unit)| format!("{n}{unit}")),
            1 => (any::<u64>(), prop::sample::select(vec!["s", "m", "h", ""]))
                .prop_map(|(n, unit)| format!("{n}{unit}")),
            1 => any::<String>(),
        ];
        let mut runner = TestRunner::new(Config {
            cases: 10_000,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&text, |text| {
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(d > Duration::ZERO && d <= crate::kube::action::MAX_TIMEOUT);
            }
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
}
