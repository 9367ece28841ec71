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
//! [`decide`] (in `decide.rs`) and the record builders are pure; the
//! elector's loop here and the renewer (in `leadership.rs`) do the I/O.
//!
//! Shared by the controller (only the leader runs listeners) and `runway
//! serve` (only the leader executes payloads); each passes its own labels
//! for the Lease it creates.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

mod decide;
mod fence;
mod leadership;

pub use fence::Fence;
pub use leadership::Leadership;

use decide::{Decision, JITTER, LeaseRecord, Observed, claim, decide, observe};

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
    /// Labels of the Lease when we create it (e.g. the caller's
    /// `app.kubernetes.io/managed-by`); an existing Lease keeps its own.
    pub labels: BTreeMap<String, String>,
}

impl LeaderConfig {
    /// Lease `namespace/name` held as `identity`, with client-go's default
    /// timing: lease 15 s, renew deadline 10 s, retry period 2 s; no labels.
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
            labels: BTreeMap::new(),
        }
    }

    /// The same, with `key: value` among the labels of a Lease we create.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// This process's identity: `$POD_NAME` (else the host name, else
/// `runway`) plus `_` and a random suffix, so that two processes on one
/// machine differ.
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
        .unwrap_or_else(|| "runway".to_string());
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
        "not allowed to {action} Lease {namespace}/{name}: grant this process's ServiceAccount \
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
    /// A one-off read failed in a way a retry may fix (a timeout, a 5xx);
    /// only [`LeaderElector::current_holder`] returns it, the election loops
    /// retry instead.
    #[error("cannot read Lease {namespace}/{name} right now: {reason}")]
    Unavailable {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// The retry period plus up to [`JITTER`] of it, as client-go waits.
pub(crate) fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + JITTER * rand::random::<f64>())
}

// ---------------------------------------------------------------------------
// I/O

/// Why one request did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
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
pub(crate) struct LeaseApi {
    api: Api<Lease>,
    pub(crate) cfg: LeaderConfig,
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

    pub(crate) async fn read(&self) -> Result<Option<Lease>, Failure> {
        self.bounded("read", self.api.get_opt(&self.cfg.name)).await
    }

    async fn create(&self, spec: LeaseSpec) -> Result<Lease, Failure> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                namespace: Some(self.cfg.namespace.clone()),
                labels: (!self.cfg.labels.is_empty()).then(|| self.cfg.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        self.bounded("create", self.api.create(&PostParams::default(), &lease))
            .await
    }

    /// Replaces the spec of `lease`, conditional on its `resourceVersion`.
    pub(crate) async fn update(&self, lease: &Lease, spec: LeaseSpec) -> Result<Lease, Failure> {
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

    /// The Lease's current `holderIdentity` (`None`: missing or released),
    /// as a standby tells callers who leads. One read, no election state.
    pub async fn current_holder(&self) -> Result<Option<String>, LeaderError> {
        match self.lease.read().await {
            Ok(lease) => Ok(lease.as_ref().and_then(|l| LeaseRecord::of(l).holder)),
            Err(Failure::Fatal(error)) => Err(error),
            Err(failure) => Err(LeaderError::Unavailable {
                namespace: self.lease.cfg.namespace.clone(),
                name: self.lease.cfg.name.clone(),
                reason: failure.to_string(),
            }),
        }
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

#[cfg(test)]
mod tests;
