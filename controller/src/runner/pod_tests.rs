use k8s_openapi::api::core::v1::{
    Container, EphemeralVolumeSource, PodTemplateSpec, Volume, VolumeMount,
};

use super::*;
use crate::crd::{ContainerMode, ContainerModeType};
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
