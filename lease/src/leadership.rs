//! The held Lease: [`Leadership`] and its renewer, which writes a new
//! `renewTime` every retry period and reports the loss once a renewal kept
//! failing past the renew deadline or someone else took the Lease; and the
//! release that hands it over at once.

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::decide::{Decision, LeaseRecord, Observed, claim, decide, observe, released};
use crate::{Failure, Fence, LeaseApi, jittered};

/// This process holds the Lease. A background task renews it every retry
/// period until [`Leadership::release`]; dropping the value stops renewing
/// without releasing (the Lease then expires after its duration).
pub struct Leadership {
    lease: Arc<LeaseApi>,
    lost: watch::Receiver<bool>,
    /// Until when the leadership holds (see [`Fence`]).
    valid: watch::Receiver<Option<Instant>>,
    stop: Option<oneshot::Sender<()>>,
    renewer: Option<JoinHandle<Option<Lease>>>,
}

impl Leadership {
    pub(crate) fn start(lease: Arc<LeaseApi>, written: Lease, renewed_at: Instant) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let (valid_tx, valid) = watch::channel(Some(renewed_at + lease.cfg.renew_deadline));
        let (stop, stop_rx) = oneshot::channel();
        let signals = Signals {
            lost: lost_tx,
            valid: valid_tx,
        };
        let renewer = tokio::spawn(renew(lease.clone(), written, renewed_at, signals, stop_rx));
        Leadership {
            lease,
            lost,
            valid,
            stop: Some(stop),
            renewer: Some(renewer),
        }
    }

    /// Our `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.lease.cfg.identity
    }

    /// A cheap check for every writer: true until `renew_deadline` after
    /// the last renewal, false once lost, released or dropped. It turns
    /// false on time even when the renewer has not run yet (a process
    /// woken from a pause).
    pub fn fence(&self) -> Fence {
        Fence::from_channel(self.valid.clone())
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

/// What the renewer tells the [`Leadership`]: lost, and valid until when.
struct Signals {
    lost: watch::Sender<bool>,
    valid: watch::Sender<Option<Instant>>,
}

/// The renewer: every retry period, writes a new renewTime over our last
/// write. Returns our last write when asked to stop, `None` once lost.
/// Closes the fence on either.
async fn renew(
    lease: Arc<LeaseApi>,
    last: Lease,
    renewed_at: Instant,
    signals: Signals,
    stop: oneshot::Receiver<()>,
) -> Option<Lease> {
    let outcome = renew_until_stopped(&lease, last, renewed_at, &signals, stop).await;
    signals.valid.send_replace(None);
    if outcome.is_none() {
        let _ = signals.lost.send(true);
    }
    outcome
}

async fn renew_until_stopped(
    lease: &Arc<LeaseApi>,
    mut last: Lease,
    mut renewed_at: Instant,
    signals: &Signals,
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
        signals.valid.send_replace(None);
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
            attempt = tokio::time::timeout_at(deadline, renew_once(lease, &last)) => attempt,
        };
        match attempt {
            Ok(Ok(Renewal::Renewed(written))) => {
                last = written;
                renewed_at = sent;
                signals
                    .valid
                    .send_replace(Some(renewed_at + cfg.renew_deadline));
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
