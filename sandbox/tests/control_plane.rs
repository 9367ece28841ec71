//! The sandbox is a real control plane, not a fake: these tests exercise what
//! only the real kube-apiserver and kube-controller-manager do (defaulting,
//! the status subresource, garbage collection through ownerReferences, RBAC
//! with ServiceAccount tokens).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Resource};
use runway_sandbox::kubelet::{self, Termination};
use runway_sandbox::{test_namespace, wait};

fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "runner".into(),
                image: Some("ghcr.io/actions/actions-runner:latest".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[tokio::test]
async fn server_is_kubernetes_1_20_2() {
    let ns = test_namespace().await;
    let version = ns.client().apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.20.2");
}

#[tokio::test]
async fn pod_lifecycle_written_as_a_kubelet_would() {
    let ns = test_namespace().await;
    let pods: Api<Pod> = ns.api();
    let created = pods
        .create(&PostParams::default(), &pod("oom"))
        .await
        .unwrap();
    // The API server defaults a new pod to Pending; nothing schedules it.
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
    // The ServiceAccount admission plugin (which needs the controller
    // manager's token) mounted the default account's token.
    let spec = created.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert!(
        spec.volumes
            .unwrap_or_default()
            .iter()
            .any(|v| v.name.starts_with("default-token-"))
    );

    let running = kubelet::set_running(&pods, "oom", "runner").await.unwrap();
    assert_eq!(running.status.unwrap().phase.as_deref(), Some("Running"));

    kubelet::set_terminated(&pods, "oom", "runner", Termination::oom_killed())
        .await
        .unwrap();
    // Read back from the server, not from the patch response.
    let status = pods.get("oom").await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let terminated = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.exit_code, 137);
    assert_eq!(terminated.reason.as_deref(), Some("OOMKilled"));

    // A plain update of the pod cannot change status: only the subresource can.
    let mut pod = pods.get("oom").await.unwrap();
    pod.status.as_mut().unwrap().phase = Some("Succeeded".into());
    pods.replace("oom", &PostParams::default(), &pod)
        .await
        .unwrap();
    assert_eq!(
        pods.get("oom")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Failed")
    );
}

#[tokio::test]
async fn secret_owned_by_a_deleted_pod_is_garbage_collected() {
    let ns = test_namespace().await;
    let pods: Api<Pod> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let owner = pods
        .create(&PostParams::default(), &pod("owner"))
        .await
        .unwrap();
    let owned = Secret {
        metadata: ObjectMeta {
            name: Some("owned".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: Pod::api_version(&()).into(),
                kind: Pod::kind(&()).into(),
                name: "owner".into(),
                uid: owner.metadata.uid.clone().unwrap(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        string_data: Some([("k".to_string(), "v".to_string())].into()),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &owned)
        .await
        .unwrap();
    // A control: an unowned Secret must survive the same wait.
    let mut unowned = owned.clone();
    unowned.metadata.name = Some("unowned".into());
    unowned.metadata.owner_references = None;
    secrets
        .create(&PostParams::default(), &unowned)
        .await
        .unwrap();

    pods.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    // Collected by the real garbage collector in the controller manager.
    wait::gone(&secrets, "owned", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(secrets.get_opt("unowned").await.unwrap().is_some());
}

#[tokio::test]
async fn service_account_token_is_refused_what_its_role_does_not_grant() {
    let ns = test_namespace().await;
    let accounts: Api<ServiceAccount> = ns.api();
    accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("reader".into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap();
    ns.grant_pod_reads("reader").await;
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod("target"))
        .await
        .unwrap();

    let as_reader = ns.service_account_client("reader").await;
    let pods: Api<Pod> = Api::namespaced(as_reader.clone(), ns.name());
    // Granted: list and get.
    let listed = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    pods.get("target").await.unwrap();
    // Not granted: delete -> 403 from the real authorizer, and nothing deleted.
    match pods.delete("target", &DeleteParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains(&format!("system:serviceaccount:{}:reader", ns.name()))
            );
        }
        other => panic!("delete should be forbidden, got {other:?}"),
    }
    assert!(ns.api::<Pod>().get_opt("target").await.unwrap().is_some());
    // Not granted: Secrets at all.
    let secrets: Api<Secret> = Api::namespaced(as_reader, ns.name());
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("listing secrets should be forbidden, got {other:?}"),
    }
}
