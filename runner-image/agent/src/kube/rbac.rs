//! The RBAC table: the rules each (resource, verb) of the catalog needs.
//! The scale-set chart has the same table in `_kube_actions.tpl`; the test
//! `tests/chart_rbac.rs` renders the chart for every pair and checks that
//! the two agree, so they cannot drift.
//!
//! Mapping (KUBE-ACTIONS.md): `get->get`, `getData->get`,
//! `list->list,watch`, `create`, `update`, `patch`, `delete` as themselves,
//! `deleteMultiple->deletecollection`, `restart->get,patch`,
//! `scale->get,patch` + `<plural>/scale get,patch`,
//! `rollback->get,patch` + `replicasets list`, `rolloutStatus->get`,
//! `cordon/uncordon->nodes get,patch`,
//! `drain->nodes get,patch` + `pods list` + `pods/eviction create`,
//! `trigger->cronjobs get` + `jobs create`, `logs->pods/log get`.
//! `customObjects` need nothing from the table: their rules are
//! `kubernetesPermissions`.

use std::collections::{BTreeMap, BTreeSet};

use super::catalog::{Resource, Verb};

/// One RBAC permission: verb on `group/resource` (resource may carry a
/// subresource, `pods/eviction`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub group: String,
    pub resource: String,
    pub verb: String,
}

impl Permission {
    pub fn new(group: &str, resource: &str, verb: &str) -> Self {
        Permission {
            group: group.to_string(),
            resource: resource.to_string(),
            verb: verb.to_string(),
        }
    }
}

/// Every executed mutation is audited with an Event on the object.
pub fn audit_permissions() -> BTreeSet<Permission> {
    [Permission::new("", "events", "create")].into()
}

/// The permissions one (resource, verb) needs; empty for a pair the catalog
/// does not support and for `customObjects`.
pub fn permissions(resource: Resource, verb: Verb) -> BTreeSet<Permission> {
    let Some(loc) = resource.location() else {
        return BTreeSet::new();
    };
    if !resource.supports(verb) {
        return BTreeSet::new();
    }
    let on = |verbs: &[&str]| -> Vec<Permission> {
        verbs
            .iter()
            .map(|v| Permission::new(loc.group, loc.plural, v))
            .collect()
    };
    let mut out: Vec<Permission> = match verb {
        Verb::Get | Verb::GetData | Verb::RolloutStatus => on(&["get"]),
        Verb::List => on(&["list", "watch"]),
        Verb::Create => on(&["create"]),
        Verb::Update => on(&["update"]),
        Verb::Patch => on(&["patch"]),
        Verb::Delete => on(&["delete"]),
        Verb::DeleteMultiple => on(&["deletecollection"]),
        Verb::Restart | Verb::Cordon | Verb::Uncordon => on(&["get", "patch"]),
        Verb::Scale => {
            let mut v = on(&["get", "patch"]);
            let scale = format!("{}/scale", loc.plural);
            v.push(Permission::new(loc.group, &scale, "get"));
            v.push(Permission::new(loc.group, &scale, "patch"));
            v
        }
        Verb::Rollback => {
            let mut v = on(&["get", "patch"]);
            v.push(Permission::new("apps", "replicasets", "list"));
            v
        }
        Verb::Drain => {
            let mut v = on(&["get", "patch"]);
            v.push(Permission::new("", "pods", "list"));
            v.push(Permission::new("", "pods/eviction", "create"));
            v
        }
        Verb::Trigger => {
            let mut v = on(&["get"]);
            v.push(Permission::new("batch", "jobs", "create"));
            v
        }
        Verb::Logs => vec![Permission::new("", "pods/log", "get")],
    };
    out.sort();
    out.into_iter().collect()
}

/// Everything an allowlist's actions need, audit included.
pub fn permissions_for<'a>(
    actions: impl IntoIterator<Item = (Resource, &'a BTreeSet<Verb>)>,
) -> BTreeSet<Permission> {
    let mut all = audit_permissions();
    for (resource, verbs) in actions {
        for verb in verbs {
            all.extend(permissions(resource, *verb));
        }
    }
    all
}

/// RBAC `rules` as a Role would list them: one rule per (group, resource)
/// with its verbs.
pub fn rules(permissions: &BTreeSet<Permission>) -> Vec<serde_json::Value> {
    let mut by_resource: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for p in permissions {
        by_resource
            .entry((&p.group, &p.resource))
            .or_default()
            .insert(&p.verb);
    }
    by_resource
        .into_iter()
        .map(|((group, resource), verbs)| {
            serde_json::json!({
                "apiGroups": [group],
                "resources": [resource],
                "verbs": verbs.into_iter().collect::<Vec<_>>(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(set: &BTreeSet<Permission>) -> Vec<String> {
        set.iter()
            .map(|p| format!("{}/{}:{}", p.group, p.resource, p.verb))
            .collect()
    }

    #[test]
    fn the_documented_mapping() {
        assert_eq!(
            keys(&permissions(Resource::Pods, Verb::List)),
            ["/pods:list", "/pods:watch"]
        );
        assert_eq!(
            keys(&permissions(Resource::Pods, Verb::DeleteMultiple)),
            ["/pods:deletecollection"]
        );
        assert_eq!(
            keys(&permissions(Resource::Deployments, Verb::Scale)),
            [
                "apps/deployments:get",
                "apps/deployments:patch",
                "apps/deployments/scale:get",
                "apps/deployments/scale:patch"
            ]
        );
        assert_eq!(
            keys(&permissions(Resource::Deployments, Verb::Rollback)),
            [
                "apps/deployments:get",
                "apps/deployments:patch",
                "apps/replicasets:list"
            ]
        );
        assert_eq!(
            keys(&permissions(Resource::Nodes, Verb::Drain)),
            [
                "/nodes:get",
                "/nodes:patch",
                "/pods:list",
                "/pods/eviction:create"
            ]
        );
        assert_eq!(
            keys(&permissions(Resource::CronJobs, Verb::Trigger)),
            ["batch/cronjobs:get", "batch/jobs:create"]
        );
        assert_eq!(
            keys(&permissions(Resource::Pods, Verb::Logs)),
            ["/pods/log:get"]
        );
        assert!(permissions(Resource::CustomObjects, Verb::Get).is_empty());
        assert!(permissions(Resource::Pods, Verb::Drain).is_empty());
    }

    #[test]
    fn every_supported_pair_needs_something() {
        for r in Resource::ALL {
            for v in r.verbs() {
                if r != Resource::CustomObjects {
                    assert!(!permissions(r, v).is_empty(), "{r} {v}");
                }
            }
        }
    }

    #[test]
    fn rules_group_verbs_by_resource_and_add_audit() {
        let verbs: BTreeSet<Verb> = [Verb::Get, Verb::Restart].into();
        let perms = permissions_for([(Resource::Deployments, &verbs)]);
        let rules = rules(&perms);
        assert_eq!(
            rules,
            vec![
                serde_json::json!({"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}),
                serde_json::json!({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}),
            ]
        );
    }
}
