//! What `bench node` measured and how it is printed; plain data, no I/O.

use std::time::Duration;

use super::report::percentile;

/// p50, p99 and max of a set of latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spread {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Spread {
    /// The spread of `values` (in any order).
    pub fn of(values: &[Duration]) -> Spread {
        let mut sorted = values.to_vec();
        sorted.sort();
        Spread {
            count: sorted.len(),
            p50: percentile(&sorted, 0.5),
            p99: percentile(&sorted, 0.99),
            max: percentile(&sorted, 1.0),
        }
    }
}

/// `a` over `b`, or None when `b` is zero.
pub fn ratio(a: Duration, b: Duration) -> Option<f64> {
    (!b.is_zero()).then(|| a.as_secs_f64() / b.as_secs_f64())
}

fn ratio_text(a: Duration, b: Duration) -> String {
    ratio(a, b).map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}x"))
}

/// How many runner-shaped pods the node ran at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capacity {
    /// Pods created.
    pub tried: usize,
    /// Pods whose runner container was running at the end.
    pub running: usize,
    /// The most pods the run would create (`--max-pods`).
    pub max_pods: usize,
    /// `MemAvailable` of /proc/meminfo before the first pod and with all
    /// of them up, in KiB.
    pub mem_available_before_kib: Option<u64>,
    pub mem_available_after_kib: Option<u64>,
    /// `MemFree` likewise.
    pub mem_free_before_kib: Option<u64>,
    pub mem_free_after_kib: Option<u64>,
    /// What stopped the count.
    pub limited_by: String,
    /// From the first create to the last pod running (or giving up).
    pub elapsed: Duration,
}

impl Capacity {
    /// Memory the running pods took, per pod, in MiB (from MemAvailable).
    pub fn mib_per_pod(&self) -> Option<f64> {
        let (before, after) = (
            self.mem_available_before_kib?,
            self.mem_available_after_kib?,
        );
        (self.running > 0)
            .then(|| before.saturating_sub(after) as f64 / 1024.0 / self.running as f64)
    }
}

/// What `bench node` measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeReport {
    /// Pods created at once per batch (each batch deleted before the next).
    pub batch: usize,
    /// Create returned -> runner container running, runner-shaped pods.
    pub runner_pods: Vec<Duration>,
    /// The same for a single-container pod of the base image (baseline).
    pub base_pods: Vec<Duration>,
    /// Job queued -> the runner took it (JobStarted), minRunners 0.
    pub cold_started: Vec<Duration>,
    /// Job queued -> the runner's report arrived, minRunners 0.
    pub cold_reported: Vec<Duration>,
    /// The same at minRunners 1 (an idle runner waiting): the baseline.
    pub warm_started: Vec<Duration>,
    pub warm_reported: Vec<Duration>,
    pub capacity: Capacity,
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn kib_text(kib: Option<u64>) -> String {
    kib.map_or_else(|| "?".to_string(), |k| format!("{} MiB", k / 1024))
}

impl NodeReport {
    /// The one-line result.
    pub fn summary_line(&self) -> String {
        let (runner, base) = (Spread::of(&self.runner_pods), Spread::of(&self.base_pods));
        let (cold, warm) = (
            Spread::of(&self.cold_started),
            Spread::of(&self.warm_started),
        );
        format!(
            "bench node: runner_pod_p50={}ms p99={}ms base_pod_p50={}ms ratio={} cold_start_p50={}ms warm_start_p50={}ms ratio={} pods_at_once={}",
            ms(runner.p50),
            ms(runner.p99),
            ms(base.p50),
            ratio_text(runner.p50, base.p50),
            ms(cold.p50),
            ms(warm.p50),
            ratio_text(cold.p50, warm.p50),
            self.capacity.running
        )
    }

    /// The full table, then [`NodeReport::summary_line`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let (runner, base) = (Spread::of(&self.runner_pods), Spread::of(&self.base_pods));
        line(format!(
            "bench node: one kubelet {} node (containerd, runc) on this machine",
            crate::paths::K8S_VERSION
        ));
        line(format!(
            "  pod created -> first container running (batches of {} at once, each deleted and gone before the next; runner and base batches alternate)",
            self.batch
        ));
        line(format!(
            "  {:<44} {:>5} {:>8} {:>8} {:>8}",
            "", "pods", "p50 ms", "p99 ms", "max ms"
        ));
        let row = |name: &str, s: &Spread| {
            format!(
                "  {:<44} {:>5} {:>8} {:>8} {:>8}",
                name,
                s.count,
                ms(s.p50),
                ms(s.p99),
                ms(s.max)
            )
        };
        line(row("runner pod (runner + dind, hostNetwork)", &runner));
        line(row("baseline: base pod (1 container, hostNetwork)", &base));
        line(format!(
            "  {:<44} {:>5} {:>8} {:>8} {:>8}",
            "ratio runner/baseline",
            "",
            ratio_text(runner.p50, base.p50),
            ratio_text(runner.p99, base.p99),
            ratio_text(runner.max, base.max)
        ));

        line(
            "  job queued -> runner took it (JobStarted; its first step starts next) / -> report received; one job at a time, real runway-controller"
                .to_string(),
        );
        line(format!(
            "  {:<44} {:>5} {:>8} {:>8} {:>8} {:>8}",
            "", "jobs", "start50", "startmx", "done50", "donemx"
        ));
        let jobs = |name: &str, started: &[Duration], reported: &[Duration]| {
            let (s, r) = (Spread::of(started), Spread::of(reported));
            format!(
                "  {:<44} {:>5} {:>8} {:>8} {:>8} {:>8}",
                name,
                s.count,
                ms(s.p50),
                ms(s.max),
                ms(r.p50),
                ms(r.max)
            )
        };
        line(jobs(
            "cold: minRunners 0 (a pod is made), ms",
            &self.cold_started,
            &self.cold_reported,
        ));
        line(jobs(
            "baseline: warm, minRunners 1 (idle runner), ms",
            &self.warm_started,
            &self.warm_reported,
        ));
        let (cs, ws, cr, wr) = (
            Spread::of(&self.cold_started),
            Spread::of(&self.warm_started),
            Spread::of(&self.cold_reported),
            Spread::of(&self.warm_reported),
        );
        line(format!(
            "  {:<44} {:>5} {:>8} {:>8} {:>8} {:>8}",
            "ratio cold/warm",
            "",
            ratio_text(cs.p50, ws.p50),
            ratio_text(cs.max, ws.max),
            ratio_text(cr.p50, wr.p50),
            ratio_text(cr.max, wr.max)
        ));

        let c = &self.capacity;
        line(format!(
            "  runner-shaped pods running at once: {} of {} created (--max-pods {}; the kubelet's maxPods is 110), in {:.1} s",
            c.running,
            c.tried,
            c.max_pods,
            c.elapsed.as_secs_f64()
        ));
        line(format!(
            "    MemAvailable {} -> {}, MemFree {} -> {}{}",
            kib_text(c.mem_available_before_kib),
            kib_text(c.mem_available_after_kib),
            kib_text(c.mem_free_before_kib),
            kib_text(c.mem_free_after_kib),
            c.mib_per_pod()
                .map_or_else(String::new, |m| format!(" (~{m:.1} MiB per pod)"))
        ));
        line(format!("    limited by: {}", c.limited_by));
        line(self.summary_line());
        out
    }
}

/// A field of /proc/meminfo (`MemAvailable`, `MemFree`, ...) in KiB.
pub fn meminfo_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != field {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn spreads_are_nearest_rank_whatever_the_order() {
        let s = Spread::of(&ms(&[900, 100, 300, 200, 500]));
        assert_eq!(
            (s.count, s.p50, s.p99, s.max),
            (
                5,
                Duration::from_millis(300),
                Duration::from_millis(900),
                Duration::from_millis(900)
            )
        );
        let hundred: Vec<u64> = (1..=100).rev().collect();
        let s = Spread::of(&ms(&hundred));
        assert_eq!(
            (s.p50, s.p99, s.max),
            (
                Duration::from_millis(50),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        assert_eq!(Spread::of(&[]), Spread::default());
    }

    #[test]
    fn ratios_refuse_a_zero_baseline() {
        let (a, b) = (Duration::from_millis(300), Duration::from_millis(200));
        assert!(ratio(a, b).is_some_and(|r| (r - 1.5).abs() < 1e-9));
        assert_eq!(ratio_text(a, b), "1.50x");
        assert_eq!(ratio(a, Duration::ZERO), None);
        assert_eq!(ratio_text(a, Duration::ZERO), "n/a");
    }

    #[test]
    fn meminfo_fields_are_read_in_kib() {
        let text = "MemTotal:       24684124 kB\nMemFree:         1830000 kB\nMemAvailable:   23592000 kB\n";
        assert_eq!(meminfo_kib(text, "MemAvailable"), Some(23_592_000));
        assert_eq!(meminfo_kib(text, "MemFree"), Some(1_830_000));
        assert_eq!(meminfo_kib(text, "Mem"), None);
        assert_eq!(meminfo_kib("MemFree: lots kB", "MemFree"), None);
    }

    #[test]
    fn the_report_shows_each_measure_its_baseline_and_the_ratio() {
        let report = NodeReport {
            batch: 10,
            runner_pods: ms(&[400, 600, 800]),
            base_pods: ms(&[200, 300, 400]),
            cold_started: ms(&[3000, 5000]),
            cold_reported: ms(&[3100, 5200]),
            warm_started: ms(&[100, 200]),
            warm_reported: ms(&[150, 260]),
            capacity: Capacity {
                tried: 40,
                running: 30,
                max_pods: 110,
                mem_available_before_kib: Some(4 * 1024 * 1024),
                mem_available_after_kib: Some(4 * 1024 * 1024 - 30 * 2048),
                mem_free_before_kib: None,
                mem_free_after_kib: None,
                limited_by: "pods stopped becoming Running within 60 s".into(),
                elapsed: Duration::from_secs(70),
            },
        };
        let text = report.render();
        let row = |start: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no row {start:?} in\n{text}"))
                .split_whitespace()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
        };
        // pods, p50, p99, max, read from the right.
        assert_eq!(row("runner pod"), vec!["800", "800", "600", "3"]);
        assert_eq!(row("baseline: base pod"), vec!["400", "400", "300", "3"]);
        assert_eq!(
            row("ratio runner/baseline")[..3],
            ["2.00x", "2.00x", "2.00x"]
        );
        assert_eq!(row("cold:"), vec!["5200", "3100", "5000", "3000"]);
        assert_eq!(row("baseline: warm"), vec!["260", "150", "200", "100"]);
        assert_eq!(row("ratio cold/warm")[3], "30.00x");
        assert!(text.contains("30 of 40 created"), "{text}");
        assert!(text.contains("MemAvailable 4096 MiB -> 4036 MiB"), "{text}");
        assert!(text.contains("(~2.0 MiB per pod)"), "{text}");
        assert!(text.contains("MemFree ? -> ?"), "{text}");
        assert!(
            text.contains("limited by: pods stopped becoming Running within 60 s"),
            "{text}"
        );
        let last = text.lines().last().unwrap_or_default();
        assert_eq!(last, report.summary_line());
        assert!(
            last.contains("runner_pod_p50=600ms") && last.contains("pods_at_once=30"),
            "{last}"
        );
    }
}
