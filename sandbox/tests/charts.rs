//! The controller chart with the real Helm 4 SDK: it lints clean, renders
//! the objects it should, refuses bad values with a message naming the key,
//! and grants the controller exactly the API calls it makes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use runway_sandbox::helm::{self, HelmError, Severity};
use serde_json::{Value, json};

/// Every (API group, resource, verb) the controller uses where it serves
/// RunnerScaleSets, read from controller/src. A new API call in the code
/// belongs here and in the chart's `runway-controller.rules`.
const CONTROLLER_RULES: &[(&str, &str, &[&str])] = &[
    // manager: watcher over RunnerScaleSets (list, watch); finalizer add and
    // remove (JSON patch).
    (
        "actions.runway.dev",
        "runnerscalesets",
        &["list", "watch", "patch"],
    ),
    // supervisor, checkpoint, manager: status patches; the checkpoint reads
    // the status again (get) when its JSON-patch `test` on sessionId fails.
    (
        "actions.runway.dev",
        "runnerscalesets/status",
        &["get", "patch"],
    ),
    // runner reconciler: watcher and list by label, create, delete, and JSON
    // patches (finalizer removal, busy annotation).
    ("", "pods", &["list", "watch", "create", "patch", "delete"]),
    // GitHub credentials Secret (get), JIT config Secret (create; the
    // half-made runner check gets it by name). No list: it would show the
    // controller every Secret.
    ("", "secrets", &["get", "create"]),
    // the runner's ServiceAccount (IRSA annotation check).
    ("", "serviceaccounts", &["get"]),
    // githubServerTLS certificate ConfigMap.
    ("", "configmaps", &["get"]),
    // kube-runtime 5's Recorder writes events.k8s.io/v1 Events (create, and
    // patch for a repeated event); core/v1 Events are not used.
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// The leader Lease (controller/src/leader): get_opt, create, replace.
const LEASE_RULES: &[(&str, &str, &[&str])] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "create", "update"],
)];

type Triple = (String, String, String);

fn expected(table: &[(&str, &str, &[&str])]) -> BTreeSet<Triple> {
    table
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(move |v| (group.to_string(), resource.to_string(), v.to_string()))
        })
        .collect()
}

fn chart() -> PathBuf {
    helm::chart_path("runway-controller")
}

/// Every object the chart renders, parsed.
fn objects(values: Value) -> Vec<serde_yaml::Value> {
    let rendered = helm::render(&chart(), &values, "runway", "runway-system")
        .unwrap_or_else(|e| panic!("render with {values}: {e}"));
    helm::manifests(&rendered)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|v| serde_yaml::to_value(v).expect("JSON is YAML"))
        .collect()
}

fn kind(o: &serde_yaml::Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

fn of_kind<'a>(objects: &'a [serde_yaml::Value], k: &str) -> Vec<&'a serde_yaml::Value> {
    objects.iter().filter(|o| kind(o) == k).collect()
}

fn one<'a>(objects: &'a [serde_yaml::Value], k: &str) -> &'a serde_yaml::Value {
    let found = of_kind(objects, k);
    assert_eq!(found.len(), 1, "expected one {k}, got {}", found.len());
    found[0]
}

fn args(objects: &[serde_yaml::Value]) -> Vec<String> {
    let deployment = one(objects, "Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect()
}

/// The value following `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn rules(role: &serde_yaml::Value) -> BTreeSet<Triple> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_sequence()
                .unwrap_or_else(|| panic!("rule without {key}: {rule:?}"))
                .iter()
                .map(|v| v.as_str().expect("string").to_string())
                .collect()
        };
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "unexpected rule shape: {rule:?}"
        );
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

fn namespace(o: &serde_yaml::Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn refused(values: Value) -> String {
    match helm::render(&chart(), &values, "runway", "runway-system") {
        Ok(_) => panic!("values {values} were accepted"),
        Err(e @ HelmError::Helm { .. }) => e.to_string(),
        Err(e) => panic!("values {values}: not Helm's refusal: {e}"),
    }
}

#[test]
fn lints_clean_with_default_values() {
    let report = helm::lint(&chart(), &json!({})).expect("lint");
    assert!(report.errors.is_empty(), "lint errors: {report:?}");
    let findings: Vec<_> = report
        .at_least(Severity::Info)
        .filter(|m| m.message != "icon is recommended")
        .collect();
    assert!(findings.is_empty(), "lint findings: {findings:?}");
}

#[test]
fn default_render_has_the_expected_kinds_and_flags() {
    let objects = objects(json!({ "kubeClient": { "qps": 12.5, "burst": 40 } }));
    let mut kinds: Vec<&str> = objects.iter().map(kind).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );

    let args = args(&objects);
    assert_eq!(args[0], "run");
    assert_eq!(flag(&args, "--kube-qps"), Some("12.5"));
    assert_eq!(flag(&args, "--kube-burst"), Some("40"));
    assert_eq!(flag(&args, "--leader-elect"), Some("true"));
    assert_eq!(flag(&args, "--metrics-addr"), Some("0.0.0.0:8080"));
    assert_eq!(flag(&args, "--log-format"), Some("text"));
    assert_eq!(flag(&args, "--github-rate"), Some("20"));
    assert_eq!(flag(&args, "--github-burst"), Some("200"));
    assert_eq!(
        flag(&args, "--namespace"),
        None,
        "all namespaces by default"
    );

    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["runAsUser"].as_u64(), Some(65532));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(
        security["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    let env: BTreeMap<&str, &serde_yaml::Value> = container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("env name"), e))
        .collect();
    assert_eq!(env["RUST_LOG"]["value"].as_str(), Some("info"));
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.namespace")
    );
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.name")
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["path"].as_str(),
            Some("/healthz")
        );
    }

    let service = one(&objects, "Service");
    assert_eq!(
        service["spec"]["ports"][0]["name"].as_str(),
        Some("metrics")
    );
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(8080));

    for o in &objects {
        let labels = &o["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
        ] {
            assert!(labels.get(key).is_some(), "{} lacks label {key}", kind(o));
        }
    }
}

#[test]
fn log_format_and_github_rate_limit_are_passed_as_flags() {
    let objects = objects(json!({
        "log": { "level": "debug", "format": "json" },
        "githubRateLimit": { "perSecond": 7, "burst": 1000000 },
    }));
    let args = args(&objects);
    assert_eq!(flag(&args, "--log-format"), Some("json"));
    assert_eq!(flag(&args, "--github-rate"), Some("7"));
    // Whole numbers stay whole (not 1e+06), as the controller parses them.
    assert_eq!(flag(&args, "--github-burst"), Some("1000000"));
}

#[test]
fn cluster_role_grants_exactly_what_the_controller_uses() {
    let objects = objects(json!({}));
    assert_eq!(
        rules(one(&objects, "ClusterRole")),
        expected(CONTROLLER_RULES)
    );
    let lease_role = one(&objects, "Role");
    assert_eq!(namespace(lease_role), "runway-system");
    assert_eq!(rules(lease_role), expected(LEASE_RULES));
}

#[test]
fn one_watched_namespace_gets_a_role_there_and_no_cluster_role() {
    let objects = objects(json!({ "watchNamespaces": ["team-a"] }));
    assert!(of_kind(&objects, "ClusterRole").is_empty());
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty());
    assert_eq!(flag(&args(&objects), "--namespace"), Some("team-a"));

    let roles = of_kind(&objects, "Role");
    let watched: Vec<_> = roles.iter().filter(|r| namespace(r) == "team-a").collect();
    assert_eq!(watched.len(), 1, "one Role in team-a");
    assert_eq!(rules(watched[0]), expected(CONTROLLER_RULES));
    let lease: Vec<_> = roles
        .iter()
        .filter(|r| namespace(r) == "runway-system")
        .collect();
    assert_eq!(
        lease.len(),
        1,
        "the Lease Role stays in the release namespace"
    );
    assert_eq!(rules(lease[0]), expected(LEASE_RULES));

    let binding = of_kind(&objects, "RoleBinding")
        .into_iter()
        .find(|b| namespace(b) == "team-a")
        .expect("a RoleBinding in team-a");
    assert_eq!(
        binding["subjects"][0]["namespace"].as_str(),
        Some("runway-system")
    );
}

#[test]
fn two_watched_namespaces_are_refused_clearly() {
    let message = refused(json!({ "watchNamespaces": ["team-a", "team-b"] }));
    assert!(
        message.contains(
            "watchNamespaces: the controller watches one namespace or all; give one or leave it empty"
        ),
        "{message}"
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_naming_the_key() {
    let message = refused(json!({ "replicaCount": 2 }));
    assert!(message.contains("replicaCount"), "{message}");
    assert!(message.contains("runway-controller"), "{message}");

    let message = refused(json!({ "replicas": "two" }));
    assert!(message.contains("/replicas"), "{message}");

    let message = refused(json!({ "kubeClient": { "burst": 0 } }));
    assert!(message.contains("/kubeClient/burst"), "{message}");

    let message = refused(json!({ "log": { "format": "xml" } }));
    assert!(message.contains("/log/format"), "{message}");

    let message = refused(json!({ "githubRateLimit": { "perSecond": 0 } }));
    assert!(message.contains("/githubRateLimit/perSecond"), "{message}");

    let message = refused(json!({ "githubRateLimit": { "burst": 2.5 } }));
    assert!(message.contains("/githubRateLimit/burst"), "{message}");

    let message = refused(json!({ "githubRateLimit": { "qps": 5 } }));
    assert!(message.contains("qps"), "{message}");

    let report = helm::lint(&chart(), &json!({ "replicaCount": 2 })).expect("lint");
    assert!(
        report.errors.iter().any(|e| e.contains("replicaCount")),
        "{report:?}"
    );
}

#[test]
fn service_monitor_is_optional() {
    let objects = objects(json!({ "metrics": { "serviceMonitor": { "enabled": true } } }));
    let monitor = one(&objects, "ServiceMonitor");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"].as_str(),
        Some("metrics")
    );
}
