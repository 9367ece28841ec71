//! The allowlist file and the RBAC `kubernetesActions`, `roleType` and
//! `kubernetesActionsNamespaces` render to, and the refusals of bad input.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;

// --------------------------------------------------------------- allowlist

#[test]
fn the_allowlist_lists_the_actions_and_the_release_namespace() {
    let objects = objects(&with(json!({
        "kubernetesActions": {
            "pods": ["get", "list", "delete", "get"],
            "deployments": ["get", "restart", "rollback"],
        },
    })));
    assert_eq!(
        allowlist(&objects),
        json!({
            "actions": {
                "deployments": ["get", "restart", "rollback"],
                "pods": ["get", "list", "delete"],
            },
            "namespaces": [NAMESPACE],
            "protectedNamespaces": [],
        })
    );
}

#[test]
fn the_allowlist_carries_listed_and_protected_namespaces() {
    let objects = objects(&with(json!({
        "kubernetesActions": { "pods": ["get"] },
        "kubernetesActionsNamespaces": ["app-staging", "kube-system"],
        "kubernetesActionsProtectedNamespaces": ["prod-db"],
    })));
    let list = allowlist(&objects);
    assert_eq!(list["namespaces"], json!(["app-staging", "kube-system"]));
    assert_eq!(list["protectedNamespaces"], json!(["prod-db"]));
}

#[test]
fn a_cluster_role_without_namespaces_allows_any_unprotected_namespace() {
    let objects = objects(&with(json!({
        "kubernetesActions": { "nodes": ["cordon"] },
        "roleType": "ClusterRole",
    })));
    assert_eq!(allowlist(&objects)["namespaces"], json!([]));
}

// -------------------------------------------------------------------- RBAC

#[test]
fn role_type_role_binds_a_role_in_the_release_namespace() {
    let objects = objects(&with(json!({
        "kubernetesActions": { "pods": ["get", "list"], "deployments": ["restart"] },
    })));
    let roles = by_name(&objects, "Role");
    assert_eq!(
        keys(&roles),
        [
            format!("{NAMESPACE}/{FULLNAME}-kube-actions"),
            format!("{NAMESPACE}/{FULLNAME}-runway-state"),
        ]
    );
    let role = roles[&format!("{NAMESPACE}/{FULLNAME}-kube-actions")];
    assert_eq!(
        role["rules"],
        json!([
            { "apiGroups": [""], "resources": ["events"], "verbs": ["create"] },
            { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"] },
            { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"] },
        ]),
        "rules merged per (apiGroup, resource), verbs sorted"
    );
    let binding = named(
        &objects,
        "RoleBinding",
        &format!("{NAMESPACE}/{FULLNAME}-kube-actions"),
    );
    assert_eq!(
        bound_to(binding),
        ("Role".to_string(), format!("{FULLNAME}-kube-actions"))
    );
    assert!(by_name(&objects, "ClusterRole").is_empty());
    assert!(by_name(&objects, "ClusterRoleBinding").is_empty());
}

#[test]
fn role_type_role_with_namespaces_puts_a_role_in_each() {
    let objects = objects(&with(json!({
        "kubernetesActions": { "pods": ["delete"] },
        "kubernetesActionsNamespaces": ["team-a", "team-b"],
    })));
    let name = format!("{FULLNAME}-kube-actions");
    let actions_roles: Vec<String> = keys(&by_name(&objects, "Role"))
        .into_iter()
        .filter(|k| k.ends_with(&name))
        .collect();
    assert_eq!(
        actions_roles,
        [format!("team-a/{name}"), format!("team-b/{name}")]
    );
    for ns in ["team-a", "team-b"] {
        let binding = named(&objects, "RoleBinding", &format!("{ns}/{name}"));
        assert_eq!(bound_to(binding), ("Role".to_string(), name.clone()));
    }
    // Runway's bookkeeping stays in the release namespace.
    named(
        &objects,
        "Role",
        &format!("{NAMESPACE}/{FULLNAME}-runway-state"),
    );
}

#[test]
fn role_type_cluster_role_without_namespaces_binds_cluster_wide() {
    let objects = objects(&with(json!({
        "kubernetesActions": { "pods": ["get"], "nodes": ["drain"] },
        "roleType": "ClusterRole",
    })));
    let name = format!("{NAMESPACE}-{FULLNAME}-kube-actions");
    assert_eq!(keys(&by_name(&objects, "ClusterRole")), [name.as_str()]);
    let role = named(&objects, "ClusterRole", &name);
    assert_eq!(
        triples(role),
        BTreeSet::from([
            triple("", "events", "create"),
            triple("", "nodes", "get"),
            triple("", "nodes", "patch"),
            triple("", "pods", "get"),
            triple("", "pods", "list"),
            triple("", "pods/eviction", "create"),
        ])
    );
    let binding = named(&objects, "ClusterRoleBinding", &name);
    assert_eq!(bound_to(binding), ("ClusterRole".to_string(), name.clone()));
    let bindings = by_name(&objects, "RoleBinding");
    assert_eq!(
        keys(&bindings),
        [format!("{NAMESPACE}/{FULLNAME}-runway-state")],
        "no RoleBinding to the actions ClusterRole"
    );
}

#[test]
fn a_cluster_role_with_namespaces_is_bound_there_and_cluster_scoped_rules_apart() {
    let objects = objects(&with(json!({
        "kubernetesActions": { "pods": ["get"], "nodes": ["cordon"] },
        "roleType": "ClusterRole",
        "kubernetesActionsNamespaces": ["team-a", "team-b"],
    })));
    let name = format!("{NAMESPACE}-{FULLNAME}-kube-actions");
    let cluster = format!("{name}-cluster");
    assert_eq!(
        keys(&by_name(&objects, "ClusterRole")),
        [name.clone(), cluster.clone()]
    );
    assert_eq!(
        triples(named(&objects, "ClusterRole", &name)),
        BTreeSet::from([triple("", "events", "create"), triple("", "pods", "get")])
    );
    assert_eq!(
        triples(named(&objects, "ClusterRole", &cluster)),
        BTreeSet::from([triple("", "nodes", "get"), triple("", "nodes", "patch")])
    );
    for ns in ["team-a", "team-b"] {
        let binding = named(
            &objects,
            "RoleBinding",
            &format!("{ns}/{FULLNAME}-kube-actions"),
        );
        assert_eq!(bound_to(binding), ("ClusterRole".to_string(), name.clone()));
    }
    assert_eq!(
        keys(&by_name(&objects, "ClusterRoleBinding")),
        [cluster.as_str()]
    );
    let binding = named(&objects, "ClusterRoleBinding", &cluster);
    assert_eq!(bound_to(binding), ("ClusterRole".to_string(), cluster));

    // Without cluster-scoped resources there is no second ClusterRole.
    let objects = self::objects(&with(json!({
        "kubernetesActions": { "pods": ["get"] },
        "roleType": "ClusterRole",
        "kubernetesActionsNamespaces": ["team-a"],
    })));
    assert_eq!(keys(&by_name(&objects, "ClusterRole")), [name]);
    assert!(by_name(&objects, "ClusterRoleBinding").is_empty());
}

#[test]
fn kubernetes_permissions_are_added_as_written() {
    let raw = json!({
        "apiGroups": ["argoproj.io"],
        "resources": ["rollouts"],
        "resourceNames": ["api"],
        "verbs": ["get", "patch"],
    });
    let objects = objects(&with(json!({
        "kubernetesActions": { "customObjects": ["get", "patch"] },
        "kubernetesPermissions": [raw.clone()],
    })));
    let role = named(
        &objects,
        "Role",
        &format!("{NAMESPACE}/{FULLNAME}-kube-actions"),
    );
    assert_eq!(
        role["rules"],
        json!([{ "apiGroups": [""], "resources": ["events"], "verbs": ["create"] }, raw])
    );
    assert_eq!(
        allowlist(&objects)["actions"],
        json!({ "customObjects": ["get", "patch"] })
    );
}

#[test]
fn runways_own_state_role_is_narrow_and_bound_in_the_release_namespace() {
    let objects = objects(&with(json!({ "kubernetesActions": { "pods": ["get"] } })));
    let name = format!("{FULLNAME}-runway-state");
    let role = named(&objects, "Role", &format!("{NAMESPACE}/{name}"));
    assert_eq!(
        role["rules"],
        json!([
            { "apiGroups": [""], "resources": ["configmaps"],
              "resourceNames": ["runway-kubeactions-state"], "verbs": ["get", "patch", "update"] },
            { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"] },
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
              "resourceNames": [format!("{FULLNAME}-kube-actions-server")], "verbs": ["get", "update"] },
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"] },
        ])
    );
    let binding = named(&objects, "RoleBinding", &format!("{NAMESPACE}/{name}"));
    assert_eq!(bound_to(binding), ("Role".to_string(), name));
}

// --------------------------------------------------------------- refusals

#[test]
fn bad_kube_actions_are_refused_naming_what_to_fix() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({ "kubernetesActions": { "pods": ["restart"] } }),
            vec![
                "kubernetesActions.pods",
                "`restart`",
                "supported: get, list, create, update, patch, delete, deleteMultiple, logs",
            ],
        ),
        (
            json!({ "kubernetesActions": { "deployments": ["get", "explode"] } }),
            vec![
                "kubernetesActions.deployments",
                "`explode`",
                "restart, scale, rollback, rolloutStatus",
            ],
        ),
        (
            json!({ "kubernetesActions": { "deploymentz": ["get"] } }),
            vec![
                "kubernetesActions.deploymentz",
                "unknown resource",
                "deployments",
            ],
        ),
        (
            json!({ "kubernetesActions": { "nodes": ["cordon"] } }),
            vec!["nodes", "cluster-scoped", "roleType: ClusterRole"],
        ),
        (
            json!({ "kubernetesActions": { "persistentVolumes": ["get"] }, "roleType": "Role" }),
            vec!["persistentVolumes", "roleType: ClusterRole"],
        ),
        (
            json!({ "kubernetesPermissions": [{ "apiGroups": ["x"], "resources": ["y"], "verbs": ["get"] }] }),
            vec!["kubernetesPermissions", "kubernetesActions"],
        ),
        (
            json!({ "kubernetesActions": { "server": { "enabled": true } } }),
            vec!["kubernetesActions.server.enabled", "lists none"],
        ),
        (
            json!({ "kubernetesActions": { "pods": ["get"],
                "server": { "enabled": true, "auth": { "jwtPublicKey": "PEM" } } } }),
            vec!["kubernetesActions.server.auth.runnerUrn"],
        ),
        (
            json!({ "kubernetesActions": { "pods": ["get"] }, "serviceAccount": { "create": false } }),
            vec!["kubernetesActions", "serviceAccount.create"],
        ),
        // The schema's share.
        (
            json!({ "roleType": "Namespace" }),
            vec!["/roleType", "Role", "ClusterRole"],
        ),
        (
            json!({ "kubernetesActions": { "pods": "get" } }),
            vec!["/kubernetesActions/pods"],
        ),
        (
            json!({ "kubernetesActionsNamespaces": ["Not_A_Namespace"] }),
            vec!["/kubernetesActionsNamespaces/0"],
        ),
        (
            json!({ "aws": { "sessionTagging": "sometimes" } }),
            vec!["/aws/sessionTagging", "auto"],
        ),
        (
            json!({ "aws": { "maxSessionDuration": 899 } }),
            vec!["/aws/maxSessionDuration", "900"],
        ),
        (
            json!({ "aws": { "maxSessionDuration": 43201 } }),
            vec!["/aws/maxSessionDuration", "maximum"],
        ),
        (json!({ "aws": { "roleArn": "x" } }), vec!["roleArn"]),
        (
            json!({ "kubernetesActions": { "pods": ["get"], "server": { "replicas": 0 } } }),
            vec!["/kubernetesActions/server/replicas"],
        ),
    ];
    for (extra, wanted) in cases {
        let values = with(extra);
        let message = refused(&values);
        for part in wanted {
            assert!(
                message.contains(part),
                "refusing {values}: {part:?} not in: {message}"
            );
        }
    }
}
