//! `runway aws assume-role` against the sandbox's fake STS: the chain, the
//! tags and names it sends, and every refusal path, checked in the fake's
//! request log. Backoff is 1 ms (`RUNWAY_AWS_BACKOFF_BASE_MS`), so no test
//! waits on real timers.

mod aws_support;

use std::time::Duration;

use aws_support::{JSON, JSON_FOR_2H, Job, SESSION_NAME, requests, tags};
use runway_sandbox::sts::{FakeSts, LoggedRequest, RoleConfig, StsConfig};

const TAGGED: &str = "sessionTags: [Repository, Workflow, RunId, Actor, Job]\n";

/// base (web identity) -> A -> B; `b_tags`: whether B's trust allows TagSession.
async fn fake(b_tags: bool, packed_budget: Option<usize>) -> FakeSts {
    let account = StsConfig::default();
    let base = account.role_arn("base");
    let a = account.role_arn("A");
    let mut b = RoleConfig::new("B").trusting(&a);
    if !b_tags {
        b = b.without_tag_session();
    }
    let mut config = StsConfig::default()
        .with_role(RoleConfig::new("base").trusting_web_identity())
        .with_role(RoleConfig::new("A").trusting(&base))
        .with_role(b);
    if let Some(budget) = packed_budget {
        config.packed_budget = budget;
    }
    FakeSts::start(config).await.expect("fake STS")
}

fn new_job(sts: &FakeSts, config: &str) -> Job {
    Job::for_fake(sts, "system:serviceaccount:ci:runner", config)
}

/// The AssumeRole calls naming `role_arn`, in order.
fn assume_role_requests_for(sts: &FakeSts, role_arn: &str) -> Vec<LoggedRequest> {
    requests(sts, "AssumeRole")
        .into_iter()
        .filter(|r| r.role_arn.as_deref() == Some(role_arn))
        .collect()
}

#[tokio::test]
async fn a_three_hop_chain_sends_exact_names_and_tags() {
    let sts = fake(true, None).await;
    let job = new_job(&sts, &format!("{TAGGED}transitiveTagKeys: [Repository]\n"));
    let (a, b) = (sts.role_arn("A"), sts.role_arn("B"));
    let run = job.aws("assume-role", &[&a, &b], JSON).await;
    run.ok();
    let creds = run.json();
    assert_eq!(creds["Version"], 1);
    let key = creds["AccessKeyId"].as_str().unwrap();
    let session = sts.session(key).expect("the fake issued these credentials");
    assert_eq!(session.role_arn, b);
    assert_eq!(
        session.secret_access_key,
        creds["SecretAccessKey"].as_str().unwrap()
    );
    assert!(session.chained);

    let log = sts.requests();
    assert_eq!(log.len(), 3, "{log:#?}");
    assert_eq!(log[0].action, "AssumeRoleWithWebIdentity");
    assert_eq!(
        log[0].role_arn.as_deref(),
        Some(sts.role_arn("base").as_str())
    );
    assert_eq!(log[0].role_session_name.as_deref(), Some(SESSION_NAME));
    assert!(log[0].tags.is_empty());

    let all = tags(&[
        ("Repository", "acme/web"),
        ("Workflow", "CI"),
        ("RunId", "9001"),
        ("Actor", "octocat"),
        ("Job", "build"),
    ]);
    assert_eq!(log[1].action, "AssumeRole");
    assert_eq!(log[1].role_arn.as_deref(), Some(a.as_str()));
    assert_eq!(log[1].role_session_name.as_deref(), Some(SESSION_NAME));
    assert_eq!(
        log[1].caller.as_deref(),
        Some(format!("arn:aws:sts::111122223333:assumed-role/base/{SESSION_NAME}").as_str())
    );
    assert_eq!(log[1].tags, all);
    assert_eq!(log[1].transitive_tag_keys, vec!["Repository"]);
    assert_eq!(
        log[1].duration_seconds,
        Some(900),
        "intermediate hops ask for the minimum"
    );

    // B inherits Repository as transitive: sending it again would fail.
    assert_eq!(log[2].role_arn.as_deref(), Some(b.as_str()));
    assert_eq!(log[2].tags, all[1..].to_vec());
    assert!(log[2].transitive_tag_keys.is_empty());
    assert_eq!(log[2].duration_seconds, Some(3600));
    assert!(log.iter().all(|r| r.outcome == "ok"), "{log:#?}");
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[tokio::test]
async fn tag_session_denied_always_fails_in_one_call_with_the_statement() {
    let sts = fake(false, None).await;
    let job = new_job(&sts, &format!("{TAGGED}sessionTagging: always\n"));
    let (a, b) = (sts.role_arn("A"), sts.role_arn("B"));
    let run = job.aws("assume-role", &[&a, &b], JSON).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    let to_b = assume_role_requests_for(&sts, &b);
    assert_eq!(to_b.len(), 1, "{to_b:#?}");
    assert_eq!(to_b[0].outcome, "AccessDenied");
    run.stderr_has(&format!("\"Principal\": {{ \"AWS\": \"{a}\" }}"));
    run.stderr_has("\"Action\": [\"sts:AssumeRole\", \"sts:TagSession\"]");
    run.stderr_has("aws.sessionTagging: never");
    run.stderr_has("--session-tagging never");
    assert!(
        run.stdout.is_empty(),
        "no credentials on failure: {}",
        run.stdout
    );
    // Shown verbatim in the closing note.
    eprintln!("---- user-facing message (always) ----\n{}", run.stderr);
}

#[tokio::test]
async fn tag_session_denied_auto_retries_once_untagged_and_warns() {
    let sts = fake(false, None).await;
    let job = new_job(&sts, TAGGED);
    let (a, b) = (sts.role_arn("A"), sts.role_arn("B"));
    let run = job.aws("assume-role", &[&a, &b], JSON).await;
    run.ok();
    let to_b = assume_role_requests_for(&sts, &b);
    assert_eq!(to_b.len(), 2, "{to_b:#?}");
    assert_eq!(
        (to_b[0].outcome.as_str(), to_b[0].tags.len()),
        ("AccessDenied", 5)
    );
    assert_eq!((to_b[1].outcome.as_str(), to_b[1].tags.len()), ("ok", 0));
    run.stderr_has("retrying arn:aws:iam::111122223333:role/B once WITHOUT session tags");
    run.stderr_has("sts:TagSession");
    eprintln!("---- user-facing warning (auto) ----\n{}", run.stderr);
}

#[tokio::test]
async fn tagging_never_sends_no_tags() {
    let sts = fake(false, None).await;
    let job = new_job(&sts, TAGGED).env("RUNWAY_AWS_SESSION_TAGGING", "always");
    let (a, b) = (sts.role_arn("A"), sts.role_arn("B"));
    // The flag beats the env, which beats the file.
    let run = job
        .aws(
            "assume-role",
            &[&a, &b],
            &["--session-tagging", "never", "--output", "json"],
        )
        .await;
    run.ok();
    let assumed = requests(&sts, "AssumeRole");
    assert_eq!(assumed.len(), 2, "{assumed:#?}");
    assert!(
        assumed
            .iter()
            .all(|r| r.tags.is_empty() && r.transitive_tag_keys.is_empty())
    );
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[tokio::test]
async fn a_chained_duration_over_an_hour_is_clamped_with_a_note() {
    let sts = fake(true, None).await;
    let job = new_job(&sts, "");
    let run = job
        .aws("assume-role", &[&sts.role_arn("A")], JSON_FOR_2H)
        .await;
    run.ok();
    let assumed = requests(&sts, "AssumeRole");
    assert_eq!(assumed.len(), 1);
    assert_eq!(assumed[0].duration_seconds, Some(3600));
    assert!(
        sts.requests()
            .iter()
            .all(|r| r.outcome != "ValidationError")
    );
    run.stderr_has("asking for 3600 s instead of 7200 s");
}

#[tokio::test]
async fn packed_policy_too_large_drops_optional_tags_once() {
    // All five tags are 168% of a 40-byte budget; Repository alone is 50%.
    let sts = fake(true, Some(40)).await;
    let job = new_job(&sts, &format!("{TAGGED}transitiveTagKeys: [Repository]\n"));
    let run = job.aws("assume-role", &[&sts.role_arn("A")], JSON).await;
    run.ok();
    let assumed = requests(&sts, "AssumeRole");
    assert_eq!(assumed.len(), 2, "{assumed:#?}");
    assert_eq!(assumed[0].outcome, "PackedPolicyTooLarge");
    assert_eq!(assumed[1].tags, tags(&[("Repository", "acme/web")]));
    run.stderr_has("168%");

    // With 15 bytes even Repository alone is too much: fail with the percentage.
    let sts = fake(true, Some(15)).await;
    let job = new_job(&sts, &format!("{TAGGED}transitiveTagKeys: [Repository]\n"));
    let run = job.aws("assume-role", &[&sts.role_arn("A")], JSON).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(requests(&sts, "AssumeRole").len(), 2);
    run.stderr_has("134%");
}

#[tokio::test]
async fn a_role_outside_allowed_roles_makes_no_sts_call() {
    let sts = fake(true, None).await;
    let job = new_job(&sts, "allowedRoles: ['arn:aws:iam::111122223333:role/A']\n");
    let run = job
        .aws(
            "assume-role",
            &[&sts.role_arn("A"), &sts.role_arn("B")],
            &[],
        )
        .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    run.stderr_has("aws.allowedRoles");
    run.stderr_has(&sts.role_arn("B"));
    assert!(sts.requests().is_empty(), "{:#?}", sts.requests());
}

#[tokio::test]
async fn throttling_is_retried_with_backoff_then_given_up() {
    let sts = fake(true, None).await;
    let job = new_job(&sts, "");
    // Two throttles: retried, then success.
    sts.throttle_next(2);
    let run = job.aws("assume-role", &[&sts.role_arn("A")], JSON).await;
    run.ok();
    assert_eq!(requests(&sts, "AssumeRoleWithWebIdentity").len(), 3);
    run.stderr_has("Throttling; retry 1 in");

    // Throttled for good: 4 calls on the first hop, then a clear message, exit 5.
    let sts = fake(true, None).await;
    let job = new_job(&sts, "");
    sts.throttle_next(100);
    let run = job.aws("assume-role", &[&sts.role_arn("A")], JSON).await;
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert_eq!(sts.requests().len(), 4, "{:#?}", sts.requests());
    run.stderr_has("gave up on AssumeRoleWithWebIdentity");
    run.stderr_has("after 4 attempts: Throttling: Rate exceeded");
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);

    // 5xx is retried the same way.
    let sts = fake(true, None).await;
    let job = new_job(&sts, "");
    sts.fail_next(1);
    job.aws("assume-role", &[&sts.role_arn("A")], JSON)
        .await
        .ok();
    assert_eq!(requests(&sts, "AssumeRoleWithWebIdentity").len(), 2);
}

#[tokio::test]
async fn github_env_masks_then_appends() {
    let sts = fake(true, None).await;
    let job = new_job(&sts, "");
    let env_file = job.path("github_env");
    let out_file = job.path("github_output");
    let job = job
        .env("GITHUB_ENV", &env_file.display().to_string())
        .env("GITHUB_OUTPUT", &out_file.display().to_string());
    let run = job
        .aws(
            "assume-role",
            &[&sts.role_arn("A")],
            &["--step-outputs", "identity"],
        )
        .await;
    run.ok();
    let written = std::fs::read_to_string(&env_file).unwrap();
    let value = |name: &str| {
        written
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {written}"))
            .to_string()
    };
    for secret in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(
            run.stdout
                .contains(&format!("::add-mask::{}\n", value(secret))),
            "{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(&value(secret)),
            "a secret reached stderr"
        );
    }
    assert_eq!(value("AWS_REGION"), "eu-central-1");
    let outputs = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        outputs.contains("aws-account-id=111122223333\n"),
        "{outputs}"
    );
    assert!(
        outputs.contains(&format!(
            "authenticated-arn=arn:aws:sts::111122223333:assumed-role/A/{SESSION_NAME}\n"
        )),
        "{outputs}"
    );
}

#[tokio::test]
async fn whoami_names_every_hop() {
    let sts = fake(true, None).await;
    let job = new_job(&sts, "");
    let run = job.aws("whoami", &[&sts.role_arn("A")], &[]).await;
    run.ok();
    assert!(
        run.stdout.contains(&format!(
            "arn:aws:sts::111122223333:assumed-role/base/{SESSION_NAME}"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "arn:aws:sts::111122223333:assumed-role/A/{SESSION_NAME}"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(requests(&sts, "GetCallerIdentity").len(), 2);
}
