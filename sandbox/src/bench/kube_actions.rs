//! `bench kube-actions`: what Runway's Kubernetes actions cost, against a
//! throw-away control plane and the real `runway` binary.
//!
//! - Cold CLI latency: [`CLI_RUNS`] runs of `runway kube get pods/<name> -n
//!   <ns> -o json`, each timed from process start to exit (config loading,
//!   TLS, one GET, JSON out): median and p90.
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
pub const CLI_RUNS: usize = 20;
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

    eprintln!("measuring {CLI_RUNS} cold `runway kube get` runs");
    let cli_cold = cli_cold(runway_bin, &kubeconfig, &allowlist).await;

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
        sequential,
        concurrent,
    })
}

async fn cli_cold(runway_bin: &Path, kubeconfig: &Path, allowlist: &Path) -> CliCold {
    let mut latencies = Vec::with_capacity(CLI_RUNS);
    for _ in 0..CLI_RUNS {
        let started = Instant::now();
        let output = Command::new(runway_bin)
            .args([
                "kube",
                "get",
                &format!("pods/{TARGET_POD}"),
                "-n",
                NAMESPACE,
            ])
            .args(["-o", "json"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUNWAY_KUBE_ALLOWLIST", allowlist)
            .stdin(Stdio::null())
            .output()
            .await;
        let took = started.elapsed();
        match output {
            Ok(out) if out.status.success() => latencies.push(took),
            Ok(out) => {
                return CliCold::Unavailable(format!(
                    "`runway kube get` exited {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => return CliCold::Unavailable(format!("cannot run {runway_bin:?}: {e}")),
        }
    }
    latencies.sort();
    CliCold::Measured(latencies)
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

impl KubeActionsReport {
    /// The one-line result.
    pub fn summary_line(&self) -> String {
        let cli = match &self.cli_cold {
            CliCold::Measured(l) => format!(
                "cli_cold_p50={}ms cli_cold_p90={}ms",
                percentile(l, 0.5).as_millis(),
                percentile(l, 0.9).as_millis()
            ),
            CliCold::Unavailable(_) => "cli_cold=unavailable".to_string(),
        };
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
        match &self.cli_cold {
            CliCold::Measured(l) => line(format!(
                "  `runway kube get` cold   p50 {} ms, p90 {} ms, max {} ms   ({} runs, process start to exit)",
                percentile(l, 0.5).as_millis(),
                percentile(l, 0.9).as_millis(),
                percentile(l, 1.0).as_millis(),
                l.len()
            )),
            CliCold::Unavailable(why) => {
                line(format!("  `runway kube get` cold   not measured: {why}"))
            }
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
        let r = report(CliCold::Measured((1..=20).map(|i| ms(i * 10)).collect()));
        assert_eq!(
            r.summary_line(),
            "bench kube-actions: actions=100 cli_cold_p50=100ms cli_cold_p90=180ms serve_seq=25.0/s serve_c8=50.0/s failed=1"
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
        assert!(r.summary_line().contains("cli_cold=unavailable"));
        assert!(r.render().contains("not measured: exited 2"));
    }

    #[test]
    fn payloads_have_distinct_ids() {
        let a: serde_json::Value = serde_json::from_str(&payload("x-1")).unwrap();
        assert_eq!(a["actions"][0]["metadata"]["id"], "x-1");
        assert_eq!(a["actions"][0]["action_type"], "get_pod");
    }
}
