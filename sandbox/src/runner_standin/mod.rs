//! `runway-runner-standin`: what runs in a sandbox runner container instead
//! of GitHub's runner, and behaves like it as far as the controller can
//! tell. It reads the JIT config the controller put in the pod
//! (`ACTIONS_RUNNER_INPUT_JITCONFIG`), comes online with the fake GitHub as
//! that runner (the fake refuses an unknown or spent config: the stand-in
//! prints why and exits 1), waits for one job (as long as it takes; SIGTERM
//! or SIGINT ends the wait at once, exit 0), runs the job's steps with
//! `sh -c` in order until one fails, reports the result and exits 0, also
//! when a step failed: an ephemeral runner runs one job and ends.
//!
//! It speaks the fake's `/_runner/` routes (see `github::runner_api`), over
//! http or https (trusting the CA in `RUNWAY_RUNNER_CA_FILE`), to a loopback
//! address only. Files: `jit` (the config), `decide` (every decision, pure),
//! `http` (the client), `steps` (running them).
//!
//! Exit codes: 0 job run and reported, or stopped by a signal; 1 refused by
//! the fake (unknown or spent config, runner deleted, report refused);
//! 2 misconfigured (no or bad JIT config, unusable CA file).

pub mod decide;
pub mod http;
pub mod jit;
pub mod steps;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ::http::Method;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Mutex;

use self::decide::{Exit, Online, Poll, Report, StepEnd};
use self::http::Client;
use self::jit::JitConfig;
use self::steps::Tail;

/// Where the controller puts the encoded JIT config.
pub const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";
/// The PEM file of the CA to trust when the server URL is https.
pub const CA_FILE_ENV: &str = "RUNWAY_RUNNER_CA_FILE";

/// How long one job poll may be held by the fake.
const POLL_WAIT: Duration = Duration::from_secs(30);
/// Bound on a request that is not a long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A report is retried this long before the stand-in gives up.
const REPORT_PATIENCE: Duration = Duration::from_secs(60);
/// After a stop signal the report gets this long.
const REPORT_PATIENCE_STOPPING: Duration = Duration::from_secs(5);

/// The binary's `main`: runs the stand-in on a single-threaded runtime.
pub fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let exit = match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => Exit::Misconfigured(format!("starting the async runtime: {e}")),
    };
    match &exit {
        Exit::JobDone | Exit::Stopped => {}
        Exit::Refused(why) | Exit::Misconfigured(why) => eprintln!("runner: error: {why}"),
    }
    ExitCode::from(exit.code())
}

fn say(line: &str) {
    println!("runner: {line}");
}

/// SIGTERM or SIGINT.
struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        Ok(Stop {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Runs the stand-in: the environment in, how it ends out.
pub async fn run() -> Exit {
    let mut stop = match Stop::new() {
        Ok(stop) => stop,
        Err(e) => return Exit::Misconfigured(format!("installing signal handlers: {e}")),
    };
    let encoded = std::env::var(JIT_CONFIG_ENV).unwrap_or_default();
    let config = match jit::decode(&encoded) {
        Ok(config) => config,
        Err(e) => return Exit::Misconfigured(e.to_string()),
    };
    let ca_file = std::env::var(CA_FILE_ENV).ok();
    let client = match Client::new(
        config.origin.clone(),
        config.credential.clone(),
        ca_file.as_deref(),
    ) {
        Ok(client) => client,
        Err(e) => return Exit::Misconfigured(e.to_string()),
    };
    say(&format!(
        "runner {} (id {}) of scale set {}, service {}",
        config.runner_name, config.runner_id, config.scale_set_id, config.server_url
    ));
    serve(&config, &client, &mut stop).await
}

/// Sleeps `delay`, or returns true if a stop signal came first.
async fn pause(delay: Duration, stop: &mut Stop) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = stop.wait() => true,
    }
}

async fn serve(config: &JitConfig, client: &Client, stop: &mut Stop) -> Exit {
    let id = config.runner_id;
    if let Some(exit) = come_online(id, client, stop).await {
        return exit;
    }
    say("connected to GitHub");
    say("listening for jobs");
    let job = match wait_for_job(id, client, stop).await {
        Ok(job) => job,
        Err(exit) => return exit,
    };
    let name = job.display_name.clone().unwrap_or_default();
    say(&format!(
        "running job {name:?} (runner request {}), {} step(s)",
        job.runner_request_id,
        job.steps.len()
    ));
    let (outcome, tail, stopped) = run_steps(config, &job.steps, stop).await;
    match (outcome.failed_step, outcome.exit_code) {
        (Some(step), Some(code)) => say(&format!(
            "job {name:?} completed with result: {} (step {step} exited with {code})",
            outcome.result
        )),
        _ => say(&format!(
            "job {name:?} completed with result: {}",
            outcome.result
        )),
    }
    let body = serde_json::json!({
        "result": outcome.result,
        "failedStep": outcome.failed_step,
        "failedCommand": outcome.failed_command,
        "exitCode": outcome.exit_code,
        "outputTail": tail,
    });
    let path = format!(
        "/_runner/runners/{id}/jobs/{}/result",
        job.runner_request_id
    );
    let patience = if stopped {
        REPORT_PATIENCE_STOPPING
    } else {
        REPORT_PATIENCE
    };
    if let Err(exit) = report(client, &path, body.to_string().into_bytes(), patience).await {
        return exit;
    }
    if stopped {
        Exit::Stopped
    } else {
        Exit::JobDone
    }
}

/// None once online; Some(how to end) otherwise.
async fn come_online(id: i64, client: &Client, stop: &mut Stop) -> Option<Exit> {
    let path = format!("/_runner/runners/{id}/online");
    let mut failures = 0u32;
    loop {
        let reply = tokio::select! {
            reply = client.send(Method::POST, &path, None, REQUEST_TIMEOUT) => reply,
            () = stop.wait() => return Some(Exit::Stopped),
        };
        let decision = match reply {
            Ok((status, body)) => decide::online(status, &body),
            Err(e) => Online::Retry(e.to_string()),
        };
        match decision {
            Online::Online { .. } => return None,
            Online::Spent(why) => {
                return Some(Exit::Refused(format!(
                    "the JIT config is spent, the fake GitHub refused it: {why}"
                )));
            }
            Online::Unknown(why) => {
                return Some(Exit::Refused(format!(
                    "the JIT config is unknown to the fake GitHub: {why}"
                )));
            }
            Online::Fatal(why) => {
                return Some(Exit::Refused(format!("coming online failed: {why}")));
            }
            Online::Retry(why) => {
                say(&format!("coming online failed, retrying: {why}"));
                if pause(decide::backoff(failures), stop).await {
                    return Some(Exit::Stopped);
                }
                failures = failures.saturating_add(1);
            }
        }
    }
}

/// Polls until a job comes (forever, like an idle runner) or a signal.
async fn wait_for_job(id: i64, client: &Client, stop: &mut Stop) -> Result<decide::Job, Exit> {
    let path = format!("/_runner/runners/{id}/job?waitMs={}", POLL_WAIT.as_millis());
    let timeout = POLL_WAIT.saturating_add(REQUEST_TIMEOUT);
    let mut failures = 0u32;
    loop {
        let reply = tokio::select! {
            reply = client.send(Method::GET, &path, None, timeout) => reply,
            () = stop.wait() => {
                say("stop signal while idle: exiting");
                return Err(Exit::Stopped);
            }
        };
        let decision = match reply {
            Ok((status, body)) => decide::poll(status, &body),
            Err(e) => Poll::Retry(e.to_string()),
        };
        match decision {
            Poll::Job(job) => return Ok(job),
            Poll::NoJob => failures = 0,
            Poll::Gone(why) => {
                return Err(Exit::Refused(format!(
                    "the runner is gone or its JIT config spent: {why}"
                )));
            }
            Poll::Fatal(why) => return Err(Exit::Refused(format!("asking for a job: {why}"))),
            Poll::Retry(why) => {
                say(&format!("asking for a job failed, retrying: {why}"));
                if pause(decide::backoff(failures), stop).await {
                    return Err(Exit::Stopped);
                }
                failures = failures.saturating_add(1);
            }
        }
    }
}

/// Runs the steps in order until one does not succeed or a stop signal
/// comes. Returns the outcome, the output's last lines and whether it was
/// stopped.
async fn run_steps(
    config: &JitConfig,
    job_steps: &[String],
    stop: &mut Stop,
) -> (decide::Outcome, Vec<String>, bool) {
    let tail = Mutex::new(Tail::default());
    let env = [
        ("CI", "true".to_string()),
        ("GITHUB_ACTIONS", "true".to_string()),
        ("RUNNER_NAME", config.runner_name.clone()),
    ];
    let mut ends = Vec::new();
    let mut stopped = false;
    let total = job_steps.len();
    for (index, step) in job_steps.iter().enumerate() {
        let header = format!("step {}/{total}: {step}", index.saturating_add(1));
        say(&header);
        tail.lock().await.push(format!("runner: {header}"));
        let end = match steps::spawn(step, &env, &[JIT_CONFIG_ENV, CA_FILE_ENV]) {
            Ok(child) => steps::run(child, &tail, stop.wait()).await,
            Err(e) => StepEnd::NotStarted(format!("starting sh: {e}")),
        };
        if let StepEnd::NotStarted(why) = &end {
            say(why);
        }
        stopped = end == StepEnd::Canceled;
        let goes_on = decide::goes_on(&end);
        ends.push(end);
        if !goes_on {
            break;
        }
    }
    let outcome = decide::outcome(job_steps, &ends);
    (outcome, tail.into_inner().finish(), stopped)
}

async fn report(
    client: &Client,
    path: &str,
    body: Vec<u8>,
    patience: Duration,
) -> Result<(), Exit> {
    let start = Instant::now();
    let mut failures = 0u32;
    loop {
        let reply = client
            .send(Method::POST, path, Some(body.clone()), REQUEST_TIMEOUT)
            .await;
        let decision = match reply {
            Ok((status, body)) => decide::report(status, &body),
            Err(e) => Report::Retry(e.to_string()),
        };
        match decision {
            Report::Done => return Ok(()),
            Report::Rejected(why) => {
                return Err(Exit::Refused(format!("the report was refused: {why}")));
            }
            Report::Retry(why) => {
                let delay = decide::backoff(failures);
                if start.elapsed().saturating_add(delay) > patience {
                    return Err(Exit::Refused(format!(
                        "the report could not be delivered within {patience:?}: {why}"
                    )));
                }
                say(&format!("reporting failed, retrying: {why}"));
                tokio::time::sleep(delay).await;
                failures = failures.saturating_add(1);
            }
        }
    }
}
