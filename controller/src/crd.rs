//! The `RunnerScaleSet` custom resource (`actions.runway.dev/v1alpha1`).
//!
//! The spec mirrors ARC's `AutoscalingRunnerSet`, so that a values file
//! written for ARC's `gha-runner-scale-set` chart maps onto it field for
//! field. The status holds what a restarted or newly elected controller needs
//! to resume (scale set id, session id, last message id) and the counts the
//! printer columns show.
//!
//! The CRD must install on Kubernetes 1.20, which has no CEL validation rules:
//! the schema carries only what an OpenAPI v3 structural schema can say
//! (minimums, maximum length, the container mode enum), and [`validate`]
//! checks the rest (cross-field rules, URL shapes, name characters) with
//! messages that name the field to change.

use k8s_openapi::api::core::v1::{ConfigMapKeySelector, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::github::{ConfigError, GitHubConfig};

/// GitHub's limit on a scale set name (ARC enforces the same).
pub const MAX_SCALE_SET_NAME_LEN: usize = 45;

/// Condition type: the scale set exists on GitHub and runners can be created.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: a message-queue session is open and being polled.
pub const CONDITION_LISTENING: &str = "Listening";

/// A set of ephemeral GitHub Actions runners that workflows select with
/// `runs-on: <runnerScaleSetName>`.
// clippy reads the repeated `type_ = "integer"` inside the printcolumn
// entries as duplicated attributes; they are separate columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "actions.runway.dev",
    version = "v1alpha1",
    kind = "RunnerScaleSet",
    namespaced,
    shortname = "rss",
    status = "RunnerScaleSetStatus",
    derive = "PartialEq",
    doc = "A GitHub Actions runner scale set whose runners are ephemeral pods",
    printcolumn(
        name = "Scale Set ID",
        type_ = "integer",
        json_path = ".status.scaleSetId",
        description = "id of the scale set on GitHub"
    ),
    printcolumn(
        name = "Min",
        type_ = "integer",
        json_path = ".spec.minRunners",
        description = "minimum number of idle runners"
    ),
    printcolumn(
        name = "Max",
        type_ = "integer",
        json_path = ".spec.maxRunners",
        description = "maximum number of runners (empty: no limit)"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredRunners",
        description = "runners the scaler wants"
    ),
    printcolumn(
        name = "Running",
        type_ = "integer",
        json_path = ".status.currentRunners",
        description = "runner pods that exist and have not failed"
    ),
    printcolumn(
        name = "Busy",
        type_ = "integer",
        json_path = ".status.busyRunners",
        description = "runners running a job"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSetSpec {
    /// `https://<host>/<org>`, `https://<host>/<org>/<repo>` or
    /// `https://<host>/enterprises/<enterprise>`.
    pub github_config_url: String,

    /// Name of a Secret in the same namespace holding a GitHub App
    /// (`github_app_id`, `github_app_installation_id`,
    /// `github_app_private_key`) or a PAT (`github_token`).
    pub github_config_secret: String,

    /// Runner group on GitHub; the default group when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group: Option<String>,

    /// The name workflows use in `runs-on`; the object's name when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    pub runner_scale_set_name: Option<String>,

    /// Extra labels of the scale set, besides its name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runner_scale_set_labels: Vec<String>,

    /// Idle runners kept waiting for jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_runners: Option<i32>,

    /// Upper bound on runners; no bound when empty (as in ARC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_runners: Option<i32>,

    /// The runner pod; must have a container named `runner`.
    //
    // The schema says only `type: object` with
    // `x-kubernetes-preserve-unknown-fields`, while the Rust type stays a
    // typed PodTemplateSpec. Why: the full generated PodTemplateSpec schema is
    // several hundred kilobytes per CRD version (close to the size limits of
    // etcd objects and of kubectl's last-applied annotation), it describes the
    // 1.33 pod API so a 1.20 server would accept fields its own pod API then
    // rejects, and pruning by an older schema would silently drop newer pod
    // fields. The API server validates the pod for real when the runner pod
    // is created; a template that does not even deserialize shows up as a
    // read error on the object (an Event), not as a silent drop.
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: PodTemplateSpec,

    /// How job containers run; no extra containers when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_mode: Option<ContainerMode>,

    /// Proxy for the controller's GitHub traffic (ARC's shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyConfig>,

    /// Extra CA for a GitHub Enterprise Server (ARC's shape).
    #[serde(
        default,
        rename = "githubServerTLS",
        skip_serializing_if = "Option::is_none"
    )]
    pub github_server_tls: Option<GitHubServerTls>,

    /// ServiceAccount of the runner pods (for IRSA: create it before the
    /// scale set). Wins over the template's `serviceAccountName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// The Kubernetes-actions executor beside the job: when set, only a
    /// `runway-executor` container in each runner pod holds a ServiceAccount
    /// token, and job steps reach the API through it. The scale-set chart
    /// sets it when `kubernetesActions` lists a resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_actions: Option<KubeActionsExecutor>,
}

/// `kubeActions`: the executor container added to every runner pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeActionsExecutor {
    /// ConfigMap in the scale set's namespace holding the allowlist under
    /// the key `allowlist.yaml`.
    #[schemars(length(min = 1))]
    pub allowlist_config_map: String,
    /// The executor's image (it runs `runway serve --local`); the runner
    /// container's image when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The executor's pull policy; the runner container's when `image` is
    /// empty too, else the Kubernetes default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The executor container's requests and limits.
    // An open object in the schema, for the reasons given at `template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub resources: Option<ResourceRequirements>,
}

fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// `containerMode` as ARC writes it: `{type: dind}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ContainerMode {
    #[serde(rename = "type")]
    pub mode: ContainerModeType,
}

/// `dind`: a Docker daemon next to the runner.
//
// The enum is in the schema, so typos are rejected by the API server;
// `kubernetes` is accepted there (ARC has it) but `validate` refuses it until
// Runway implements the container hooks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerModeType {
    Dind,
    Kubernetes,
}

/// `proxy` in ARC's shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<ProxyServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<ProxyServer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyServer {
    pub url: String,
    /// Name of a Secret with `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_secret_ref: Option<String>,
}

/// `githubServerTLS` in ARC's shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitHubServerTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_from: Option<TlsCertificateSource>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsCertificateSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeySelector>,
}

/// What the controller knows about the scale set; written only through the
/// status subresource, by the leader.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerScaleSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_set_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_group_name: Option<String>,
    /// The open message-queue session, resumed after a restart instead of
    /// opening a new one (which would conflict with 409 while it lives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The last acknowledged message, so that a restart does not replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub desired_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub current_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub idle_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub busy_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub pending_runners: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub failed_runners: Option<i32>,
    /// `Ready` and `Listening`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl RunnerScaleSet {
    /// The name workflows use in `runs-on`: `runnerScaleSetName`, else the
    /// object's name.
    pub fn scale_set_name(&self) -> &str {
        self.spec
            .runner_scale_set_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

impl RunnerScaleSetSpec {
    pub fn min_runners(&self) -> u32 {
        self.min_runners
            .map_or(0, |n| u32::try_from(n).unwrap_or(0))
    }

    /// `None` means no upper bound.
    pub fn max_runners(&self) -> Option<u32> {
        self.max_runners.map(|n| u32::try_from(n).unwrap_or(0))
    }

    pub fn is_dind(&self) -> bool {
        matches!(
            self.container_mode,
            Some(ContainerMode {
                mode: ContainerModeType::Dind
            })
        )
    }
}

/// The CustomResourceDefinition, as installed by the chart.
pub fn crd() -> CustomResourceDefinition {
    RunnerScaleSet::crd()
}

/// The CustomResourceDefinition as YAML (what `runway-controller crd` prints).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}

/// A problem in a `RunnerScaleSet` spec that the schema cannot express.
/// Every message names the field to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "minRunners ({min}) is greater than maxRunners ({max}); lower minRunners or raise maxRunners"
    )]
    MinAboveMax { min: i32, max: i32 },
    #[error("{field} is {value}; it must be 0 or more")]
    Negative { field: &'static str, value: i32 },
    #[error(transparent)]
    GitHubConfigUrl(#[from] ConfigError),
    #[error("{field} is empty; {hint}")]
    Empty {
        field: &'static str,
        hint: &'static str,
    },
    #[error(
        "runnerScaleSetName {name:?} is {len} characters long; GitHub allows at most {MAX_SCALE_SET_NAME_LEN}"
    )]
    ScaleSetNameTooLong { name: String, len: usize },
    #[error(
        "runnerScaleSetName {name:?} contains {bad:?}; use letters, digits, '-', '_' and '.' only"
    )]
    ScaleSetNameChars { name: String, bad: char },
    #[error("runnerScaleSetLabels[{index}] {problem}")]
    Label { index: usize, problem: &'static str },
    #[error(
        "containerMode.type {mode:?} is not supported yet; use \"dind\" or remove containerMode"
    )]
    UnsupportedContainerMode { mode: &'static str },
    #[error(
        "template.spec.containers has no container named \"runner\"; the runner image must run in a container of that name"
    )]
    NoRunnerContainer,
    /// A template that would hand a job a ServiceAccount token beside the
    /// executor (the same check the pod builder makes).
    #[error(transparent)]
    KubeActionsTemplate(crate::runner::PodError),
    #[error("{field} {url:?} is not a valid URL: {reason}")]
    ProxyUrl {
        field: &'static str,
        url: String,
        reason: String,
    },
}

impl SpecError {
    /// The spec field the error is about (JSON path under `spec`).
    pub fn field(&self) -> &'static str {
        match self {
            SpecError::MinAboveMax { .. } => "minRunners",
            SpecError::Negative { field, .. }
            | SpecError::Empty { field, .. }
            | SpecError::ProxyUrl { field, .. } => field,
            SpecError::GitHubConfigUrl(_) => "githubConfigUrl",
            SpecError::ScaleSetNameTooLong { .. } | SpecError::ScaleSetNameChars { .. } => {
                "runnerScaleSetName"
            }
            SpecError::Label { .. } => "runnerScaleSetLabels",
            SpecError::UnsupportedContainerMode { .. } => "containerMode.type",
            SpecError::NoRunnerContainer => "template.spec.containers",
            SpecError::KubeActionsTemplate(_) => "template.spec",
        }
    }
}

/// Checks what the 1.20 API server cannot: returns every problem at once so
/// that a user fixes them in one round.
pub fn validate(spec: &RunnerScaleSetSpec) -> Result<(), Vec<SpecError>> {
    let mut errors = Vec::new();

    // The schema enforces these too; repeated here because a spec can reach
    // the controller through paths the schema did not check (an older CRD
    // still installed, tests, the chart's dry run).
    for (field, value) in [
        ("minRunners", spec.min_runners),
        ("maxRunners", spec.max_runners),
    ] {
        if let Some(value) = value.filter(|v| *v < 0) {
            errors.push(SpecError::Negative { field, value });
        }
    }
    if let (Some(min), Some(max)) = (spec.min_runners, spec.max_runners)
        && min > max
    {
        errors.push(SpecError::MinAboveMax { min, max });
    }

    if spec.github_config_url.trim().is_empty() {
        errors.push(SpecError::Empty {
            field: "githubConfigUrl",
            hint: "set it to https://github.com/<org>, https://github.com/<org>/<repo> or https://github.com/enterprises/<enterprise>",
        });
    } else if let Err(e) = GitHubConfig::parse(&spec.github_config_url) {
        errors.push(e.into());
    }
    if spec.github_config_secret.trim().is_empty() {
        errors.push(SpecError::Empty {
            field: "githubConfigSecret",
            hint: "name the Secret holding the GitHub App or PAT credentials",
        });
    }

    if let Some(name) = &spec.runner_scale_set_name {
        validate_scale_set_name(name, &mut errors);
    }
    for (index, label) in spec.runner_scale_set_labels.iter().enumerate() {
        if label.trim().is_empty() {
            errors.push(SpecError::Label {
                index,
                problem: "is empty",
            });
        } else if label.contains(',') {
            // runs-on lists are comma separated on GitHub's side.
            errors.push(SpecError::Label {
                index,
                problem: "contains ','",
            });
        }
    }

    if let Some(ContainerMode {
        mode: ContainerModeType::Kubernetes,
    }) = spec.container_mode
    {
        errors.push(SpecError::UnsupportedContainerMode { mode: "kubernetes" });
    }

    let has_runner = spec
        .template
        .spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == "runner"));
    if !has_runner {
        errors.push(SpecError::NoRunnerContainer);
    }

    if let Some(executor) = &spec.kube_actions {
        if executor.allowlist_config_map.trim().is_empty() {
            errors.push(SpecError::Empty {
                field: "kubeActions.allowlistConfigMap",
                hint: "set spec.kubeActions.allowlistConfigMap to the ConfigMap holding the executor's allowlist (key allowlist.yaml), or remove spec.kubeActions",
            });
        }
        if let Some(template) = &spec.template.spec
            && let Err(e) = crate::runner::check_kube_actions_template(template)
        {
            errors.push(SpecError::KubeActionsTemplate(e));
        }
    }

    if let Some(proxy) = &spec.proxy {
        for (field, server) in [
            ("proxy.http.url", &proxy.http),
            ("proxy.https.url", &proxy.https),
        ] {
            if let Some(server) = server
                && let Err(e) = url::Url::parse(&server.url)
            {
                errors.push(SpecError::ProxyUrl {
                    field,
                    url: crate::github::config::redact_userinfo(&server.url),
                    reason: e.to_string(),
                });
            }
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn validate_scale_set_name(name: &str, errors: &mut Vec<SpecError>) {
    let len = name.chars().count();
    if len == 0 {
        errors.push(SpecError::Empty {
            field: "runnerScaleSetName",
            hint: "remove it to use the object's name, or set the name used in runs-on",
        });
        return;
    }
    if len > MAX_SCALE_SET_NAME_LEN {
        errors.push(SpecError::ScaleSetNameTooLong {
            name: name.to_string(),
            len,
        });
    }
    // The name becomes a runner label and the prefix of runner (and pod)
    // names, so keep to what all of those accept.
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        errors.push(SpecError::ScaleSetNameChars {
            name: name.to_string(),
            bad,
        });
    }
}

#[cfg(test)]
#[path = "crd_tests.rs"]
mod tests;
