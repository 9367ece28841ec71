use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::{Value, json};

use super::*;

fn template() -> PodTemplateSpec {
    PodTemplateSpec {
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "runner".into(),
                image: Some("ghcr.io/actions/actions-runner:latest".into()),
                command: Some(vec!["/home/runner/run.sh".into()]),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..PodTemplateSpec::default()
    }
}

fn valid_spec() -> RunnerScaleSetSpec {
    RunnerScaleSetSpec {
        github_config_url: "https://github.com/acme".into(),
        github_config_secret: "github-app".into(),
        runner_group: None,
        runner_scale_set_name: Some("arm-builders".into()),
        runner_scale_set_labels: vec![],
        min_runners: Some(1),
        max_runners: Some(10),
        template: template(),
        container_mode: Some(ContainerMode {
            mode: ContainerModeType::Dind,
        }),
        proxy: None,
        github_server_tls: None,
        service_account_name: Some("runners".into()),
        kube_actions: None,
    }
}

fn errors_of(spec: &RunnerScaleSetSpec) -> Vec<SpecError> {
    validate(spec).expect_err("the spec should be invalid")
}

fn crd_json() -> Value {
    serde_json::to_value(crd()).unwrap()
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn spec_props() -> Value {
    schema()["properties"]["spec"]["properties"].clone()
}

// --- the CRD itself -------------------------------------------------------

#[test]
fn crd_names_group_and_scope() {
    let crd = crd_json();
    assert_eq!(
        crd["metadata"]["name"],
        "runnerscalesets.actions.runway.dev"
    );
    assert_eq!(crd["spec"]["group"], "actions.runway.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["kind"], "RunnerScaleSet");
    assert_eq!(crd["spec"]["names"]["plural"], "runnerscalesets");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["rss"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
}

#[test]
fn crd_has_status_subresource() {
    let crd = crd_json();
    assert_eq!(
        crd["spec"]["versions"][0]["subresources"]["status"],
        json!({})
    );
}

#[test]
fn printer_columns_are_id_min_max_desired_running_busy_age() {
    let crd = crd_json();
    let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .clone();
    let got: Vec<(String, String, String)> = columns
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
                c["jsonPath"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("Scale Set ID", "integer", ".status.scaleSetId"),
        ("Min", "integer", ".spec.minRunners"),
        ("Max", "integer", ".spec.maxRunners"),
        ("Desired", "integer", ".status.desiredRunners"),
        ("Running", "integer", ".status.currentRunners"),
        ("Busy", "integer", ".status.busyRunners"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(got, want);
}

#[test]
fn printer_column_paths_exist_in_the_schema() {
    let schema = schema();
    for path in [
        "status.scaleSetId",
        "spec.minRunners",
        "spec.maxRunners",
        "status.desiredRunners",
        "status.currentRunners",
        "status.busyRunners",
    ] {
        let (top, field) = path.split_once('.').unwrap();
        assert!(
            schema["properties"][top]["properties"][field].is_object(),
            "{path} missing from the schema"
        );
    }
}

#[test]
fn counts_have_minimum_zero_in_the_schema() {
    let props = spec_props();
    assert_eq!(props["minRunners"]["minimum"].as_f64(), Some(0.0));
    assert_eq!(props["maxRunners"]["minimum"].as_f64(), Some(0.0));
    let status = &schema()["properties"]["status"]["properties"];
    for field in [
        "desiredRunners",
        "currentRunners",
        "idleRunners",
        "busyRunners",
        "pendingRunners",
        "failedRunners",
    ] {
        assert_eq!(status[field]["minimum"].as_f64(), Some(0.0), "{field}");
    }
}

#[test]
fn scale_set_name_has_max_length_45_in_the_schema() {
    assert_eq!(spec_props()["runnerScaleSetName"]["maxLength"], 45);
}

#[test]
fn template_is_a_preserved_object_in_the_schema() {
    let template = &spec_props()["template"];
    assert_eq!(template["type"], "object");
    assert_eq!(template["x-kubernetes-preserve-unknown-fields"], true);
    assert!(template.get("properties").is_none());
}

#[test]
fn container_mode_type_is_an_enum_in_the_schema() {
    let mode = &spec_props()["containerMode"]["properties"]["type"];
    assert_eq!(mode["type"], "string");
    assert_eq!(mode["enum"], json!(["dind", "kubernetes"]));
}

#[test]
fn required_spec_fields() {
    let required = schema()["properties"]["spec"]["required"].clone();
    let mut required: Vec<String> = serde_json::from_value(required).unwrap();
    required.sort();
    assert_eq!(
        required,
        ["githubConfigSecret", "githubConfigUrl", "template"]
    );
}

#[test]
fn ars_field_names_are_in_the_schema() {
    let props = spec_props();
    for field in [
        "githubConfigUrl",
        "githubConfigSecret",
        "runnerGroup",
        "runnerScaleSetName",
        "runnerScaleSetLabels",
        "minRunners",
        "maxRunners",
        "template",
        "containerMode",
        "proxy",
        "githubServerTLS",
        "serviceAccountName",
    ] {
        assert!(props[field].is_object(), "{field} missing");
    }
    let proxy = &props["proxy"]["properties"];
    assert!(proxy["http"]["properties"]["credentialSecretRef"].is_object());
    assert!(proxy["https"]["properties"]["url"].is_object());
    assert!(proxy["noProxy"].is_object());
    let tls = &props["githubServerTLS"]["properties"]["certificateFrom"]["properties"];
    assert!(tls["configMapKeyRef"]["properties"]["key"].is_object());
}

/// 1.20 knows no CEL rules and rejects a CRD that carries them.
#[test]
fn schema_has_no_cel_rules() {
    let text = serde_json::to_string(&crd()).unwrap();
    assert!(!text.contains("x-kubernetes-validations"));
}

#[test]
fn crd_yaml_parses_back_to_the_same_crd() {
    let yaml = crd_yaml().unwrap();
    assert!(yaml.contains("kind: CustomResourceDefinition"));
    let back: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, crd());
}

// --- serde ----------------------------------------------------------------

#[test]
fn ars_values_deserialize() {
    let yaml = r#"
githubConfigUrl: https://github.com/acme/app
githubConfigSecret: gh
runnerGroup: linux
runnerScaleSetName: arm-builders
runnerScaleSetLabels: [arm64, big]
minRunners: 2
maxRunners: 20
containerMode:
  type: dind
proxy:
  http:
    url: http://proxy:3128
    credentialSecretRef: proxy-auth
  noProxy: [example.com]
githubServerTLS:
  certificateFrom:
    configMapKeyRef:
      name: ca
      key: ca.crt
serviceAccountName: runners
template:
  metadata:
    labels: {team: infra}
  spec:
    nodeSelector: {kubernetes.io/arch: arm64}
    containers:
      - name: runner
        image: ghcr.io/actions/actions-runner:latest
"#;
    let spec: RunnerScaleSetSpec = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(spec.runner_group.as_deref(), Some("linux"));
    assert_eq!(spec.runner_scale_set_labels, ["arm64", "big"]);
    assert_eq!((spec.min_runners(), spec.max_runners()), (2, Some(20)));
    assert!(spec.is_dind());
    let proxy = spec.proxy.as_ref().unwrap();
    assert_eq!(
        proxy
            .http
            .as_ref()
            .unwrap()
            .credential_secret_ref
            .as_deref(),
        Some("proxy-auth")
    );
    assert_eq!(proxy.no_proxy, ["example.com"]);
    let cm = spec
        .github_server_tls
        .as_ref()
        .and_then(|t| t.certificate_from.as_ref())
        .and_then(|c| c.config_map_key_ref.as_ref())
        .unwrap();
    assert_eq!((cm.name.as_str(), cm.key.as_str()), ("ca", "ca.crt"));
    assert_eq!(
        spec.template.spec.as_ref().unwrap().containers[0].name,
        "runner"
    );
    assert_eq!(validate(&spec), Ok(()));
}

#[test]
fn spec_serializes_with_ars_names_and_round_trips() {
    let mut spec = valid_spec();
    spec.github_server_tls = Some(GitHubServerTls::default());
    let value = serde_json::to_value(&spec).unwrap();
    assert!(value.get("githubServerTLS").is_some());
    assert_eq!(value["containerMode"], json!({"type": "dind"}));
    assert!(value.get("proxy").is_none(), "unset fields are omitted");
    let back: RunnerScaleSetSpec = serde_json::from_value(value).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn status_serializes_camel_case() {
    let status = RunnerScaleSetStatus {
        scale_set_id: Some(7),
        session_id: Some("s".into()),
        last_message_id: Some(42),
        busy_runners: Some(1),
        ..RunnerScaleSetStatus::default()
    };
    let value = serde_json::to_value(&status).unwrap();
    assert_eq!(
        value,
        json!({"scaleSetId": 7, "sessionId": "s", "lastMessageId": 42, "busyRunners": 1})
    );
}

#[test]
fn scale_set_name_falls_back_to_object_name() {
    let mut rss = RunnerScaleSet::new("from-meta", valid_spec());
    assert_eq!(rss.scale_set_name(), "arm-builders");
    rss.spec.runner_scale_set_name = None;
    assert_eq!(rss.scale_set_name(), "from-meta");
    rss.spec.runner_scale_set_name = Some(String::new());
    assert_eq!(rss.scale_set_name(), "from-meta");
}

#[test]
fn min_and_max_defaults() {
    let mut spec = valid_spec();
    spec.min_runners = None;
    spec.max_runners = None;
    assert_eq!((spec.min_runners(), spec.max_runners()), (0, None));
    spec.container_mode = None;
    assert!(!spec.is_dind());
}

// --- validate ---------------------------------------------------------------

#[test]
fn valid_spec_passes() {
    assert_eq!(validate(&valid_spec()), Ok(()));
}

#[test]
fn min_equal_to_max_passes() {
    let mut spec = valid_spec();
    spec.min_runners = Some(3);
    spec.max_runners = Some(3);
    assert_eq!(validate(&spec), Ok(()));
}

#[test]
fn min_above_max_is_refused() {
    let mut spec = valid_spec();
    spec.min_runners = Some(5);
    spec.max_runners = Some(2);
    let errors = errors_of(&spec);
    assert_eq!(errors, [SpecError::MinAboveMax { min: 5, max: 2 }]);
    let text = errors[0].to_string();
    assert!(text.contains("minRunners (5)") && text.contains("maxRunners (2)"));
}

#[test]
fn min_without_max_passes() {
    let mut spec = valid_spec();
    spec.min_runners = Some(500);
    spec.max_runners = None;
    assert_eq!(validate(&spec), Ok(()));
}

#[test]
fn negative_counts_are_refused() {
    let mut spec = valid_spec();
    spec.min_runners = Some(-1);
    spec.max_runners = Some(-2);
    let errors = errors_of(&spec);
    assert!(errors.contains(&SpecError::Negative {
        field: "minRunners",
        value: -1
    }));
    assert!(errors.contains(&SpecError::Negative {
        field: "maxRunners",
        value: -2
    }));
}

#[test]
fn bad_github_config_url_is_refused_with_the_field_name() {
    for url in [
        "not a url",
        "https://github.com",
        "https://github.com/a/b/c",
        "ftp://github.com/acme",
    ] {
        let mut spec = valid_spec();
        spec.github_config_url = url.into();
        let errors = errors_of(&spec);
        assert_eq!(errors.len(), 1, "{url}: {errors:?}");
        assert!(matches!(errors[0], SpecError::GitHubConfigUrl(_)));
        assert_eq!(errors[0].field(), "githubConfigUrl");
        assert!(errors[0].to_string().contains("githubConfigUrl"), "{url}");
    }
}

#[test]
fn github_config_url_forms_pass() {
    for url in [
        "https://github.com/acme",
        "https://github.com/acme/app/",
        "https://github.com/enterprises/big",
        "https://ghes.example.com/acme",
    ] {
        let mut spec = valid_spec();
        spec.github_config_url = url.into();
        assert_eq!(validate(&spec), Ok(()), "{url}");
    }
}

#[test]
fn empty_url_and_secret_are_refused() {
    let mut spec = valid_spec();
    spec.github_config_url = " ".into();
    spec.github_config_secret = String::new();
    let fields: Vec<_> = errors_of(&spec).iter().map(SpecError::field).collect();
    assert_eq!(fields, ["githubConfigUrl", "githubConfigSecret"]);
}

#[test]
fn scale_set_name_of_45_passes_46_is_refused() {
    let mut spec = valid_spec();
    spec.runner_scale_set_name = Some("a".repeat(45));
    assert_eq!(validate(&spec), Ok(()));
    spec.runner_scale_set_name = Some("a".repeat(46));
    let errors = errors_of(&spec);
    assert!(matches!(
        errors[..],
        [SpecError::ScaleSetNameTooLong { len: 46, .. }]
    ));
    assert!(errors[0].to_string().starts_with("runnerScaleSetName"));
}

#[test]
fn scale_set_name_characters() {
    for good in ["arm-builders", "A_b.c-9", "x"] {
        let mut spec = valid_spec();
        spec.runner_scale_set_name = Some(good.into());
        assert_eq!(validate(&spec), Ok(()), "{good}");
    }
    for (bad, ch) in [
        ("arm builders", ' '),
        ("a/b", '/'),
        ("zoë", 'ë'),
        ("a,b", ','),
    ] {
        let mut spec = valid_spec();
        spec.runner_scale_set_name = Some(bad.into());
        let errors = errors_of(&spec);
        assert_eq!(
            errors,
            [SpecError::ScaleSetNameChars {
                name: bad.into(),
                bad: ch
            }],
            "{bad}"
        );
    }
}

#[test]
fn empty_scale_set_name_is_refused() {
    let mut spec = valid_spec();
    spec.runner_scale_set_name = Some(String::new());
    let errors = errors_of(&spec);
    assert_eq!(errors[0].field(), "runnerScaleSetName");
}

#[test]
fn labels_must_be_non_empty_without_commas() {
    let mut spec = valid_spec();
    spec.runner_scale_set_labels = vec!["ok".into(), "".into(), "a,b".into()];
    let errors = errors_of(&spec);
    assert_eq!(
        errors,
        [
            SpecError::Label {
                index: 1,
                problem: "is empty"
            },
            SpecError::Label {
                index: 2,
                problem: "contains ','"
            }
        ]
    );
    assert_eq!(errors[0].to_string(), "runnerScaleSetLabels[1] is empty");
}

#[test]
fn kubernetes_container_mode_is_not_supported_yet() {
    let mut spec = valid_spec();
    spec.container_mode = Some(ContainerMode {
        mode: ContainerModeType::Kubernetes,
    });
    let errors = errors_of(&spec);
    assert_eq!(errors[0].field(), "containerMode.type");
    assert!(errors[0].to_string().contains("\"kubernetes\""));
}

#[test]
fn no_container_mode_passes() {
    let mut spec = valid_spec();
    spec.container_mode = None;
    assert_eq!(validate(&spec), Ok(()));
}

#[test]
fn template_needs_a_runner_container() {
    let mut spec = valid_spec();
    spec.template.spec.as_mut().unwrap().containers[0].name = "main".into();
    assert_eq!(errors_of(&spec), [SpecError::NoRunnerContainer]);
    spec.template.spec = None;
    assert_eq!(errors_of(&spec), [SpecError::NoRunnerContainer]);
}

#[test]
fn proxy_urls_must_parse() {
    let mut spec = valid_spec();
    spec.proxy = Some(ProxyConfig {
        http: Some(ProxyServer {
            url: "http://proxy:3128".into(),
            credential_secret_ref: None,
        }),
        https: Some(ProxyServer {
            url: "proxy without scheme".into(),
            credential_secret_ref: None,
        }),
        no_proxy: vec![],
    });
    let errors = errors_of(&spec);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field(), "proxy.https.url");
    assert!(errors[0].to_string().starts_with("proxy.https.url"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut spec = valid_spec();
    spec.min_runners = Some(9);
    spec.max_runners = Some(1);
    spec.github_config_url = "https://github.com".into();
    spec.runner_scale_set_name = Some("bad name".into());
    spec.container_mode = Some(ContainerMode {
        mode: ContainerModeType::Kubernetes,
    });
    let fields: Vec<_> = errors_of(&spec).iter().map(SpecError::field).collect();
    assert_eq!(
        fields,
        [
            "minRunners",
            "githubConfigUrl",
            "runnerScaleSetName",
            "containerMode.type"
        ]
    );
}

/// Mutated specs: any counts, `githubConfigUrl`s that `url` and `http`
/// disagree on, hostile names, labels and proxy URLs. `validate` returns
/// every problem as a typed error naming its field, never panics, and a
/// spec it accepts is one the GitHub client can be built from.
#[test]
fn any_spec_is_accepted_usable_or_refused_with_named_fields() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let text = || {
        prop_oneof![
            Just(String::new()),
            "[a-zA-Z0-9._-]{1,50}",
            "[ -~]{0,50}",
            any::<String>(),
        ]
    };
    let count = || {
        proptest::option::of(prop_oneof![
            any::<i32>(),
            -2..20i32,
            Just(i32::MIN),
            Just(i32::MAX)
        ])
    };
    let url = || {
        prop_oneof![
            crate::github::config::mutated_config_urls(),
            Just("https://github.com/acme".to_owned()),
        ]
    };
    let proxy = proptest::option::of((
        proptest::option::of(prop_oneof![
            "http://[a-z{}\"`:@.]{0,12}:[0-9]{0,6}",
            any::<String>()
        ]),
        prop::collection::vec("[ -~]{0,12}", 0..3),
    ));
    let container = prop_oneof![
        Just("runner".to_owned()),
        Just("Runner".to_owned()),
        "[a-z]{0,6}"
    ];
    let spec = (
        (
            url(),
            text(),
            proptest::option::of(text()),
            prop::collection::vec(text(), 0..3),
        ),
        (count(), count(), container, proxy, any::<bool>()),
    )
        .prop_map(
            |((config_url, secret, name, labels), (min, max, container, proxy, kubernetes))| {
                let mut spec = valid_spec();
                spec.github_config_url = config_url;
                spec.github_config_secret = secret;
                spec.runner_scale_set_name = name;
                spec.runner_scale_set_labels = labels;
                spec.min_runners = min;
                spec.max_runners = max;
                if let Some(pod) = spec.template.spec.as_mut() {
                    pod.containers[0].name = container;
                }
                spec.proxy = proxy.map(|(url, no_proxy)| ProxyConfig {
                    http: url.map(|url| ProxyServer {
                        url,
                        credential_secret_ref: None,
                    }),
                    https: None,
                    no_proxy,
                });
                if kubernetes {
                    spec.container_mode = Some(ContainerMode {
                        mode: ContainerModeType::Kubernetes,
                    });
                }
                spec
            },
        );
    let mut runner = TestRunner::new(Config {
        cases: 10_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&spec, |spec| {
        match validate(&spec) {
            Ok(()) => {
                let config = GitHubConfig::parse(&spec.github_config_url)
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                prop_assert!(
                    config.rest_base().as_str().parse::<http::Uri>().is_ok(),
                    "accepted {:?}, whose REST base {} the HTTP client refuses",
                    spec.github_config_url,
                    config.rest_base()
                );
                prop_assert!(
                    spec.max_runners()
                        .is_none_or(|max| spec.min_runners() <= max)
                );
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for error in errors {
                    let field = error.field();
                    prop_assert!(!field.is_empty());
                    let root = field.split(['.', '[']).next().unwrap_or(field);
                    prop_assert!(
                        error.to_string().contains(root),
                        "{error} does not name {field}"
                    );
                }
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

// --- kubeActions ---------------------------------------------------------------

#[test]
fn kube_actions_in_the_schema_needs_a_config_map_name() {
    let executor = &spec_props()["kubeActions"];
    assert_eq!(executor["type"], "object");
    assert_eq!(executor["required"], json!(["allowlistConfigMap"]));
    let props = &executor["properties"];
    assert_eq!(props["allowlistConfigMap"]["minLength"], 1);
    for field in ["image", "imagePullPolicy", "resources"] {
        assert!(props[field].is_object(), "{field} missing");
    }
    // Like the template: the API server checks it on the pod.
    assert_eq!(
        props["resources"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
}

#[test]
fn kube_actions_round_trips_with_contract_names() {
    let yaml = r#"
githubConfigUrl: https://github.com/acme
githubConfigSecret: gh
template: {spec: {containers: [{name: runner, image: r}]}}
kubeActions:
  allowlistConfigMap: ci-kube-actions
  image: ghcr.io/acme/runway:1
  imagePullPolicy: IfNotPresent
  resources: {limits: {memory: 64Mi}}
"#;
    let spec: RunnerScaleSetSpec = serde_yaml::from_str(yaml).unwrap();
    let executor = spec.kube_actions.as_ref().unwrap();
    assert_eq!(executor.allowlist_config_map, "ci-kube-actions");
    assert_eq!(executor.image.as_deref(), Some("ghcr.io/acme/runway:1"));
    assert_eq!(executor.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert!(executor.resources.as_ref().unwrap().limits.is_some());
    assert_eq!(validate(&spec), Ok(()));
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        json["kubeActions"],
        json!({
            "allowlistConfigMap": "ci-kube-actions",
            "image": "ghcr.io/acme/runway:1",
            "imagePullPolicy": "IfNotPresent",
            "resources": {"limits": {"memory": "64Mi"}}
        })
    );
    // Absent: not serialized at all (the stored object stays as it was).
    assert!(
        serde_json::to_value(valid_spec())
            .unwrap()
            .get("kubeActions")
            .is_none()
    );
}

#[test]
fn kube_actions_needs_an_allowlist_config_map() {
    for name in ["", "  "] {
        let mut spec = valid_spec();
        spec.kube_actions = Some(KubeActionsExecutor {
            allowlist_config_map: name.into(),
            ..KubeActionsExecutor::default()
        });
        let errors = errors_of(&spec);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field(), "kubeActions.allowlistConfigMap");
        let text = errors[0].to_string();
        assert!(
            text.contains("spec.kubeActions.allowlistConfigMap"),
            "{text}"
        );
    }
}

#[test]
fn kube_actions_refuses_a_template_that_hands_out_a_token() {
    let mut spec = valid_spec();
    spec.template.spec.as_mut().unwrap().containers[0].volume_mounts =
        Some(vec![k8s_openapi::api::core::v1::VolumeMount {
            name: "creds".into(),
            mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            ..Default::default()
        }]);
    // Without kubeActions the template is the user's business.
    assert_eq!(validate(&spec), Ok(()));
    spec.kube_actions = Some(KubeActionsExecutor {
        allowlist_config_map: "ci-kube-actions".into(),
        ..KubeActionsExecutor::default()
    });
    let errors = errors_of(&spec);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field(), "template.spec");
    let text = errors[0].to_string();
    assert!(text.contains("\"runner\""), "{text}");
    assert!(text.contains("spec.kubeActions"), "{text}");
}
