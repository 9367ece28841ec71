//! `spec.kubeActions` end to end: `run_scale_set` against the sandbox's real
//! kube-apiserver (1.20, ServiceAccount admission on) and the fake GitHub.
//! What matters is the pod the API server stores, after admission: the
//! runner container holds no ServiceAccount token, the executor does.

mod common;

use common::scale_set::{SECRET, WAIT, launch, only, options, stored_in};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, VolumeMount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use runway_controller::crd::KubeActionsExecutor;
use runway_controller::scale_set::{SupervisorError, Totals, run_scale_set};
use runway_sandbox::github::Endpoint;
use runway_sandbox::test_namespace;
use tokio::sync::watch;

const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const ALLOWLIST: &str = "e2e-kube-actions";

fn container<'p>(pod: &'p Pod, name: &str) -> &'p Container {
    let spec = pod.spec.as_ref().expect("a stored pod has a spec");
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in {spec:?}"))
}

fn token_mounts(c: &Container) -> Vec<&VolumeMount> {
    c.volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.mount_path.starts_with(TOKEN_DIR))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_executor_gets_a_service_account_token() {
    let ns = test_namespace().await;
    let fake = common::start_fake().await;
    let config_maps: Api<ConfigMap> = ns.api();
    let allowlist = ConfigMap {
        metadata: ObjectMeta {
            name: Some(ALLOWLIST.into()),
            ..ObjectMeta::default()
        },
        data: Some([("allowlist.yaml".to_string(), "pods: [get]\n".to_string())].into()),
        ..ConfigMap::default()
    };
    config_maps
        .create(&PostParams::default(), &allowlist)
        .await
        .expect("create the allowlist ConfigMap");
    let mut spec = common::scale_set_spec(&fake, SECRET, 1, Some(2));
    spec.kube_actions = Some(KubeActionsExecutor {
        allowlist_config_map: ALLOWLIST.into(),
        ..KubeActionsExecutor::default()
    });
    let (ns, fake, rss) = stored_in(ns, fake, "e2e-kube-actions", spec).await;
    // The stored object keeps the field (the CRD's schema does not prune it).
    assert_eq!(
        rss.spec
            .kube_actions
            .as_ref()
            .map(|k| k.allowlist_config_map.as_str()),
        Some(ALLOWLIST)
    );
    let mut s = launch(ns, fake, rss, |_| {}).await;

    let name = only(&s.runners(1).await);
    // Read back from the API server: what admission made of it.
    let pod = s.pods().get(&name).await.expect("read the runner pod back");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        if c.name != "runway-executor" {
            assert!(
                token_mounts(c).is_empty(),
                "{}: {:?}",
                c.name,
                c.volume_mounts
            );
        }
    }
    // No token volume the admission plugin would have added (1.20 adds a
    // `<account>-token-xxxxx` Secret volume when automount is on).
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        volumes,
        ["runway-kube-api", "runway-executor", "runway-kube-actions"]
    );
    assert_eq!(spec.automount_service_account_token, Some(false));

    let executor = container(&pod, "runway-executor");
    let mounts = token_mounts(executor);
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].name, "runway-kube-api");
    assert_eq!(mounts[0].read_only, Some(true));
    let kube_api = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "runway-kube-api")
        .and_then(|v| v.projected.as_ref())
        .expect("a projected volume");
    let token = kube_api
        .sources
        .iter()
        .flatten()
        .find_map(|s| s.service_account_token.as_ref())
        .expect("a projected token");
    assert_eq!(token.expiration_seconds, Some(3607));

    let runner = container(&pod, "runner");
    assert!(
        runner
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "runway-executor" && m.mount_path == "/var/run/runway")
    );

    s.shutdown().await.expect("run_scale_set ends cleanly");
}

/// The same check as the pod builder's, made before anything starts: the
/// scale set is refused as an invalid spec (the manager shows it as
/// `Ready=False`, reason `InvalidSpec`) and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_mounts_the_token_is_an_invalid_spec() {
    let ns = test_namespace().await;
    let fake = common::start_fake().await;
    let mut spec = common::scale_set_spec(&fake, SECRET, 1, Some(2));
    spec.kube_actions = Some(KubeActionsExecutor {
        allowlist_config_map: ALLOWLIST.into(),
        ..KubeActionsExecutor::default()
    });
    let template = spec.template.spec.as_mut().unwrap();
    template.containers[0].volume_mounts = Some(vec![VolumeMount {
        name: "creds".into(),
        mount_path: TOKEN_DIR.into(),
        ..VolumeMount::default()
    }]);
    let (ns, fake, rss) = stored_in(ns, fake, "e2e-kube-token", spec).await;

    let (totals, _) = watch::channel(Totals::default());
    let (_stop, stop_rx) = watch::channel(false);
    let run = run_scale_set(ns.client(), rss, options(totals), stop_rx);
    let error = tokio::time::timeout(WAIT, run)
        .await
        .expect("run_scale_set returns at once")
        .expect_err("the spec is invalid");
    assert!(
        matches!(error, SupervisorError::InvalidSpec { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("container \"runner\""), "{text}");
    assert!(text.contains(TOKEN_DIR), "{text}");
    let pods: Api<Pod> = ns.api();
    assert!(
        pods.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(fake.request_count(Endpoint::GenerateJitConfig), 0);
}
