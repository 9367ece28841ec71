//! The allowlist: what this scale set lets `runway kube` do, read from the
//! file the scale-set chart mounts (`RUNWAY_KUBE_ALLOWLIST`), and the pure
//! decision whether an action may run. Deny by default.
//!
//! The file (written by the chart from `kubernetesActions`,
//! `kubernetesActionsNamespaces`, `kubernetesActionsProtectedNamespaces`):
//!
//! ```yaml
//! actions:
//!   pods: [get, list, delete]
//!   deployments: [get, restart]
//! namespaces: [app-staging]       # empty: any namespace that is not protected
//! protectedNamespaces: [kube-system, kube-public, kube-node-lease]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::catalog::{Resource, Verb};

/// The environment variable naming the allowlist file.
pub const ALLOWLIST_ENV: &str = "RUNWAY_KUBE_ALLOWLIST";
/// Namespaces refused unless `kubernetesActionsNamespaces` lists them.
pub const DEFAULT_PROTECTED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    pub actions: BTreeMap<Resource, BTreeSet<Verb>>,
    /// Where actions may run; empty means any namespace not protected.
    pub namespaces: BTreeSet<String>,
    pub protected: BTreeSet<String>,
}

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    #[serde(default)]
    actions: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    protected_namespaces: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    #[error(
        "no allowlist: set {ALLOWLIST_ENV} to the file the scale-set chart mounts (it is written from `kubernetesActions`), or pass --allowlist"
    )]
    NotConfigured,
    #[error("cannot read the allowlist {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the allowlist {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

/// Why an action may not run. Each names the value to add.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error(
        "denied: `{verb}` on {resource} is not allowed for this scale set; add \"{verb}\" to `kubernetesActions.{resource}` in the scale set's values"
    )]
    NotListed { resource: Resource, verb: Verb },
    #[error("denied: {resource} have no `{verb}` action; {resource} support: {supported}")]
    Unsupported {
        resource: Resource,
        verb: Verb,
        supported: String,
    },
    #[error(
        "denied: namespace `{namespace}` is protected; list it in `kubernetesActionsNamespaces` in the scale set's values to allow actions there"
    )]
    Protected { namespace: String },
    #[error(
        "denied: namespace `{namespace}` is not in `kubernetesActionsNamespaces` ({allowed}); add it there in the scale set's values"
    )]
    OutsideNamespaces { namespace: String, allowed: String },
    #[error(
        "denied: secret values are hidden; add \"getData\" to `kubernetesActions.secrets` in the scale set's values to show them"
    )]
    SecretData,
}

impl Allowlist {
    /// Reads the file named by `path`, or by `RUNWAY_KUBE_ALLOWLIST`.
    pub fn load(path: Option<&Path>) -> Result<Allowlist, AllowlistError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os(ALLOWLIST_ENV)
                .filter(|v| !v.is_empty())
                .map(Into::into)
                .ok_or(AllowlistError::NotConfigured)?,
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| AllowlistError::Read {
            path: shown.clone(),
            source,
        })?;
        Allowlist::parse(&text).map_err(|message| AllowlistError::Invalid {
            path: shown,
            message,
        })
    }

    /// Parses the file's text; the error names the key or value to fix.
    pub fn parse(text: &str) -> Result<Allowlist, String> {
        let file: File = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut actions = BTreeMap::new();
        for (key, verbs) in file.actions {
            let resource: Resource = key.parse().map_err(|e| format!("actions.{key}: {e}"))?;
            let mut set = BTreeSet::new();
            for word in verbs {
                let verb: Verb = word.parse().map_err(|e| format!("actions.{key}: {e}"))?;
                if !resource.supports(verb) {
                    return Err(format!(
                        "actions.{key}: {resource} have no `{verb}` action; supported: {}",
                        supported(resource)
                    ));
                }
                set.insert(verb);
            }
            actions.insert(resource, set);
        }
        let protected = DEFAULT_PROTECTED
            .iter()
            .map(|s| s.to_string())
            .chain(file.protected_namespaces)
            .collect();
        Ok(Allowlist {
            actions,
            namespaces: file.namespaces.into_iter().collect(),
            protected,
        })
    }

    pub fn allows(&self, resource: Resource, verb: Verb) -> bool {
        self.actions
            .get(&resource)
            .is_some_and(|verbs| verbs.contains(&verb))
    }

    /// Whether `verb` on `resource` in `namespace` (None for cluster-scoped
    /// objects and for all namespaces) may run.
    pub fn check(
        &self,
        resource: Resource,
        verb: Verb,
        namespace: Option<&str>,
    ) -> Result<(), Denial> {
        if !resource.supports(verb) {
            return Err(Denial::Unsupported {
                resource,
                verb,
                supported: supported(resource),
            });
        }
        if !self.allows(resource, verb) {
            return Err(Denial::NotListed { resource, verb });
        }
        let Some(namespace) = namespace else {
            return Ok(());
        };
        if self.namespaces.contains(namespace) {
            return Ok(());
        }
        if self.protected.contains(namespace) {
            return Err(Denial::Protected {
                namespace: namespace.to_string(),
            });
        }
        if !self.namespaces.is_empty() {
            return Err(Denial::OutsideNamespaces {
                namespace: namespace.to_string(),
                allowed: self
                    .namespaces
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }

    /// Whether Secret values may be shown (`kubernetesActions.secrets`
    /// lists `getData`).
    pub fn shows_secret_data(&self) -> bool {
        self.allows(Resource::Secrets, Verb::GetData)
    }
}

fn supported(resource: Resource) -> String {
    resource
        .verbs()
        .map(Verb::key)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Allowlist {
        Allowlist::parse(text).expect("valid allowlist")
    }

    #[test]
    fn deny_by_default_and_name_the_value_to_add() {
        let a = list("actions:\n  pods: [get]\n");
        assert_eq!(a.check(Resource::Pods, Verb::Get, Some("ci")), Ok(()));
        let denied = a
            .check(Resource::Pods, Verb::Delete, Some("ci"))
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "denied: `delete` on pods is not allowed for this scale set; add \"delete\" to `kubernetesActions.pods` in the scale set's values"
        );
        assert!(matches!(
            a.check(Resource::Deployments, Verb::Get, Some("ci")),
            Err(Denial::NotListed { .. })
        ));
        assert!(
            Allowlist::default()
                .check(Resource::Pods, Verb::Get, None)
                .is_err()
        );
    }

    #[test]
    fn protected_namespaces_need_listing() {
        let a = list("actions:\n  pods: [get]\nprotectedNamespaces: [prod-db]\n");
        for ns in ["kube-system", "kube-public", "kube-node-lease", "prod-db"] {
            let err = a.check(Resource::Pods, Verb::Get, Some(ns)).unwrap_err();
            assert!(
                err.to_string().contains("kubernetesActionsNamespaces"),
                "{err}"
            );
        }
        let b = list("actions:\n  pods: [get]\nnamespaces: [kube-system]\n");
        assert_eq!(
            b.check(Resource::Pods, Verb::Get, Some("kube-system")),
            Ok(())
        );
    }

    #[test]
    fn listed_namespaces_bound_where_actions_run() {
        let a = list("actions:\n  pods: [get]\nnamespaces: [a, b]\n");
        assert_eq!(a.check(Resource::Pods, Verb::Get, Some("b")), Ok(()));
        let err = a.check(Resource::Pods, Verb::Get, Some("c")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "denied: namespace `c` is not in `kubernetesActionsNamespaces` (a, b); add it there in the scale set's values"
        );
        // Cluster-scoped objects have no namespace to check.
        let n = list("actions:\n  nodes: [cordon]\nnamespaces: [a]\n");
        assert_eq!(n.check(Resource::Nodes, Verb::Cordon, None), Ok(()));
    }

    #[test]
    fn bad_files_name_what_to_fix() {
        let e = Allowlist::parse("actions:\n  deploymentz: [get]\n").unwrap_err();
        assert!(
            e.starts_with("actions.deploymentz: unknown resource"),
            "{e}"
        );
        let e = Allowlist::parse("actions:\n  pods: [restart]\n").unwrap_err();
        assert!(e.contains("pods have no `restart` action"), "{e}");
        let e = Allowlist::parse("actoins: {}\n").unwrap_err();
        assert!(e.contains("actoins"), "{e}");
        assert!(list("actions:\n  secrets: [get, getData]\n").shows_secret_data());
        assert!(!list("actions:\n  secrets: [get]\n").shows_secret_data());
    }
}
