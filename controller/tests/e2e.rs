//! One scale set end to end: `run_scale_set` against the sandbox's real
//! kube-apiserver (with the real garbage collector) and the fake GitHub,
//! through the real Actions client. Nothing is scripted between the pieces:
//! the supervisor creates the scale set, its listener acquires the queued
//! jobs, its reconciler makes and removes the runner pods. The test plays
//! GitHub's runners (start and complete jobs on the fake) and the kubelet.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use runway_controller::crd::{self, RunnerScaleSet};
use runway_controller::listener::Backoff;
use runway_controller::runner::reconcile::{GitHubCalls, KubeWrites};
use runway_controller::runner::{BUSY_ANNOTATION, SCALE_SET_LABEL, Settings, jit_secret_name};
use runway_controller::scale_set::{SupervisorError, SupervisorOptions, Totals, run_scale_set};
use runway_sandbox::github::{Endpoint, FakeGitHub, JobState, NewJob};
use runway_sandbox::{TestNamespace, kubelet, test_namespace, wait};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "github";

/// Milliseconds where the defaults say seconds.
fn options(totals: watch::Sender<Totals>) -> SupervisorOptions {
    SupervisorOptions {
        session_owner: "runway-e2e".into(),
        github: common::client_options(),
        runners: Settings {
            busy_requeue: Duration::from_secs(1),
            error_requeue: Duration::from_secs(1),
            ..Settings::default()
        },
        listener_backoff: Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(200),
        },
        listener_shutdown_timeout: Duration::from_secs(5),
        resync: Duration::from_secs(1),
        totals: Some(totals),
    }
}

/// A namespace with the credentials Secret and the `RunnerScaleSet`, a
/// fake GitHub that accepts the PAT, and `run_scale_set` running.
struct Running {
    ns: TestNamespace,
    fake: FakeGitHub,
    name: String,
    scale_set_id: i64,
    stop: watch::Sender<bool>,
    totals: watch::Receiver<Totals>,
    task: Option<JoinHandle<Result<(), SupervisorError>>>,
}

async fn start(name: &str, min: i32, max: i32) -> Running {
    let ns = test_namespace().await;
    common::install_crd(&ns.client()).await;
    let fake = common::start_fake().await;

    let secrets: Api<Secret> = ns.api();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SECRET.into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("github_token".to_string(), common::PAT.to_string())].into()),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the credentials Secret");

    let api: Api<RunnerScaleSet> = ns.api();
    let rss = api
        .create(
            &PostParams::default(),
            &RunnerScaleSet::new(name, common::scale_set_spec(&fake, SECRET, min, Some(max))),
        )
        .await
        .expect("create the RunnerScaleSet");

    let (stop, stop_rx) = watch::channel(false);
    let (totals_tx, totals) = watch::channel(Totals::default());
    let task = tokio::spawn(run_scale_set(ns.client(), rss, options(totals_tx), stop_rx));

    let scale_set_id = wait::until("status.scaleSetId", WAIT, || async {
        api.get(name).await.ok()?.status?.scale_set_id
    })
    .await
    .unwrap();
    let running = Running {
        ns,
        fake,
        name: name.into(),
        scale_set_id,
        stop,
        totals,
        task: Some(task),
    };
    running
        .until("the listener to poll", || async {
            running
                .fake
                .snapshot()
                .sessions
                .iter()
                .any(|s| s.scale_set_id == scale_set_id && s.polls_in_flight > 0)
                .then_some(())
        })
        .await;
    running
}

impl Running {
    async fn until<T, Fut: Future<Output = Option<T>>>(
        &self,
        what: &str,
        check: impl Fn() -> Fut,
    ) -> T {
        let ended = self.task.as_ref().is_none_or(JoinHandle::is_finished);
        assert!(!ended, "run_scale_set ended before {what}");
        wait::until(what, WAIT, check).await.unwrap()
    }

    fn pods(&self) -> Api<Pod> {
        self.ns.api()
    }

    async fn pod_list(&self) -> Vec<Pod> {
        let selector = format!("{SCALE_SET_LABEL}={}", self.name);
        self.pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
    }

    async fn pod_names(&self) -> BTreeSet<String> {
        self.pod_list()
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    async fn secret_names(&self) -> BTreeSet<String> {
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

    /// Runner names registered on the fake for this scale set.
    fn registered(&self) -> BTreeSet<String> {
        self.fake
            .snapshot()
            .runners
            .into_iter()
            .filter(|r| r.scale_set_id == self.scale_set_id)
            .map(|r| r.name)
            .collect()
    }

    fn sessions(&self) -> usize {
        self.fake
            .snapshot()
            .sessions
            .iter()
            .filter(|s| s.scale_set_id == self.scale_set_id)
            .count()
    }

    async fn status(&self) -> crd::RunnerScaleSetStatus {
        let api: Api<RunnerScaleSet> = self.ns.api();
        api.get(&self.name)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    fn queue_jobs(&self, n: usize) -> Vec<i64> {
        (0..n)
            .map(|_| {
                self.fake
                    .queue_job(self.scale_set_id, NewJob::default())
                    .runner_request_id
            })
            .collect()
    }

    fn jobs_in(&self, state: JobState) -> usize {
        self.fake
            .snapshot()
            .jobs
            .iter()
            .filter(|j| j.scale_set_id == self.scale_set_id && j.state == state)
            .count()
    }

    /// Stops `run_scale_set` and waits for it.
    async fn shutdown(&mut self) -> Result<(), SupervisorError> {
        self.stop.send_replace(true);
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("run_scale_set stops within 15 s")
            .expect("run_scale_set does not panic")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_become_runner_pods_and_leave_no_trace_when_done() {
    const JOBS: usize = 20;
    let mut s = start("e2e-builders", 0, 30).await;
    let started = Instant::now();

    // Queue: one runner pod, one JIT Secret and one registration per job.
    let jobs = s.queue_jobs(JOBS);
    // The pod is made before its Secret: wait for both, and for the
    // registrations, to match.
    let pods = s
        .until(
            "a runner pod, a JIT Secret and a registration per job",
            || async {
                let names = s.pod_names().await;
                let secrets: BTreeSet<String> = names.iter().map(|p| jit_secret_name(p)).collect();
                (names.len() == JOBS
                    && s.secret_names().await == secrets
                    && s.registered() == names)
                    .then_some(names)
            },
        )
        .await;
    let up = started.elapsed();
    s.until("the listener to acquire every job", || async {
        (s.jobs_in(JobState::Assigned) == JOBS).then_some(())
    })
    .await;
    // No more pods than jobs, even after more passes.
    s.until("the status to show the desired runners", || async {
        let status = s.status().await;
        (status.desired_runners == Some(JOBS as i32) && status.current_runners == Some(JOBS as i32))
            .then_some(())
    })
    .await;
    assert_eq!(s.pod_names().await.len(), JOBS);

    // Run: every runner takes one job.
    for (job, pod) in jobs.iter().zip(&pods) {
        kubelet::set_running(&s.pods(), pod, "runner")
            .await
            .expect("report the pod running");
        s.fake.start_job(*job, pod).expect("start the job");
    }
    s.until("every pod marked busy", || async {
        let busy = s
            .pod_list()
            .await
            .iter()
            .filter(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(BUSY_ANNOTATION))
            })
            .count();
        (busy == JOBS).then_some(())
    })
    .await;
    s.until("the status to show every runner busy", || async {
        (s.status().await.busy_runners == Some(JOBS as i32)).then_some(())
    })
    .await;
    let busy_at = started.elapsed();

    // Complete: pods, JIT Secrets and registrations all go; back to min (0).
    for job in &jobs {
        s.fake.complete_job(*job, "succeeded").expect("complete");
    }
    s.until("every runner pod gone", || async {
        s.pod_names().await.is_empty().then_some(())
    })
    .await;
    s.until("every JIT Secret collected", || async {
        s.secret_names().await.is_empty().then_some(())
    })
    .await;
    assert!(s.registered().is_empty(), "{:?}", s.registered());
    s.until("the status back to minRunners", || async {
        let status = s.status().await;
        (status.desired_runners == Some(0) && status.current_runners == Some(0)).then_some(())
    })
    .await;
    let down = started.elapsed();
    assert_eq!(s.jobs_in(JobState::Completed), JOBS);

    let calls: Vec<_> = [
        Endpoint::GenerateJitConfig,
        Endpoint::RemoveRunner,
        Endpoint::GetRunnerByName,
        Endpoint::AcquireJobs,
        Endpoint::GetMessage,
        Endpoint::DeleteMessage,
        Endpoint::CreateSession,
    ]
    .into_iter()
    .map(|e| (e, s.fake.request_count(e)))
    .collect();
    let totals = *s.totals.borrow();
    eprintln!(
        "e2e: {JOBS} jobs -> {JOBS} pods in {up:?}, all busy at {busy_at:?}, all gone at {down:?}; \
         fake GitHub requests {calls:?}; supervisor {totals:?}"
    );
    assert_eq!(
        s.fake.request_count(Endpoint::GenerateJitConfig),
        JOBS as u64
    );
    assert_eq!(s.fake.request_count(Endpoint::CreateSession), 1);
    // The design's four Kubernetes writes per job, plus the busy mark.
    let n = JOBS as u32;
    assert_eq!(
        totals.kube,
        KubeWrites {
            pod_creates: n,
            secret_creates: n,
            pod_deletes: n,
            finalizer_removals: n,
            busy_patches: n,
            events: 0,
        }
    );
    assert_eq!(
        totals.github,
        GitHubCalls {
            jit_configs: n,
            runner_lookups: 0,
            runner_removals: n,
        }
    );

    // Shutdown: the listener deletes its session and says so in the status.
    assert_eq!(s.sessions(), 1);
    s.shutdown().await.expect("run_scale_set ends cleanly");
    assert_eq!(s.sessions(), 0, "the session was deleted");
    assert_eq!(s.fake.request_count(Endpoint::DeleteSession), 1);
    let status = s.status().await;
    assert_eq!(status.session_id, None);
    assert_eq!(status.scale_set_id, Some(s.scale_set_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runners_caps_the_pods_below_the_queued_jobs() {
    let mut s = start("e2e-capped", 0, 5).await;
    s.queue_jobs(8);
    s.until("five runner pods", || async {
        (s.pod_names().await.len() == 5).then_some(())
    })
    .await;
    s.until("the status to show 5 desired and 5 current", || async {
        let status = s.status().await;
        (status.desired_runners == Some(5) && status.current_runners == Some(5)).then_some(())
    })
    .await;
    // Several more passes (resync is 1 s, the long poll 300 ms) change nothing.
    let passes_from = s.fake.request_count(Endpoint::GetMessage);
    s.until("three more polls", || async {
        (s.fake.request_count(Endpoint::GetMessage) >= passes_from + 3).then_some(())
    })
    .await;
    assert_eq!(s.pod_names().await.len(), 5);
    assert_eq!(s.registered().len(), 5);
    assert_eq!(s.totals.borrow().kube.pod_creates, 5);
    let capacity = s
        .fake
        .snapshot()
        .sessions
        .iter()
        .find(|x| x.scale_set_id == s.scale_set_id)
        .and_then(|x| x.max_capacity);
    assert_eq!(capacity, Some(5));

    s.shutdown().await.expect("run_scale_set ends cleanly");
    assert_eq!(s.sessions(), 0, "the session was deleted");
}
