//! What `bench scale-up` measured, the targets it is held to, and how it
//! is printed; plain data, no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

/// Target: Kubernetes writes for pods and Secrets per job.
pub const TARGET_POD_SECRET_WRITES_PER_JOB: f64 = 4.0;
/// Target: controller time over baseline time.
pub const TARGET_RATIO: f64 = 1.3;

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
}
