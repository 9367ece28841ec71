//! `runway-sandbox bench scale-up --jobs N`: how fast and how cheaply the
//! real controller binary turns N queued jobs into N runner pods.
//!
//! One throw-away control plane, the fake GitHub and the controller (leader
//! election on), one scale set (min 0, max N). N jobs are queued at once;
//! a pod watch stamps each runner pod when it first appears. Then the
//! [`Player`](crate::play::Player) runs every job to completion, and the
//! controller's `/metrics` give the Kubernetes writes and GitHub calls per
//! job, `/proc` its peak memory. Last, a baseline: a bare client creates N
//! Secrets and N Pods of the same size with the same rate limit (a
//! `governor` token bucket) and the same concurrency as the controller; the
//! ratio of the two times says what the controller's own work costs.
//!
//! Missing a target is reported, not an error; a run that cannot finish
//! (a timeout, the controller dying) is.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use futures::StreamExt;
use governor::{Quota, RateLimiter};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};

pub mod kube_actions;
pub mod node;
mod node_report;
mod report;

use crate::controller_process::{Metrics, STOP_GRACE};
use crate::demo::orphans;
use crate::play::{PlayOptions, PodWatch, SCALE_SET_LABEL};
use crate::stage::{JobCounts, Stage, StageError, StageOptions, create_namespace};

pub use node_report::{Capacity, NodeReport, Spread};
pub use report::{
    ScaleUpReport, TARGET_POD_SECRET_WRITES_PER_JOB, TARGET_RATIO, Target, WritesPerJob, percentile,
};

/// The controller's runner creations in flight at once (its
/// `create_concurrency`); the baseline uses the same.
pub const CONTROLLER_CREATE_CONCURRENCY: usize = 10;

/// How to run `bench scale-up`.
#[derive(Debug, Clone)]
pub struct ScaleUpOptions {
    pub jobs: usize,
    pub kube_qps: u32,
    pub kube_burst: u32,
    /// Longest wait for each phase (pods up; everything done).
    pub timeout: Duration,
}

impl ScaleUpOptions {
    /// `jobs` jobs at the controller's default rates, with a timeout that
    /// grows with the jobs.
    pub fn new(jobs: usize) -> Self {
        Self {
            jobs,
            kube_qps: 50,
            kube_burst: 100,
            timeout: Duration::from_secs(120) + Duration::from_millis(500) * jobs as u32,
        }
    }
}

/// Runs `bench scale-up` (Ctrl-C stops it).
pub async fn scale_up(options: &ScaleUpOptions) -> Result<ScaleUpReport, StageError> {
    tokio::select! {
        result = run_scale_up(options) => result,
        _ = tokio::signal::ctrl_c() => Err(StageError::Interrupted),
    }
}

async fn run_scale_up(options: &ScaleUpOptions) -> Result<ScaleUpReport, StageError> {
    let n = options.jobs.max(1);
    let max = i32::try_from(n).unwrap_or(i32::MAX);
    let mut stage = Stage::start(&StageOptions {
        sandbox: "bench".into(),
        namespace: "runway-bench".into(),
        scale_set: "bench".into(),
        min_runners: 0,
        max_runners: max,
        kube_qps: options.kube_qps,
        kube_burst: options.kube_burst,
        leader_elect: true,
        status_interval_secs: None,
        long_poll: Duration::from_secs(5),
        node: false,
    })
    .await?;
    let watch = PodWatch::start(stage.client.clone(), &stage.namespace, &stage.scale_set);
    stage
        .until("the pod watch to list", Duration::from_secs(30), || async {
            watch.synced().then_some(())
        })
        .await?;

    eprintln!("queueing {n} jobs");
    let queued_at = Instant::now();
    stage.queue_jobs(n)?;
    let first_seen = stage
        .until(&format!("{n} runner pods"), options.timeout, || async {
            let seen = watch.first_seen();
            (seen.len() >= n).then_some(seen)
        })
        .await?;
    let mut latencies: Vec<Duration> = first_seen
        .values()
        .map(|t| t.saturating_duration_since(queued_at))
        .collect();
    latencies.sort();
    let pods_up = latencies.last().copied().unwrap_or_default();
    eprintln!(
        "{n} runner pods up in {:.2} s; playing the jobs",
        pods_up.as_secs_f64()
    );
    if let Ok(metrics) = stage.controller().metrics().await {
        let requests = by_labels(&metrics, "runway_kube_requests_total", "verb", "resource");
        let total: f64 = requests.values().sum();
        let detail: Vec<String> = requests
            .iter()
            .map(|((verb, resource), n)| format!("{verb} {resource} {n}"))
            .collect();
        eprintln!(
            "controller Kubernetes requests so far: {total} ({})",
            detail.join(", ")
        );
    }

    let samples = sample_objects(&stage, &watch).await?;
    let player = stage.player(PlayOptions {
        start_delay: Duration::ZERO,
        job_duration: Duration::ZERO,
        ..PlayOptions::default()
    });
    stage
        .until(
            "every job done and every pod, JIT Secret and registration gone",
            options.timeout,
            || async {
                let jobs: JobCounts = stage.job_counts();
                let left = stage.leftovers().await.ok()?;
                (jobs.done >= n
                    && jobs.open() == 0
                    && left.pods.is_empty()
                    && orphans(&left).is_empty())
                .then_some(())
            },
        )
        .await?;
    let all_done = queued_at.elapsed();
    player.stop();
    let stats = player.stats();
    eprintln!(
        "all done in {:.2} s (player: {} started, {} completed, {} errors)",
        all_done.as_secs_f64(),
        stats.jobs_started,
        stats.jobs_completed,
        stats.errors
    );

    let mut report = ScaleUpReport {
        jobs: n,
        kube_qps: options.kube_qps,
        kube_burst: options.kube_burst,
        pods_up,
        latencies,
        all_done,
        pods_created: watch.first_seen().len(),
        github_fake: stage.fake.counters(),
        peak_rss_kib: stage.controller().peak_rss_kib(),
        ..ScaleUpReport::default()
    };
    match stage.controller().metrics().await {
        Ok(metrics) => {
            report.kube_writes =
                by_labels(&metrics, "runway_kube_writes_total", "verb", "resource");
            report.github_metric =
                by_labels(&metrics, "runway_github_requests_total", "endpoint", "code");
            if report.kube_writes.is_empty() {
                report.metrics_error = Some(format!(
                    "no runway_kube_writes_total in {} samples",
                    metrics.len()
                ));
            }
        }
        Err(e) => report.metrics_error = Some(e.to_string()),
    }
    if !stage.controller().is_running() {
        return Err(stage.died("the benchmark to finish"));
    }
    stage.controller_mut().shutdown(STOP_GRACE).await?;

    eprintln!("baseline: {n} Secrets + {n} Pods through a bare client");
    report.baseline = baseline(&stage.client, &samples, n, options).await?;
    Ok(report)
}

/// Sums a counter by two of its labels.
fn by_labels(metrics: &Metrics, name: &str, a: &str, b: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for (labels, value) in metrics.series(name) {
        let key = (
            labels.get(a).cloned().unwrap_or_default(),
            labels.get(b).cloned().unwrap_or_default(),
        );
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

/// A runner pod and its JIT Secret as the controller made them, to give the
/// baseline objects of the same size.
struct Samples {
    pod: Pod,
    secret: Secret,
}

async fn sample_objects(stage: &Stage, watch: &PodWatch) -> Result<Samples, StageError> {
    let pod = watch.pods().into_values().next().ok_or_else(|| {
        StageError::Timeout(crate::wait::Timeout {
            what: "a runner pod to copy".into(),
            secs: 0.0,
        })
    })?;
    let secrets: Api<Secret> = Api::namespaced(stage.client.clone(), &stage.namespace);
    let selector = ListParams::default().labels(&format!("{SCALE_SET_LABEL}={}", stage.scale_set));
    let secret = stage
        .until("a JIT Secret to copy", Duration::from_secs(60), || async {
            secrets.list(&selector).await.ok()?.items.into_iter().next()
        })
        .await?;
    Ok(Samples { pod, secret })
}

/// The sample pod as a new object named `name`: labels, annotations and
/// spec kept; what the API server or admission added, the owner and the
/// finalizer dropped; the service account token volume left to admission.
fn pod_like(sample: &Pod, name: &str) -> Pod {
    let mut spec = sample.spec.clone().unwrap_or_default();
    spec.node_name = None;
    spec.service_account_name = None;
    spec.service_account = None;
    let is_token = |n: &str| n.starts_with("default-token-") || n.starts_with("kube-api-access-");
    if let Some(volumes) = &mut spec.volumes {
        volumes.retain(|v| !is_token(&v.name));
    }
    for container in &mut spec.containers {
        if let Some(mounts) = &mut container.volume_mounts {
            mounts.retain(|m| !is_token(&m.name));
        }
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: sample.metadata.labels.clone(),
            annotations: sample.metadata.annotations.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn secret_like(sample: &Secret, name: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: sample.metadata.labels.clone(),
            ..ObjectMeta::default()
        },
        ..sample.clone()
    }
}

/// N Pods and N Secrets through a bare client at the controller's rate
/// limit and create concurrency, in a namespace of their own.
async fn baseline(
    client: &Client,
    samples: &Samples,
    n: usize,
    options: &ScaleUpOptions,
) -> Result<Duration, StageError> {
    let namespace = "runway-bench-baseline";
    create_namespace(client, namespace).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    // qps 0 is unlimited, as for the controller.
    let limiter = NonZeroU32::new(options.kube_qps).map(|qps| {
        let burst = NonZeroU32::new(options.kube_burst).unwrap_or(NonZeroU32::MIN);
        RateLimiter::direct(Quota::per_second(qps).allow_burst(burst))
    });
    let started = Instant::now();
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(0..n)
        .map(|i| {
            let (pods, secrets, limiter) = (&pods, &secrets, limiter.as_ref());
            async move {
                let name = format!("baseline-{i}");
                if let Some(limiter) = limiter {
                    limiter.until_ready().await;
                }
                pods.create(&PostParams::default(), &pod_like(&samples.pod, &name))
                    .await?;
                if let Some(limiter) = limiter {
                    limiter.until_ready().await;
                }
                secrets
                    .create(
                        &PostParams::default(),
                        &secret_like(&samples.secret, &format!("{name}-jit")),
                    )
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(CONTROLLER_CREATE_CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();
    if let Some(Err(source)) = results.into_iter().find(Result::is_err) {
        return Err(StageError::Kube {
            what: "creating the baseline objects".into(),
            source,
        });
    }
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_objects_copy_the_sample_without_its_identity() {
        use k8s_openapi::api::core::v1::{Container, PodSpec, Volume, VolumeMount};
        let sample = Pod {
            metadata: ObjectMeta {
                name: Some("runner-abc".into()),
                uid: Some("u".into()),
                finalizers: Some(vec!["actions.runway.dev/runner-registration".into()]),
                labels: Some([("a".to_string(), "b".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                service_account_name: Some("runner-sa".into()),
                volumes: Some(vec![Volume {
                    name: "default-token-x1".into(),
                    ..Volume::default()
                }]),
                containers: vec![Container {
                    name: "runner".into(),
                    volume_mounts: Some(vec![VolumeMount {
                        name: "default-token-x1".into(),
                        mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                        ..VolumeMount::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        };
        let pod = pod_like(&sample, "baseline-0");
        assert_eq!(pod.metadata.name.as_deref(), Some("baseline-0"));
        assert_eq!(pod.metadata.finalizers, None);
        assert_eq!(pod.metadata.uid, None);
        assert_eq!(pod.metadata.labels, sample.metadata.labels);
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.service_account_name, None);
        assert_eq!(spec.volumes, Some(vec![]));
        assert_eq!(spec.containers[0].volume_mounts, Some(vec![]));
    }
}
