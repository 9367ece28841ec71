//! Playing the kubelet and GitHub's runners for one scale set, so that the
//! controller's runner pods live a whole life without a node: a new pod is
//! reported Running after a start delay, a Running runner with no job starts
//! one job the scale set was assigned on the fake, the job runs for a while,
//! completes, and the runner container exits (the ephemeral runner is done).
//!
//! Invariants: a runner starts at most one job in its life, and a job is
//! started at most once (the [`Script`] remembers every job it handed out).
//! What to do is decided by [`Script::plan`] from plain facts; [`Player`]
//! only gathers the facts (a pod watch, the fake's snapshot) and carries the
//! actions out.

mod script;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinHandle;

use crate::github::{FakeGitHub, JobState};
use crate::kubelet::{self, Termination};

pub use script::{Action, PodFacts, Script};

/// Label the controller puts on every runner pod: the scale set's name.
pub const SCALE_SET_LABEL: &str = "actions.runway.dev/scale-set";
/// Annotation the controller puts on a runner pod running a job.
pub const BUSY_ANNOTATION: &str = "actions.runway.dev/busy";
/// The runner pod's container that runs the GitHub runner.
pub const RUNNER_CONTAINER: &str = "runner";

/// How the player behaves.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    /// From the pod appearing to the kubelet reporting it Running.
    pub start_delay: Duration,
    /// From a job starting to it completing (and the runner exiting).
    pub job_duration: Duration,
    /// How often the player looks at the pods and the fake.
    pub tick: Duration,
    /// How many API calls the player makes at once.
    pub concurrency: usize,
}

impl Default for PlayOptions {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_millis(500),
            job_duration: Duration::from_secs(3),
            tick: Duration::from_millis(100),
            concurrency: 16,
        }
    }
}

/// Where a runner pod is in its life, as counted by [`census`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Not Running yet (no node has "started" it).
    pub pending: usize,
    /// Running, not marked busy.
    pub idle: usize,
    /// Running and marked busy by the controller.
    pub busy: usize,
    /// The runner exited (Succeeded or Failed), not deleted yet.
    pub finished: usize,
    /// Being deleted (a finalizer holds it).
    pub terminating: usize,
}

impl Census {
    /// Pods that are, or are about to be, runners: neither finished nor
    /// being deleted. This is what `maxRunners` caps.
    pub fn live(&self) -> usize {
        self.pending + self.idle + self.busy
    }

    /// Every pod, whatever its state.
    pub fn total(&self) -> usize {
        self.live() + self.finished + self.terminating
    }
}

/// Counts pods by where they are in their life.
pub fn census<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Census {
    let mut census = Census::default();
    for pod in pods {
        let phase = phase(pod);
        if pod.metadata.deletion_timestamp.is_some() {
            census.terminating += 1;
        } else if phase == "Succeeded" || phase == "Failed" {
            census.finished += 1;
        } else if phase == "Running" {
            if is_busy(pod) {
                census.busy += 1;
            } else {
                census.idle += 1;
            }
        } else {
            census.pending += 1;
        }
    }
    census
}

/// The pod's phase (`Pending` when the API server has not set one).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// True if the controller marked the pod busy.
/// True if the kubelet reports `container` of `pod` running.
pub fn container_running(pod: &Pod, container: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.name == container && c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

pub fn is_busy(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(BUSY_ANNOTATION))
}

/// True if the pod is neither finished nor being deleted.
pub fn is_live(pod: &Pod) -> bool {
    census([pod]).live() == 1
}

#[derive(Debug, Default)]
struct WatchState {
    pods: BTreeMap<String, Pod>,
    first_seen: BTreeMap<String, Instant>,
    /// Names listed since the latest (re)list began.
    relisted: Option<BTreeSet<String>>,
    peak_live: usize,
    peak_total: usize,
    errors: u64,
    /// The first list is done: pods seen from now on are new.
    synced: bool,
}

impl WatchState {
    fn apply(&mut self, event: watcher::Event<Pod>, now: Instant) {
        match event {
            watcher::Event::Init => self.relisted = Some(BTreeSet::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some(seen), Some(name)) = (&mut self.relisted, &pod.metadata.name) {
                    seen.insert(name.clone());
                }
                self.upsert(pod, now);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.relisted.take() {
                    self.pods.retain(|name, _| seen.contains(name));
                }
                self.synced = true;
            }
            watcher::Event::Apply(pod) => self.upsert(pod, now),
            watcher::Event::Delete(pod) => {
                if let Some(name) = &pod.metadata.name {
                    self.pods.remove(name);
                }
            }
        }
        let census = census(self.pods.values());
        self.peak_live = self.peak_live.max(census.live());
        self.peak_total = self.peak_total.max(census.total());
    }

    fn upsert(&mut self, pod: Pod, now: Instant) {
        if let Some(name) = pod.metadata.name.clone() {
            self.first_seen.entry(name.clone()).or_insert(now);
            self.pods.insert(name, pod);
        }
    }
}

/// A watch on the runner pods of one scale set: the pods as they are now,
/// when each was first seen, and the most that were ever live at once.
/// The watch stops when this is dropped.
#[derive(Debug)]
pub struct PodWatch {
    state: Arc<Mutex<WatchState>>,
    task: JoinHandle<()>,
}

impl PodWatch {
    /// Starts watching the pods labelled with `scale_set` in `namespace`.
    pub fn start(client: Client, namespace: &str, scale_set: &str) -> PodWatch {
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().labels(&format!("{SCALE_SET_LABEL}={scale_set}"));
        let state = Arc::new(Mutex::new(WatchState::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(pods, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let mut state = lock(&shared);
                match event {
                    Ok(event) => state.apply(event, now),
                    Err(_) => state.errors += 1,
                }
            }
        });
        PodWatch { state, task }
    }

    /// The pods that exist now (by name).
    pub fn pods(&self) -> BTreeMap<String, Pod> {
        lock(&self.state).pods.clone()
    }

    /// The census of the pods that exist now.
    pub fn census(&self) -> Census {
        census(lock(&self.state).pods.values())
    }

    /// When each pod ever seen was seen first (pods gone since included).
    pub fn first_seen(&self) -> BTreeMap<String, Instant> {
        lock(&self.state).first_seen.clone()
    }

    /// The most live pods (see [`Census::live`]) seen at once.
    pub fn peak_live(&self) -> usize {
        lock(&self.state).peak_live
    }

    /// The most pods, in any state, seen at once.
    pub fn peak_total(&self) -> usize {
        lock(&self.state).peak_total
    }

    /// True once the first list is done.
    pub fn synced(&self) -> bool {
        lock(&self.state).synced
    }

    /// Watch errors so far (the watch retries with a backoff).
    pub fn errors(&self) -> u64 {
        lock(&self.state).errors
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the player did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayStats {
    pub pods_set_running: u64,
    pub jobs_started: u64,
    pub jobs_completed: u64,
    pub pods_terminated: u64,
    /// Jobs whose runner pod vanished while running them (failed).
    pub jobs_abandoned: u64,
    /// Calls that failed (they are retried on a later tick where that makes
    /// sense).
    pub errors: u64,
    pub last_error: Option<String>,
}

/// One job start, as the player made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStart {
    pub runner_request_id: i64,
    pub runner_name: String,
}

#[derive(Debug, Default)]
struct Played {
    stats: PlayStats,
    starts: Vec<JobStart>,
}

/// Plays the kubelet and the runners of one scale set until dropped (or
/// [`Player::stop`]).
#[derive(Debug)]
pub struct Player {
    watch: Arc<PodWatch>,
    played: Arc<Mutex<Played>>,
    task: JoinHandle<()>,
}

impl Player {
    /// Starts playing for the runner pods of RunnerScaleSet `scale_set` in
    /// `namespace`, whose scale set on the fake has id `scale_set_id`.
    pub fn start(
        client: Client,
        namespace: &str,
        scale_set: &str,
        fake: FakeGitHub,
        scale_set_id: i64,
        options: PlayOptions,
    ) -> Player {
        let watch = Arc::new(PodWatch::start(client.clone(), namespace, scale_set));
        let played = Arc::new(Mutex::new(Played::default()));
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let task = tokio::spawn(play(
            watch.clone(),
            played.clone(),
            pods,
            fake,
            scale_set_id,
            options,
        ));
        Player {
            watch,
            played,
            task,
        }
    }

    /// The watch on the scale set's runner pods the player acts on.
    pub fn watch(&self) -> &PodWatch {
        &self.watch
    }

    pub fn stats(&self) -> PlayStats {
        lock(&self.played).stats.clone()
    }

    /// Every job start the player made, in order.
    pub fn starts(&self) -> Vec<JobStart> {
        lock(&self.played).starts.clone()
    }

    /// Stops playing (pods and jobs stay as they are).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn play(
    watch: Arc<PodWatch>,
    played: Arc<Mutex<Played>>,
    pods: Api<Pod>,
    fake: FakeGitHub,
    scale_set_id: i64,
    options: PlayOptions,
) {
    let mut script = Script::default();
    let mut ticker = tokio::time::interval(options.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let facts = PodFacts::from_pods(&watch.pods(), &watch.first_seen());
        let assigned: Vec<i64> = fake
            .snapshot()
            .jobs
            .iter()
            .filter(|j| j.scale_set_id == scale_set_id && j.state == JobState::Assigned)
            .map(|j| j.runner_request_id)
            .collect();
        let actions = script.plan(&facts, &assigned, Instant::now(), &options);
        if actions.is_empty() {
            continue;
        }
        let outcomes: Vec<(Action, Outcome)> = futures::stream::iter(actions)
            .map(|action| {
                let (pods, fake) = (&pods, &fake);
                async move {
                    let outcome = act(pods, fake, &action).await;
                    (action, outcome)
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        let now = Instant::now();
        let mut played = lock(&played);
        for (action, outcome) in outcomes {
            script.record(&action, outcome.done, now);
            count(&mut played, &action, outcome);
        }
    }
}

/// How one action went: `done` says whether the script may consider it
/// done; `errors` are the calls that failed on the way.
#[derive(Debug, Default)]
struct Outcome {
    done: bool,
    completed: bool,
    terminated: bool,
    errors: Vec<String>,
}

async fn act(pods: &Api<Pod>, fake: &FakeGitHub, action: &Action) -> Outcome {
    let mut outcome = Outcome::default();
    match action {
        Action::SetRunning { pod } => {
            match kubelet::set_running(pods, pod, RUNNER_CONTAINER).await {
                Ok(_) => outcome.done = true,
                Err(e) if is_not_found(&e) => outcome.done = true,
                Err(e) => outcome.errors.push(format!("set pod {pod} running: {e}")),
            }
        }
        Action::StartJob { pod, job } => match fake.start_job(*job, pod) {
            Ok(()) => outcome.done = true,
            Err(e) => outcome
                .errors
                .push(format!("start job {job} on runner {pod}: {e}")),
        },
        Action::FinishJob { pod, job } => {
            match fake.complete_job(*job, "succeeded") {
                Ok(()) => outcome.completed = true,
                Err(e) => outcome.errors.push(format!("complete job {job}: {e}")),
            }
            match kubelet::set_terminated(pods, pod, RUNNER_CONTAINER, Termination::completed())
                .await
            {
                Ok(_) => outcome.terminated = true,
                // The controller may delete the pod as soon as the job ends.
                Err(e) if is_not_found(&e) => {}
                Err(e) => outcome
                    .errors
                    .push(format!("set pod {pod} terminated: {e}")),
            }
            outcome.done = outcome.errors.is_empty();
        }
        Action::AbandonJob { job, .. } => match fake.complete_job(*job, "failed") {
            Ok(()) => outcome.done = true,
            Err(e) => outcome.errors.push(format!("fail job {job}: {e}")),
        },
    }
    outcome
}

fn count(played: &mut Played, action: &Action, outcome: Outcome) {
    let stats = &mut played.stats;
    match action {
        Action::SetRunning { .. } if outcome.done => stats.pods_set_running += 1,
        Action::StartJob { pod, job } if outcome.done => {
            stats.jobs_started += 1;
            played.starts.push(JobStart {
                runner_request_id: *job,
                runner_name: pod.clone(),
            });
        }
        Action::FinishJob { .. } => {
            stats.jobs_completed += u64::from(outcome.completed);
            stats.pods_terminated += u64::from(outcome.terminated);
        }
        Action::AbandonJob { .. } if outcome.done => stats.jobs_abandoned += 1,
        _ => {}
    }
    let stats = &mut played.stats;
    stats.errors += outcome.errors.len() as u64;
    if let Some(last) = outcome.errors.into_iter().last() {
        stats.last_error = Some(last);
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k8s_pod(phase: &str, busy: bool, deleting: bool) -> Pod {
        let mut pod = Pod {
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Pod::default()
        };
        if busy {
            pod.metadata.annotations =
                Some([(BUSY_ANNOTATION.to_string(), "true".to_string())].into());
        }
        if deleting {
            pod.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        pod
    }

    #[test]
    fn census_counts_each_state() {
        let pods = [
            Pod::default(),
            k8s_pod("Pending", false, false),
            k8s_pod("Running", false, false),
            k8s_pod("Running", true, false),
            k8s_pod("Succeeded", false, false),
            k8s_pod("Running", true, true),
        ];
        let c = census(&pods);
        assert_eq!(
            c,
            Census {
                pending: 2,
                idle: 1,
                busy: 1,
                finished: 1,
                terminating: 1
            }
        );
        assert_eq!((c.live(), c.total()), (4, 6));
    }
}
