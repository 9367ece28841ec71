//! The default render, the runner pod's additions, the `runway serve`
//! Deployment and the AWS config.

use std::collections::BTreeMap;

use base64::Engine;
use runway_sandbox::helm::{self, Severity};
use serde_json::{Value, json};

use super::*;

// ------------------------------------------------------------- the default

#[test]
fn without_the_new_values_nothing_new_is_rendered() {
    let values = with(json!({}));
    let objects = objects(&values);
    let mut kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["RunnerScaleSet", "Secret", "ServiceAccount"]);
    let rss = objects
        .iter()
        .find(|o| o["kind"] == "RunnerScaleSet")
        .unwrap();
    let chart_values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml is YAML");
    assert_eq!(
        rss["spec"]["template"], chart_values["template"],
        "the pod template must pass through unchanged"
    );
    assert!(
        rss["spec"].get("kubeActions").is_none(),
        "no executor without kubernetesActions"
    );
    // The documented defaults are inert too.
    let explicit = with(json!({
        "kubernetesActions": {},
        "kubernetesPermissions": [],
        "kubernetesActionsNamespaces": [],
        "kubernetesActionsProtectedNamespaces": [],
        "roleType": "Role",
        "aws": {},
    }));
    assert_eq!(self::objects(&explicit), objects);
}

#[test]
fn lints_clean_with_everything_set() {
    let values = with(json!({
        "kubernetesActions": {
            "pods": ["get", "list", "delete", "logs"],
            "deployments": ["get", "restart", "rollback", "scale"],
            "customObjects": ["get"],
            "secrets": ["get"],
            "server": {
                "enabled": true,
                "replicas": 2,
                "tls": { "secretName": "serve-tls" },
                "networkPolicy": { "enabled": true, "from": [{ "podSelector": { "matchLabels": { "app": "dispatcher" } } }] },
            },
            "executor": { "image": { "repository": "ghcr.io/acme/runway" }, "resources": {} },
        },
        "kubernetesPermissions": [
            { "apiGroups": ["argoproj.io"], "resources": ["rollouts"], "verbs": ["get"] },
        ],
        "kubernetesActionsNamespaces": ["app-staging"],
        "aws": { "region": "eu-central-1", "sessionTagging": "never" },
    }));
    let report = helm::lint(&chart(), &values).expect("lint runs");
    let findings: Vec<_> = report.at_least(Severity::Warning).collect();
    assert!(findings.is_empty(), "{findings:#?}");
}

// -------------------------------------------------------------- runner pod

#[test]
fn the_scale_set_names_the_executor_and_the_runner_container_gets_no_allowlist() {
    let template = json!({ "spec": {
        "volumes": [{ "name": "work", "emptyDir": {} }],
        "containers": [
            { "name": "runner", "image": "ghcr.io/acme/runner:1",
              "env": [{ "name": "FOO", "value": "bar" }],
              "volumeMounts": [{ "name": "work", "mountPath": "/work" }] },
            { "name": "sidecar", "image": "busybox" },
        ],
    } });
    let objects = objects(&with(json!({
        "kubernetesActions": { "pods": ["get"] },
        "template": template.clone(),
    })));
    let rss = objects
        .iter()
        .find(|o| o["kind"] == "RunnerScaleSet")
        .unwrap();
    // The executor container the controller adds mounts the allowlist and
    // holds the token; the job's container gets neither from the chart.
    assert_eq!(
        rss["spec"]["template"], template,
        "the pod template passes through unchanged"
    );
    assert_eq!(
        rss["spec"]["kubeActions"],
        json!({ "allowlistConfigMap": format!("{FULLNAME}-kube-actions") })
    );

    // kubernetesActions.executor sets the executor's image and resources.
    let objects = self::objects(&with(json!({
        "kubernetesActions": {
            "pods": ["get"],
            "executor": {
                "image": { "repository": "ghcr.io/acme/runway", "tag": 1.4, "pullPolicy": "IfNotPresent" },
                "resources": { "limits": { "memory": "64Mi" } },
            },
        },
    })));
    let rss = objects
        .iter()
        .find(|o| o["kind"] == "RunnerScaleSet")
        .unwrap();
    assert_eq!(
        rss["spec"]["kubeActions"],
        json!({
            "allowlistConfigMap": format!("{FULLNAME}-kube-actions"),
            "image": "ghcr.io/acme/runway:1.4",
            "imagePullPolicy": "IfNotPresent",
            "resources": { "limits": { "memory": "64Mi" } },
        })
    );
    assert!(
        env_names(self::runner(&objects)).is_empty(),
        "no allowlist env in the runner container"
    );
    // `executor` is not a resource: it does not enable anything alone.
    let objects = self::objects(&with(json!({
        "kubernetesActions": { "executor": { "resources": {} } },
    })));
    let rss = objects
        .iter()
        .find(|o| o["kind"] == "RunnerScaleSet")
        .unwrap();
    assert!(rss["spec"].get("kubeActions").is_none(), "{rss:#}");
    assert!(by_name(&objects, "ConfigMap").is_empty());
}

// ------------------------------------------------------------------ server

#[test]
fn the_server_is_a_deployment_with_a_service_and_a_token_secret() {
    let objects = objects(&with(json!({
        "kubernetesActions": {
            "pods": ["get"],
            "server": { "enabled": true, "replicas": 3, "resources": { "limits": { "memory": "64Mi" } } },
        },
    })));
    let name = format!("{FULLNAME}-kube-actions-server");
    let deployment = named(&objects, "Deployment", &format!("{NAMESPACE}/{name}"));
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"];
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    for (k, v) in selector.as_object().expect("matchLabels") {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "the pods match the selector"
        );
    }
    assert_eq!(
        pod["spec"]["serviceAccountName"], name,
        "the server's own ServiceAccount, never the runners'"
    );
    let account = named(&objects, "ServiceAccount", &format!("{NAMESPACE}/{name}"));
    assert_eq!(
        account["metadata"]["labels"]["app.kubernetes.io/component"],
        "kube-actions-server"
    );
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let server = &containers[0];
    assert_eq!(
        server["image"], "ghcr.io/actions/actions-runner:latest",
        "defaults to the runner container's image"
    );
    assert_eq!(server["command"], json!(["runway"]));
    assert_eq!(
        server["args"],
        json!([
            "serve",
            "--port",
            "9016",
            "--token-file",
            "/etc/runway/serve/token",
            "--namespace",
            NAMESPACE,
            "--lease",
            name,
        ])
    );
    for var in [
        "RUNWAY_KUBE_ALLOWLIST",
        "RUNWAY_NAMESPACE",
        "RUNWAY_RUNNER_NAME",
        "POD_NAME",
    ] {
        env(server, var);
    }
    assert_eq!(
        env(server, "POD_NAME")["valueFrom"],
        json!({ "fieldRef": { "fieldPath": "metadata.name" } })
    );
    assert_eq!(
        server["livenessProbe"]["httpGet"],
        json!({ "path": "/liveness", "port": "http" }),
        "plain HTTP without tls"
    );
    assert_eq!(server["readinessProbe"]["httpGet"]["path"], "/readiness");
    assert!(
        by_name(&objects, "NetworkPolicy").is_empty(),
        "no NetworkPolicy unless enabled"
    );
    assert_eq!(server["ports"][0]["containerPort"], 9016);
    assert_eq!(
        server["resources"],
        json!({ "limits": { "memory": "64Mi" } })
    );
    let mounts: BTreeMap<&str, &str> = server["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        BTreeMap::from([
            ("kube-actions", "/etc/runway/kube-actions"),
            ("serve", "/etc/runway/serve")
        ])
    );
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    assert_eq!(
        volumes[0]["configMap"]["name"],
        format!("{FULLNAME}-kube-actions")
    );
    assert_eq!(
        volumes[1]["projected"]["sources"],
        json!([{ "secret": { "name": format!("{FULLNAME}-kube-actions-token"),
                             "items": [{ "key": "token", "path": "token" }] } }])
    );

    let service = named(&objects, "Service", &format!("{NAMESPACE}/{name}"));
    assert_eq!(&service["spec"]["selector"], selector);
    assert_eq!(service["spec"]["ports"][0]["port"], 9016);

    let secret = named(
        &objects,
        "Secret",
        &format!("{NAMESPACE}/{FULLNAME}-kube-actions-token"),
    );
    let token = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["token"].as_str().expect("token"))
        .expect("base64");
    assert_eq!(token.len(), 48);
    assert!(token.iter().all(u8::is_ascii_alphanumeric));
}

#[test]
fn a_jwt_key_is_mounted_and_passed_with_the_runner_urn() {
    let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
    let objects = objects(&with(json!({
        "kubernetesActions": {
            "pods": ["get"],
            "server": {
                "enabled": true,
                "image": { "repository": "ghcr.io/acme/runway", "tag": "1.4.0", "pullPolicy": "Always" },
                "auth": { "jwtPublicKey": pem, "runnerUrn": "urn:runway:acme:arm-builders" },
            },
        },
    })));
    let name = format!("{FULLNAME}-kube-actions-server");
    let deployment = named(&objects, "Deployment", &format!("{NAMESPACE}/{name}"));
    let server = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(server["image"], "ghcr.io/acme/runway:1.4.0");
    assert_eq!(server["imagePullPolicy"], "Always");
    let args = args_of(server);
    assert_eq!(
        args[args.len() - 4..],
        [
            "--jwt-public-key",
            "/etc/runway/serve/jwt.pub",
            "--runner-urn",
            "urn:runway:acme:arm-builders"
        ]
    );
    let key = named(&objects, "ConfigMap", &format!("{NAMESPACE}/{name}-jwt"));
    assert_eq!(key["data"]["jwt.pub"], pem);
    let sources = &deployment["spec"]["template"]["spec"]["volumes"][1]["projected"]["sources"];
    assert_eq!(
        sources[1],
        json!({ "configMap": { "name": format!("{name}-jwt"), "items": [{ "key": "jwt.pub", "path": "jwt.pub" }] } })
    );
}

#[test]
fn the_server_network_policy_admits_only_the_named_peers() {
    let peers = json!([
        { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "dispatchers" } } },
        { "namespaceSelector": { "matchLabels": { "team": "ops" } },
          "podSelector": { "matchLabels": { "app": "dispatcher" } } },
    ]);
    let objects = objects(&with(json!({
        "kubernetesActions": {
            "pods": ["get"],
            "server": { "enabled": true, "networkPolicy": { "enabled": true, "from": peers.clone() } },
        },
    })));
    let name = format!("{FULLNAME}-kube-actions-server");
    let policy = named(&objects, "NetworkPolicy", &format!("{NAMESPACE}/{name}"));
    let deployment = named(&objects, "Deployment", &format!("{NAMESPACE}/{name}"));
    assert_eq!(
        policy["spec"],
        json!({
            "podSelector": { "matchLabels": deployment["spec"]["selector"]["matchLabels"] },
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": peers, "ports": [{ "port": 9016, "protocol": "TCP" }] }],
        })
    );

    // Enabled with no peer would admit nobody: refused, naming the key.
    for np in [
        json!({ "enabled": true }),
        json!({ "enabled": true, "from": [] }),
    ] {
        let message = refused(&with(json!({
            "kubernetesActions": { "pods": ["get"], "server": { "enabled": true, "networkPolicy": np } },
        })));
        assert!(
            message.contains("kubernetesActions.server.networkPolicy.from")
                && message.contains("NetworkPolicyPeer"),
            "{message}"
        );
    }
}

#[test]
fn the_server_serves_https_from_a_tls_secret() {
    let objects = objects(&with(json!({
        "kubernetesActions": {
            "pods": ["get"],
            "server": { "enabled": true, "tls": { "secretName": "serve-tls" } },
        },
    })));
    let name = format!("{FULLNAME}-kube-actions-server");
    let deployment = named(&objects, "Deployment", &format!("{NAMESPACE}/{name}"));
    let pod = &deployment["spec"]["template"]["spec"];
    let server = &pod["containers"][0];
    let args = args_of(server);
    assert_eq!(
        args[args.len() - 4..],
        [
            "--tls-cert",
            "/etc/runway/tls/tls.crt",
            "--tls-key",
            "/etc/runway/tls/tls.key"
        ]
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(server[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let mount = server["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tls")
        .expect("the tls mount");
    assert_eq!(
        mount,
        &json!({ "name": "tls", "mountPath": "/etc/runway/tls", "readOnly": true })
    );
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("the tls volume");
    assert_eq!(
        volume["secret"],
        json!({ "secretName": "serve-tls", "items": [
            { "key": "tls.crt", "path": "tls.crt" },
            { "key": "tls.key", "path": "tls.key" },
        ] })
    );
}

// --------------------------------------------------------------------- AWS

#[test]
fn aws_values_become_the_mounted_config() {
    let aws = json!({
        "region": "eu-central-1",
        "allowedRoles": ["arn:aws:iam::111122223333:role/arc-runner-*"],
        "sessionTagging": "auto",
        "sessionTags": ["Repository", "Workflow", "RunId", "Actor", "Job"],
        "transitiveTagKeys": ["Repository"],
        "sessionName": "{workflow}_{run_number}_{job}",
        "maxSessionDuration": 3600,
        "sourceIdentity": "ci",
        "externalId": "ext-1",
        "sessionPolicy": "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
    });
    let objects = objects(&with(json!({ "aws": aws.clone() })));
    let cm = named(
        &objects,
        "ConfigMap",
        &format!("{NAMESPACE}/{FULLNAME}-aws"),
    );
    let config: Value =
        serde_yaml::from_str(cm["data"]["config.yaml"].as_str().expect("config.yaml"))
            .expect("YAML");
    assert_eq!(config, aws);
    let runner = runner(&objects);
    assert_eq!(
        env(runner, "RUNWAY_AWS_CONFIG")["value"],
        "/etc/runway/aws/config.yaml"
    );
    assert_eq!(
        env_names(runner),
        ["RUNWAY_AWS_CONFIG"],
        "no kube-actions env without kubernetesActions"
    );
    assert_eq!(
        runner["volumeMounts"],
        json!([{ "name": "runway-aws", "mountPath": "/etc/runway/aws", "readOnly": true }])
    );
    let rss = objects
        .iter()
        .find(|o| o["kind"] == "RunnerScaleSet")
        .unwrap();
    assert_eq!(
        rss["spec"]["template"]["spec"]["volumes"],
        json!([{ "name": "runway-aws", "configMap": { "name": format!("{FULLNAME}-aws") } }])
    );
}

/// A rendered container's `args`, as strings.
fn args_of(container: &serde_json::Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .expect("the container has args")
        .iter()
        .map(|a| a.as_str().expect("args are strings"))
        .collect()
}
