//! The `runway-controller run` process end to end: the real binary against
//! the sandbox's API server and a fake GitHub, the test playing the kubelet
//! and GitHub's runners. Covers what only the whole process does: the
//! finalizer, conditions, leader election, metrics, a crash and restart in
//! the middle of a burst, and the cleanup when the object is deleted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use runway_controller::crd::{CONDITION_LISTENING, CONDITION_READY, RunnerScaleSet};
use runway_controller::manager::FINALIZER;
use runway_controller::runner::{SCALE_SET_LABEL, jit_secret_name};
use runway_sandbox::github::{Endpoint, FakeGitHub, JobState, NewJob};
use runway_sandbox::{TestNamespace, kubelet, wait};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(90);
use common::scale_set::SECRET;

/// One controller process, its log and its metrics port.
struct Controller {
    child: Child,
    log: PathBuf,
    metrics_port: u16,
}

impl Controller {
    fn start(ns: &TestNamespace, log_name: &str) -> Controller {
        Controller::start_with(ns, log_name, Duration::from_secs(60))
    }

    fn start_with(ns: &TestNamespace, log_name: &str, deletion_timeout: Duration) -> Controller {
        Controller::start_env(ns, log_name, deletion_timeout, &[])
    }

    fn start_env(
        ns: &TestNamespace,
        log_name: &str,
        deletion_timeout: Duration,
        env: &[(&str, &str)],
    ) -> Controller {
        let metrics_port = free_port();
        let dir = std::env::temp_dir().join(format!("runway-controller-test-{}", ns.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(log_name);
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_runway-controller"))
            .args([
                "run",
                "--namespace",
                ns.name(),
                "--lease-namespace",
                ns.name(),
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--status-interval",
                "0.5",
                "--deletion-timeout",
                &deletion_timeout.as_secs().to_string(),
            ])
            .env("KUBECONFIG", ns.plane().kubeconfig_path())
            .env("RUST_LOG", "info,runway_controller=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start runway-controller");
        Controller {
            child,
            log,
            metrics_port,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("running") as i32)
    }

    /// SIGKILL: a crash, nothing cleaned up.
    async fn crash(mut self) {
        self.child.kill().await.expect("kill");
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(mut self) {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the controller exits within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "exit status {status}; log {:?}", self.log);
    }

    /// SIGTERM; asserts a clean exit within `within`; returns how long it
    /// took.
    async fn stop_within(mut self, within: Duration) -> Duration {
        let signalled = std::time::Instant::now();
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the controller exits within {within:?} of SIGTERM"))
            .unwrap();
        assert!(status.success(), "exit status {status}; log {:?}", self.log);
        signalled.elapsed()
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("the controller exited ({status}):\n{log}");
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Setup {
    ns: TestNamespace,
    fake: FakeGitHub,
    name: String,
}

impl Setup {
    async fn new(name: &str, min: i32, max: i32) -> Setup {
        let (ns, fake, _) = common::scale_set::stored(name, min, max).await;
        Setup {
            ns,
            fake,
            name: name.into(),
        }
    }

    async fn rss(&self) -> Option<RunnerScaleSet> {
        let api: Api<RunnerScaleSet> = self.ns.api();
        api.get_opt(&self.name).await.unwrap()
    }

    async fn pods(&self) -> Vec<Pod> {
        let pods: Api<Pod> = self.ns.api();
        let selector = format!("{SCALE_SET_LABEL}={}", self.name);
        pods.list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
    }

    async fn pod_names(&self) -> BTreeSet<String> {
        self.pods()
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    async fn jit_secrets(&self) -> BTreeSet<String> {
        let secrets: Api<Secret> = self.ns.api();
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .filter(|n| n != SECRET && !n.starts_with("default-token"))
            .collect()
    }

    fn registered(&self, scale_set_id: i64) -> BTreeSet<String> {
        self.fake
            .snapshot()
            .runners
            .into_iter()
            .filter(|r| r.scale_set_id == scale_set_id)
            .map(|r| r.name)
            .collect()
    }

    fn sessions(&self, scale_set_id: i64) -> usize {
        self.fake
            .snapshot()
            .sessions
            .iter()
            .filter(|s| s.scale_set_id == scale_set_id)
            .count()
    }

    fn jobs(&self, scale_set_id: i64, state: JobState) -> Vec<i64> {
        self.fake
            .snapshot()
            .jobs
            .into_iter()
            .filter(|j| j.scale_set_id == scale_set_id && j.state == state)
            .map(|j| j.runner_request_id)
            .collect()
    }

    /// Queues one job and plays it onto its runner: the pod Running, the job
    /// started on it, the pod marked busy. Returns the job and the pod.
    async fn busy_runner(&self, scale_set_id: i64) -> (i64, String) {
        let job = self
            .fake
            .queue_job(scale_set_id, NewJob::default())
            .runner_request_id;
        let pod = wait::until("a runner pod", WAIT, || async {
            self.pod_names().await.into_iter().next()
        })
        .await
        .unwrap();
        kubelet::set_running(&self.ns.api(), &pod, "runner")
            .await
            .unwrap();
        wait::until("the job assigned", WAIT, || async {
            (self.jobs(scale_set_id, JobState::Assigned).len() == 1).then_some(())
        })
        .await
        .unwrap();
        self.fake.start_job(job, &pod).expect("start the job");
        wait::until("the pod marked busy", WAIT, || async {
            self.pods()
                .await
                .first()?
                .metadata
                .annotations
                .as_ref()?
                .get(runway_controller::runner::BUSY_ANNOTATION)?;
            Some(())
        })
        .await
        .unwrap();
        (job, pod)
    }

    /// Waits until the RunnerScaleSet is gone from the API server.
    async fn until_rss_gone(&self) {
        wait::until("the RunnerScaleSet gone", WAIT, || async {
            self.rss().await.is_none().then_some(())
        })
        .await
        .unwrap();
    }

    /// Whether the fake still has scale set `scale_set_id`.
    fn on_github(&self, scale_set_id: i64) -> bool {
        self.fake
            .snapshot()
            .scale_sets
            .iter()
            .any(|x| x.id == scale_set_id)
    }

    /// Waits for the scale set id and both conditions true.
    async fn until_listening(&self) -> i64 {
        until_listening(&self.ns, &self.name).await
    }
}

/// `name{labels} value` lines of a metric, summed.
fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_burst_ends_with_one_runner_per_job_and_delete_cleans_up() {
    const JOBS: usize = 12;
    let s = Setup::new("proc-builders", 0, 20).await;
    let mut controller = Controller::start(&s.ns, "first.log");

    // The finalizer comes first, then Ready and Listening.
    let scale_set_id = s.until_listening().await;
    let rss = s.rss().await.unwrap();
    assert!(
        rss.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );
    controller.assert_alive();

    // A burst; the controller dies (SIGKILL) once some runners exist.
    let jobs: Vec<i64> = (0..JOBS)
        .map(|_| {
            s.fake
                .queue_job(scale_set_id, NewJob::default())
                .runner_request_id
        })
        .collect();
    wait::until("the first runner pods", WAIT, || async {
        (s.pod_names().await.len() >= 3).then_some(())
    })
    .await
    .unwrap();
    controller.crash().await;
    let after_crash = s.pod_names().await.len();

    // A new process resumes: exactly one runner per job, nothing orphaned.
    let mut controller = Controller::start(&s.ns, "second.log");
    let pods = wait::until(
        "one runner pod, JIT Secret and registration per job",
        WAIT,
        || async {
            let names = s.pod_names().await;
            let secrets: BTreeSet<String> = names.iter().map(|p| jit_secret_name(p)).collect();
            (names.len() == JOBS
                && s.jit_secrets().await == secrets
                && s.registered(scale_set_id) == names
                && s.jobs(scale_set_id, JobState::Assigned).len() == JOBS)
                .then_some(names)
        },
    )
    .await
    .unwrap();
    controller.assert_alive();
    assert_eq!(s.sessions(scale_set_id), 1, "the old session was replaced");
    eprintln!("crash after {after_crash} of {JOBS} pods; resumed to {JOBS}");

    // Every runner takes one job and finishes it: all gone again.
    for (job, pod) in jobs.iter().zip(&pods) {
        kubelet::set_running(&s.ns.api(), pod, "runner")
            .await
            .unwrap();
        s.fake.start_job(*job, pod).expect("start the job");
    }
    wait::until("every pod marked busy", WAIT, || async {
        let busy = s
            .pods()
            .await
            .iter()
            .filter(|p| {
                p.metadata.annotations.as_ref().is_some_and(|a| {
                    a.get(runway_controller::runner::BUSY_ANNOTATION)
                        .map(String::as_str)
                        == Some("true")
                })
            })
            .count();
        (busy == JOBS).then_some(())
    })
    .await
    .unwrap();
    for job in &jobs {
        s.fake.complete_job(*job, "succeeded").unwrap();
    }
    wait::until(
        "no runner pod, JIT Secret or registration left",
        WAIT,
        || async {
            (s.pod_names().await.is_empty()
                && s.jit_secrets().await.is_empty()
                && s.registered(scale_set_id).is_empty())
            .then_some(())
        },
    )
    .await
    .unwrap();
    assert_eq!(s.jobs(scale_set_id, JobState::Completed).len(), JOBS);
    // At most the creations in flight at the crash were made again (each
    // left a pod without its Secret, which the new process took apart with
    // its registration): never a runner per job twice over.
    let jit = s.fake.request_count(Endpoint::GenerateJitConfig);
    assert!(
        (JOBS as u64..=JOBS as u64 + 10).contains(&jit),
        "{jit} JIT configs for {JOBS} jobs"
    );

    // The controller's own counts.
    let text = controller.metrics().await;
    assert!(metric_sum(&text, "runway_kube_writes_total", "resource=\"pods\"") >= JOBS as f64);
    assert!(
        metric_sum(
            &text,
            "runway_github_requests_total",
            "endpoint=\"get_message\""
        ) >= 1.0,
        "{text}"
    );
    assert!(text.contains("gha_desired_runners{"), "{text}");

    // Delete: the finalizer removes the scale set on GitHub, then lets go.
    let api: Api<RunnerScaleSet> = s.ns.api();
    api.delete(&s.name, &DeleteParams::default()).await.unwrap();
    s.until_rss_gone().await;
    assert!(
        !s.on_github(scale_set_id),
        "the scale set was deleted on GitHub"
    );
    assert_eq!(s.sessions(scale_set_id), 0);
    // Its series go with it.
    let text = controller.metrics().await;
    assert!(!text.contains(&format!("name=\"{}\"", s.name)), "{text}");
    controller.assert_alive();
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waits_for_the_lease_and_takes_over() {
    let s = Setup::new("proc-standby", 1, 3).await;
    let leader = Controller::start(&s.ns, "leader.log");
    let scale_set_id = s.until_listening().await;
    let first = wait::until("one idle runner", WAIT, || async {
        let names = s.pod_names().await;
        (names.len() == 1).then_some(names)
    })
    .await
    .unwrap();

    // A second process waits: it opens no session and makes no runner.
    let mut standby = Controller::start(&s.ns, "standby.log");
    let polls = s.fake.request_count(Endpoint::CreateSession);
    tokio::time::sleep(Duration::from_secs(3)).await;
    standby.assert_alive();
    assert_eq!(s.fake.request_count(Endpoint::CreateSession), polls);
    assert_eq!(s.pod_names().await, first);

    // The leader stops cleanly (releases the Lease, deletes its session);
    // the standby takes over and keeps the same runner.
    leader.stop().await;
    wait::until("the standby listening", WAIT, || async {
        let sessions: BTreeMap<i64, usize> = [(scale_set_id, s.sessions(scale_set_id))].into();
        (sessions[&scale_set_id] == 1 && s.fake.request_count(Endpoint::CreateSession) > polls)
            .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(s.pod_names().await, first, "the idle runner was kept");
    standby.assert_alive();
    standby.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_edits_reach_github_and_a_name_taken_by_another_object_is_refused() {
    let s = Setup::new("proc-edit", 0, 3).await;
    let mut controller = Controller::start(&s.ns, "edit.log");
    let scale_set_id = s.until_listening().await;

    // A label added to the spec is patched onto the scale set.
    let api: Api<RunnerScaleSet> = s.ns.api();
    let patch = serde_json::json!({ "spec": { "runnerScaleSetLabels": ["gpu"] } });
    api.patch(
        &s.name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    wait::until("the label on GitHub", WAIT, || async {
        s.fake
            .snapshot()
            .scale_sets
            .iter()
            .any(|x| x.id == scale_set_id && x.labels.iter().any(|l| l == "gpu"))
            .then_some(())
    })
    .await
    .unwrap();
    let listening_again = s.until_listening().await;
    assert_eq!(listening_again, scale_set_id, "the same scale set, patched");

    // A second object asking for the same scale set name is refused, and
    // says why; the first one is untouched.
    let mut spec = common::scale_set_spec(&s.fake, SECRET, 0, Some(3));
    spec.runner_scale_set_name = Some(s.name.clone());
    api.create(
        &PostParams::default(),
        &RunnerScaleSet::new("proc-edit-2", spec),
    )
    .await
    .unwrap();
    let message = wait::until("Ready=False on the second object", WAIT, || async {
        let other = api.get_opt("proc-edit-2").await.ok()??;
        let ready = other
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == CONDITION_READY && c.status == "False")?;
        (ready.reason == "ScaleSetConflict").then_some(ready.message)
    })
    .await
    .unwrap();
    assert!(message.contains(&s.name), "{message}");
    assert_eq!(
        s.fake
            .snapshot()
            .scale_sets
            .iter()
            .filter(|x| x.name == s.name)
            .count(),
        1,
        "no second scale set of that name"
    );
    assert_eq!(s.sessions(scale_set_id), 1, "the first keeps listening");
    controller.assert_alive();
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_scale_set_with_a_busy_runner_gives_up_after_the_timeout_and_says_so() {
    let s = Setup::new("proc-stuck", 0, 3).await;
    let mut controller = Controller::start_with(&s.ns, "stuck.log", Duration::from_secs(4));
    let scale_set_id = s.until_listening().await;
    let (_job, pod) = s.busy_runner(scale_set_id).await;

    // The job never ends: the deletion waits, then lets go and says what is
    // left; it never hangs.
    let api: Api<RunnerScaleSet> = s.ns.api();
    api.delete(&s.name, &DeleteParams::default()).await.unwrap();
    let events: Api<k8s_openapi::api::core::v1::Event> = s.ns.api();
    let reasons = || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| Some((e.reason?, e.message.unwrap_or_default())))
            .collect::<Vec<_>>()
    };
    wait::until("a WaitingForRunners Event", WAIT, || async {
        reasons()
            .await
            .iter()
            .any(|(r, m)| r == "WaitingForRunners" && m.contains(&pod))
            .then_some(())
    })
    .await
    .unwrap();
    assert!(s.rss().await.is_some(), "still waiting for the busy runner");
    s.until_rss_gone().await;
    let timed_out: Vec<String> = reasons()
        .await
        .into_iter()
        .filter(|(r, _)| r == "CleanupTimedOut")
        .map(|(_, m)| m)
        .collect();
    assert!(
        timed_out
            .iter()
            .any(|m| m.contains(&pod) && m.contains("left on GitHub")),
        "{timed_out:?}"
    );
    assert_eq!(
        s.sessions(scale_set_id),
        0,
        "the listener deleted its session"
    );
    controller.assert_alive();
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_set_deleted_with_its_credentials_still_drains_and_deletes_on_github() {
    let s = Setup::new("proc-uninstall", 0, 3).await;
    let mut controller = Controller::start(&s.ns, "uninstall.log");
    let scale_set_id = s.until_listening().await;
    let (job, pod) = s.busy_runner(scale_set_id).await;

    // `helm uninstall`: the object and its credentials Secret go together.
    let api: Api<RunnerScaleSet> = s.ns.api();
    api.delete(&s.name, &DeleteParams::default()).await.unwrap();
    let secrets: Api<Secret> = s.ns.api();
    secrets
        .delete(SECRET, &DeleteParams::default())
        .await
        .unwrap();

    // The busy runner finishes its job; then everything goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(s.rss().await.is_some(), "held for the busy runner");
    s.fake.complete_job(job, "succeeded").unwrap();
    kubelet::set_terminated(
        &s.ns.api(),
        &pod,
        "runner",
        kubelet::Termination::completed(),
    )
    .await
    .unwrap();
    s.until_rss_gone().await;
    assert!(
        !s.on_github(scale_set_id),
        "the scale set was deleted on GitHub with the supervisor's client"
    );
    assert!(s.registered(scale_set_id).is_empty());
    wait::until("no runner pod or JIT Secret left", WAIT, || async {
        (s.pod_names().await.is_empty() && s.jit_secrets().await.is_empty()).then_some(())
    })
    .await
    .unwrap();
    controller.assert_alive();
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_too_long_for_labels_and_a_url_with_credentials_get_ready_false_and_the_token_shows_nowhere()
 {
    const TOKEN: &str = "ghp_n0tRealButSecretT0ken42";
    let s = Setup::new("proc-names", 0, 3).await;
    let mut controller = Controller::start(&s.ns, "names.log");
    let api: Api<RunnerScaleSet> = s.ns.api();

    // 64 characters: every runner pod's scale-set label would be refused.
    let long = format!("proc-{}", "n".repeat(59));
    let mut spec = common::scale_set_spec(&s.fake, SECRET, 1, Some(3));
    spec.runner_scale_set_name = Some("proc-long".into());
    api.create(&PostParams::default(), &RunnerScaleSet::new(&long, spec))
        .await
        .unwrap();
    // Credentials in githubConfigUrl.
    let mut spec = common::scale_set_spec(&s.fake, SECRET, 0, Some(3));
    spec.github_config_url =
        spec.github_config_url
            .replacen("://", &format!("://runway:{TOKEN}@"), 1);
    api.create(
        &PostParams::default(),
        &RunnerScaleSet::new("proc-creds", spec),
    )
    .await
    .unwrap();

    let ready_false = |name: String| {
        let api = api.clone();
        async move {
            wait::until(&format!("Ready=False on {name}"), WAIT, || async {
                let object = api.get_opt(&name).await.ok()??;
                let ready = object
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == CONDITION_READY && c.status == "False")?;
                Some((ready.reason, ready.message))
            })
            .await
            .unwrap()
        }
    };
    let (reason, message) = ready_false(long.clone()).await;
    assert_eq!(reason, "NameTooLong", "{message}");
    for part in ["metadata.name", "64 characters", "at most 63"] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert!(
        !s.fake
            .snapshot()
            .scale_sets
            .iter()
            .any(|x| x.name == "proc-long"),
        "nothing made on GitHub"
    );
    let (reason, message) = ready_false("proc-creds".into()).await;
    assert_eq!(reason, "InvalidSpec", "{message}");
    assert!(
        message.contains("githubConfigUrl") && message.contains("must not carry credentials"),
        "{message}"
    );
    assert!(message.contains("://***@127.0.0.1"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");

    // The Warning Event says the same, without the token.
    let events: Api<k8s_openapi::api::core::v1::Event> = s.ns.api();
    let notes = wait::until("the InvalidSpec Event", WAIT, || async {
        let notes: Vec<String> = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("InvalidSpec"))
            .filter_map(|e| e.message)
            .collect();
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .unwrap();
    assert!(notes.iter().all(|n| n.contains("***@")), "{notes:?}");
    let all_events =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap()).unwrap();
    assert!(!all_events.contains(TOKEN), "an Event shows the token");
    let all_objects = serde_json::to_string(&api.get("proc-creds").await.unwrap().status).unwrap();
    assert!(!all_objects.contains(TOKEN), "the status shows the token");
    let log = std::fs::read_to_string(&controller.log).unwrap();
    assert!(log.contains("://***@127.0.0.1"), "the failure is logged");
    assert!(!log.contains(TOKEN), "the log shows the token");
    controller.assert_alive();
    controller.stop().await;
}

/// Every Event in `ns`: type, reason, message.
async fn events(ns: &TestNamespace) -> Vec<(String, String, String)> {
    let events: Api<k8s_openapi::api::core::v1::Event> = ns.api();
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| Some((e.type_?, e.reason?, e.message.unwrap_or_default())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_supervisor_is_retried_with_an_event_and_sigterm_exits_within_10_s() {
    let s = Setup::new("proc-panic", 0, 3).await;
    let target = format!("{}/{}", s.ns.name(), s.name);
    let mut controller = Controller::start_env(
        &s.ns,
        "panic.log",
        Duration::from_secs(60),
        &[("RUNWAY_TEST_PANIC_SUPERVISOR", &target)],
    );

    // The injected panic ends that supervisor as a failure: a Warning Event
    // says so, and the retry brings the scale set up.
    let message = wait::until("a Panicked Warning Event", WAIT, || async {
        events(&s.ns)
            .await
            .into_iter()
            .find(|(type_, reason, _)| type_ == "Warning" && reason == "Panicked")
            .map(|(_, _, message)| message)
    })
    .await
    .unwrap();
    assert!(
        message.starts_with("panicked: ") && message.contains("injected"),
        "{message}"
    );
    let scale_set_id = s.until_listening().await;
    assert_eq!(s.sessions(scale_set_id), 1);
    controller.assert_alive();

    // Nothing waits for the panicked worker any more: SIGTERM ends the
    // process promptly, its session deleted.
    let took = controller.stop_within(Duration::from_secs(10)).await;
    eprintln!("exited {took:?} after SIGTERM");
    assert_eq!(s.sessions(scale_set_id), 0, "the session was deleted");
}

/// RunnerScaleSets untyped: a bad one cannot be read through the typed API.
fn untyped(ns: &TestNamespace) -> Api<kube::api::DynamicObject> {
    Api::namespaced_with(
        ns.client(),
        ns.name(),
        &runway_controller::manager::decode::api_resource(),
    )
}

/// The `Ready` condition of `name`, read untyped: status, reason, message.
async fn ready(ns: &TestNamespace, name: &str) -> Option<(String, String, String)> {
    let object = untyped(ns).get_opt(name).await.unwrap()?;
    let conditions = object.data["status"]["conditions"].as_array()?.clone();
    let ready = conditions.iter().find(|c| c["type"] == CONDITION_READY)?;
    let field = |f: &str| ready[f].as_str().unwrap_or_default().to_owned();
    Some((field("status"), field("reason"), field("message")))
}

/// Waits until `name` is Ready and Listening; returns its scale set id.
async fn until_listening(ns: &TestNamespace, name: &str) -> i64 {
    let api: Api<RunnerScaleSet> = ns.api();
    wait::until(&format!("{name} Ready and Listening"), WAIT, || async {
        let status = api.get_opt(name).await.ok()??.status?;
        let is_true = |t: &str| {
            status
                .conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True")
        };
        (is_true(CONDITION_READY) && is_true(CONDITION_LISTENING))
            .then_some(status.scale_set_id)
            .flatten()
    })
    .await
    .unwrap()
}

/// Waits until `name` says `Ready=False` `InvalidSpec`; returns the message.
async fn until_invalid(ns: &TestNamespace, name: &str) -> String {
    wait::until(&format!("{name} Ready=False InvalidSpec"), WAIT, || async {
        let (status, reason, message) = ready(ns, name).await?;
        (status == "False" && reason == "InvalidSpec").then_some(message)
    })
    .await
    .unwrap()
}

/// A template the API server stores (the schema preserves unknown fields)
/// but that is no pod template.
fn bad_template() -> serde_json::Value {
    serde_json::json!({ "spec": { "containers": "runner" } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scale_set_whose_template_does_not_decode_stops_no_other() {
    let s = Setup::new("proc-good-a", 0, 3).await;
    let api: Api<RunnerScaleSet> = s.ns.api();
    let good_spec = common::scale_set_spec(&s.fake, SECRET, 0, Some(3));
    api.create(
        &PostParams::default(),
        &RunnerScaleSet::new("proc-good-b", good_spec.clone()),
    )
    .await
    .unwrap();
    let mut bad = serde_json::to_value(RunnerScaleSet::new("proc-bad", good_spec.clone())).unwrap();
    bad["spec"]["template"] = bad_template();
    let bad: kube::api::DynamicObject = serde_json::from_value(bad).unwrap();
    untyped(&s.ns)
        .create(&PostParams::default(), &bad)
        .await
        .expect("the API server stores the bad template");

    // The good ones run; the bad one says which field is wrong.
    let controller = Controller::start(&s.ns, "first.log");
    for name in ["proc-good-a", "proc-good-b"] {
        until_listening(&s.ns, name).await;
    }
    let message = until_invalid(&s.ns, "proc-bad").await;
    assert!(
        message.contains("spec.template.spec.containers"),
        "{message}"
    );
    let warned = events(&s.ns).await.into_iter().any(|(type_, reason, m)| {
        type_ == "Warning" && reason == "InvalidSpec" && m.contains("spec.template.spec.containers")
    });
    assert!(warned, "{:?}", events(&s.ns).await);
    let stored = untyped(&s.ns).get("proc-bad").await.unwrap();
    assert!(
        stored.metadata.finalizers.unwrap_or_default().is_empty(),
        "nothing to clean up: no finalizer"
    );
    assert_eq!(s.fake.snapshot().scale_sets.len(), 2, "no scale set for it");

    // Also after a restart, and the two good ones serve jobs.
    controller.stop().await;
    let mut controller = Controller::start(&s.ns, "second.log");
    let pods: Api<Pod> = s.ns.api();
    for name in ["proc-good-a", "proc-good-b"] {
        let scale_set_id = until_listening(&s.ns, name).await;
        s.fake.queue_job(scale_set_id, NewJob::default());
        let selector = format!("{SCALE_SET_LABEL}={name}");
        wait::until(&format!("a runner pod of {name}"), WAIT, || async {
            let list = pods.list(&ListParams::default().labels(&selector)).await;
            (!list.ok()?.items.is_empty()).then_some(())
        })
        .await
        .unwrap();
    }
    assert_eq!(until_invalid(&s.ns, "proc-bad").await, message);

    // Fixed (a new generation): it starts.
    let good_template = serde_json::to_value(&good_spec.template).unwrap();
    let fix = serde_json::json!({ "spec": { "template": good_template } });
    let ns = &s.ns;
    let patch = |body: serde_json::Value| async move {
        untyped(ns)
            .patch("proc-bad", &PatchParams::default(), &Patch::Merge(&body))
            .await
            .unwrap();
    };
    patch(fix).await;
    let scale_set_id = until_listening(&s.ns, "proc-bad").await;

    // Broken again while it runs, then deleted: its supervisor stops, and
    // the cleanup still runs (the scale set goes on GitHub, the finalizer
    // is released).
    patch(serde_json::json!({ "spec": { "template": bad_template() } })).await;
    until_invalid(&s.ns, "proc-bad").await;
    wait::until("its session deleted", WAIT, || async {
        (s.sessions(scale_set_id) == 0).then_some(())
    })
    .await
    .unwrap();
    untyped(&s.ns)
        .delete("proc-bad", &DeleteParams::default())
        .await
        .unwrap();
    wait::until("the bad RunnerScaleSet gone", WAIT, || async {
        untyped(&s.ns)
            .get_opt("proc-bad")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await
    .unwrap();
    assert!(!s.on_github(scale_set_id), "deleted on GitHub");
    controller.assert_alive();
    controller.stop().await;
}
