//! The catalog: every resource and verb `runway kube` knows, where each
//! resource lives in the API, and (in [`rbac`](super::rbac)) the RBAC rules
//! each (resource, verb) needs. Names are the `kubernetesActions` keys and
//! values of the scale-set chart, in camelCase.

use std::fmt;
use std::str::FromStr;

/// A resource of `kubernetesActions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    ConfigMaps,
    ControllerRevisions,
    CronJobs,
    CustomObjects,
    CustomResourceDefinitions,
    DaemonSets,
    Deployments,
    Endpoints,
    Events,
    Jobs,
    LimitRanges,
    Namespaces,
    Nodes,
    PersistentVolumeClaims,
    PersistentVolumes,
    PodTemplates,
    Pods,
    ReplicaSets,
    ReplicationControllers,
    ResourceQuotas,
    Secrets,
    ServiceAccounts,
    Services,
    StatefulSets,
}

/// Where a built-in resource lives: API group, kind, plural, scope, and the
/// versions to try, newest first (the sandbox's API server is v1.20, where
/// CronJobs are still `batch/v1beta1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLocation {
    pub group: &'static str,
    pub versions: &'static [&'static str],
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// A verb of `kubernetesActions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    /// Secrets only: `get` that may show the values.
    GetData,
    List,
    Create,
    Update,
    Patch,
    Delete,
    DeleteMultiple,
    Restart,
    Scale,
    Rollback,
    RolloutStatus,
    Cordon,
    Uncordon,
    Drain,
    Trigger,
    Logs,
}

impl Resource {
    pub const ALL: [Resource; 24] = [
        Resource::ConfigMaps,
        Resource::ControllerRevisions,
        Resource::CronJobs,
        Resource::CustomObjects,
        Resource::CustomResourceDefinitions,
        Resource::DaemonSets,
        Resource::Deployments,
        Resource::Endpoints,
        Resource::Events,
        Resource::Jobs,
        Resource::LimitRanges,
        Resource::Namespaces,
        Resource::Nodes,
        Resource::PersistentVolumeClaims,
        Resource::PersistentVolumes,
        Resource::PodTemplates,
        Resource::Pods,
        Resource::ReplicaSets,
        Resource::ReplicationControllers,
        Resource::ResourceQuotas,
        Resource::Secrets,
        Resource::ServiceAccounts,
        Resource::Services,
        Resource::StatefulSets,
    ];

    /// The `kubernetesActions` key.
    pub fn key(self) -> &'static str {
        match self {
            Resource::ConfigMaps => "configMaps",
            Resource::ControllerRevisions => "controllerRevisions",
            Resource::CronJobs => "cronJobs",
            Resource::CustomObjects => "customObjects",
            Resource::CustomResourceDefinitions => "customResourceDefinitions",
            Resource::DaemonSets => "daemonSets",
            Resource::Deployments => "deployments",
            Resource::Endpoints => "endpoints",
            Resource::Events => "events",
            Resource::Jobs => "jobs",
            Resource::LimitRanges => "limitRanges",
            Resource::Namespaces => "namespaces",
            Resource::Nodes => "nodes",
            Resource::PersistentVolumeClaims => "persistentVolumeClaims",
            Resource::PersistentVolumes => "persistentVolumes",
            Resource::PodTemplates => "podTemplates",
            Resource::Pods => "pods",
            Resource::ReplicaSets => "replicaSets",
            Resource::ReplicationControllers => "replicationControllers",
            Resource::ResourceQuotas => "resourceQuotas",
            Resource::Secrets => "secrets",
            Resource::ServiceAccounts => "serviceAccounts",
            Resource::Services => "services",
            Resource::StatefulSets => "statefulSets",
        }
    }

    /// Where the resource lives; `None` for `customObjects`, whose group,
    /// version and kind are given at call time.
    pub fn location(self) -> Option<ApiLocation> {
        const fn at(
            group: &'static str,
            versions: &'static [&'static str],
            kind: &'static str,
            plural: &'static str,
            namespaced: bool,
        ) -> Option<ApiLocation> {
            Some(ApiLocation {
                group,
                versions,
                kind,
                plural,
                namespaced,
            })
        }
        const V1: &[&str] = &["v1"];
        match self {
            Resource::ConfigMaps => at("", V1, "ConfigMap", "configmaps", true),
            Resource::ControllerRevisions => at(
                "apps",
                V1,
                "ControllerRevision",
                "controllerrevisions",
                true,
            ),
            Resource::CronJobs => at("batch", &["v1", "v1beta1"], "CronJob", "cronjobs", true),
            Resource::CustomObjects => None,
            Resource::CustomResourceDefinitions => at(
                "apiextensions.k8s.io",
                V1,
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
            ),
            Resource::DaemonSets => at("apps", V1, "DaemonSet", "daemonsets", true),
            Resource::Deployments => at("apps", V1, "Deployment", "deployments", true),
            Resource::Endpoints => at("", V1, "Endpoints", "endpoints", true),
            Resource::Events => at("", V1, "Event", "events", true),
            Resource::Jobs => at("batch", V1, "Job", "jobs", true),
            Resource::LimitRanges => at("", V1, "LimitRange", "limitranges", true),
            Resource::Namespaces => at("", V1, "Namespace", "namespaces", false),
            Resource::Nodes => at("", V1, "Node", "nodes", false),
            Resource::PersistentVolumeClaims => at(
                "",
                V1,
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                true,
            ),
            Resource::PersistentVolumes => {
                at("", V1, "PersistentVolume", "persistentvolumes", false)
            }
            Resource::PodTemplates => at("", V1, "PodTemplate", "podtemplates", true),
            Resource::Pods => at("", V1, "Pod", "pods", true),
            Resource::ReplicaSets => at("apps", V1, "ReplicaSet", "replicasets", true),
            Resource::ReplicationControllers => at(
                "",
                V1,
                "ReplicationController",
                "replicationcontrollers",
                true,
            ),
            Resource::ResourceQuotas => at("", V1, "ResourceQuota", "resourcequotas", true),
            Resource::Secrets => at("", V1, "Secret", "secrets", true),
            Resource::ServiceAccounts => at("", V1, "ServiceAccount", "serviceaccounts", true),
            Resource::Services => at("", V1, "Service", "services", true),
            Resource::StatefulSets => at("apps", V1, "StatefulSet", "statefulsets", true),
        }
    }

    /// Whether `verb` means anything for this resource.
    pub fn supports(self, verb: Verb) -> bool {
        use Resource as R;
        match verb {
            Verb::Get
            | Verb::List
            | Verb::Create
            | Verb::Update
            | Verb::Patch
            | Verb::Delete
            | Verb::DeleteMultiple => true,
            Verb::GetData => self == R::Secrets,
            Verb::Restart | Verb::RolloutStatus => {
                matches!(self, R::Deployments | R::StatefulSets | R::DaemonSets)
            }
            Verb::Scale => matches!(self, R::Deployments | R::StatefulSets | R::ReplicaSets),
            Verb::Rollback => self == R::Deployments,
            Verb::Cordon | Verb::Uncordon | Verb::Drain => self == R::Nodes,
            Verb::Trigger => self == R::CronJobs,
            Verb::Logs => self == R::Pods,
        }
    }

    /// The verbs this resource supports, in catalog order.
    pub fn verbs(self) -> impl Iterator<Item = Verb> {
        Verb::ALL.into_iter().filter(move |v| self.supports(*v))
    }

    /// The resource whose kind is `kind` (`Deployment`, case-insensitive;
    /// snake case `config_map` and `statefulset` are accepted too).
    pub fn from_kind(kind: &str) -> Option<Resource> {
        let wanted: String = kind
            .chars()
            .filter(|c| *c != '_')
            .flat_map(char::to_lowercase)
            .collect();
        Resource::ALL.into_iter().find(|r| {
            r.location()
                .is_some_and(|l| l.kind.to_ascii_lowercase() == wanted)
        })
    }

    /// The resource a CLI word names: the key (`deployments`), the plural
    /// (`statefulsets`), the kind (`Deployment`), or kubectl's short names
    /// (`deploy`, `po`, `cm`, `ns`, `sts`, ...).
    pub fn from_cli(word: &str) -> Option<Resource> {
        let lower = word.to_ascii_lowercase();
        let short = match lower.as_str() {
            "cm" => Some(Resource::ConfigMaps),
            "cj" => Some(Resource::CronJobs),
            "crd" | "crds" => Some(Resource::CustomResourceDefinitions),
            "ds" => Some(Resource::DaemonSets),
            "deploy" => Some(Resource::Deployments),
            "ep" => Some(Resource::Endpoints),
            "ev" => Some(Resource::Events),
            "limits" => Some(Resource::LimitRanges),
            "ns" => Some(Resource::Namespaces),
            "no" => Some(Resource::Nodes),
            "pvc" => Some(Resource::PersistentVolumeClaims),
            "pv" => Some(Resource::PersistentVolumes),
            "po" => Some(Resource::Pods),
            "rs" => Some(Resource::ReplicaSets),
            "rc" => Some(Resource::ReplicationControllers),
            "quota" => Some(Resource::ResourceQuotas),
            "sa" => Some(Resource::ServiceAccounts),
            "svc" => Some(Resource::Services),
            "sts" => Some(Resource::StatefulSets),
            _ => None,
        };
        short
            .or_else(|| {
                Resource::ALL.into_iter().find(|r| {
                    r.key().eq_ignore_ascii_case(&lower)
                        || r.location().is_some_and(|l| l.plural == lower)
                })
            })
            .or_else(|| Resource::from_kind(word))
    }
}

impl Verb {
    pub const ALL: [Verb; 17] = [
        Verb::Get,
        Verb::GetData,
        Verb::List,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::DeleteMultiple,
        Verb::Restart,
        Verb::Scale,
        Verb::Rollback,
        Verb::RolloutStatus,
        Verb::Cordon,
        Verb::Uncordon,
        Verb::Drain,
        Verb::Trigger,
        Verb::Logs,
    ];

    /// The `kubernetesActions` value.
    pub fn key(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::GetData => "getData",
            Verb::List => "list",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteMultiple => "deleteMultiple",
            Verb::Restart => "restart",
            Verb::Scale => "scale",
            Verb::Rollback => "rollback",
            Verb::RolloutStatus => "rolloutStatus",
            Verb::Cordon => "cordon",
            Verb::Uncordon => "uncordon",
            Verb::Drain => "drain",
            Verb::Trigger => "trigger",
            Verb::Logs => "logs",
        }
    }

    /// The verb in a payload's `action_type` (`delete_multiple`,
    /// `rollout_status`).
    pub fn snake(self) -> String {
        let mut out = String::new();
        for c in self.key().chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Whether the verb changes anything (and so is audited with an Event).
    pub fn mutates(self) -> bool {
        !matches!(
            self,
            Verb::Get | Verb::GetData | Verb::List | Verb::RolloutStatus | Verb::Logs
        )
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A word that names no resource or verb of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{word}`; known: {known}")]
pub struct UnknownName {
    pub what: &'static str,
    pub word: String,
    pub known: String,
}

impl FromStr for Resource {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|r| r.key() == s)
            .ok_or_else(|| UnknownName {
                what: "resource",
                word: s.to_string(),
                known: Resource::ALL.map(Resource::key).join(", "),
            })
    }
}

impl FromStr for Verb {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verb::ALL
            .into_iter()
            .find(|v| v.key() == s || v.key().eq_ignore_ascii_case(&s.replace(['-', '_'], "")))
            .ok_or_else(|| UnknownName {
                what: "verb",
                word: s.to_string(),
                known: Verb::ALL.map(Verb::key).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_24_resources_with_distinct_keys_and_kinds() {
        let keys: std::collections::BTreeSet<_> = Resource::ALL.iter().map(|r| r.key()).collect();
        assert_eq!(keys.len(), 24);
        let kinds: std::collections::BTreeSet<_> = Resource::ALL
            .iter()
            .filter_map(|r| r.location())
            .map(|l| l.kind)
            .collect();
        assert_eq!(
            kinds.len(),
            23,
            "every resource but customObjects has a kind"
        );
    }

    #[test]
    fn keys_parse_back() {
        for r in Resource::ALL {
            assert_eq!(r.key().parse::<Resource>(), Ok(r));
        }
        for v in Verb::ALL {
            assert_eq!(v.key().parse::<Verb>(), Ok(v));
        }
        assert_eq!("delete-multiple".parse::<Verb>(), Ok(Verb::DeleteMultiple));
        assert_eq!("rollout_status".parse::<Verb>(), Ok(Verb::RolloutStatus));
        let err = "restartt".parse::<Verb>().unwrap_err();
        assert!(err.to_string().contains("known: get, getData"), "{err}");
    }

    #[test]
    fn cli_words_and_kinds_name_resources() {
        assert_eq!(Resource::from_cli("deploy"), Some(Resource::Deployments));
        assert_eq!(
            Resource::from_cli("statefulsets"),
            Some(Resource::StatefulSets)
        );
        assert_eq!(Resource::from_cli("configMaps"), Some(Resource::ConfigMaps));
        assert_eq!(Resource::from_cli("Pod"), Some(Resource::Pods));
        assert_eq!(Resource::from_cli("widgets"), None);
        assert_eq!(
            Resource::from_kind("config_map"),
            Some(Resource::ConfigMaps)
        );
        assert_eq!(
            Resource::from_kind("statefulset"),
            Some(Resource::StatefulSets)
        );
    }

    #[test]
    fn extra_verbs_belong_to_their_resources_only() {
        assert!(Resource::Deployments.supports(Verb::Rollback));
        assert!(!Resource::StatefulSets.supports(Verb::Rollback));
        assert!(Resource::Nodes.supports(Verb::Drain));
        assert!(!Resource::Pods.supports(Verb::Drain));
        assert!(Resource::Secrets.supports(Verb::GetData));
        assert!(!Resource::ConfigMaps.supports(Verb::GetData));
        assert_eq!(Resource::Pods.verbs().last(), Some(Verb::Logs));
        assert_eq!(Verb::DeleteMultiple.snake(), "delete_multiple");
        assert_eq!(Verb::RolloutStatus.snake(), "rollout_status");
    }
}
