//! Table tests of every STS decision in `rules`.

use super::*;

const ACCT: &str = "111122223333";

fn config() -> StsConfig {
    StsConfig::test_chain()
}

fn arn(role: &str) -> String {
    format!("arn:aws:iam::{ACCT}:role/{role}")
}

fn session_of(role: &str) -> Caller {
    Caller {
        arn: format!("arn:aws:sts::{ACCT}:assumed-role/{role}/s1"),
        principal: arn(role),
        is_role_session: true,
        ..Caller::default()
    }
}

fn static_user() -> Caller {
    Caller {
        arn: "arn:aws:iam::111122223333:user/sandbox".into(),
        principal: "arn:aws:iam::111122223333:user/sandbox".into(),
        ..Caller::default()
    }
}

fn assume(role: &str) -> AssumeRoleParams {
    AssumeRoleParams {
        role_arn: arn(role),
        role_session_name: "job-42".into(),
        ..AssumeRoleParams::default()
    }
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn session_names_follow_length_and_charset() {
    let cases: &[(&str, Option<&str>)] = &[
        ("ab", None),
        ("a_b+c=d,e.f@g-h", None),
        (&"x".repeat(64), None),
        (
            "a",
            Some(
                "1 validation error detected: Value 'a' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2",
            ),
        ),
        (
            "my job",
            Some(
                r"1 validation error detected: Value 'my job' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*",
            ),
        ),
        (
            "ünï",
            Some(
                r"1 validation error detected: Value 'ünï' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*",
            ),
        ),
    ];
    for (name, want) in cases {
        let mut p = assume("a");
        p.role_session_name = name.to_string();
        let got = validate_assume_role(&p).err().map(|f| f.message);
        assert_eq!(got.as_deref(), *want, "session name {name:?}");
    }
    let mut p = assume("a");
    p.role_session_name = "y".repeat(65) + " ";
    let err = validate_assume_role(&p).unwrap_err();
    assert_eq!(err.code, "ValidationError");
    assert!(
        err.message.starts_with("2 validation errors detected: "),
        "{}",
        err.message
    );
    assert!(err.message.contains("less than or equal to 64"));
}

#[test]
fn tag_fields_are_validated_like_aws() {
    type Tags = Vec<(String, String)>;
    let cases: Vec<(Tags, Option<&str>)> = vec![
        (tags(&[("Repo", "org/repo"), ("Empty", "")]), None),
        (tags(&[("Ünïcode Key", "値 1:2/3=4+5-6@7")]), None),
        (
            tags(&[("", "v")]),
            Some(
                "Value '' at 'tags.1.member.key' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ),
        ),
        (
            tags(&[("ok", "v"), ("bad*", "v")]),
            Some(
                r"Value 'bad*' at 'tags.2.member.key' failed to satisfy constraint: Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]+",
            ),
        ),
        (
            tags(&[("k", "a\tb")]),
            Some(
                "at 'tags.1.member.value' failed to satisfy constraint: Member must satisfy regular expression pattern",
            ),
        ),
        (
            vec![("k".repeat(129), "v".into())],
            Some("Member must have length less than or equal to 128"),
        ),
        (
            vec![("k".into(), "v".repeat(257))],
            Some("Member must have length less than or equal to 256"),
        ),
        (
            (0..51).map(|i| (format!("k{i}"), "v".into())).collect(),
            Some(
                "Value '[51 tags]' at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50",
            ),
        ),
    ];
    for (tag_list, want) in cases {
        let mut p = assume("a");
        p.tags = tag_list.clone();
        match (validate_assume_role(&p), want) {
            (Ok(()), None) => {}
            (Err(f), Some(want)) => {
                assert_eq!(f.code, "ValidationError");
                assert!(f.message.contains(want), "{tag_list:?}: {}", f.message);
            }
            (got, want) => panic!("{tag_list:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn other_fields_have_their_bounds() {
    type Edit = fn(&mut AssumeRoleParams);
    let cases: &[(Edit, Option<&str>)] = &[
        (
            |p| p.duration_seconds = Some(899),
            Some(
                "Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900",
            ),
        ),
        (
            |p| p.duration_seconds = Some(43201),
            Some("Member must have value less than or equal to 43200"),
        ),
        (|p| p.duration_seconds = Some(900), None),
        (
            |p| p.external_id = Some("x".into()),
            Some(
                "at 'externalId' failed to satisfy constraint: Member must have length greater than or equal to 2",
            ),
        ),
        (
            |p| p.external_id = Some("x".repeat(1225)),
            Some("less than or equal to 1224"),
        ),
        (|p| p.external_id = Some("urn:a/b@c".into()), None),
        (
            |p| p.source_identity = Some("alice smith".into()),
            Some(
                "at 'sourceIdentity' failed to satisfy constraint: Member must satisfy regular expression pattern",
            ),
        ),
        (
            |p| p.policy = Some("x".repeat(2049)),
            Some(
                "at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048",
            ),
        ),
        (|p| p.policy = Some("x".repeat(2048)), None),
        (
            |p| {
                p.policy_arns = (0..11)
                    .map(|i| format!("arn:aws:iam::aws:policy/P{i}"))
                    .collect()
            },
            Some("at 'policyArns'"),
        ),
        (
            |p| p.transitive_tag_keys = vec!["bad*".into()],
            Some("at 'transitiveTagKeys.1.member'"),
        ),
    ];
    for (i, (edit, want)) in cases.iter().enumerate() {
        let mut p = assume("a");
        edit(&mut p);
        match (validate_assume_role(&p), want) {
            (Ok(()), None) => {}
            (Err(f), Some(want)) => assert!(f.message.contains(want), "case {i}: {}", f.message),
            (got, want) => panic!("case {i}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn trust_decides_who_may_assume() {
    let c = config();
    let denied = |caller: &Caller, role: &str| {
        let f = decide_assume_role(&c, caller, &assume(role)).unwrap_err();
        assert_eq!((f.status, f.code), (403, "AccessDenied"));
        f.message
    };
    assert!(decide_assume_role(&c, &session_of("base"), &assume("a")).is_ok());
    assert!(decide_assume_role(&c, &session_of("a"), &assume("b")).is_ok());
    assert!(decide_assume_role(&c, &static_user(), &assume("long")).is_ok());
    assert_eq!(
        denied(&session_of("base"), "b"),
        "User: arn:aws:sts::111122223333:assumed-role/base/s1 is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role/b"
    );
    // A role that does not exist looks like one that does not trust you.
    assert!(
        denied(&session_of("base"), "nope")
            .ends_with("on resource: arn:aws:iam::111122223333:role/nope")
    );
    assert!(
        denied(&static_user(), "a")
            .starts_with("User: arn:aws:iam::111122223333:user/sandbox is not")
    );
    // "web-identity" trust is not trust in signed callers.
    assert!(denied(&session_of("a"), "base").contains("sts:AssumeRole"));
}

#[test]
fn tagging_needs_tag_session_even_for_inherited_tags() {
    let c = config();
    let tag_denied = "User: arn:aws:sts::111122223333:assumed-role/base/s1 is not authorized to perform: sts:TagSession on resource: arn:aws:iam::111122223333:role/untagged";
    let mut p = assume("untagged");
    assert!(decide_assume_role(&c, &session_of("base"), &p).is_ok());
    p.tags = tags(&[("Repo", "r")]);
    assert_eq!(
        decide_assume_role(&c, &session_of("base"), &p)
            .unwrap_err()
            .message,
        tag_denied
    );

    let mut inheriting = session_of("base");
    inheriting.transitive_tags = tags(&[("eks-cluster-name", "prod")]);
    let f = decide_assume_role(&c, &inheriting, &assume("untagged")).unwrap_err();
    assert_eq!((f.code, f.message.as_str()), ("AccessDenied", tag_denied));
}

#[test]
fn transitive_tags_flow_and_cannot_be_overridden() {
    let c = config();
    let mut p = assume("a");
    p.tags = tags(&[("Repo", "org/r"), ("Job", "build")]);
    p.transitive_tag_keys = vec!["repo".into()];
    let first = decide_assume_role(&c, &session_of("base"), &p).unwrap();
    assert_eq!(first.transitive_tags, tags(&[("Repo", "org/r")]));

    let caller = Caller {
        transitive_tags: first.transitive_tags.clone(),
        ..session_of("a")
    };
    let mut next = assume("b");
    next.tags = tags(&[("Stage", "deploy")]);
    let second = decide_assume_role(&c, &caller, &next).unwrap();
    assert_eq!(second.tags, tags(&[("Repo", "org/r"), ("Stage", "deploy")]));
    assert_eq!(second.transitive_tags, tags(&[("Repo", "org/r")]));

    next.tags = tags(&[("REPO", "other")]);
    let f = decide_assume_role(&c, &caller, &next).unwrap_err();
    assert_eq!(f.code, "InvalidParameterValue");
    assert!(f.message.contains("'REPO'"), "{}", f.message);
}

#[test]
fn duplicate_and_dangling_transitive_keys_are_refused() {
    let c = config();
    let mut p = assume("a");
    p.tags = tags(&[("Repo", "a"), ("repo", "b")]);
    let f = decide_assume_role(&c, &session_of("base"), &p).unwrap_err();
    assert_eq!(
        (f.code, f.message.as_str()),
        ("InvalidParameterValue", DUPLICATE_TAGS_MESSAGE)
    );

    p.tags = tags(&[("Repo", "a")]);
    p.transitive_tag_keys = vec!["Actor".into()];
    let f = decide_assume_role(&c, &session_of("base"), &p).unwrap_err();
    assert_eq!(f.code, "InvalidParameterValue");
    assert!(
        f.message
            .starts_with("The specified transitive tag key must be included in the requested tags")
    );
}

#[test]
fn source_identity_needs_permission_and_never_changes() {
    let c = config();
    let mut p = assume("no-source");
    p.source_identity = Some("alice".into());
    let f = decide_assume_role(&c, &session_of("base"), &p).unwrap_err();
    assert_eq!(
        f.message,
        "User: arn:aws:sts::111122223333:assumed-role/base/s1 is not authorized to perform: sts:SetSourceIdentity on resource: arn:aws:iam::111122223333:role/no-source"
    );

    let mut p = assume("a");
    p.source_identity = Some("alice".into());
    assert_eq!(
        decide_assume_role(&c, &session_of("base"), &p)
            .unwrap()
            .source_identity
            .as_deref(),
        Some("alice")
    );
    let caller = Caller {
        source_identity: Some("alice".into()),
        ..session_of("a")
    };
    // Inherited without asking; the same value is fine; another is denied.
    assert_eq!(
        decide_assume_role(&c, &caller, &assume("b"))
            .unwrap()
            .source_identity
            .as_deref(),
        Some("alice")
    );
    let mut same = assume("b");
    same.source_identity = Some("alice".into());
    assert!(decide_assume_role(&c, &caller, &same).is_ok());
    same.source_identity = Some("mallory".into());
    let f = decide_assume_role(&c, &caller, &same).unwrap_err();
    assert_eq!(f.code, "AccessDenied");
    assert!(f.message.contains("cannot be changed"), "{}", f.message);

    let mut reserved = assume("a");
    reserved.source_identity = Some("aws:me".into());
    assert_eq!(
        decide_assume_role(&c, &session_of("base"), &reserved)
            .unwrap_err()
            .code,
        "ValidationError"
    );
}

#[test]
fn role_chaining_is_limited_to_one_hour() {
    let c = config();
    let cases: &[(Caller, u32, Option<&str>)] = &[
        (session_of("base"), 3600, None),
        (session_of("base"), 3601, Some(CHAIN_LIMIT_MESSAGE)),
        (session_of("base"), 7200, Some(CHAIN_LIMIT_MESSAGE)),
        (static_user(), 7200, None),
        (static_user(), 43200, None),
    ];
    for (caller, duration, want) in cases {
        let mut p = assume("long");
        p.duration_seconds = Some(*duration);
        match (decide_assume_role(&c, caller, &p), want) {
            (Ok(g), None) => {
                assert_eq!(g.duration_seconds, *duration);
                assert_eq!(g.chained, caller.is_role_session);
            }
            (Err(f), Some(want)) => {
                assert_eq!((f.code, f.message.as_str()), ("ValidationError", *want))
            }
            (got, want) => panic!("{duration}: got {got:?}, want {want:?}"),
        }
    }
    // Not chained, but over the role's own MaxSessionDuration.
    let mut over_max = assume("a");
    over_max.duration_seconds = Some(3601);
    let unchained = Caller {
        is_role_session: false,
        ..session_of("base")
    };
    let f = decide_assume_role(&c, &unchained, &over_max).unwrap_err();
    assert_eq!(f.message, ROLE_MAX_MESSAGE);
}

#[test]
fn packed_size_is_the_documented_estimate() {
    assert_eq!(packed_size(&tags(&[("ab", "cde")]), None, &[]), 7);
    assert_eq!(packed_size(&[], Some("xyz"), &[]), 2);
    assert_eq!(
        packed_size(&[], Some("xy"), &["abcd".into(), "e".into()]),
        4
    );
    assert_eq!(packed_percent(1024, 2048), 50);
    assert_eq!(packed_percent(1025, 2048), 51);

    let c = config();
    let mut p = assume("a");
    p.tags = tags(&[("Repo", "org/repo")]);
    let g = decide_assume_role(&c, &session_of("base"), &p).unwrap();
    assert_eq!(g.packed_policy_size, Some(1)); // 14 bytes of 2048
    assert_eq!(
        decide_assume_role(&c, &session_of("base"), &assume("a"))
            .unwrap()
            .packed_policy_size,
        None
    );

    // Six full-length tags: 6 * (128 + 256 + 2) = 2316 bytes = 114%.
    p.tags = (0..6)
        .map(|i| (format!("{i}").repeat(128), "v".repeat(256)))
        .collect();
    let f = decide_assume_role(&c, &session_of("base"), &p).unwrap_err();
    assert_eq!((f.status, f.code), (400, "PackedPolicyTooLarge"));
    assert_eq!(
        f.message,
        "Packed size of session tags consumes 114% of allotted space."
    );

    // Inherited tags count too, and the budget is configurable.
    let small = StsConfig {
        packed_budget: 100,
        ..config()
    };
    // ("k", 99 x "v") is 1 + 99 + 2 = 102 bytes of 100.
    let caller = Caller {
        transitive_tags: tags(&[("k", &"v".repeat(99))]),
        ..session_of("a")
    };
    let f = decide_assume_role(&small, &caller, &assume("b")).unwrap_err();
    assert_eq!(
        f.message,
        "Packed size of session tags consumes 102% of allotted space."
    );
}

#[test]
fn web_identity_needs_a_role_that_trusts_it() {
    let c = config();
    let p = |role: &str, duration| WebIdentityParams {
        role_arn: arn(role),
        role_session_name: "pod".into(),
        web_identity_token: "token".into(),
        duration_seconds: duration,
        ..WebIdentityParams::default()
    };
    let g = decide_web_identity(&c, &p("base", None)).unwrap();
    assert_eq!((g.duration_seconds, g.chained), (3600, false));
    let f = decide_web_identity(&c, &p("a", None)).unwrap_err();
    assert_eq!(
        (f.code, f.message.as_str()),
        (
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity"
        )
    );
    assert_eq!(
        decide_web_identity(&c, &p("base", Some(7200)))
            .unwrap_err()
            .message,
        ROLE_MAX_MESSAGE
    );
    assert_eq!(
        decide_web_identity(&c, &p("base", Some(100)))
            .unwrap_err()
            .code,
        "ValidationError"
    );
}

#[test]
fn arns_parse() {
    assert_eq!(
        parse_role_arn("arn:aws:iam::1:role/path/x/R"),
        Some(("1", "R"))
    );
    assert_eq!(parse_role_arn("arn:aws:iam::1:user/R"), None);
    assert_eq!(
        role_of_assumed_role_arn("arn:aws:sts::1:assumed-role/R/s").as_deref(),
        Some("arn:aws:iam::1:role/R")
    );
}
