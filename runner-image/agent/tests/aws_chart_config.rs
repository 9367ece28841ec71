//! The two sides of the scale set's `aws:` values agree: what the chart
//! renders into the ConfigMap is read by `runway aws` as the same settings,
//! at the path the chart mounts and names in RUNWAY_AWS_CONFIG.

use runway_agent::aws::config::{self, DEFAULT_CONFIG_PATH, Flags, SessionTagging};
use runway_sandbox::helm;
use serde_json::json;

#[test]
fn the_rendered_config_reads_back_as_the_values() {
    let values = json!({
        "githubConfigUrl": "https://github.com/acme-corp",
        "githubConfigSecret": { "github_token": "ghp_exampleExampleExample" },
        "aws": {
            "region": "eu-central-1",
            "allowedRoles": ["arn:aws:iam::111122223333:role/arc-runner-*"],
            "sessionTagging": "always",
            "sessionTags": ["Repository", "Workflow", "RunId", "Actor", "Job"],
            "transitiveTagKeys": ["Repository"],
            "sessionName": "{workflow}_{run_number}_{job}",
            "maxSessionDuration": 1800,
            "sourceIdentity": "{actor}",
            "externalId": "",
            "sessionPolicy": "{\"Version\":\"2012-10-17\",\"Statement\":[]}",
        },
    });
    let chart = helm::chart_path("runway-scale-set");
    let files = helm::render(&chart, &values, "ci", "runners").expect("render");
    let (_, text) = files
        .iter()
        .find(|(path, _)| path.ends_with("aws-config.yaml"))
        .expect("the aws ConfigMap");
    let map: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    let data = map["data"]["config.yaml"]
        .as_str()
        .expect("data.config.yaml");
    let file = config::parse_file("rendered", data).expect("every rendered key is known");
    let s = config::merge(file, &|_| None, Flags::default()).unwrap();
    assert_eq!(s.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
        s.allowed_roles,
        vec!["arn:aws:iam::111122223333:role/arc-runner-*"]
    );
    assert_eq!(s.tagging, SessionTagging::Always);
    assert_eq!(
        s.tag_names,
        vec!["Repository", "Workflow", "RunId", "Actor", "Job"]
    );
    assert_eq!(s.transitive_tag_keys, vec!["Repository"]);
    assert_eq!(s.session_name, "{workflow}_{run_number}_{job}");
    assert_eq!(s.duration, 1800);
    assert_eq!(s.source_identity.as_deref(), Some("{actor}"));
    assert_eq!(s.external_id, None);
    assert_eq!(
        s.policy.as_deref(),
        Some("{\"Version\":\"2012-10-17\",\"Statement\":[]}")
    );

    // The runner container is pointed at the file where runway looks by default.
    let all: String = files.values().cloned().collect();
    assert!(
        all.contains("RUNWAY_AWS_CONFIG"),
        "no RUNWAY_AWS_CONFIG in the runner pod"
    );
    assert!(
        all.contains(DEFAULT_CONFIG_PATH),
        "{DEFAULT_CONFIG_PATH} not mounted"
    );
}
