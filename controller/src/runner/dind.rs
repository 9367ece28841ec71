//! Docker-in-Docker for `containerMode: {type: dind}`: the same pod shape as
//! ARC's `gha-runner-scale-set` chart, so that ARC users' jobs see the same
//! paths and variables.
//!
//! On Kubernetes 1.29+ the Docker daemon is a native sidecar (an init
//! container with `restartPolicy: Always`): it starts before the runner, is
//! ready once `docker info` answers, and stops after the runner exits, so the
//! pod completes. Older servers get a plain second container (the runner
//! waits for the socket with `RUNNER_WAIT_FOR_DOCKER_IN_SECONDS`).

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, ExecAction, PodSpec, Probe, SecurityContext, Volume,
};

use super::parts::{env, mount};
use super::pod::SidecarSupport;

pub(super) const DIND_CONTAINER: &str = "dind";
pub(super) const DIND_IMAGE: &str = "docker:dind";
pub(super) const EXTERNALS_INIT_CONTAINER: &str = "init-dind-externals";
const DOCKER_SOCK: &str = "unix:///var/run/docker.sock";
const WORK_DIR: &str = "/home/runner/_work";
const EXTERNALS_DIR: &str = "/home/runner/externals";
const EXTERNALS_COPY_DIR: &str = "/home/runner/tmpDir";

/// A template that already sets up dind (as ARC users often wrote by hand
/// before `containerMode` existed) is used as is: a second daemon would fight
/// the first one over the socket.
pub(super) fn has_hand_written_dind(spec: &PodSpec) -> bool {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| {
            c.name == DIND_CONTAINER
                || c.image
                    .as_deref()
                    .is_some_and(|i| i.starts_with("docker:") && i.contains("dind"))
        })
}

/// Adds the dind containers, volumes, mounts and environment to `spec`.
/// What the template already has (a `work` volume backed by an ephemeral
/// PVC, a `DOCKER_HOST` of its own) wins.
pub(super) fn add(spec: &mut PodSpec, runner_index: usize, sidecars: SidecarSupport) {
    let runner_image = spec.containers[runner_index].image.clone();

    let runner = &mut spec.containers[runner_index];
    add_env(runner, "DOCKER_HOST", DOCKER_SOCK);
    add_env(runner, "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS", "120");
    add_mount(runner, "work", WORK_DIR);
    add_mount(runner, "dind-sock", "/var/run");

    for name in ["work", "dind-sock", "dind-externals"] {
        add_empty_dir(spec, name);
    }

    let externals = Container {
        name: EXTERNALS_INIT_CONTAINER.into(),
        image: runner_image,
        command: Some(vec!["cp".into()]),
        args: Some(vec![
            "-r".into(),
            format!("{EXTERNALS_DIR}/."),
            format!("{EXTERNALS_COPY_DIR}/"),
        ]),
        volume_mounts: Some(vec![mount("dind-externals", EXTERNALS_COPY_DIR, false)]),
        ..Container::default()
    };
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    init.push(externals);

    let daemon = daemon_container();
    match sidecars {
        SidecarSupport::Native => init.push(Container {
            restart_policy: Some("Always".into()),
            startup_probe: Some(Probe {
                exec: Some(ExecAction {
                    command: Some(vec!["docker".into(), "info".into()]),
                }),
                initial_delay_seconds: Some(0),
                period_seconds: Some(5),
                // 2 minutes, the same as the runner's wait for Docker.
                failure_threshold: Some(24),
                ..Probe::default()
            }),
            ..daemon
        }),
        SidecarSupport::Plain => spec.containers.push(daemon),
    }
}

fn daemon_container() -> Container {
    Container {
        name: DIND_CONTAINER.into(),
        image: Some(DIND_IMAGE.into()),
        args: Some(vec![
            "dockerd".into(),
            format!("--host={DOCKER_SOCK}"),
            // The runner image's `docker` group: job steps run as `runner`
            // and need the socket without sudo.
            "--group=$(DOCKER_GROUP_GID)".into(),
        ]),
        env: Some(vec![env("DOCKER_GROUP_GID", "123")]),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            mount("work", WORK_DIR, false),
            mount("dind-sock", "/var/run", false),
            mount("dind-externals", EXTERNALS_DIR, false),
        ]),
        ..Container::default()
    }
}

fn add_env(container: &mut Container, name: &str, value: &str) {
    let envs = container.env.get_or_insert_with(Vec::new);
    if !envs.iter().any(|e| e.name == name) {
        envs.push(env(name, value));
    }
}

fn add_mount(container: &mut Container, name: &str, path: &str) {
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    if !mounts
        .iter()
        .any(|m| m.name == name || m.mount_path == path)
    {
        mounts.push(mount(name, path, false));
    }
}

fn add_empty_dir(spec: &mut PodSpec, name: &str) {
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == name) {
        volumes.push(Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
}
