//! The runner counts and runner conditions a supervisor writes to its
//! `RunnerScaleSet`'s status: what they are, computed from the runner pods
//! and the last pass, and what is in the status already. Pure; the
//! supervisor lists the pods and writes the patch.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::Serialize;

use crate::conditions::{condition, says};
use crate::crd;
use crate::runner;
use crate::runner::reconcile::{
    CONDITION_FAILING_TO_START, CONDITION_IRSA_MISSING, CONDITION_QUOTA_EXCEEDED, RunnerCondition,
};
use crate::runner::state::runner_state;
use crate::scaler::RunnerState;

/// The counts shown in the status (and the printer columns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub desired_runners: i32,
    /// Runner pods that exist, are not failed and are not being deleted.
    pub current_runners: i32,
    pub pending_runners: i32,
    pub idle_runners: i32,
    pub busy_runners: i32,
    pub failed_runners: i32,
}

impl Summary {
    /// Counts `pods` as the reconciler sees them under `demand`.
    pub fn of(desired: u32, pods: &[Pod], demand: &runner::Demand) -> Self {
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let states: Vec<RunnerState> = pods.iter().map(|p| runner_state(p, demand)).collect();
        let with = |f: fn(&RunnerState) -> bool| count(states.iter().filter(|s| f(s)).count());
        Summary {
            desired_runners: i32::try_from(desired).unwrap_or(i32::MAX),
            current_runners: with(|s| {
                matches!(
                    s,
                    RunnerState::Pending | RunnerState::Idle | RunnerState::Busy
                )
            }),
            pending_runners: with(|s| matches!(s, RunnerState::Pending)),
            idle_runners: with(|s| matches!(s, RunnerState::Idle)),
            busy_runners: with(|s| matches!(s, RunnerState::Busy)),
            failed_runners: with(|s| matches!(s, RunnerState::Failed(_))),
        }
    }
}

/// The counts, and the conditions when they changed.
#[derive(Debug, Serialize)]
pub(super) struct SummaryStatus<'a> {
    #[serde(flatten)]
    pub(super) summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) conditions: Option<&'a [Condition]>,
}

/// The runner conditions (`QuotaExceeded`, `IrsaMissing`,
/// `RunnersFailingToStart`) that change:
/// those a pass raised, and those no longer raised that are still true.
pub(super) fn runner_conditions(
    current: &[Condition],
    raised: &[RunnerCondition],
    generation: Option<i64>,
) -> Vec<Condition> {
    let now = chrono::Utc::now();
    let mut updates = Vec::new();
    for type_ in [
        CONDITION_QUOTA_EXCEEDED,
        CONDITION_IRSA_MISSING,
        CONDITION_FAILING_TO_START,
    ] {
        let update = match raised.iter().find(|c| c.type_ == type_) {
            Some(c) => condition(type_, true, c.reason, c.message.clone(), generation, now),
            None if current
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True") =>
            {
                condition(
                    type_,
                    false,
                    "Resolved",
                    "the last runner pass did not hit this",
                    generation,
                    now,
                )
            }
            None => continue,
        };
        if !says(current, &update) {
            updates.push(update);
        }
    }
    updates
}

/// The counts already in the status, so that a restart does not rewrite
/// them unchanged.
pub(super) fn previous_summary(status: &crd::RunnerScaleSetStatus) -> Option<Summary> {
    Some(Summary {
        desired_runners: status.desired_runners?,
        current_runners: status.current_runners?,
        pending_runners: status.pending_runners?,
        idle_runners: status.idle_runners?,
        busy_runners: status.busy_runners?,
        failed_runners: status.failed_runners?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, phase: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: phase.map(|p| PodStatus {
                phase: Some(p.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn summary_counts_each_runner_once_by_state() {
        let mut deleting = pod("leaving", Some("Running"));
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let pods = [
            pod("new", None),
            pod("idle", Some("Running")),
            pod("busy", Some("Running")),
            pod("done", Some("Running")),
            pod("dead", Some("Failed")),
            deleting,
        ];
        let demand = runner::Demand {
            desired: 4,
            busy: ["busy".to_string()].into(),
            completed: ["done".to_string()].into(),
        };
        assert_eq!(
            Summary::of(4, &pods, &demand),
            Summary {
                desired_runners: 4,
                current_runners: 3,
                pending_runners: 1,
                idle_runners: 1,
                busy_runners: 1,
                failed_runners: 1,
            }
        );
    }
}
