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

#[test]
fn timeouts_out_of_range_are_bad_input_naming_the_field() {
    let deploy =
        json!({"api_version": "apps/v1", "kind": "Deployment", "namespace": "d", "name": "x"});
    let max = runway_agent::kube::action::MAX_TIMEOUT.as_secs();
    for secs in [0, max + 1, 1 << 63, u64::MAX] {
        let err = convert(
            "restart_deployment",
            deploy.clone(),
            Some(json!({"timeout_seconds": secs})),
        )
        .unwrap_err();
        assert!(matches!(err, ActionError::BadInput(_)), "{secs}: {err}");
        assert!(
            err.to_string().contains("params.timeout_seconds"),
            "{secs}: {err}"
        );
    }
    let a = convert(
        "restart_deployment",
        deploy,
        Some(json!({"timeout_seconds": max})),
    )
    .unwrap();
    assert_eq!(a.timeout.as_secs(), max);
}

/// Arbitrary small JSON, for parameters of the wrong type or shape.
fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mutated payloads: action types, resources, timestamps and every
/// parameter drawn from plausible and hostile values. Parsing gives a
/// payload or a `PayloadError`; each action converts or fails with an
/// `ActionError`; an action the executor would accept has a timeout whose
/// deadline arithmetic cannot overflow.
#[test]
fn any_payload_gives_actions_or_typed_errors() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use runway_agent::kube::exec::validate;

    let action_type = prop_oneof![
        prop::sample::select(vec![
            "delete_pod",
            "get_pod",
            "logs_pod",
            "scale_deployment",
            "restart_deployment",
            "patch_deployment",
            "create_config_map",
            "update_config_map",
            "delete_multiple_pods",
            "list_pods",
            "drain_node",
            "cordon_node",
            "trigger_cron_job",
            "get_custom_object",
            "get_data_secret",
        ])
        .prop_map(str::to_string),
        "[a-z_]{0,24}",
    ];
    let resource = (
        prop::sample::select(vec![
            "v1",
            "apps/v1",
            "batch/v1",
            "batch/v1beta1",
            "argoproj.io/v1alpha1",
            "",
            "/",
            "a/b/c",
        ]),
        prop::sample::select(vec![
            "Pod",
            "Deployment",
            "Node",
            "CronJob",
            "ConfigMap",
            "Secret",
            "Rollout",
            "",
            "pod",
        ]),
        proptest::option::of("[a-z0-9-]{0,8}"),
        proptest::option::of("[a-z0-9./-]{0,8}"),
    )
        .prop_map(|(api_version, kind, namespace, name)| {
            json!({"api_version": api_version, "kind": kind, "namespace": namespace, "name": name})
        });
    let count = || {
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u64..100_000).prop_map(Value::from),
            any_json(),
        ]
    };
    let param = prop_oneof![
        ("timeout_seconds", count()),
        ("replicas", count()),
        ("max", count()),
        ("tail_lines", count()),
        ("dry_run", any_json()),
        ("label_selector", any_json()),
        ("container", any_json()),
        ("patch_type", any_json()),
        ("patch", any_json()),
        ("body", any_json()),
        ("unknown", any_json()),
    ];
    let params = proptest::option::of(
        prop::collection::vec(param, 0..5).prop_map(|ps| Value::Object(ps.into_iter().collect())),
    );
    let timestamp = (
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            (1_700_000_000i64..1_900_000_000).prop_map(Value::from),
            any_json(),
        ],
        prop_oneof![any::<u32>().prop_map(Value::from), any_json()],
    );
    let version = prop_oneof![any::<u64>().prop_map(Value::from), any_json()];
    let payload = (action_type, resource, params, timestamp, version).prop_map(
        |(action_type, resource, params, (seconds, nanos), version)| {
            json!({"actions": [{
                "metadata": {"id": "a1b2", "version": version},
                "action_type": action_type,
                "resource": resource,
                "timestamp": {"seconds": seconds, "nanos": nanos},
                "params": params,
            }]})
        },
    );

    let mut runner = TestRunner::new(Config {
        cases: 10_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&payload, |payload| {
        let Ok(parsed) = parse(&payload) else {
            return Ok(());
        };
        for wire in &parsed.actions {
            let Ok(action) = wire.to_action() else {
                continue;
            };
            if validate(&action).is_ok() {
                prop_assert!(
                    std::time::Instant::now()
                        .checked_add(action.timeout)
                        .and_then(|_| action
                            .timeout
                            .checked_add(std::time::Duration::from_secs(5)))
                        .is_some(),
                    "{:?} was accepted",
                    action.timeout
                );
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
