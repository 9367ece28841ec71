//! The fake STS driven by the real AWS SDK for Rust (aws-sdk-sts), which
//! must parse every response and error it gives, and by raw HTTP for the
//! wire details the SDK hides. The same happy chain also runs against moto
//! to show the SDK code path is the one a real STS exercises.

use std::sync::Arc;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_sts::Client;
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder;
use aws_sdk_sts::types::Tag;
use aws_smithy_http_client::tls;
use runway_sandbox::sts::{FakeSts, MotoServer, RoleConfig, StaticCredential, StsConfig};
use serde_json::json;

const ACCT: &str = "111122223333";
const SUBJECT: &str = "system:serviceaccount:runners:runner";

fn arn(role: &str) -> String {
    format!("arn:aws:iam::{ACCT}:role/{role}")
}

/// base (web identity) -> a -> b; untagged and no-source refuse what their
/// names say; long allows 12 h for the static user. The same account the
/// `rules` table tests judge.
fn config() -> StsConfig {
    StsConfig::test_chain()
}

async fn start() -> FakeSts {
    FakeSts::start(config()).await.expect("fake STS starts")
}

fn client(endpoint: &str, credentials: Option<Credentials>) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-central-1"))
        .endpoint_url(endpoint)
        .http_client(http)
        // Every call the test makes is one request: the fake's log and the
        // injected faults are counted exactly.
        .retry_config(RetryConfig::disabled());
    if let Some(credentials) = credentials {
        config = config.credentials_provider(credentials);
    }
    Client::from_conf(config.build())
}

fn creds(c: &aws_sdk_sts::types::Credentials) -> Credentials {
    Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "fake-sts-test",
    )
}

fn static_creds() -> Credentials {
    let s = StaticCredential::demo();
    Credentials::new(s.access_key_id, s.secret_access_key, None, None, "static")
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder()
        .key(k)
        .value(v)
        .build()
        .expect("key and value set")
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// AssumeRole of the role `role` (a name in [`config`]) as session
/// `session`, signed with `client`'s credentials.
fn assume(client: &Client, role: &str, session: &str) -> AssumeRoleFluentBuilder {
    client
        .assume_role()
        .role_arn(arn(role))
        .role_session_name(session)
}

/// The code, message and HTTP status the SDK reports for a failed call.
fn failure<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<T, SdkError<E, HttpResponse>>,
) -> (String, String, u16) {
    let err = result.expect_err("the call must fail");
    let status = err.raw_response().map_or(0, |r| r.status().as_u16());
    (
        err.code().unwrap_or("<no code>").to_owned(),
        err.message().unwrap_or("<no message>").to_owned(),
        status,
    )
}

/// The first hop, as the SDK's web identity provider would make it.
async fn web_identity(
    endpoint: &str,
    token: &str,
    role_arn: &str,
) -> aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput {
    client(endpoint, None)
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name("runner-pod")
        .web_identity_token(token)
        .send()
        .await
        .expect("AssumeRoleWithWebIdentity succeeds")
}

/// web identity -> roles[0] -> roles[1] ..., then GetCallerIdentity with the
/// last credentials; the same calls whichever STS answers.
async fn chain(endpoint: &str, token: &str, base: &str, roles: &[String]) -> Vec<String> {
    let first = web_identity(endpoint, token, base).await;
    let mut arns = vec![first.assumed_role_user().unwrap().arn().to_owned()];
    let mut current = creds(first.credentials().unwrap());
    for (i, role) in roles.iter().enumerate() {
        let out = client(endpoint, Some(current))
            .assume_role()
            .role_arn(role)
            .role_session_name(format!("hop-{}", i + 1))
            .tags(tag("Repository", "org/app"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("AssumeRole {role}: {e:?}"));
        arns.push(out.assumed_role_user().unwrap().arn().to_owned());
        current = creds(out.credentials().unwrap());
    }
    let me = client(endpoint, Some(current))
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity succeeds");
    arns.push(me.arn().unwrap().to_owned());
    arns
}

#[tokio::test]
async fn three_hop_chain_with_tags_is_logged_exactly() {
    let sts = start().await;
    let token = sts.mint_web_identity_token(SUBJECT);
    let first = web_identity(&sts.endpoint(), &token, &arn("base")).await;
    assert_eq!(first.subject_from_web_identity_token(), Some(SUBJECT));
    assert_eq!(first.audience(), Some("sts.amazonaws.com"));
    assert_eq!(
        first.provider(),
        Some("arn:aws:iam::111122223333:oidc-provider/oidc.sandbox.runway.dev")
    );
    let base = creds(first.credentials().unwrap());

    let a = assume(&client(&sts.endpoint(), Some(base)), "a", "ci_42_build")
        .tags(tag("Repository", "org/app"))
        .tags(tag("Actor", "octocat"))
        .transitive_tag_keys("Repository")
        .source_identity("octocat")
        .duration_seconds(900)
        .send()
        .await
        .expect("base -> a");
    let user = a.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        "arn:aws:sts::111122223333:assumed-role/a/ci_42_build"
    );
    assert!(user.assumed_role_id().starts_with("AROA"));
    assert!(user.assumed_role_id().ends_with(":ci_42_build"));
    #[allow(deprecated)] // PackedPolicySize: still sent, now next to SessionTokenUtilization.
    let packed = a.packed_policy_size();
    assert!(packed.is_some_and(|p| p > 0 && p <= 100), "{packed:?}");
    assert_eq!(a.session_token_utilization(), packed);
    let token_size = a.session_token_size().expect("SessionTokenSize");
    assert_eq!(
        token_size as usize,
        a.credentials().unwrap().session_token().len()
    );
    assert_eq!(a.source_identity(), Some("octocat"));
    let a_creds = a.credentials().unwrap();
    assert!(a_creds.access_key_id().starts_with("ASIA"));
    let lifetime = a_creds.expiration().secs() - sts.now().timestamp();
    assert!((890..=900).contains(&lifetime), "expires in {lifetime} s");

    let b = assume(
        &client(&sts.endpoint(), Some(creds(a_creds))),
        "b",
        "ci_42_deploy",
    )
    .tags(tag("Stage", "prod"))
    .send()
    .await
    .expect("a -> b");
    let b_key = b.credentials().unwrap().access_key_id().to_owned();
    let who = client(&sts.endpoint(), Some(creds(b.credentials().unwrap())))
        .get_caller_identity()
        .send()
        .await
        .expect("whoami as b");
    assert_eq!(
        who.arn(),
        Some("arn:aws:sts::111122223333:assumed-role/b/ci_42_deploy")
    );
    assert_eq!(who.account(), Some(ACCT));
    assert!(who.user_id().unwrap().ends_with(":ci_42_deploy"));

    // b inherited the transitive Repository tag and the source identity.
    let session = sts.session(&b_key).expect("b's session is known");
    assert_eq!(
        session.tags,
        pairs(&[("Repository", "org/app"), ("Stage", "prod")])
    );
    assert_eq!(session.transitive_tags, pairs(&[("Repository", "org/app")]));
    assert_eq!(session.source_identity.as_deref(), Some("octocat"));
    assert!(session.chained);

    let log = sts.requests();
    let summary: Vec<_> = log
        .iter()
        .map(|r| {
            (
                r.action.as_str(),
                r.role_session_name.as_deref(),
                r.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("AssumeRoleWithWebIdentity", Some("runner-pod"), "ok"),
            ("AssumeRole", Some("ci_42_build"), "ok"),
            ("AssumeRole", Some("ci_42_deploy"), "ok"),
            ("GetCallerIdentity", None, "ok"),
        ]
    );
    assert_eq!(log[0].caller, None);
    assert_eq!(
        log[1].caller.as_deref(),
        Some("arn:aws:sts::111122223333:assumed-role/base/runner-pod")
    );
    assert_eq!(
        log[1].tags,
        pairs(&[("Repository", "org/app"), ("Actor", "octocat")])
    );
    assert_eq!(log[1].transitive_tag_keys, vec!["Repository".to_string()]);
    assert_eq!(log[1].duration_seconds, Some(900));
    assert_eq!(log[1].source_identity.as_deref(), Some("octocat"));
    assert_eq!(log[2].tags, pairs(&[("Stage", "prod")]));
    assert_eq!(log[2].role_arn.as_deref(), Some(arn("b").as_str()));
}

#[tokio::test]
async fn access_denied_texts_are_awss() {
    let sts = start().await;
    let token = sts.mint_web_identity_token(SUBJECT);
    let base = creds(
        web_identity(&sts.endpoint(), &token, &arn("base"))
            .await
            .credentials()
            .unwrap(),
    );
    let me = "arn:aws:sts::111122223333:assumed-role/base/runner-pod";
    let as_base = client(&sts.endpoint(), Some(base));
    // AWS's text when `role`'s trust policy does not grant `sts:<action>` to base.
    let denied = |action: &str, role: &str| {
        (
            "AccessDenied".to_owned(),
            format!(
                "User: {me} is not authorized to perform: sts:{action} on resource: {}",
                arn(role)
            ),
            403,
        )
    };

    let not_trusted = assume(&as_base, "b", "s1").send().await;
    assert_eq!(failure(not_trusted), denied("AssumeRole", "b"));

    let tagged = assume(&as_base, "untagged", "s1")
        .tags(tag("Repository", "org/app"))
        .send()
        .await;
    assert_eq!(failure(tagged), denied("TagSession", "untagged"));
    // The same role without tags is fine.
    assume(&as_base, "untagged", "s1")
        .send()
        .await
        .expect("untagged works without tags");

    let sourced = assume(&as_base, "no-source", "s1")
        .source_identity("octocat")
        .send()
        .await;
    assert_eq!(failure(sourced), denied("SetSourceIdentity", "no-source"));

    let web_untrusted = client(&sts.endpoint(), None)
        .assume_role_with_web_identity()
        .role_arn(arn("a"))
        .role_session_name("pod")
        .web_identity_token(&token)
        .send()
        .await;
    assert_eq!(
        failure(web_untrusted),
        (
            "AccessDenied".into(),
            "Not authorized to perform sts:AssumeRoleWithWebIdentity".into(),
            403
        )
    );
    let outcomes: Vec<_> = sts.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            "ok",
            "AccessDenied",
            "AccessDenied",
            "ok",
            "AccessDenied",
            "AccessDenied"
        ]
    );
}

#[tokio::test]
async fn web_identity_tokens_are_checked() {
    let sts = start().await;
    let now = sts.now().timestamp();
    let claims = |iss: &str, aud: &str, exp: i64| json!({"iss": iss, "aud": aud, "sub": SUBJECT, "exp": exp});
    let issuer = sts.config().issuer.clone();
    let other_key = FakeSts::start(config()).await.unwrap();
    let cases = [
        (
            sts.mint_token_with(claims("https://evil.example", "sts.amazonaws.com", now + 600)),
            "InvalidIdentityToken",
            "No OpenIDConnect provider found in your account for https://evil.example".to_owned(),
        ),
        (
            sts.mint_token_with(claims(&issuer, "someone-else", now + 600)),
            "InvalidIdentityToken",
            "Incorrect token audience".to_owned(),
        ),
        (
            sts.mint_token_with(claims(&issuer, "sts.amazonaws.com", now - 10)),
            "ExpiredTokenException",
            format!(
                "Token expired: current date/time {now} must be before the expiration date/time{}",
                now - 10
            ),
        ),
        (
            other_key.mint_web_identity_token(SUBJECT),
            "InvalidIdentityToken",
            "The ID Token's signature could not be verified with any key of the OpenID Connect provider".to_owned(),
        ),
        (
            "opaque-access-token".to_owned(),
            "InvalidIdentityToken",
            "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)".to_owned(),
        ),
    ];
    for (token, code, message) in cases {
        let result = client(&sts.endpoint(), None)
            .assume_role_with_web_identity()
            .role_arn(arn("base"))
            .role_session_name("pod")
            .web_identity_token(token)
            .send()
            .await;
        let (got_code, got_message, status) = failure(result);
        assert_eq!((got_code.as_str(), status), (code, 400));
        // The expiry text carries the fake's clock, which may tick a second.
        if code == "ExpiredTokenException" {
            assert!(got_message.starts_with("Token expired: current date/time "));
            assert!(got_message.ends_with(&format!("expiration date/time{}", now - 10)));
        } else {
            assert_eq!(got_message, message);
        }
    }
}

async fn as_base(sts: &FakeSts) -> Client {
    let token = sts.mint_web_identity_token(SUBJECT);
    let out = web_identity(&sts.endpoint(), &token, &arn("base")).await;
    client(&sts.endpoint(), Some(creds(out.credentials().unwrap())))
}

#[tokio::test]
async fn role_chaining_is_limited_to_one_hour_but_static_keys_are_not() {
    let sts = start().await;
    let chained = assume(&as_base(&sts).await, "long", "s1")
        .duration_seconds(7200)
        .send()
        .await;
    assert_eq!(
        failure(chained),
        (
            "ValidationError".into(),
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.".into(),
            400
        )
    );
    let direct = assume(&client(&sts.endpoint(), Some(static_creds())), "long", "s1")
        .duration_seconds(7200)
        .send()
        .await
        .expect("a static key may ask for 2 h");
    let session = sts
        .session(direct.credentials().unwrap().access_key_id())
        .unwrap();
    assert!(!session.chained);
    assert_eq!(
        sts.requests().last().unwrap().caller.as_deref(),
        Some("arn:aws:iam::111122223333:user/sandbox")
    );
}

#[tokio::test]
async fn validation_errors_name_the_member_and_constraint() {
    let sts = start().await;
    let base = as_base(&sts).await;
    let bad_name = assume(&base, "a", "my job").send().await;
    assert_eq!(
        failure(bad_name),
        (
            "ValidationError".into(),
            r"1 validation error detected: Value 'my job' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*".into(),
            400
        )
    );
    let duplicate = assume(&base, "a", "s1")
        .tags(tag("Repo", "x"))
        .tags(tag("repo", "y"))
        .send()
        .await;
    assert_eq!(
        failure(duplicate),
        (
            "InvalidParameterValue".into(),
            "Duplicate tag keys found. Please note that Tag keys are case insensitive.".into(),
            400
        )
    );
    let dangling = assume(&base, "a", "s1")
        .tags(tag("Repo", "x"))
        .transitive_tag_keys("Actor")
        .send()
        .await;
    let (code, message, _) = failure(dangling);
    assert_eq!(code, "InvalidParameterValue");
    assert!(
        message
            .starts_with("The specified transitive tag key must be included in the requested tags")
    );
    let too_many = (0..51).fold(assume(&base, "a", "s1"), |call, i| {
        call.tags(tag(&format!("k{i}"), "v"))
    });
    let (code, message, _) = failure(too_many.send().await);
    assert_eq!(code, "ValidationError");
    assert!(message.contains(
        "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50"
    ));
}

/// A session of `a`, assumed from base with the transitive tag Team=platform.
async fn as_a_with_team(sts: &FakeSts) -> Client {
    let a = assume(&as_base(sts).await, "a", "s1")
        .tags(tag("Team", "platform"))
        .transitive_tag_keys("Team")
        .send()
        .await
        .expect("base -> a with a transitive tag");
    client(&sts.endpoint(), Some(creds(a.credentials().unwrap())))
}

#[tokio::test]
async fn inherited_transitive_tags_need_tag_session_and_cannot_be_reset() {
    let sts = start().await;
    let as_a = as_a_with_team(&sts).await;
    let reset = assume(&as_a, "b", "s2")
        .tags(tag("team", "other"))
        .send()
        .await;
    let (code, message, status) = failure(reset);
    assert_eq!((code.as_str(), status), ("InvalidParameterValue", 400));
    assert!(message.contains("'team'"), "{message}");
    // Untagged call, but the inherited tag still needs sts:TagSession.
    let sts2 = FakeSts::start(
        config().with_role(
            RoleConfig::new("c")
                .trusting(arn("a"))
                .without_tag_session(),
        ),
    )
    .await
    .unwrap();
    let as_a2 = as_a_with_team(&sts2).await;
    let to_c = assume(&as_a2, "c", "s2").send().await;
    let (code, message, _) = failure(to_c);
    assert_eq!(code, "AccessDenied");
    assert!(message.ends_with(
        "is not authorized to perform: sts:TagSession on resource: arn:aws:iam::111122223333:role/c"
    ));
}

#[tokio::test]
async fn packed_size_over_budget_reports_the_percentage() {
    let sts = start().await;
    let base = as_base(&sts).await;
    let big = (0..6).fold(assume(&base, "a", "s1"), |call, i| {
        call.tags(tag(&format!("{i}").repeat(128), &"v".repeat(256)))
    });
    assert_eq!(
        failure(big.send().await),
        (
            "PackedPolicyTooLarge".into(),
            "Packed size of session tags consumes 114% of allotted space.".into(),
            400
        )
    );
    let fits = assume(&base, "a", "s1")
        .tags(tag("k", &"v".repeat(1022)[..256]))
        .send()
        .await
        .expect("one tag fits");
    // (1 + 256 + 2) bytes of 2048.
    #[allow(deprecated)]
    let packed = fits.packed_policy_size();
    assert_eq!(packed, Some(13));
}

#[tokio::test]
async fn throttling_and_failures_are_injected_then_clear() {
    let sts = start().await;
    let who = client(&sts.endpoint(), Some(static_creds()));
    sts.throttle_next(2);
    for _ in 0..2 {
        assert_eq!(
            failure(who.get_caller_identity().send().await),
            ("Throttling".into(), "Rate exceeded".into(), 400)
        );
    }
    who.get_caller_identity()
        .send()
        .await
        .expect("third call passes");
    sts.fail_next(1);
    let (code, _, status) = failure(who.get_caller_identity().send().await);
    assert_eq!((code.as_str(), status), ("InternalFailure", 500));
    sts.unavailable_next(1);
    let (code, _, status) = failure(who.get_caller_identity().send().await);
    assert_eq!((code.as_str(), status), ("ServiceUnavailable", 503));
    let outcomes: Vec<_> = sts.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            "Throttling",
            "Throttling",
            "ok",
            "InternalFailure",
            "ServiceUnavailable"
        ]
    );
}

#[tokio::test]
async fn callers_are_authenticated_by_their_keys() {
    let sts = start().await;
    let unknown = Credentials::new(
        "ASIAUNKNOWNUNKNOWN00",
        "secret",
        Some("t".into()),
        None,
        "x",
    );
    assert_eq!(
        failure(
            client(&sts.endpoint(), Some(unknown))
                .get_caller_identity()
                .send()
                .await
        ),
        (
            "InvalidClientTokenId".into(),
            "The security token included in the request is invalid.".into(),
            403
        )
    );
    let mut wrong_secret = StaticCredential::demo();
    wrong_secret.secret_access_key = "not-the-secret".into();
    let forged = Credentials::new(
        wrong_secret.access_key_id,
        wrong_secret.secret_access_key,
        None,
        None,
        "x",
    );
    let (code, _, status) = failure(
        client(&sts.endpoint(), Some(forged))
            .get_caller_identity()
            .send()
            .await,
    );
    assert_eq!((code.as_str(), status), ("SignatureDoesNotMatch", 403));

    sts.set_credential_lifetime(Some(Duration::from_secs(60)));
    let token = sts.mint_web_identity_token(SUBJECT);
    let short = web_identity(&sts.endpoint(), &token, &arn("base")).await;
    let short_creds = short.credentials().unwrap();
    assert_eq!(short_creds.expiration().secs() - sts.now().timestamp(), 60);
    let as_short = client(&sts.endpoint(), Some(creds(short_creds)));
    as_short
        .get_caller_identity()
        .send()
        .await
        .expect("valid for a minute");
    sts.advance_clock(Duration::from_secs(61));
    assert_eq!(
        failure(as_short.get_caller_identity().send().await),
        (
            "ExpiredToken".into(),
            "The security token included in the request is expired".into(),
            400
        )
    );
}

fn raw_client() -> reqwest::Client {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .expect("a reqwest client")
}

#[tokio::test]
async fn raw_wire_format_is_stss() {
    let sts = start().await;
    let token = sts.mint_web_identity_token(SUBJECT);
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", &arn("base")),
        ("RoleSessionName", "pod"),
        ("WebIdentityToken", &token),
    ];
    let response = raw_client()
        .post(sts.endpoint())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/xml");
    let xml = response.text().await.unwrap();
    for element in [
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">",
        "<AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>system:serviceaccount:runners:runner</SubjectFromWebIdentityToken>",
        "<Credentials><AccessKeyId>ASIA",
        "</AccessKeyId><SecretAccessKey>",
        "<AssumedRoleUser><AssumedRoleId>AROA",
        "<Arn>arn:aws:sts::111122223333:assumed-role/base/pod</Arn></AssumedRoleUser>",
        "<ResponseMetadata><RequestId>",
    ] {
        assert!(xml.contains(element), "{element} missing from {xml}");
    }

    // GET with a query string works too, and errors have STS's envelope.
    let response = raw_client()
        .get(format!(
            "{}/?Action=GetCallerIdentity&Version=2011-06-15",
            sts.endpoint()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let xml = response.text().await.unwrap();
    let expected_start = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    \
        <Type>Sender</Type>\n    <Code>MissingAuthenticationToken</Code>\n    \
        <Message>Request is missing Authentication Token</Message>\n  </Error>\n  <RequestId>";
    assert!(xml.starts_with(expected_start), "{xml}");
    assert_eq!(sts.requests().len(), 2);
}

#[tokio::test]
async fn the_same_chain_runs_against_the_fake_and_moto() {
    let roles = [arn("a"), arn("b")];
    let sts = start().await;
    let token = sts.mint_web_identity_token(SUBJECT);
    let fake = chain(&sts.endpoint(), &token, &arn("base"), &roles).await;
    let moto = match MotoServer::start().await {
        Ok(moto) => moto,
        Err(e) => panic!("moto is needed for this test: {e}"),
    };
    // moto checks no signature on the token: any JWT-shaped string does.
    let from_moto = chain(&moto.endpoint(), &token, &arn("base"), &roles).await;
    let expected = [
        "arn:aws:sts::111122223333:assumed-role/base/runner-pod",
        "arn:aws:sts::111122223333:assumed-role/a/hop-1",
        "arn:aws:sts::111122223333:assumed-role/b/hop-2",
        "arn:aws:sts::111122223333:assumed-role/b/hop-2",
    ];
    assert_eq!(fake, expected);
    assert_eq!(from_moto, expected);
}
