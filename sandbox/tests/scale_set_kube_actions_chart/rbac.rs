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
            format!("{NAMESPACE}/{FULLNAME}-runway-state-jobs"),
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
        &format!("{NAMESPACE}/{FULLNAME}-runway-state-jobs"),
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
        [format!("{NAMESPACE}/{FULLNAME}-runway-state-jobs")],
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
fn the_runners_may_write_only_the_jobs_state_and_only_the_server_the_payload_state() {
    let jobs_role = format!("{FULLNAME}-runway-state-jobs");
    let server_role = format!("{FULLNAME}-runway-state");
    let server_account = format!("{FULLNAME}-kube-actions-server");
    let jobs_rules = json!([
        { "apiGroups": [""], "resources": ["configmaps"],
          "resourceNames": ["runway-kubeactions-state-jobs"], "verbs": ["get", "patch", "update"] },
    ]);

    // Without the server: the executors' claims only, for the runners.
    let objects = objects(&with(json!({ "kubernetesActions": { "pods": ["get"] } })));
    let role = named(&objects, "Role", &format!("{NAMESPACE}/{jobs_role}"));
    assert_eq!(role["rules"], jobs_rules);
    let binding = named(&objects, "RoleBinding", &format!("{NAMESPACE}/{jobs_role}"));
    assert_eq!(bound_to(binding), ("Role".to_string(), jobs_role.clone()));
    assert!(
        !by_name(&objects, "Role").contains_key(&format!("{NAMESPACE}/{server_role}")),
        "no payload state without the server"
    );
    assert_eq!(
        state_config_maps(&objects),
        ["runway-kubeactions-state-jobs"]
    );

    // With the server: the payload state and the Lease for its own account.
    let objects = self::objects(&with(json!({
        "kubernetesActions": { "pods": ["get"], "server": { "enabled": true } },
    })));
    assert_eq!(
        named(&objects, "Role", &format!("{NAMESPACE}/{jobs_role}"))["rules"],
        jobs_rules
    );
    let role = named(&objects, "Role", &format!("{NAMESPACE}/{server_role}"));
    assert_eq!(
        role["rules"],
        json!([
            { "apiGroups": [""], "resources": ["configmaps"],
              "resourceNames": ["runway-kubeactions-state"], "verbs": ["get", "patch", "update"] },
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
              "resourceNames": [server_account.clone()], "verbs": ["get", "update"] },
            { "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"] },
        ])
    );
    let binding = named(
        &objects,
        "RoleBinding",
        &format!("{NAMESPACE}/{server_role}"),
    );
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": server_account, "namespace": NAMESPACE }]),
        "the server's account only"
    );
    // The allowlist's RBAC goes to both: the executors and the server run actions.
    let actions = named(
        &objects,
        "RoleBinding",
        &format!("{NAMESPACE}/{FULLNAME}-kube-actions"),
    );
    assert_eq!(
        actions["subjects"],
        json!([
            { "kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE },
            { "kind": "ServiceAccount", "name": server_account, "namespace": NAMESPACE },
        ])
    );
    // Nobody may create ConfigMaps: the chart renders both state ConfigMaps.
    for role in by_name(&objects, "Role").values() {
        assert!(
            !triples(role).contains(&triple("", "configmaps", "create")),
            "{role:#}"
        );
    }
    assert_eq!(
        state_config_maps(&objects),
        ["runway-kubeactions-state", "runway-kubeactions-state-jobs"]
    );
}

/// The state ConfigMaps the chart renders, checked to carry no `data` (an
/// upgrade must not touch the records) and to be kept on uninstall.
fn state_config_maps(objects: &[Value]) -> Vec<String> {
    by_name(objects, "ConfigMap")
        .into_iter()
        .filter(|(key, _)| key.contains("runway-kubeactions-state"))
        .map(|(key, cm)| {
            assert!(cm.get("data").is_none(), "{cm:#}");
            assert_eq!(
                cm["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
                "{cm:#}"
            );
            assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
            key.trim_start_matches(&format!("{NAMESPACE}/")).to_string()
        })
        .collect()
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

// ------------------------------------- what would hand a job more (issue 14)

/// Asserts that `extra` is refused with a message holding every `part`.
fn refused_saying(extra: Value, parts: &[&str]) {
    let values = with(extra);
    let message = refused(&values);
    for part in parts {
        assert!(
            message.contains(part),
            "refusing {values}: {part:?} not in: {message}"
        );
    }
}

#[test]
fn secrets_are_refused_while_the_release_namespace_is_in_scope() {
    let fix = [
        "githubConfigSecret",
        "JIT Secrets",
        "kubernetesActionsNamespaces, leaving runners out",
    ];
    // roleType Role without namespaces: the release namespace.
    let mut parts = vec!["kubernetesActions.secrets:", "release namespace runners"];
    parts.extend(fix);
    refused_saying(
        json!({ "kubernetesActions": { "secrets": ["get"] } }),
        &parts,
    );
    // Any verb, not only reads.
    refused_saying(
        json!({ "kubernetesActions": { "pods": ["get"], "secrets": ["create"] } }),
        &parts,
    );
    // ClusterRole without namespaces: every namespace.
    let mut parts = vec![
        "kubernetesActions.secrets:",
        "every namespace, runners included",
    ];
    parts.extend(fix);
    refused_saying(
        json!({ "kubernetesActions": { "secrets": ["list"] }, "roleType": "ClusterRole" }),
        &parts,
    );
    // Listed namespaces that include the release namespace.
    let mut parts = vec![
        "kubernetesActions.secrets:",
        "kubernetesActionsNamespaces lists the release namespace runners",
    ];
    parts.extend(fix);
    refused_saying(
        json!({ "kubernetesActions": { "secrets": ["get"] },
                "kubernetesActionsNamespaces": ["app-staging", NAMESPACE] }),
        &parts,
    );
    // A raw rule that reaches Secrets there.
    let mut parts = vec!["kubernetesPermissions[1].resources:", "secrets are refused"];
    parts.extend(fix);
    refused_saying(
        json!({ "kubernetesActions": { "customObjects": ["get"] },
                "kubernetesPermissions": [
                    { "apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get"] },
                    { "apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"] },
                ] }),
        &parts,
    );
}

#[test]
fn secrets_render_when_the_namespaces_leave_the_release_namespace_out() {
    let objects = objects(&with(json!({
        "kubernetesActions": { "secrets": ["get"], "customObjects": ["get"] },
        "kubernetesPermissions": [{ "apiGroups": [""], "resources": ["secrets"], "verbs": ["list"] }],
        "kubernetesActionsNamespaces": ["app-staging"],
    })));
    assert_eq!(allowlist(&objects)["actions"]["secrets"], json!(["get"]));
    let role = named(
        &objects,
        "Role",
        &format!("app-staging/{FULLNAME}-kube-actions"),
    );
    let granted = triples(role);
    assert!(
        granted.contains(&triple("", "secrets", "get")),
        "{granted:?}"
    );
    assert!(
        granted.contains(&triple("", "secrets", "list")),
        "{granted:?}"
    );
    // Nothing reaches Secrets in the release namespace.
    for role in by_name(&objects, "Role").values() {
        if role["metadata"]["namespace"] == NAMESPACE {
            assert!(
                !triples(role).iter().any(|(_, r, _)| r == "secrets"),
                "{role:#}"
            );
        }
    }
    // The same with a ClusterRole bound in the listed namespaces only.
    let objects = self::objects(&with(json!({
        "kubernetesActions": { "secrets": ["get"] },
        "roleType": "ClusterRole",
        "kubernetesActionsNamespaces": ["app-staging"],
    })));
    assert_eq!(
        keys(&by_name(&objects, "RoleBinding")),
        [
            format!("app-staging/{FULLNAME}-kube-actions"),
            format!("{NAMESPACE}/{FULLNAME}-runway-state-jobs"),
        ]
    );
    assert!(by_name(&objects, "ClusterRoleBinding").is_empty());
}

#[test]
fn wildcards_and_escalating_verbs_in_kubernetes_permissions_are_refused() {
    let ok = json!({ "apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get"] });
    for verb in ["*", "escalate", "bind", "impersonate"] {
        let bad = json!({ "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"],
                          "verbs": ["get", verb] });
        refused_saying(
            json!({ "kubernetesActions": { "customObjects": ["get"] },
                    "kubernetesPermissions": [ok.clone(), bad] }),
            &[
                "kubernetesPermissions[1].verbs:",
                &format!("`{verb}` is refused"),
                "list the verbs the custom objects need",
            ],
        );
    }
    refused_saying(
        json!({ "kubernetesActions": { "customObjects": ["get"] },
                "kubernetesPermissions": [{ "apiGroups": ["*"], "resources": ["rollouts"], "verbs": ["get"] }] }),
        &[
            "kubernetesPermissions[0].apiGroups:",
            "`*` is refused",
            "name the API groups",
        ],
    );
    refused_saying(
        json!({ "kubernetesActions": { "customObjects": ["get"] },
                "kubernetesActionsNamespaces": ["app-staging"],
                "kubernetesPermissions": [ok.clone(), ok.clone(),
                    { "apiGroups": ["argoproj.io"], "resources": ["*"], "verbs": ["get"] }] }),
        &[
            "kubernetesPermissions[2].resources:",
            "`*` is refused",
            "name the resources",
        ],
    );
}

#[test]
fn kubernetes_permissions_naming_groups_resources_and_verbs_render() {
    let rules = json!([
        { "apiGroups": ["argoproj.io"], "resources": ["rollouts", "rollouts/status"],
          "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"] },
        { "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["get"] },
    ]);
    let objects = objects(&with(json!({
        "kubernetesActions": { "customObjects": ["get"] },
        "kubernetesPermissions": rules.clone(),
    })));
    let role = named(
        &objects,
        "Role",
        &format!("{NAMESPACE}/{FULLNAME}-kube-actions"),
    );
    assert_eq!(
        role["rules"].as_array().unwrap()[1..],
        rules.as_array().unwrap()[..]
    );
}

#[test]
fn a_cluster_wide_binding_is_refused_while_namespaces_are_protected() {
    refused_saying(
        json!({ "kubernetesActions": { "pods": ["get"] },
                "roleType": "ClusterRole",
                "kubernetesActionsProtectedNamespaces": ["prod-db", "payments"] }),
        &[
            "kubernetesActionsProtectedNamespaces:",
            "bound cluster-wide",
            "prod-db, payments",
            "list the namespaces jobs may act in under kubernetesActionsNamespaces instead",
        ],
    );
}

#[test]
fn protected_namespaces_render_with_a_cluster_role_bound_per_namespace() {
    let objects = objects(&with(json!({
        "kubernetesActions": { "pods": ["get"] },
        "roleType": "ClusterRole",
        "kubernetesActionsNamespaces": ["team-a"],
        "kubernetesActionsProtectedNamespaces": ["prod-db"],
    })));
    assert_eq!(
        allowlist(&objects)["protectedNamespaces"],
        json!(["prod-db"])
    );
    assert!(by_name(&objects, "ClusterRoleBinding").is_empty());
    named(
        &objects,
        "RoleBinding",
        &format!("team-a/{FULLNAME}-kube-actions"),
    );
    // And with roleType Role (bound in the release namespace) as well.
    let objects = self::objects(&with(json!({
        "kubernetesActions": { "pods": ["get"] },
        "kubernetesActionsProtectedNamespaces": ["prod-db"],
    })));
    assert_eq!(
        allowlist(&objects)["protectedNamespaces"],
        json!(["prod-db"])
    );
}
