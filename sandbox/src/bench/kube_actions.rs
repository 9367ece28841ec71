//! `bench kube-actions`: what Runway's Kubernetes actions cost, against a
//! throw-away control plane and the real `runway` binary.
//!
//! - Cold CLI latency: [`CLI_RUNS`] runs of `runway kube get pods/<name> -n
//!   <ns> -o json`, each timed from process start to exit (config loading,
//!   TLS, one GET, JSON out): p50, p90, p99. Twice, runs interleaved: the CLI
//!   with the token itself (the baseline), and the CLI as a job step runs it
//!   in a runner pod, sending to the executor beside the job (`runway serve
//!   --local` on a Unix socket, holding the token); the difference is what
//!   the boundary costs a job step.
//! - `runway serve` throughput: N payloads of one distinct `get_pod` action
//!   each, POSTed with a bearer token over keep-alive connections, first one
//!   at a time, then [`CONCURRENCY`] at once. Every action is claimed and
//!   recorded in the state ConfigMap (two writes) around its GET, so this
//!   measures the exactly-once path, conflicts on the ConfigMap included.
//!
//! A CLI that cannot run (not built yet, a failing exit) is reported, not an
//! error: the serve numbers still stand. Anything else that fails stops the
//! run with an error.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use super::report::percentile;
use crate::binaries::{Binaries, BinariesError};
use crate::stage::{StageError, create_namespace};
use crate::{ClusterError, ControlPlane, paths};

/// Runs of the cold CLI measurement.
pub const CLI_RUNS: usize = 100;
/// Requests in flight in the concurrent serve run.
pub const CONCURRENCY: usize = 8;
const SANDBOX: &str = "bench-kube-actions";
const NAMESPACE: &str = "runway-bench";
const TARGET_POD: &str = "bench-target";
const TOKEN: &str = "bench-token-6f1d2c9a";
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum KubeActionsError {
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error("{what}: {source}")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("runway serve ({bin}) did not start: {reason}\n--- its stderr ---\n{log}")]
    ServeStart {
        bin: String,
        reason: String,
        log: String,
    },
    #[error("POST /v1/actions: {0}")]
    Request(String),
}

/// Cold CLI latencies, or why the CLI could not be measured.
#[derive(Debug, Clone, PartialEq)]
pub enum CliCold {
    Measured(Vec<Duration>),
    Unavailable(String),
}

/// One serve run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throughput {
    pub concurrency: usize,
    pub actions: usize,
    pub elapsed: Duration,
    /// Per request (one action each), sorted.
    pub latencies: Vec<Duration>,
    /// Actions not `succeeded` (with the first such result, for the report).
    pub failed: usize,
    pub first_failure: Option<String>,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.actions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What `bench kube-actions` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeActionsReport {
    pub cli_cold: CliCold,
    /// The same CLI runs through the executor beside the job.
    pub cli_executor: CliCold,
    pub sequential: Throughput,
    pub concurrent: Throughput,
}

/// Runs `bench kube-actions` with `runway_bin` (the `runway` binary) and
/// `actions` payload actions per serve run (Ctrl-C stops it).
pub async fn kube_actions(
    runway_bin: &Path,
    actions: usize,
) -> Result<KubeActionsReport, KubeActionsError> {
    tokio::select! {
        result = run(runway_bin, actions.max(1)) => result,
        _ = tokio::signal::ctrl_c() => Err(StageError::Interrupted.into()),
    }
}

/// Stops the control plane when dropped (also on an error or Ctrl-C).
struct PlaneGuard(ControlPlane);

impl Drop for PlaneGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop() {
            eprintln!("stopping the control plane: {e}");
        }
    }
}

async fn run(runway_bin: &Path, actions: usize) -> Result<KubeActionsReport, KubeActionsError> {
    let bins = Binaries::locate_or_install()?;
    let dir = paths::sandbox_dir(SANDBOX);
    let plane = PlaneGuard(ControlPlane::start(SANDBOX, &dir, &bins).await?);
    let client = plane.0.admin_client().await?;
    create_namespace(&client, NAMESPACE).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": TARGET_POD},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .map_err(|e| KubeActionsError::Kube {
        what: "the target pod",
        source: kube::Error::SerdeError(e),
    })?;
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|source| KubeActionsError::Kube {
            what: "creating the target pod",
            source,
        })?;

    let files = dir.join("kube-actions");
    let io = |what| move |source| KubeActionsError::Io { what, source };
    std::fs::create_dir_all(&files).map_err(io("creating the bench's file directory"))?;
    let allowlist = files.join("allowlist.yaml");
    std::fs::write(
        &allowlist,
        format!("actions:\n  pods: [get]\nnamespaces: [{NAMESPACE}]\n"),
    )
    .map_err(io("writing the allowlist"))?;
    let token = files.join("token");
    std::fs::write(&token, TOKEN).map_err(io("writing the token file"))?;
    let kubeconfig = plane.0.kubeconfig_path().to_path_buf();

    eprintln!("measuring {CLI_RUNS} cold `runway kube get` runs, direct and through the executor");
    let socket = files.join("executor.sock");
    let executor = start_executor(runway_bin, &kubeconfig, &allowlist, &socket).await?;
    let (cli_cold, cli_executor) = cli_runs(runway_bin, &kubeconfig, &allowlist, &socket).await;
    drop(executor);

    let serve = ServeProcess::start(runway_bin, &kubeconfig, &allowlist, &token).await?;
    let http: HttpClient<HttpConnector, axum::body::Body> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{}/v1/actions", serve.addr);
    eprintln!("serve: {actions} actions one at a time");
    let sequential = throughput(&http, &url, "seq", actions, 1).await?;
    eprintln!("serve: {actions} actions, {CONCURRENCY} at once");
    let concurrent = throughput(&http, &url, "c8", actions, CONCURRENCY).await?;
    drop(serve);
    drop(plane);
    Ok(KubeActionsReport {
        cli_cold,
        cli_executor,
        sequential,
        concurrent,
    })
}

/// `runway serve --local <socket>` with the admin kubeconfig standing in
/// for the runner pod's ServiceAccount token; killed when dropped.
async fn start_executor(
    bin: &Path,
    kubeconfig: &Path,
    allowlist: &Path,
    socket: &Path,
) -> Result<Child, KubeActionsError> {
    let fail = |reason: String| KubeActionsError::ServeStart {
        bin: bin.display().to_string(),
        reason,
        log: String::new(),
    };
    let child = Command::new(bin)
        .args(["serve", "--namespace", NAMESPACE])
        .arg("--local")
        .arg(socket)
        .arg("--allowlist")
        .arg(allowlist)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let started = Instant::now();
    while !socket.exists() {
        if started.elapsed() > STEP_TIMEOUT {
            return Err(fail(format!(
                "no socket {} within {STEP_TIMEOUT:?}",
                socket.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(child)
}

/// [`CLI_RUNS`] cold runs each way, interleaved so that both see the same
/// machine: (direct, through the executor).
async fn cli_runs(
    runway_bin: &Path,
    kubeconfig: &Path,
    allowlist: &Path,
    socket: &Path,
) -> (CliCold, CliCold) {
    let mut direct = Ok(Vec::with_capacity(CLI_RUNS));
    let mut via = Ok(Vec::with_capacity(CLI_RUNS));
    for _ in 0..CLI_RUNS {
        for (runs, through_executor) in [(&mut direct, false), (&mut via, true)] {
            let Ok(latencies) = runs else { continue };
            match cli_once(runway_bin, kubeconfig, allowlist, socket, through_executor).await {
                Ok(took) => latencies.push(took),
                Err(why) => *runs = Err(why),
            }
        }
    }
    let done = |runs: Result<Vec<Duration>, String>| match runs {
        Ok(mut latencies) => {
            latencies.sort();
            CliCold::Measured(latencies)
        }
        Err(why) => CliCold::Unavailable(why),
    };
    (done(direct), done(via))
}

/// One `runway kube get`, timed from process start to exit.
async fn cli_once(
    runway_bin: &Path,
    kubeconfig: &Path,
    allowlist: &Path,
    socket: &Path,
    through_executor: bool,
) -> Result<Duration, String> {
    let mut command = Command::new(runway_bin);
    command
        .args([
            "kube",
            "get",
            &format!("pods/{TARGET_POD}"),
            "-n",
            NAMESPACE,
        ])
        .args(["-o", "json"])
        .stdin(Stdio::null());
    if through_executor {
        // As a job step has it: no credential, only the socket.
        command
            .env("RUNWAY_KUBE_EXECUTOR", socket)
            .env_remove("KUBECONFIG")
            .env_remove("RUNWAY_KUBE_ALLOWLIST");
    } else {
        command
            .env("KUBECONFIG", kubeconfig)
            .env("RUNWAY_KUBE_ALLOWLIST", allowlist)
            .env_remove("RUNWAY_KUBE_EXECUTOR");
    }
    let started = Instant::now();
    let output = command.output().await;
    let took = started.elapsed();
    match output {
        Ok(out) if out.status.success() => Ok(took),
        Ok(out) => Err(format!(
            "`runway kube get` exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {runway_bin:?}: {e}")),
    }
}

/// `runway serve` on a free local port; killed when dropped.
struct ServeProcess {
    _child: Child,
    addr: String,
}

impl ServeProcess {
    async fn start(
        bin: &Path,
        kubeconfig: &Path,
        allowlist: &Path,
        token: &Path,
    ) -> Result<ServeProcess, KubeActionsError> {
        let fail = |reason: String, log: String| KubeActionsError::ServeStart {
            bin: bin.display().to_string(),
            reason,
            log,
        };
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--namespace", NAMESPACE])
            .arg("--token-file")
            .arg(token)
            .arg("--allowlist")
            .arg(allowlist)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(e.to_string(), String::new()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut log = String::new();
        let found = tokio::time::timeout(STEP_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("runway serve: listening on ") {
                    return Some(addr.trim().to_string());
                }
                log.push_str(&line);
                log.push('\n');
            }
            None
        })
        .await;
        let addr = match found {
            Ok(Some(addr)) => addr,
            Ok(None) => return Err(fail("it exited".into(), log)),
            Err(_) => return Err(fail(format!("no address within {STEP_TIMEOUT:?}"), log)),
        };
        // Keep draining stderr so that the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServeProcess {
            _child: child,
            addr,
        })
    }
}

/// A payload of one `get_pod` action with a fresh (id, version).
fn payload(id: &str) -> String {
    serde_json::json!({"actions": [{
        "metadata": {"id": id, "version": 1},
        "action_type": "get_pod",
        "resource": {"api_version": "v1", "kind": "Pod", "namespace": NAMESPACE, "name": TARGET_POD},
        "timestamp": {"seconds": chrono::Utc::now().timestamp(), "nanos": 0},
    }]})
    .to_string()
}

/// One POST; its latency and the action's status.
async fn post(
    http: &HttpClient<HttpConnector, axum::body::Body>,
    url: &str,
    body: String,
) -> Result<(Duration, String), KubeActionsError> {
    let request = http::Request::post(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .map_err(|e| KubeActionsError::Request(e.to_string()))?;
    let started = Instant::now();
    let response = tokio::time::timeout(STEP_TIMEOUT, http.request(request))
        .await
        .map_err(|_| KubeActionsError::Request(format!("no answer within {STEP_TIMEOUT:?}")))?
        .map_err(|e| KubeActionsError::Request(e.to_string()))?;
    let status = response.status();
    let bytes = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 20)
        .await
        .map_err(|e| KubeActionsError::Request(e.to_string()))?;
    let took = started.elapsed();
    if !status.is_success() {
        return Err(KubeActionsError::Request(format!(
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let report: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| KubeActionsError::Request(format!("not a report: {e}")))?;
    let result = &report["results"][0];
    let outcome = match result["status"].as_str() {
        Some("succeeded") => "succeeded".to_string(),
        Some(other) => format!("{other}: {}", result["message"].as_str().unwrap_or("")),
        None => format!("no result: {report}"),
    };
    Ok((took, outcome))
}

async fn throughput(
    http: &HttpClient<HttpConnector, axum::body::Body>,
    url: &str,
    run: &str,
    actions: usize,
    concurrency: usize,
) -> Result<Throughput, KubeActionsError> {
    let prefix = format!("bench-{run}-{:08x}", rand::random::<u32>());
    let started = Instant::now();
    let results: Vec<Result<(Duration, String), KubeActionsError>> =
        futures::stream::iter(0..actions)
            .map(|i| post(http, url, payload(&format!("{prefix}-{i}"))))
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut out = Throughput {
        concurrency,
        actions,
        elapsed,
        ..Throughput::default()
    };
    for result in results {
        let (took, outcome) = result?;
        out.latencies.push(took);
        if outcome != "succeeded" {
            out.failed += 1;
            out.first_failure.get_or_insert(outcome);
        }
    }
    out.latencies.sort();
    Ok(out)
}

/// What going through the executor adds to a cold `runway kube get`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Added {
    /// Executor minus direct, at each percentile (negative: faster).
    pub p50_ms: i128,
    pub p99_ms: i128,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
}

impl KubeActionsReport {
    /// The executor's cost, when both ways were measured.
    pub fn executor_added(&self) -> Option<Added> {
        let (CliCold::Measured(direct), CliCold::Measured(via)) =
            (&self.cli_cold, &self.cli_executor)
        else {
            return None;
        };
        let at = |l: &[Duration], q: f64| percentile(l, q).as_secs_f64() * 1000.0;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Some(Added {
            p50_ms: at(via, 0.5).round() as i128 - at(direct, 0.5).round() as i128,
            p99_ms: at(via, 0.99).round() as i128 - at(direct, 0.99).round() as i128,
            p50_ratio: ratio(at(via, 0.5), at(direct, 0.5)),
            p99_ratio: ratio(at(via, 0.99), at(direct, 0.99)),
        })
    }

    /// The one-line result.
    pub fn summary_line(&self) -> String {
        let cli = |name: &str, cold: &CliCold| match cold {
            CliCold::Measured(l) => format!(
                "{name}_p50={}ms {name}_p99={}ms",
                percentile(l, 0.5).as_millis(),
                percentile(l, 0.99).as_millis()
            ),
            CliCold::Unavailable(_) => format!("{name}=unavailable"),
        };
        let mut cli = format!(
            "{} {}",
            cli("cli_direct", &self.cli_cold),
            cli("cli_executor", &self.cli_executor)
        );
        if let Some(added) = self.executor_added() {
            cli.push_str(&format!(
                " executor_added_p50={}ms executor_added_p99={}ms",
                added.p50_ms, added.p99_ms
            ));
        }
        format!(
            "bench kube-actions: actions={} {cli} serve_seq={:.1}/s serve_c{}={:.1}/s failed={}",
            self.sequential.actions,
            self.sequential.per_second(),
            self.concurrent.concurrency,
            self.concurrent.per_second(),
            self.sequential.failed + self.concurrent.failed
        )
    }

    /// The table, then [`KubeActionsReport::summary_line`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "bench kube-actions: {} payload actions per serve run, one throw-away control plane",
            self.sequential.actions
        ));
        for (name, cold) in [
            ("direct (baseline)", &self.cli_cold),
            ("through the executor", &self.cli_executor),
        ] {
            match cold {
                CliCold::Measured(l) => line(format!(
                    "  `runway kube get` {name:<21} p50 {} ms, p90 {} ms, p99 {} ms, max {} ms   ({} runs, process start to exit)",
                    percentile(l, 0.5).as_millis(),
                    percentile(l, 0.9).as_millis(),
                    percentile(l, 0.99).as_millis(),
                    percentile(l, 1.0).as_millis(),
                    l.len()
                )),
                CliCold::Unavailable(why) => line(format!(
                    "  `runway kube get` {name:<21} not measured: {why}"
                )),
            }
        }
        if let Some(added) = self.executor_added() {
            line(format!(
                "  the executor adds       p50 {} ms, p99 {} ms   (ratio to direct: p50 {:.2}x, p99 {:.2}x)",
                added.p50_ms, added.p99_ms, added.p50_ratio, added.p99_ratio
            ));
        }
        for (name, t) in [
            ("serve, one at a time", &self.sequential),
            ("serve, concurrent", &self.concurrent),
        ] {
            line(format!(
                "  {:<24} {:>8.1} actions/s   ({} in {:.2} s, concurrency {}, request p50 {} ms, p90 {} ms)",
                name,
                t.per_second(),
                t.actions,
                t.elapsed.as_secs_f64(),
                t.concurrency,
                percentile(&t.latencies, 0.5).as_millis(),
                percentile(&t.latencies, 0.9).as_millis(),
            ));
            if let Some(first) = &t.first_failure {
                line(format!("    {} not succeeded; first: {first}", t.failed));
            }
        }
        line(self.summary_line());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn report(cli: CliCold) -> KubeActionsReport {
        KubeActionsReport {
            cli_executor: match &cli {
                CliCold::Measured(l) => CliCold::Measured(l.iter().map(|d| *d + ms(5)).collect()),
                other => other.clone(),
            },
            cli_cold: cli,
            sequential: Throughput {
                concurrency: 1,
                actions: 100,
                elapsed: Duration::from_secs(4),
                latencies: (1..=100).map(ms).collect(),
                failed: 0,
                first_failure: None,
            },
            concurrent: Throughput {
                concurrency: 8,
                actions: 100,
                elapsed: Duration::from_secs(2),
                latencies: (1..=100).map(ms).collect(),
                failed: 1,
                first_failure: Some("failed: boom".into()),
            },
        }
    }

    #[test]
    fn the_summary_line_has_every_number() {
        let r = report(CliCold::Measured((1..=100).map(|i| ms(i * 10)).collect()));
        assert_eq!(
            r.summary_line(),
            "bench kube-actions: actions=100 cli_direct_p50=500ms cli_direct_p99=990ms cli_executor_p50=505ms cli_executor_p99=995ms executor_added_p50=5ms executor_added_p99=5ms serve_seq=25.0/s serve_c8=50.0/s failed=1"
        );
        let rendered = r.render();
        assert!(
            rendered.contains("1 not succeeded; first: failed: boom"),
            "{rendered}"
        );
        assert!(rendered.ends_with(&format!("{}\n", r.summary_line())));
    }

    #[test]
    fn an_unavailable_cli_is_reported_not_hidden() {
        let r = report(CliCold::Unavailable("exited 2".into()));
        assert!(r.summary_line().contains("cli_direct=unavailable"));
        assert!(r.summary_line().contains("cli_executor=unavailable"));
        assert!(!r.summary_line().contains("executor_added"));
        assert!(r.render().contains("not measured: exited 2"));
    }

    #[test]
    fn payloads_have_distinct_ids() {
        let a: serde_json::Value = serde_json::from_str(&payload("x-1")).unwrap();
        assert_eq!(a["actions"][0]["metadata"]["id"], "x-1");
        assert_eq!(a["actions"][0]["action_type"], "get_pod");
    }
}
