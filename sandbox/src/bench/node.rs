//! `runway-sandbox bench node`: what the sandbox's real node (kubelet,
//! containerd, runc on this machine) costs a runner, each number beside a
//! baseline measured in the same run.
//!
//! One throw-away sandbox with a node, the fake GitHub and the real
//! `runway-controller` binary ([`Stage::start`] with a node). Then:
//!
//! 1. Pod created -> first container running. Runner-shaped pods (a runner
//!    container of [`images::RUNNER`] running `sleep`, a dind sidecar of
//!    [`images::DIND`], `hostNetwork`, pull policy Never) are created
//!    `batch` at a time; a watch on their namespace stamps the moment it
//!    sees the runner container running; the batch is deleted and gone
//!    before the next one, so no measurement is taken on a node still busy
//!    with earlier pods. Baseline: the same for a pod with one container of
//!    [`images::BASE`] (also `hostNetwork`: the pause sandbox plus one
//!    container); runner and baseline batches alternate.
//! 2. Job queued -> the runner took it (the fake's JobStarted; the
//!    stand-in runs the first step right after) and -> its report arrived,
//!    with the scale set's runner pods as in `controller/tests/real_node.rs`
//!    and the fake's port forwarded into the node. One job at a time (each
//!    after the previous one finished): cold at minRunners 0 (no runner
//!    pod left before each job), then warm at minRunners 1 (an idle
//!    runner's container running before each job): the baseline.
//! 3. How many runner-shaped pods run at once: created `batch` at a time
//!    until `max_pods` or until a batch is not all running within
//!    `running_within`; MemAvailable/MemFree before and with them up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::task::JoinHandle;

use super::node_report::{Capacity, NodeReport, meminfo_kib};
use crate::github::NewJob;
use crate::play::{PodWatch, RUNNER_CONTAINER, container_running};
use crate::stage::{Stage, StageError, StageOptions, create_namespace, runner_scale_set_resource};
use crate::{ClusterError, images, wait};

/// The kubelet's `maxPods` (its default, which the sandbox keeps).
pub const KUBELET_MAX_PODS: usize = 110;
/// What each benchmark job runs.
pub const FIRST_STEP: &str = "echo first-step-running";
/// The namespace of the plain pods (parts 1 and 3).
const PODS_NAMESPACE: &str = "runway-bench-pods";
/// Longest wait for a batch of pods to go, for a job to finish.
const LONG_WAIT: Duration = Duration::from_secs(300);

/// How to run `bench node`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Sandbox name (its files live in `~/.cache/runway/sandbox/<name>/`).
    pub sandbox: String,
    /// Pods of each shape timed in part 1.
    pub pods: usize,
    /// Pods created at once.
    pub batch: usize,
    /// Jobs cold and jobs warm in part 2.
    pub jobs: usize,
    /// The most pods part 3 creates.
    pub max_pods: usize,
    /// A batch not all running within this ends part 3.
    pub running_within: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            sandbox: "bench-node".into(),
            pods: 50,
            batch: 10,
            jobs: 10,
            max_pods: KUBELET_MAX_PODS,
            running_within: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeBenchError {
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Timeout(#[from] wait::Timeout),
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    #[error("{what} did not come up within {secs} s: {states}")]
    PodsStuck {
        what: String,
        secs: u64,
        states: String,
    },
    #[error("job {id}: {problem}")]
    Job { id: i64, problem: String },
    #[error("interrupted (Ctrl-C)")]
    Interrupted,
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> NodeBenchError {
    let what = what.into();
    move |source| NodeBenchError::Kube { what, source }
}

/// Runs `bench node` (Ctrl-C stops it).
pub async fn node(options: &NodeOptions) -> Result<NodeReport, NodeBenchError> {
    tokio::select! {
        result = run(options) => result,
        _ = tokio::signal::ctrl_c() => Err(NodeBenchError::Interrupted),
    }
}

async fn run(options: &NodeOptions) -> Result<NodeReport, NodeBenchError> {
    let batch = options.batch.max(1);
    let started = Instant::now();
    let stage = Stage::start(&StageOptions {
        sandbox: options.sandbox.clone(),
        namespace: "runway-bench-node".into(),
        scale_set: "node".into(),
        min_runners: 0,
        // Warm: the idle runner that takes a job and its replacement.
        max_runners: 2,
        kube_qps: 50,
        kube_burst: 100,
        leader_elect: false,
        status_interval_secs: None,
        long_poll: Duration::from_secs(5),
        node: true,
    })
    .await?;
    eprintln!(
        "sandbox with a node and the controller up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    create_namespace(&stage.client, PODS_NAMESPACE).await?;
    let pods: Api<Pod> = Api::namespaced(stage.client.clone(), PODS_NAMESPACE);
    let watch = RunningWatch::start(pods.clone());
    wait::until("the pod watch to list", Duration::from_secs(30), || async {
        watch.synced().then_some(())
    })
    .await?;

    let mut report = NodeReport {
        batch,
        ..NodeReport::default()
    };
    let mut next = 0;
    while report.runner_pods.len() < options.pods || report.base_pods.len() < options.pods {
        for shape in [Shape::Runner, Shape::Base] {
            let done = match shape {
                Shape::Runner => report.runner_pods.len(),
                Shape::Base => report.base_pods.len(),
            };
            let k = batch.min(options.pods.saturating_sub(done));
            if k == 0 {
                continue;
            }
            let names: Vec<String> = (next..next + k)
                .map(|i| format!("{}-{i}", shape.prefix()))
                .collect();
            next += k;
            let (latencies, _) =
                create_batch(&pods, &watch, &names, shape, Duration::from_secs(120)).await?;
            let Some(latencies) = latencies else {
                return Err(stuck(&pods, &names, shape.prefix(), 120).await);
            };
            delete_all(&pods).await?;
            eprintln!(
                "{k} {} pods running and gone again ({} of {})",
                shape.prefix(),
                done + k,
                options.pods
            );
            match shape {
                Shape::Runner => report.runner_pods.extend(latencies),
                Shape::Base => report.base_pods.extend(latencies),
            }
        }
    }

    let (cold, warm) = jobs(&stage, options.jobs).await?;
    (report.cold_started, report.cold_reported) = cold.into_iter().unzip();
    (report.warm_started, report.warm_reported) = warm.into_iter().unzip();

    report.capacity = capacity(&pods, &watch, options, batch).await?;
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Runner container (`sleep`) and dind sidecar.
    Runner,
    /// One container of the base image.
    Base,
}

impl Shape {
    fn prefix(self) -> &'static str {
        match self {
            Shape::Runner => "runner",
            Shape::Base => "base",
        }
    }
}

/// A pod of `shape` named `name`; its first container is the one timed.
fn bench_pod(name: &str, shape: Shape) -> Pod {
    let sleeper = |container: &str, image: &str| {
        json!({
            "name": container,
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["sleep", "3600"],
        })
    };
    let containers = match shape {
        Shape::Runner => json!([
            sleeper(RUNNER_CONTAINER, images::RUNNER),
            { "name": "dind", "image": images::DIND, "imagePullPolicy": "Never" },
        ]),
        Shape::Base => json!([sleeper("main", images::BASE)]),
    };
    let value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "runway.dev/bench": shape.prefix() } },
        "spec": {
            "hostNetwork": true,
            "restartPolicy": "Never",
            // `sleep` as PID 1 ignores SIGTERM: do not wait the default 30 s.
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
        },
    });
    // The value above is a fixed, well-formed Pod.
    serde_json::from_value(value).unwrap_or_default()
}

/// Creates `names` at once and waits up to `within` for each one's first
/// container to run. Returns create-returned -> running per pod (None if
/// not all ran in time) and the moment the wait ended.
async fn create_batch(
    pods: &Api<Pod>,
    watch: &RunningWatch,
    names: &[String],
    shape: Shape,
    within: Duration,
) -> Result<(Option<Vec<Duration>>, Instant), NodeBenchError> {
    let created = futures::future::join_all(names.iter().map(|name| async move {
        let result = pods
            .create(&PostParams::default(), &bench_pod(name, shape))
            .await;
        (name.clone(), result.map(|_| Instant::now()))
    }))
    .await;
    let mut returned = BTreeMap::new();
    for (name, result) in created {
        returned.insert(
            name.clone(),
            result.map_err(kube_error(format!("creating pod {name}")))?,
        );
    }
    let ran = wait::until("the batch's pods to run", within, || async {
        returned
            .iter()
            .map(|(name, at)| Some(watch.running_at(name)?.saturating_duration_since(*at)))
            .collect::<Option<Vec<Duration>>>()
    })
    .await
    .ok();
    Ok((ran, Instant::now()))
}

/// The error for pods that did not come up, with what they wait for.
async fn stuck(pods: &Api<Pod>, names: &[String], what: &str, secs: u64) -> NodeBenchError {
    let states = match pods.list(&ListParams::default()).await {
        Ok(list) => stuck_reasons(
            list.items
                .iter()
                .filter(|p| p.metadata.name.as_ref().is_some_and(|n| names.contains(n))),
        ),
        Err(e) => format!("(cannot list them: {e})"),
    };
    NodeBenchError::PodsStuck {
        what: format!("{} {what} pods", names.len()),
        secs,
        states,
    }
}

/// Deletes every pod of the namespace and waits until they are gone.
async fn delete_all(pods: &Api<Pod>) -> Result<(), NodeBenchError> {
    pods.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .map_err(kube_error("deleting the pods"))?;
    wait::until("the pods to be gone", LONG_WAIT, || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await?;
    Ok(())
}

/// Part 2: `jobs` jobs cold, then `jobs` warm; queued -> started and
/// queued -> reported of each.
async fn jobs(stage: &Stage, jobs: usize) -> Result<Timings, NodeBenchError> {
    let watch = PodWatch::start(stage.client.clone(), &stage.namespace, &stage.scale_set);
    let template = runner_template(stage.plane().state().api_port);

    set_scale_set(stage, 0, &template).await?;
    let mut cold = Vec::new();
    for i in 0..jobs {
        stage
            .until("no runner pod left", LONG_WAIT, || async {
                watch.pods().is_empty().then_some(())
            })
            .await?;
        cold.push(run_job(stage).await?);
        eprintln!("cold job {} of {jobs} done", i + 1);
    }

    set_scale_set(stage, 1, &template).await?;
    let mut warm = Vec::new();
    for i in 0..jobs {
        stage
            .until("an idle runner", LONG_WAIT, || async {
                let idle = stage
                    .fake
                    .snapshot()
                    .runners
                    .iter()
                    .any(|r| r.scale_set_id == stage.scale_set_id && !r.busy);
                let running = watch
                    .pods()
                    .values()
                    .any(|p| container_running(p, RUNNER_CONTAINER));
                (idle && running).then_some(())
            })
            .await?;
        // The stand-in comes online and starts its long poll for a job.
        tokio::time::sleep(Duration::from_secs(1)).await;
        warm.push(run_job(stage).await?);
        eprintln!("warm job {} of {jobs} done", i + 1);
    }

    set_scale_set(stage, 0, &template).await?;
    stage
        .until("no runner pod left", LONG_WAIT, || async {
            watch.pods().is_empty().then_some(())
        })
        .await?;
    Ok((cold, warm))
}

type Timings = (Vec<(Duration, Duration)>, Vec<(Duration, Duration)>);

/// The scale set's runner pods: the sandbox's runner pod without dind.
fn runner_template(api_port: u16) -> serde_json::Value {
    json!({ "spec": crate::node::runner_pod_spec(api_port, false) })
}

/// Sets minRunners and the template, and waits until the controller runs
/// the new spec and its listener polls.
async fn set_scale_set(
    stage: &Stage,
    min: i32,
    template: &serde_json::Value,
) -> Result<(), NodeBenchError> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        stage.client.clone(),
        &stage.namespace,
        &runner_scale_set_resource(),
    );
    let patch = json!({ "spec": { "minRunners": min, "template": template } });
    let patched = api
        .patch(
            &stage.scale_set,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(kube_error("patching the RunnerScaleSet"))?;
    let generation = patched.metadata.generation.unwrap_or_default();
    let id = stage.scale_set_id;
    stage
        .until(
            &format!("the controller to run spec generation {generation} and poll"),
            Duration::from_secs(90),
            || async {
                let observed = stage.status().await?.get("observedGeneration")?.as_i64()?;
                let polling = stage
                    .fake
                    .snapshot()
                    .sessions
                    .iter()
                    .any(|s| s.scale_set_id == id && s.polls_in_flight > 0);
                (observed >= generation && polling).then_some(())
            },
        )
        .await?;
    Ok(())
}

/// Queues one job and waits for its report: (queued -> started, queued ->
/// reported), both on the fake's clock.
async fn run_job(stage: &Stage) -> Result<(Duration, Duration), NodeBenchError> {
    let job = NewJob {
        steps: vec![FIRST_STEP.to_string()],
        ..NewJob::default()
    };
    let id = stage
        .fake
        .try_queue_job(stage.scale_set_id, job)
        .map_err(StageError::from)?
        .runner_request_id;
    let times = stage
        .until(&format!("job {id} to finish"), LONG_WAIT, || async {
            stage.fake.job_times(id).filter(|t| t.finished.is_some())
        })
        .await?;
    let report = stage.fake.job_report(id).ok_or(NodeBenchError::Job {
        id,
        problem: "finished without a report from the runner".into(),
    })?;
    if report.result != "succeeded" || !report.output_tail.iter().any(|l| l == "first-step-running")
    {
        return Err(NodeBenchError::Job {
            id,
            problem: format!("the runner reported {report:?}"),
        });
    }
    let (Some(started), Some(finished)) = (times.started, times.finished) else {
        return Err(NodeBenchError::Job {
            id,
            problem: "no JobStarted before it finished".into(),
        });
    };
    Ok((
        started.saturating_duration_since(times.queued),
        finished.saturating_duration_since(times.queued),
    ))
}

/// Part 3: runner-shaped pods until `max_pods` or a batch not all running
/// within `running_within`.
async fn capacity(
    pods: &Api<Pod>,
    watch: &RunningWatch,
    options: &NodeOptions,
    batch: usize,
) -> Result<Capacity, NodeBenchError> {
    let meminfo = || std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let before = meminfo();
    let mut capacity = Capacity {
        max_pods: options.max_pods,
        mem_available_before_kib: meminfo_kib(&before, "MemAvailable"),
        mem_free_before_kib: meminfo_kib(&before, "MemFree"),
        ..Capacity::default()
    };
    let started = Instant::now();
    let mut names: Vec<String> = Vec::new();
    let mut limited_by = None;
    let mut ended = started;
    while names.len() < options.max_pods {
        let k = batch.min(options.max_pods - names.len());
        let batch_names: Vec<String> = (names.len()..names.len() + k)
            .map(|i| format!("capacity-{i}"))
            .collect();
        let created = create_batch(
            pods,
            watch,
            &batch_names,
            Shape::Runner,
            options.running_within,
        )
        .await;
        names.extend(batch_names.iter().cloned());
        match created {
            Ok((Some(_), at)) => ended = at,
            Ok((None, at)) => {
                ended = at;
                let list = pods
                    .list(&ListParams::default())
                    .await
                    .map_err(kube_error("listing the pods"))?;
                limited_by = Some(format!(
                    "a batch of {k} was not all running within {} s: {}",
                    options.running_within.as_secs(),
                    stuck_reasons(list.items.iter())
                ));
                break;
            }
            Err(e) => {
                limited_by = Some(format!("creating pods failed: {e}"));
                break;
            }
        }
        eprintln!("{} runner-shaped pods running", names.len());
    }
    let after = meminfo();
    capacity.elapsed = ended.saturating_duration_since(started);
    capacity.tried = names.len();
    capacity.running = names
        .iter()
        .filter(|n| watch.running_at(n).is_some())
        .count();
    capacity.mem_available_after_kib = meminfo_kib(&after, "MemAvailable");
    capacity.mem_free_after_kib = meminfo_kib(&after, "MemFree");
    capacity.limited_by = limited_by.unwrap_or_else(|| {
        if options.max_pods >= KUBELET_MAX_PODS {
            format!("the kubelet's maxPods ({KUBELET_MAX_PODS}): all ran")
        } else {
            format!("--max-pods {}: all ran", options.max_pods)
        }
    });
    delete_all(pods).await?;
    Ok(capacity)
}

/// Why pods are not running, counted: "3 x unschedulable: 0/1 nodes are
/// available: 1 Too many pods; 1 x dind waiting: ContainerCreating".
fn stuck_reasons<'a>(pods: impl Iterator<Item = &'a Pod>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for pod in pods {
        if let Some(reason) = stuck_reason(pod) {
            *counts.entry(reason).or_default() += 1;
        }
    }
    if counts.is_empty() {
        return "every pod's containers run".into();
    }
    counts
        .iter()
        .map(|(reason, n)| format!("{n} x {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why this pod's containers are not all running (None: they are).
fn stuck_reason(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref();
    let unscheduled = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        return Some(format!(
            "unschedulable: {}",
            c.message.as_deref().or(c.reason.as_deref()).unwrap_or("?")
        ));
    }
    let statuses = status
        .and_then(|s| s.container_statuses.as_ref())
        .cloned()
        .unwrap_or_default();
    let expected = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    for c in &statuses {
        let state = c.state.clone().unwrap_or_default();
        if let Some(w) = state.waiting {
            return Some(format!(
                "{} waiting: {}",
                c.name,
                w.reason.unwrap_or_else(|| "?".into())
            ));
        }
        if let Some(t) = state.terminated {
            return Some(format!(
                "{} terminated: {} (exit {})",
                c.name,
                t.reason.unwrap_or_else(|| "?".into()),
                t.exit_code
            ));
        }
    }
    (statuses.len() < expected).then(|| {
        format!(
            "no container started (phase {})",
            status.and_then(|s| s.phase.as_deref()).unwrap_or("?")
        )
    })
}

/// The moment a watch first saw each pod's first container running.
struct RunningWatch {
    seen: Arc<Mutex<BTreeMap<String, Instant>>>,
    synced: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RunningWatch {
    fn start(pods: Api<Pod>) -> RunningWatch {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let synced = Arc::new(AtomicBool::new(false));
        let (seen_w, synced_w) = (seen.clone(), synced.clone());
        let task = tokio::spawn(async move {
            let mut events = watcher(pods, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        let first = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.containers.first())
                            .map(|c| c.name.clone());
                        if let (Some(name), Some(first)) = (pod.metadata.name.clone(), first)
                            && container_running(&pod, &first)
                        {
                            lock(&seen_w).entry(name).or_insert(now);
                        }
                    }
                    Ok(watcher::Event::InitDone) => synced_w.store(true, Ordering::SeqCst),
                    Ok(_) | Err(_) => {}
                }
            }
        });
        RunningWatch { seen, synced, task }
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    fn running_at(&self, name: &str) -> Option<Instant> {
        lock(&self.seen).get(name).copied()
    }
}

impl Drop for RunningWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    #[test]
    fn bench_pods_have_the_runner_shape_or_one_base_container() {
        let runner = bench_pod("runner-0", Shape::Runner);
        let spec = runner.spec.expect("spec");
        assert_eq!(spec.host_network, Some(true));
        let images: Vec<_> = spec
            .containers
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.image.as_deref(),
                    c.image_pull_policy.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            images,
            vec![
                ("runner", Some(images::RUNNER), Some("Never")),
                ("dind", Some(images::DIND), Some("Never"))
            ]
        );
        let base = bench_pod("base-0", Shape::Base).spec.expect("spec");
        assert_eq!(base.containers.len(), 1);
        assert_eq!(base.containers[0].image.as_deref(), Some(images::BASE));
        assert_eq!(base.host_network, Some(true));
    }

    #[test]
    fn stuck_pods_say_what_they_wait_for() {
        let unschedulable = pod(json!({
            "metadata": { "name": "a" },
            "spec": { "containers": [{ "name": "runner" }] },
            "status": { "phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Too many pods."
            }]},
        }));
        let creating = pod(json!({
            "metadata": { "name": "b" },
            "spec": { "containers": [{ "name": "runner" }, { "name": "dind" }] },
            "status": { "phase": "Pending", "containerStatuses": [
                { "name": "dind", "image": "d", "imageID": "", "ready": false, "restartCount": 0,
                  "state": { "waiting": { "reason": "ContainerCreating" } } },
                { "name": "runner", "image": "r", "imageID": "", "ready": true, "restartCount": 0,
                  "state": { "running": {} } },
            ]},
        }));
        let running = pod(json!({
            "metadata": { "name": "c" },
            "spec": { "containers": [{ "name": "runner" }] },
            "status": { "phase": "Running", "containerStatuses": [
                { "name": "runner", "image": "r", "imageID": "", "ready": true, "restartCount": 0,
                  "state": { "running": {} } },
            ]},
        }));
        let not_started = pod(json!({
            "metadata": { "name": "d" },
            "spec": { "containers": [{ "name": "runner" }] },
            "status": { "phase": "Pending" },
        }));
        assert_eq!(stuck_reason(&running), None);
        assert_eq!(
            stuck_reasons(
                [
                    &unschedulable,
                    &unschedulable,
                    &creating,
                    &running,
                    &not_started
                ]
                .into_iter()
            ),
            "1 x dind waiting: ContainerCreating; 1 x no container started (phase Pending); 2 x unschedulable: 0/1 nodes are available: 1 Too many pods."
        );
        assert_eq!(
            stuck_reasons([&running].into_iter()),
            "every pod's containers run"
        );
    }
}
