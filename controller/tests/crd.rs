//! The generated CRD against the sandbox's real kube-apiserver (1.20.2):
//! it installs, objects round-trip through it, and the schema's validations
//! are enforced by the server itself.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use runway_controller::crd::{
    self, ContainerMode, ContainerModeType, RunnerScaleSet, RunnerScaleSetSpec,
    RunnerScaleSetStatus,
};
use runway_sandbox::{TestNamespace, test_namespace};
use tokio::sync::OnceCell;

static CRD_INSTALLED: OnceCell<()> = OnceCell::const_new();

/// CRDs are cluster-scoped and the control plane is shared by the whole test
/// process: install once (server-side apply, so re-running is harmless) and
/// wait until the API server serves the new resource.
async fn install_crd(client: &Client) {
    CRD_INSTALLED
        .get_or_init(|| async {
            runway_sandbox::apply_crd(client, &crd::crd())
                .await
                .expect("install the RunnerScaleSet CRD");
        })
        .await;
}

async fn setup() -> (TestNamespace, Api<RunnerScaleSet>) {
    let ns = test_namespace().await;
    install_crd(&ns.client()).await;
    let api: Api<RunnerScaleSet> = ns.api();
    (ns, api)
}

fn spec() -> RunnerScaleSetSpec {
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some([("team".to_string(), "infra".to_string())].into()),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "runner".into(),
                image: Some("ghcr.io/actions/actions-runner:2.330.0".into()),
                command: Some(vec!["/home/runner/run.sh".into()]),
                env: Some(vec![EnvVar {
                    name: "RUNNER_FEATURE".into(),
                    value: Some("on".into()),
                    ..EnvVar::default()
                }]),
                resources: Some(ResourceRequirements {
                    requests: Some([("cpu".to_string(), Quantity("500m".into()))].into()),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            node_selector: Some([("kubernetes.io/arch".to_string(), "arm64".to_string())].into()),
            ..PodSpec::default()
        }),
    };
    RunnerScaleSetSpec {
        github_config_url: "https://github.com/acme".into(),
        github_config_secret: "github-app".into(),
        runner_group: Some("linux".into()),
        runner_scale_set_name: Some("arm-builders".into()),
        runner_scale_set_labels: vec!["arm64".into()],
        min_runners: Some(1),
        max_runners: Some(10),
        template,
        container_mode: Some(ContainerMode {
            mode: ContainerModeType::Dind,
        }),
        proxy: None,
        github_server_tls: None,
        service_account_name: Some("runners".into()),
        kube_actions: None,
    }
}

fn status_code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn valid_scale_set_round_trips() {
    let (_ns, api) = setup().await;
    let spec = spec();
    assert_eq!(crd::validate(&spec), Ok(()));
    api.create(
        &PostParams::default(),
        &RunnerScaleSet::new("arm", spec.clone()),
    )
    .await
    .expect("create a valid RunnerScaleSet");
    let back = api.get("arm").await.unwrap();
    assert_eq!(back.spec, spec);
    let container = &back.spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.name, "runner");
    assert_eq!(back.scale_set_name(), "arm-builders");
}

#[tokio::test]
async fn status_is_a_subresource() {
    let (_ns, api) = setup().await;
    api.create(&PostParams::default(), &RunnerScaleSet::new("st", spec()))
        .await
        .unwrap();
    let status = RunnerScaleSetStatus {
        scale_set_id: Some(12),
        session_id: Some("3f1c".into()),
        last_message_id: Some(99),
        desired_runners: Some(3),
        current_runners: Some(2),
        busy_runners: Some(1),
        ..RunnerScaleSetStatus::default()
    };
    api.patch_status(
        "st",
        &PatchParams::apply("runway-controller-tests").force(),
        &Patch::Apply(&serde_json::json!({
            "apiVersion": "actions.runway.dev/v1alpha1",
            "kind": "RunnerScaleSet",
            "status": status,
        })),
    )
    .await
    .expect("write status");
    assert_eq!(api.get("st").await.unwrap().status, Some(status.clone()));

    // A status written through the main resource is ignored by the server.
    let mut replaced = api.get("st").await.unwrap();
    replaced.status = Some(RunnerScaleSetStatus::default());
    replaced.spec.max_runners = Some(20);
    let after = api
        .replace("st", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(after.spec.max_runners, Some(20));
    assert_eq!(after.status, Some(status));
}

#[tokio::test]
async fn server_rejects_negative_min_runners() {
    let (_ns, api) = setup().await;
    let mut spec = spec();
    spec.min_runners = Some(-1);
    let err = api
        .create(&PostParams::default(), &RunnerScaleSet::new("neg", spec))
        .await
        .expect_err("negative minRunners must be rejected");
    assert_eq!(status_code(err), 422);
}

#[tokio::test]
async fn server_rejects_a_46_character_scale_set_name() {
    let (_ns, api) = setup().await;
    let mut spec = spec();
    spec.runner_scale_set_name = Some("a".repeat(45));
    api.create(
        &PostParams::default(),
        &RunnerScaleSet::new("len45", spec.clone()),
    )
    .await
    .expect("45 characters are allowed");
    spec.runner_scale_set_name = Some("a".repeat(46));
    let err = api
        .create(&PostParams::default(), &RunnerScaleSet::new("len46", spec))
        .await
        .expect_err("46 characters must be rejected");
    assert_eq!(status_code(err), 422);
}

#[tokio::test]
async fn server_rejects_an_unknown_container_mode() {
    let (ns, _api) = setup().await;
    let resource = ApiResource::erase::<RunnerScaleSet>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &resource);
    let mut object = serde_json::to_value(RunnerScaleSet::new("mode", spec())).unwrap();
    object["spec"]["containerMode"]["type"] = "docker".into();
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    let err = api
        .create(&PostParams::default(), &object)
        .await
        .expect_err("containerMode.type outside the enum must be rejected");
    assert_eq!(status_code(err), 422);
}

/// The 1.20 pod shape (dind as a plain privileged container) and its JIT
/// Secret are accepted by the real API server, owned as designed.
#[tokio::test]
async fn runner_pod_of_a_stored_scale_set_is_accepted() {
    use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
    use runway_controller::runner::{self, RunnerPod, SidecarSupport};

    let (ns, api) = setup().await;
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("runners".into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let rss = api
        .create(&PostParams::default(), &RunnerScaleSet::new("pods", spec()))
        .await
        .unwrap();
    let version = ns.client().apiserver_version().await.unwrap();
    let sidecars = SidecarSupport::for_server(&version);
    assert_eq!(sidecars, SidecarSupport::Plain);
    let pod = RunnerPod::new(&rss, "pods-runner-x1")
        .with_runner_id(7)
        .with_sidecar_support(sidecars)
        .build()
        .unwrap();
    let pods = ns.api::<Pod>();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let spec = created.spec.as_ref().unwrap();
    let containers: Vec<_> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(containers, ["runner", "dind"]);
    assert!(!runner::is_outdated(&created, &rss.spec));
    assert!(
        !runner::has_irsa(&created),
        "no IRSA webhook in the sandbox"
    );

    let secret = runner::jit_secret(&created, "encoded-jit").unwrap();
    let secret = ns
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(
        secret.metadata.owner_references.unwrap()[0].uid,
        created.metadata.uid.unwrap()
    );

    // Remove the finalizer so that the namespace can go away after the test.
    pods.patch(
        "pods-runner-x1",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}
