//! What a real kubelet reports that the pod phase alone does not say, end to
//! end (`run_scale_set` against the sandbox's kube-apiserver and the fake
//! GitHub; the test plays the kubelet):
//! - on Kubernetes before 1.29 the runner container exits while the dind
//!   sidecar keeps the pod `Running`: the runner's end is its container's;
//! - an image that cannot be pulled keeps the pod `Pending` with the
//!   container waiting: after a grace it is a startup failure (pod deleted,
//!   backoff, a condition and an Event naming the image).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use common::scale_set::{only, start, start_with};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::Api;
use kube::api::ListParams;
use runway_controller::runner::RUNNER_CONTAINER;
use runway_sandbox::kubelet::{self, Termination, container};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_exits_beside_a_running_dind_sidecar_has_ended() {
    let mut s = start("e2e-sidecar-end", 1, 5).await;
    let old = only(&s.runners(1).await);
    kubelet::set_containers(
        &s.pods(),
        &old,
        "Running",
        vec![
            container::running(RUNNER_CONTAINER),
            container::running("dind"),
        ],
    )
    .await
    .expect("report both containers running");
    s.until_status(1, 1, Some(1), Some(0)).await;
    let configs = s.jit_configs();

    // The ephemeral runner exits 0; dind runs on, and on 1.20 (no native
    // sidecars) the kubelet keeps the pod Running.
    kubelet::set_containers(
        &s.pods(),
        &old,
        "Running",
        vec![
            container::terminated(RUNNER_CONTAINER, Termination::completed()),
            container::running("dind"),
        ],
    )
    .await
    .expect("report the runner exited, dind running");

    // The runner is done: pod and registration go, a new runner takes its
    // place (minRunners 1), with a new JIT config.
    let new = s.until_replaced(&old).await;
    assert_ne!(new, old);
    assert_eq!(s.jit_configs(), configs + 1);
    s.shutdown().await.expect("run_scale_set ends cleanly");
}

/// The image of container `name` in the pod spec.
fn image_of(pod: &Pod, name: &str) -> String {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .find(|c| c.name == name)
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_is_a_startup_failure_with_backoff() {
    let mut s = start_with("e2e-pull", 1, 5, |runners| {
        runners.start_grace = Duration::from_secs(1);
        runners.policy.free_failures = 0;
        runners.policy.backoff_base = TimeDelta::seconds(2);
    })
    .await;
    let first = only(&s.runners(1).await);

    // Play a kubelet that cannot pull the runner image, for every runner
    // pod the controller makes, for a while; count the pods.
    let started = Instant::now();
    let window = Duration::from_secs(15);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut image = String::new();
    while started.elapsed() < window {
        for pod in s.pod_list().await {
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            image = image_of(&pod, RUNNER_CONTAINER);
            let (reason, message) = if seen.insert(name.clone()) {
                (
                    "ErrImagePull",
                    format!(
                        "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"
                    ),
                )
            } else {
                (
                    "ImagePullBackOff",
                    format!("Back-off pulling image \"{image}\""),
                )
            };
            kubelet::set_containers(
                &s.pods(),
                &name,
                "Pending",
                vec![
                    container::waiting(RUNNER_CONTAINER, &image, reason, &message),
                    container::running("dind"),
                ],
            )
            .await
            .ok();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The first pod is gone, with its registration: it held a slot.
    s.until_gone(&first).await;
    // Backoff, no hot loop: failures 1, 2, 3 wait 2 s, 4 s, 8 s, so a 15 s
    // window sees about 3 pods (a pod every ~1.5 s without the backoff).
    assert!(
        (2..=4).contains(&seen.len()),
        "{} runner pods in {window:?}: {seen:?}",
        seen.len()
    );
    assert!(s.jit_configs() <= 4, "{} JIT configs", s.jit_configs());

    // The scale set says why, naming the container and the image.
    let condition = s
        .until("the RunnersFailingToStart condition", || async {
            s.status()
                .await
                .conditions
                .into_iter()
                .find(|c| c.type_ == "RunnersFailingToStart" && c.status == "True")
        })
        .await;
    assert_eq!(condition.reason, "ImagePullBackOff");
    assert!(
        condition.message.contains(&format!(
            "{RUNNER_CONTAINER} container image \"{image}\" cannot be pulled"
        )) && condition.message.contains("Back-off pulling image"),
        "{}",
        condition.message
    );
    let events: Api<KubeEvent> = s.ns.api();
    let event = s
        .until(
            "an ImagePullBackOff Event on the RunnerScaleSet",
            || async {
                let listed = events.list(&ListParams::default()).await.ok()?;
                listed.items.into_iter().find(|e| {
                    e.reason.as_deref() == Some("ImagePullBackOff")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some(s.name.as_str())
                })
            },
        )
        .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event.note.as_deref().unwrap_or_default().contains(&image),
        "{:?}",
        event.note
    );
    s.shutdown().await.expect("run_scale_set ends cleanly");
}
