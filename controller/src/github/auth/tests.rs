//! Token freshness as a table; the App -> installation -> registration ->
//! Actions service chain against a scripted server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::TimeZone;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

use super::*;
use crate::github::ratelimit::HostRateLimiter;
use crate::github::testing::{REGISTRATION_TOKEN, Reply, ScriptedServer, fake_jwt, fast_retry};
use crate::github::transport::{ProxyConfig, TransportOptions};

const TEST_KEY: &str = include_str!("testdata/test-app-key.pem");
const TEST_PUBLIC_KEY: &str = include_str!("testdata/test-app-key.pub.pem");
const INSTALLATION_TOKEN: &str = "ghs_installationtoken0123456789abcdef";

#[test]
fn freshness() {
    let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let cases = [
        (TimeDelta::hours(1), true),
        (TimeDelta::seconds(61), true),
        (TimeDelta::seconds(60), false),
        (TimeDelta::seconds(10), false),
        (TimeDelta::seconds(-5), false),
    ];
    for (left, fresh) in cases {
        assert_eq!(is_fresh(now + left, now), fresh, "{left}");
    }
}

#[test]
fn admin_token_expiry_is_read_without_verifying() {
    let token = Secret::new(fake_jwt(1_714_564_800, "x"));
    assert_eq!(
        jwt_expiry(&token),
        Some(Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap())
    );
    assert_eq!(jwt_expiry(&Secret::new("not-a-jwt")), None);
    assert_eq!(jwt_expiry(&Secret::new("a.%%%.c")), None);
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let without_exp = format!("{}.{}.sig", b64(r#"{"alg":"none"}"#), b64(r#"{"nbf":1}"#));
    assert_eq!(jwt_expiry(&Secret::new(without_exp)), None);
}

fn app_auth(base: &str, config_path: &str) -> GitHubAuth {
    let config = GitHubConfig::parse(&format!("{base}/{config_path}")).unwrap();
    let app = GitHubApp::new(AppIdentifier::AppId(42), 123, TEST_KEY.as_bytes()).unwrap();
    let transport = Transport::new(
        TransportOptions {
            proxy: ProxyConfig::None,
            ..TransportOptions::default()
        },
        Arc::new(HostRateLimiter::default()),
    )
    .unwrap();
    GitHubAuth::new(
        config,
        Credentials::App(app),
        transport,
        fast_retry(),
        fast_retry(),
    )
}

fn expiring(token: &str, in_seconds: i64) -> serde_json::Value {
    json!({"token": token, "expires_at": (Utc::now() + TimeDelta::seconds(in_seconds)).to_rfc3339()})
}

#[tokio::test]
async fn a_github_app_reaches_the_actions_service() {
    let registrations = AtomicUsize::new(0);
    let admin = fake_jwt(Utc::now().timestamp() + 3600, "admin");
    let admin_for_server = admin.clone();
    let server = ScriptedServer::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/api/v3/app/installations/123/access_tokens") => {
            Reply::json(201, expiring(INSTALLATION_TOKEN, 3600))
        }
        ("POST", "/api/v3/repos/my-org/my-repo/actions/runners/registration-token") => {
            Reply::json(201, expiring(REGISTRATION_TOKEN, 3600))
        }
        // GitHub refuses a fresh registration token for a moment.
        ("POST", "/api/v3/actions/runner-registration") => {
            match registrations.fetch_add(1, Ordering::SeqCst) {
                0 => Reply::status(401),
                1 => Reply::json(403, json!({"message": "not yet"})),
                _ => Reply::json(
                    200,
                    json!({"url": "https://pipelines.example/abc/", "token": admin_for_server}),
                ),
            }
        }
        _ => Reply::status(418),
    })
    .await;
    let auth = app_auth(&server.base, "my-org/my-repo");

    let connection = auth.actions_connection().await.unwrap();
    assert_eq!(connection.url.as_str(), "https://pipelines.example/abc/");
    assert_eq!(connection.token.expose(), admin);
    assert_eq!(Some(connection.expires_at), jwt_expiry(&connection.token));
    assert_eq!(
        server.count("POST", "/api/v3/actions/runner-registration"),
        3
    );

    // The JWT: RS256, signed by the app key, iss = app id, 9 minutes.
    let exchange = server.last("POST", "/api/v3/app/installations/123/access_tokens");
    let jwt = exchange
        .header("authorization")
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    #[derive(serde::Deserialize)]
    struct Claims {
        iat: i64,
        exp: i64,
        iss: String,
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Claims>(&jwt, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!((claims.iss.as_str(), claims.exp - claims.iat), ("42", 540));
    assert!((claims.iat - (Utc::now().timestamp() - 60)).abs() <= 5);

    let registration = server.last(
        "POST",
        "/api/v3/repos/my-org/my-repo/actions/runners/registration-token",
    );
    assert_eq!(
        registration.header("authorization"),
        format!("Bearer {INSTALLATION_TOKEN}")
    );
    let remote = server.last("POST", "/api/v3/actions/runner-registration");
    assert_eq!(
        remote.header("authorization"),
        format!("RemoteAuth {REGISTRATION_TOKEN}")
    );
    assert_eq!(remote.header("content-type"), "application/json");

    // Everything is cached now.
    auth.actions_connection().await.unwrap();
    auth.registration_token().await.unwrap();
    assert_eq!(
        auth.access_token().await.unwrap().expose(),
        INSTALLATION_TOKEN
    );
    assert_eq!(server.requests().len(), 5);

    // Once dropped, the connection is made again from the cached tokens.
    auth.invalidate_actions_connection().await;
    auth.actions_connection().await.unwrap();
    assert_eq!(
        server.count("POST", "/api/v3/actions/runner-registration"),
        4
    );
    assert_eq!(
        server.count("POST", "/api/v3/app/installations/123/access_tokens"),
        1
    );
}

#[tokio::test]
async fn tokens_about_to_expire_are_replaced() {
    let server = ScriptedServer::start(|r| match r.path.as_str() {
        "/api/v3/app/installations/123/access_tokens" => {
            Reply::json(201, expiring(INSTALLATION_TOKEN, 30))
        }
        "/api/v3/enterprises/acme/actions/runners/registration-token" => {
            Reply::json(201, expiring("R", 45))
        }
        _ => Reply::status(418),
    })
    .await;
    let auth = app_auth(&server.base, "enterprises/acme");
    auth.registration_token().await.unwrap();
    auth.registration_token().await.unwrap();
    assert_eq!(
        server.count(
            "POST",
            "/api/v3/enterprises/acme/actions/runners/registration-token"
        ),
        2
    );
    assert_eq!(
        server.count("POST", "/api/v3/app/installations/123/access_tokens"),
        2
    );
}

#[tokio::test]
async fn refusals_and_bad_answers_are_errors() {
    let server = ScriptedServer::start(|r| match r.path.as_str() {
        "/api/v3/app/installations/123/access_tokens" => {
            Reply::json(201, expiring(INSTALLATION_TOKEN, 3600))
        }
        "/api/v3/orgs/my-org/actions/runners/registration-token" => {
            Reply::json(201, expiring(REGISTRATION_TOKEN, 3600))
        }
        "/api/v3/actions/runner-registration" => Reply::json(
            200,
            json!({"url": "https://pipelines.example/", "token": ""}),
        ),
        "/api/v3/orgs/refused/actions/runners/registration-token" => Reply::json(
            403,
            json!({"message": "Resource not accessible by integration"}),
        ),
        _ => Reply::status(418),
    })
    .await;
    let error = app_auth(&server.base, "my-org")
        .actions_connection()
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "protocol", "{error}");
    assert!(
        error.to_string().contains("admin token is empty"),
        "{error}"
    );

    let error = app_auth(&server.base, "refused")
        .actions_connection()
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "unauthorized", "{error}");
    let text = error.to_string();
    assert!(
        text.contains("organization refused") && text.contains("githubConfigSecret"),
        "{text}"
    );
    assert_eq!(
        server.count(
            "POST",
            "/api/v3/orgs/refused/actions/runners/registration-token"
        ),
        1
    );
}

#[tokio::test]
async fn a_refused_installation_token_is_not_used_again() {
    let issued = AtomicUsize::new(0);
    let server = ScriptedServer::start(move |r| match r.path.as_str() {
        "/api/v3/app/installations/123/access_tokens" => {
            let n = issued.fetch_add(1, Ordering::SeqCst);
            Reply::json(201, expiring(&format!("{INSTALLATION_TOKEN}{n}"), 3600))
        }
        // The first installation token was revoked; later ones work.
        "/api/v3/orgs/my-org/actions/runners/registration-token" => {
            if r.header("authorization") == format!("Bearer {INSTALLATION_TOKEN}0") {
                Reply::json(401, json!({"message": "Bad credentials"}))
            } else {
                Reply::json(201, expiring(REGISTRATION_TOKEN, 3600))
            }
        }
        "/api/v3/orgs/forbidden/actions/runners/registration-token" => Reply::json(
            403,
            json!({"message": "Resource not accessible by integration"}),
        ),
        _ => Reply::status(418),
    })
    .await;
    let auth = app_auth(&server.base, "my-org");
    let error = auth.registration_token().await.unwrap_err();
    assert_eq!(error.status(), Some(401), "{error}");
    auth.registration_token().await.unwrap();
    assert_eq!(
        auth.access_token().await.unwrap().expose(),
        format!("{INSTALLATION_TOKEN}1")
    );
    assert_eq!(
        server.count("POST", "/api/v3/app/installations/123/access_tokens"),
        2
    );

    // 403 is a missing permission: the installation token stays.
    let auth = app_auth(&server.base, "forbidden");
    for _ in 0..2 {
        assert_eq!(
            auth.registration_token().await.unwrap_err().status(),
            Some(403)
        );
    }
    assert_eq!(
        server.count("POST", "/api/v3/app/installations/123/access_tokens"),
        3
    );
}
