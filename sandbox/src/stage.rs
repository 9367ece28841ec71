//! The stage the demo and the benchmarks play on: a throw-away control
//! plane, the fake GitHub, the RunnerScaleSet CRD, a namespace with the
//! credentials Secret and one RunnerScaleSet, and the real controller
//! binary running against them.
//!
//! [`Stage`] stops the controller and the control plane when dropped, also
//! on an error or Ctrl-C; the controller goes first, since it may still talk
//! to the fake and the API server while it shuts down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, Namespace, Pod, PodSpec, PodTemplateSpec, Secret, ServiceAccount,
};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde::Serialize;

use crate::binaries::{Binaries, BinariesError};
use crate::cluster::StartOptions;
use crate::controller_process::{
    ControllerError, ControllerOptions, ControllerProcess, controller_binary, print_crd,
};
use crate::crds::CrdError;
use crate::github::{FakeError, FakeGitHub, FakeOptions, JobState, JobView, NewJob};
use crate::play::{PlayOptions, Player, SCALE_SET_LABEL};
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
    /// How the controller was started: [`Stage::spawn_controller`] starts
    /// more like it.
    controller_options: ControllerOptions,
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
        Self::start_with(options, &StartOptions::default()).await
    }

    /// [`Stage::start`] on a control plane started with `plane` (a real
    /// node, for one).
    pub async fn start_with(
        options: &StageOptions,
        plane: &StartOptions,
    ) -> Result<Stage, StageError> {
        let bins = Binaries::locate_or_install()?;
        let controller_binary = controller_binary()?;
        let dir = paths::sandbox_dir(&options.sandbox);
        let started = Instant::now();
        let plane =
            PlaneGuard(ControlPlane::start_with(&options.sandbox, &dir, &bins, plane).await?);
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
            controller_options,
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

    /// Starts one more controller like the stage's (leader election on,
    /// same Lease), with `POD_NAME` `name`, logging to `<name>.log` next to
    /// the first one's. The caller stops it (dropping it does).
    pub fn spawn_controller(&self, name: &str) -> Result<ControllerProcess, StageError> {
        let mut options = self.controller_options.clone();
        options.log = self.plane.0.logs_dir().join(format!("{name}.log"));
        options.metrics_port = crate::process::free_port().map_err(|source| StageError::Io {
            what: "picking a free port for /metrics",
            source,
        })?;
        options.pod_name = Some(name.to_owned());
        let controller = ControllerProcess::spawn(&options)?;
        eprintln!(
            "runway-controller {name} pid {}, log {}",
            controller.pid(),
            controller.log_path().display()
        );
        Ok(controller)
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

    /// A [`Player`] for the scale set: the kubelet and the runners.
    pub fn player(&self, options: PlayOptions) -> Player {
        Player::start(
            self.client.clone(),
            &self.namespace,
            &self.scale_set,
            self.fake.clone(),
            self.scale_set_id,
            options,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

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
