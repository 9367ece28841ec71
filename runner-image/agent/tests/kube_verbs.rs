//! Every verb of `runway kube`, run by the real binary with a ServiceAccount
//! token bound only by the RBAC the real scale-set chart renders for exactly
//! the allowlist under test, against the sandbox's real API server:
//! - allowed actions succeed;
//! - anything else is refused by Runway with exit 3, before Kubernetes is
//!   called (the same command against a server that does not answer still
//!   exits 3, and the message names the value to add);
//! - a hand-made call outside the RBAC gets 403 from the API server.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use support::{Setup, Via, forbidden};

/// Every test runs twice: the CLI with the token itself, and the CLI in a
/// job step that has only the executor's socket (the executor holds the
/// token and enforces the allowlist). Same commands, same answers.
macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {
        mod direct {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Via::Direct).await
            })*
        }
        mod through_the_executor {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Via::Executor).await
            })*
        }
    };
}

both_ways!(
    get_and_list_pods_and_secrets_without_their_values,
    get_data_shows_secret_values,
    create_update_patch_and_delete_config_maps_with_dry_run,
    delete_multiple_needs_a_selector_and_stops_at_max,
    restart_makes_a_new_replica_set_and_rollback_restores_the_template,
    scale_sets_replicas_through_the_scale_subresource,
    rollout_status_waits_until_rolled_out_and_times_out_with_exit_5,
    cordon_uncordon_and_drain_honour_a_pod_disruption_budget,
    trigger_starts_a_job_from_a_cron_job,
    custom_objects_take_their_kind_at_call_time_and_rbac_from_kubernetes_permissions,
);

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    }))
    .unwrap()
}

fn secret(name: &str, password: &str) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name}, "stringData": {"password": password}
    }))
    .unwrap()
}

async fn until<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    runway_sandbox::wait::until(what, Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn get_and_list_pods_and_secrets_without_their_values(via: Via) {
    let s = Setup::via(
        json!({"kubernetesActions": {"pods": ["get", "list"], "secrets": ["get"]}}),
        via,
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(s.admin(), s.name());
    pods.create(&PostParams::default(), &pod("web-1", json!({"app": "web"})))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("db-1", json!({"app": "db"})))
        .await
        .unwrap();
    s.create(&secret("db", "hunter2-very-secret")).await;

    let got = s.kube(&["get", "pods/web-1", "-o", "json"]).await.json();
    assert_eq!(got["result"]["metadata"]["name"], "web-1");
    assert_eq!(got["result"]["kind"], "Pod");
    assert_eq!(got["changed"], false);
    let line = s.kube(&["get", "po", "web-1"]).await;
    assert_eq!(line.ok().trim(), format!("pod {}/web-1", s.name()));

    let listed = s
        .kube(&["list", "pods", "-l", "app=web", "-o", "json"])
        .await
        .json();
    let names: Vec<&str> = listed["result"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1"]);

    // Secret values never shown without getData; the keys are.
    let shown = s.kube(&["get", "secrets/db", "-o", "json"]).await;
    assert!(
        !shown.stdout.contains("hunter2") && !shown.stdout.contains("aHVudGVyMi"),
        "{shown:#?}"
    );
    assert!(
        shown.json()["result"]["data"]["password"]
            .as_str()
            .unwrap()
            .contains("getData")
    );
    assert!(
        !shown.stderr.contains("aHVudGVyMi"),
        "audit line has no values"
    );
    if via == Via::Executor {
        // The audit is the executor's: it names the job the CLI sent and
        // the runner it serves, and holds no values either.
        let log = s.executor_log();
        let line = log
            .lines()
            .find(|l| l.contains("\"audit\"") && l.contains("secrets/db"))
            .unwrap_or_else(|| panic!("an audit line for get secrets/db in:\n{log}"));
        for needle in ["acme-corp/app", "4242", "rs-runner-x", "executor"] {
            assert!(line.contains(needle), "{needle} in {line}");
        }
        assert!(
            !log.contains("aHVudGVyMi") && !log.contains("hunter2"),
            "{log}"
        );
    }

    // Denied by the allowlist, before Kubernetes: even offline it is exit 3.
    for run in [
        s.kube(&["delete", "pods/web-1"]).await,
        s.kube_offline(&["delete", "pods/web-1"]).await,
    ] {
        run.failed(3, "add \"delete\" to `kubernetesActions.pods`");
    }
    s.kube_offline(&["list", "secrets"])
        .await
        .failed(3, "add \"list\" to `kubernetesActions.secrets`");
    s.kube_offline(&["get", "pods/x", "-n", "kube-system"])
        .await
        .failed(3, "kubernetesActionsNamespaces");
    // Outside the RBAC: the API server refuses.
    let sa_pods: Api<Pod> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(
        sa_pods.delete("web-1", &DeleteParams::default()).await,
        "delete pod",
    );
    let sa_secrets: Api<Secret> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(
        sa_secrets.list(&ListParams::default()).await,
        "list secrets",
    );
    assert!(pods.get_opt("web-1").await.unwrap().is_some());
    s.cleanup().await;
}

async fn get_data_shows_secret_values(via: Via) {
    let s = Setup::via(
        json!({"kubernetesActions": {"secrets": ["get", "getData"]}}),
        via,
    )
    .await;
    s.create(&secret("db", "hunter2")).await;
    let got = s.kube(&["get", "secrets/db", "-o", "json"]).await.json();
    assert_eq!(got["result"]["data"]["password"], "aHVudGVyMg==");
    let sa: Api<Secret> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(
        sa.delete("db", &DeleteParams::default()).await,
        "delete secret",
    );
    s.cleanup().await;
}

async fn create_update_patch_and_delete_config_maps_with_dry_run(via: Via) {
    let s = Setup::via(json!({"kubernetesActions": {"configMaps": ["get", "create", "update", "patch", "delete"]}}), via).await;
    let cms: Api<ConfigMap> = Api::namespaced(s.admin(), s.name());
    let file = s.dir.join("cm.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: blue\n",
    )
    .unwrap();
    let made = s
        .kube(&[
            "create",
            "configmaps",
            "-f",
            file.to_str().unwrap(),
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(made["changed"], true);
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "blue"
    );

    // A dry run changes nothing.
    s.kube(&[
        "patch",
        "configmaps/settings",
        "--body",
        r#"{"data":{"mode":"green"}}"#,
        "--dry-run",
    ])
    .await
    .ok();
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "blue"
    );
    let patched = s
        .kube(&[
            "patch",
            "cm/settings",
            "--body",
            r#"{"data":{"mode":"green"}}"#,
        ])
        .await;
    assert!(patched.ok().contains("patched"), "{patched:#?}");
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "green"
    );

    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: red\n",
    )
    .unwrap();
    s.kube(&[
        "update",
        "configmaps/settings",
        "-f",
        file.to_str().unwrap(),
    ])
    .await
    .ok();
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "red"
    );
    // Kind and action must match: a Secret body is refused for configMaps.
    s.kube_offline(&[
        "create",
        "configmaps",
        "--body",
        r#"{"kind":"Secret","metadata":{"name":"x"}}"#,
    ])
    .await;
    s.kube(&[
        "create",
        "configmaps",
        "--body",
        r#"{"kind":"Secret","metadata":{"name":"x"}}"#,
    ])
    .await
    .failed(3, "kind and action must match");
    s.kube(&["delete", "configmaps/settings"]).await.ok();
    assert!(cms.get_opt("settings").await.unwrap().is_none());
    // Kubernetes refuses what does not exist: exit 4.
    s.kube(&["get", "configmaps/settings"])
        .await
        .failed(4, "404");
    s.kube_offline(&["list", "configmaps"])
        .await
        .failed(3, "add \"list\" to `kubernetesActions.configMaps`");
    let sa: Api<ConfigMap> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(sa.list(&ListParams::default()).await, "list configmaps");
    s.cleanup().await;
}

async fn delete_multiple_needs_a_selector_and_stops_at_max(via: Via) {
    let s = Setup::via(
        json!({"kubernetesActions": {"pods": ["deleteMultiple"]}}),
        via,
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(s.admin(), s.name());
    for (name, app) in [
        ("f1", "flaky"),
        ("f2", "flaky"),
        ("f3", "flaky"),
        ("keep", "stable"),
    ] {
        pods.create(&PostParams::default(), &pod(name, json!({"app": app})))
            .await
            .unwrap();
    }
    let count = |pods: Api<Pod>| async move {
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count()
    };
    s.kube_offline(&["delete-multiple", "pods"])
        .await
        .failed(3, "non-empty label selector");
    s.kube_offline(&["delete-multiple", "pods", "-l", ""])
        .await
        .failed(3, "non-empty label selector");
    s.kube(&["delete-multiple", "pods", "-l", "app=flaky", "--max", "2"])
        .await
        .failed(3, "matches 3 pods, more than --max 2; nothing was deleted");
    assert_eq!(count(pods.clone()).await, 4);
    let dry = s
        .kube(&[
            "delete-multiple",
            "pods",
            "-l",
            "app=flaky",
            "--dry-run",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(dry["result"]["deleted"].as_array().unwrap().len(), 3);
    assert_eq!(count(pods.clone()).await, 4);
    let done = s
        .kube(&[
            "delete-multiple",
            "pods",
            "-l",
            "app=flaky",
            "--max",
            "3",
            "-o",
            "json",
        ])
        .await
        .json();
    let mut deleted: Vec<String> =
        serde_json::from_value(done["result"]["deleted"].clone()).unwrap();
    deleted.sort();
    assert_eq!(deleted, ["f1", "f2", "f3"]);
    let left = until("the flaky pods gone", || {
        let pods = pods.clone();
        async move {
            let names: Vec<String> = pods
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            (names.len() == 1).then_some(names)
        }
    })
    .await;
    assert_eq!(left, ["keep"]);
    // deleteMultiple is deletecollection only: one delete is outside the RBAC.
    let sa: Api<Pod> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(
        sa.delete("keep", &DeleteParams::default()).await,
        "delete one pod",
    );
    s.kube_offline(&["delete", "pods/keep"])
        .await
        .failed(3, "add \"delete\" to `kubernetesActions.pods`");
    s.cleanup().await;
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}
            }
        }
    }))
    .unwrap()
}

/// The pod-template-hash labels of a deployment's ReplicaSets.
async fn template_hashes(s: &Setup, app: &str) -> Vec<String> {
    let sets: Api<ReplicaSet> = Api::namespaced(s.admin(), s.name());
    let mut hashes: Vec<String> = sets
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|rs| {
            rs.metadata
                .labels
                .as_ref()?
                .get("pod-template-hash")
                .cloned()
        })
        .collect();
    hashes.sort();
    hashes
}

async fn restart_makes_a_new_replica_set_and_rollback_restores_the_template(via: Via) {
    let s = Setup::via(
        json!({"kubernetesActions": {"deployments": ["get", "restart", "rollback"]}}),
        via,
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(s.admin(), s.name());
    s.create(&deployment("api", 1)).await;
    let first = until("the first ReplicaSet", || async {
        let h = template_hashes(&s, "api").await;
        (h.len() == 1).then_some(h)
    })
    .await;
    // The deployment controller writes revision 1 before we restart.
    until("revision 1", || async {
        let d = deployments.get("api").await.ok()?;
        d.metadata
            .annotations?
            .get("deployment.kubernetes.io/revision")
            .map(|_| ())
    })
    .await;

    let restarted = s
        .kube(&["restart", "deployments/api", "-o", "json"])
        .await
        .json();
    assert_eq!(restarted["changed"], true);
    let d = deployments.get("api").await.unwrap();
    let at = d
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap()["kubectl.kubernetes.io/restartedAt"]
        .clone();
    assert!(chrono::DateTime::parse_from_rfc3339(&at).is_ok(), "{at}");
    let both = until("a second ReplicaSet with a new template hash", || async {
        let h = template_hashes(&s, "api").await;
        (h.len() == 2).then_some(h)
    })
    .await;
    assert!(both.contains(&first[0]));
    until("revision 2", || async {
        let d = deployments.get("api").await.ok()?;
        (d.metadata
            .annotations?
            .get("deployment.kubernetes.io/revision")?
            == "2")
            .then_some(())
    })
    .await;

    // The audit: an Event on the deployment naming the job.
    let events: Api<Event> = Api::namespaced(s.admin(), s.name());
    let audited = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| {
            e.reason.as_deref() == Some("RunwayAction")
                && e.involved_object.name.as_deref() == Some("api")
        })
        .expect("a RunwayAction Event on the deployment");
    assert_eq!(
        audited.message.as_deref(),
        Some("runway kube restart by acme-corp/app run 4242 job deploy (runner rs-runner-x)")
    );

    s.kube(&["rollback", "deployments/api"]).await.ok();
    let template = deployments.get("api").await.unwrap().spec.unwrap().template;
    let annotations = template.metadata.unwrap().annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("kubectl.kubernetes.io/restartedAt"),
        "{annotations:?}"
    );
    // Back on the first template: no third ReplicaSet appears.
    until("revision 3 on the first ReplicaSet", || async {
        let d = deployments.get("api").await.ok()?;
        (d.metadata
            .annotations?
            .get("deployment.kubernetes.io/revision")?
            == "3")
            .then_some(())
    })
    .await;
    assert_eq!(template_hashes(&s, "api").await, both);

    s.kube_offline(&["scale", "deployments/api", "--replicas", "2"])
        .await
        .failed(3, "add \"scale\" to `kubernetesActions.deployments`");
    let sa: Api<Deployment> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(
        sa.delete("api", &DeleteParams::default()).await,
        "delete deployment",
    );
    forbidden(sa.list(&ListParams::default()).await, "list deployments");
    s.cleanup().await;
}

async fn scale_sets_replicas_through_the_scale_subresource(via: Via) {
    let s = Setup::via(
        json!({"kubernetesActions": {"deployments": ["scale"], "statefulSets": ["scale"]}}),
        via,
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(s.admin(), s.name());
    s.create(&deployment("web", 1)).await;
    let out = s.kube(&["scale", "deploy/web", "--replicas", "3"]).await;
    assert!(out.ok().contains("scaled to 3"), "{out:#?}");
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
    s.kube(&["scale", "deploy/web", "--replicas", "0", "--dry-run"])
        .await
        .ok();
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
    s.kube_offline(&["scale", "deploy/web"])
        .await
        .failed(2, "--replicas");
    s.kube_offline(&["restart", "deploy/web"])
        .await
        .failed(3, "add \"restart\" to `kubernetesActions.deployments`");
    let sa: Api<Deployment> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(
        sa.delete("web", &DeleteParams::default()).await,
        "delete deployment",
    );
    s.cleanup().await;
}

async fn rollout_status_waits_until_rolled_out_and_times_out_with_exit_5(via: Via) {
    let s = Setup::via(
        json!({"kubernetesActions": {"deployments": ["rolloutStatus"]}}),
        via,
    )
    .await;
    s.create(&deployment("idle", 0)).await;
    s.create(&deployment("stuck", 1)).await;
    let done = s
        .kube(&["rollout-status", "deployments/idle", "--timeout", "30s"])
        .await;
    assert!(done.ok().contains("successfully rolled out"), "{done:#?}");
    // No kubelet runs the pod: it never becomes available.
    let started = std::time::Instant::now();
    s.kube(&["rollout-status", "deployments/stuck", "--timeout", "3s"])
        .await
        .failed(5, "timed out after 3s");
    assert!(started.elapsed() < Duration::from_secs(20));
    s.kube_offline(&["get", "deployments/idle"])
        .await
        .failed(3, "add \"get\" to `kubernetesActions.deployments`");
    let sa: Api<Deployment> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(
        sa.patch(
            "idle",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await,
        "patch deployment",
    );
    s.cleanup().await;
}

fn dynamic(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn cordon_uncordon_and_drain_honour_a_pod_disruption_budget(via: Via) {
    let s = Setup::via(json!({"roleType": "ClusterRole", "kubernetesActions": {"nodes": ["cordon", "uncordon", "drain"]}}), via).await;
    let node_name = format!("node-{}", s.name());
    let nodes: Api<Node> = Api::all(s.admin());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": node_name}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(s.admin(), s.name());
    for (name, app) in [("free", "free"), ("guarded", "guarded")] {
        let mut p = pod(name, json!({"app": app}));
        p.spec.as_mut().unwrap().node_name = Some(node_name.clone());
        s.create(&p).await;
    }
    // policy/v1beta1 on this v1.20 API server; no healthy pod, so the
    // budget allows no disruption.
    let pdbs: Api<DynamicObject> = Api::namespaced_with(
        s.admin(),
        s.name(),
        &dynamic(
            "policy",
            "v1beta1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
        ),
    );
    let pdb: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}
    }))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    // Pending pods may be evicted whatever the budget says: play the
    // kubelet, so that the guarded pod runs and the budget protects it.
    let ready = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("guarded", &PatchParams::default(), &Patch::Merge(ready))
        .await
        .unwrap();
    until(
        "the disruption controller to count the guarded pod",
        || async {
            let p = pdbs.get("guard").await.ok()?;
            let healthy = p.data.pointer("/status/currentHealthy")?.as_i64()?;
            let allowed = p.data.pointer("/status/disruptionsAllowed")?.as_i64()?;
            (healthy == 1 && allowed == 0).then_some(())
        },
    )
    .await;

    let node_arg = format!("nodes/{node_name}");
    s.kube(&["cordon", &node_arg]).await.ok();
    assert_eq!(
        nodes
            .get(&node_name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .unschedulable,
        Some(true)
    );
    s.kube(&["uncordon", &node_arg]).await.ok();
    // false is the default, so the API server leaves it out.
    let unschedulable = nodes
        .get(&node_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .unschedulable;
    assert_ne!(unschedulable, Some(true));

    let drained = s.kube(&["drain", &node_arg, "--timeout", "5s"]).await;
    drained.failed(5, "1 blocked by a PodDisruptionBudget and not forced");
    assert!(
        drained.stderr.contains(&format!("{}/guarded", s.name())),
        "{drained:#?}"
    );
    assert_eq!(
        nodes
            .get(&node_name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .unschedulable,
        Some(true)
    );
    let free = pods.get("free").await.ok();
    assert!(
        free.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        "the free pod was evicted"
    );
    let guarded = pods.get("guarded").await.unwrap();
    assert!(
        guarded.metadata.deletion_timestamp.is_none(),
        "the guarded pod was not forced out"
    );

    s.kube_offline(&["get", &node_arg])
        .await
        .failed(3, "add \"get\" to `kubernetesActions.nodes`");
    let sa_nodes: Api<Node> = Api::all(s.sa.clone());
    forbidden(
        sa_nodes.delete(&node_name, &DeleteParams::default()).await,
        "delete node",
    );
    let sa_pods: Api<Pod> = Api::namespaced(s.sa.clone(), s.name());
    forbidden(
        sa_pods.delete("guarded", &DeleteParams::default()).await,
        "delete pod",
    );
    let _ = nodes.delete(&node_name, &DeleteParams::default()).await;
    s.cleanup().await;
}

async fn trigger_starts_a_job_from_a_cron_job(via: Via) {
    let s = Setup::via(json!({"kubernetesActions": {"cronJobs": ["trigger"]}}), via).await;
    // batch/v1beta1 on this v1.20 API server: runway discovers it.
    let crons: Api<DynamicObject> = Api::namespaced_with(
        s.admin(),
        s.name(),
        &dynamic("batch", "v1beta1", "CronJob", "cronjobs"),
    );
    let cron: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "batch/v1beta1", "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {
            "metadata": {"labels": {"job": "nightly"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "run", "image": "busybox"}]}}}}}
    }))
    .unwrap();
    let made = crons.create(&PostParams::default(), &cron).await.unwrap();
    let out = s
        .kube(&["trigger", "cronjobs/nightly", "-o", "json"])
        .await
        .json();
    let job_name = out["result"]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(job_name.starts_with("nightly-manual-"), "{job_name}");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(s.admin(), s.name());
    let job = jobs.get(&job_name).await.unwrap();
    let owner = &job.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("CronJob", made.metadata.uid.as_deref().unwrap())
    );
    assert_eq!(job.metadata.labels.unwrap()["job"], "nightly");
    s.kube_offline(&["delete", "cronjobs/nightly"])
        .await
        .failed(3, "add \"delete\" to `kubernetesActions.cronJobs`");
    let sa: Api<DynamicObject> = Api::namespaced_with(
        s.sa.clone(),
        s.name(),
        &dynamic("batch", "v1beta1", "CronJob", "cronjobs"),
    );
    forbidden(
        sa.delete("nightly", &DeleteParams::default()).await,
        "delete cronjob",
    );
    s.cleanup().await;
}

async fn custom_objects_take_their_kind_at_call_time_and_rbac_from_kubernetes_permissions(
    via: Via,
) {
    let s = Setup::via(json!({
        "kubernetesActions": {"customObjects": ["get", "list"]},
        "kubernetesPermissions": [{"apiGroups": ["example.runway.dev"], "resources": ["widgets"], "verbs": ["get", "list"]}],
    }), via)
    .await;
    // A CRD of the shared control plane: made once, by whichever test
    // process comes first.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(s.admin());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.runway.dev"},
        "spec": {"group": "example.runway.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("creating the Widget CRD: {e}"),
    }
    let widgets: Api<DynamicObject> = Api::namespaced_with(
        s.admin(),
        s.name(),
        &dynamic("example.runway.dev", "v1", "Widget", "widgets"),
    );
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.runway.dev/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))
    .unwrap();
    until("the Widget CRD to serve", || async {
        widgets.create(&PostParams::default(), &widget).await.ok()
    })
    .await;

    let kind = ["--api-version", "example.runway.dev/v1", "--kind", "Widget"];
    let got = s
        .kube(&[&["get", "customObjects/w1", "-o", "json"][..], &kind].concat())
        .await
        .json();
    assert_eq!(got["result"]["spec"]["size"], 3);
    let listed = s
        .kube(&[&["list", "customObjects", "-o", "json"][..], &kind].concat())
        .await
        .json();
    assert_eq!(listed["result"]["items"].as_array().unwrap().len(), 1);
    s.kube_offline(&[&["delete", "customObjects/w1"][..], &kind].concat())
        .await
        .failed(3, "add \"delete\" to `kubernetesActions.customObjects`");
    let sa: Api<DynamicObject> = Api::namespaced_with(
        s.sa.clone(),
        s.name(),
        &dynamic("example.runway.dev", "v1", "Widget", "widgets"),
    );
    forbidden(
        sa.delete("w1", &DeleteParams::default()).await,
        "delete widget",
    );
    s.cleanup().await;
}

/// `run-payload` in a job step goes to the executor too: it runs each
/// action once, with its claims in the executors' ConfigMap
/// (`runway-kubeactions-state-jobs`), never in the standalone server's.
#[tokio::test]
async fn run_payload_through_the_executor_runs_once_with_claims_of_its_own() {
    let s = Setup::via(
        json!({"kubernetesActions": {"pods": ["get", "delete"]}}),
        Via::Executor,
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(s.admin(), s.name());
    pods.create(&PostParams::default(), &pod("victim", json!({"app": "v"})))
        .await
        .unwrap();
    let file = s.dir.join("payload.json");
    let now = chrono::Utc::now().timestamp();
    std::fs::write(
        &file,
        json!({"actions": [{
            "metadata": {"id": "job-payload-1", "version": 1},
            "action_type": "delete_pod",
            "resource": {"api_version": "v1", "kind": "Pod", "namespace": s.name(), "name": "victim"},
            "timestamp": {"seconds": now, "nanos": 0},
        }]})
        .to_string(),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let first = s.kube(&["run-payload", path]).await;
    let report: Value = serde_json::from_str(first.ok()).unwrap();
    assert_eq!(report["results"][0]["status"], "succeeded", "{report}");
    wait_gone(&pods, "victim").await;
    // Recreated: a second execution would delete it again.
    pods.create(&PostParams::default(), &pod("victim", json!({"app": "v"})))
        .await
        .unwrap();
    // Audited by the executor as the job that sent it.
    let log = s.executor_log();
    let line = log
        .lines()
        .find(|l| l.contains("\"audit\"") && l.contains("job-payload-1"))
        .unwrap_or_else(|| panic!("an audit line for the payload in:\n{log}"));
    for needle in ["acme-corp/app", "4242", "rs-runner-x"] {
        assert!(line.contains(needle), "{needle} in {line}");
    }
    let second = s.kube(&["run-payload", path]).await;
    let report: Value = serde_json::from_str(second.ok()).unwrap();
    assert_eq!(report["results"][0]["status"], "skipped", "{report}");
    assert!(pods.get_opt("victim").await.unwrap().is_some());

    let configmaps: Api<ConfigMap> = Api::namespaced(s.admin(), s.name());
    let jobs = configmaps
        .get("runway-kubeactions-state-jobs")
        .await
        .expect("the executors' state ConfigMap");
    assert!(
        format!("{:?}", jobs.data).contains("job-payload-1"),
        "{:?}",
        jobs.data
    );
    assert!(
        configmaps
            .get_opt("runway-kubeactions-state")
            .await
            .unwrap()
            .is_none(),
        "the standalone server's ConfigMap is not the executors'"
    );
}

async fn wait_gone(pods: &Api<Pod>, name: &str) {
    runway_sandbox::wait::gone(pods, name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
