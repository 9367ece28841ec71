//! Credentials: PATs and App JWTs for REST, admin tokens for the Actions
//! service, queue tokens for the message queue, and the fake's own TLS.

use reqwest::StatusCode;
use runway_sandbox::github::{Endpoint, FakeApp, FakeOptions};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pat_gets_registration_tokens_and_the_actions_service() {
    let github = start(FakeOptions::default()).await;
    let client = client();
    for path in ["orgs/my-org", "repos/my-org/my-repo", "enterprises/acme"] {
        let (status, body) = registration_token(&client, &github, path, PAT).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
        assert!(!body["token"].as_str().unwrap_or_default().is_empty());
        assert!(
            body["expires_at"]
                .as_str()
                .unwrap_or_default()
                .ends_with('Z')
        );
    }
    let (status, body) = registration_token(&client, &github, "orgs/my-org", "ghp_wrong").await;
    assert_eq!(
        (status, body["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Bad credentials"))
    );
    let (status, _) = fetch(client.post(format!(
        "{}/orgs/my-org/actions/runners/registration-token",
        github.rest_url()
    )))
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no credentials at all");

    let (_, registration) = registration_token(&client, &github, "repos/my-org/my-repo", PAT).await;
    let token = registration["token"].as_str().expect("token");
    let (status, _) = runner_registration(&client, &github, "WRONG", "my-org/my-repo").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = runner_registration(&client, &github, token, "other-org").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a token for another scope");
    let (status, connection) =
        runner_registration(&client, &github, token, "my-org/my-repo/").await;
    assert_eq!(status, StatusCode::OK, "{connection}");
    let url = connection["url"].as_str().expect("url");
    assert!(
        url.starts_with(&github.base_url()) && url.ends_with('/'),
        "{url}"
    );
    let claims = jwt_claims(connection["token"].as_str().expect("token"));
    assert!(
        claims["exp"].as_i64().expect("exp") > unix_now() + 3000,
        "{claims}"
    );

    let service = Service {
        client: client.clone(),
        url: url.to_string(),
        token: connection["token"].as_str().unwrap_or_default().to_string(),
    };
    let (status, groups) = service
        .get("_apis/runtime/runnergroups/?groupName=default")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        groups,
        json!({"count": 1, "value": [{"id": 1, "name": "Default", "size": 0, "isDefaultGroup": true}]})
    );
    let gpu = github.add_runner_group("gpu");
    let (_, groups) = service
        .get("_apis/runtime/runnergroups/?groupName=gpu")
        .await;
    assert_eq!(groups["value"][0]["id"].as_i64(), Some(gpu));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_jwts_are_verified_and_installation_tokens_expire() {
    let github = start(FakeOptions {
        installation_token_ttl: millis(400),
        ..Default::default()
    })
    .await;
    github.add_app(FakeApp::example());
    let client = client();
    let exchange = |installation: u64, jwt: String| {
        let url = format!(
            "{}/app/installations/{installation}/access_tokens",
            github.rest_url()
        );
        fetch(client.post(url).bearer_auth(jwt))
    };
    let now = unix_now();
    let valid = |iss: &str| app_jwt(iss, now - 60, now + 540);

    let (status, body) = exchange(2002, valid("1001")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let installation_token = body["token"].as_str().expect("token").to_string();
    assert!(body["expires_at"].is_string());
    let (status, _) = exchange(2002, valid("Iv1.example")).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the client id is an issuer too"
    );

    let (status, _) = exchange(2002, valid("4242")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong iss");
    let (status, _) = exchange(2002, app_jwt("1001", now - 900, now - 300)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");
    let mut tampered = valid("1001");
    let last = tampered.pop().expect("non-empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _) = exchange(2002, tampered).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "bad signature");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"iss": "1001", "exp": now + 540}),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .expect("signed");
    let (status, _) = exchange(2002, hs256).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "not RS256");
    let (status, _) = exchange(9999, valid("1001")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not this app's installation");

    let (status, _) =
        registration_token(&client, &github, "orgs/my-org", &installation_token).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "an installation token gets registration tokens"
    );
    tokio::time::sleep(millis(450)).await;
    let (status, _) =
        registration_token(&client, &github, "orgs/my-org", &installation_token).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the installation token expired"
    );

    let (_, body) = exchange(2002, valid("1001")).await;
    let fresh = body["token"].as_str().expect("token").to_string();
    github.expire_installation_tokens();
    let (status, _) = registration_token(&client, &github, "orgs/my-org", &fresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired on demand");
    assert_eq!(github.request_count(Endpoint::InstallationToken), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_admin_tokens_get_401_on_actions_calls() {
    let github = start(FakeOptions {
        admin_token_ttl: millis(400),
        ..Default::default()
    })
    .await;
    let service = connect(&github).await;
    let find = "_apis/runtime/runnerscalesets?runnerGroupId=1&name=x";
    let (status, _) = service.get(find).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(millis(450)).await;
    let (status, body) = service.get(find).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["typeName"]
            .as_str()
            .unwrap_or_default()
            .ends_with("Exception"),
        "{body}"
    );
    let (status, _) = service
        .post("_apis/runtime/runnerscalesets", json!({"name": "x"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let long = start(FakeOptions::default()).await;
    let service = connect(&long).await;
    long.expire_admin_tokens();
    let (status, _) = service.get(DEFAULT_GROUP).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired on demand");
    let fresh = connect(&long).await;
    let (status, _) = fresh.get(DEFAULT_GROUP).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a new registration gets a working token"
    );
    let (status, _) = service.get(DEFAULT_GROUP).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_tokens_expire_and_a_refresh_issues_a_new_one() {
    let (github, service, id, mut session) = session_for(FakeOptions {
        queue_token_ttl: millis(300),
        ..long_poll(100)
    })
    .await;
    assert_eq!(session.poll(0).await.0, StatusCode::ACCEPTED);
    tokio::time::sleep(millis(350)).await;
    assert_eq!(session.poll(0).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        session.acquire(&service, &[1]).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (status, refreshed) = service.patch(&session_path(id, &session.id)).await;
    assert_eq!(status, StatusCode::OK);
    session = Session::from_json(&service.client, &refreshed);
    assert_eq!(session.poll(0).await.0, StatusCode::ACCEPTED);
    github.expire_queue_tokens();
    assert_eq!(
        session.poll(0).await.0,
        StatusCode::UNAUTHORIZED,
        "expired on demand"
    );

    let with_admin_token = Session {
        queue_token: service.token.clone(),
        ..Session::from_json(&service.client, &refreshed)
    };
    assert_eq!(
        with_admin_token.poll(0).await.0,
        StatusCode::UNAUTHORIZED,
        "the admin token is not a queue token"
    );

    github.expire_sessions();
    expect_exception(
        service.patch(&session_path(id, &session.id)).await,
        StatusCode::BAD_REQUEST,
        "RunnerScaleSetSessionExpiredException",
    );
    service.create_session(id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_with_the_fakes_own_ca() {
    let github = start(FakeOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(github.base_url().starts_with("https://127.0.0.1:"));
    let ca = github.ca_cert_pem().expect("a CA when TLS is on");
    let trusting = client_trusting(Some(&ca));
    let service = connect_to(&github, &trusting, "orgs/my-org", "my-org").await;
    assert!(service.url.starts_with("https://"));
    let id = service.create_scale_set("arm").await;
    assert!(id > 0);
    let untrusting = client();
    let error = untrusting
        .post(format!(
            "{}/orgs/my-org/actions/runners/registration-token",
            github.rest_url()
        ))
        .bearer_auth(PAT)
        .send()
        .await;
    assert!(
        error.is_err(),
        "a client without the CA refuses the certificate"
    );
}
