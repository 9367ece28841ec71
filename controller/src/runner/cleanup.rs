//! The runners' part of deleting a `RunnerScaleSet`: take every runner apart
//! that is not running a job, and say which ones still are.
//!
//! Each call is one pass (the caller repeats it until nothing is left, or
//! its time runs out): a pod already being deleted gets its registration
//! removed and its finalizer released; a pod whose runner exited is
//! deleted; an idle or pending runner is unregistered, then deleted; a busy
//! runner (annotated, or refused by GitHub with `JobStillRunning`) is left to
//! finish its job.

use k8s_openapi::api::core::v1::Pod;

use super::pod::is_busy;
use super::reconcile::{Context, Outcome, Pass, ReconcileError, Unregistered};
use super::registry::RunnerRegistry;
use super::state::{pod_name, runner_end};
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
        let result = if pod.metadata.deletion_timestamp.is_some() {
            pass.release(&pod, out).await.map(|()| Left::Other)
        } else if has_ended(&pod) {
            // Its runner exited (after its job, or failed): nothing to wait
            // for, whatever the busy mark says.
            pass.delete_and_release(&pod, out)
                .await
                .map(|()| Left::Gone)
        } else if is_busy(&pod) {
            Ok(Left::Busy)
        } else {
            match pass.unregister_pod(&pod, out).await {
                // Busy after all: GitHub refused to unregister it.
                Ok(Unregistered::StillRunning) => Ok(Left::Busy),
                Ok(Unregistered::Gone) => {
                    pass.delete_released(&pod, out).await.map(|()| Left::Gone)
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(Left::Busy) => cleanup.busy.push(name),
            Ok(Left::Other) => cleanup.other.push(name),
            Ok(Left::Gone) => {}
            Err(error) => {
                pass.note(Err(error), out);
                cleanup.other.push(name);
            }
        }
    }
    Ok(cleanup)
}

/// What became of one pod in a pass.
enum Left {
    Gone,
    Busy,
    /// Being deleted right now; the next pass looks again.
    Other,
}

/// Whether the pod's runner is done (its container terminated, or the pod
/// `Succeeded` or `Failed`): see [`runner_end`].
fn has_ended(pod: &Pod) -> bool {
    runner_end(pod).is_some()
}
