//! `runway-sandbox demo`: the real controller binary against a throw-away
//! control plane and the fake GitHub. Jobs are queued in waves; the
//! [`Player`] plays the kubelet and the runners; a table shows the runner
//! pods scale up, stop at `maxRunners`, and come back down to `minRunners`.
//!
//! The run ends by itself. [`check`] (pure) decides from what was seen
//! whether an invariant broke: more live runner pods than `maxRunners`, a
//! job started twice, a JIT Secret or a runner registration left without
//! its pod, not back to `minRunners` in time, or the controller died.
//!
//! [`Stage`] (control plane, fake, CRD, namespace, credentials,
//! RunnerScaleSet, controller process) is shared with the benchmarks; it
//! stops the controller and the control plane when dropped, also on an
//! error or Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, Namespace, Pod, PodSpec, PodTemplateSpec, Secret, ServiceAccount,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde::Serialize;

use crate::binaries::{Binaries, BinariesError};
use crate::controller_process::{
    ControllerError, ControllerOptions, ControllerProcess, controller_binary, print_crd,
};
use crate::crds::CrdError;
use crate::github::{FakeError, FakeGitHub, FakeOptions, JobState, JobView, NewJob};
use crate::play::{Census, JobStart, PlayOptions, Player, SCALE_SET_LABEL};
use crate::{ClusterError, ControlPlane, paths, wait};

/// The PAT the stage's fake accepts and its credentials Secret holds.
const PAT_PREFIX: &str = "ghp_sandbox";
/// Name of the credentials Secret.
pub const CREDENTIALS_SECRET: &str = "github-credentials";

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error("installing the RunnerScaleSet CRD: {0}")]
    Crd(#[from] CrdError),
    #[error("the fake GitHub: {0}")]
    Fake(#[from] FakeError),
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error(transparent)]
    Timeout(#[from] wait::Timeout),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "runway-controller (pid {pid}) exited while waiting for {what}\n--- last lines of {log} ---\n{tail}"
    )]
    ControllerDied {
        pid: u32,
        what: String,
        log: String,
        tail: String,
    },
    #[error("interrupted (Ctrl-C)")]
    Interrupted,
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> StageError {
    let what = what.into();
    move |source| StageError::Kube { what, source }
}

/// What to set up.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Sandbox name: its files live in `~/.cache/runway/sandbox/<name>/`.
    pub sandbox: String,
    pub namespace: String,
    /// The RunnerScaleSet's name (and the scale set's on GitHub).
    pub scale_set: String,
    pub min_runners: i32,
    pub max_runners: i32,
    pub kube_qps: u32,
    pub kube_burst: u32,
    pub leader_elect: bool,
    pub status_interval_secs: Option<u64>,
    /// How long the fake holds a message poll.
    pub long_poll: Duration,
}

/// A control plane, the fake GitHub, the CRD, a namespace with the
/// credentials Secret and one RunnerScaleSet, and the controller running
/// against them. Dropping it stops the controller, then the control plane.
pub struct Stage {
    // Fields drop in this order: the controller first (it may still talk
    // to the fake and the API server while it shuts down).
    controller: ControllerProcess,
    pub fake: FakeGitHub,
    pub client: Client,
    pub namespace: String,
    pub scale_set: String,
    /// The scale set's id on the fake (from `status.scaleSetId`).
    pub scale_set_id: i64,
    pub controller_binary: PathBuf,
    plane: PlaneGuard,
}

/// Stops the control plane when dropped.
struct PlaneGuard(ControlPlane);

impl Drop for PlaneGuard {
    fn drop(&mut self) {
        match self.0.stop() {
            Ok(()) => eprintln!("control plane stopped"),
            Err(e) => eprintln!("stopping the control plane: {e}"),
        }
    }
}

/// The RunnerScaleSet resource, without depending on the controller crate.
pub fn runner_scale_set_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("actions.runway.dev", "v1alpha1", "RunnerScaleSet"),
        "runnerscalesets",
    )
}

/// The part of a RunnerScaleSet spec the sandbox writes (the controller's
/// `crd.rs` has all of it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSetSpec {
    pub github_config_url: String,
    pub github_config_secret: String,
    pub min_runners: i32,
    pub max_runners: i32,
    pub template: PodTemplateSpec,
}

impl ScaleSetSpec {
    /// A scale set on `config_url` with a plain runner container.
    pub fn new(config_url: String, secret: &str, min: i32, max: i32) -> Self {
        let container = Container {
            name: crate::play::RUNNER_CONTAINER.into(),
            image: Some("ghcr.io/actions/actions-runner:latest".into()),
            command: Some(vec!["/home/runner/run.sh".into()]),
            ..Container::default()
        };
        Self {
            github_config_url: config_url,
            github_config_secret: secret.into(),
            min_runners: min,
            max_runners: max,
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
        }
    }

    /// The RunnerScaleSet object named `name`.
    pub fn object(&self, name: &str) -> Result<DynamicObject, serde_json::Error> {
        let mut object = DynamicObject::new(name, &runner_scale_set_resource());
        object.data = serde_json::json!({ "spec": serde_json::to_value(self)? });
        Ok(object)
    }
}

impl Stage {
    /// Sets everything up and waits until the controller has created the
    /// scale set on the fake and its listener polls.
    pub async fn start(options: &StageOptions) -> Result<Stage, StageError> {
        let bins = Binaries::locate_or_install()?;
        let controller_binary = controller_binary()?;
        let dir = paths::sandbox_dir(&options.sandbox);
        let started = Instant::now();
        let plane = PlaneGuard(ControlPlane::start(&options.sandbox, &dir, &bins).await?);
        let client = plane.0.admin_client().await?;
        eprintln!(
            "control plane up in {:.1} s at {} (files in {})",
            started.elapsed().as_secs_f64(),
            plane.0.server_url(),
            dir.display()
        );

        let crd = print_crd(&controller_binary).await?;
        crate::crds::apply_crd(&client, &crd).await?;
        create_namespace(&client, &options.namespace).await?;

        let fake = FakeGitHub::start_with(FakeOptions {
            long_poll_timeout: options.long_poll,
            // Jobs wait for the player, not for a re-queue.
            requeue_after: Duration::from_secs(600),
            ..FakeOptions::default()
        })
        .await?;
        let pat = format!("{PAT_PREFIX}{:016x}", rand::random::<u64>());
        fake.add_pat(&pat);

        let secrets: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(CREDENTIALS_SECRET.into()),
                ..ObjectMeta::default()
            },
            string_data: Some([("github_token".to_string(), pat)].into()),
            ..Secret::default()
        };
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .map_err(kube_error("creating the credentials Secret"))?;

        let spec = ScaleSetSpec::new(
            fake.config_url("my-org"),
            CREDENTIALS_SECRET,
            options.min_runners,
            options.max_runners,
        );
        let object = spec
            .object(&options.scale_set)
            .map_err(|e| StageError::Kube {
                what: "writing the RunnerScaleSet".into(),
                source: kube::Error::SerdeError(e),
            })?;
        let rss = rss_api(&client, &options.namespace);
        rss.create(&PostParams::default(), &object)
            .await
            .map_err(kube_error("creating the RunnerScaleSet"))?;

        let log = plane.0.logs_dir().join("runway-controller.log");
        let mut controller_options = ControllerOptions::new(
            controller_binary.clone(),
            plane.0.kubeconfig_path().to_path_buf(),
            log,
        )
        .map_err(|source| StageError::Io {
            what: "picking a free port for /metrics",
            source,
        })?;
        controller_options.kube_qps = options.kube_qps;
        controller_options.kube_burst = options.kube_burst;
        controller_options.leader_elect = options.leader_elect;
        controller_options.lease_namespace = Some(options.namespace.clone());
        controller_options.status_interval_secs = options.status_interval_secs;
        let controller = ControllerProcess::spawn(&controller_options)?;
        eprintln!(
            "runway-controller pid {} ({}), log {}",
            controller.pid(),
            controller_options.args().join(" "),
            controller.log_path().display()
        );

        let mut stage = Stage {
            controller,
            fake,
            client,
            namespace: options.namespace.clone(),
            scale_set: options.scale_set.clone(),
            scale_set_id: 0,
            controller_binary,
            plane,
        };
        let within = Duration::from_secs(90);
        stage.scale_set_id = stage
            .until("status.scaleSetId", within, || async {
                let status = stage.status().await?;
                status.get("scaleSetId")?.as_i64()
            })
            .await?;
        let id = stage.scale_set_id;
        stage
            .until("the listener to poll", within, || async {
                let snapshot = stage.fake.snapshot();
                snapshot
                    .sessions
                    .iter()
                    .any(|s| s.scale_set_id == id && s.polls_in_flight > 0)
                    .then_some(())
            })
            .await?;
        Ok(stage)
    }

    pub fn controller(&self) -> &ControllerProcess {
        &self.controller
    }

    pub fn controller_mut(&mut self) -> &mut ControllerProcess {
        &mut self.controller
    }

    pub fn plane(&self) -> &ControlPlane {
        &self.plane.0
    }

    /// The RunnerScaleSet's status (None if it cannot be read).
    pub async fn status(&self) -> Option<serde_json::Value> {
        let object = rss_api(&self.client, &self.namespace)
            .get(&self.scale_set)
            .await
            .ok()?;
        object.data.get("status").cloned()
    }

    /// `status.desiredRunners`.
    pub async fn desired(&self) -> Option<i64> {
        self.status().await?.get("desiredRunners")?.as_i64()
    }

    /// [`wait::until`], failing early if the controller exits.
    pub async fn until<T, F, Fut>(
        &self,
        what: &str,
        within: Duration,
        check: F,
    ) -> Result<T, StageError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let found = wait::until(what, within, || async {
            if !self.controller.is_running() {
                return Some(None);
            }
            check().await.map(Some)
        })
        .await?;
        found.ok_or_else(|| self.died(what))
    }

    /// The error for the controller having died while waiting for `what`.
    pub fn died(&self, what: &str) -> StageError {
        StageError::ControllerDied {
            pid: self.controller.pid(),
            what: what.into(),
            log: self.controller.log_path().display().to_string(),
            tail: self.controller.log_tail(30),
        }
    }

    /// Queues `n` jobs for the scale set at once.
    pub fn queue_jobs(&self, n: usize) -> Result<Vec<i64>, StageError> {
        (0..n)
            .map(|_| {
                Ok(self
                    .fake
                    .try_queue_job(self.scale_set_id, NewJob::default())?
                    .runner_request_id)
            })
            .collect()
    }

    /// The scale set's jobs on the fake, by state.
    pub fn job_counts(&self) -> JobCounts {
        JobCounts::of(&self.fake.snapshot().jobs, self.scale_set_id)
    }

    /// What is left once everything should be gone: runner pods, JIT
    /// Secrets (with the pod that owns them) and registrations on the fake.
    pub async fn leftovers(&self) -> Result<Leftovers, StageError> {
        let selector =
            ListParams::default().labels(&format!("{SCALE_SET_LABEL}={}", self.scale_set));
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods: BTreeSet<String> = pods
            .list(&selector)
            .await
            .map_err(kube_error("listing runner pods"))?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let jit_secrets = secrets
            .list(&selector)
            .await
            .map_err(kube_error("listing JIT Secrets"))?
            .items
            .into_iter()
            .filter_map(|s| {
                let name = s.metadata.name?;
                let owner = s
                    .metadata
                    .owner_references
                    .unwrap_or_default()
                    .into_iter()
                    .find(|o| o.kind == "Pod")
                    .map(|o| o.name);
                Some((name, owner))
            })
            .collect();
        let registrations = self
            .fake
            .snapshot()
            .runners
            .into_iter()
            .filter(|r| r.scale_set_id == self.scale_set_id)
            .map(|r| r.name)
            .collect();
        Ok(Leftovers {
            pods,
            jit_secrets,
            registrations,
        })
    }
}

fn rss_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &runner_scale_set_resource())
}

/// Creates `name` and waits until its `default` ServiceAccount has a token
/// (pods cannot be created before that).
pub async fn create_namespace(client: &Client, name: &str) -> Result<(), StageError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .map_err(kube_error(format!("creating namespace {name}")))?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait::until(
        "the namespace's default ServiceAccount token",
        Duration::from_secs(60),
        || async {
            let sa = accounts.get_opt("default").await.ok().flatten()?;
            sa.secrets.filter(|s| !s.is_empty()).map(|_| ())
        },
    )
    .await?;
    Ok(())
}

/// A scale set's jobs on the fake, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Available: queued, not acquired yet.
    pub queued: usize,
    /// Acquired, no runner started it yet.
    pub assigned: usize,
    pub running: usize,
    pub done: usize,
}

impl JobCounts {
    /// Counts the jobs of scale set `scale_set_id`.
    pub fn of(jobs: &[JobView], scale_set_id: i64) -> JobCounts {
        let mut counts = JobCounts::default();
        for job in jobs.iter().filter(|j| j.scale_set_id == scale_set_id) {
            match job.state {
                JobState::Available => counts.queued += 1,
                JobState::Assigned => counts.assigned += 1,
                JobState::Running => counts.running += 1,
                JobState::Completed => counts.done += 1,
            }
        }
        counts
    }

    /// Jobs not completed yet.
    pub fn open(&self) -> usize {
        self.queued + self.assigned + self.running
    }
}

/// One line of the live table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub at: Duration,
    pub jobs: JobCounts,
    pub pods: Census,
    /// `status.desiredRunners`.
    pub desired: Option<i64>,
    pub note: String,
}

/// The live table's header.
pub fn table_header() -> String {
    format!(
        "{:>6} | {:>6} {:>8} {:>7} {:>5} | {:>7} {:>4} {:>4} {:>5} | {:>7} | note",
        "t(s)",
        "queued",
        "assigned",
        "running",
        "done",
        "pending",
        "idle",
        "busy",
        "gone",
        "desired"
    )
}

/// One line of the live table (`gone`: finished or being deleted).
pub fn table_row(o: &Observation) -> String {
    let desired = o.desired.map_or_else(|| "-".to_string(), |d| d.to_string());
    format!(
        "{:>6.1} | {:>6} {:>8} {:>7} {:>5} | {:>7} {:>4} {:>4} {:>5} | {:>7} | {}",
        o.at.as_secs_f64(),
        o.jobs.queued,
        o.jobs.assigned,
        o.jobs.running,
        o.jobs.done,
        o.pods.pending,
        o.pods.idle,
        o.pods.busy,
        o.pods.finished + o.pods.terminating,
        desired,
        o.note
    )
    .trim_end()
    .to_string()
}

/// What exists once the run is over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Runner pods, in any state.
    pub pods: BTreeSet<String>,
    /// JIT Secrets and the pod that owns each (None: no pod owner).
    pub jit_secrets: BTreeMap<String, Option<String>>,
    /// Runner names registered on the fake for the scale set.
    pub registrations: BTreeSet<String>,
}

/// Everything [`check`] looks at.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub min_runners: usize,
    pub max_runners: usize,
    pub observations: Vec<Observation>,
    /// The most live runner pods the pod watch saw at once.
    pub peak_live_pods: usize,
    pub starts: Vec<JobStart>,
    pub leftovers: Leftovers,
    /// When the pods and the status came back to `minRunners` (None: not in time).
    pub back_to_min_after: Option<Duration>,
    /// How the controller ended if it did (None: still running).
    pub controller_exit: Option<String>,
}

/// An invariant that broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    TooManyPods {
        live: usize,
        max: usize,
    },
    JobStartedTwice {
        job: i64,
        runners: Vec<String>,
    },
    RunnerRanTwoJobs {
        runner: String,
        jobs: Vec<i64>,
    },
    OrphanJitSecret {
        secret: String,
        owner: Option<String>,
    },
    OrphanRegistration {
        runner: String,
    },
    NotBackToMin {
        min: usize,
    },
    ControllerDied {
        how: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TooManyPods { live, max } => {
                write!(
                    f,
                    "{live} live runner pods at once, more than maxRunners {max}"
                )
            }
            Violation::JobStartedTwice { job, runners } => {
                write!(
                    f,
                    "job {job} started more than once, on {}",
                    runners.join(", ")
                )
            }
            Violation::RunnerRanTwoJobs { runner, jobs } => {
                write!(f, "runner {runner} ran more than one job: {jobs:?}")
            }
            Violation::OrphanJitSecret { secret, owner } => match owner {
                Some(pod) => write!(f, "JIT Secret {secret} outlived its pod {pod}"),
                None => write!(f, "JIT Secret {secret} has no pod owner"),
            },
            Violation::OrphanRegistration { runner } => {
                write!(
                    f,
                    "runner {runner} is still registered on GitHub without a pod"
                )
            }
            Violation::NotBackToMin { min } => {
                write!(
                    f,
                    "the scale set did not come back to minRunners ({min}) in time"
                )
            }
            Violation::ControllerDied { how } => write!(f, "the controller died: {how}"),
        }
    }
}

/// Every invariant the run broke (empty: all held).
pub fn check(run: &RunRecord) -> Vec<Violation> {
    let mut violations = Vec::new();
    let peak = run
        .observations
        .iter()
        .map(|o| o.pods.live())
        .chain([run.peak_live_pods])
        .max()
        .unwrap_or(0);
    if peak > run.max_runners {
        violations.push(Violation::TooManyPods {
            live: peak,
            max: run.max_runners,
        });
    }
    let mut by_job: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut by_runner: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for start in &run.starts {
        by_job
            .entry(start.runner_request_id)
            .or_default()
            .push(start.runner_name.clone());
        by_runner
            .entry(&start.runner_name)
            .or_default()
            .push(start.runner_request_id);
    }
    for (job, runners) in by_job {
        if runners.len() > 1 {
            violations.push(Violation::JobStartedTwice { job, runners });
        }
    }
    for (runner, jobs) in by_runner {
        if jobs.len() > 1 {
            violations.push(Violation::RunnerRanTwoJobs {
                runner: runner.to_string(),
                jobs,
            });
        }
    }
    violations.extend(orphans(&run.leftovers));
    if run.back_to_min_after.is_none() {
        violations.push(Violation::NotBackToMin {
            min: run.min_runners,
        });
    }
    if let Some(how) = &run.controller_exit {
        violations.push(Violation::ControllerDied { how: how.clone() });
    }
    violations
}

/// JIT Secrets and registrations whose pod does not exist.
pub fn orphans(left: &Leftovers) -> Vec<Violation> {
    let secrets = left.jit_secrets.iter().filter_map(|(secret, owner)| {
        let owned = owner.as_ref().is_some_and(|pod| left.pods.contains(pod));
        (!owned).then(|| Violation::OrphanJitSecret {
            secret: secret.clone(),
            owner: owner.clone(),
        })
    });
    let registrations = left
        .registrations
        .iter()
        .filter(|r| !left.pods.iter().any(|p| p.eq_ignore_ascii_case(r)))
        .map(|r| Violation::OrphanRegistration { runner: r.clone() });
    secrets.chain(registrations).collect()
}

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub stage: StageOptions,
    /// Jobs queued per wave.
    pub waves: Vec<usize>,
    /// Pause after a wave's jobs are all done.
    pub pause: Duration,
    pub play: PlayOptions,
    /// Longest wait for one wave's jobs to be done.
    pub wave_timeout: Duration,
    /// Longest wait to come back to `minRunners` after the last wave.
    pub settle_timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            stage: StageOptions {
                sandbox: "demo".into(),
                namespace: "runway-demo".into(),
                scale_set: "arm-builders".into(),
                min_runners: 1,
                max_runners: 10,
                kube_qps: 50,
                kube_burst: 100,
                leader_elect: true,
                status_interval_secs: Some(1),
                long_poll: Duration::from_secs(5),
            },
            waves: vec![4, 12, 6],
            pause: Duration::from_secs(3),
            play: PlayOptions {
                start_delay: Duration::from_secs(1),
                job_duration: Duration::from_secs(4),
                ..PlayOptions::default()
            },
            wave_timeout: Duration::from_secs(120),
            settle_timeout: Duration::from_secs(60),
        }
    }
}

/// Runs the demo (Ctrl-C stops it); the record says what was seen, and
/// [`check`] over it what broke.
pub async fn run(options: &DemoOptions) -> Result<RunRecord, StageError> {
    tokio::select! {
        result = run_demo(options) => result,
        _ = tokio::signal::ctrl_c() => Err(StageError::Interrupted),
    }
}

async fn run_demo(options: &DemoOptions) -> Result<RunRecord, StageError> {
    let stage = Stage::start(&options.stage).await?;
    println!(
        "scale set {:?} (id {}) in namespace {}: minRunners {}, maxRunners {}; waves of {:?} jobs",
        stage.scale_set,
        stage.scale_set_id,
        stage.namespace,
        options.stage.min_runners,
        options.stage.max_runners,
        options.waves
    );
    let player = Player::start(
        stage.client.clone(),
        &stage.namespace,
        &stage.scale_set,
        stage.fake.clone(),
        stage.scale_set_id,
        options.play.clone(),
    );
    let mut table = Table {
        stage: &stage,
        player: &player,
        started: Instant::now(),
        rows: Vec::new(),
        next_note: String::new(),
    };
    println!("{}", table_header());
    let min = usize::try_from(options.stage.min_runners).unwrap_or(0);

    table
        .until("minRunners idle runners", options.settle_timeout, |o| {
            o.pods.idle >= min
        })
        .await?;
    for (index, &jobs) in options.waves.iter().enumerate() {
        if index > 0 {
            table.pause(options.pause).await?;
        }
        stage.queue_jobs(jobs)?;
        table.note(format!("wave {}: {jobs} jobs queued", index + 1));
        table
            .until(
                &format!("wave {} done", index + 1),
                options.wave_timeout,
                |o| o.jobs.open() == 0,
            )
            .await?;
    }
    let settle_start = table.started.elapsed();
    table.note("all jobs done; waiting for minRunners".into());
    let back = table
        .until("back to minRunners", options.settle_timeout, |o| {
            o.pods.live() == min && o.pods.total() == min && o.desired == Some(min as i64)
        })
        .await;
    let back_to_min_after = back.ok().map(|_| table.started.elapsed() - settle_start);

    // Garbage collection of JIT Secrets takes a moment: wait for a clean
    // state, but judge whatever is there after the wait.
    let _ = stage
        .until("no orphans", Duration::from_secs(30), || async {
            let left = stage.leftovers().await.ok()?;
            orphans(&left).is_empty().then_some(())
        })
        .await;
    let leftovers = stage.leftovers().await?;
    let rows = std::mem::take(&mut table.rows);
    let controller_exit =
        (!stage.controller().is_running()).then(|| "exited during the demo".to_string());
    let record = RunRecord {
        min_runners: min,
        max_runners: usize::try_from(options.stage.max_runners).unwrap_or(0),
        observations: rows,
        peak_live_pods: player.watch().peak_live(),
        starts: player.starts(),
        leftovers,
        back_to_min_after,
        controller_exit,
    };
    print_summary(&record, &player, &stage);
    Ok(record)
}

fn print_summary(record: &RunRecord, player: &Player, stage: &Stage) {
    let stats = player.stats();
    let jobs = stage.job_counts();
    println!();
    println!("summary:");
    println!(
        "  jobs: {} done, {} open; runner pods at most {} live at once (maxRunners {})",
        jobs.done,
        jobs.open(),
        record.peak_live_pods,
        record.max_runners
    );
    println!(
        "  runner pods created: {} for {} jobs and minRunners {}",
        player.watch().first_seen().len(),
        jobs.done + jobs.open(),
        record.min_runners
    );
    println!(
        "  player: {} pods set Running, {} jobs started, {} completed, {} pods terminated, {} jobs abandoned, {} errors{}",
        stats.pods_set_running,
        stats.jobs_started,
        stats.jobs_completed,
        stats.pods_terminated,
        stats.jobs_abandoned,
        stats.errors,
        stats
            .last_error
            .as_deref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    );
    match record.back_to_min_after {
        Some(after) => println!(
            "  back to minRunners ({}) {:.1} s after the last job was done",
            record.min_runners,
            after.as_secs_f64()
        ),
        None => println!("  NOT back to minRunners ({})", record.min_runners),
    }
    println!(
        "  left: {} pods, {} JIT Secrets, {} registrations",
        record.leftovers.pods.len(),
        record.leftovers.jit_secrets.len(),
        record.leftovers.registrations.len()
    );
    println!(
        "  controller log: {}",
        stage.controller().log_path().display()
    );
}

/// The live table: one observation per second, printed as it is made.
struct Table<'a> {
    stage: &'a Stage,
    player: &'a Player,
    started: Instant,
    rows: Vec<Observation>,
    next_note: String,
}

impl Table<'_> {
    async fn observe(&mut self, note: String) -> Result<Observation, StageError> {
        let observation = Observation {
            at: self.started.elapsed(),
            jobs: self.stage.job_counts(),
            pods: self.player.watch().census(),
            desired: self.stage.desired().await,
            note,
        };
        println!("{}", table_row(&observation));
        self.rows.push(observation.clone());
        if !self.stage.controller().is_running() {
            return Err(self.stage.died("the demo to finish"));
        }
        Ok(observation)
    }

    /// A note printed with the next row.
    fn note(&mut self, note: String) {
        self.next_note = note;
    }

    /// Observes every second until `done` holds for an observation.
    async fn until(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&Observation) -> bool,
    ) -> Result<(), StageError> {
        let deadline = Instant::now() + within;
        loop {
            let note = std::mem::take(&mut self.next_note);
            let observation = self.observe(note).await?;
            if done(&observation) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StageError::Timeout(wait::Timeout {
                    what: what.to_string(),
                    secs: within.as_secs_f64(),
                }));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn pause(&mut self, pause: Duration) -> Result<(), StageError> {
        let end = Instant::now() + pause;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let note = std::mem::take(&mut self.next_note);
            self.observe(note).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(live: usize) -> Observation {
        Observation {
            at: Duration::from_millis(1500),
            jobs: JobCounts {
                queued: 2,
                assigned: 10,
                running: 3,
                done: 4,
            },
            pods: Census {
                pending: live.saturating_sub(3),
                idle: 1,
                busy: 2,
                finished: 1,
                terminating: 1,
            },
            desired: Some(10),
            note: String::new(),
        }
    }

    fn clean_run() -> RunRecord {
        RunRecord {
            min_runners: 1,
            max_runners: 10,
            observations: vec![observation(10)],
            peak_live_pods: 10,
            starts: vec![
                JobStart {
                    runner_request_id: 1,
                    runner_name: "a".into(),
                },
                JobStart {
                    runner_request_id: 2,
                    runner_name: "b".into(),
                },
            ],
            leftovers: Leftovers {
                pods: ["idle-1".to_string()].into(),
                jit_secrets: [("idle-1-jit".to_string(), Some("idle-1".to_string()))].into(),
                registrations: ["IDLE-1".to_string()].into(),
            },
            back_to_min_after: Some(Duration::from_secs(3)),
            controller_exit: None,
        }
    }

    #[test]
    fn a_clean_run_breaks_nothing() {
        assert_eq!(check(&clean_run()), vec![]);
    }

    #[test]
    fn more_live_pods_than_max_at_any_time_breaks_the_cap() {
        let mut run = clean_run();
        run.peak_live_pods = 11;
        assert_eq!(
            check(&run),
            vec![Violation::TooManyPods { live: 11, max: 10 }]
        );
        let mut run = clean_run();
        run.observations.push(observation(12));
        assert_eq!(
            check(&run),
            vec![Violation::TooManyPods { live: 12, max: 10 }]
        );
    }

    #[test]
    fn a_job_started_twice_or_a_runner_with_two_jobs_is_caught() {
        let mut run = clean_run();
        run.starts.push(JobStart {
            runner_request_id: 1,
            runner_name: "c".into(),
        });
        run.starts.push(JobStart {
            runner_request_id: 3,
            runner_name: "b".into(),
        });
        assert_eq!(
            check(&run),
            vec![
                Violation::JobStartedTwice {
                    job: 1,
                    runners: vec!["a".into(), "c".into()]
                },
                Violation::RunnerRanTwoJobs {
                    runner: "b".into(),
                    jobs: vec![2, 3]
                },
            ]
        );
    }

    #[test]
    fn leftovers_without_their_pod_are_orphans() {
        let mut run = clean_run();
        run.leftovers
            .jit_secrets
            .insert("gone-jit".into(), Some("gone".into()));
        run.leftovers.jit_secrets.insert("loose".into(), None);
        run.leftovers.registrations.insert("gone".into());
        assert_eq!(
            check(&run),
            vec![
                Violation::OrphanJitSecret {
                    secret: "gone-jit".into(),
                    owner: Some("gone".into())
                },
                Violation::OrphanJitSecret {
                    secret: "loose".into(),
                    owner: None
                },
                Violation::OrphanRegistration {
                    runner: "gone".into()
                },
            ]
        );
    }

    #[test]
    fn not_settling_and_a_dead_controller_are_failures() {
        let mut run = clean_run();
        run.back_to_min_after = None;
        run.controller_exit = Some("exit status: 1".into());
        let violations = check(&run);
        assert_eq!(
            violations,
            vec![
                Violation::NotBackToMin { min: 1 },
                Violation::ControllerDied {
                    how: "exit status: 1".into()
                }
            ]
        );
        assert_eq!(
            violations[0].to_string(),
            "the scale set did not come back to minRunners (1) in time"
        );
    }

    #[test]
    fn table_rows_line_up_with_the_header() {
        let header = table_header();
        let mut o = observation(10);
        o.note = "wave 2: 12 jobs queued".into();
        let row = table_row(&o);
        assert_eq!(
            row,
            "   1.5 |      2       10       3     4 |       7    1    2     2 |      10 | wave 2: 12 jobs queued"
        );
        let bars = |s: &str| s.match_indices('|').map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(bars(&header), bars(&row));
        o.desired = None;
        o.note.clear();
        assert!(table_row(&o).ends_with("|       - |"));
    }

    #[test]
    fn job_counts_follow_the_fake_states_of_one_scale_set() {
        let job = |id, scale_set_id, state| JobView {
            runner_request_id: id,
            job_id: id.to_string(),
            scale_set_id,
            state,
            result: None,
            runner_id: None,
            runner_name: None,
            requeues: 0,
        };
        let jobs = [
            job(1, 1, JobState::Available),
            job(2, 1, JobState::Assigned),
            job(3, 1, JobState::Running),
            job(4, 1, JobState::Completed),
            job(5, 1, JobState::Completed),
            job(6, 2, JobState::Running),
        ];
        let counts = JobCounts::of(&jobs, 1);
        assert_eq!(
            counts,
            JobCounts {
                queued: 1,
                assigned: 1,
                running: 1,
                done: 2
            }
        );
        assert_eq!(counts.open(), 3);
    }
}
