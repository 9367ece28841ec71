//! Runners that ended after their job while the listener has not yet heard
//! the job complete.
//!
//! The desired count follows the service's `totalAssignedJobs`, which still
//! counts a job until the listener handles its JobCompleted message. A
//! runner pod usually ends first (an ephemeral runner exits right after its
//! job), and is removed at once; filling up to the old count in between
//! would make a runner nobody needs (a JIT config, a Secret, a Pod and their
//! removal: ARC's over-provisioning after every job). So each such runner is
//! remembered until its JobCompleted arrives (or a grace time passes, for a
//! runner that exited without a job), and the assigned jobs are counted
//! without them.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::Pod;

use super::demand::Demand;
use super::pod::is_busy;
use super::state::{RunnerEnd, pod_name, runner_end};

/// How long an ended runner waits for its JobCompleted at most.
pub const GRACE: TimeDelta = TimeDelta::seconds(60);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndedRunners {
    /// Runner name -> when its end was first seen.
    seen: BTreeMap<String, DateTime<Utc>>,
}

impl EndedRunners {
    /// Remembers the pods that ended after taking a job (their job is done),
    /// forgets those the listener reported complete or that waited longer
    /// than `grace`, and returns how many jobs the statistics still count
    /// for runners that are done.
    pub fn unreported(
        &mut self,
        pods: &[Pod],
        demand: &Demand,
        now: DateTime<Utc>,
        grace: TimeDelta,
    ) -> u32 {
        for pod in pods.iter().filter(|p| ended_after_job(p, demand)) {
            self.seen.entry(pod_name(pod).to_owned()).or_insert(now);
        }
        self.seen
            .retain(|name, at| !demand.completed.contains(name) && now - *at < grace);
        u32::try_from(self.seen.len()).unwrap_or(u32::MAX)
    }
}

/// An ephemeral runner exits 0 after its one job (see [`runner_end`]: the
/// runner container decides, not the phase a dind sidecar keeps `Running`);
/// a busy runner that failed lost its job with it.
fn ended_after_job(pod: &Pod, demand: &Demand) -> bool {
    let name = pod_name(pod);
    if demand.completed.contains(name) {
        return false;
    }
    match runner_end(pod) {
        Some(RunnerEnd::Exited) => true,
        Some(RunnerEnd::Failed) => is_busy(pod) || demand.busy.contains(name),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use kube::api::ObjectMeta;

    use super::*;

    fn pod(name: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    /// Kubernetes before 1.29: the runner exited 0, the dind sidecar keeps
    /// the pod `Running`.
    fn runner_exited_beside_dind(name: &str) -> Pod {
        let status = |name: &str, state: ContainerState| ContainerStatus {
            name: name.into(),
            state: Some(state),
            ..ContainerStatus::default()
        };
        let exited = ContainerState {
            terminated: Some(ContainerStateTerminated::default()),
            ..ContainerState::default()
        };
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        };
        let mut pod = pod(name, "Running");
        if let Some(s) = pod.status.as_mut() {
            s.container_statuses = Some(vec![
                status(crate::runner::RUNNER_CONTAINER, exited),
                status("dind", running),
            ]);
        }
        pod
    }

    #[test]
    fn ended_runners_count_until_their_job_is_reported_complete() {
        let t0 = Utc::now();
        let mut ended = EndedRunners::default();
        let mut demand = Demand::desired(3);
        demand.busy.insert("b".into());
        let pods = [
            pod("done", "Succeeded"),
            pod("b", "Failed"),
            pod("idle-dead", "Failed"),
            pod("up", "Running"),
            runner_exited_beside_dind("sidecar-done"),
        ];
        assert_eq!(
            ended.unreported(&pods, &demand, t0, GRACE),
            3,
            "done, b and sidecar-done"
        );

        // The pods are deleted; the memory keeps counting them.
        assert_eq!(
            ended.unreported(&[], &demand, t0 + TimeDelta::seconds(1), GRACE),
            3
        );

        // JobCompleted for one of them.
        demand.completed.insert("done".into());
        assert_eq!(
            ended.unreported(&[], &demand, t0 + TimeDelta::seconds(2), GRACE),
            2
        );

        // A runner that exited without a job is not waited for forever.
        assert_eq!(ended.unreported(&[], &demand, t0 + GRACE, GRACE), 0);
    }

    #[test]
    fn a_pod_reported_complete_is_not_counted_at_all() {
        let mut demand = Demand::desired(1);
        demand.completed.insert("done".into());
        let mut ended = EndedRunners::default();
        let pods = [pod("done", "Succeeded")];
        assert_eq!(ended.unreported(&pods, &demand, Utc::now(), GRACE), 0);
    }
}
