//! Tests of the config file format and the merge of file, env and flags.

use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

const FULL: &str = r#"
region: eu-central-1
allowedRoles: ["arn:aws:iam::111122223333:role/arc-runner-*"]
sessionTagging: always
sessionTags: [Repository, Workflow]
transitiveTagKeys: [Repository]
sessionName: "{repo}-{run_id}"
maxSessionDuration: 1800
sourceIdentity: ""
externalId: ""
sessionPolicy: ""
"#;

#[test]
fn the_chart_format_parses_with_empty_strings_as_none() {
    let file = parse_file("c.yaml", FULL).unwrap();
    let s = merge(file, &env_of(&[]), Flags::default()).unwrap();
    assert_eq!(s.region.as_deref(), Some("eu-central-1"));
    assert_eq!(
        s.allowed_roles,
        vec!["arn:aws:iam::111122223333:role/arc-runner-*"]
    );
    assert_eq!(s.tagging, SessionTagging::Always);
    assert_eq!(s.tagging_source.origin, Origin::File);
    assert_eq!(s.tag_names, vec!["Repository", "Workflow"]);
    assert_eq!(s.transitive_tag_keys, vec!["Repository"]);
    assert_eq!(s.session_name, "{repo}-{run_id}");
    assert_eq!(s.duration, 1800);
    assert_eq!(s.source_identity, None);
    assert_eq!(s.external_id, None);
    assert_eq!(s.policy, None);
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let err = parse_file("/etc/runway/aws/config.yaml", "sesionTagging: never\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sesionTagging"), "{msg}");
    assert!(msg.contains("/etc/runway/aws/config.yaml"), "{msg}");
}

#[test]
fn empty_or_null_file_means_defaults() {
    for text in ["", "  \n", "~\n", "{}\n"] {
        let s = merge(
            parse_file("c", text).unwrap(),
            &env_of(&[]),
            Flags::default(),
        )
        .unwrap();
        assert_eq!(s.tagging, SessionTagging::Auto, "{text:?}");
        assert_eq!(s.session_name, DEFAULT_SESSION_NAME);
        assert_eq!(s.duration, DEFAULT_DURATION);
        assert_eq!(s.tag_names, DEFAULT_SESSION_TAGS);
        assert!(s.allowed_roles.is_empty());
    }
}

#[test]
fn flags_beat_env_beat_file() {
    let file = || parse_file("c", FULL).unwrap();
    let env = env_of(&[
        ("RUNWAY_AWS_SESSION_TAGGING", "never"),
        ("RUNWAY_AWS_REGION", "us-west-2"),
        ("RUNWAY_AWS_SESSION_TAGS", "Actor, Job"),
        ("RUNWAY_AWS_MAX_SESSION_DURATION", "2400"),
    ]);
    let s = merge(file(), &env, Flags::default()).unwrap();
    assert_eq!(s.tagging, SessionTagging::Never);
    assert_eq!(s.tagging_source.origin, Origin::Env);
    assert_eq!(s.region.as_deref(), Some("us-west-2"));
    assert_eq!(s.tag_names, vec!["Actor", "Job"]);
    assert_eq!(s.duration, 2400);

    let flags = Flags {
        session_tagging: Some(SessionTagging::Auto),
        region: Some("ap-south-1".into()),
        tags: vec!["Commit".into()],
        duration: Some(7200),
        ..Flags::default()
    };
    let s = merge(file(), &env, flags).unwrap();
    assert_eq!(s.tagging, SessionTagging::Auto);
    assert_eq!(s.tagging_source.to_string(), "`--session-tagging`");
    assert_eq!(s.region.as_deref(), Some("ap-south-1"));
    assert_eq!(s.tag_names, vec!["Commit"]);
    assert_eq!(s.duration, 7200);
}

#[test]
fn allowed_roles_come_from_the_file_only() {
    let env = env_of(&[("RUNWAY_AWS_ALLOWED_ROLES", "*")]);
    let s = merge(parse_file("c", FULL).unwrap(), &env, Flags::default()).unwrap();
    assert_eq!(
        s.allowed_roles,
        vec!["arn:aws:iam::111122223333:role/arc-runner-*"]
    );
}

/// File, env, flags, and the setting the error must name.
type Case = (
    FileConfig,
    Vec<(&'static str, &'static str)>,
    Flags,
    &'static str,
);

#[test]
fn errors_name_the_setting_where_it_was_given() {
    let cases: Vec<Case> = vec![
        (
            parse_file("c", "maxSessionDuration: 60").unwrap(),
            vec![],
            Flags::default(),
            "`aws.maxSessionDuration`",
        ),
        (
            FileConfig::default(),
            vec![("RUNWAY_AWS_MAX_SESSION_DURATION", "1h")],
            Flags::default(),
            "`RUNWAY_AWS_MAX_SESSION_DURATION`",
        ),
        (
            FileConfig::default(),
            vec![],
            Flags {
                duration: Some(50_000),
                ..Flags::default()
            },
            "`--duration`",
        ),
        (
            FileConfig::default(),
            vec![("RUNWAY_AWS_SESSION_TAGGING", "sometimes")],
            Flags::default(),
            "`RUNWAY_AWS_SESSION_TAGGING`",
        ),
        (
            FileConfig::default(),
            vec![],
            Flags {
                policy: Some("{not json".into()),
                ..Flags::default()
            },
            "`--policy`",
        ),
        (
            parse_file(
                "c",
                &format!("sessionPolicy: '{{\"a\":\"{}\"}}'", "x".repeat(2100)),
            )
            .unwrap(),
            vec![],
            Flags::default(),
            "`aws.sessionPolicy`",
        ),
        (
            FileConfig::default(),
            vec![],
            Flags {
                external_id: Some("bad id!".into()),
                ..Flags::default()
            },
            "`--external-id`",
        ),
    ];
    for (file, env, flags, want) in cases {
        let err = merge(file, &env_of(&env), flags).unwrap_err().to_string();
        assert!(err.contains(want), "{err} should name {want}");
    }
}

#[test]
fn a_policy_at_the_limit_is_accepted() {
    let body = "x".repeat(MAX_POLICY_CHARS - 8);
    let policy = format!("{{\"a\":\"{body}\"}}");
    assert_eq!(policy.len(), MAX_POLICY_CHARS);
    let flags = Flags {
        policy: Some(policy.clone()),
        ..Flags::default()
    };
    let s = merge(FileConfig::default(), &env_of(&[]), flags).unwrap();
    assert_eq!(s.policy, Some(policy));
}
