//! `runway aws credential-process`: the JSON the AWS CLI and SDKs expect, and
//! a profile whose `credential_process` runs runway, which an SDK refreshes by
//! itself when the (here: seconds-long) chained credentials expire.

mod aws_support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::identity::IdentityCache;
// The non-deprecated names live in aws-runtime, not a dependency of ours.
#[allow(deprecated)]
use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
use aws_support::{Job, SESSION_NAME, requests};
use runway_sandbox::sts::{FakeSts, RoleConfig, StsConfig};

async fn fake() -> FakeSts {
    let base = StsConfig::default().role_arn("base");
    let config = StsConfig::default()
        .with_role(RoleConfig::new("base").trusting_web_identity())
        .with_role(RoleConfig::new("A").trusting(&base));
    FakeSts::start(config).await.expect("fake STS")
}

fn new_job(sts: &FakeSts) -> Job {
    Job::for_fake(sts, "runner", "")
}

#[tokio::test]
async fn the_json_is_what_the_aws_cli_expects() {
    let sts = fake().await;
    let job = new_job(&sts);
    let run = job
        .aws("credential-process", &[&sts.role_arn("A")], &[])
        .await;
    run.ok();
    let json = run.json();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{json}");
    assert_eq!(json["Version"], 1);
    let session = sts
        .session(json["AccessKeyId"].as_str().unwrap())
        .expect("issued by the fake");
    assert_eq!(json["SecretAccessKey"], session.secret_access_key.as_str());
    assert_eq!(json["SessionToken"], session.session_token.as_str());
    let expiration = json["Expiration"].as_str().unwrap();
    assert!(expiration.ends_with('Z'), "{expiration}");
    let parsed = chrono::DateTime::parse_from_rfc3339(expiration).unwrap();
    assert_eq!(parsed.timestamp(), session.expires_at.timestamp());
    // Nothing but the JSON on stdout: the SDK parses all of it.
    assert_eq!(run.stdout.trim().lines().count(), 1);
}

/// Points the AWS config and shared credentials files into the job's dir;
/// returns the job and those two paths (neither file exists yet).
fn with_profile_files(job: Job) -> (Job, PathBuf, PathBuf) {
    let config_file = job.path("aws-config");
    let credentials_file = job.path("aws-credentials");
    let job = job
        .env("AWS_CONFIG_FILE", &config_file.display().to_string())
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            &credentials_file.display().to_string(),
        );
    (job, config_file, credentials_file)
}

/// Prefixes the profile's command with the job's env: the SDK runs it with
/// this test process's env, which (no `set_var` here) lacks the pod's.
fn with_job_env(config: &str, job: &Job) -> String {
    let prefix: String = job
        .vars()
        .iter()
        .map(|(k, v)| format!("'{k}={v}' "))
        .collect();
    config
        .lines()
        .map(|line| match line.strip_prefix("credential_process = ") {
            Some(command) => format!("credential_process = env -i {prefix}{command}\n"),
            None => format!("{line}\n"),
        })
        .collect()
}

#[allow(deprecated)]
#[tokio::test]
async fn an_sdk_refreshes_chained_credentials_through_the_profile() {
    let sts = fake().await;
    let job = new_job(&sts);
    let (job, config_file, credentials_file) = with_profile_files(job);
    std::fs::write(
        &credentials_file,
        "[ci]\naws_access_key_id = STALE\naws_secret_access_key = STALE\n",
    )
    .unwrap();
    let run = job
        .aws(
            "credential-process",
            &[&sts.role_arn("A")],
            &["--output", "profile", "ci"],
        )
        .await;
    run.ok();
    let written = std::fs::read_to_string(&config_file).unwrap();
    let exe = env!("CARGO_BIN_EXE_runway");
    assert!(
        written.contains(&format!(
            "[profile ci]\ncredential_process = {exe} aws credential-process --role {}\nregion = eu-central-1\n",
            sts.role_arn("A")
        )),
        "{written}"
    );
    // Static keys under the same name would shadow credential_process.
    assert!(
        !std::fs::read_to_string(&credentials_file)
            .unwrap()
            .contains("STALE")
    );
    std::fs::write(&config_file, with_job_env(&written, &job)).unwrap();

    // Every set of credentials from now on lives 3 s.
    sts.set_credential_lifetime(Some(Duration::from_secs(3)));
    let before = requests(&sts, "AssumeRoleWithWebIdentity").len();
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(runway_agent::aws::sts::http_client())
        .endpoint_url(sts.endpoint())
        .profile_files(
            ProfileFiles::builder()
                .with_file(ProfileFileKind::Config, &config_file)
                .with_file(ProfileFileKind::Credentials, &credentials_file)
                .build(),
        )
        .profile_name("ci")
        .identity_cache(
            IdentityCache::lazy()
                .buffer_time(Duration::from_secs(1))
                .build(),
        )
        .load()
        .await;
    let client = aws_sdk_sts::Client::new(&sdk);
    let who = client
        .get_caller_identity()
        .send()
        .await
        .expect("first call");
    assert_eq!(
        who.arn(),
        Some(format!("arn:aws:sts::111122223333:assumed-role/A/{SESSION_NAME}").as_str())
    );
    assert_eq!(
        requests(&sts, "AssumeRoleWithWebIdentity").len(),
        before + 1,
        "runway ran once"
    );
    client.get_caller_identity().send().await.expect("cached");
    assert_eq!(
        requests(&sts, "AssumeRoleWithWebIdentity").len(),
        before + 1,
        "still cached"
    );

    // Poll until the SDK has run runway again: the credentials expired.
    let started = Instant::now();
    while requests(&sts, "AssumeRoleWithWebIdentity").len() < before + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no refresh: {:#?}",
            sts.requests()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .get_caller_identity()
            .send()
            .await
            .expect("call during refresh");
    }
    let calls = requests(&sts, "GetCallerIdentity");
    assert!(
        calls.iter().all(|r| r.outcome == "ok"),
        "an expired key was used: {calls:#?}"
    );
    let signers: std::collections::BTreeSet<_> =
        calls.iter().filter_map(|r| r.caller.clone()).collect();
    assert_eq!(signers.len(), 1, "same role, fresh keys: {signers:?}");
    eprintln!("refreshed after {:?}", started.elapsed());
}

#[tokio::test]
async fn assume_role_writes_a_static_profile_readable_only_by_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let sts = fake().await;
    let job = new_job(&sts);
    let (job, config_file, credentials_file) = with_profile_files(job);
    std::fs::write(&config_file, "[default]\nregion = us-east-1\n").unwrap();
    let run = job
        .aws(
            "assume-role",
            &[&sts.role_arn("A")],
            &["--output", "profile", "deploy"],
        )
        .await;
    run.ok();
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let config = std::fs::read_to_string(&config_file).unwrap();
    assert_eq!(
        config,
        "[default]\nregion = us-east-1\n\n[profile deploy]\nregion = eu-central-1\n"
    );
    let credentials = std::fs::read_to_string(&credentials_file).unwrap();
    let key = credentials
        .lines()
        .find_map(|l| l.strip_prefix("aws_access_key_id = "))
        .expect("a key");
    let session = sts.session(key).expect("issued by the fake");
    assert!(credentials.contains(&format!("aws_session_token = {}\n", session.session_token)));
    let mode = std::fs::metadata(&credentials_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
