//! `runway kube logs` and `runway kube drain` against the sandbox's real
//! node: logs are served by the real kubelet through the API server, and a
//! drained pod is evicted and stopped by the kubelet, not by us. The real
//! binary runs with the ServiceAccount token the scale-set chart's RBAC binds
//! for exactly the allowlist under test.
//!
//! The tests share one node and a drain empties it, so they take turns.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams};
use serde_json::json;
use support::Setup;
use tokio::sync::Mutex;

static NODE: Mutex<()> = Mutex::const_new(());

fn pod(name: &str, script: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app",
                "image": runway_sandbox::images::BASE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
            }],
        },
    }))
    .expect("a pod")
}

async fn until<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    runway_sandbox::wait::until(what, Duration::from_secs(90), f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

#[tokio::test]
async fn logs_come_from_the_real_kubelet_through_the_api_server() {
    let _turn = NODE.lock().await;
    let s = Setup::on_node(json!({"kubernetesActions": {"pods": ["logs"]}})).await;
    s.create(&pod(
        "api-1",
        "echo starting; echo 'listening on :8080'; echo ready; sleep 3600",
    ))
    .await;
    let pods: Api<Pod> = Api::namespaced(s.admin(), s.name());
    until("the pod's three lines logged", || async {
        let p = pods.get("api-1").await.ok().filter(running)?;
        let text = pods.logs("api-1", &Default::default()).await.ok()?;
        (text.lines().count() == 3).then_some(p)
    })
    .await;

    let all = s.kube(&["logs", "pods/api-1"]).await;
    assert_eq!(all.ok(), "starting\nlistening on :8080\nready\n");
    let tail = s
        .kube(&[
            "logs",
            "pods/api-1",
            "-c",
            "app",
            "--tail",
            "1",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(tail["result"]["log"], "ready\n");
    s.cleanup().await;
}

#[tokio::test]
async fn drain_evicts_a_real_pod_and_the_kubelet_stops_it() {
    let _turn = NODE.lock().await;
    let s = Setup::on_node(json!({
        "roleType": "ClusterRole",
        "kubernetesActions": {"nodes": ["cordon", "uncordon", "drain"]}
    }))
    .await;
    let pods: Api<Pod> = Api::namespaced(s.admin(), s.name());
    // The container marks its own end: SIGTERM from the kubelet.
    s.create(&pod(
        "worker",
        "trap 'echo got-sigterm; exit 0' TERM; echo started; while true; do sleep 1; done",
    ))
    .await;
    let scheduled = until("the pod running on the node", || async {
        pods.get("worker").await.ok().filter(running)
    })
    .await;
    let node_name = scheduled
        .spec
        .and_then(|s| s.node_name)
        .expect("scheduled on a node");
    let uid = scheduled.metadata.uid.clone().expect("a uid");

    let node_arg = format!("nodes/{node_name}");
    let drained = s.kube(&["drain", &node_arg, "--timeout", "60s"]).await;
    let nodes: Api<Node> = Api::all(s.admin());
    let unschedulable = nodes
        .get(&node_name)
        .await
        .ok()
        .and_then(|n| n.spec)
        .and_then(|s| s.unschedulable);
    // Give the node back before asserting, so that a failure here does not
    // leave the shared node cordoned for the other tests.
    let uncordoned = s.kube(&["uncordon", &node_arg]).await;
    drained.ok();
    uncordoned.ok();
    assert_eq!(unschedulable, Some(true), "drain cordons the node");

    // The kubelet stopped the container and the pod object is gone: a real
    // kubelet confirms the end before the API server removes it.
    until("the evicted pod gone", || async {
        let left = pods.list(&ListParams::default()).await.ok()?;
        (!left
            .items
            .iter()
            .any(|p| p.metadata.uid.as_deref() == Some(uid.as_str())))
        .then_some(())
    })
    .await;
    let events: Vec<String> = Api::<Event>::namespaced(s.admin(), s.name())
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("worker"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        events.iter().any(|e| e == "Killing"),
        "the kubelet's Killing event: {events:?}"
    );
    s.cleanup().await;
}
