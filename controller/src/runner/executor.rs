//! The Kubernetes-actions executor beside the job, for scale sets with
//! `spec.kubeActions`: `runway kube ...` in a job step sends its request over
//! a Unix socket to a `runway-executor` container (`runway serve --local`),
//! which enforces the allowlist and alone holds a ServiceAccount token.
//!
//! Invariant: no other container of the pod gets a token. The pod opts out
//! of the automounted one, the executor gets a projected token volume of its
//! own, and a template that mounts something at the token path or projects a
//! token itself is refused (it would hand job steps the credential the
//! executor exists to keep from them).
//!
//! Like dind, the executor is a native sidecar (first init container,
//! `restartPolicy: Always`) on 1.29+, so that it runs before the runner and
//! stops after it, and a plain container on older servers.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, DownwardAPIProjection,
    DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath,
    ObjectFieldSelector, PodSpec, ProjectedVolumeSource, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeProjection,
};

use super::parts::{env, mount};
use super::pod::{PodError, SidecarSupport};
use crate::crd::KubeActionsExecutor;

pub(super) const EXECUTOR_CONTAINER: &str = "runway-executor";
/// Projected ServiceAccount token, cluster CA and namespace.
pub(super) const KUBE_API_VOLUME: &str = "runway-kube-api";
/// The directory holding the socket, shared by the runner and the executor.
pub(super) const SOCKET_VOLUME: &str = "runway-executor";
pub(super) const ALLOWLIST_VOLUME: &str = "runway-kube-actions";
pub(super) const SOCKET_DIR: &str = "/var/run/runway";
pub(super) const SOCKET_PATH: &str = "/var/run/runway/kube.sock";
pub(super) const ALLOWLIST_DIR: &str = "/etc/runway/kube-actions";
const ALLOWLIST_FILE: &str = "/etc/runway/kube-actions/allowlist.yaml";
/// Where client libraries (and `runway`'s in-cluster config) look for the
/// ServiceAccount token; also where the API server's admission mounts it.
pub(super) const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The kubelet refreshes the token at 80% of its life; 3607 s is what the
/// ServiceAccount admission plugin itself asks for (an hour and a bit, so
/// that the API server can tell its own volumes apart).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The runner finds the executor here; `runway kube` sends to it when set.
pub(super) const KUBE_EXECUTOR_ENV: &str = "RUNWAY_KUBE_EXECUTOR";
pub(super) const NAMESPACE_ENV: &str = "RUNWAY_NAMESPACE";
pub(super) const RUNNER_NAME_ENV: &str = "RUNWAY_RUNNER_NAME";
/// Set literally on the runner when the pod cannot use the `kubernetes`
/// Service (the sandbox's node runs pods with `hostNetwork`); the executor
/// is the one that talks to the API server, so it needs them.
const API_ADDRESS_ENV: [&str; 2] = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"];

/// Adds the executor to `spec` (built from the template, runner at
/// `runner_index`), after refusing templates that would leave a token to
/// another container or that use the executor's names.
pub(super) fn add(
    spec: &mut PodSpec,
    runner_index: usize,
    config: &KubeActionsExecutor,
    sidecars: SidecarSupport,
) -> Result<(), PodError> {
    check_template(spec)?;

    spec.automount_service_account_token = Some(false);
    let executor = executor_container(&spec.containers[runner_index], config);

    let runner = &mut spec.containers[runner_index];
    let mounts = runner.volume_mounts.get_or_insert_with(Vec::new);
    mounts.retain(|m| m.mount_path != SOCKET_DIR);
    mounts.push(mount(SOCKET_VOLUME, SOCKET_DIR, false));
    set_env(runner, env(KUBE_EXECUTOR_ENV, SOCKET_PATH));
    set_env(runner, field(NAMESPACE_ENV, "metadata.namespace"));
    set_env(runner, field(RUNNER_NAME_ENV, "metadata.name"));

    spec.volumes.get_or_insert_with(Vec::new).extend([
        kube_api_volume(),
        Volume {
            name: SOCKET_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        Volume {
            name: ALLOWLIST_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config.allowlist_config_map.clone(),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]);

    match sidecars {
        SidecarSupport::Native => spec.init_containers.get_or_insert_with(Vec::new).insert(
            0,
            Container {
                restart_policy: Some("Always".into()),
                ..executor
            },
        ),
        SidecarSupport::Plain => spec.containers.push(executor),
    }
    Ok(())
}

/// Refuses what would give a container other than the executor a token,
/// and the executor's own names. Also run by `crd::validate`, so that the
/// scale set shows the problem before any pod is built.
pub(crate) fn check_template(spec: &PodSpec) -> Result<(), PodError> {
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        if container.name == EXECUTOR_CONTAINER {
            return Err(PodError::ReservedName {
                what: "container",
                name: container.name.clone(),
            });
        }
        if let Some(m) = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| is_token_path(&m.mount_path))
        {
            return Err(PodError::TokenMount {
                container: container.name.clone(),
                path: m.mount_path.clone(),
            });
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if [KUBE_API_VOLUME, SOCKET_VOLUME, ALLOWLIST_VOLUME].contains(&volume.name.as_str()) {
            return Err(PodError::ReservedName {
                what: "volume",
                name: volume.name.clone(),
            });
        }
        let projects_token = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .any(|s| s.service_account_token.is_some());
        if projects_token {
            return Err(PodError::TokenVolume {
                volume: volume.name.clone(),
            });
        }
    }
    Ok(())
}

/// The token directory or anything under it, however the path is spelled
/// (`//`, `/./`, `..`, a trailing `/`).
fn is_token_path(mount_path: &str) -> bool {
    let mut normal = PathBuf::new();
    for component in Path::new(mount_path).components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal.starts_with(TOKEN_DIR)
}

fn executor_container(runner: &Container, config: &KubeActionsExecutor) -> Container {
    let (image, pull_policy) = match config.image.as_deref().filter(|i| !i.trim().is_empty()) {
        Some(image) => (Some(image.to_string()), config.image_pull_policy.clone()),
        None => (
            runner.image.clone(),
            config
                .image_pull_policy
                .clone()
                .or_else(|| runner.image_pull_policy.clone()),
        ),
    };
    let mut env = vec![
        field(NAMESPACE_ENV, "metadata.namespace"),
        field(RUNNER_NAME_ENV, "metadata.name"),
    ];
    env.extend(
        runner
            .env
            .iter()
            .flatten()
            .filter(|e| API_ADDRESS_ENV.contains(&e.name.as_str()) && e.value.is_some())
            .cloned(),
    );
    Container {
        name: EXECUTOR_CONTAINER.into(),
        image,
        image_pull_policy: pull_policy,
        command: Some(
            [
                "runway",
                "serve",
                "--local",
                SOCKET_PATH,
                "--allowlist",
                ALLOWLIST_FILE,
            ]
            .map(String::from)
            .to_vec(),
        ),
        env: Some(env),
        resources: config.resources.clone(),
        volume_mounts: Some(vec![
            mount(KUBE_API_VOLUME, TOKEN_DIR, true),
            mount(SOCKET_VOLUME, SOCKET_DIR, false),
            mount(ALLOWLIST_VOLUME, ALLOWLIST_DIR, true),
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// What the ServiceAccount admission plugin would mount, for the executor
/// alone: a bound token, the cluster CA and the namespace.
fn kube_api_volume() -> Volume {
    Volume {
        name: KUBE_API_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                        audience: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(object_field("metadata.namespace")),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
            default_mode: None,
        }),
        ..Volume::default()
    }
}

fn object_field(path: &str) -> ObjectFieldSelector {
    ObjectFieldSelector {
        api_version: Some("v1".into()),
        field_path: path.into(),
    }
}

fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(object_field(path)),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The executor's wiring wins over a template value of the same name: a
/// stale or foreign address would send job steps elsewhere.
fn set_env(container: &mut Container, var: EnvVar) {
    let env = container.env.get_or_insert_with(Vec::new);
    env.retain(|e| e.name != var.name);
    env.push(var);
}
