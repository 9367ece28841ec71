//! `runway-sandbox bench scale-up --jobs N`: how fast and how cheaply the
//! real controller binary turns N queued jobs into N runner pods.
//!
//! One throw-away control plane, the fake GitHub and the controller (leader
//! election on), one scale set (min 0, max N). N jobs are queued at once;
//! a pod watch stamps each runner pod when it first appears. Then the
//! [`Player`] runs every job to completion, and the controller's `/metrics`
//! give the Kubernetes writes and GitHub calls per job, `/proc` its peak
//! memory. Last, a baseline: a bare client creates N Secrets and N Pods of
//! the same size with the same rate limit (a `governor` token bucket) and
//! the same concurrency as the controller; the ratio of the two times says
//! what the controller's own work costs.
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

use crate::controller_process::{Metrics, STOP_GRACE};
use crate::demo::{JobCounts, Stage, StageError, StageOptions, create_namespace, orphans};
use crate::play::{PlayOptions, Player, PodWatch, SCALE_SET_LABEL};

/// The controller's runner creations in flight at once (its
/// `create_concurrency`); the baseline uses the same.
pub const CONTROLLER_CREATE_CONCURRENCY: usize = 10;
/// Target: Kubernetes writes for pods and Secrets per job.
pub const TARGET_POD_SECRET_WRITES_PER_JOB: f64 = 4.0;
/// Target: controller time over baseline time.
pub const TARGET_RATIO: f64 = 1.3;

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

/// What `bench scale-up` measured.
#[derive(Debug, Clone, Default)]
pub struct ScaleUpReport {
    pub jobs: usize,
    pub kube_qps: u32,
    pub kube_burst: u32,
    /// From queueing to the last of the N pods appearing.
    pub pods_up: Duration,
    /// Queueing to each pod appearing, sorted.
    pub latencies: Vec<Duration>,
    /// From queueing to every job done and every pod and JIT Secret gone.
    pub all_done: Duration,
    /// Runner pods that existed at some point (N when none was wasted).
    pub pods_created: usize,
    /// `runway_kube_writes_total` by (verb, resource).
    pub kube_writes: BTreeMap<(String, String), f64>,
    /// `runway_github_requests_total` by (endpoint, code).
    pub github_metric: BTreeMap<(String, String), f64>,
    /// Requests the fake counted, by endpoint.
    pub github_fake: BTreeMap<String, u64>,
    /// Why the metrics are missing, if they are.
    pub metrics_error: Option<String>,
    pub peak_rss_kib: Option<u64>,
    /// The bare client's time for N Secrets and N Pods.
    pub baseline: Duration,
}

/// Writes per job, grouped the way the targets read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WritesPerJob {
    pub pods: f64,
    pub secrets: f64,
    pub status: f64,
    pub events: f64,
    pub leases: f64,
    pub other: f64,
}

impl WritesPerJob {
    /// Groups `writes` by resource and divides by `jobs`.
    pub fn of(writes: &BTreeMap<(String, String), f64>, jobs: usize) -> Self {
        let mut per = WritesPerJob::default();
        let jobs = jobs.max(1) as f64;
        for ((_, resource), count) in writes {
            let slot = match resource.as_str() {
                "pods" => &mut per.pods,
                "secrets" => &mut per.secrets,
                "runnerscalesets/status" => &mut per.status,
                "events" => &mut per.events,
                "leases" => &mut per.leases,
                _ => &mut per.other,
            };
            *slot += count / jobs;
        }
        per
    }

    /// Pods plus Secrets: what the design's target of 4 counts.
    pub fn pods_and_secrets(&self) -> f64 {
        self.pods + self.secrets
    }

    pub fn total(&self) -> f64 {
        self.pods + self.secrets + self.status + self.events + self.leases + self.other
    }
}

/// The value at quantile `q` (0..=1) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One target and whether the run met it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: &'static str,
    pub value: f64,
    pub limit: f64,
}

impl Target {
    pub fn met(&self) -> bool {
        self.value <= self.limit
    }
}

impl ScaleUpReport {
    pub fn writes_per_job(&self) -> WritesPerJob {
        WritesPerJob::of(&self.kube_writes, self.jobs)
    }

    pub fn github_metric_per_job(&self) -> f64 {
        self.github_metric.values().sum::<f64>() / self.jobs.max(1) as f64
    }

    pub fn github_fake_per_job(&self) -> f64 {
        self.github_fake.values().sum::<u64>() as f64 / self.jobs.max(1) as f64
    }

    /// Controller time (pods up) over baseline time.
    pub fn ratio(&self) -> f64 {
        self.pods_up.as_secs_f64() / self.baseline.as_secs_f64().max(1e-9)
    }

    /// The targets, each with the run's value.
    pub fn targets(&self) -> Vec<Target> {
        vec![
            Target {
                name: "pod+secret writes/job",
                value: self.writes_per_job().pods_and_secrets(),
                limit: TARGET_POD_SECRET_WRITES_PER_JOB,
            },
            Target {
                name: "controller/baseline time",
                value: self.ratio(),
                limit: TARGET_RATIO,
            },
        ]
    }

    /// The one-line result.
    pub fn summary_line(&self) -> String {
        format!(
            "bench scale-up: jobs={} pods_up={:.2}s p50={}ms p99={}ms writes/job={:.2} (pods+secrets {:.2}) github/job={:.2} peak_rss={} baseline={:.2}s ratio={:.2}x",
            self.jobs,
            self.pods_up.as_secs_f64(),
            percentile(&self.latencies, 0.5).as_millis(),
            percentile(&self.latencies, 0.99).as_millis(),
            self.writes_per_job().total(),
            self.writes_per_job().pods_and_secrets(),
            self.github_metric_per_job(),
            self.peak_rss_kib.map_or_else(
                || "?".to_string(),
                |k| format!("{:.1}MiB", k as f64 / 1024.0)
            ),
            self.baseline.as_secs_f64(),
            self.ratio()
        )
    }

    /// The full table, then the targets, then [`ScaleUpReport::summary_line`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        let n = self.jobs.max(1) as f64;
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "bench scale-up: {} jobs, kube-qps {}, kube-burst {}",
            self.jobs, self.kube_qps, self.kube_burst
        ));
        line(format!(
            "  runner pods up        {:>8.2} s   (queue -> pod created: p50 {} ms, p99 {} ms, max {} ms)",
            self.pods_up.as_secs_f64(),
            percentile(&self.latencies, 0.5).as_millis(),
            percentile(&self.latencies, 0.99).as_millis(),
            percentile(&self.latencies, 1.0).as_millis(),
        ));
        line(format!(
            "  all done and gone     {:>8.2} s   ({} runner pods created for {} jobs)",
            self.all_done.as_secs_f64(),
            self.pods_created,
            self.jobs
        ));
        line(format!(
            "  baseline (bare client, {} Secrets + {} Pods) {:.2} s; ratio {:.2}x",
            self.jobs,
            self.jobs,
            self.baseline.as_secs_f64(),
            self.ratio()
        ));
        line(format!(
            "  controller peak RSS   {}",
            self.peak_rss_kib.map_or_else(
                || "unknown".to_string(),
                |k| format!("{:.1} MiB", k as f64 / 1024.0)
            )
        ));
        if let Some(error) = &self.metrics_error {
            line(format!("  controller metrics unavailable: {error}"));
        }
        line(format!(
            "  {:<36} {:>8} {:>8}",
            "Kubernetes writes (controller)", "total", "per job"
        ));
        for ((verb, resource), count) in &self.kube_writes {
            line(format!(
                "    {:<34} {:>8} {:>8.2}",
                format!("{verb} {resource}"),
                count,
                count / n
            ));
        }
        let w = self.writes_per_job();
        for (name, per_job) in [
            ("pods + secrets", w.pods_and_secrets()),
            ("status writes", w.status),
            ("events", w.events),
            ("leases", w.leases),
            ("other", w.other),
            ("total", w.total()),
        ] {
            line(format!(
                "    = {:<32} {:>8.0} {:>8.2}",
                name,
                per_job * n,
                per_job
            ));
        }
        line(format!(
            "  {:<36} {:>8} {:>8}",
            "GitHub requests (controller)", "total", "per job"
        ));
        for ((endpoint, code), count) in &self.github_metric {
            line(format!(
                "    {:<34} {:>8} {:>8.2}",
                format!("{endpoint} {code}"),
                count,
                count / n
            ));
        }
        line(format!(
            "    = {:<32} {:>8.0} {:>8.2}",
            "total",
            self.github_metric_per_job() * n,
            self.github_metric_per_job()
        ));
        line(format!(
            "  {:<36} {:>8} {:>8}",
            "GitHub requests (fake's count)", "total", "per job"
        ));
        for (endpoint, count) in self.github_fake.iter().filter(|(_, c)| **c > 0) {
            line(format!(
                "    {:<34} {:>8} {:>8.2}",
                endpoint,
                count,
                *count as f64 / n
            ));
        }
        line(format!(
            "    = {:<32} {:>8.0} {:>8.2}",
            "total",
            self.github_fake_per_job() * n,
            self.github_fake_per_job()
        ));
        for target in self.targets() {
            line(format!(
                "  target {:<28} {:>8.2} <= {:<6} {}",
                target.name,
                target.value,
                target.limit,
                if target.met() {
                    "target met"
                } else {
                    "target missed"
                }
            ));
        }
        line(self.summary_line());
        out
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
    let player = Player::start(
        stage.client.clone(),
        &stage.namespace,
        &stage.scale_set,
        stage.fake.clone(),
        stage.scale_set_id,
        PlayOptions {
            start_delay: Duration::ZERO,
            job_duration: Duration::ZERO,
            ..PlayOptions::default()
        },
    );
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

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&values, 0.5), ms(50));
        assert_eq!(percentile(&values, 0.99), ms(99));
        assert_eq!(percentile(&values, 1.0), ms(100));
        assert_eq!(percentile(&values, 0.0), ms(1));
        assert_eq!(percentile(&[ms(7)], 0.99), ms(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    fn writes(pairs: &[(&str, &str, f64)]) -> BTreeMap<(String, String), f64> {
        pairs
            .iter()
            .map(|(v, r, c)| ((v.to_string(), r.to_string()), *c))
            .collect()
    }

    fn report() -> ScaleUpReport {
        ScaleUpReport {
            jobs: 10,
            kube_qps: 50,
            kube_burst: 100,
            pods_up: Duration::from_secs(2),
            latencies: (1..=10).map(|i| ms(i * 200)).collect(),
            all_done: Duration::from_secs(5),
            pods_created: 10,
            kube_writes: writes(&[
                ("create", "pods", 10.0),
                ("delete", "pods", 10.0),
                ("patch", "pods", 20.0),
                ("create", "secrets", 10.0),
                ("patch", "runnerscalesets/status", 5.0),
                ("create", "events", 2.0),
                ("update", "leases", 3.0),
            ]),
            github_metric: writes(&[
                ("GenerateJitConfig", "200", 10.0),
                ("GetMessage", "200", 5.0),
            ]),
            github_fake: [
                ("GenerateJitConfig".to_string(), 10),
                ("GetMessage".to_string(), 6),
            ]
            .into(),
            metrics_error: None,
            peak_rss_kib: Some(20480),
            baseline: Duration::from_secs(1),
        }
    }

    #[test]
    fn writes_are_grouped_by_resource_per_job() {
        let w = report().writes_per_job();
        assert_eq!(
            w,
            WritesPerJob {
                pods: 4.0,
                secrets: 1.0,
                status: 0.5,
                events: 0.2,
                leases: 0.3,
                other: 0.0
            }
        );
        assert_eq!(w.pods_and_secrets(), 5.0);
        assert!((w.total() - 6.0).abs() < 1e-9);
    }

    #[test]
    fn targets_are_reported_met_or_missed() {
        let r = report();
        let targets = r.targets();
        assert_eq!(targets.len(), 2);
        assert!(!targets[0].met(), "5 writes/job > 4");
        assert!(!targets[1].met(), "ratio 2.0 > 1.3");
        let rendered = r.render();
        assert!(rendered.contains("target missed"), "{rendered}");
        let mut better = r.clone();
        better.kube_writes = writes(&[("create", "pods", 10.0), ("create", "secrets", 10.0)]);
        better.baseline = Duration::from_secs(2);
        assert!(better.targets().iter().all(Target::met));
    }

    #[test]
    fn the_summary_line_has_every_number() {
        assert_eq!(
            report().summary_line(),
            "bench scale-up: jobs=10 pods_up=2.00s p50=1000ms p99=2000ms writes/job=6.00 (pods+secrets 5.00) github/job=1.50 peak_rss=20.0MiB baseline=1.00s ratio=2.00x"
        );
        assert!(
            report()
                .render()
                .ends_with(&format!("{}\n", report().summary_line()))
        );
    }

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
