//! Tests of argument handling and the pure preparation of a chain.

use clap::Parser;

use super::*;
use crate::aws::error::{EXIT_BAD_INPUT, EXIT_NOT_ALLOWED};

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

const JOB: &[(&str, &str)] = &[
    ("GITHUB_WORKFLOW", "CI"),
    ("GITHUB_RUN_NUMBER", "17"),
    ("GITHUB_JOB", "build"),
    ("GITHUB_REPOSITORY", "acme/web"),
    ("GITHUB_RUN_ID", "9001"),
    ("GITHUB_ACTOR", "octocat"),
    ("AWS_REGION", "eu-west-1"),
    ("RUNWAY_AWS_BACKOFF_BASE_MS", "1"),
];

fn chain(roles: &[&str]) -> ChainArgs {
    ChainArgs {
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..ChainArgs::default()
    }
}

#[test]
fn prepare_renders_names_tags_region_and_backoff() {
    let p = prepare(
        &chain(&["arn:aws:iam::1:role/A"]),
        FileConfig::default(),
        &env_of(JOB),
    )
    .unwrap();
    assert_eq!(p.spec.session_name, "CI_17_build");
    assert_eq!(p.region, "eu-west-1");
    assert_eq!(p.spec.retry.base, Duration::from_millis(1));
    let keys: Vec<&str> = p.spec.tags.tags.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        keys,
        vec!["Repository", "Workflow", "RunId", "Actor", "Job"]
    );
    assert_eq!(p.spec.tagging, SessionTagging::Auto);

    let never = ChainArgs {
        session_tagging: Some(SessionTagging::Never),
        ..chain(&[])
    };
    let p = prepare(&never, FileConfig::default(), &env_of(&[])).unwrap();
    assert!(p.spec.tags.tags.is_empty());
    assert_eq!(p.region, FALLBACK_REGION);
    assert_eq!(p.spec.session_name, session_name::FALLBACK);
}

#[test]
fn a_role_outside_allowed_roles_is_refused_with_exit_3() {
    let file =
        config::parse_file("c", "allowedRoles: ['arn:aws:iam::1:role/arc-runner-*']").unwrap();
    let err = prepare(
        &chain(&[
            "arn:aws:iam::1:role/arc-runner-a",
            "arn:aws:iam::1:role/admin",
        ]),
        file,
        &env_of(JOB),
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_NOT_ALLOWED);
    let msg = err.to_string();
    assert!(
        msg.contains("arn:aws:iam::1:role/admin") && msg.contains("aws.allowedRoles"),
        "{msg}"
    );
}

#[test]
fn bad_input_names_the_setting() {
    let cases: Vec<(ChainArgs, &str)> = vec![
        (chain(&["not-an-arn"]), "--role `not-an-arn`"),
        (
            ChainArgs {
                session_name: Some("{nope}".into()),
                ..chain(&[])
            },
            "`--session-name`",
        ),
        (
            ChainArgs {
                tags: vec!["Repo".into()],
                ..chain(&[])
            },
            "`--tag`",
        ),
        (
            ChainArgs {
                transitive_tag_keys: vec!["Commit".into()],
                ..chain(&[])
            },
            "`--transitive-tag-key`",
        ),
        (
            ChainArgs {
                source_identity: Some("{".into()),
                ..chain(&[])
            },
            "`--source-identity`",
        ),
    ];
    for (args, want) in cases {
        let err = prepare(&args, FileConfig::default(), &env_of(JOB)).unwrap_err();
        assert_eq!(err.exit_code(), EXIT_BAD_INPUT, "{err}");
        assert!(err.to_string().contains(want), "{err} should name {want}");
    }
}

#[test]
fn output_words() {
    let w = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(parse_output(&w(&[]), Output::Env).unwrap(), Output::Env);
    assert_eq!(
        parse_output(&w(&["github-env"]), Output::Env).unwrap(),
        Output::GithubEnv
    );
    assert_eq!(
        parse_output(&w(&["profile", "ci"]), Output::Env).unwrap(),
        Output::Profile("ci".into())
    );
    assert!(parse_output(&w(&["profile"]), Output::Env).is_err());
    assert!(parse_output(&w(&["yaml"]), Output::Env).is_err());
}

#[derive(clap::Parser)]
struct Wrapper {
    #[command(flatten)]
    chain: ChainArgs,
}

#[test]
fn to_args_reproduces_the_chain() {
    let original = Wrapper::parse_from([
        "x",
        "--role",
        "arn:aws:iam::1:role/A",
        "--role",
        "arn:aws:iam::1:role/B",
        "--session-name",
        "{workflow}_{job}",
        "--duration",
        "7200",
        "--session-tagging",
        "always",
        "--tag",
        "Repository,Actor",
        "--transitive-tag-key",
        "Repository",
        "--policy",
        "{\"Version\": \"2012-10-17\"}",
    ])
    .chain;
    let again =
        Wrapper::parse_from(std::iter::once("x".to_string()).chain(original.to_args())).chain;
    assert_eq!(format!("{again:?}"), format!("{original:?}"));
    assert_eq!(again.tags, vec!["Repository", "Actor"]);
}
