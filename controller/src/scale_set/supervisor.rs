//! One scale set, end to end: the task that ties the pieces together for a
//! single `RunnerScaleSet`.
//!
//! ```text
//! validate spec -> read githubConfigSecret -> ActionsClient
//!   -> ensure_scale_set -> status.scaleSetId (+ runner group)
//!   -> spawn the listener (StatusCheckpoint, resume from status)
//!   -> loop: reconcile_runners on every demand update, on every change of
//!            its runner pods (a watch), on requeue_after and on a resync
//!            tick; write the status counts when they change
//!   -> shutdown: stop the listener (it deletes its session), return
//! ```
//!
//! Invariants:
//! - the listener and the reconciler share one [`ActionsClient`] (one token
//!   cache, one rate limiter);
//! - the listener never outlives the supervisor: it stops when the supervisor
//!   returns, for whatever reason, because its stop channel is dropped;
//! - the status summary is written only when it differs from the last one
//!   written, so an idle scale set costs no writes;
//! - the spec is read once: a changed spec is applied by running the
//!   supervisor again (the caller restarts it), which resumes the session
//!   from the status.
//!
//! What a pass writes is decided apart from the I/O: the status counts and
//! runner conditions in `summary`, the Events in `events`, ARC's metrics in
//! `gauges`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::checkpoint::lock;
use super::client::github_client;
use super::events::{scale_events, skip_events};
use super::gauges::Gauges;
pub use super::summary::Summary;
use super::summary::{SummaryStatus, previous_summary, runner_conditions};
use super::{EnsureError, Owner, SharedConditions, StatusCheckpoint, ensure_scale_set};
use crate::conditions::{CONDITION_LISTENING, CONDITION_READY, condition, merge};
use crate::crd::{self, RunnerScaleSet, SpecError};
use crate::github::{self, ActionsClient, ClientOptions, ConfigError, CredentialsError};
use crate::leader::Fence;
use crate::listener::{self, Backoff, Limits, Listener, ListenerConfig, ListenerError, Resume};
use crate::metrics::Metrics;
use crate::runner::reconcile::{GitHubCalls, KubeWrites, RunnerCondition};
use crate::runner::{
    self, Context, MAX_LABEL_VALUE_LEN, SCALE_SET_LABEL, Settings, reconcile_runners,
};

/// The shortest wait between two passes, so that a `requeue_after` of zero
/// (a backoff already due) cannot turn the loop into a busy loop.
const MIN_REQUEUE: Duration = Duration::from_millis(100);

/// Tunables of one scale set's supervisor; the defaults suit a real cluster.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// The session's `ownerName` (the controller's pod name), shown by
    /// GitHub on session conflicts.
    pub session_owner: String,
    pub github: ClientOptions,
    pub runners: Settings,
    pub listener_backoff: Backoff,
    /// How long shutdown waits for the listener's session delete.
    pub listener_shutdown_timeout: Duration,
    /// A pass at least this often, even when neither the listener nor the
    /// pod watch reports a change (a watch that is reconnecting).
    pub resync: Duration,
    /// The shortest time between two status writes of the runner counts,
    /// and between two listener checkpoints of the same session: status is
    /// for people and restarts, and must not cost a write per job.
    pub status_interval: Duration,
    /// The controller's metrics: each scale set publishes ARC's `gha_*`
    /// series there.
    pub metrics: Option<Metrics>,
    /// Where to leave the GitHub client once made, so that the cleanup of a
    /// deleted object can still reach GitHub when its credentials Secret was
    /// deleted with it.
    pub client_slot: Option<ClientSlot>,
    /// Where to publish the running [`Totals`] (metrics, tests); `None`
    /// keeps them to the supervisor.
    pub totals: Option<watch::Sender<Totals>>,
    /// Open while this process leads: no pass, checkpoint or status write
    /// once it closes (the Kubernetes client refuses writes too).
    pub fence: Fence,
}

/// A supervisor's GitHub client, for whoever cleans up after it.
pub type ClientSlot = Arc<std::sync::Mutex<Option<ActionsClient>>>;

/// What a supervisor did since it started: passes, the reconciler's
/// Kubernetes writes and GitHub calls, and its own status writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub passes: u64,
    pub kube: KubeWrites,
    pub github: GitHubCalls,
    /// Status summary patches (the scale set id and the listener's
    /// checkpoints are not counted here).
    pub status_writes: u64,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        Self {
            session_owner: std::env::var("POD_NAME")
                .unwrap_or_else(|_| "runway-controller".to_owned()),
            github: ClientOptions::default(),
            runners: Settings::default(),
            listener_backoff: Backoff::default(),
            listener_shutdown_timeout: Duration::from_secs(10),
            resync: Duration::from_secs(5),
            status_interval: Duration::from_secs(5),
            metrics: None,
            client_slot: None,
            totals: None,
            fence: Fence::unfenced(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("RunnerScaleSet has no namespace, name or uid; supervise only stored objects")]
    NotStored,

    #[error("RunnerScaleSet {namespace}/{name}: {}", join(errors))]
    InvalidSpec {
        namespace: String,
        name: String,
        errors: Vec<SpecError>,
    },

    #[error(
        "RunnerScaleSet {namespace}/{name}: metadata.name is {len} characters long, but runner pods carry it in the label {SCALE_SET_LABEL}, whose values Kubernetes limits to {MAX_LABEL_VALUE_LEN} characters; recreate the RunnerScaleSet under a name of at most {MAX_LABEL_VALUE_LEN} characters"
    )]
    NameTooLong {
        namespace: String,
        name: String,
        len: usize,
    },

    #[error(
        "Secret {namespace}/{secret} (githubConfigSecret) does not exist; create it or set githubConfigSecret to an existing Secret"
    )]
    SecretMissing { namespace: String, secret: String },

    #[error("reading Secret {namespace}/{secret} (githubConfigSecret): {source}")]
    ReadSecret {
        namespace: String,
        secret: String,
        #[source]
        source: kube::Error,
    },

    #[error("Secret {namespace}/{secret} (githubConfigSecret): {source}")]
    Credentials {
        namespace: String,
        secret: String,
        #[source]
        source: CredentialsError,
    },

    #[error(
        "githubServerTLS.certificateFrom.configMapKeyRef: ConfigMap {namespace}/{config_map} key {key:?}: {reason}"
    )]
    ServerTls {
        namespace: String,
        config_map: String,
        key: String,
        reason: String,
    },

    #[error(transparent)]
    GitHubConfigUrl(#[from] ConfigError),

    #[error(transparent)]
    Proxy(#[from] super::proxy::ProxyError),

    #[error("building the GitHub client for githubConfigUrl {url:?}: {source}")]
    Client {
        url: String,
        #[source]
        source: github::Error,
    },

    #[error(transparent)]
    ScaleSet(#[from] EnsureError),

    #[error("writing the status of RunnerScaleSet {namespace}/{name}: {source}")]
    Status {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error(transparent)]
    Listener(#[from] ListenerError),

    #[error("scale set {scale_set_id}: the listener stopped unasked")]
    ListenerStopped { scale_set_id: i64 },

    #[error("scale set {scale_set_id}: the listener task failed: {source}")]
    ListenerTask {
        scale_set_id: i64,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl SupervisorError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SupervisorError::NotStored => "not_stored",
            SupervisorError::InvalidSpec { .. } => "invalid_spec",
            SupervisorError::NameTooLong { .. } => "name_too_long",
            SupervisorError::SecretMissing { .. } => "secret_missing",
            SupervisorError::ReadSecret { .. } => "read_secret",
            SupervisorError::Credentials { .. } => "credentials",
            SupervisorError::ServerTls { .. } => "github_server_tls",
            SupervisorError::GitHubConfigUrl(_) => "github_config_url",
            SupervisorError::Proxy(_) => "proxy",
            SupervisorError::Client { .. } => "client",
            SupervisorError::ScaleSet(e) => e.metric_label(),
            SupervisorError::Status { .. } => "status",
            SupervisorError::Listener(e) => e.metric_label(),
            SupervisorError::ListenerStopped { .. } | SupervisorError::ListenerTask { .. } => {
                "listener_stopped"
            }
        }
    }
}

fn join(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Serialize)]
struct StatusPatch<T: Serialize> {
    status: T,
}

/// What [`run_scale_set`] writes once the scale set exists on GitHub.
/// `sessionId` and `lastMessageId` are sent only when the scale set is new
/// (a new id): the old session and message ids mean nothing for it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ScaleSetStatus<'a> {
    scale_set_id: i64,
    runner_group_id: i64,
    runner_group_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_message_id: Option<i64>,
    conditions: &'a [Condition],
}

/// Runs one `RunnerScaleSet` until `shutdown` turns true (or its sender is
/// dropped): makes sure its scale set exists on GitHub, listens to its
/// message queue and keeps its runner pods in line with the demand.
///
/// Returns `Ok` after a requested shutdown, once the listener has deleted
/// its session. Returns an error for what the supervisor cannot fix by
/// retrying: an invalid spec, missing credentials, a scale set owned by
/// someone else, a listener that gave up. Failed reconcile passes are
/// logged and retried, not returned.
pub async fn run_scale_set(
    kube: Client,
    rss: RunnerScaleSet,
    opts: SupervisorOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SupervisorError> {
    let owner = Owner::of(&rss).ok_or(SupervisorError::NotStored)?;
    crd::validate(&rss.spec).map_err(|errors| SupervisorError::InvalidSpec {
        namespace: owner.namespace.clone(),
        name: owner.name.clone(),
        errors,
    })?;
    check_name(&owner)?;
    let scale_sets: Api<RunnerScaleSet> = Api::namespaced(kube.clone(), &owner.namespace);

    // GitHub may be slow or down here (retries with backoff): a shutdown
    // must not wait for it.
    let prepare = async {
        let client = github_client(&kube, &rss, &owner, &opts).await?;
        if let Some(slot) = &opts.client_slot {
            *lock(slot) = Some(client.clone());
        }
        let ensured = ensure_scale_set(&client, &rss, &owner).await?;
        let scale_set = ensured.scale_set;
        tracing::info!(
            namespace = %owner.namespace, name = %owner.name, scale_set_id = scale_set.id,
            outcome = ?ensured.outcome, "scale set ready on GitHub"
        );

        let previous = rss.status.clone().unwrap_or_default();
        let same_scale_set = previous.scale_set_id == Some(scale_set.id);
        let conditions =
            ready_conditions(&previous.conditions, &scale_set, rss.metadata.generation);
        let status = ScaleSetStatus {
            conditions: &conditions,
            scale_set_id: scale_set.id,
            runner_group_id: scale_set.runner_group_id,
            runner_group_name: &scale_set.runner_group_name,
            observed_generation: rss.metadata.generation,
            session_id: (!same_scale_set).then_some(None),
            last_message_id: (!same_scale_set).then_some(0),
        };
        let rss = scale_sets
            .patch_status(
                &owner.name,
                &PatchParams::default(),
                &Patch::Merge(&StatusPatch { status }),
            )
            .await
            .map_err(|source| SupervisorError::Status {
                namespace: owner.namespace.clone(),
                name: owner.name.clone(),
                source,
            })?;
        let resume = if same_scale_set {
            Resume {
                session_id: previous.session_id.clone(),
                last_message_id: previous.last_message_id.unwrap_or(0),
            }
        } else {
            Resume::default()
        };
        Ok::<_, SupervisorError>((client, scale_set, rss, resume, previous, conditions))
    };
    let (client, scale_set, rss, resume, previous, conditions) = tokio::select! {
        prepared = prepare => prepared?,
        () = stopped(&mut shutdown) => return Ok(()),
    };

    let shared_conditions: SharedConditions = Arc::new(std::sync::Mutex::new(conditions));
    let (demand_tx, demand_rx) = watch::channel(listener::Demand::default());
    // Dropped when this function returns, so the listener stops with it
    // whatever ends the supervisor.
    let (stop_listener, stop_rx) = watch::channel(false);
    let config = ListenerConfig {
        backoff: opts.listener_backoff,
        shutdown_timeout: opts.listener_shutdown_timeout,
        ..ListenerConfig::new(
            scale_set.id,
            opts.session_owner.clone(),
            Limits {
                min_runners: rss.spec.min_runners(),
                max_runners: rss.spec.max_runners(),
            },
        )
    };
    let checkpoint = StatusCheckpoint::new(scale_sets.clone(), owner.name.clone())
        .every(opts.status_interval)
        .with_conditions(shared_conditions.clone())
        .recorded(resume.session_id.clone())
        .fenced(opts.fence.clone());
    let mut listener = Listener::new(client.clone(), checkpoint, config, demand_tx);
    if let Some(metrics) = &opts.metrics {
        listener = listener.with_metrics(metrics.clone());
    }
    let listener_task = tokio::spawn(async move { listener.run(resume, stop_rx).await });

    let (owner_ns, owner_name) = (owner.namespace.clone(), owner.name.clone());
    let generation = rss.metadata.generation;
    let supervisor = Supervisor {
        ctx: Context::new(kube.clone(), client, opts.runners.clone()),
        pods: Api::namespaced(kube, &owner.namespace),
        scale_sets,
        owner,
        scale_set_id: scale_set.id,
        resync: opts.resync,
        status_interval: opts.status_interval,
        written: previous_summary(&previous),
        written_at: None,
        conditions: shared_conditions,
        generation,
        totals: Totals::default(),
        publish: opts.totals.clone(),
        skipped_reported: 0,
        fence: opts.fence.clone(),
        gauges: opts.metrics.as_ref().map(|m| {
            let series = m.scale_set(&owner_ns, &owner_name);
            series.set_limits(
                u64::from(rss.spec.min_runners()),
                // Unbounded, as ARC reports it.
                rss.spec
                    .max_runners()
                    .map_or(u64::from(i32::MAX.unsigned_abs()), u64::from),
            );
            Gauges::new(series)
        }),
    };
    supervisor
        .reconcile_loop(
            &rss,
            demand_rx,
            &mut shutdown,
            &stop_listener,
            listener_task,
        )
        .await
}

/// The object's name is a label value on its runner pods: a longer name
/// than Kubernetes allows there would fail every pod create (422), so it is
/// refused before anything is made on GitHub.
fn check_name(owner: &Owner) -> Result<(), SupervisorError> {
    let len = owner.name.len();
    if len <= MAX_LABEL_VALUE_LEN {
        return Ok(());
    }
    Err(SupervisorError::NameTooLong {
        namespace: owner.namespace.clone(),
        name: owner.name.clone(),
        len,
    })
}

/// `Ready` (the scale set exists) and `Listening` (not yet: the listener
/// opens its session next).
fn ready_conditions(
    previous: &[Condition],
    scale_set: &github::wire::RunnerScaleSet,
    generation: Option<i64>,
) -> Vec<Condition> {
    let now = chrono::Utc::now();
    merge(
        previous,
        [
            condition(
                CONDITION_READY,
                true,
                "ScaleSetReady",
                format!(
                    "scale set {} ({:?}) in runner group {:?} on GitHub",
                    scale_set.id, scale_set.name, scale_set.runner_group_name
                ),
                generation,
                now,
            ),
            condition(
                CONDITION_LISTENING,
                false,
                "Connecting",
                "opening a message session",
                generation,
                now,
            ),
        ],
    )
}

struct Supervisor {
    ctx: Context<ActionsClient>,
    pods: Api<Pod>,
    scale_sets: Api<RunnerScaleSet>,
    owner: Owner,
    scale_set_id: i64,
    resync: Duration,
    status_interval: Duration,
    /// The summary last written to the status, and when.
    written: Option<Summary>,
    written_at: Option<Instant>,
    /// The status conditions, shared with the listener's checkpoint.
    conditions: SharedConditions,
    generation: Option<i64>,
    totals: Totals,
    publish: Option<watch::Sender<Totals>>,
    /// The listener's `skipped_total` already reported as Events.
    skipped_reported: u64,
    fence: Fence,
    gauges: Option<Gauges>,
}

impl Supervisor {
    async fn reconcile_loop(
        mut self,
        rss: &RunnerScaleSet,
        mut demand_rx: watch::Receiver<listener::Demand>,
        shutdown: &mut watch::Receiver<bool>,
        stop_listener: &watch::Sender<bool>,
        listener_task: JoinHandle<Result<(), ListenerError>>,
    ) -> Result<(), SupervisorError> {
        let selector = format!("{SCALE_SET_LABEL}={}", self.owner.name);
        let mut pod_events = watcher(
            self.pods.clone(),
            watcher::Config::default().labels(&selector),
        )
        .default_backoff()
        .boxed();
        // No pass before the listener's first demand (from its session's
        // statistics): the default (nothing assigned) would scale down the
        // idle runners that wait for assigned jobs after a restart.
        tokio::select! {
            changed = demand_rx.changed() => {
                if changed.is_err() {
                    return Err(self.listener_ended(listener_task).await);
                }
            }
            () = stopped(shutdown) => {
                return self.stop(stop_listener, listener_task).await;
            }
        }
        loop {
            let (demand, skipped) = {
                let raw = demand_rx.borrow_and_update();
                if let Some(gauges) = &mut self.gauges {
                    gauges.update(&raw);
                }
                let skipped = skip_events(&raw.skipped, raw.skipped_total, self.skipped_reported);
                self.skipped_reported = raw.skipped_total;
                (runner::Demand::from(&*raw), skipped)
            };
            for (type_, reason, note) in skipped {
                self.totals.kube.events += 1;
                self.ctx.event(rss, type_, reason, "Listen", note).await;
            }
            let wait = self.pass(rss, &demand).await;
            tokio::select! {
                event = pod_events.next() => {
                    match event {
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            tracing::debug!(scale_set = %self.owner.name, %error, "runner pod watch failed; it retries");
                        }
                        // Never expected (a watcher retries forever); the
                        // resync tick carries on alone rather than spin.
                        None => pod_events = futures::stream::pending().boxed(),
                    }
                    // A pass creates or deletes many pods at once, and each
                    // write comes back as events: gather what arrives within
                    // a moment into one pass, not one pass per event.
                    tokio::time::sleep(MIN_REQUEUE).await;
                    while let Some(Some(_)) = pod_events.next().now_or_never() {}
                }
                () = stopped(shutdown) => {
                    return self.stop(stop_listener, listener_task).await;
                }
                changed = demand_rx.changed() => {
                    if changed.is_err() {
                        // The listener dropped its sender: it has stopped.
                        return Err(self.listener_ended(listener_task).await);
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One reconcile pass and the status summary; returns when to pass
    /// again at the latest.
    async fn pass(&mut self, rss: &RunnerScaleSet, demand: &runner::Demand) -> Duration {
        // A process that no longer leads only waits to be stopped: its
        // demand may be stale, and a standby may already run the pods.
        if !self.fence.is_leading() {
            tracing::debug!(scale_set = %self.owner.name, "not leading: no runner pass");
            return self.resync.max(MIN_REQUEUE);
        }
        self.totals.passes += 1;
        let wait = match reconcile_runners(&self.ctx, rss, demand).await {
            Ok(outcome) => {
                self.totals.kube += outcome.kube;
                self.totals.github += outcome.github;
                if !outcome.created.is_empty() || !outcome.deleted.is_empty() {
                    tracing::debug!(
                        scale_set = %self.owner.name, desired = outcome.plan.desired,
                        created = outcome.created.len(), deleted = outcome.deleted.len(),
                        released = outcome.released.len(), "runner pass"
                    );
                }
                for error in &outcome.errors {
                    tracing::warn!(scale_set = %self.owner.name, %error, "runner pass step failed");
                }
                self.record_events(rss, &outcome).await;
                let held = self
                    .write_summary(outcome.plan.desired, demand, &outcome.conditions)
                    .await;
                outcome
                    .requeue_after
                    .into_iter()
                    .chain(held)
                    .fold(self.resync, Duration::min)
            }
            Err(error) => {
                tracing::warn!(scale_set = %self.owner.name, %error, "runner pass failed");
                self.ctx.settings.error_requeue.min(self.resync)
            }
        };
        if let Some(publish) = &self.publish {
            publish.send_replace(self.totals);
        }
        wait.max(MIN_REQUEUE)
    }

    /// Events people read in `kubectl describe rss`: see [`scale_events`].
    async fn record_events(&mut self, rss: &RunnerScaleSet, outcome: &runner::Outcome) {
        for (type_, reason, note) in scale_events(outcome) {
            if !self.fence.is_leading() {
                return;
            }
            self.totals.kube.events += 1;
            self.ctx.event(rss, type_, reason, "Scale", note).await;
        }
    }

    /// Writes the counts to the status if they changed, at most once per
    /// `status_interval`; returns how long until the next write may go out.
    /// A failure is logged and retried on the next pass (the counts are
    /// informational).
    async fn write_summary(
        &mut self,
        desired: u32,
        demand: &runner::Demand,
        raised: &[RunnerCondition],
    ) -> Option<Duration> {
        let updates = runner_conditions(&lock(&self.conditions), raised, self.generation);
        // Within the interval, not even the list: a burst of passes must not
        // spend the client's QPS on counts nobody reads that fast. A changed
        // condition is news, and goes out at once.
        let since = self.written_at.map(|at| at.elapsed());
        if updates.is_empty()
            && let Some(held) = since.and_then(|since| self.status_interval.checked_sub(since))
            && !held.is_zero()
        {
            return Some(held);
        }
        let selector = format!("{SCALE_SET_LABEL}={}", self.owner.name);
        let pods = match self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
        {
            // Only its runners count, not pods someone else labelled alike.
            Ok(list) => list
                .items
                .into_iter()
                .filter(|p| runner::is_controlled_by(p, &self.owner.uid))
                .collect::<Vec<_>>(),
            Err(error) => {
                tracing::warn!(scale_set = %self.owner.name, %error, "listing runner pods for the status failed");
                return None;
            }
        };
        let summary = Summary::of(desired, &pods, demand);
        let conditions = (!updates.is_empty()).then(|| merge(&lock(&self.conditions), updates));
        if self.written == Some(summary) && conditions.is_none() {
            return None;
        }
        // The counts of a process that lost the Lease while listing must
        // not replace what the new leader records.
        if !self.fence.is_leading() {
            return None;
        }
        let patch = StatusPatch {
            status: SummaryStatus {
                summary,
                conditions: conditions.as_deref(),
            },
        };
        match self
            .scale_sets
            .patch_status(
                &self.owner.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                self.written = Some(summary);
                if let Some(conditions) = conditions {
                    *lock(&self.conditions) = conditions;
                }
                self.written_at = Some(Instant::now());
                self.totals.status_writes += 1;
            }
            Err(error) => {
                tracing::warn!(scale_set = %self.owner.name, %error, "writing the runner counts to the status failed");
            }
        }
        None
    }

    /// Asks the listener to stop and waits for it (it deletes its session).
    async fn stop(
        &self,
        stop_listener: &watch::Sender<bool>,
        listener_task: JoinHandle<Result<(), ListenerError>>,
    ) -> Result<(), SupervisorError> {
        stop_listener.send_replace(true);
        match listener_task.await {
            Ok(result) => result.map_err(SupervisorError::from),
            Err(source) => Err(SupervisorError::ListenerTask {
                scale_set_id: self.scale_set_id,
                source,
            }),
        }
    }

    async fn listener_ended(
        &self,
        listener_task: JoinHandle<Result<(), ListenerError>>,
    ) -> SupervisorError {
        match listener_task.await {
            Ok(Err(error)) => error.into(),
            Ok(Ok(())) => SupervisorError::ListenerStopped {
                scale_set_id: self.scale_set_id,
            },
            Err(source) => SupervisorError::ListenerTask {
                scale_set_id: self.scale_set_id,
                source,
            },
        }
    }
}

/// Returns once `shutdown` is true, or its sender is gone (the same). The
/// receiver's guard is dropped here so that no lock is held across the
/// caller's awaits.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
