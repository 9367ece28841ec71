use k8s_openapi::api::core::v1::{
    Container, EphemeralVolumeSource, ObjectFieldSelector, PodTemplateSpec, ProjectedVolumeSource,
    ResourceRequirements, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::crd::{ContainerMode, ContainerModeType, KubeActionsExecutor};
use crate::runner::dind::{DIND_CONTAINER, DIND_IMAGE, EXTERNALS_INIT_CONTAINER};

const RUNNER_IMAGE: &str = "ghcr.io/actions/actions-runner:2.330.0";

fn runner_container() -> Container {
    Container {
        name: "runner".into(),
        image: Some(RUNNER_IMAGE.into()),
        command: Some(vec!["/home/runner/run.sh".into()]),
        ..Container::default()
    }
}

fn scale_set(dind: bool) -> RunnerScaleSet {
    let spec = RunnerScaleSetSpec {
        github_config_url: "https://github.com/acme".into(),
        github_config_secret: "gh".into(),
        runner_group: None,
        runner_scale_set_name: Some("arm-builders".into()),
        runner_scale_set_labels: vec![],
        min_runners: Some(0),
        max_runners: Some(5),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("team".into(), "infra".into())])),
                annotations: Some(BTreeMap::from([("note".into(), "x".into())])),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![runner_container()],
                ..PodSpec::default()
            }),
        },
        container_mode: dind.then_some(ContainerMode {
            mode: ContainerModeType::Dind,
        }),
        proxy: None,
        github_server_tls: None,
        service_account_name: Some("runners".into()),
        kube_actions: None,
    };
    let mut rss = RunnerScaleSet::new("arm", spec);
    rss.metadata.namespace = Some("ci".into());
    rss.metadata.uid = Some("rss-uid-1".into());
    rss
}

fn build(rss: &RunnerScaleSet, sidecars: SidecarSupport) -> Pod {
    RunnerPod::new(rss, "arm-runner-abcde")
        .with_runner_id(42)
        .with_sidecar_support(sidecars)
        .build()
        .expect("build the runner pod")
}

fn spec_of(pod: &Pod) -> &PodSpec {
    pod.spec.as_ref().unwrap()
}

fn names(containers: &[Container]) -> Vec<&str> {
    containers.iter().map(|c| c.name.as_str()).collect()
}

fn init_names(pod: &Pod) -> Vec<&str> {
    names(spec_of(pod).init_containers.as_deref().unwrap_or_default())
}

fn container<'p>(pod: &'p Pod, name: &str) -> &'p Container {
    let spec = spec_of(pod);
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env_value<'c>(c: &'c Container, name: &str) -> Option<&'c str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

fn mounts(c: &Container) -> Vec<(&str, &str)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect()
}

fn volume_names(pod: &Pod) -> Vec<&str> {
    spec_of(pod)
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect()
}

// --- server version ---------------------------------------------------------

#[test]
fn sidecar_support_by_version() {
    let cases = [
        ("1", "20", SidecarSupport::Plain),
        ("1", "28", SidecarSupport::Plain),
        ("1", "28+", SidecarSupport::Plain),
        ("1", "29", SidecarSupport::Native),
        ("1", "29+", SidecarSupport::Native),
        ("1", "33", SidecarSupport::Native),
        ("2", "0", SidecarSupport::Native),
        ("", "", SidecarSupport::Plain),
        ("1", "x", SidecarSupport::Plain),
    ];
    for (major, minor, want) in cases {
        assert_eq!(
            SidecarSupport::for_version(major, minor),
            want,
            "{major}.{minor}"
        );
    }
    let info = Info {
        major: "1".into(),
        minor: "20".into(),
        git_version: "v1.20.2".into(),
        ..Info::default()
    };
    assert_eq!(SidecarSupport::for_server(&info), SidecarSupport::Plain);
}

// --- the pod without dind ---------------------------------------------------

#[test]
fn metadata_labels_annotations_finalizer() {
    let rss = scale_set(false);
    let pod = build(&rss, SidecarSupport::Plain);
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("arm-runner-abcde"));
    assert_eq!(meta.namespace.as_deref(), Some("ci"));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "runway");
    assert_eq!(labels["actions.runway.dev/scale-set"], "arm");
    assert_eq!(labels["actions.runway.dev/runner-name"], "arm-runner-abcde");
    assert_eq!(labels["team"], "infra", "template labels are kept");
    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations["actions.runway.dev/runner-id"], "42");
    assert_eq!(
        annotations["actions.runway.dev/template-hash"],
        template_hash(&rss.spec)
    );
    assert_eq!(annotations["note"], "x");
    assert_eq!(
        meta.finalizers.as_deref(),
        Some(&["actions.runway.dev/runner-registration".to_string()][..])
    );
}

#[test]
fn owner_is_the_scale_set() {
    let pod = build(&scale_set(false), SidecarSupport::Plain);
    let owners = pod.metadata.owner_references.unwrap();
    assert_eq!(owners.len(), 1);
    let owner = &owners[0];
    assert_eq!(owner.api_version, "actions.runway.dev/v1alpha1");
    assert_eq!(owner.kind, "RunnerScaleSet");
    assert_eq!(owner.name, "arm");
    assert_eq!(owner.uid, "rss-uid-1");
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
}

#[test]
fn only_the_controlling_owner_makes_a_pod_ours() {
    let built = build(&scale_set(false), SidecarSupport::Plain);
    assert!(is_controlled_by(&built, "rss-uid-1"));
    assert!(!is_controlled_by(&built, "rss-uid-2"), "another scale set");

    let owner = |uid: &str, controller: Option<bool>| OwnerReference {
        api_version: "actions.runway.dev/v1alpha1".into(),
        kind: "RunnerScaleSet".into(),
        name: "arm".into(),
        uid: uid.into(),
        controller,
        block_owner_deletion: None,
    };
    let with = |owners: Option<Vec<OwnerReference>>| {
        let mut pod = built.clone();
        pod.metadata.owner_references = owners;
        pod
    };
    for (owners, ours) in [
        (None, false),
        (Some(vec![]), false),
        (Some(vec![owner("rss-uid-1", None)]), false),
        (Some(vec![owner("rss-uid-1", Some(false))]), false),
        (Some(vec![owner("other", Some(true))]), false),
        (
            Some(vec![
                owner("other", Some(false)),
                owner("rss-uid-1", Some(true)),
            ]),
            true,
        ),
    ] {
        assert_eq!(
            is_controlled_by(&with(owners.clone()), "rss-uid-1"),
            ours,
            "{owners:?}"
        );
    }
}

#[test]
fn restart_never_and_service_account() {
    let mut rss = scale_set(false);
    rss.spec.template.spec.as_mut().unwrap().restart_policy = Some("Always".into());
    rss.spec
        .template
        .spec
        .as_mut()
        .unwrap()
        .service_account_name = Some("tmpl".into());
    let pod = build(&rss, SidecarSupport::Plain);
    assert_eq!(spec_of(&pod).restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        spec_of(&pod).service_account_name.as_deref(),
        Some("runners")
    );

    rss.spec.service_account_name = None;
    let pod = build(&rss, SidecarSupport::Plain);
    assert_eq!(spec_of(&pod).service_account_name.as_deref(), Some("tmpl"));
}

#[test]
fn jit_config_comes_from_the_secret() {
    let pod = build(&scale_set(false), SidecarSupport::Plain);
    let runner = container(&pod, "runner");
    let jit: Vec<_> = runner
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == "ACTIONS_RUNNER_INPUT_JITCONFIG")
        .collect();
    assert_eq!(jit.len(), 1);
    assert!(jit[0].value.is_none());
    let secret_ref = jit[0]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap();
    assert_eq!(secret_ref.name, "arm-runner-abcde-jit");
    assert_eq!(secret_ref.key, "jitConfig");
}

#[test]
fn custom_jit_secret_name_and_stale_env_replaced() {
    let mut rss = scale_set(false);
    rss.spec.template.spec.as_mut().unwrap().containers[0].env = Some(vec![EnvVar {
        name: "ACTIONS_RUNNER_INPUT_JITCONFIG".into(),
        value: Some("stale".into()),
        ..EnvVar::default()
    }]);
    let pod = RunnerPod::new(&rss, "r1")
        .with_jit_secret("my-secret")
        .build()
        .unwrap();
    let runner = container(&pod, "runner");
    let env = runner.env.as_ref().unwrap();
    assert_eq!(env.len(), 1);
    assert_eq!(
        env[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "my-secret"
    );
    assert_eq!(jit_secret_ref(&pod).as_deref(), Some("my-secret"));
}

#[test]
fn without_container_mode_nothing_is_added() {
    for sidecars in [SidecarSupport::Plain, SidecarSupport::Native] {
        let pod = build(&scale_set(false), sidecars);
        assert_eq!(names(&spec_of(&pod).containers), ["runner"]);
        assert!(spec_of(&pod).init_containers.is_none());
        assert!(spec_of(&pod).volumes.is_none());
        assert_eq!(env_value(container(&pod, "runner"), "DOCKER_HOST"), None);
    }
}

#[test]
fn build_errors() {
    let mut rss = scale_set(false);
    rss.metadata.uid = None;
    assert_eq!(
        RunnerPod::new(&rss, "r").build(),
        Err(PodError::ScaleSetNotStored { field: "uid" })
    );
    let mut rss = scale_set(false);
    rss.metadata.namespace = None;
    assert_eq!(
        RunnerPod::new(&rss, "r").build(),
        Err(PodError::ScaleSetNotStored { field: "namespace" })
    );
    let mut rss = scale_set(false);
    rss.spec.template.spec.as_mut().unwrap().containers[0].name = "main".into();
    assert!(matches!(
        RunnerPod::new(&rss, "r").build(),
        Err(PodError::NoRunnerContainer { .. })
    ));
    let mut rss = scale_set(false);
    rss.spec.template.spec.as_mut().unwrap().containers[0].image = None;
    assert!(matches!(
        RunnerPod::new(&rss, "r").build(),
        Err(PodError::NoRunnerImage { .. })
    ));
}

#[test]
fn runner_names_must_fit_pod_names_and_labels() {
    let rss = scale_set(false);
    for good in ["a", "arm-runner-x7k2p", &"a".repeat(63)] {
        assert!(RunnerPod::new(&rss, good).build().is_ok(), "{good}");
    }
    for bad in ["", "-a", "a-", "Arm", "a_b", "a.b", &"a".repeat(64)] {
        assert_eq!(
            RunnerPod::new(&rss, bad).build(),
            Err(PodError::InvalidRunnerName { name: bad.into() }),
            "{bad}"
        );
    }
}

// --- dind --------------------------------------------------------------------

fn assert_runner_dind_wiring(pod: &Pod) {
    let runner = container(pod, "runner");
    assert_eq!(
        env_value(runner, "DOCKER_HOST"),
        Some("unix:///var/run/docker.sock")
    );
    assert_eq!(
        env_value(runner, "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS"),
        Some("120")
    );
    assert_eq!(
        mounts(runner),
        [("work", "/home/runner/_work"), ("dind-sock", "/var/run")]
    );
    assert_eq!(volume_names(pod), ["work", "dind-sock", "dind-externals"]);
    assert!(
        spec_of(pod)
            .volumes
            .iter()
            .flatten()
            .all(|v| v.empty_dir.is_some())
    );

    let externals = container(pod, EXTERNALS_INIT_CONTAINER);
    assert_eq!(externals.image.as_deref(), Some(RUNNER_IMAGE));
    assert_eq!(externals.command.as_deref(), Some(&["cp".to_string()][..]));
    assert_eq!(
        externals.args.as_deref().unwrap(),
        ["-r", "/home/runner/externals/.", "/home/runner/tmpDir/"]
    );
    assert_eq!(
        mounts(externals),
        [("dind-externals", "/home/runner/tmpDir")]
    );

    let daemon = container(pod, DIND_CONTAINER);
    assert_eq!(daemon.image.as_deref(), Some(DIND_IMAGE));
    assert_eq!(
        daemon.args.as_deref().unwrap(),
        [
            "dockerd",
            "--host=unix:///var/run/docker.sock",
            "--group=$(DOCKER_GROUP_GID)"
        ]
    );
    assert_eq!(env_value(daemon, "DOCKER_GROUP_GID"), Some("123"));
    assert_eq!(
        daemon.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    assert_eq!(
        mounts(daemon),
        [
            ("work", "/home/runner/_work"),
            ("dind-sock", "/var/run"),
            ("dind-externals", "/home/runner/externals")
        ]
    );
}

#[test]
fn dind_on_1_20_is_a_plain_container() {
    let pod = build(&scale_set(true), SidecarSupport::for_version("1", "20"));
    assert_eq!(names(&spec_of(&pod).containers), ["runner", "dind"]);
    assert_eq!(init_names(&pod), ["init-dind-externals"]);
    let daemon = container(&pod, "dind");
    assert_eq!(daemon.restart_policy, None);
    assert_eq!(daemon.startup_probe, None);
    assert_runner_dind_wiring(&pod);
}

#[test]
fn dind_on_1_29_is_a_native_sidecar() {
    let pod = build(&scale_set(true), SidecarSupport::for_version("1", "29"));
    assert_eq!(names(&spec_of(&pod).containers), ["runner"]);
    assert_eq!(init_names(&pod), ["init-dind-externals", "dind"]);
    let daemon = container(&pod, "dind");
    assert_eq!(daemon.restart_policy.as_deref(), Some("Always"));
    let probe = daemon.startup_probe.as_ref().unwrap();
    assert_eq!(
        probe.exec.as_ref().unwrap().command.as_deref().unwrap(),
        ["docker", "info"]
    );
    assert_eq!(
        probe.period_seconds.zip(probe.failure_threshold),
        Some((5, 24))
    );
    assert_runner_dind_wiring(&pod);
    // The pod itself still never restarts.
    assert_eq!(spec_of(&pod).restart_policy.as_deref(), Some("Never"));
}

#[test]
fn template_init_containers_run_first() {
    let mut rss = scale_set(true);
    rss.spec.template.spec.as_mut().unwrap().init_containers = Some(vec![Container {
        name: "setup".into(),
        image: Some("busybox".into()),
        ..Container::default()
    }]);
    let pod = build(&rss, SidecarSupport::Native);
    assert_eq!(init_names(&pod), ["setup", "init-dind-externals", "dind"]);
}

#[test]
fn hand_written_dind_is_left_as_is() {
    let hand_written = [
        ("runner-docker", "docker:27-dind", false),
        ("dind", "my-registry/dockerd:1", false),
        ("daemon", "docker:dind-rootless", true),
    ];
    for (name, image, as_init) in hand_written {
        for sidecars in [SidecarSupport::Plain, SidecarSupport::Native] {
            let mut rss = scale_set(true);
            let spec = rss.spec.template.spec.as_mut().unwrap();
            let daemon = Container {
                name: name.into(),
                image: Some(image.into()),
                ..Container::default()
            };
            if as_init {
                spec.init_containers = Some(vec![daemon]);
            } else {
                spec.containers.push(daemon);
            }
            let before = spec.clone();
            let pod = build(&rss, sidecars);
            let after = spec_of(&pod);
            assert_eq!(
                names(&after.containers),
                names(&before.containers),
                "{name}"
            );
            assert_eq!(after.init_containers, before.init_containers, "{name}");
            assert_eq!(after.volumes, None, "{name}");
            assert_eq!(env_value(container(&pod, "runner"), "DOCKER_HOST"), None);
        }
    }
}

#[test]
fn docker_cli_image_is_not_mistaken_for_dind() {
    let mut rss = scale_set(true);
    rss.spec
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers
        .push(Container {
            name: "cli".into(),
            image: Some("docker:27-cli".into()),
            ..Container::default()
        });
    let pod = build(&rss, SidecarSupport::Plain);
    assert_eq!(names(&spec_of(&pod).containers), ["runner", "cli", "dind"]);
}

#[test]
fn template_volumes_mounts_and_env_win() {
    let mut rss = scale_set(true);
    let spec = rss.spec.template.spec.as_mut().unwrap();
    spec.volumes = Some(vec![Volume {
        name: "work".into(),
        ephemeral: Some(EphemeralVolumeSource::default()),
        ..Volume::default()
    }]);
    spec.containers[0].env = Some(vec![EnvVar {
        name: "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS".into(),
        value: Some("300".into()),
        ..EnvVar::default()
    }]);
    spec.containers[0].volume_mounts = Some(vec![VolumeMount {
        name: "work".into(),
        mount_path: "/home/runner/_work".into(),
        ..VolumeMount::default()
    }]);
    let pod = build(&rss, SidecarSupport::Plain);
    assert_eq!(volume_names(&pod), ["work", "dind-sock", "dind-externals"]);
    assert!(
        spec_of(&pod).volumes.as_ref().unwrap()[0]
            .ephemeral
            .is_some()
    );
    let runner = container(&pod, "runner");
    assert_eq!(
        env_value(runner, "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS"),
        Some("300")
    );
    assert_eq!(
        mounts(runner),
        [("work", "/home/runner/_work"), ("dind-sock", "/var/run")]
    );
}

// --- JIT secret ---------------------------------------------------------------

fn created(mut pod: Pod) -> Pod {
    pod.metadata.uid = Some("pod-uid-9".into());
    pod
}

#[test]
fn jit_secret_is_owned_by_the_pod() {
    let pod = created(build(&scale_set(true), SidecarSupport::Plain));
    let secret = jit_secret(&pod, "eyJqaXQiOiJ4In0=").unwrap();
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("arm-runner-abcde-jit")
    );
    assert_eq!(secret.metadata.namespace.as_deref(), Some("ci"));
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str()
        ),
        ("v1", "Pod", "arm-runner-abcde", "pod-uid-9")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        secret.data.as_ref().unwrap()["jitConfig"],
        ByteString(b"eyJqaXQiOiJ4In0=".to_vec())
    );
    assert_eq!(secret.immutable, Some(true));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let labels = secret.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "runway");
    assert_eq!(labels["actions.runway.dev/scale-set"], "arm");
    assert!(!labels.contains_key("team"));
}

#[test]
fn jit_secret_follows_a_custom_name() {
    let rss = scale_set(false);
    let pod = created(
        RunnerPod::new(&rss, "r2")
            .with_jit_secret("s2")
            .build()
            .unwrap(),
    );
    assert_eq!(
        jit_secret(&pod, "x").unwrap().metadata.name.as_deref(),
        Some("s2")
    );
}

#[test]
fn jit_secret_needs_a_created_pod() {
    let pod = build(&scale_set(false), SidecarSupport::Plain);
    assert_eq!(
        jit_secret(&pod, "x"),
        Err(PodError::PodNotCreated {
            pod: "arm-runner-abcde".into()
        })
    );
    let mut foreign = created(Pod::default());
    foreign.metadata.name = Some("other".into());
    assert_eq!(
        jit_secret(&foreign, "x"),
        Err(PodError::NoJitSecretRef {
            pod: "other".into()
        })
    );
}

// --- template hash --------------------------------------------------------------

#[test]
fn template_hash_is_stable_and_hex() {
    let rss = scale_set(true);
    let a = template_hash(&rss.spec);
    assert_eq!(a, template_hash(&rss.clone().spec));
    assert_eq!(a.len(), 16);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn template_hash_follows_what_shapes_the_pod() {
    let base = scale_set(true).spec;
    let hash = template_hash(&base);
    let mut changed = base.clone();
    changed.template.spec.as_mut().unwrap().containers[0].image = Some("other:1".into());
    assert_ne!(template_hash(&changed), hash);
    let mut changed = base.clone();
    changed.container_mode = None;
    assert_ne!(template_hash(&changed), hash);
    let mut changed = base.clone();
    changed.service_account_name = Some("other".into());
    assert_ne!(template_hash(&changed), hash);
    // Scaling limits do not touch the pods.
    let mut same = base.clone();
    same.max_runners = Some(100);
    same.min_runners = Some(3);
    same.runner_scale_set_labels = vec!["x".into()];
    assert_eq!(template_hash(&same), hash);
}

#[test]
fn outdated_compares_hashes_not_live_specs() {
    let rss = scale_set(true);
    let mut pod = build(&rss, SidecarSupport::Plain);
    assert!(!is_outdated(&pod, &rss.spec));
    // A webhook mutating the live pod does not make it outdated.
    pod.spec.as_mut().unwrap().containers[0]
        .env
        .get_or_insert_with(Vec::new)
        .push(EnvVar {
            name: "AWS_ROLE_ARN".into(),
            value: Some("arn:aws:iam::1:role/r".into()),
            ..EnvVar::default()
        });
    assert!(!is_outdated(&pod, &rss.spec));
    let mut changed = rss.spec.clone();
    changed.template.spec.as_mut().unwrap().node_selector =
        Some(BTreeMap::from([("arch".into(), "arm64".into())]));
    assert!(is_outdated(&pod, &changed));
    pod.metadata.annotations = None;
    assert!(is_outdated(&pod, &rss.spec));
}

// --- busy and IRSA -----------------------------------------------------------------

#[test]
fn busy_marking() {
    let mut pod = build(&scale_set(false), SidecarSupport::Plain);
    assert!(!is_busy(&pod));
    mark_busy(&mut pod.metadata);
    assert!(is_busy(&pod));
    let annotations = pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations["actions.runway.dev/busy"], "true");
    assert_eq!(annotations["karpenter.sh/do-not-disrupt"], "true");
    assert_eq!(annotations["note"], "x", "other annotations stay");
    let mut bare = ObjectMeta::default();
    mark_busy(&mut bare);
    assert_eq!(bare.annotations, Some(busy_annotations()));
}

#[test]
fn irsa_detection() {
    let pod = build(&scale_set(false), SidecarSupport::Plain);
    assert!(!has_irsa(&pod));
    assert!(!has_irsa(&Pod::default()));

    let mut with_env = pod.clone();
    with_env.spec.as_mut().unwrap().containers[0]
        .env
        .get_or_insert_with(Vec::new)
        .push(EnvVar {
            name: "AWS_ROLE_ARN".into(),
            value: Some("arn:aws:iam::111122223333:role/base".into()),
            ..EnvVar::default()
        });
    assert!(has_irsa(&with_env));

    let mut with_volume = pod.clone();
    with_volume.spec.as_mut().unwrap().volumes = Some(vec![Volume {
        name: "aws-iam-token".into(),
        ..Volume::default()
    }]);
    assert!(has_irsa(&with_volume));

    // The role on another container only (runner skipped) is not enough.
    let mut other = pod.clone();
    other.spec.as_mut().unwrap().containers.push(Container {
        name: "side".into(),
        env: Some(vec![EnvVar {
            name: "AWS_ROLE_ARN".into(),
            value: Some("arn".into()),
            ..EnvVar::default()
        }]),
        ..Container::default()
    });
    assert!(!has_irsa(&other));
}

// --- the Kubernetes-actions executor -------------------------------------------------

const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn kube_actions() -> KubeActionsExecutor {
    KubeActionsExecutor {
        allowlist_config_map: "ci-kube-actions".into(),
        ..KubeActionsExecutor::default()
    }
}

fn with_executor(dind: bool) -> RunnerScaleSet {
    let mut rss = scale_set(dind);
    rss.spec.kube_actions = Some(kube_actions());
    rss
}

fn try_build(rss: &RunnerScaleSet) -> Result<Pod, PodError> {
    RunnerPod::new(rss, "arm-runner-abcde")
        .with_sidecar_support(SidecarSupport::Plain)
        .build()
}

fn field_path<'c>(c: &'c Container, name: &str) -> Option<&'c str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.as_str())
}

fn volume<'p>(pod: &'p Pod, name: &str) -> &'p Volume {
    spec_of(pod)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// Every container of the pod but the executor: none may see a token.
fn assert_only_the_executor_holds_a_token(pod: &Pod) {
    let spec = spec_of(pod);
    assert_eq!(spec.automount_service_account_token, Some(false));
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let token_mounts: Vec<_> = mounts(c)
            .into_iter()
            .filter(|(name, path)| {
                *name == "runway-kube-api" || std::path::Path::new(path).starts_with(TOKEN_DIR)
            })
            .collect();
        if c.name == "runway-executor" {
            assert_eq!(token_mounts, [("runway-kube-api", TOKEN_DIR)]);
        } else {
            assert!(token_mounts.is_empty(), "{}: {token_mounts:?}", c.name);
        }
    }
}

fn assert_executor_wiring(pod: &Pod) {
    assert_only_the_executor_holds_a_token(pod);
    let executor = container(pod, "runway-executor");
    assert_eq!(executor.image.as_deref(), Some(RUNNER_IMAGE));
    assert_eq!(
        executor.command.as_deref().unwrap(),
        [
            "runway",
            "serve",
            "--local",
            "/var/run/runway/kube.sock",
            "--allowlist",
            "/etc/runway/kube-actions/allowlist.yaml"
        ]
    );
    assert_eq!(
        field_path(executor, "RUNWAY_NAMESPACE"),
        Some("metadata.namespace")
    );
    assert_eq!(
        field_path(executor, "RUNWAY_RUNNER_NAME"),
        Some("metadata.name")
    );
    assert_eq!(
        mounts(executor),
        [
            ("runway-kube-api", TOKEN_DIR),
            ("runway-executor", "/var/run/runway"),
            ("runway-kube-actions", "/etc/runway/kube-actions")
        ]
    );
    let read_only: Vec<_> = executor
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.read_only)
        .collect();
    assert_eq!(read_only, [Some(true), None, Some(true)]);
    let security = executor.security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert_eq!(security.privileged, None);

    let runner = container(pod, "runner");
    assert!(mounts(runner).contains(&("runway-executor", "/var/run/runway")));
    assert_eq!(
        env_value(runner, "RUNWAY_KUBE_EXECUTOR"),
        Some("/var/run/runway/kube.sock")
    );
    assert_eq!(
        field_path(runner, "RUNWAY_NAMESPACE"),
        Some("metadata.namespace")
    );
    assert_eq!(
        field_path(runner, "RUNWAY_RUNNER_NAME"),
        Some("metadata.name")
    );

    let sources = volume(pod, "runway-kube-api")
        .projected
        .as_ref()
        .unwrap()
        .sources
        .as_ref()
        .unwrap();
    let token = sources[0].service_account_token.as_ref().unwrap();
    assert_eq!(
        (
            token.path.as_str(),
            token.expiration_seconds,
            &token.audience
        ),
        ("token", Some(3607), &None)
    );
    let ca = sources[1].config_map.as_ref().unwrap();
    assert_eq!(ca.name, "kube-root-ca.crt");
    let ca_items = ca.items.as_ref().unwrap();
    assert_eq!(
        (ca_items[0].key.as_str(), ca_items[0].path.as_str()),
        ("ca.crt", "ca.crt")
    );
    let namespace = &sources[2]
        .downward_api
        .as_ref()
        .unwrap()
        .items
        .as_ref()
        .unwrap()[0];
    assert_eq!(namespace.path, "namespace");
    assert_eq!(
        namespace.field_ref.as_ref().unwrap().field_path,
        "metadata.namespace"
    );
    assert_eq!(sources.len(), 3);
    assert!(volume(pod, "runway-executor").empty_dir.is_some());
    let allowlist = volume(pod, "runway-kube-actions")
        .config_map
        .as_ref()
        .unwrap();
    assert_eq!(allowlist.name, "ci-kube-actions");
}

#[test]
fn executor_on_1_20_is_a_plain_container() {
    let pod = build(
        &with_executor(false),
        SidecarSupport::for_version("1", "20"),
    );
    assert_eq!(
        names(&spec_of(&pod).containers),
        ["runner", "runway-executor"]
    );
    assert!(init_names(&pod).is_empty());
    assert_eq!(container(&pod, "runway-executor").restart_policy, None);
    assert_eq!(
        volume_names(&pod),
        ["runway-kube-api", "runway-executor", "runway-kube-actions"]
    );
    assert_executor_wiring(&pod);
}

#[test]
fn executor_on_1_29_is_the_first_native_sidecar() {
    let mut rss = with_executor(false);
    rss.spec.template.spec.as_mut().unwrap().init_containers = Some(vec![Container {
        name: "setup".into(),
        image: Some("busybox".into()),
        ..Container::default()
    }]);
    let pod = build(&rss, SidecarSupport::for_version("1", "29"));
    assert_eq!(names(&spec_of(&pod).containers), ["runner"]);
    assert_eq!(init_names(&pod), ["runway-executor", "setup"]);
    assert_eq!(
        container(&pod, "runway-executor").restart_policy.as_deref(),
        Some("Always")
    );
    assert_executor_wiring(&pod);
    assert_eq!(spec_of(&pod).restart_policy.as_deref(), Some("Never"));
}

#[test]
fn executor_beside_dind_in_both_shapes() {
    let plain = build(&with_executor(true), SidecarSupport::Plain);
    assert_eq!(
        names(&spec_of(&plain).containers),
        ["runner", "dind", "runway-executor"]
    );
    assert_eq!(init_names(&plain), ["init-dind-externals"]);
    let native = build(&with_executor(true), SidecarSupport::Native);
    assert_eq!(names(&spec_of(&native).containers), ["runner"]);
    assert_eq!(
        init_names(&native),
        ["runway-executor", "init-dind-externals", "dind"]
    );
    for pod in [&plain, &native] {
        assert_executor_wiring(pod);
        // The socket directory sits inside dind's /var/run volume: both
        // mounts, the deeper one a volume of its own.
        assert_eq!(
            mounts(container(pod, "runner")),
            [
                ("work", "/home/runner/_work"),
                ("dind-sock", "/var/run"),
                ("runway-executor", "/var/run/runway")
            ]
        );
        assert_eq!(
            volume_names(pod),
            [
                "work",
                "dind-sock",
                "dind-externals",
                "runway-kube-api",
                "runway-executor",
                "runway-kube-actions"
            ]
        );
        assert!(
            !mounts(container(pod, "dind"))
                .iter()
                .any(|(n, _)| n.starts_with("runway"))
        );
    }
}

#[test]
fn executor_image_pull_policy_and_resources() {
    let mut rss = with_executor(false);
    rss.spec.template.spec.as_mut().unwrap().containers[0].image_pull_policy = Some("Never".into());
    let pod = build(&rss, SidecarSupport::Plain);
    let executor = container(&pod, "runway-executor");
    assert_eq!(executor.image.as_deref(), Some(RUNNER_IMAGE));
    assert_eq!(executor.image_pull_policy.as_deref(), Some("Never"));
    assert_eq!(executor.resources, None);

    // An image of its own does not borrow the runner's pull policy.
    let resources = ResourceRequirements {
        limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
        ..ResourceRequirements::default()
    };
    rss.spec.kube_actions = Some(KubeActionsExecutor {
        image: Some("ghcr.io/acme/runway:1.2".into()),
        resources: Some(resources.clone()),
        ..kube_actions()
    });
    let pod = build(&rss, SidecarSupport::Plain);
    let executor = container(&pod, "runway-executor");
    assert_eq!(executor.image.as_deref(), Some("ghcr.io/acme/runway:1.2"));
    assert_eq!(executor.image_pull_policy, None);
    assert_eq!(executor.resources.as_ref(), Some(&resources));

    rss.spec.kube_actions.as_mut().unwrap().image_pull_policy = Some("IfNotPresent".into());
    let pod = build(&rss, SidecarSupport::Plain);
    let executor = container(&pod, "runway-executor");
    assert_eq!(executor.image_pull_policy.as_deref(), Some("IfNotPresent"));
    // The runner keeps its own.
    assert_eq!(
        container(&pod, "runner").image_pull_policy.as_deref(),
        Some("Never")
    );
}

#[test]
fn executor_gets_the_api_address_the_template_sets_literally() {
    let literal = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    };
    let mut rss = with_executor(false);
    rss.spec.template.spec.as_mut().unwrap().containers[0].env = Some(vec![
        literal("KUBERNETES_SERVICE_HOST", "10.200.0.1"),
        literal("KUBERNETES_SERVICE_PORT", "6443"),
        literal("HTTPS_PROXY", "http://proxy:3128"),
        // A stale executor address from the template is replaced.
        literal("RUNWAY_KUBE_EXECUTOR", "/tmp/elsewhere.sock"),
    ]);
    let pod = build(&rss, SidecarSupport::Plain);
    let executor = container(&pod, "runway-executor");
    let names: Vec<_> = executor
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "RUNWAY_NAMESPACE",
            "RUNWAY_RUNNER_NAME",
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT"
        ]
    );
    assert_eq!(
        env_value(executor, "KUBERNETES_SERVICE_HOST"),
        Some("10.200.0.1")
    );
    assert_eq!(env_value(executor, "KUBERNETES_SERVICE_PORT"), Some("6443"));
    let runner = container(&pod, "runner");
    assert_eq!(
        env_value(runner, "RUNWAY_KUBE_EXECUTOR"),
        Some("/var/run/runway/kube.sock")
    );
    let executor_vars = runner
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == "RUNWAY_KUBE_EXECUTOR")
        .count();
    assert_eq!(executor_vars, 1);

    // Only literal values: a reference the executor could not resolve the
    // same way is not copied.
    rss.spec.template.spec.as_mut().unwrap().containers[0].env = Some(vec![EnvVar {
        name: "KUBERNETES_SERVICE_HOST".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.hostIP".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }]);
    let pod = build(&rss, SidecarSupport::Plain);
    assert_eq!(
        container(&pod, "runway-executor")
            .env
            .as_ref()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn executor_refuses_templates_that_hand_out_a_token() {
    let token_mount = |path: &str| VolumeMount {
        name: "creds".into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    };
    let side = |mounts: Vec<VolumeMount>| Container {
        name: "side".into(),
        image: Some("busybox".into()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    type Edit = Box<dyn Fn(&mut PodSpec)>;
    let refused: Vec<(&str, Edit, PodError)> = vec![
        (
            "runner mounts the token path",
            Box::new(move |s: &mut PodSpec| {
                s.containers[0].volume_mounts = Some(vec![token_mount(TOKEN_DIR)]);
            }),
            PodError::TokenMount {
                container: "runner".into(),
                path: TOKEN_DIR.into(),
            },
        ),
        (
            "a sidecar mounts a file under it, spelled oddly",
            Box::new(move |s: &mut PodSpec| {
                s.containers.push(side(vec![token_mount(
                    "/var/run/secrets//kubernetes.io/./x/../serviceaccount/token",
                )]));
            }),
            PodError::TokenMount {
                container: "side".into(),
                path: "/var/run/secrets//kubernetes.io/./x/../serviceaccount/token".into(),
            },
        ),
        (
            "an init container, trailing slash",
            Box::new(move |s: &mut PodSpec| {
                s.init_containers = Some(vec![side(vec![token_mount(
                    "/var/run/secrets/kubernetes.io/serviceaccount/",
                )])]);
            }),
            PodError::TokenMount {
                container: "side".into(),
                path: "/var/run/secrets/kubernetes.io/serviceaccount/".into(),
            },
        ),
        (
            "a projected token volume",
            Box::new(|s: &mut PodSpec| {
                s.volumes = Some(vec![Volume {
                    name: "my-token".into(),
                    projected: Some(ProjectedVolumeSource {
                        sources: Some(vec![VolumeProjection {
                            service_account_token: Some(ServiceAccountTokenProjection {
                                path: "t".into(),
                                ..ServiceAccountTokenProjection::default()
                            }),
                            ..VolumeProjection::default()
                        }]),
                        ..ProjectedVolumeSource::default()
                    }),
                    ..Volume::default()
                }]);
            }),
            PodError::TokenVolume {
                volume: "my-token".into(),
            },
        ),
        (
            "a volume named like the executor's",
            Box::new(|s: &mut PodSpec| {
                s.volumes = Some(vec![Volume {
                    name: "runway-kube-api".into(),
                    ..Volume::default()
                }]);
            }),
            PodError::ReservedName {
                what: "volume",
                name: "runway-kube-api".into(),
            },
        ),
        (
            "a container named like the executor",
            Box::new(move |s: &mut PodSpec| {
                s.containers.push(Container {
                    name: "runway-executor".into(),
                    ..side(vec![])
                });
            }),
            PodError::ReservedName {
                what: "container",
                name: "runway-executor".into(),
            },
        ),
    ];
    for (case, edit, expected) in refused {
        let mut rss = with_executor(false);
        edit(rss.spec.template.spec.as_mut().unwrap());
        let error = try_build(&rss).expect_err(case);
        assert_eq!(error, expected, "{case}");
        let text = error.to_string();
        assert!(text.contains("spec.kubeActions"), "{case}: {text}");
        // Without the executor the same template builds as before.
        rss.spec.kube_actions = None;
        assert!(try_build(&rss).is_ok(), "{case}");
    }

    // Neighbours of the token path are not the token path.
    let mut rss = with_executor(false);
    rss.spec.template.spec.as_mut().unwrap().containers[0].volume_mounts = Some(vec![
        token_mount("/var/run/secrets/eks.amazonaws.com/serviceaccount"),
        VolumeMount {
            name: "other".into(),
            ..token_mount("/var/run/secrets/kubernetes.io/serviceaccountx")
        },
    ]);
    let pod = try_build(&rss).expect("neighbouring paths build");
    assert_only_the_executor_holds_a_token(&pod);
}

#[test]
fn a_template_that_asks_for_the_token_gets_none() {
    let mut rss = with_executor(false);
    rss.spec
        .template
        .spec
        .as_mut()
        .unwrap()
        .automount_service_account_token = Some(true);
    let pod = build(&rss, SidecarSupport::Plain);
    assert_eq!(spec_of(&pod).automount_service_account_token, Some(false));
}

#[test]
fn without_kube_actions_nothing_of_the_executor() {
    for dind in [false, true] {
        let pod = build(&scale_set(dind), SidecarSupport::Native);
        let spec = spec_of(&pod);
        assert_eq!(spec.automount_service_account_token, None);
        assert!(!volume_names(&pod).iter().any(|v| v.starts_with("runway")));
        let runner = container(&pod, "runner");
        assert!(env_value(runner, "RUNWAY_KUBE_EXECUTOR").is_none());
        assert!(!init_names(&pod).contains(&"runway-executor"));
        assert!(!names(&spec.containers).contains(&"runway-executor"));
    }
}

#[test]
fn template_hash_without_kube_actions_is_what_it_was() {
    // Computed by the builder before spec.kubeActions existed: runners of
    // scale sets without it are not replaced by the upgrade.
    assert_eq!(template_hash(&scale_set(false).spec), "9f58d602b19d8949");
    assert_eq!(template_hash(&scale_set(true).spec), "03c7dace7c49c653");
}

#[test]
fn template_hash_follows_kube_actions() {
    let base = with_executor(false).spec;
    let hash = template_hash(&base);
    assert_ne!(hash, template_hash(&scale_set(false).spec));
    let edits: [fn(&mut KubeActionsExecutor); 4] = [
        |k| k.allowlist_config_map = "other".into(),
        |k| k.image = Some("ghcr.io/acme/runway:2".into()),
        |k| k.image_pull_policy = Some("Always".into()),
        |k| {
            k.resources = Some(ResourceRequirements {
                requests: Some(BTreeMap::from([("cpu".into(), Quantity("10m".into()))])),
                ..ResourceRequirements::default()
            })
        },
    ];
    for (i, edit) in edits.into_iter().enumerate() {
        let mut changed = base.clone();
        edit(changed.kube_actions.as_mut().unwrap());
        assert_ne!(template_hash(&changed), hash, "edit {i}");
    }
}
