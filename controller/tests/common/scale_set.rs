//! One `RunnerScaleSet` running end to end: `run_scale_set` in-process
//! against the sandbox's real kube-apiserver and a fake GitHub, with
//! milliseconds where the defaults say seconds. The test plays the kubelet
//! (`runway_sandbox::kubelet`) and GitHub's runners (`start_job`,
//! `complete_job` on the fake).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use runway_controller::crd::{self, RunnerScaleSet};
use runway_controller::listener::Backoff;
use runway_controller::runner::{
    BUSY_ANNOTATION, JIT_CONFIG_KEY, RUNNER_CONTAINER, SCALE_SET_LABEL, Settings, jit_secret_name,
};
use runway_controller::scale_set::{SupervisorError, SupervisorOptions, Totals, run_scale_set};
use runway_sandbox::github::{FakeGitHub, JobState, JobView, NewJob};
use runway_sandbox::{TestNamespace, kubelet, test_namespace, wait};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long any one wait may take.
pub const WAIT: Duration = Duration::from_secs(60);
/// The credentials Secret the scale set names.
pub const SECRET: &str = "github";

/// Milliseconds where the defaults say seconds.
pub fn options(totals: watch::Sender<Totals>) -> SupervisorOptions {
    SupervisorOptions {
        session_owner: "runway-e2e".into(),
        github: super::client_options(),
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
        status_interval: Duration::from_millis(200),
        metrics: None,
        client_slot: None,
        totals: Some(totals),
        fence: Default::default(),
    }
}

/// A namespace with the credentials Secret and the `RunnerScaleSet`, a
/// fake GitHub that accepts the PAT, and `run_scale_set` running.
pub struct Running {
    pub ns: TestNamespace,
    pub fake: FakeGitHub,
    pub name: String,
    pub scale_set_id: i64,
    pub stop: watch::Sender<bool>,
    pub totals: watch::Receiver<Totals>,
    pub task: Option<JoinHandle<Result<(), SupervisorError>>>,
}

/// A fresh namespace with the CRD, a fake GitHub that accepts the PAT, the
/// credentials Secret, and the stored `RunnerScaleSet` `name` (`minRunners`
/// `min`, `maxRunners` `max`).
pub async fn stored(name: &str, min: i32, max: i32) -> (TestNamespace, FakeGitHub, RunnerScaleSet) {
    let ns = test_namespace().await;
    let fake = super::start_fake().await;
    let spec = super::scale_set_spec(&fake, SECRET, min, Some(max));
    stored_in(ns, fake, name, spec).await
}

/// The credentials Secret and the `RunnerScaleSet` `name` with `spec`, in
/// `ns`, for `fake`.
pub async fn stored_in(
    ns: TestNamespace,
    fake: FakeGitHub,
    name: &str,
    spec: crd::RunnerScaleSetSpec,
) -> (TestNamespace, FakeGitHub, RunnerScaleSet) {
    super::install_crd(&ns.client()).await;
    let secrets: Api<Secret> = ns.api();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SECRET.into()),
            ..ObjectMeta::default()
        },
        string_data: Some([("github_token".to_string(), super::PAT.to_string())].into()),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the credentials Secret");

    let api: Api<RunnerScaleSet> = ns.api();
    let rss = api
        .create(&PostParams::default(), &RunnerScaleSet::new(name, spec))
        .await
        .expect("create the RunnerScaleSet");
    (ns, fake, rss)
}

/// Starts `run_scale_set` for a new scale set `name` (`minRunners` `min`,
/// `maxRunners` `max`) and waits for its listener's first poll.
pub async fn start(name: &str, min: i32, max: i32) -> Running {
    start_with(name, min, max, |_| {}).await
}

/// [`start`] with the runner reconciler's settings changed by `tune`.
pub async fn start_with(
    name: &str,
    min: i32,
    max: i32,
    tune: impl FnOnce(&mut Settings),
) -> Running {
    let (ns, fake, rss) = stored(name, min, max).await;
    launch(ns, fake, rss, tune).await
}

/// Starts `run_scale_set` for the stored `rss`, its runner settings changed
/// by `tune`, and waits for its listener's first poll.
pub async fn launch(
    ns: TestNamespace,
    fake: FakeGitHub,
    rss: RunnerScaleSet,
    tune: impl FnOnce(&mut Settings),
) -> Running {
    let name = rss.metadata.name.clone().unwrap_or_default();
    let api: Api<RunnerScaleSet> = ns.api();

    let (stop, stop_rx) = watch::channel(false);
    let (totals_tx, totals) = watch::channel(Totals::default());
    let mut options = options(totals_tx);
    tune(&mut options.runners);
    let task = tokio::spawn(run_scale_set(ns.client(), rss, options, stop_rx));

    let scale_set_id = wait::until("status.scaleSetId", WAIT, || async {
        api.get(&name).await.ok()?.status?.scale_set_id
    })
    .await
    .unwrap();
    let running = Running {
        ns,
        fake,
        name,
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

/// The single name in `names`.
pub fn only(names: &BTreeSet<String>) -> String {
    assert_eq!(names.len(), 1, "{names:?}");
    names.iter().next().cloned().unwrap_or_default()
}

impl Running {
    /// JIT configs generated so far.
    pub fn jit_configs(&self) -> u64 {
        self.fake
            .request_count(runway_sandbox::github::Endpoint::GenerateJitConfig)
    }

    /// Waits until runner `old` is gone (pod and registration) and exactly
    /// one other runner, registered, has taken its place; returns its name.
    pub async fn until_replaced(&self, old: &str) -> String {
        self.until_gone(old).await;
        self.until("a replacement runner", || async {
            let names = self.pod_names().await;
            (names.len() == 1 && !names.contains(old) && self.registered() == names)
                .then(|| only(&names))
        })
        .await
    }

    /// Waits until pod `name` no longer exists and its registration is gone.
    pub async fn until_gone(&self, name: &str) {
        wait::gone(&self.pods(), name, WAIT).await.unwrap();
        self.until(&format!("runner {name} unregistered"), || async {
            (!self.registered().contains(name)).then_some(())
        })
        .await;
    }

    pub async fn until<T, Fut: Future<Output = Option<T>>>(
        &self,
        what: &str,
        check: impl Fn() -> Fut,
    ) -> T {
        let ended = self.task.as_ref().is_none_or(JoinHandle::is_finished);
        assert!(!ended, "run_scale_set ended before {what}");
        wait::until(what, WAIT, check).await.unwrap()
    }

    pub fn pods(&self) -> Api<Pod> {
        self.ns.api()
    }

    pub async fn pod_list(&self) -> Vec<Pod> {
        let selector = format!("{SCALE_SET_LABEL}={}", self.name);
        self.pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
    }

    pub async fn pod_names(&self) -> BTreeSet<String> {
        self.pod_list()
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    /// The runner pod `name`, if it exists (even while being deleted).
    pub async fn pod(&self, name: &str) -> Option<Pod> {
        self.pods().get_opt(name).await.unwrap()
    }

    pub async fn secret_names(&self) -> BTreeSet<String> {
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

    /// The JIT config in the Secret of runner `pod`, if that Secret exists.
    pub async fn jit_config(&self, pod: &str) -> Option<Vec<u8>> {
        let secrets: Api<Secret> = self.ns.api();
        let secret = secrets.get_opt(&jit_secret_name(pod)).await.unwrap()?;
        Some(secret.data?.remove(JIT_CONFIG_KEY)?.0)
    }

    /// Runner names registered on the fake for this scale set.
    pub fn registered(&self) -> BTreeSet<String> {
        self.fake
            .snapshot()
            .runners
            .into_iter()
            .filter(|r| r.scale_set_id == self.scale_set_id)
            .map(|r| r.name)
            .collect()
    }

    pub fn sessions(&self) -> usize {
        self.fake
            .snapshot()
            .sessions
            .iter()
            .filter(|s| s.scale_set_id == self.scale_set_id)
            .count()
    }

    pub async fn status(&self) -> crd::RunnerScaleSetStatus {
        let api: Api<RunnerScaleSet> = self.ns.api();
        api.get(&self.name)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    pub fn queue_jobs(&self, n: usize) -> Vec<i64> {
        (0..n)
            .map(|_| {
                self.fake
                    .queue_job(self.scale_set_id, NewJob::default())
                    .runner_request_id
            })
            .collect()
    }

    pub fn jobs_in(&self, state: JobState) -> usize {
        self.fake
            .snapshot()
            .jobs
            .iter()
            .filter(|j| j.scale_set_id == self.scale_set_id && j.state == state)
            .count()
    }

    /// The fake's view of job `runner_request_id`.
    pub fn job(&self, runner_request_id: i64) -> JobView {
        self.fake
            .snapshot()
            .job(runner_request_id)
            .cloned()
            .unwrap_or_else(|| panic!("job {runner_request_id} is not on the fake"))
    }

    /// Waits until exactly `n` runner pods exist, each with its JIT Secret
    /// and its registration on the fake, and nothing else: returns their
    /// names.
    pub async fn runners(&self, n: usize) -> BTreeSet<String> {
        let what = format!("{n} runner pods, each with a JIT Secret and a registration");
        self.until(&what, || async {
            let names = self.pod_names().await;
            let secrets: BTreeSet<String> = names.iter().map(|p| jit_secret_name(p)).collect();
            (names.len() == n && self.secret_names().await == secrets && self.registered() == names)
                .then_some(names)
        })
        .await
    }

    /// Plays the kubelet: the runner container of every pod in `names` runs.
    pub async fn set_running<'a>(&self, names: impl IntoIterator<Item = &'a String>) {
        for name in names {
            kubelet::set_running(&self.pods(), name, RUNNER_CONTAINER)
                .await
                .unwrap_or_else(|e| panic!("report pod {name} running: {e}"));
        }
    }

    /// Waits until the pod `name` carries the busy annotation.
    pub async fn until_busy(&self, name: &str) {
        self.until(&format!("pod {name} marked busy"), || async {
            self.pod(name)
                .await?
                .metadata
                .annotations?
                .contains_key(BUSY_ANNOTATION)
                .then_some(())
        })
        .await;
    }

    /// Waits until the status shows these runner counts (`None` is not
    /// checked): desired, current, idle, busy.
    pub async fn until_status(
        &self,
        desired: i32,
        current: i32,
        idle: Option<i32>,
        busy: Option<i32>,
    ) {
        let what = format!(
            "the status to show {desired} desired, {current} current, idle {idle:?}, busy {busy:?}"
        );
        self.until(&what, || async {
            let status = self.status().await;
            (status.desired_runners == Some(desired)
                && status.current_runners == Some(current)
                && idle.is_none_or(|n| status.idle_runners == Some(n))
                && busy.is_none_or(|n| status.busy_runners == Some(n)))
            .then_some(())
        })
        .await;
    }

    /// Reconcile passes the supervisor has completed so far.
    pub fn passes(&self) -> u64 {
        self.totals.borrow().passes
    }

    /// Waits for `n` more complete reconcile passes (counted from now).
    pub async fn more_passes(&self, n: u64) {
        let from = self.passes();
        self.until(&format!("{n} more reconcile passes"), || async {
            (self.passes() >= from + n).then_some(())
        })
        .await;
    }

    /// Stops `run_scale_set` and starts it again from the stored object, as
    /// a restarted controller would.
    pub async fn restart(&mut self) {
        self.shutdown().await.expect("run_scale_set ends cleanly");
        let api: Api<RunnerScaleSet> = self.ns.api();
        let rss = api.get(&self.name).await.expect("the RunnerScaleSet");
        let (stop, stop_rx) = watch::channel(false);
        let (totals_tx, totals) = watch::channel(Totals::default());
        self.stop = stop;
        self.totals = totals;
        self.task = Some(tokio::spawn(run_scale_set(
            self.ns.client(),
            rss,
            options(totals_tx),
            stop_rx,
        )));
    }

    /// Stops `run_scale_set` and waits for it.
    pub async fn shutdown(&mut self) -> Result<(), SupervisorError> {
        self.stop.send_replace(true);
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("run_scale_set stops within 15 s")
            .expect("run_scale_set does not panic")
    }
}
