//! The runner pod builder and the helpers that read pods back.
//!
//! A pod is built once from the scale set's template and never updated: a
//! JIT config is used once, so a changed template means new runners, not
//! patched ones. Mutating webhooks (IRSA's above all) change pods on
//! admission, so live specs are never compared with the template; the pod
//! carries a hash of the inputs it was built from instead.
//!
//! Order of creation: the Pod first, then its JIT Secret owned by the pod
//! (the owner reference needs the pod's uid). The kubelet retries a missing
//! Secret until it appears, and garbage collection removes the Secret with
//! the pod: two writes, no cleanup of our own.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Pod, PodSpec, Secret, SecretKeySelector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::Resource;
use serde::Serialize;

use super::{
    BUSY_ANNOTATION, DO_NOT_DISRUPT_ANNOTATION, JIT_CONFIG_ENV, JIT_CONFIG_KEY, MANAGED_BY,
    MANAGED_BY_LABEL, REGISTRATION_FINALIZER, RUNNER_CONTAINER, RUNNER_ID_ANNOTATION,
    RUNNER_NAME_LABEL, SCALE_SET_LABEL, TEMPLATE_HASH_ANNOTATION, dind, executor,
};
use crate::crd::{RunnerScaleSet, RunnerScaleSetSpec};

/// Bumped whenever the builder changes the pods it makes, so that idle
/// runners built the old way are replaced like after a template change.
const POD_SHAPE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodError {
    #[error("RunnerScaleSet has no metadata.{field}; build runner pods only from stored objects")]
    ScaleSetNotStored { field: &'static str },
    #[error(
        "RunnerScaleSet {scale_set}: template.spec.containers has no container named \"runner\""
    )]
    NoRunnerContainer { scale_set: String },
    #[error("RunnerScaleSet {scale_set}: the \"runner\" container in template.spec has no image")]
    NoRunnerImage { scale_set: String },
    #[error(
        "runner name {name:?} is not usable as a pod name and label value (1-63 lowercase letters, digits and '-', starting and ending alphanumeric)"
    )]
    InvalidRunnerName { name: String },
    #[error("pod {pod:?} has no metadata.uid; create the pod before its JIT Secret")]
    PodNotCreated { pod: String },
    #[error("pod {pod:?} has no runner container reading {JIT_CONFIG_ENV} from a Secret")]
    NoJitSecretRef { pod: String },
    #[error(
        "template.spec container {container:?} mounts a volume at {path:?}, the ServiceAccount token's place; with spec.kubeActions only the runway-executor container may hold a token: remove the mount"
    )]
    TokenMount { container: String, path: String },
    #[error(
        "template.spec.volumes {volume:?} projects a serviceAccountToken; with spec.kubeActions only the runway-executor container may hold a token: remove the volume"
    )]
    TokenVolume { volume: String },
    #[error(
        "template.spec has a {what} named {name:?}, a name spec.kubeActions adds to runner pods: rename it"
    )]
    ReservedName { what: &'static str, name: String },
}

/// Whether the API server runs native sidecars (init containers with
/// `restartPolicy: Always`, on by default since 1.29).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarSupport {
    Native,
    /// Older servers: a sidecar is a plain container.
    Plain,
}

impl SidecarSupport {
    /// From `/version`'s `major` and `minor` (`"29+"` on EKS and GKE).
    /// Anything unreadable gets the plain shape, which every server runs.
    pub fn for_version(major: &str, minor: &str) -> Self {
        let number = |s: &str| -> Option<u32> {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        match (number(major), number(minor)) {
            (Some(major), Some(minor)) if (major, minor) >= (1, 29) => SidecarSupport::Native,
            _ => SidecarSupport::Plain,
        }
    }

    pub fn for_server(info: &Info) -> Self {
        Self::for_version(&info.major, &info.minor)
    }
}

/// Name of a runner's JIT Secret.
pub fn jit_secret_name(runner_name: &str) -> String {
    format!("{runner_name}-jit")
}

/// Builds the pod of one runner:
/// `RunnerPod::new(&scale_set, name).with_runner_id(id).with_sidecar_support(s).build()`.
///
/// Whether Docker-in-Docker is added follows the scale set's `containerMode`;
/// the sidecar support only decides its shape.
#[derive(Debug, Clone)]
pub struct RunnerPod<'a> {
    scale_set: &'a RunnerScaleSet,
    runner_name: String,
    runner_id: Option<i64>,
    jit_secret: Option<String>,
    sidecars: SidecarSupport,
}

impl<'a> RunnerPod<'a> {
    /// `runner_name` is the runner's name on GitHub and the pod's name.
    pub fn new(scale_set: &'a RunnerScaleSet, runner_name: impl Into<String>) -> Self {
        RunnerPod {
            scale_set,
            runner_name: runner_name.into(),
            runner_id: None,
            jit_secret: None,
            sidecars: SidecarSupport::Plain,
        }
    }

    /// The runner's id on GitHub (from the JIT config response).
    pub fn with_runner_id(mut self, id: i64) -> Self {
        self.runner_id = Some(id);
        self
    }

    /// The Secret holding the JIT config; [`jit_secret_name`] by default.
    pub fn with_jit_secret(mut self, secret_name: impl Into<String>) -> Self {
        self.jit_secret = Some(secret_name.into());
        self
    }

    pub fn with_sidecar_support(mut self, sidecars: SidecarSupport) -> Self {
        self.sidecars = sidecars;
        self
    }

    pub fn build(self) -> Result<Pod, PodError> {
        let rss = self.scale_set;
        let rss_name = rss
            .metadata
            .name
            .clone()
            .ok_or(PodError::ScaleSetNotStored { field: "name" })?;
        let namespace = rss
            .metadata
            .namespace
            .clone()
            .ok_or(PodError::ScaleSetNotStored { field: "namespace" })?;
        let owner = scale_set_owner(rss)?;
        if !is_label_value_name(&self.runner_name) {
            return Err(PodError::InvalidRunnerName {
                name: self.runner_name,
            });
        }

        let template = &rss.spec.template;
        let mut spec: PodSpec = template.spec.clone().unwrap_or_default();
        let runner_index = spec
            .containers
            .iter()
            .position(|c| c.name == RUNNER_CONTAINER)
            .ok_or_else(|| PodError::NoRunnerContainer {
                scale_set: rss_name.clone(),
            })?;
        if spec.containers[runner_index].image.is_none() {
            return Err(PodError::NoRunnerImage {
                scale_set: rss_name,
            });
        }

        let secret_name = self
            .jit_secret
            .unwrap_or_else(|| jit_secret_name(&self.runner_name));
        set_jit_env(&mut spec.containers[runner_index].env, &secret_name);
        // A JIT config registers one runner once: a restarted runner
        // container could not register again (ARC's zombie pods, #4588).
        spec.restart_policy = Some("Never".into());
        if let Some(account) = rss
            .spec
            .service_account_name
            .as_deref()
            .filter(|a| !a.is_empty())
        {
            spec.service_account_name = Some(account.to_string());
        }
        if rss.spec.is_dind() && !dind::has_hand_written_dind(&spec) {
            dind::add(&mut spec, runner_index, self.sidecars);
        }
        if let Some(config) = &rss.spec.kube_actions {
            executor::add(&mut spec, runner_index, config, self.sidecars)?;
        }

        let template_meta = template.metadata.clone().unwrap_or_default();
        let mut labels = template_meta.labels.unwrap_or_default();
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        labels.insert(SCALE_SET_LABEL.into(), rss_name);
        labels.insert(RUNNER_NAME_LABEL.into(), self.runner_name.clone());
        let mut annotations = template_meta.annotations.unwrap_or_default();
        annotations.insert(TEMPLATE_HASH_ANNOTATION.into(), template_hash(&rss.spec));
        if let Some(id) = self.runner_id {
            annotations.insert(RUNNER_ID_ANNOTATION.into(), id.to_string());
        }

        Ok(Pod {
            metadata: ObjectMeta {
                name: Some(self.runner_name),
                namespace: Some(namespace),
                labels: Some(labels),
                annotations: Some(annotations),
                finalizers: Some(vec![REGISTRATION_FINALIZER.into()]),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        })
    }
}

fn scale_set_owner(rss: &RunnerScaleSet) -> Result<OwnerReference, PodError> {
    if rss.metadata.uid.is_none() {
        return Err(PodError::ScaleSetNotStored { field: "uid" });
    }
    let owner = rss
        .controller_owner_ref(&())
        .ok_or(PodError::ScaleSetNotStored { field: "name" })?;
    // Foreground deletion of a scale set waits for its runners, which wait
    // for their jobs and their registration removal.
    Ok(OwnerReference {
        block_owner_deletion: Some(true),
        ..owner
    })
}

/// The runner reads the JIT config from the Secret; any value the template
/// set for the variable is replaced (it could only be a stale config).
fn set_jit_env(env: &mut Option<Vec<EnvVar>>, secret_name: &str) {
    let env = env.get_or_insert_with(Vec::new);
    env.retain(|e| e.name != JIT_CONFIG_ENV);
    env.push(EnvVar {
        name: JIT_CONFIG_ENV.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name.into(),
                key: JIT_CONFIG_KEY.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
}

/// The runner name is the pod name and a label value: the stricter of both.
fn is_label_value_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// The JIT config Secret of a created runner pod, owned by it.
pub fn jit_secret(pod: &Pod, encoded_jit_config: &str) -> Result<Secret, PodError> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod
        .metadata
        .uid
        .clone()
        .ok_or_else(|| PodError::PodNotCreated {
            pod: pod_name.clone(),
        })?;
    let secret_name = jit_secret_ref(pod).ok_or_else(|| PodError::NoJitSecretRef {
        pod: pod_name.clone(),
    })?;
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = [MANAGED_BY_LABEL, SCALE_SET_LABEL, RUNNER_NAME_LABEL]
        .into_iter()
        .filter_map(|k| pod_labels.get(k).map(|v| (k.to_string(), v.clone())))
        .collect();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name),
            namespace: pod.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: pod_name,
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        // Never changes; immutable Secrets are not watched by the kubelet.
        immutable: Some(true),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            JIT_CONFIG_KEY.to_string(),
            ByteString(encoded_jit_config.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}

fn jit_secret_ref(pod: &Pod) -> Option<String> {
    let runner = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == RUNNER_CONTAINER)?;
    runner
        .env
        .iter()
        .flatten()
        .find(|e| e.name == JIT_CONFIG_ENV)?
        .value_from
        .as_ref()?
        .secret_key_ref
        .as_ref()
        .map(|s| s.name.clone())
}

/// What the builder's output depends on, hashed.
#[derive(Serialize)]
struct HashInput<'a> {
    shape: u32,
    template: &'a k8s_openapi::api::core::v1::PodTemplateSpec,
    container_mode: &'a Option<crate::crd::ContainerMode>,
    service_account_name: &'a Option<String>,
    // Skipped when empty: pods without the executor keep their hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    kube_actions: Option<&'a crate::crd::KubeActionsExecutor>,
}

/// A stable hash (16 hex digits) of the scale set inputs a runner pod is
/// built from. FNV-1a over the canonical JSON: stable across Rust releases
/// and restarts (unlike `DefaultHasher`), and change detection needs no
/// cryptographic strength.
pub fn template_hash(spec: &RunnerScaleSetSpec) -> String {
    let input = HashInput {
        shape: POD_SHAPE_VERSION,
        template: &spec.template,
        container_mode: &spec.container_mode,
        service_account_name: &spec.service_account_name,
        kube_actions: spec.kube_actions.as_ref(),
    };
    // Serialising plain data with string map keys cannot fail.
    let bytes = serde_json::to_vec(&input).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The pod was built from other inputs than the scale set's current spec
/// (or by a builder that stamped no hash).
pub fn is_outdated(pod: &Pod, spec: &RunnerScaleSetSpec) -> bool {
    annotation(pod, TEMPLATE_HASH_ANNOTATION) != Some(template_hash(spec).as_str())
}

/// Annotations of a busy runner: Runway never scales it down, and Karpenter
/// does not disrupt its node.
pub fn busy_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        (BUSY_ANNOTATION.to_string(), "true".to_string()),
        (DO_NOT_DISRUPT_ANNOTATION.to_string(), "true".to_string()),
    ])
}

pub fn mark_busy(meta: &mut ObjectMeta) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .extend(busy_annotations());
}

pub fn is_busy(pod: &Pod) -> bool {
    annotation(pod, BUSY_ANNOTATION) == Some("true")
}

/// Whether the object with `uid` is the pod's controller (its controlling
/// ownerReference): only such pods are a scale set's runners. The scale-set
/// label is a selector, not a claim: anyone can set it.
pub fn is_controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

fn annotation<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Whether the IRSA webhook mutated this created pod: `AWS_ROLE_ARN` on the
/// runner container or the `aws-iam-token` volume. A pod admitted before the
/// webhook saw its ServiceAccount has neither and must be replaced.
pub fn has_irsa(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    let token_volume = spec
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == "aws-iam-token");
    let role_env = spec
        .containers
        .iter()
        .filter(|c| c.name == RUNNER_CONTAINER)
        .flat_map(|c| c.env.iter().flatten())
        .any(|e| e.name == "AWS_ROLE_ARN");
    token_volume || role_env
}

#[cfg(test)]
#[path = "pod_tests.rs"]
mod tests;
