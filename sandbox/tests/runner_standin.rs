//! The stand-in runner (`runway-runner-standin`) as a real process against a
//! real fake GitHub: the test plays the controller (scale set, session, JIT
//! config, acquiring the job) and checks what the controller would see on
//! the scale set's queue, what the steps did, and how the process ends.

#[allow(dead_code)]
#[path = "fake_github/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use runway_sandbox::github::{FakeGitHub, FakeOptions, NewJob};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use support::*;

const STANDIN: &str = env!("CARGO_BIN_EXE_runway-runner-standin");
const JIT_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";

/// A fake with scale set `arm` and a session on it, as the controller has.
struct Setup {
    github: FakeGitHub,
    service: Service,
    session: Session,
    scale_set_id: i64,
}

async fn setup(opts: FakeOptions) -> Setup {
    let (github, service, scale_set_id, session) = session_for(opts).await;
    Setup {
        github,
        service,
        session,
        scale_set_id,
    }
}

impl Setup {
    /// A JIT config for a new runner, as the controller asks for it: the
    /// runner id and the encoded config.
    async fn jit_config(&self, name: &str) -> (i64, String) {
        let path = format!("{}/generatejitconfig", scale_set_path(self.scale_set_id));
        let (status, jit) = self
            .service
            .post(&path, json!({"name": name, "workFolder": "_work"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{jit}");
        (
            jit["runner"]["id"].as_i64().expect("runner id"),
            jit["encodedJITConfig"]
                .as_str()
                .expect("encodedJITConfig")
                .to_string(),
        )
    }

    /// Queues a job with these steps and acquires it as the listener does.
    async fn queue_acquired(&self, steps: &[String]) -> i64 {
        let job = NewJob {
            steps: steps.to_vec(),
            ..Default::default()
        };
        let id = self
            .github
            .queue_job(self.scale_set_id, job)
            .runner_request_id;
        let (status, acquired) = self.session.acquire(&self.service, &[id]).await;
        assert_eq!(status, StatusCode::OK, "{acquired}");
        assert_eq!(acquired["value"], json!([id]));
        id
    }

    /// Every job message up to this job's JobCompleted.
    async fn events_until_completed(&self, id: i64) -> Vec<Value> {
        self.session
            .events_until(Duration::from_secs(10), |seen| {
                seen.iter().any(|m| {
                    m["messageType"] == "JobCompleted" && m["runnerRequestId"].as_i64() == Some(id)
                })
            })
            .await
    }
}

/// A running stand-in whose output lines arrive on a channel.
struct Standin {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

fn spawn_standin(encoded: &str, ca_file: Option<&Path>) -> Standin {
    let mut command = Command::new(STANDIN);
    command
        .env(JIT_ENV, encoded)
        .env_remove("RUNWAY_RUNNER_CA_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(ca) = ca_file {
        command.env("RUNWAY_RUNNER_CA_FILE", ca);
    }
    let mut child = command.spawn().expect("the stand-in starts");
    let (tx, lines) = mpsc::unbounded_channel();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    for (reader, prefix) in [
        (
            Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            "",
        ),
        (Box::new(err), "stderr: "),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(format!("{prefix}{line}"));
            }
        });
    }
    Standin {
        child,
        lines,
        seen: Vec::new(),
    }
}

impl Standin {
    /// Waits for an output line containing `text`.
    async fn wait_for_line(&mut self, text: &str, within: Duration) {
        let end = Instant::now() + within;
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                _ => panic!("no line with {text:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Waits for the process to end; its status and every output line.
    async fn finish(mut self, within: Duration) -> (ExitStatus, String) {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {within:?}; saw {:#?}", self.seen))
            .expect("waiting for the stand-in");
        // The readers end with the pipes.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await
        {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

/// A fresh directory for a test's files.
fn scratch_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "runway-standin-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn messages_of(events: &[Value], id: i64) -> Vec<&Value> {
    events
        .iter()
        .filter(|m| m["runnerRequestId"].as_i64() == Some(id))
        .collect()
}

fn types(messages: &[&Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["messageType"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_its_steps_for_real_and_succeeds() {
    let s = setup(long_poll(300)).await;
    let (runner_id, encoded) = s.jit_config("arm-runner-1").await;
    let dir = scratch_dir("ok");
    let marker = dir.join("marker");
    let mut standin = spawn_standin(&encoded, None);
    standin
        .wait_for_line("listening for jobs", Duration::from_secs(10))
        .await;

    let steps = vec![
        format!("echo first > {}", marker.display()),
        "echo hello from a step; echo to stderr >&2".to_string(),
        format!(
            "echo \"$RUNNER_NAME ${{ACTIONS_RUNNER_INPUT_JITCONFIG:-no-jit}}\" >> {}",
            marker.display()
        ),
    ];
    let id = s.queue_acquired(&steps).await;
    let (status, output) = standin.finish(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(output.contains("hello from a step"), "{output}");
    assert!(output.contains("stderr: to stderr"), "{output}");
    assert_eq!(
        std::fs::read_to_string(&marker).expect("the steps wrote the marker"),
        "first\narm-runner-1 no-jit\n",
        "the steps ran in order, with RUNNER_NAME and without the JIT config"
    );

    let events = s.events_until_completed(id).await;
    let job = messages_of(&events, id);
    assert_eq!(
        types(&job),
        ["JobAvailable", "JobAssigned", "JobStarted", "JobCompleted"]
    );
    assert_eq!(job[2]["runnerName"], "arm-runner-1");
    assert_eq!(job[2]["runnerId"].as_i64(), Some(runner_id));
    assert_eq!(job[3]["result"], "succeeded");
    assert_eq!(job[3]["runnerId"].as_i64(), Some(runner_id));

    let report = s.github.job_report(id).expect("a report");
    assert_eq!(report.result, "succeeded");
    assert_eq!(report.runner_name, "arm-runner-1");
    assert_eq!((report.failed_step, report.exit_code), (None, None));
    assert!(
        report.output_tail.iter().any(|l| l == "hello from a step"),
        "{:?}",
        report.output_tail
    );
    assert!(
        s.github.snapshot().runners.is_empty(),
        "the ephemeral runner is removed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_job_with_step_and_code_and_the_runner_still_exits_0() {
    let s = setup(long_poll(300)).await;
    let (_, encoded) = s.jit_config("arm-runner-2").await;
    let dir = scratch_dir("fail");
    let never = dir.join("never");
    // Queued through the control API, as tools and the demo do.
    let control = Control::of(&s.github, &client());
    let body = json!({
        "scaleSetId": s.scale_set_id,
        "steps": ["echo before the failure", "exit 3", format!("touch {}", never.display())],
    });
    let (status, queued) = control.post("jobs", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    let id = queued["runnerRequestId"].as_i64().expect("runnerRequestId");
    let (status, _) = control.get(&format!("jobs/{id}/report")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no report before the run");
    s.session.acquire(&s.service, &[id]).await;

    let (status, output) = spawn_standin(&encoded, None)
        .finish(Duration::from_secs(20))
        .await;
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(!never.exists(), "no step runs after the failing one");

    let events = s.events_until_completed(id).await;
    let job = messages_of(&events, id);
    assert_eq!(types(&job).last().map(String::as_str), Some("JobCompleted"));
    assert_eq!(
        job.last().map(|m| m["result"].clone()),
        Some(json!("failed"))
    );

    let (status, report) = control.get(&format!("jobs/{id}/report")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["result"], "failed");
    assert_eq!(report["failedStep"], 2);
    assert_eq!(report["failedCommand"], "exit 3");
    assert_eq!(report["exitCode"], 3);
    assert!(
        report["outputTail"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l == "before the failure")),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_and_unknown_jit_configs_are_refused() {
    let s = setup(long_poll(300)).await;
    let (_, encoded) = s.jit_config("arm-runner-3").await;
    let id = s.queue_acquired(&["true".to_string()]).await;
    let (status, output) = spawn_standin(&encoded, None)
        .finish(Duration::from_secs(20))
        .await;
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(
        s.github.job_report(id).map(|r| r.result).as_deref(),
        Some("succeeded")
    );

    // The same config again: its runner already took a job.
    let (status, output) = spawn_standin(&encoded, None)
        .finish(Duration::from_secs(10))
        .await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("spent"), "{output}");
    assert!(output.contains("already took job"), "{output}");

    // A config whose runner was deleted before it came online.
    let (runner_id, deleted) = s.jit_config("arm-runner-4").await;
    let (status, _) = s.service.delete(&agent_path(runner_id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, output) = spawn_standin(&deleted, None)
        .finish(Duration::from_secs(10))
        .await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("spent") && output.contains("deleted"),
        "{output}"
    );

    // A config the fake never issued (another fake's, or forged).
    let other = setup(long_poll(300)).await;
    let (_, foreign) = other.jit_config("arm-runner-5").await;
    let foreign = foreign_to(&foreign, &s.github);
    let (status, output) = spawn_standin(&foreign, None)
        .finish(Duration::from_secs(10))
        .await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("unknown"), "{output}");

    // Not a JIT config at all.
    let (status, output) = spawn_standin("bm90IGpzb24=", None)
        .finish(Duration::from_secs(10))
        .await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("not the JSON expected"), "{output}");
}

/// The JIT config of another fake, pointed at `github`.
fn foreign_to(encoded: &str, github: &FakeGitHub) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let decode = |s: &str| STANDARD.decode(s).expect("base64");
    let mut files: serde_json::Map<String, Value> =
        serde_json::from_slice(&decode(encoded)).expect("a JSON map");
    let runner = files[".runner"].as_str().expect(".runner").to_string();
    let mut runner: Value = serde_json::from_slice(&decode(&runner)).expect(".runner JSON");
    runner["ServerUrl"] = json!(format!("{}/_services/pipelines/1/", github.base_url()));
    files.insert(".runner".into(), json!(STANDARD.encode(runner.to_string())));
    STANDARD.encode(Value::Object(files).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_idle_ends_it_promptly() {
    let s = setup(long_poll(5_000)).await;
    let (_, encoded) = s.jit_config("arm-runner-6").await;
    let mut standin = spawn_standin(&encoded, None);
    standin
        .wait_for_line("listening for jobs", Duration::from_secs(10))
        .await;
    // Idle in a long poll for a while.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = standin.child.id().expect("running");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    let sent = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let (status, output) = standin.finish(Duration::from_secs(5)).await;
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "{output}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(output.contains("stop signal while idle"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_step_kills_it_and_reports_the_job_canceled() {
    let s = setup(long_poll(300)).await;
    let (_, encoded) = s.jit_config("arm-runner-9").await;
    let id = s
        .queue_acquired(&["echo sleeping; sleep 30".to_string(), "true".to_string()])
        .await;
    let mut standin = spawn_standin(&encoded, None);
    standin
        .wait_for_line("sleeping", Duration::from_secs(10))
        .await;
    let pid = standin.child.id().expect("running");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    let sent = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let (status, output) = standin.finish(Duration::from_secs(10)).await;
    assert!(sent.elapsed() < Duration::from_secs(5), "{output}");
    assert_eq!(status.code(), Some(0), "{output}");
    let report = s.github.job_report(id).expect("a report");
    assert_eq!(
        (report.result.as_str(), report.failed_step, report.exit_code),
        ("canceled", Some(1), None)
    );
    let events = s.events_until_completed(id).await;
    let job = messages_of(&events, id);
    assert_eq!(
        job.last().map(|m| m["result"].clone()),
        Some(json!("canceled"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_deleted_while_idle_ends_with_an_error() {
    let s = setup(long_poll(5_000)).await;
    let (runner_id, encoded) = s.jit_config("arm-runner-8").await;
    let mut standin = spawn_standin(&encoded, None);
    standin
        .wait_for_line("listening for jobs", Duration::from_secs(10))
        .await;
    let (status, _) = s.service.delete(&agent_path(runner_id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, output) = standin.finish(Duration::from_secs(3)).await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("deleted"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_with_the_fakes_ca() {
    let opts = FakeOptions {
        tls: true,
        ..long_poll(300)
    };
    let github = start(opts).await;
    let ca = github.ca_cert_pem().expect("a CA");
    let client = client_trusting(Some(&ca));
    let service = connect_to(&github, &client, "orgs/my-org", "my-org").await;
    let scale_set_id = service.create_scale_set("arm").await;
    let session = service.create_session(scale_set_id).await;
    let s = Setup {
        github,
        service,
        session,
        scale_set_id,
    };
    let (_, encoded) = s.jit_config("arm-runner-7").await;
    let dir = scratch_dir("tls");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca).expect("the CA file");
    let id = s.queue_acquired(&["echo over tls".to_string()]).await;

    // Without the CA file it cannot work, and says so.
    let (status, output) = spawn_standin(&encoded, None)
        .finish(Duration::from_secs(10))
        .await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("RUNWAY_RUNNER_CA_FILE"), "{output}");

    let (status, output) = spawn_standin(&encoded, Some(&ca_file))
        .finish(Duration::from_secs(20))
        .await;
    assert_eq!(status.code(), Some(0), "{output}");
    assert_eq!(
        s.github.job_report(id).map(|r| r.result).as_deref(),
        Some("succeeded")
    );
    let _ = std::fs::remove_dir_all(dir);
}
