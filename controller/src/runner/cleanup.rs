//! The runners' part of deleting a `RunnerScaleSet`: take every runner apart
//! that is not running a job, and say which ones still are.
//!
//! Each call is one pass (the caller repeats it until nothing is left, or
//! its time runs out): a pod already being deleted gets its registration
//! removed and its finalizer released; an idle or pending runner is
//! unregistered, then deleted; a busy runner (annotated, or refused by
//! GitHub with `JobStillRunning`) is left to finish its job.

use super::pod::is_busy;
use super::reconcile::{Context, Outcome, Pass, ReconcileError, Unregistered};
use super::registry::RunnerRegistry;
use super::state::pod_name;
use crate::crd::RunnerScaleSet;

/// What one cleanup pass left behind.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// Runner pods still running a job.
    pub busy: Vec<String>,
    /// Runner pods that exist after this pass for another reason (being
    /// deleted right now, or a step failed: see `outcome.errors`).
    pub other: Vec<String>,
    pub outcome: Outcome,
}

impl Cleanup {
    /// No runner pod is left.
    pub fn is_done(&self) -> bool {
        self.busy.is_empty() && self.other.is_empty()
    }
}

/// One cleanup pass over the runner pods of `rss`. See the module comment.
pub async fn retire_runners<R: RunnerRegistry>(
    ctx: &Context<R>,
    rss: &RunnerScaleSet,
) -> Result<Cleanup, ReconcileError> {
    let pass = Pass::new(ctx, rss)?;
    let mut cleanup = Cleanup::default();
    for pod in pass.list().await? {
        let name = pod_name(&pod).to_owned();
        let out = &mut cleanup.outcome;
        let errors = out.errors.len();
        if pod.metadata.deletion_timestamp.is_some() {
            let result = pass.release(&pod, out).await;
            pass.note(result, out);
            cleanup.other.push(name);
            continue;
        }
        if is_busy(&pod) {
            cleanup.busy.push(name);
            continue;
        }
        let result = match pass.unregister_pod(&pod, out).await {
            Ok(Unregistered::StillRunning) => {
                cleanup.busy.push(name);
                continue;
            }
            Ok(Unregistered::Gone) => match pass.delete(&pod, out).await {
                Ok(Some(deleting)) => pass.remove_finalizer(&deleting, out).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        pass.note(result, out);
        if out.errors.len() > errors {
            cleanup.other.push(name);
        }
    }
    Ok(cleanup)
}
