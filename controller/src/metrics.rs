//! The controller's Prometheus metrics: a small registry of its own and the
//! HTTP endpoint that exposes it.
//!
//! Scale-set metrics keep ARC's names and meanings (`gha_*`, labelled with
//! the RunnerScaleSet's `name` and `namespace`) so that existing dashboards
//! work; Runway's own are under `runway_*`. The registry is hand-written
//! rather than the `prometheus` crate: a dozen families do not justify the
//! dependency, and the text format (0.0.4) is simple.
//!
//! Invariants: the rendered text is stable (families sorted by name, series
//! by label values), so two renders of the same state are byte-equal; a
//! removed scale set's series disappear from the next render.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// The content type of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Kubernetes verbs that change state; they are also counted in
/// `runway_kube_writes_total`.
pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The buckets of `gha_job_startup_duration_seconds`, in seconds: ARC's
/// (`runtimeBuckets` of its listener), so that dashboards' quantiles match.
pub const STARTUP_BUCKETS: [f64; 45] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 15.0, 18.0,
    20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 150.0, 180.0, 210.0,
    240.0, 300.0, 360.0, 420.0, 480.0, 540.0, 600.0, 900.0, 1200.0, 1800.0, 2400.0, 3000.0, 3600.0,
];

/// Per-scale-set gauges: metric name, help (ARC's wording).
const GAUGES: [(&str, &str); 8] = [
    (
        "gha_assigned_jobs",
        "Number of jobs assigned to this scale set.",
    ),
    (
        "gha_running_jobs",
        "Number of jobs running (or about to be run).",
    ),
    (
        "gha_registered_runners",
        "Number of runners registered by the scale set.",
    ),
    (
        "gha_busy_runners",
        "Number of registered runners running a job.",
    ),
    (
        "gha_idle_runners",
        "Number of registered runners not running a job.",
    ),
    ("gha_min_runners", "Minimum number of runners."),
    ("gha_max_runners", "Maximum number of runners."),
    (
        "gha_desired_runners",
        "Number of runners desired by the scale set.",
    ),
];
const ASSIGNED_JOBS: usize = 0;
const RUNNING_JOBS: usize = 1;
const REGISTERED_RUNNERS: usize = 2;
const BUSY_RUNNERS: usize = 3;
const IDLE_RUNNERS: usize = 4;
const MIN_RUNNERS: usize = 5;
const MAX_RUNNERS: usize = 6;
const DESIRED_RUNNERS: usize = 7;

/// The controller's metrics. Cheap to clone: clones share one registry.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Arc<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Registry {
    /// verb -> resource -> count.
    kube_requests: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    kube_writes: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    /// (endpoint, status code) -> count.
    github_requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// kind (`element`, `message`) -> count.
    undecodable_messages: Mutex<BTreeMap<&'static str, u64>>,
    scale_sets: Mutex<ScaleSets>,
}

/// (namespace, name) -> that RunnerScaleSet's series.
type ScaleSets = BTreeMap<(String, String), Arc<Mutex<ScaleSetSeries>>>;

/// The statistics GitHub reports for a scale set, as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScaleSetStatistics {
    /// Jobs assigned to the scale set (`gha_assigned_jobs`).
    pub assigned_jobs: u64,
    /// Jobs running or about to run (`gha_running_jobs`).
    pub running_jobs: u64,
    /// Runners registered with GitHub (`gha_registered_runners`).
    pub registered_runners: u64,
    /// Registered runners running a job (`gha_busy_runners`).
    pub busy_runners: u64,
    /// Registered runners not running a job (`gha_idle_runners`).
    pub idle_runners: u64,
}

#[derive(Debug)]
struct ScaleSetSeries {
    /// `None` until first set: an unknown minimum is not a minimum of 0.
    gauges: [Option<u64>; GAUGES.len()],
    started_jobs: u64,
    completed_jobs: u64,
    startup: Histogram,
}

impl Default for ScaleSetSeries {
    fn default() -> Self {
        Self {
            gauges: [None; GAUGES.len()],
            started_jobs: 0,
            completed_jobs: 0,
            startup: Histogram::new(&STARTUP_BUCKETS),
        }
    }
}

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket, not cumulative; one more than `bounds` for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }
}

/// A handle on one RunnerScaleSet's series, from [`Metrics::scale_set`].
///
/// After [`Metrics::remove_scale_set`] a handle still held updates series
/// that are no longer rendered; take a new handle for a recreated scale set.
#[derive(Clone)]
pub struct ScaleSetMetrics {
    series: Arc<Mutex<ScaleSetSeries>>,
}

impl ScaleSetMetrics {
    /// Sets the gauges GitHub's statistics feed (`gha_assigned_jobs`,
    /// `gha_running_jobs`, `gha_registered_runners`, `gha_busy_runners`,
    /// `gha_idle_runners`).
    pub fn set_statistics(&self, stats: &ScaleSetStatistics) {
        let mut series = lock(&self.series);
        series.gauges[ASSIGNED_JOBS] = Some(stats.assigned_jobs);
        series.gauges[RUNNING_JOBS] = Some(stats.running_jobs);
        series.gauges[REGISTERED_RUNNERS] = Some(stats.registered_runners);
        series.gauges[BUSY_RUNNERS] = Some(stats.busy_runners);
        series.gauges[IDLE_RUNNERS] = Some(stats.idle_runners);
    }

    /// Sets `gha_min_runners` and `gha_max_runners` from the spec.
    pub fn set_limits(&self, min_runners: u64, max_runners: u64) {
        let mut series = lock(&self.series);
        series.gauges[MIN_RUNNERS] = Some(min_runners);
        series.gauges[MAX_RUNNERS] = Some(max_runners);
    }

    /// Sets `gha_desired_runners`.
    pub fn set_desired_runners(&self, desired: u64) {
        lock(&self.series).gauges[DESIRED_RUNNERS] = Some(desired);
    }

    /// Counts a job started on one of the scale set's runners.
    pub fn job_started(&self) {
        lock(&self.series).started_jobs += 1;
    }

    /// Counts a job completed (whatever its result).
    pub fn job_completed(&self) {
        lock(&self.series).completed_jobs += 1;
    }

    /// Records how long a job waited between being assigned to the scale set
    /// and starting on a runner.
    pub fn observe_startup(&self, waited: Duration) {
        lock(&self.series).startup.observe(waited.as_secs_f64());
    }
}

/// A mutex's data even if a thread panicked holding it: every update here
/// leaves the data consistent, so a panic elsewhere must not stop metrics.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn increment(map: &Mutex<BTreeMap<String, BTreeMap<String, u64>>>, verb: &str, resource: &str) {
    let mut map = lock(map);
    // Allocate the keys only the first time a pair is seen.
    if let Some(count) = map.get_mut(verb).and_then(|by| by.get_mut(resource)) {
        *count += 1;
        return;
    }
    *map.entry(verb.to_owned())
        .or_default()
        .entry(resource.to_owned())
        .or_default() += 1;
}

fn flatten(
    map: &Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
) -> BTreeMap<(String, String), u64> {
    lock(map)
        .iter()
        .flat_map(|(verb, by)| {
            by.iter()
                .map(move |(resource, count)| ((verb.clone(), resource.clone()), *count))
        })
        .collect()
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request to the Kubernetes API server in
    /// `runway_kube_requests_total`, and in `runway_kube_writes_total` too
    /// if `verb` is one of [`WRITE_VERBS`].
    pub fn kube_request(&self, verb: &str, resource: &str) {
        increment(&self.inner.kube_requests, verb, resource);
        if WRITE_VERBS.contains(&verb) {
            increment(&self.inner.kube_writes, verb, resource);
        }
    }

    /// Counts one response from GitHub in `runway_github_requests_total`.
    pub fn github_request(&self, endpoint: &'static str, status: u16) {
        *lock(&self.inner.github_requests)
            .entry((endpoint, status))
            .or_default() += 1;
    }

    /// Counts one job message (`kind` `element`) or whole queue message
    /// (`message`, once, when it is skipped) that could not be decoded, in
    /// `runway_github_messages_undecodable_total`.
    pub fn message_undecodable(&self, kind: &'static str) {
        *lock(&self.inner.undecodable_messages)
            .entry(kind)
            .or_default() += 1;
    }

    /// The undecodable messages counted so far, by kind.
    pub fn undecodable_messages(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.inner.undecodable_messages).clone()
    }

    /// Every Kubernetes request counted so far, by (verb, resource).
    pub fn kube_requests(&self) -> BTreeMap<(String, String), u64> {
        flatten(&self.inner.kube_requests)
    }

    /// The Kubernetes writes counted so far, by (verb, resource).
    pub fn kube_writes(&self) -> BTreeMap<(String, String), u64> {
        flatten(&self.inner.kube_writes)
    }

    /// The GitHub responses counted so far, by (endpoint, status code).
    pub fn github_requests(&self) -> BTreeMap<(&'static str, u16), u64> {
        lock(&self.inner.github_requests).clone()
    }

    /// The series of the RunnerScaleSet `namespace`/`name`, created (with
    /// zero counters and no gauges) on first use.
    pub fn scale_set(&self, namespace: &str, name: &str) -> ScaleSetMetrics {
        let mut sets = lock(&self.inner.scale_sets);
        let series = sets
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .clone();
        ScaleSetMetrics { series }
    }

    /// Drops every series of the RunnerScaleSet `namespace`/`name`, for when
    /// it is deleted.
    pub fn remove_scale_set(&self, namespace: &str, name: &str) {
        lock(&self.inner.scale_sets).remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Every metric in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut families = Families::default();

        let scale_sets: Vec<((String, String), ScaleSetSeries)> = {
            let sets = lock(&self.inner.scale_sets);
            sets.iter()
                .map(|(key, series)| {
                    let series = lock(series);
                    (
                        key.clone(),
                        ScaleSetSeries {
                            gauges: series.gauges,
                            started_jobs: series.started_jobs,
                            completed_jobs: series.completed_jobs,
                            startup: series.startup.clone(),
                        },
                    )
                })
                .collect()
        };
        for ((namespace, name), series) in &scale_sets {
            let labels = [("name", name.as_str()), ("namespace", namespace.as_str())];
            for ((metric, help), value) in GAUGES.iter().zip(series.gauges) {
                if let Some(value) = value {
                    families
                        .family(metric, "gauge", help)
                        .sample(metric, &labels, value);
                }
            }
            // Counters and the histogram exist from the start: zero jobs
            // started is a fact, and `rate()` needs the zero.
            families
                .family(
                    "gha_started_jobs_total",
                    "counter",
                    "Total number of jobs started.",
                )
                .sample("gha_started_jobs_total", &labels, series.started_jobs);
            families
                .family(
                    "gha_completed_jobs_total",
                    "counter",
                    "Total number of jobs completed.",
                )
                .sample("gha_completed_jobs_total", &labels, series.completed_jobs);
            let histogram = families.family(
                "gha_job_startup_duration_seconds",
                "histogram",
                "Time spent waiting for workflow job to get started on the runner owned by the scale set (in seconds).",
            );
            histogram.histogram("gha_job_startup_duration_seconds", &labels, &series.startup);
        }

        for ((verb, resource), count) in self.kube_requests() {
            families
                .family(
                    "runway_kube_requests_total",
                    "counter",
                    "Requests to the Kubernetes API server, by verb and resource.",
                )
                .sample(
                    "runway_kube_requests_total",
                    &[("verb", &verb), ("resource", &resource)],
                    count,
                );
        }
        for ((verb, resource), count) in self.kube_writes() {
            families
                .family(
                    "runway_kube_writes_total",
                    "counter",
                    "Requests to the Kubernetes API server that change state (create, update, patch, delete, deletecollection), by verb and resource.",
                )
                .sample(
                    "runway_kube_writes_total",
                    &[("verb", &verb), ("resource", &resource)],
                    count,
                );
        }
        for ((endpoint, code), count) in self.github_requests() {
            families
                .family(
                    "runway_github_requests_total",
                    "counter",
                    "Responses from GitHub, by endpoint and HTTP status code.",
                )
                .sample(
                    "runway_github_requests_total",
                    &[("endpoint", endpoint), ("code", &code.to_string())],
                    count,
                );
        }

        for (kind, count) in self.undecodable_messages() {
            families
                .family(
                    "runway_github_messages_undecodable_total",
                    "counter",
                    "Scale-set queue messages that could not be decoded: kind element (one job message, left out) or message (a whole message, skipped).",
                )
                .sample(
                    "runway_github_messages_undecodable_total",
                    &[("kind", kind)],
                    count,
                );
        }

        families.render()
    }
}

/// Families being rendered, by name, so that the output is sorted.
#[derive(Default)]
struct Families {
    by_name: BTreeMap<&'static str, Family>,
}

struct Family {
    kind: &'static str,
    help: &'static str,
    samples: String,
}

impl Families {
    fn family(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
    ) -> &mut Family {
        self.by_name.entry(name).or_insert_with(|| Family {
            kind,
            help,
            samples: String::new(),
        })
    }

    fn render(self) -> String {
        let mut out = String::new();
        for (name, family) in self.by_name {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            out.push_str(&family.samples);
        }
        out
    }
}

impl Family {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        let _ = writeln!(self.samples, "{name}{} {value}", format_labels(labels));
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let mut cumulative = 0;
        let bounds = histogram
            .bounds
            .iter()
            .map(|bound| bound.to_string())
            .chain(std::iter::once("+Inf".to_owned()));
        for (le, count) in bounds.zip(&histogram.counts) {
            cumulative += count;
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count);
    }
}

/// `{a="1",b="2"}`, or nothing without labels.
fn format_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape_label_value(value)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and line feed (not quotes).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Why the metrics endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    /// The address is taken or not ours to listen on.
    #[error("cannot listen for metrics on {addr} (change the metrics address): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The bound socket's address could not be read.
    #[error("reading the metrics listener's address: {0}")]
    LocalAddr(#[source] std::io::Error),
    /// Accepting connections failed.
    #[error("serving metrics: {0}")]
    Serve(#[source] std::io::Error),
}

/// The metrics endpoint, bound but not yet serving; see [`bind`].
pub struct MetricsServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: Metrics,
}

/// Binds the metrics endpoint to `addr` (port 0 picks a free port; the real
/// one is [`MetricsServer::local_addr`]).
pub async fn bind(addr: SocketAddr, metrics: Metrics) -> Result<MetricsServer, MetricsServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsServerError::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(MetricsServerError::LocalAddr)?;
    Ok(MetricsServer {
        listener,
        local_addr,
        metrics,
    })
}

impl MetricsServer {
    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `GET /metrics` and `GET /healthz` until `shutdown` completes,
    /// then finishes the requests in flight.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), MetricsServerError> {
        axum::serve(self.listener, router(self.metrics))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(MetricsServerError::Serve)
    }
}

/// [`bind`] then [`MetricsServer::run`], for callers that need not know the
/// port.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsServerError> {
    bind(addr, metrics).await?.run(shutdown).await
}

fn router(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()).into_response() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
