//! The small pieces the pod builder adds to a template's containers (dind,
//! the Kubernetes-actions executor): an environment variable with a value,
//! a volume mount.

use k8s_openapi::api::core::v1::{EnvVar, VolumeMount};

/// `name=value`.
pub(super) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// Volume `name` at `path`; `readOnly` set only when true, as kubectl
/// writes it.
pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}
