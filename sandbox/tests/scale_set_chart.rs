//! The scale-set chart with the real Helm 4 SDK: it lints clean, renders one
//! RunnerScaleSet (plus the credentials Secret and the runners'
//! ServiceAccount when it owns them) from values written for ARC's
//! `gha-runner-scale-set` chart, refuses what Runway cannot do with a message
//! naming the key, and every RunnerScaleSet it renders fits the CRD the
//! controller chart installs (read from that chart, so the two cannot drift).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine;
use runway_sandbox::helm::{self, HelmError, Severity};
use serde_json::{Value, json};
use support::example;

const RELEASE: &str = "arm-builders";
const NAMESPACE: &str = "runners";

fn chart() -> PathBuf {
    helm::chart_path("runway-scale-set")
}

/// The smallest values that install: a URL and a PAT.
fn minimal() -> Value {
    json!({
        "githubConfigUrl": "https://github.com/acme-corp",
        "githubConfigSecret": { "github_token": "ghp_exampleExampleExample" },
    })
}

/// `values` over [`minimal`] (top-level keys replaced).
fn with(values: Value) -> Value {
    let mut out = minimal();
    let (Value::Object(out_map), Value::Object(extra)) = (&mut out, values) else {
        panic!("values must be objects");
    };
    out_map.extend(extra);
    out
}

/// Every file the chart renders, by template path.
fn render(values: &Value) -> std::collections::BTreeMap<String, String> {
    helm::render(&chart(), values, RELEASE, NAMESPACE)
        .unwrap_or_else(|e| panic!("render with {values}: {e}"))
}

/// Every object the chart renders, parsed.
fn objects(values: &Value) -> Vec<Value> {
    helm::manifests(&render(values)).unwrap_or_else(|e| panic!("{e}"))
}

fn notes(values: &Value) -> String {
    render(values)
        .into_iter()
        .find(|(path, _)| path.ends_with("NOTES.txt"))
        .map(|(_, text)| text)
        .expect("NOTES.txt is rendered")
}

fn kinds(objects: &[Value]) -> Vec<&str> {
    let mut kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().expect("kind"))
        .collect();
    kinds.sort_unstable();
    kinds
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

/// The one RunnerScaleSet, checked against the CRD's schema.
fn scale_set(objects: &[Value]) -> &Value {
    let rss = one(objects, "RunnerScaleSet");
    assert_eq!(rss["apiVersion"], "actions.runway.dev/v1alpha1");
    let errors = check(&rss["spec"], crd_spec_schema(), "spec");
    assert!(
        errors.is_empty(),
        "the CRD refuses the RunnerScaleSet: {errors:#?}\n{rss:#}"
    );
    rss
}

fn refused(values: &Value) -> String {
    match helm::render(&chart(), values, RELEASE, NAMESPACE) {
        Ok(_) => panic!("values {values} were accepted"),
        Err(e @ HelmError::Helm { .. }) => e.to_string(),
        Err(e) => panic!("values {values}: not Helm's refusal: {e}"),
    }
}

fn decoded(secret: &Value, key: &str) -> String {
    let data = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("Secret has no {key}: {secret:#}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8")
}

/// The CRD's openAPIV3Schema of `spec`, from the controller chart's crds/.
fn crd_spec_schema() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let dir = helm::chart_path("runway-controller").join("crds");
        let mut found = None;
        for entry in std::fs::read_dir(&dir).expect("the controller chart's crds/") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("CRD file");
            let crd: Value = serde_yaml::from_str(&text).expect("CRD YAML");
            if crd["spec"]["names"]["kind"] != "RunnerScaleSet" {
                continue;
            }
            let version = crd["spec"]["versions"]
                .as_array()
                .expect("versions")
                .iter()
                .find(|v| v["name"] == "v1alpha1")
                .expect("version v1alpha1");
            found = Some(version["schema"]["openAPIV3Schema"]["properties"]["spec"].clone());
        }
        found.expect("a RunnerScaleSet CRD in charts/runway-controller/crds")
    })
}

/// What the API server checks of `value` against a structural schema (the
/// subset the CRD uses): types, properties (unknown ones are pruned, so they
/// are errors here), required, enum, maxLength, minimum, items.
fn check(value: &Value, schema: &Value, at: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{at}: null"));
        }
        return errors;
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    let fits = match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    };
    if !fits {
        errors.push(format!("{at}: {value} is not of type {ty}"));
        return errors;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(s), Some(max)) = (value.as_str(), schema["maxLength"].as_u64())
        && s.chars().count() as u64 > max
    {
        errors.push(format!("{at}: longer than {max}"));
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64())
        && n < min
    {
        errors.push(format!("{at}: {n} is below {min}"));
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            errors.extend(check(item, item_schema, &format!("{at}[{i}]")));
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().expect("required key");
            if !object.contains_key(key) {
                errors.push(format!("{at}: required {key} is missing"));
            }
        }
        if schema["x-kubernetes-preserve-unknown-fields"] != true {
            let properties = schema["properties"].as_object();
            for (key, field) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(field_schema) => {
                        errors.extend(check(field, field_schema, &format!("{at}.{key}")))
                    }
                    None => errors.push(format!("{at}: {key} is not in the CRD")),
                }
            }
        }
    }
    errors
}

fn assert_no_findings(values: &Value, what: &str) {
    let report = helm::lint(&chart(), values).expect("lint");
    assert!(report.errors.is_empty(), "{what}: lint errors: {report:?}");
    let findings: Vec<_> = report
        .at_least(Severity::Info)
        .filter(|m| m.message != "icon is recommended")
        .collect();
    assert!(findings.is_empty(), "{what}: lint findings: {findings:?}");
}

#[test]
fn lints_clean_with_the_defaults_and_each_example() {
    assert_no_findings(&minimal(), "defaults with a URL and a PAT");
    for name in ["arc-migration", "eks-arm64-dind-irsa"] {
        assert_no_findings(&example(name), name);
    }
}

#[test]
fn the_checker_catches_what_the_crd_refuses() {
    // The check in scale_set() is only worth something if it can fail.
    let schema = crd_spec_schema();
    let keys: BTreeSet<&str> = schema["properties"]
        .as_object()
        .expect("spec properties")
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "githubConfigUrl",
        "githubConfigSecret",
        "runnerScaleSetLabels",
        "serviceAccountName",
        "template",
    ] {
        assert!(keys.contains(key), "the CRD lost {key}: {keys:?}");
    }
    let errors = check(
        &json!({ "githubConfigUrl": "u", "scaleSetLabels": ["x"], "minRunners": -1,
                 "containerMode": { "type": "docker" }, "template": { "any": 1 } }),
        schema,
        "spec",
    );
    let text = errors.join("\n");
    for expected in [
        "required githubConfigSecret is missing",
        "scaleSetLabels is not in the CRD",
        "spec.minRunners: -1 is below 0",
        "spec.containerMode.type: \"docker\" is not one of",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn a_pat_map_makes_a_secret_the_scale_set_refers_to() {
    let objects = objects(&with(json!({ "minRunners": 1, "maxRunners": 3 })));
    assert_eq!(
        kinds(&objects),
        ["RunnerScaleSet", "Secret", "ServiceAccount"]
    );

    let secret = one(&objects, "Secret");
    assert_eq!(
        secret["metadata"]["name"],
        "arm-builders-gha-rs-github-secret"
    );
    assert_eq!(secret["metadata"]["namespace"], NAMESPACE);
    assert!(
        secret["metadata"].get("finalizers").is_none(),
        "nothing may hang on a finalizer after helm uninstall"
    );
    assert_eq!(decoded(secret, "github_token"), "ghp_exampleExampleExample");
    assert_eq!(secret["data"].as_object().expect("data").len(), 1);

    let account = one(&objects, "ServiceAccount");
    assert_eq!(account["metadata"]["name"], "arm-builders-gha-rs-runner");
    assert!(account["metadata"].get("annotations").is_none());

    let rss = scale_set(&objects);
    assert_eq!(rss["metadata"]["name"], RELEASE);
    assert_eq!(rss["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rss["spec"],
        json!({
            "githubConfigUrl": "https://github.com/acme-corp",
            "githubConfigSecret": "arm-builders-gha-rs-github-secret",
            "runnerScaleSetName": "arm-builders",
            "minRunners": 1,
            "maxRunners": 3,
            "serviceAccountName": "arm-builders-gha-rs-runner",
            "template": { "spec": { "containers": [{
                "name": "runner",
                "image": "ghcr.io/actions/actions-runner:latest",
                "command": ["/home/runner/run.sh"],
            }]}},
        })
    );

    for o in &objects {
        let labels = &o["metadata"]["labels"];
        assert_eq!(labels["actions.runway.dev/scale-set"], RELEASE, "{o:#}");
        assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{o:#}");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{o:#}");
    }
}

#[test]
fn a_github_app_map_makes_a_secret_with_the_three_keys() {
    let objects = objects(&with(json!({
        "githubConfigSecret": {
            // unquoted IDs, which ARC's docs warn about, still come out whole
            "github_app_id": 12_345_678,
            "github_app_installation_id": "87654321",
            "github_app_private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n",
        },
    })));
    let secret = one(&objects, "Secret");
    assert_eq!(decoded(secret, "github_app_id"), "12345678");
    assert_eq!(decoded(secret, "github_app_installation_id"), "87654321");
    assert_eq!(
        decoded(secret, "github_app_private_key"),
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
    );
    assert!(secret["data"].get("github_token").is_none());
    let rss = scale_set(&objects);
    assert_eq!(
        rss["spec"]["githubConfigSecret"],
        secret["metadata"]["name"]
    );

    let message = refused(&with(
        json!({ "githubConfigSecret": { "github_app_id": "1" } }),
    ));
    assert!(message.contains("github_app_installation_id"), "{message}");
    assert!(message.contains("github_app_private_key"), "{message}");
}

#[test]
fn an_existing_secret_is_referred_to_and_not_created() {
    let values = with(json!({ "githubConfigSecret": "github-app-credentials" }));
    let objects = objects(&values);
    assert_eq!(kinds(&objects), ["RunnerScaleSet", "ServiceAccount"]);
    let rss = scale_set(&objects);
    assert_eq!(rss["spec"]["githubConfigSecret"], "github-app-credentials");
    assert!(notes(&values).contains("existing Secret github-app-credentials"));
}

#[test]
fn irsa_goes_on_the_service_account_the_runners_use() {
    let arn = "arn:aws:iam::123456789012:role/ci";
    let created = objects(&with(json!({
        "serviceAccount": {
            "name": "ci-runner",
            "annotations": { "eks.amazonaws.com/role-arn": arn },
        },
    })));
    let account = one(&created, "ServiceAccount");
    assert_eq!(account["metadata"]["name"], "ci-runner");
    assert_eq!(account["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        arn
    );
    assert_eq!(
        scale_set(&created)["spec"]["serviceAccountName"],
        "ci-runner"
    );

    // Not created: no ServiceAccount, and the pods use the namespace's default.
    let without = objects(&with(json!({ "serviceAccount": { "create": false } })));
    assert_eq!(kinds(&without), ["RunnerScaleSet", "Secret"]);
    assert!(
        scale_set(&without)["spec"]
            .get("serviceAccountName")
            .is_none()
    );

    // Annotations on a ServiceAccount the chart does not create would be lost.
    let message = refused(&with(json!({
        "serviceAccount": { "create": false, "annotations": { "eks.amazonaws.com/role-arn": arn } },
    })));
    assert!(message.contains("serviceAccount.annotations"), "{message}");
}

#[test]
fn the_arc_migration_example_installs_unchanged() {
    let values = example("arc-migration");
    let objects = objects(&values);
    // The Secret and the ServiceAccount exist already, as with ARC.
    assert_eq!(kinds(&objects), ["RunnerScaleSet"]);
    let rss = scale_set(&objects);
    assert_eq!(rss["metadata"]["name"], RELEASE);
    let spec = &rss["spec"];
    assert_eq!(spec["githubConfigUrl"], "https://github.com/acme-corp");
    assert_eq!(spec["githubConfigSecret"], "github-app-credentials");
    assert_eq!(spec["minRunners"], 1);
    assert_eq!(spec["maxRunners"], 10);
    assert_eq!(spec["runnerGroup"], "default");
    assert_eq!(spec["runnerScaleSetName"], RELEASE);
    assert_eq!(spec["serviceAccountName"], "ci-runner");
    assert!(
        spec.get("containerMode").is_none(),
        "the dind template is hand-written"
    );

    // The hand-written dind template passes through unchanged.
    assert_eq!(spec["template"], values["template"]);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["name"], "init-dind-externals");
    assert_eq!(pod["containers"][1]["name"], "dind");
    assert_eq!(pod["containers"][1]["image"], "docker:dind");
    assert_eq!(pod["containers"][1]["securityContext"]["privileged"], true);
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| v["name"].as_str().expect("volume name"))
        .collect();
    assert_eq!(volumes, ["work", "dind-sock", "dind-externals"]);
    assert_eq!(pod["nodeSelector"]["node-role.kubernetes.io/ci"], "true");
    assert_eq!(pod["tolerations"][0]["key"], "ci");

    let notes = notes(&values);
    assert!(
        notes.contains("Runway has no listener pods; listenerTemplate is ignored"),
        "{notes}"
    );
    assert!(
        notes.contains("controllerServiceAccount is ignored"),
        "{notes}"
    );
}

#[test]
fn the_eks_arm64_example_has_dind_irsa_and_karpenter() {
    let values = example("eks-arm64-dind-irsa");
    let objects = objects(&values);
    assert_eq!(kinds(&objects), ["RunnerScaleSet", "ServiceAccount"]);

    let account = one(&objects, "ServiceAccount");
    assert_eq!(account["metadata"]["name"], "arm-builders-runner");
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/arm-builders-ci"
    );

    let spec = &scale_set(&objects)["spec"];
    assert_eq!(spec["runnerScaleSetName"], "arm-builders");
    assert_eq!(spec["githubConfigSecret"], "github-app-credentials");
    assert_eq!(spec["minRunners"], 0);
    assert_eq!(spec["maxRunners"], 20);
    assert_eq!(spec["containerMode"], json!({ "type": "dind" }));
    assert_eq!(spec["serviceAccountName"], "arm-builders-runner");
    assert_eq!(spec["template"], values["template"]);
    let template = &spec["template"];
    assert_eq!(
        template["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"],
        "true"
    );
    assert_eq!(
        template["spec"]["nodeSelector"]["kubernetes.io/arch"],
        "arm64"
    );
    assert_eq!(template["spec"]["tolerations"][0]["value"], "arm64");
}

#[test]
fn arc_settings_map_to_the_spec() {
    let objects = objects(&with(json!({
        "githubConfigUrl": "https://ghe.example.com/enterprises/acme/",
        "runnerScaleSetName": "linux-x64",
        "scaleSetLabels": ["gpu", "large"],
        "containerMode": { "type": "dind" },
        "proxy": {
            "http": { "url": "http://proxy:3128", "credentialSecretRef": "proxy-auth" },
            "https": { "url": "http://proxy:3128" },
            "noProxy": ["example.com"],
        },
        "githubServerTLS": {
            "certificateFrom": { "configMapKeyRef": { "name": "ca", "key": "ca.crt" } },
            "runnerMountPath": "/usr/local/share/ca-certificates/",
        },
    })));
    let rss = scale_set(&objects);
    assert_eq!(rss["metadata"]["name"], "linux-x64");
    let spec = &rss["spec"];
    assert_eq!(
        spec["githubConfigUrl"],
        "https://ghe.example.com/enterprises/acme"
    );
    assert_eq!(spec["runnerScaleSetName"], "linux-x64");
    assert_eq!(spec["runnerScaleSetLabels"], json!(["gpu", "large"]));
    assert_eq!(spec["containerMode"], json!({ "type": "dind" }));
    assert_eq!(
        spec["proxy"],
        json!({
            "http": { "url": "http://proxy:3128", "credentialSecretRef": "proxy-auth" },
            "https": { "url": "http://proxy:3128" },
            "noProxy": ["example.com"],
        })
    );
    // ARC's runnerMountPath has no place in the CRD: left out.
    assert_eq!(
        spec["githubServerTLS"],
        json!({ "certificateFrom": { "configMapKeyRef": { "name": "ca", "key": "ca.crt" } } })
    );
}

#[test]
fn arc_metadata_keys_are_applied_like_arc() {
    let objects = objects(&with(json!({
        "namespaceOverride": "ci",
        "labels": { "team": "platform", "actions.runway.dev/scale-set": "hijack" },
        "annotations": { "owner": "platform@acme" },
        "resourceMeta": {
            "autoscalingRunnerSet": {
                "labels": { "tier": "rss", "app.kubernetes.io/instance": "other" },
                "annotations": { "rss": "yes" },
            },
            "githubConfigSecret": { "annotations": { "secret": "yes" } },
            "noPermissionServiceAccount": { "labels": { "sa": "yes" } },
        },
    })));
    for o in &objects {
        let meta = &o["metadata"];
        assert_eq!(meta["namespace"], "ci", "{o:#}");
        assert_eq!(meta["labels"]["team"], "platform", "{o:#}");
        assert_eq!(meta["annotations"]["owner"], "platform@acme", "{o:#}");
        // Reserved labels are never overridden.
        assert_eq!(meta["labels"]["actions.runway.dev/scale-set"], RELEASE);
        assert_eq!(meta["labels"]["app.kubernetes.io/instance"], RELEASE);
    }
    let rss = scale_set(&objects);
    assert_eq!(rss["metadata"]["labels"]["tier"], "rss");
    assert_eq!(rss["metadata"]["annotations"]["rss"], "yes");
    assert_eq!(
        one(&objects, "Secret")["metadata"]["annotations"]["secret"],
        "yes"
    );
    assert_eq!(
        one(&objects, "ServiceAccount")["metadata"]["labels"]["sa"],
        "yes"
    );
    assert!(
        one(&objects, "Secret")["metadata"]["labels"]
            .get("tier")
            .is_none()
    );
}

#[test]
fn ignored_arc_keys_are_accepted() {
    let values = with(json!({
        "listenerTemplate": { "spec": { "containers": [{ "name": "listener" }] } },
        "listenerMetrics": { "counters": {} },
        "listenerConfig": { "scaler": { "qps": 5 } },
        "controllerServiceAccount": { "name": "arc-gha-rs-controller", "namespace": "arc-systems" },
        "flags": { "updateStrategy": "eventual" },
        "keyVault": {},
        "fullnameOverride": "",
        "global": {},
    }));
    let objects = objects(&values);
    let rss = scale_set(&objects);
    assert_eq!(
        rss["spec"]["githubConfigSecret"],
        "arm-builders-gha-rs-github-secret"
    );
    let notes = notes(&values);
    assert!(
        notes.contains("Runway has no listener pods; listenerTemplate is ignored"),
        "{notes}"
    );
    assert!(notes.contains("flags is ignored"), "{notes}");
}

#[test]
fn container_mode_kubernetes_is_refused_clearly() {
    for mode in ["kubernetes", "kubernetes-novolume"] {
        let message = refused(&with(json!({ "containerMode": { "type": mode } })));
        assert!(
            message.contains(&format!(
                "containerMode.type {mode} is not supported by Runway (it has no container hooks); use dind"
            )),
            "{message}"
        );
    }
    // Any other type renders as no container mode, as in ARC, with a warning.
    let values = with(json!({ "containerMode": { "type": "docker" } }));
    assert!(
        scale_set(&objects(&values))["spec"]
            .get("containerMode")
            .is_none()
    );
    assert!(
        notes(&values).contains("containerMode.type \"docker\" is ignored"),
        "{}",
        notes(&values)
    );
}

#[test]
fn runner_mount_path_without_a_ca_is_refused_naming_the_key() {
    let message = refused(&with(json!({
        "githubServerTLS": { "runnerMountPath": "/usr/local/share/ca-certificates/" },
    })));
    assert!(
        message.contains(
            "githubServerTLS.runnerMountPath needs githubServerTLS.certificateFrom.configMapKeyRef"
        ),
        "{message}"
    );
}

#[test]
fn min_above_max_is_refused_naming_both_keys() {
    let message = refused(&with(json!({ "minRunners": 5, "maxRunners": 2 })));
    assert!(
        message.contains(
            "minRunners (5) is greater than maxRunners (2); lower minRunners or raise maxRunners"
        ),
        "{message}"
    );
    let message = refused(&with(json!({ "minRunners": -1 })));
    assert!(message.contains("/minRunners"), "{message}");
    let message = refused(&with(json!({ "maxRunners": "ten" })));
    assert!(
        message.contains("maxRunners") && message.contains("is not a whole number of runners"),
        "{message}"
    );
    // A quoted number counts (ARC drops it silently).
    let rss = objects(&with(json!({ "minRunners": "1", "maxRunners": "5" })));
    assert_eq!(scale_set(&rss)["spec"]["minRunners"], 1);
    assert_eq!(scale_set(&rss)["spec"]["maxRunners"], 5);
}

#[test]
fn a_name_over_45_characters_is_refused() {
    let long = "a".repeat(46);
    let message = refused(&with(json!({ "runnerScaleSetName": long })));
    assert!(message.contains("/runnerScaleSetName"), "{message}");

    // The release name is the default, and is checked too.
    let message = match helm::render(&chart(), &minimal(), &long, NAMESPACE) {
        Ok(_) => panic!("a 46-character release name was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(message.contains("runnerScaleSetName"), "{message}");
    assert!(message.contains("at most 45"), "{message}");

    let ok = objects(&with(json!({ "runnerScaleSetName": "a".repeat(45) })));
    assert_eq!(scale_set(&ok)["spec"]["runnerScaleSetName"], "a".repeat(45));
}

#[test]
fn unknown_keys_and_missing_settings_are_refused_naming_the_key() {
    let message = refused(&with(json!({ "maxRunner": 3 })));
    assert!(message.contains("maxRunner"), "{message}");
    assert!(message.contains("runway-scale-set"), "{message}");

    let message = refused(&with(
        json!({ "githubConfigSecret": { "github_tokn": "x" } }),
    ));
    assert!(message.contains("github_tokn"), "{message}");

    let message = refused(&json!({ "githubConfigUrl": "https://github.com/acme" }));
    assert!(message.contains("githubConfigSecret"), "{message}");

    let message = refused(&json!({ "githubConfigSecret": "creds" }));
    assert!(message.contains("githubConfigUrl"), "{message}");

    let message = refused(&with(json!({ "keyVault": { "type": "azure_key_vault" } })));
    assert!(message.contains("keyVault"), "{message}");

    let message = refused(&with(json!({
        "template": { "spec": { "containers": [{ "name": "main", "image": "x" }] } },
    })));
    assert!(
        message.contains("no container named \\\"runner\\\"")
            || message.contains("no container named \"runner\""),
        "{message}"
    );
}

// ------------------------------------------------- ARC 0.14.2's values files

/// What Runway does with a values file ARC's `gha-runner-scale-set` 0.14.2
/// accepts, as its `# expect:` header says.
#[derive(Debug, PartialEq)]
enum ArcClass {
    /// It changes what is rendered (`# assert:`, `# absent:`, `# count:`).
    Honoured,
    /// Accepted; NOTES.txt carries each `# notes:` text.
    Ignored,
    /// Refused by a message of the chart's own (a template's `fail`, not a
    /// generic schema error) that names each `# names:` key.
    Refused,
}

/// One file of `sandbox/tests/arc_values/`, with its header parsed.
#[derive(Debug)]
struct ArcCase {
    file: String,
    /// The ARC keys the file exercises (`# arc:`), dotted.
    arc_keys: Vec<String>,
    class: ArcClass,
    /// (kind, JSON pointer, expected value) in the render.
    asserts: Vec<(String, String, Value)>,
    /// (kind, JSON pointer) that must not be rendered.
    absent: Vec<(String, String)>,
    /// (kind, how many objects of it).
    counts: Vec<(String, usize)>,
    notes: Vec<String>,
    names: Vec<String>,
    values: Value,
}

fn arc_values_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/arc_values")
}

fn arc_case(path: &std::path::Path) -> ArcCase {
    let file = path
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .to_string();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let values: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
    let mut case = ArcCase {
        file: file.clone(),
        arc_keys: Vec::new(),
        class: ArcClass::Honoured,
        asserts: Vec::new(),
        absent: Vec::new(),
        counts: Vec::new(),
        notes: Vec::new(),
        names: Vec::new(),
        values,
    };
    let mut class = None;
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let Some((tag, rest)) = line.trim_start_matches('#').trim().split_once(':') else {
            continue;
        };
        let rest = rest.trim();
        let kind_and = |rest: &str| -> (String, String) {
            let (kind, more) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("{file}: `{line}` needs a kind and more"));
            (kind.to_string(), more.trim().to_string())
        };
        match tag {
            "arc" => case
                .arc_keys
                .extend(rest.split(',').map(|k| k.trim().to_string())),
            "expect" => {
                class = Some(match rest {
                    "honoured" => ArcClass::Honoured,
                    "ignored" => ArcClass::Ignored,
                    "refused" => ArcClass::Refused,
                    other => panic!("{file}: unknown class {other:?}"),
                })
            }
            "assert" => {
                let (kind, more) = kind_and(rest);
                let (pointer, value) = more
                    .split_once(" = ")
                    .unwrap_or_else(|| panic!("{file}: `{line}` needs ` = `"));
                let value: Value =
                    serde_yaml::from_str(value).unwrap_or_else(|e| panic!("{file}: `{line}`: {e}"));
                case.asserts.push((kind, pointer.to_string(), value));
            }
            "absent" => case.absent.push(kind_and(rest)),
            "count" => {
                let (kind, n) = kind_and(rest);
                let n = n.trim_start_matches("= ").parse().expect("a count");
                case.counts.push((kind, n));
            }
            "notes" => case.notes.push(rest.to_string()),
            "names" => case.names.push(rest.to_string()),
            _ => {}
        }
    }
    case.class = class.unwrap_or_else(|| panic!("{file}: no `# expect:` line"));
    assert!(!case.arc_keys.is_empty(), "{file}: no `# arc:` line");
    match case.class {
        ArcClass::Honoured => assert!(
            !case.asserts.is_empty() || !case.absent.is_empty() || !case.counts.is_empty(),
            "{file}: an honoured file must say what it changes"
        ),
        ArcClass::Ignored => assert!(!case.notes.is_empty(), "{file}: no `# notes:` line"),
        ArcClass::Refused => assert!(!case.names.is_empty(), "{file}: no `# names:` line"),
    }
    case
}

fn arc_cases() -> Vec<ArcCase> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(arc_values_dir())
        .expect("sandbox/tests/arc_values")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| arc_case(p)).collect()
}

/// What is wrong with how the chart treats one ARC values file, or None.
fn arc_case_problem(case: &ArcCase) -> Option<String> {
    let rendered = helm::render(&chart(), &case.values, RELEASE, NAMESPACE);
    if case.class == ArcClass::Refused {
        return match rendered {
            Ok(_) => Some("accepted, expected refused".to_string()),
            Err(HelmError::Helm { kind, message, .. }) => {
                if kind == "HelmValuesError" {
                    Some(format!(
                        "refused by the schema, not by a message of the chart's: {message}"
                    ))
                } else {
                    let missing: Vec<_> = case
                        .names
                        .iter()
                        .filter(|k| !message.contains(k.as_str()))
                        .collect();
                    (!missing.is_empty())
                        .then(|| format!("refused without naming {missing:?}: {message}"))
                }
            }
            Err(e) => Some(format!("not Helm's refusal: {e}")),
        };
    }
    let rendered = match rendered {
        Ok(r) => r,
        Err(HelmError::Helm { kind, message, .. }) => {
            return Some(format!("refused ({kind}), but ARC accepts it: {message}"));
        }
        Err(e) => return Some(e.to_string()),
    };
    let notes = rendered
        .iter()
        .find(|(path, _)| path.ends_with("NOTES.txt"))
        .map(|(_, text)| text.clone())
        .unwrap_or_default();
    let objects = match helm::manifests(&rendered) {
        Ok(o) => o,
        Err(e) => return Some(e.to_string()),
    };
    let mut problems = Vec::new();
    let rss: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "RunnerScaleSet")
        .collect();
    match rss.as_slice() {
        [rss] => {
            let errors = check(&rss["spec"], crd_spec_schema(), "spec");
            if !errors.is_empty() {
                problems.push(format!("the CRD refuses the RunnerScaleSet: {errors:?}"));
            }
        }
        _ => problems.push(format!("{} RunnerScaleSets rendered", rss.len())),
    }
    for (kind, pointer, expected) in &case.asserts {
        let found: Vec<_> = objects
            .iter()
            .filter(|o| o["kind"] == kind.as_str())
            .map(|o| o.pointer(pointer))
            .collect();
        if found != [Some(expected)] {
            problems.push(format!(
                "{kind} {pointer}: expected {expected}, got {found:?}"
            ));
        }
    }
    for (kind, pointer) in &case.absent {
        for o in objects.iter().filter(|o| o["kind"] == kind.as_str()) {
            if let Some(v) = o.pointer(pointer) {
                problems.push(format!("{kind} {pointer}: expected absent, got {v}"));
            }
        }
    }
    for (kind, n) in &case.counts {
        let got = objects
            .iter()
            .filter(|o| o["kind"] == kind.as_str())
            .count();
        if got != *n {
            problems.push(format!("expected {n} {kind}, got {got}"));
        }
    }
    let missing: Vec<_> = case
        .notes
        .iter()
        .filter(|t| !notes.contains(t.as_str()))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("NOTES.txt lacks {missing:?}; it says:\n{notes}"));
    }
    (!problems.is_empty()).then(|| problems.join("\n  "))
}

/// Every top-level key of ARC 0.14.2's values.yaml and templates, and every
/// `resourceMeta` key its templates read: each must be exercised by a file
/// of `sandbox/tests/arc_values/`.
const ARC_KEYS: &[&str] = &[
    "githubConfigUrl",
    "githubConfigSecret",
    "scaleSetLabels",
    "proxy",
    "maxRunners",
    "minRunners",
    "runnerGroup",
    "runnerScaleSetName",
    "githubServerTLS",
    "githubServerTLS.runnerMountPath",
    "keyVault",
    "containerMode",
    "containerMode.kubernetesModeWorkVolumeClaim",
    "containerMode.kubernetesModeAdditionalRoleRules",
    "listenerTemplate",
    "listenerMetrics",
    "template",
    "controllerServiceAccount",
    "namespaceOverride",
    "nameOverride",
    "annotations",
    "labels",
    "resourceMeta.autoscalingRunnerSet",
    "resourceMeta.githubConfigSecret",
    "resourceMeta.kubernetesModeRole",
    "resourceMeta.kubernetesModeRoleBinding",
    "resourceMeta.kubernetesModeServiceAccount",
    "resourceMeta.managerRole",
    "resourceMeta.managerRoleBinding",
    "resourceMeta.noPermissionServiceAccount",
    "resourceMeta.autoscalingListener",
    "resourceMeta.listenerServiceAccount",
    "resourceMeta.listenerRole",
    "resourceMeta.listenerRoleBinding",
    "resourceMeta.listenerConfigSecret",
    "resourceMeta.ephemeralRunnerSet",
    "resourceMeta.ephemeralRunner",
    "resourceMeta.ephemeralRunnerConfigSecret",
];

/// Issue 12 point 8: each values file ARC 0.14.2 accepts is honoured,
/// accepted and ignored with a NOTES warning, or refused by a message that
/// names the key; never refused by the schema's generic error.
#[test]
fn arc_values_files_are_honoured_ignored_with_a_warning_or_refused_by_name() {
    let cases = arc_cases();
    let covered: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| c.arc_keys.iter().map(String::as_str))
        .collect();
    let uncovered: Vec<_> = ARC_KEYS.iter().filter(|k| !covered.contains(*k)).collect();
    assert!(
        uncovered.is_empty(),
        "ARC keys without a values file: {uncovered:?}"
    );

    let mut failures = Vec::new();
    for case in &cases {
        if let Some(problem) = arc_case_problem(case) {
            failures.push(format!("{} ({:?}): {problem}", case.file, case.class));
        }
    }
    let count = |class: ArcClass| cases.iter().filter(|c| c.class == class).count();
    eprintln!(
        "{} ARC values files, {} ARC keys: {} honoured, {} ignored, {} refused",
        cases.len(),
        covered.len(),
        count(ArcClass::Honoured),
        count(ArcClass::Ignored),
        count(ArcClass::Refused),
    );
    assert!(
        failures.is_empty(),
        "{} of {} ARC values files are not treated as classified:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The harness above can fail: a file the chart refuses by schema, one whose
/// warning is missing and one whose assertion does not hold are all caught.
#[test]
fn the_arc_values_harness_catches_each_kind_of_miss() {
    let case = |class, values: Value| ArcCase {
        file: "t.yaml".to_string(),
        arc_keys: vec!["x".to_string()],
        class,
        asserts: Vec::new(),
        absent: Vec::new(),
        counts: Vec::new(),
        notes: Vec::new(),
        names: Vec::new(),
        values,
    };
    let mut schema = case(ArcClass::Refused, with(json!({ "maxRunner": 3 })));
    schema.names.push("maxRunner".to_string());
    let problem = arc_case_problem(&schema).expect("a schema refusal is a problem");
    assert!(problem.contains("by the schema"), "{problem}");

    let mut unnamed = case(
        ArcClass::Refused,
        with(json!({ "minRunners": 5, "maxRunners": 2 })),
    );
    unnamed.names.push("runnerGroup".to_string());
    let problem = arc_case_problem(&unnamed).expect("a message without the key");
    assert!(problem.contains("without naming"), "{problem}");

    let mut silent = case(ArcClass::Ignored, minimal());
    silent.notes.push("listenerTemplate is ignored".to_string());
    let problem = arc_case_problem(&silent).expect("a missing warning");
    assert!(problem.contains("NOTES.txt lacks"), "{problem}");

    let mut wrong = case(ArcClass::Honoured, with(json!({ "maxRunners": 3 })));
    wrong.asserts.push((
        "RunnerScaleSet".to_string(),
        "/spec/maxRunners".to_string(),
        json!(4),
    ));
    let problem = arc_case_problem(&wrong).expect("a value not rendered");
    assert!(problem.contains("/spec/maxRunners"), "{problem}");

    let refused_honoured = case(ArcClass::Honoured, with(json!({ "minRunners": -1 })));
    let problem = arc_case_problem(&refused_honoured).expect("a refusal");
    assert!(problem.contains("ARC accepts it"), "{problem}");
}
