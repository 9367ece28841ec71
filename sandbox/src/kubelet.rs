//! Playing the kubelet. On the node-less control plane (most tests, the
//! benches, `demo --player`) no kubelet runs, so tests write pod status the
//! way a kubelet does: through the `status` subresource, with container
//! states and exit codes. Tests that need the real thing use the node
//! (`crate::node`, `node_test_namespace`).

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams};

/// How a container ended.
#[derive(Debug, Clone)]
pub struct Termination {
    pub exit_code: i32,
    pub reason: String,
}

impl Termination {
    /// Killed by the kernel for exceeding its memory limit.
    pub fn oom_killed() -> Self {
        Self {
            exit_code: 137,
            reason: "OOMKilled".into(),
        }
    }

    /// Exited on its own with code 0.
    pub fn completed() -> Self {
        Self {
            exit_code: 0,
            reason: "Completed".into(),
        }
    }
}

/// Reports `container` of pod `name` as started and ready (phase Running).
pub async fn set_running(pods: &Api<Pod>, name: &str, container: &str) -> kube::Result<Pod> {
    let state = ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(now()),
        }),
        ..ContainerState::default()
    };
    write(
        pods,
        name,
        "Running",
        container_status(container, true, state),
    )
    .await
}

/// Reports `container` of pod `name` as terminated; the pod phase follows the
/// exit code as the kubelet's does for `restartPolicy: Never` (0 ->
/// Succeeded, anything else -> Failed).
pub async fn set_terminated(
    pods: &Api<Pod>,
    name: &str,
    container: &str,
    how: Termination,
) -> kube::Result<Pod> {
    let phase = if how.exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let state = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: how.exit_code,
            reason: Some(how.reason),
            finished_at: Some(now()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    };
    write(pods, name, phase, container_status(container, false, state)).await
}

fn container_status(name: &str, ready: bool, state: ContainerState) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        ready,
        image: String::new(),
        image_id: String::new(),
        state: Some(state),
        ..ContainerStatus::default()
    }
}

async fn write(
    pods: &Api<Pod>,
    name: &str,
    phase: &str,
    status: ContainerStatus,
) -> kube::Result<Pod> {
    let status = PodStatus {
        phase: Some(phase.into()),
        start_time: Some(now()),
        container_statuses: Some(vec![status]),
        ..PodStatus::default()
    };
    let patch = Patch::Merge(StatusPatch { status });
    pods.patch_status(name, &PatchParams::default(), &patch)
        .await
}

#[derive(Debug, serde::Serialize)]
struct StatusPatch {
    status: PodStatus,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A container status as the kubelet reports it, for [`set_containers`].
pub mod container {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerStateWaiting;

    /// Started and ready.
    pub fn running(name: &str) -> ContainerStatus {
        let state = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now()),
            }),
            ..ContainerState::default()
        };
        container_status(name, true, state)
    }

    /// Started, then ended `how`.
    pub fn terminated(name: &str, how: Termination) -> ContainerStatus {
        let state = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: how.exit_code,
                reason: Some(how.reason),
                started_at: Some(now()),
                finished_at: Some(now()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        container_status(name, false, state)
    }

    /// Not started: waiting for `reason` (`ImagePullBackOff`, ...), with
    /// the kubelet's `message`; `image` as in the pod spec.
    pub fn waiting(name: &str, image: &str, reason: &str, message: &str) -> ContainerStatus {
        let state = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..ContainerState::default()
        };
        ContainerStatus {
            image: image.into(),
            ..container_status(name, false, state)
        }
    }
}

/// Reports the pod `name` in `phase` with exactly these container statuses
/// (a pod whose containers differ: a runner that exited beside a dind
/// sidecar that runs on, an image that cannot be pulled).
pub async fn set_containers(
    pods: &Api<Pod>,
    name: &str,
    phase: &str,
    statuses: Vec<ContainerStatus>,
) -> kube::Result<Pod> {
    let status = PodStatus {
        phase: Some(phase.into()),
        start_time: Some(now()),
        container_statuses: Some(statuses),
        ..PodStatus::default()
    };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(StatusPatch { status }),
    )
    .await
}
