//! Payload parsing and conversion to actions, without a cluster: every
//! `action_type` form, kind/action consistency, and errors that name the
//! field to fix.

use runway_agent::kube::action::PatchKind;
use runway_agent::kube::catalog::{Resource, Verb};
use runway_agent::kube::error::ActionError;
use runway_agent::kube::payload::{Payload, PayloadError, parse_action_type};
use serde_json::{Value, json};

fn action_json(action_type: &str, resource: Value, params: Option<Value>) -> Value {
    let mut a = json!({
        "metadata": {"id": "a1b2", "version": 3},
        "action_type": action_type,
        "resource": resource,
        "timestamp": {"seconds": 1734567890, "nanos": 0},
    });
    if let Some(p) = params {
        a["params"] = p;
    }
    json!({ "actions": [a] })
}

fn parse(v: &Value) -> Result<Payload, PayloadError> {
    Payload::from_json(&serde_json::to_vec(v).unwrap())
}

fn convert(
    action_type: &str,
    resource: Value,
    params: Option<Value>,
) -> Result<runway_agent::kube::action::Action, ActionError> {
    let payload = parse(&action_json(action_type, resource, params)).expect("well-formed");
    payload.actions[0].to_action()
}

fn pod(name: &str) -> Value {
    json!({"api_version": "v1", "kind": "Pod", "namespace": "default", "name": name})
}

#[test]
fn the_documented_example_parses_exactly() {
    let text = br#"{
      "actions": [
        {
          "metadata": {"id": "a1b2", "version": 3},
          "action_type": "delete_pod",
          "resource": {"api_version": "v1", "kind": "Pod", "namespace": "default", "name": "my-pod-xyz"},
          "timestamp": {"seconds": 1734567890, "nanos": 0}
        }
      ]
    }"#;
    let payload = Payload::from_json(text).unwrap();
    let a = &payload.actions[0];
    assert_eq!(a.metadata.id, "a1b2");
    assert_eq!(a.metadata.version, 3);
    assert_eq!(a.timestamp.seconds, 1734567890);
    assert_eq!(
        a.timestamp.to_utc().unwrap().to_rfc3339(),
        "2024-12-19T00:24:50+00:00"
    );
    let action = a.to_action().unwrap();
    assert_eq!(
        (action.verb, action.resource),
        (Verb::Delete, Resource::Pods)
    );
    assert_eq!(action.name.as_deref(), Some("my-pod-xyz"));
    assert_eq!(action.namespace.as_deref(), Some("default"));
    // The wire types serialize back to the same document.
    let again: Value = serde_json::to_value(&payload).unwrap();
    assert_eq!(again, serde_json::from_slice::<Value>(text).unwrap());
}

#[test]
fn every_action_type_form_names_its_verb_and_resource() {
    let cases: &[(&str, Verb, Resource, bool)] = &[
        ("delete_pod", Verb::Delete, Resource::Pods, false),
        (
            "restart_deployment",
            Verb::Restart,
            Resource::Deployments,
            false,
        ),
        (
            "scale_statefulset",
            Verb::Scale,
            Resource::StatefulSets,
            false,
        ),
        (
            "scale_stateful_set",
            Verb::Scale,
            Resource::StatefulSets,
            false,
        ),
        (
            "delete_multiple_pods",
            Verb::DeleteMultiple,
            Resource::Pods,
            true,
        ),
        (
            "delete_multiple_pod",
            Verb::DeleteMultiple,
            Resource::Pods,
            false,
        ),
        ("list_config_maps", Verb::List, Resource::ConfigMaps, true),
        ("get_config_map", Verb::Get, Resource::ConfigMaps, false),
        ("get_configmap", Verb::Get, Resource::ConfigMaps, false),
        ("get_data_secret", Verb::GetData, Resource::Secrets, false),
        (
            "rollout_status_deployment",
            Verb::RolloutStatus,
            Resource::Deployments,
            false,
        ),
        (
            "rollback_deployment",
            Verb::Rollback,
            Resource::Deployments,
            false,
        ),
        ("trigger_cron_job", Verb::Trigger, Resource::CronJobs, false),
        ("logs_pod", Verb::Logs, Resource::Pods, false),
        ("drain_node", Verb::Drain, Resource::Nodes, false),
        ("get_endpoints", Verb::Get, Resource::Endpoints, false),
        (
            "get_persistent_volume_claim",
            Verb::Get,
            Resource::PersistentVolumeClaims,
            false,
        ),
        (
            "get_custom_object",
            Verb::Get,
            Resource::CustomObjects,
            false,
        ),
        (
            "list_custom_objects",
            Verb::List,
            Resource::CustomObjects,
            true,
        ),
    ];
    for (text, verb, resource, plural) in cases {
        assert_eq!(
            parse_action_type(text).unwrap(),
            (*verb, *resource, *plural),
            "{text}"
        );
    }
    for bad in [
        "delete",
        "delete_",
        "explode_pod",
        "delete_widget",
        "deletepod",
        "",
    ] {
        let err = parse_action_type(bad).unwrap_err();
        assert!(matches!(err, ActionError::BadInput(_)), "{bad}: {err}");
        assert!(err.to_string().contains("action_type"), "{bad}: {err}");
    }
    let err = parse_action_type("delete_widget").unwrap_err().to_string();
    assert!(err.contains("unknown kind `widget`"), "{err}");
    assert!(err.contains("config_map"), "{err}");
}

#[test]
fn params_fill_the_action() {
    let deploy =
        json!({"api_version": "apps/v1", "kind": "Deployment", "namespace": "prod", "name": "api"});
    let a = convert(
        "scale_deployment",
        deploy.clone(),
        Some(json!({"replicas": 3, "dry_run": true, "timeout_seconds": 60})),
    )
    .unwrap();
    assert_eq!(a.replicas, Some(3));
    assert!(a.dry_run);
    assert_eq!(a.timeout, std::time::Duration::from_secs(60));

    let a = convert(
        "patch_deployment",
        deploy.clone(),
        Some(json!({"patch": [{"op": "add", "path": "/x", "value": 1}], "patch_type": "json"})),
    )
    .unwrap();
    assert_eq!(a.patch_kind, PatchKind::Json);
    assert!(a.body.unwrap().is_array());

    let a = convert(
        "delete_multiple_pods",
        json!({"api_version": "v1", "kind": "Pod", "namespace": "ci"}),
        Some(json!({"label_selector": "app=x", "max": 5})),
    )
    .unwrap();
    assert_eq!((a.selector.as_deref(), a.max), (Some("app=x"), 5));

    let a = convert(
        "logs_pod",
        pod("p"),
        Some(json!({"container": "c", "tail_lines": 100})),
    )
    .unwrap();
    assert_eq!(
        (a.container.as_deref(), a.tail_lines),
        (Some("c"), Some(100))
    );

    let a = convert(
        "create_config_map",
        json!({"api_version": "v1", "kind": "ConfigMap", "namespace": "ci"}),
        Some(json!({"body": {"metadata": {"name": "x"}}})),
    )
    .unwrap();
    assert_eq!(a.body.unwrap()["metadata"]["name"], "x");

    let a = convert(
        "trigger_cron_job",
        json!({"api_version": "batch/v1beta1", "kind": "CronJob", "namespace": "ci", "name": "nightly"}),
        None,
    )
    .unwrap();
    assert_eq!(a.verb, Verb::Trigger);

    let a = convert(
        "cordon_node",
        json!({"api_version": "v1", "kind": "Node", "name": "n1", "namespace": ""}),
        None,
    )
    .unwrap();
    assert_eq!(a.namespace, None);
}

#[test]
fn custom_objects_take_group_version_kind_from_the_resource() {
    let a = convert(
        "get_custom_object",
        json!({"api_version": "argoproj.io/v1alpha1", "kind": "Rollout", "namespace": "prod", "name": "web"}),
        None,
    )
    .unwrap();
    let c = a.custom.expect("custom kind");
    assert_eq!(
        (c.group.as_str(), c.version.as_str(), c.kind.as_str()),
        ("argoproj.io", "v1alpha1", "Rollout")
    );
    // No group: not a custom object.
    let err = convert(
        "get_custom_object",
        json!({"api_version": "v1", "kind": "Rollout", "name": "web"}),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("group/version"), "{err}");
    // A built-in kind cannot sneak in as a custom object.
    let err = convert(
        "delete_custom_object",
        json!({"api_version": "apps/v1", "kind": "Deployment", "namespace": "p", "name": "api"}),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, ActionError::Policy(_)), "{err}");
    assert!(err.to_string().contains("delete_deployment"), "{err}");
}

#[test]
fn inconsistent_actions_are_refused_by_policy_with_the_reason() {
    // (action_type, resource, what the message must say)
    let cases = [
        (
            "delete_pod",
            json!({"api_version": "apps/v1", "kind": "Deployment", "namespace": "d", "name": "x"}),
            "for kind Pod but resource.kind is `Deployment`",
        ),
        (
            "restart_deployment",
            json!({"api_version": "v1", "kind": "Deployment", "namespace": "d", "name": "x"}),
            "resource.api_version `v1` does not serve Deployment; use apps/v1",
        ),
        (
            "get_cron_job",
            json!({"api_version": "batch/v2", "kind": "CronJob", "namespace": "d", "name": "x"}),
            "use batch/v1 or batch/v1beta1",
        ),
        (
            "restart_pod",
            json!({"api_version": "v1", "kind": "Pod", "namespace": "d", "name": "x"}),
            "pods have no `restart` action",
        ),
        (
            "delete_multiple_pods",
            json!({"api_version": "v1", "kind": "Pod", "namespace": "d"}),
            "params.label_selector is required",
        ),
    ];
    for (action_type, resource, want) in cases {
        let err = convert(action_type, resource, None).unwrap_err();
        assert!(
            matches!(err, ActionError::Policy(_)),
            "{action_type}: {err}"
        );
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains(want), "{action_type}: {err}");
    }
}

#[test]
fn incomplete_actions_are_bad_input_naming_the_field() {
    let ns_pod = json!({"api_version": "v1", "kind": "Pod", "namespace": "d"});
    let deploy =
        json!({"api_version": "apps/v1", "kind": "Deployment", "namespace": "d", "name": "x"});
    let cases = [
        (
            "delete_pod",
            ns_pod.clone(),
            None,
            "resource.name is required",
        ),
        (
            "delete_pod",
            json!({"api_version": "v1", "kind": "Pod", "name": "x"}),
            None,
            "resource.namespace is required",
        ),
        (
            "cordon_node",
            json!({"api_version": "v1", "kind": "Node", "namespace": "d", "name": "n"}),
            None,
            "cluster-scoped",
        ),
        ("delete_pods", pod("x"), None, "plural form"),
        (
            "list_pods",
            pod("x"),
            None,
            "resource.name is not used by list",
        ),
        (
            "scale_deployment",
            deploy.clone(),
            None,
            "params.replicas is required",
        ),
        (
            "scale_deployment",
            deploy.clone(),
            Some(json!({"replicas": -1})),
            "params.replicas is -1",
        ),
        (
            "patch_deployment",
            deploy.clone(),
            None,
            "params.patch is required",
        ),
        (
            "patch_deployment",
            deploy.clone(),
            Some(json!({"patch": {}, "patch_type": "yaml"})),
            "params.patch_type `yaml`",
        ),
        (
            "update_deployment",
            deploy.clone(),
            None,
            "params.body is required",
        ),
    ];
    for (action_type, resource, params, want) in cases {
        let err = convert(action_type, resource, params).unwrap_err();
        assert!(
            matches!(err, ActionError::BadInput(_)),
            "{action_type}: {err}"
        );
        assert!(err.to_string().contains(want), "{action_type}: {err}");
    }
}

#[test]
fn malformed_payloads_name_the_field() {
    let good = action_json("delete_pod", pod("x"), None);
    let with = |path: &[&str], value: Value| {
        let mut v = good.clone();
        let mut at = &mut v["actions"][0];
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        let last = path[path.len() - 1];
        if value.is_null() {
            at.as_object_mut().unwrap().remove(last);
        } else {
            at[last] = value;
        }
        v
    };
    // (changed field, new value or null to remove it, the field the error names)
    let cases = [
        (
            vec!["metadata", "id"],
            Value::Null,
            "actions[0].metadata.id: missing",
        ),
        (
            vec!["metadata", "version"],
            json!("3"),
            "actions[0].metadata.version: invalid type",
        ),
        (
            vec!["metadata"],
            Value::Null,
            "actions[0].metadata: missing",
        ),
        (
            vec!["action_type"],
            json!(7),
            "actions[0].action_type: invalid type",
        ),
        (
            vec!["resource", "kind"],
            Value::Null,
            "actions[0].resource.kind: missing",
        ),
        (
            vec!["resource"],
            json!("pod/x"),
            "actions[0].resource: must be an object, not a string",
        ),
        (
            vec!["timestamp", "seconds"],
            json!(1.5),
            "actions[0].timestamp.seconds: invalid type",
        ),
        (
            vec!["timestamp", "nanos"],
            json!(2_000_000_000u64),
            "actions[0].timestamp: not a time",
        ),
        (
            vec!["params"],
            json!({"replica": 3}),
            "actions[0].params.replica: unknown parameter",
        ),
        (
            vec!["params"],
            json!({"replicas": "three"}),
            "actions[0].params.replicas: invalid type",
        ),
    ];
    for (path, value, want) in cases {
        let err = parse(&with(&path, value)).unwrap_err().to_string();
        assert!(err.starts_with(want), "{path:?}: {err}");
    }
    assert!(matches!(
        Payload::from_json(b"{not json"),
        Err(PayloadError::NotJson(_))
    ));
    let err = parse(&json!({"action": []})).unwrap_err().to_string();
    assert_eq!(err, "actions: missing");
    let err = parse(&json!({"actions": [1]})).unwrap_err().to_string();
    assert_eq!(err, "actions[0]: must be an object, not a number");
    // Unknown keys outside params are the sender's to add.
    let mut extra = good.clone();
    extra["actions"][0]["source"] = json!("ui");
    assert!(parse(&extra).is_ok());
    assert_eq!(parse(&json!({"actions": []})).unwrap().actions.len(), 0);
}
