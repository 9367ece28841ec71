//! The chart installed for real (Helm SDK against the sandbox's API server,
//! RBAC enforced): the runners' ServiceAccount can do what the allowlist
//! grants, in the listed namespaces only, and nothing else (403 from
//! Kubernetes); only the server's own ServiceAccount may write the payload
//! state ConfigMap (the runners' gets 403, even to create it when absent),
//! the runners' may write only the executors' claims; the chart's state
//! ConfigMaps keep their records across `helm upgrade`; the serve
//! Deployment and Service are accepted; the token Secret survives a
//! `helm upgrade` (`lookup`).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use runway_sandbox::helm::{self, Release};
use runway_sandbox::{crds, test_namespace, wait};
use serde_json::{Value, json};

use super::with;

const INSTALLED: &str = "ka";
const INSTALLED_ACCOUNT: &str = "ka-gha-rs-runner";
const STATE: &str = "runway-kubeactions-state";
const JOBS_STATE: &str = "runway-kubeactions-state-jobs";

/// The RunnerScaleSet CRD, from the controller chart (the scale-set chart
/// renders a RunnerScaleSet, which the API server must know).
async fn apply_runner_scale_set_crd(client: &Client) {
    let dir = helm::chart_path("runway-controller").join("crds");
    for entry in std::fs::read_dir(&dir).expect("the controller chart's crds/") {
        let path = entry.expect("crds/ entry").path();
        let text = std::fs::read_to_string(&path).expect("CRD file");
        let mut crd: Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        declare_kube_actions(&mut crd);
        let crd: CustomResourceDefinition =
            serde_json::from_value(crd).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        crds::apply_crd(client, &crd)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// `spec.kubeActions` (CONTRACT-14) declared as an open object when the
/// controller chart's CRD does not declare it yet: Helm's server-side apply
/// refuses a field the schema lacks. A no-op once the CRD has it.
fn declare_kube_actions(crd: &mut Value) {
    let Some(versions) = crd
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for version in versions {
        if let Some(Value::Object(spec)) =
            version.pointer_mut("/schema/openAPIV3Schema/properties/spec/properties")
        {
            spec.entry("kubeActions").or_insert_with(
                || json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
            );
        }
    }
}

async fn helm(verb: &'static str, namespace: &str, values: &Value, kubeconfig: &Path) -> Release {
    let (namespace, values, kubeconfig) = (
        namespace.to_string(),
        values.clone(),
        kubeconfig.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        let chart = helm::chart_path("runway-scale-set");
        match verb {
            "install" => helm::install(&chart, INSTALLED, &namespace, &values, &kubeconfig),
            "upgrade" => helm::upgrade(&chart, INSTALLED, &namespace, &values, &kubeconfig),
            _ => helm::uninstall(INSTALLED, &namespace, &kubeconfig),
        }
        .unwrap_or_else(|e| panic!("helm {verb}: {e}"))
    })
    .await
    .unwrap()
}

/// The HTTP status Kubernetes answered with (200 for success).
fn status<T>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(kube::Error::Api(s)) => s.code,
        Err(e) => panic!("not an API answer: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_rbac_grants_exactly_the_allowlist_and_the_token_survives_upgrades() {
    let home = test_namespace().await;
    let team = test_namespace().await;
    let outside = test_namespace().await;
    let admin = home.client();
    let kubeconfig = home.plane().kubeconfig_path().to_path_buf();
    apply_runner_scale_set_crd(&admin).await;

    let values = with(json!({
        "kubernetesActions": {
            "pods": ["get", "list"],
            "deployments": ["restart"],
            "server": { "enabled": true, "image": { "repository": "ghcr.io/acme/runway", "tag": "1" } },
        },
        "kubernetesActionsNamespaces": [home.name(), team.name()],
    }));
    let installed = helm("install", home.name(), &values, &kubeconfig).await;
    assert_eq!(installed.status, "deployed");

    // The ServiceAccount's view, through a token of its own.
    let sa = home.service_account_client(INSTALLED_ACCOUNT).await;
    let pods_in = |ns: &str| Api::<Pod>::namespaced(sa.clone(), ns);
    // RBAC reaches the authorizer's cache shortly after the install.
    wait::until(
        "the Role to take effect",
        Duration::from_secs(30),
        || async {
            (status(pods_in(team.name()).list(&ListParams::default()).await) == 200).then_some(())
        },
    )
    .await
    .expect("list pods in a listed namespace");
    assert_eq!(
        status(pods_in(home.name()).list(&ListParams::default()).await),
        200
    );
    assert_eq!(
        status(pods_in(outside.name()).list(&ListParams::default()).await),
        403,
        "an unlisted namespace"
    );
    assert_eq!(
        status(
            pods_in(team.name())
                .delete("x", &DeleteParams::default())
                .await
        ),
        403,
        "delete is not in the allowlist"
    );
    let deployments = Api::<Deployment>::namespaced(sa.clone(), team.name());
    assert_eq!(
        status(deployments.get("api").await),
        404,
        "restart needs get: allowed, the object is missing"
    );
    assert_eq!(
        status(deployments.list(&ListParams::default()).await),
        403,
        "restart does not need list"
    );

    // Runway's bookkeeping: the runners' account writes the executors'
    // claims only; the payload state is the server's account's alone.
    let server_sa = home
        .service_account_client("ka-gha-rs-kube-actions-server")
        .await;
    let config_maps = Api::<ConfigMap>::namespaced(sa.clone(), home.name());
    let server_maps = Api::<ConfigMap>::namespaced(server_sa.clone(), home.name());
    let admin_maps = home.api::<ConfigMap>();
    let record = |key: &str| json!({ "data": { key: "{\"result\":\"succeeded\"}" } });
    let merge = |key: &str| Patch::Merge(record(key));
    wait::until(
        "the server's state Role to take effect",
        Duration::from_secs(30),
        || async { (status(server_maps.get(STATE).await) == 200).then_some(()) },
    )
    .await
    .expect("the server's account reads the state ConfigMap");
    assert_eq!(
        status(
            server_maps
                .patch(STATE, &PatchParams::default(), &merge("a1.v1"))
                .await
        ),
        200,
        "the server's account patches the payload state"
    );
    let current = server_maps.get(STATE).await.unwrap();
    assert_eq!(
        status(
            server_maps
                .replace(STATE, &PostParams::default(), &current)
                .await
        ),
        200,
        "the server's account updates the payload state"
    );
    assert_eq!(status(config_maps.get(STATE).await), 403);
    assert_eq!(
        status(
            config_maps
                .patch(STATE, &PatchParams::default(), &merge("evil.v1"))
                .await
        ),
        403,
        "a runner's token cannot patch the payload state"
    );
    assert_eq!(
        status(
            config_maps
                .replace(STATE, &PostParams::default(), &current)
                .await
        ),
        403,
        "a runner's token cannot update the payload state"
    );
    assert_eq!(
        status(
            config_maps
                .patch(JOBS_STATE, &PatchParams::default(), &merge("j1.v1"))
                .await
        ),
        200,
        "the executors' claims are the runners' to write"
    );
    assert_eq!(
        status(
            server_maps
                .patch(JOBS_STATE, &PatchParams::default(), &merge("x.v1"))
                .await
        ),
        403,
        "the server does not write the executors' claims"
    );
    assert_eq!(status(config_maps.get("ka-gha-rs-kube-actions").await), 403);

    // The serve objects are accepted by the API server.
    let server = "ka-gha-rs-kube-actions-server";
    home.api::<Deployment>()
        .get(server)
        .await
        .expect("the serve Deployment");
    home.api::<Service>()
        .get(server)
        .await
        .expect("the serve Service");
    let token = |secret: Secret| secret.data.expect("data")["token"].0.clone();
    let secrets = home.api::<Secret>();
    let before = token(secrets.get("ka-gha-rs-kube-actions-token").await.unwrap());
    assert_eq!(before.len(), 48);

    let upgraded = helm("upgrade", home.name(), &values, &kubeconfig).await;
    assert_eq!(upgraded.revision, 2);
    let after = token(secrets.get("ka-gha-rs-kube-actions-token").await.unwrap());
    assert_eq!(after, before, "an upgrade must keep the dispatchers' token");
    // The state ConfigMaps carry no `data` in the chart: the records stay.
    let records = |cm: ConfigMap| cm.data.unwrap_or_default().into_keys().collect::<Vec<_>>();
    assert_eq!(records(admin_maps.get(STATE).await.unwrap()), ["a1.v1"]);
    assert_eq!(
        records(admin_maps.get(JOBS_STATE).await.unwrap()),
        ["j1.v1"]
    );

    // Absent, the payload state cannot be created with a runner's token
    // (nobody is granted `create configmaps`; the chart renders it).
    admin_maps
        .delete(STATE, &DeleteParams::default())
        .await
        .expect("delete the state ConfigMap as admin");
    let fresh = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(STATE.to_string()),
            ..Default::default()
        },
        data: Some([("evil.v1".to_string(), "{}".to_string())].into()),
        ..Default::default()
    };
    assert_eq!(
        status(config_maps.create(&PostParams::default(), &fresh).await),
        403,
        "a runner's token cannot create the payload state"
    );

    helm("uninstall", home.name(), &Value::Null, &kubeconfig).await;
    // helm.sh/resource-policy: keep: the records outlive the release.
    let kept = admin_maps.get(JOBS_STATE).await.expect("kept on uninstall");
    assert_eq!(records(kept), ["j1.v1"]);
}

/// State ConfigMaps that an earlier Runway created (no Helm ownership)
/// exist before the install: the chart leaves them to their owner rather
/// than failing the install on them, and their records stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_config_maps_created_before_the_chart_are_left_alone() {
    let home = test_namespace().await;
    let admin = home.client();
    let kubeconfig = home.plane().kubeconfig_path().to_path_buf();
    apply_runner_scale_set_crd(&admin).await;
    let maps = home.api::<ConfigMap>();
    for name in [STATE, JOBS_STATE] {
        let earlier = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            data: Some([("old.v1".to_string(), "{}".to_string())].into()),
            ..Default::default()
        };
        maps.create(&PostParams::default(), &earlier)
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    }
    let values = with(json!({
        "kubernetesActions": {
            "pods": ["get"],
            "server": { "enabled": true, "image": { "repository": "ghcr.io/acme/runway", "tag": "1" } },
        },
    }));
    let installed = helm("install", home.name(), &values, &kubeconfig).await;
    assert_eq!(installed.status, "deployed");
    let upgraded = helm("upgrade", home.name(), &values, &kubeconfig).await;
    assert_eq!(upgraded.status, "deployed");
    for name in [STATE, JOBS_STATE] {
        let cm = maps.get(name).await.unwrap();
        assert_eq!(
            cm.data.unwrap_or_default().into_keys().collect::<Vec<_>>(),
            ["old.v1"],
            "{name} keeps its records"
        );
    }
    helm("uninstall", home.name(), &Value::Null, &kubeconfig).await;
}
