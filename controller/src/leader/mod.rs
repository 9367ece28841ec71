//! Leader election on a `coordination.k8s.io/v1` Lease, after client-go's
//! `leaderelection`: only the holder runs listeners and writes; a standby
//! polls the Lease every retry period and takes it over once it is free.
//!
//! Invariants:
//! - Expiry is judged by OUR clock: a holder's lease runs until
//!   `leaseDurationSeconds` after we last saw its record change (client-go's
//!   `observedTime`); the remote `renewTime` is written but never trusted.
//! - Every write carries the `resourceVersion` it was decided on, so of two
//!   candidates deciding on the same record exactly one wins; the other gets
//!   a 409 and reads again.
//! - A leader gives up (`Leadership::lost`) once it has not renewed for
//!   `renew_deadline`, which is shorter than `lease_duration`: it stops
//!   before any standby may take over.
//!
//! [`decide`] (in `decide.rs`) and the record builders are pure; the loops
//! here do the I/O.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::runner::{MANAGED_BY, MANAGED_BY_LABEL};

mod decide;

use decide::{Decision, JITTER, LeaseRecord, Observed, claim, decide, observe, released};

/// Where the Lease is, who we are, and the timing (client-go's names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// Our `holderIdentity`; unique per process (see [`default_identity`]).
    pub identity: String,
    /// How long a standby waits after the last observed change of a held
    /// Lease before taking it over. Written in whole seconds (rounded up).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up; shorter
    /// than `lease_duration`.
    pub renew_deadline: Duration,
    /// The pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Lease `namespace/name` held as `identity`, with client-go's default
    /// timing: lease 15 s, renew deadline 10 s, retry period 2 s.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// This process's identity: `$POD_NAME` (else the host name) plus `_` and a
/// random suffix, so that two processes on one machine differ.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .ok()
        })
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "runway-controller".to_string());
    format!("{base}_{}", random_suffix(8))
}

fn random_suffix(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// What failed, naming the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The settings cannot work.
    #[error("leader election on Lease {namespace}/{name}: invalid settings: {reason}")]
    Config {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// Which setting is wrong and why.
        reason: String,
    },
    /// RBAC refused us: retrying cannot help.
    #[error(
        "not allowed to {action} Lease {namespace}/{name}: grant the controller's ServiceAccount \
         get, create and update on leases.coordination.k8s.io in namespace {namespace}: {source}"
    )]
    Forbidden {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// `read`, `create` or `update`.
        action: &'static str,
        /// The API server's answer (boxed: it is large).
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server rejected a request for good (not a conflict, not a
    /// transient failure), e.g. the namespace does not exist.
    #[error("cannot {action} Lease {namespace}/{name}: {source}")]
    Api {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// `read`, `create` or `update`.
        action: &'static str,
        /// The API server's answer (boxed: it is large).
        #[source]
        source: Box<kube::Error>,
    },
}

/// The retry period plus up to [`JITTER`] of it, as client-go waits.
fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + JITTER * rand::random::<f64>())
}

// ---------------------------------------------------------------------------
// I/O

/// Why one request did not succeed.
#[derive(Debug)]
enum Failure {
    /// 409: someone else wrote first (or created it first).
    Conflict,
    /// 404 on an update: the Lease was deleted.
    Gone,
    /// Worth another try.
    Transient(String),
    /// Retrying cannot help.
    Fatal(LeaderError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Conflict => f.write_str("conflict: the Lease changed under us"),
            Failure::Gone => f.write_str("the Lease was deleted"),
            Failure::Transient(reason) => f.write_str(reason),
            Failure::Fatal(error) => error.fmt(f),
        }
    }
}

/// The Lease's API, names and request bound; shared by the elector, its
/// leadership and the renewer.
struct LeaseApi {
    api: Api<Lease>,
    cfg: LeaderConfig,
}

impl LeaseApi {
    fn failure(&self, action: &'static str, error: kube::Error) -> Failure {
        let code = match &error {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        };
        let (namespace, name) = (self.cfg.namespace.clone(), self.cfg.name.clone());
        match code {
            Some(409) => Failure::Conflict,
            Some(404) if action == "update" => Failure::Gone,
            Some(401 | 403) => Failure::Fatal(LeaderError::Forbidden {
                namespace,
                name,
                action,
                source: Box::new(error),
            }),
            Some(400 | 404 | 405 | 422) => Failure::Fatal(LeaderError::Api {
                namespace,
                name,
                action,
                source: Box::new(error),
            }),
            _ => Failure::Transient(error.to_string()),
        }
    }

    /// A request, bounded by the renew deadline so that a hung connection
    /// cannot keep a leader believing it still leads.
    async fn bounded<T>(
        &self,
        action: &'static str,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.cfg.renew_deadline, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failure(action, error)),
            Err(_) => Err(Failure::Transient(format!(
                "{action} timed out after {:?}",
                self.cfg.renew_deadline
            ))),
        }
    }

    async fn read(&self) -> Result<Option<Lease>, Failure> {
        self.bounded("read", self.api.get_opt(&self.cfg.name)).await
    }

    async fn create(&self, spec: LeaseSpec) -> Result<Lease, Failure> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                labels: Some([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        self.bounded("create", self.api.create(&PostParams::default(), &lease))
            .await
    }

    /// Replaces the spec of `lease`, conditional on its `resourceVersion`.
    async fn update(&self, lease: &Lease, spec: LeaseSpec) -> Result<Lease, Failure> {
        let mut next = lease.clone();
        next.spec = Some(spec);
        self.bounded(
            "update",
            self.api
                .replace(&self.cfg.name, &PostParams::default(), &next),
        )
        .await
    }
}

/// Campaigns for one Lease.
pub struct LeaderElector {
    lease: Arc<LeaseApi>,
}

impl LeaderElector {
    /// An elector for `cfg`'s Lease; fails if the timing cannot work.
    pub fn new(client: Client, cfg: LeaderConfig) -> Result<Self, LeaderError> {
        cfg.validate()?;
        Ok(LeaderElector {
            lease: Arc::new(LeaseApi {
                api: Api::namespaced(client, &cfg.namespace),
                cfg,
            }),
        })
    }

    /// Waits until this process holds the Lease and returns the
    /// [`Leadership`], which keeps renewing it; `None` if `shutdown` became
    /// true (or its sender was dropped) first. Transient API failures and
    /// lost races are retried; errors are those retrying cannot fix.
    pub async fn acquire(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Leadership>, LeaderError> {
        let cfg = &self.lease.cfg;
        let mut observed = Observed::Missing;
        let mut logged_holder: Option<String> = None;
        let mut raced = false;
        loop {
            if stopped(shutdown) {
                return Ok(None);
            }
            let mut pause = jittered(cfg.retry_period);
            match self.try_acquire(&mut observed, &mut logged_holder).await {
                Ok(Attempt::Won(leadership)) => return Ok(Some(leadership)),
                // Someone else wrote first: read again at once (but not
                // twice in a row, so that a flapping Lease cannot spin us).
                Ok(Attempt::Raced) if !raced => {
                    raced = true;
                    continue;
                }
                Ok(Attempt::Raced) => {}
                Ok(Attempt::Held { until }) => {
                    pause = pause.min(until.saturating_duration_since(Instant::now()));
                }
                Err(Failure::Fatal(error)) => return Err(error),
                Err(failure) => {
                    tracing::warn!(
                        namespace = %cfg.namespace, lease = %cfg.name, %failure,
                        "leader election: cannot read or write the Lease; retrying"
                    );
                }
            }
            raced = false;
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return Ok(None),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn try_acquire(
        &self,
        observed: &mut Observed,
        logged_holder: &mut Option<String>,
    ) -> Result<Attempt, Failure> {
        let cfg = &self.lease.cfg;
        let me = cfg.identity.as_str();
        let current = self.lease.read().await?;
        *observed = observe(
            observed,
            current.as_ref().map(LeaseRecord::of),
            Instant::now(),
        );
        let decision = decide(observed, me, Instant::now(), cfg);
        let record = match observed {
            Observed::Seen { record, .. } => Some(record.clone()),
            Observed::Missing => None,
        };
        let spec = claim(record.as_ref(), me, Timestamp::now(), cfg);
        let sent = Instant::now();
        let written = match (&decision, current) {
            (Decision::Wait { holder, until }, _) => {
                if logged_holder.as_ref() != Some(holder) {
                    tracing::info!(
                        namespace = %cfg.namespace, lease = %cfg.name, %holder, identity = %me,
                        "leader election: the Lease is held by another process; standing by"
                    );
                    *logged_holder = Some(holder.clone());
                }
                return Ok(Attempt::Held { until: *until });
            }
            (Decision::Create, _) | (_, None) => self.lease.create(spec).await,
            (Decision::Renew | Decision::TakeOver { .. }, Some(current)) => {
                self.lease.update(&current, spec).await
            }
        };
        let lease = match written {
            Ok(lease) => lease,
            Err(Failure::Conflict | Failure::Gone) => return Ok(Attempt::Raced),
            Err(failure) => return Err(failure),
        };
        let transitions = LeaseRecord::of(&lease).transitions;
        match &decision {
            Decision::TakeOver {
                from: Some(previous),
            } => tracing::info!(
                namespace = %cfg.namespace, lease = %cfg.name, identity = %me, %previous,
                transitions, "leader election: took over the Lease its holder let expire"
            ),
            _ => tracing::info!(
                namespace = %cfg.namespace, lease = %cfg.name, identity = %me, transitions,
                "leader election: acquired the Lease; this process now leads"
            ),
        }
        Ok(Attempt::Won(Leadership::start(
            self.lease.clone(),
            lease,
            sent,
        )))
    }
}

/// The outcome of one acquisition attempt.
enum Attempt {
    Won(Leadership),
    /// Our write lost a race (409): read again at once.
    Raced,
    /// Held by someone else until at least `until`.
    Held {
        until: Instant,
    },
}

/// True once shutdown was asked for or its sender is gone.
fn stopped(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// This process holds the Lease. A background task renews it every retry
/// period until [`Leadership::release`]; dropping the value stops renewing
/// without releasing (the Lease then expires after its duration).
pub struct Leadership {
    lease: Arc<LeaseApi>,
    lost: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    renewer: Option<JoinHandle<Option<Lease>>>,
}

impl Leadership {
    fn start(lease: Arc<LeaseApi>, written: Lease, renewed_at: Instant) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let renewer = tokio::spawn(renew(lease.clone(), written, renewed_at, lost_tx, stop_rx));
        Leadership {
            lease,
            lost,
            stop: Some(stop),
            renewer: Some(renewer),
        }
    }

    /// Our `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.lease.cfg.identity
    }

    /// Resolves once leadership is lost: a renewal kept failing for longer
    /// than the renew deadline, or someone else took (or deleted) the Lease.
    /// The caller must then stop everything only a leader may do.
    /// Cancel-safe.
    pub async fn lost(&mut self) {
        // A sender gone means the renewer ended: lost too.
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Gives the Lease up so that a standby takes over at once: stops
    /// renewing and writes it with no holder and a one-second duration.
    /// Best effort, bounded by the renew deadline; a failure is logged and
    /// leaves the Lease to expire.
    pub async fn release(mut self) {
        let cfg = self.lease.cfg.clone();
        let bound = cfg.renew_deadline;
        let lease = self.lease.clone();
        let stop = self.stop.take();
        let renewer = self.renewer.take();
        let abort = renewer.as_ref().map(JoinHandle::abort_handle);
        let outcome = tokio::time::timeout(bound, async move {
            if let Some(stop) = stop {
                let _ = stop.send(());
            }
            let last = match renewer {
                Some(task) => task.await.ok().flatten(),
                None => None,
            };
            match last {
                Some(last) => give_up(&lease, last).await,
                None => Ok(false),
            }
        })
        .await;
        // Timed out while the renewer was still busy: it must not go on.
        if let Some(abort) = abort {
            abort.abort();
        }
        match outcome {
            Ok(Ok(true)) => tracing::info!(
                namespace = %cfg.namespace, lease = %cfg.name, identity = %cfg.identity,
                "leader election: released the Lease"
            ),
            Ok(Ok(false)) => tracing::info!(
                namespace = %cfg.namespace, lease = %cfg.name, identity = %cfg.identity,
                "leader election: nothing to release, the Lease was no longer ours"
            ),
            Ok(Err(failure)) => tracing::warn!(
                namespace = %cfg.namespace, lease = %cfg.name, identity = %cfg.identity, %failure,
                "leader election: could not release the Lease; it will expire"
            ),
            Err(_) => tracing::warn!(
                namespace = %cfg.namespace, lease = %cfg.name, identity = %cfg.identity,
                "leader election: releasing the Lease timed out after {bound:?}; it will expire"
            ),
        }
    }

    /// Stops renewing WITHOUT releasing, as a crashed process would: the
    /// Lease stays ours until it expires. For tests that simulate a crash;
    /// dropping the value does the same.
    pub fn abandon(self) {
        drop(self);
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
    }
}

/// Writes the released record over `last` (our last write), re-reading on a
/// conflict as long as the Lease is still ours. True if released.
async fn give_up(lease: &LeaseApi, mut last: Lease) -> Result<bool, Failure> {
    let me = lease.cfg.identity.as_str();
    for _ in 0..3 {
        let record = LeaseRecord::of(&last);
        if record.holder.as_deref() != Some(me) {
            return Ok(false);
        }
        match lease
            .update(&last, released(&record, Timestamp::now()))
            .await
        {
            Ok(_) => return Ok(true),
            Err(Failure::Conflict) => match lease.read().await? {
                Some(current) => last = current,
                None => return Ok(false),
            },
            Err(Failure::Gone) => return Ok(false),
            Err(failure) => return Err(failure),
        }
    }
    Err(Failure::Transient("the Lease kept changing".into()))
}

/// The renewer: every retry period, writes a new renewTime over our last
/// write. Returns our last write when asked to stop, `None` once lost.
async fn renew(
    lease: Arc<LeaseApi>,
    mut last: Lease,
    mut renewed_at: Instant,
    lost: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) -> Option<Lease> {
    let cfg = lease.cfg.clone();
    let me = cfg.identity.as_str();
    let lose = |reason: &str, holder: Option<&str>| {
        tracing::warn!(
            namespace = %cfg.namespace, lease = %cfg.name, identity = %me,
            holder = holder.unwrap_or(""), reason,
            "leader election: lost the Lease; this process no longer leads"
        );
        let _ = lost.send(true);
    };
    loop {
        let deadline = renewed_at + cfg.renew_deadline;
        let next = (Instant::now() + jittered(cfg.retry_period)).min(deadline);
        tokio::select! {
            biased;
            _ = &mut stop => return Some(last),
            () = tokio::time::sleep_until(next) => {}
        }
        if Instant::now() >= deadline {
            lose("could not renew within the renew deadline", None);
            return None;
        }
        let sent = Instant::now();
        let attempt = tokio::select! {
            biased;
            _ = &mut stop => return Some(last),
            attempt = tokio::time::timeout_at(deadline, renew_once(&lease, &last)) => attempt,
        };
        match attempt {
            Ok(Ok(Renewal::Renewed(written))) => {
                last = written;
                renewed_at = sent;
            }
            Ok(Ok(Renewal::Lost(holder))) => {
                lose("another process holds the Lease", holder.as_deref());
                return None;
            }
            Ok(Ok(Renewal::Retry(current))) => last = current,
            Ok(Err(failure)) => tracing::warn!(
                namespace = %cfg.namespace, lease = %cfg.name, identity = %me, %failure,
                "leader election: renewing the Lease failed; retrying"
            ),
            Err(_) => {
                lose("could not renew within the renew deadline", None);
                return None;
            }
        }
    }
}

enum Renewal {
    Renewed(Lease),
    /// Someone else holds it now (`None`: released or deleted by someone).
    Lost(Option<String>),
    /// It changed under us but is still ours: here it is; try again.
    Retry(Lease),
}

async fn renew_once(lease: &LeaseApi, last: &Lease) -> Result<Renewal, Failure> {
    let cfg = &lease.cfg;
    let me = cfg.identity.as_str();
    let record = LeaseRecord::of(last);
    match lease
        .update(last, claim(Some(&record), me, Timestamp::now(), cfg))
        .await
    {
        Ok(written) => Ok(Renewal::Renewed(written)),
        Err(Failure::Gone) => Ok(Renewal::Lost(None)),
        Err(Failure::Conflict) => {
            let Some(current) = lease.read().await? else {
                return Ok(Renewal::Lost(None));
            };
            let observed = observe(
                &Observed::Missing,
                Some(LeaseRecord::of(&current)),
                Instant::now(),
            );
            match decide(&observed, me, Instant::now(), cfg) {
                Decision::Renew => Ok(Renewal::Retry(current)),
                _ => Ok(Renewal::Lost(LeaseRecord::of(&current).holder)),
            }
        }
        Err(failure) => Err(failure),
    }
}

#[cfg(test)]
mod tests;
