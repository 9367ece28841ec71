//! Where the chain starts: static env keys (an IAM user: not role chaining,
//! so no 1 h clamp), EKS Pod Identity (a role session from the container
//! credentials endpoint: chaining, clamped), the order between them and IRSA
//! for `assume-role` and `credential-process`, and a pod with no identity.

mod aws_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::BehaviorVersion;
use aws_support::{JSON, JSON_FOR_2H, Job, requests};
use runway_sandbox::sts::{FakeSts, RoleConfig, StaticCredential, StsConfig};

const IRSA: [&str; 2] = ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"];

async fn fake() -> FakeSts {
    let user = StaticCredential::demo();
    let base = StsConfig::default().role_arn("base");
    let config = StsConfig::default()
        .with_static_credential(user.clone())
        .with_role(RoleConfig::new("base").trusting_web_identity())
        .with_role(
            RoleConfig::new("A")
                .trusting(&base)
                .trusting(&user.principal_arn)
                .with_max_session_duration(7200),
        );
    FakeSts::start(config).await.expect("fake STS")
}

fn new_job(sts: &FakeSts) -> Job {
    Job::for_fake(sts, "runner", "")
}

fn with_user_keys(job: Job) -> Job {
    let user = StaticCredential::demo();
    job.env("AWS_ACCESS_KEY_ID", &user.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &user.secret_access_key)
}

#[tokio::test]
async fn static_user_keys_are_not_role_chaining() {
    let sts = fake().await;
    let job = with_user_keys(new_job(&sts))
        .without(IRSA[0])
        .without(IRSA[1]);
    let run = job
        .aws("assume-role", &[&sts.role_arn("A")], JSON_FOR_2H)
        .await;
    run.ok();
    let log = sts.requests();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(
        log[0].caller.as_deref(),
        Some(StaticCredential::demo().principal_arn.as_str())
    );
    assert_eq!(log[0].duration_seconds, Some(7200));
    assert!(!run.stderr.contains("instead of 7200"), "{}", run.stderr);
}

#[tokio::test]
async fn assume_role_follows_the_sdk_order_and_credential_process_prefers_the_pod() {
    let sts = fake().await;
    let job = with_user_keys(new_job(&sts));
    let a = sts.role_arn("A");
    job.aws("assume-role", &[&a], JSON).await.ok();
    assert_eq!(
        sts.requests()[0].action,
        "AssumeRole",
        "env keys come first: {:#?}",
        sts.requests()
    );

    // Keys an earlier step exported must not be the start of a refresh.
    job.aws("credential-process", &[&a], &[]).await.ok();
    assert_eq!(
        sts.requests()[1].action,
        "AssumeRoleWithWebIdentity",
        "{:#?}",
        sts.requests()
    );
}

/// A container credentials endpoint like EKS Pod Identity's agent, serving
/// `creds` to requests carrying `token`; counts what it served.
async fn pod_identity_agent(
    creds: serde_json::Value,
    token: &'static str,
) -> (String, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let body = creds.to_string();
    let app = axum::Router::new().route(
        "/v1/credentials",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (body, counter) = (body.clone(), counter.clone());
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(token) {
                    return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                }
                counter.fetch_add(1, Ordering::SeqCst);
                (axum::http::StatusCode::OK, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/credentials", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, served)
}

#[tokio::test]
async fn eks_pod_identity_is_a_role_session_so_chained_hops_are_clamped() {
    let sts = fake().await;
    // The agent hands out a session of `base`, as Pod Identity would.
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-central-1"))
        .http_client(runway_agent::aws::sts::http_client())
        .endpoint_url(sts.endpoint())
        .no_credentials()
        .load()
        .await;
    let out = aws_sdk_sts::Client::new(&sdk)
        .assume_role_with_web_identity()
        .role_arn(sts.role_arn("base"))
        .role_session_name("pod-identity")
        .web_identity_token(sts.mint_web_identity_token("runner"))
        .send()
        .await
        .expect("base session");
    let c = out.credentials().unwrap();
    let expiration = chrono::Utc::now() + chrono::Duration::minutes(30);
    let creds = serde_json::json!({
        "AccessKeyId": c.access_key_id(),
        "SecretAccessKey": c.secret_access_key(),
        "Token": c.session_token(),
        "Expiration": expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let (url, served) = pod_identity_agent(creds, "agent-token").await;

    let job = new_job(&sts).without(IRSA[0]).without(IRSA[1]);
    std::fs::write(job.path("agent-token"), "agent-token").unwrap();
    let token_file = job.path("agent-token").display().to_string();
    let job = job
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file);
    let before = sts.requests().len();
    let run = job
        .aws("assume-role", &[&sts.role_arn("A")], JSON_FOR_2H)
        .await;
    run.ok();
    assert_eq!(served.load(Ordering::SeqCst), 1);
    let log = &sts.requests()[before..];
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(
        log[0].caller.as_deref(),
        Some("arn:aws:sts::111122223333:assumed-role/base/pod-identity")
    );
    assert_eq!(log[0].duration_seconds, Some(3600));
    run.stderr_has("instead of 7200");
}

#[tokio::test]
async fn a_pod_without_identity_exits_2_naming_the_annotation() {
    let sts = fake().await;
    let job = new_job(&sts).without(IRSA[0]).without(IRSA[1]);
    let run = job.aws("assume-role", &[&sts.role_arn("A")], &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    run.stderr_has("eks.amazonaws.com/role-arn");
    assert!(requests(&sts, "AssumeRole").is_empty());
}
