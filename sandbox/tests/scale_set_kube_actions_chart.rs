//! The scale-set chart's Kubernetes-actions and AWS side, rendered with the
//! real Helm 4 SDK: `kubernetesActions` becomes the allowlist file runner
//! pods mount (in exactly the format `runway` parses) plus RBAC bound the
//! way `roleType` and `kubernetesActionsNamespaces` say, and bad input is
//! refused naming the key ([`rbac`]); the runner pod gets the mounts and
//! env, `kubernetesActions.server` adds the `runway serve` Deployment,
//! Service and token Secret, `aws` becomes the mounted config, and with
//! none of it set the chart renders as before ([`pod`]; the snapshots of
//! `chart_snapshots.rs` hold the exact text); installed for real, the RBAC
//! grants what the allowlist says and no more ([`install`]). The reusable
//! action `workflows/actions/kube` is checked in [`kube_action`].
//!
//! The RBAC table itself (every resource and verb) is checked against the
//! Rust table in `runner-image/agent/tests/chart_rbac.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use runway_sandbox::helm::{self, HelmError};
use serde_json::{Value, json};

const RELEASE: &str = "arm-builders";
const NAMESPACE: &str = "runners";
const FULLNAME: &str = "arm-builders-gha-rs";
const SERVICE_ACCOUNT: &str = "arm-builders-gha-rs-runner";

fn chart() -> PathBuf {
    helm::chart_path("runway-scale-set")
}

/// The smallest values that install, with `extra` top-level keys over them.
fn with(extra: Value) -> Value {
    let mut out = json!({
        "githubConfigUrl": "https://github.com/acme-corp",
        "githubConfigSecret": { "github_token": "ghp_exampleExampleExample" },
    });
    let (Value::Object(map), Value::Object(extra)) = (&mut out, extra) else {
        panic!("values must be objects");
    };
    map.extend(extra);
    out
}

/// Every object the chart renders, parsed.
fn objects(values: &Value) -> Vec<Value> {
    let rendered = helm::render(&chart(), values, RELEASE, NAMESPACE)
        .unwrap_or_else(|e| panic!("render with {values}: {e}"));
    helm::manifests(&rendered).unwrap_or_else(|e| panic!("{e}"))
}

/// Helm's refusal of `values`, as text.
fn refused(values: &Value) -> String {
    match helm::render(&chart(), values, RELEASE, NAMESPACE) {
        Ok(_) => panic!("values {values} were accepted"),
        Err(e @ HelmError::Helm { .. }) => e.to_string(),
        Err(e) => panic!("values {values}: not Helm's refusal: {e}"),
    }
}

/// The objects of `kind`, as "namespace/name" (or "name") -> object.
fn by_name<'a>(objects: &'a [Value], kind: &str) -> BTreeMap<String, &'a Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| {
            let name = o["metadata"]["name"].as_str().expect("name");
            let key = match o["metadata"]["namespace"].as_str() {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_string(),
            };
            (key, o)
        })
        .collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, key: &str) -> &'a Value {
    let all = by_name(objects, kind);
    all.get(key)
        .copied()
        .unwrap_or_else(|| panic!("no {kind} {key}; have {:?}", all.keys().collect::<Vec<_>>()))
}

fn keys(map: &BTreeMap<String, &Value>) -> Vec<String> {
    map.keys().cloned().collect()
}

/// The allowlist file's text and its parse, checked to hold only the keys
/// `runway`'s parser accepts (it denies unknown fields).
fn allowlist(objects: &[Value]) -> Value {
    let cm = named(
        objects,
        "ConfigMap",
        &format!("{NAMESPACE}/{FULLNAME}-kube-actions"),
    );
    let text = cm["data"]["allowlist.yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("no allowlist.yaml: {cm:#}"));
    let parsed: Value =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("allowlist is not YAML: {e}\n{text}"));
    let fields: BTreeSet<&str> = parsed
        .as_object()
        .expect("a map")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["actions", "namespaces", "protectedNamespaces"]),
        "{text}"
    );
    parsed
}

/// (roleRef kind/name, subjects) of a binding, checked to name the runners'
/// ServiceAccount only.
fn bound_to(binding: &Value) -> (String, String) {
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE }]),
        "{binding:#}"
    );
    (
        binding["roleRef"]["kind"]
            .as_str()
            .expect("kind")
            .to_string(),
        binding["roleRef"]["name"]
            .as_str()
            .expect("name")
            .to_string(),
    )
}

/// (apiGroup, resource, verb) triples of a Role's rules.
fn triples(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|v| v.as_str().expect("string").to_string())
                .collect()
        };
        for g in strings("apiGroups") {
            for r in strings("resources") {
                for v in strings("verbs") {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn triple(g: &str, r: &str, v: &str) -> (String, String, String) {
    (g.to_string(), r.to_string(), v.to_string())
}

/// The `runner` container of the RunnerScaleSet's pod template.
fn runner(objects: &[Value]) -> &Value {
    let rss = objects
        .iter()
        .find(|o| o["kind"] == "RunnerScaleSet")
        .expect("a RunnerScaleSet");
    rss["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "runner")
        .expect("a runner container")
}

fn env_names(container: &Value) -> Vec<&str> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| e["name"].as_str().expect("name"))
                .collect()
        })
        .unwrap_or_default()
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no env {name}: {container:#}"))
}

#[path = "scale_set_kube_actions_chart/install.rs"]
mod install;
#[path = "scale_set_kube_actions_chart/kube_action.rs"]
mod kube_action;
#[path = "scale_set_kube_actions_chart/pod.rs"]
mod pod;
#[path = "scale_set_kube_actions_chart/rbac.rs"]
mod rbac;
