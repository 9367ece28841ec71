//! The controller's top level: every `RunnerScaleSet` gets one worker task,
//! a supervisor while it lives ([`run_scale_set`]) and a cleanup when it is
//! deleted ([`cleanup`]).
//!
//! ```text
//! watch RunnerScaleSets ─┐
//! worker exits ──────────┼─> reconcile(key): decide (pure, see `plan`) -> act
//! retry tick ────────────┘
//! ```
//!
//! Invariants:
//! - at most one worker per object at a time: a supervisor is stopped, and
//!   its exit awaited, before another one or a cleanup starts (two listeners
//!   of one scale set would fight over its session);
//! - a live object carries [`FINALIZER`], added before its first supervisor,
//!   so that its deletion always runs the cleanup;
//! - a spec change (new `metadata.generation`) restarts the supervisor, which
//!   applies it to GitHub and resumes the session from the status;
//! - a failed supervisor is retried with exponential backoff, and says why in
//!   the `Ready` condition and an Event; a scale set deleted on GitHub is
//!   re-created by the retry. A panic in a worker is such a failure too: each
//!   worker's task is awaited, so its key never stays "running" forever;
//! - one object that does not decode stops nothing else: objects are watched
//!   untyped and decoded one by one (see `decode`); a bad one runs no
//!   supervisor and says why, and its deletion is still cleaned up;
//! - shutdown is bounded: workers still running [`STOP_SLACK`] after the
//!   supervisors' own bounded session delete are aborted.

pub mod cleanup;
pub mod decode;
mod plan;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinError};

use crate::conditions::{self, CONDITION_LISTENING, CONDITION_READY};
use crate::crd::RunnerScaleSet;
use crate::patch;
use crate::scale_set::checkpoint::lock;
use crate::scale_set::{ClientSlot, SupervisorError, SupervisorOptions, run_scale_set};
use decode::{Decoded, api_resource};
pub use plan::{Kind, Spec, Step, Worker, plan};

/// Held by every live `RunnerScaleSet` until its runners and its scale set on
/// GitHub are gone.
pub const FINALIZER: &str = "actions.runway.dev/cleanup";

/// How long shutdown waits for the workers beyond the supervisors' own
/// bound on their session delete (`listener_shutdown_timeout`), before it
/// aborts what is left.
pub const STOP_SLACK: Duration = Duration::from_secs(5);

/// Tunables of the manager; the defaults suit a real cluster.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// What every supervisor runs with.
    pub supervisor: SupervisorOptions,
    /// Watch one namespace only; `None` watches all.
    pub namespace: Option<String>,
    /// How long a deletion waits for busy runners before it gives up, lets
    /// the object go and says in an Event what is left.
    pub deletion_timeout: Duration,
    /// How often a deletion looks again at the runners it waits for.
    pub cleanup_interval: Duration,
    /// First and longest wait before a failed supervisor is started again.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Test only (`main`'s hidden `--test-panic-supervisor`): the first
    /// supervisor started for this `(namespace, name)` panics, once. `None`
    /// (the default) in production.
    pub test_panic_once: Option<(String, String)>,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            supervisor: SupervisorOptions::default(),
            namespace: None,
            deletion_timeout: Duration::from_secs(15 * 60),
            cleanup_interval: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(5 * 60),
            test_panic_once: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("watching RunnerScaleSets ended unexpectedly")]
    WatchEnded,
}

/// `namespace/name`.
type Key = (String, String);

/// A worker's end, sent to the manager's loop.
struct Exit {
    key: Key,
    worker: Worker,
    result: Result<(), String>,
    /// For a failed supervisor: its error's metric label and whether a
    /// retry can help.
    reason: Option<&'static str>,
}

struct Running {
    worker: Worker,
    stop: watch::Sender<bool>,
    /// The worker's task, for a shutdown that cannot wait longer.
    abort: AbortHandle,
    /// Stop was asked already.
    stopping: bool,
}

/// Failures of the current (uid, generation) of an object.
#[derive(Debug, Clone)]
struct Failures {
    uid_generation: (String, Option<i64>),
    count: u32,
    retry_at: Instant,
}

/// Runs until `shutdown`; then stops every worker and waits for them (each
/// supervisor deletes its session).
pub async fn run(
    kube: Client,
    opts: ManagerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ManagerError> {
    // Untyped: a typed watch fails as a whole on one object that does not
    // decode.
    let resource = api_resource();
    let api: Api<DynamicObject> = match &opts.namespace {
        Some(ns) => Api::namespaced_with(kube.clone(), ns, &resource),
        None => Api::all_with(kube.clone(), &resource),
    };
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let (exits_tx, mut exits) = mpsc::unbounded_channel();
    let mut manager = Manager {
        recorder: Recorder::new(
            kube.clone(),
            Reporter {
                controller: "runway-controller".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        kube,
        opts,
        objects: HashMap::new(),
        init: Vec::new(),
        running: HashMap::new(),
        failures: HashMap::new(),
        clients: HashMap::new(),
        exits: exits_tx,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => manager.on_event(event).await,
                Some(Err(error)) => tracing::warn!(%error, "RunnerScaleSet watch failed; retrying"),
                None => return Err(ManagerError::WatchEnded),
            },
            Some(exit) = exits.recv() => manager.on_exit(exit).await,
            _ = tick.tick() => manager.on_tick().await,
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    manager.stop_all(&mut exits).await;
    Ok(())
}

struct Manager {
    kube: Client,
    opts: ManagerOptions,
    recorder: Recorder,
    objects: HashMap<Key, Decoded>,
    /// Objects seen during a watch (re)list, which ends with `InitDone`.
    init: Vec<Decoded>,
    running: HashMap<Key, Running>,
    failures: HashMap<Key, Failures>,
    /// The GitHub client each object's supervisor made, by object uid: its
    /// cleanup may need it after the credentials Secret is gone.
    clients: HashMap<Key, (String, ClientSlot)>,
    exits: mpsc::UnboundedSender<Exit>,
}

fn key_of(object: &impl Resource) -> Key {
    (object.namespace().unwrap_or_default(), object.name_any())
}

/// Decodes a watched object; one that cannot be read at all (not even for
/// its cleanup) is logged and skipped.
fn decoded(object: &DynamicObject) -> Option<Decoded> {
    match decode::decode(object) {
        Ok(decoded) => Some(decoded),
        Err(error) => {
            tracing::warn!(%error, "skipping a RunnerScaleSet");
            None
        }
    }
}

impl Manager {
    async fn on_event(&mut self, event: watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Apply(object) => {
                let key = key_of(&object);
                let Some(decoded) = decoded(&object) else {
                    return;
                };
                self.objects.insert(key.clone(), decoded);
                self.reconcile(&key).await;
            }
            watcher::Event::Delete(rss) => {
                let key = key_of(&rss);
                self.objects.remove(&key);
                self.failures.remove(&key);
                self.clients.remove(&key);
                if let Some(metrics) = &self.opts.supervisor.metrics {
                    metrics.remove_scale_set(&key.0, &key.1);
                }
                self.reconcile(&key).await;
            }
            watcher::Event::Init => self.init.clear(),
            watcher::Event::InitApply(object) => self.init.extend(decoded(&object)),
            watcher::Event::InitDone => {
                let listed: HashMap<Key, Decoded> =
                    self.init.drain(..).map(|d| (key_of(&d.rss), d)).collect();
                let mut keys: Vec<Key> = self.objects.keys().cloned().collect();
                keys.extend(listed.keys().cloned());
                self.objects = listed;
                keys.sort();
                keys.dedup();
                for key in keys {
                    self.reconcile(&key).await;
                }
            }
        }
    }

    async fn on_exit(&mut self, exit: Exit) {
        let Exit {
            key,
            worker,
            result,
            reason,
        } = exit;
        if self.running.get(&key).is_some_and(|r| r.worker == worker) {
            self.running.remove(&key);
        }
        match (&worker.kind, result) {
            (Kind::Supervise, Err(message)) => {
                let count = self.count_failure(&key, &worker);
                let wait = crate::backoff::exponential(
                    self.opts.retry_base,
                    self.opts.retry_cap,
                    count - 1,
                );
                self.retry_after(&key, wait);
                let reason = camel(reason.unwrap_or("failed"));
                tracing::warn!(
                    namespace = %key.0, name = %key.1, %reason, error = %message,
                    retry_in = ?wait, "scale set supervisor failed"
                );
                self.report_failure(&key, &reason, &message).await;
            }
            (Kind::Supervise, Ok(())) => {}
            (Kind::Cleanup, Err(message)) => {
                tracing::warn!(namespace = %key.0, name = %key.1, error = %message, "cleanup failed; retrying");
                self.count_failure(&key, &worker);
                self.retry_after(&key, self.opts.cleanup_interval);
            }
            // The Delete event that follows forgets the rest.
            (Kind::Cleanup, Ok(())) => {
                self.failures.remove(&key);
            }
        }
        self.reconcile(&key).await;
    }

    /// Counts a failure of `worker`'s object version (a new version starts
    /// from zero); returns the count.
    fn count_failure(&mut self, key: &Key, worker: &Worker) -> u32 {
        let version = (worker.uid.clone(), worker.generation);
        let failures = self.failures.entry(key.clone()).or_insert(Failures {
            uid_generation: version.clone(),
            count: 0,
            retry_at: Instant::now(),
        });
        if failures.uid_generation != version {
            failures.uid_generation = version;
            failures.count = 0;
        }
        failures.count += 1;
        failures.count
    }

    fn retry_after(&mut self, key: &Key, wait: Duration) {
        if let Some(failures) = self.failures.get_mut(key) {
            failures.retry_at = Instant::now() + wait;
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let due: Vec<Key> = self
            .failures
            .iter()
            .filter(|(key, f)| f.retry_at <= now && !self.running.contains_key(*key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            self.reconcile(&key).await;
        }
    }

    /// Brings the workers of `key` in line with the object: see [`plan`].
    async fn reconcile(&mut self, key: &Key) {
        let decoded = self.objects.get(key).cloned();
        let spec = match decoded.as_ref().and_then(|d| d.invalid.as_ref()) {
            Some(_) => Spec::Invalid,
            None => Spec::Valid,
        };
        let object = decoded.as_ref().map(|d| d.rss.clone());
        let running = self.running.get(key).map(|r| (&r.worker, r.stopping));
        let retry_at = self.failures.get(key).and_then(|f| {
            let current = object
                .as_ref()
                .map(|o| (o.uid().unwrap_or_default(), o.metadata.generation));
            (Some(&f.uid_generation) == current.as_ref()).then_some(f.retry_at)
        });
        let step = plan(
            object.as_ref(),
            spec,
            running,
            retry_at,
            Instant::now(),
            FINALIZER,
        );
        match step {
            Step::Nothing => {}
            Step::Stop => {
                if let Some(running) = self.running.get_mut(key) {
                    running.stopping = true;
                    running.stop.send_replace(true);
                }
            }
            Step::AddFinalizer => {
                // The write comes back as a watch event: the next reconcile
                // starts the supervisor.
                if let Some(rss) = object
                    && let Err(error) = self.add_finalizer(&rss).await
                {
                    tracing::warn!(namespace = %key.0, name = %key.1, %error, "could not add the finalizer; retrying");
                    self.retry_soon(key, &rss);
                }
            }
            Step::Start(kind) => {
                if let Some(rss) = object {
                    self.start(key, rss, kind);
                }
            }
            Step::ReportInvalid => {
                // Nothing to retry: a fix is a new generation, a watch event.
                self.failures.remove(key);
                if let Some(invalid) = decoded.and_then(|d| d.invalid) {
                    let message = format!(
                        "the spec does not decode: {invalid}; no runners until it is fixed"
                    );
                    self.report_failure(key, "InvalidSpec", &message).await;
                }
            }
        }
    }

    fn retry_soon(&mut self, key: &Key, rss: &RunnerScaleSet) {
        self.failures.insert(
            key.clone(),
            Failures {
                uid_generation: (rss.uid().unwrap_or_default(), rss.metadata.generation),
                count: 1,
                retry_at: Instant::now() + self.opts.retry_base,
            },
        );
    }

    fn start(&mut self, key: &Key, rss: RunnerScaleSet, kind: Kind) {
        let worker = Worker {
            kind,
            uid: rss.uid().unwrap_or_default(),
            generation: rss.metadata.generation,
        };
        let (stop, stop_rx) = watch::channel(false);
        let exits = self.exits.clone();
        let kube = self.kube.clone();
        let (k, w) = (key.clone(), worker.clone());
        let abort = match kind {
            Kind::Supervise => {
                tracing::info!(namespace = %key.0, name = %key.1, generation = ?worker.generation, "starting the scale set supervisor");
                let slot = match self.clients.get(key) {
                    Some((uid, slot)) if *uid == worker.uid => slot.clone(),
                    _ => {
                        let slot = ClientSlot::default();
                        self.clients
                            .insert(key.clone(), (worker.uid.clone(), slot.clone()));
                        slot
                    }
                };
                let opts = SupervisorOptions {
                    client_slot: Some(slot),
                    ..self.opts.supervisor.clone()
                };
                // Fires once: `take_if` leaves `None` behind.
                let inject_panic = self.opts.test_panic_once.take_if(|k| k == key).is_some();
                spawn_worker(k, w, exits, async move {
                    if inject_panic {
                        panic!(
                            "test hook --test-panic-supervisor: a panic injected into the supervisor"
                        );
                    }
                    let result = run_scale_set(kube, rss, opts, stop_rx).await;
                    let reason = result.as_ref().err().map(SupervisorError::metric_label);
                    (result.map_err(|e| e.to_string()), reason)
                })
            }
            Kind::Cleanup => {
                tracing::info!(namespace = %key.0, name = %key.1, "cleaning up a deleted scale set");
                let opts = self.opts.clone();
                let recorder = self.recorder.clone();
                let cached = self
                    .clients
                    .get(key)
                    .filter(|(uid, _)| *uid == worker.uid)
                    .and_then(|(_, slot)| lock(slot).clone());
                spawn_worker(k, w, exits, async move {
                    let result = cleanup::run(kube, recorder, rss, &opts, cached, stop_rx).await;
                    (result.map_err(|e| e.to_string()), None)
                })
            }
        };
        self.running.insert(
            key.clone(),
            Running {
                worker,
                stop,
                abort,
                stopping: false,
            },
        );
    }

    async fn add_finalizer(&self, rss: &RunnerScaleSet) -> Result<(), kube::Error> {
        let ops = patch::add_finalizer(&rss.metadata, FINALIZER);
        if ops.is_empty() {
            return Ok(());
        }
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.kube.clone(),
            &rss.namespace().unwrap_or_default(),
            &api_resource(),
        );
        api.patch(
            &rss.name_any(),
            &PatchParams::default(),
            &Patch::<()>::Json(patch::json_patch(ops)?),
        )
        .await?;
        Ok(())
    }

    /// `Ready=False` (and `Listening=False`) with the error, and a Warning
    /// Event; skipped when the conditions say so already.
    async fn report_failure(&self, key: &Key, reason: &str, message: &str) {
        let Some(Decoded { rss, .. }) = self.objects.get(key) else {
            return;
        };
        let now = chrono::Utc::now();
        let generation = rss.metadata.generation;
        let ready = conditions::condition(CONDITION_READY, false, reason, message, generation, now);
        let previous = rss
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        if conditions::says(&previous, &ready) {
            return;
        }
        let listening = conditions::condition(
            CONDITION_LISTENING,
            false,
            "NotRunning",
            "the scale set is not ready",
            generation,
            now,
        );
        let merged = conditions::merge(&previous, [ready, listening]);
        // Untyped: the object may be one whose spec does not decode.
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.kube.clone(), &key.0, &api_resource());
        let body = serde_json::json!({ "status": { "conditions": merged } });
        if let Err(error) = api
            .patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            tracing::warn!(namespace = %key.0, name = %key.1, %error, "could not write the Ready condition");
        }
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(message.to_owned()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &rss.object_ref(&())).await {
            tracing::warn!(namespace = %key.0, name = %key.1, %error, "could not record an event");
        }
    }

    /// Stops every worker and waits for their exits, at most
    /// `listener_shutdown_timeout` (each supervisor's own bound on its
    /// session delete) plus [`STOP_SLACK`]; then aborts the rest.
    async fn stop_all(&mut self, exits: &mut mpsc::UnboundedReceiver<Exit>) {
        for running in self.running.values() {
            running.stop.send_replace(true);
        }
        let bound = self.opts.supervisor.listener_shutdown_timeout + STOP_SLACK;
        await_exits(&mut self.running, exits, bound).await;
    }
}

/// Waits until every worker in `running` has sent its exit, at most
/// `bound`; aborts the ones left (logged) and returns their keys.
async fn await_exits(
    running: &mut HashMap<Key, Running>,
    exits: &mut mpsc::UnboundedReceiver<Exit>,
    bound: Duration,
) -> Vec<Key> {
    let deadline = tokio::time::Instant::now() + bound;
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, exits.recv()).await {
            Ok(Some(exit)) => {
                if running
                    .get(&exit.key)
                    .is_some_and(|r| r.worker == exit.worker)
                {
                    running.remove(&exit.key);
                }
            }
            // The deadline passed (or, never while the manager holds a
            // sender, the channel closed).
            Ok(None) | Err(_) => break,
        }
    }
    let mut left: Vec<Key> = running.keys().cloned().collect();
    left.sort();
    for key in &left {
        if let Some(worker) = running.remove(key) {
            tracing::warn!(namespace = %key.0, name = %key.1, kind = ?worker.worker.kind, waited = ?bound, "a worker did not stop in time; aborting it");
            worker.abort.abort();
        }
    }
    left
}

/// Runs `work` (a worker: its result and, for a failure, a metric label) as
/// a task of its own, and sends its end to `exits` from a second task that
/// awaits it: a panic becomes a failure like any other (`panicked: ...`),
/// so the manager retries it and never waits for an exit that cannot come.
fn spawn_worker<F>(
    key: Key,
    worker: Worker,
    exits: mpsc::UnboundedSender<Exit>,
    work: F,
) -> AbortHandle
where
    F: Future<Output = (Result<(), String>, Option<&'static str>)> + Send + 'static,
{
    let task = tokio::spawn(work);
    let abort = task.abort_handle();
    tokio::spawn(async move {
        let (result, reason) = match task.await {
            Ok(end) => end,
            Err(error) => joined(error),
        };
        let _ = exits.send(Exit {
            key,
            worker,
            result,
            reason,
        });
    });
    abort
}

/// A worker task that did not return: it panicked, or shutdown aborted it.
fn joined(error: JoinError) -> (Result<(), String>, Option<&'static str>) {
    if !error.is_panic() {
        return (Err("aborted".into()), Some("aborted"));
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    (Err(format!("panicked: {message}")), Some("panicked"))
}

/// `invalid_spec` -> `InvalidSpec`: a metric label as an Event or
/// condition reason.
fn camel(label: &str) -> String {
    label
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(kind: Kind) -> Worker {
        Worker {
            kind,
            uid: "u1".into(),
            generation: Some(1),
        }
    }

    fn key(name: &str) -> Key {
        ("ci".into(), name.into())
    }

    #[tokio::test]
    async fn a_panicking_worker_ends_as_a_failure_naming_the_panic() {
        let (tx, mut exits) = mpsc::unbounded_channel();
        spawn_worker(key("str"), worker(Kind::Supervise), tx.clone(), async {
            panic!("boom")
        });
        spawn_worker(key("string"), worker(Kind::Cleanup), tx, async {
            panic!("boom {}", 2)
        });
        let mut ends = Vec::new();
        for _ in 0..2 {
            let exit = exits.recv().await.expect("an exit for every worker");
            ends.push((exit.key.1, exit.worker.kind, exit.result, exit.reason));
        }
        ends.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            ends,
            [
                (
                    "str".to_owned(),
                    Kind::Supervise,
                    Err("panicked: boom".to_owned()),
                    Some("panicked")
                ),
                (
                    "string".to_owned(),
                    Kind::Cleanup,
                    Err("panicked: boom 2".to_owned()),
                    Some("panicked")
                ),
            ]
        );
        assert_eq!(camel("panicked"), "Panicked");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_a_bounded_time_then_aborts_what_is_left() {
        let (tx, mut exits) = mpsc::unbounded_channel();
        let mut running = HashMap::new();
        // One worker stops when asked, after a while; one never does.
        for (name, stops) in [("polite", true), ("stuck", false)] {
            let (stop, mut stop_rx) = watch::channel(false);
            let abort = spawn_worker(key(name), worker(Kind::Supervise), tx.clone(), async move {
                if stops {
                    let _ = stop_rx.wait_for(|s| *s).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    std::future::pending::<()>().await;
                }
                (Ok(()), None)
            });
            stop.send_replace(true);
            let running_worker = Running {
                worker: worker(Kind::Supervise),
                stop,
                abort,
                stopping: true,
            };
            running.insert(key(name), running_worker);
        }
        let started = tokio::time::Instant::now();
        let left = await_exits(&mut running, &mut exits, Duration::from_secs(3)).await;
        assert_eq!(left, [key("stuck")]);
        assert!(running.is_empty());
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // The aborted task is gone: its exit says so.
        let exit = exits.recv().await.expect("the aborted worker's exit");
        assert_eq!(exit.key, key("stuck"));
        assert_eq!(exit.result, Err("aborted".into()));
    }

    #[test]
    fn metric_labels_become_reasons() {
        assert_eq!(camel("invalid_spec"), "InvalidSpec");
        assert_eq!(camel("conflict"), "Conflict");
        assert_eq!(camel(""), "");
    }
}
