//! Contract tests: Runway's GitHub client against the sandbox's fake GitHub,
//! over real HTTP, endpoint by endpoint: credentials and the Actions service
//! connection (PROTOCOL.md section 2), runner groups, scale sets, JIT
//! configs, runners and sessions (section 3), over plain HTTP and TLS.
//!
//! The rest of the contract: `github_contract_messages.rs` (the message queue
//! and a whole job), `github_contract_errors.rs` (exceptions, credentials),
//! `github_contract_retries.rs`, `github_contract_rate_limit.rs`,
//! `github_contract_redaction.rs` and `github_contract_golden.rs` (wire
//! shapes field for field).

mod common;

use std::time::Duration;

use common::{
    Connected, assert_requests, client_options, client_with, connected, example_app, fake_options,
    next_message, pat_client, scale_set, start_fake, start_fake_with,
};
use runway_controller::github::wire::{Label, RunnerScaleSetRequest, RunnerScaleSetStatistic};
use runway_controller::github::{AppIdentifier, DEFAULT_RUNNER_GROUP_ID, Error};
use runway_sandbox::github::{Endpoint, FakeApp, FakeOptions, NewJob};

fn labels(names: &[&str]) -> Vec<Label> {
    names.iter().map(|n| Label::system(*n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_gets_an_installation_token_and_reaches_the_service() {
    for identifier in [
        AppIdentifier::AppId(FakeApp::example().app_id),
        AppIdentifier::ClientId(FakeApp::example().client_id),
    ] {
        let fake = start_fake().await;
        fake.add_app(FakeApp::example());
        let client = client_with(
            &fake,
            "my-org",
            example_app(identifier.clone()),
            client_options(),
        );

        let token = client
            .auth()
            .access_token()
            .await
            .expect("installation token");
        assert!(token.expose().starts_with("ghs_"), "{identifier:?}");
        let group = client.runner_group_by_name("Default").await.unwrap();
        assert_eq!(group.id, DEFAULT_RUNNER_GROUP_ID);
        client.scale_set_by_name(group.id, "none").await.unwrap();

        // Every token is cached: one exchange each, however many calls.
        for (endpoint, count) in [
            (Endpoint::InstallationToken, 1),
            (Endpoint::RegistrationToken, 1),
            (Endpoint::RunnerRegistration, 1),
            (Endpoint::RunnerGroups, 1),
            (Endpoint::ScaleSetByName, 1),
        ] {
            assert_eq!(
                fake.request_count(endpoint),
                count,
                "{identifier:?} {endpoint:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pat_reaches_the_service_without_an_installation_token() {
    let fake = start_fake().await;
    let client = pat_client(&fake, "my-org");
    let connection = client.auth().actions_connection().await.unwrap();
    assert!(
        connection
            .url
            .as_str()
            .starts_with(&format!("{}/_services/pipelines/", fake.base_url())),
        "{}",
        connection.url
    );
    // The admin token is a JWT whose `exp` the client read: about an hour.
    let left = connection.expires_at - chrono::Utc::now();
    assert!(left > chrono::TimeDelta::minutes(55), "{left}");
    scale_set(&client, "pat").await;
    assert_requests(
        &fake,
        &[
            (Endpoint::InstallationToken, 0),
            (Endpoint::RegistrationToken, 1),
            (Endpoint::RunnerRegistration, 1),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_tokens_for_organization_repository_and_enterprise() {
    let fake = start_fake().await;
    for path in ["my-org", "my-org/my-repo", "enterprises/acme"] {
        let client = pat_client(&fake, path);
        let token = client.auth().registration_token().await.unwrap();
        assert!(!token.is_empty(), "{path}");
        // The same name in every scope: each scope is its own tenant.
        let created = scale_set(&client, "scoped").await;
        let found = client
            .scale_set_by_name(DEFAULT_RUNNER_GROUP_ID, "scoped")
            .await
            .unwrap()
            .expect("found in its own scope");
        assert_eq!(found.id, created.id, "{path}");
        let snapshot = fake.snapshot();
        let view = snapshot
            .scale_sets
            .iter()
            .find(|s| s.id == created.id)
            .unwrap();
        assert_eq!(view.scope, path);
    }
    assert_eq!(fake.request_count(Endpoint::RegistrationToken), 3);
    assert_eq!(fake.request_count(Endpoint::RunnerRegistration), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_about_to_expire_is_replaced_before_each_call() {
    // The fake's admin JWTs say `exp` = now + 30 s: inside the client's 60 s
    // margin, so it connects again before every call.
    let fake = start_fake_with(FakeOptions {
        admin_token_ttl: Duration::from_secs(30),
        ..fake_options()
    })
    .await;
    let client = pat_client(&fake, "my-org");
    for _ in 0..3 {
        client.scale_set_by_name(1, "x").await.unwrap();
    }
    assert_eq!(fake.request_count(Endpoint::RunnerRegistration), 3);
    // The registration token lives an hour and is reused.
    assert_eq!(fake.request_count(Endpoint::RegistrationToken), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_groups_by_name() {
    let fake = start_fake().await;
    let client = pat_client(&fake, "my-org");

    // "default" is group 1 without asking, as ARC does.
    assert_eq!(client.resolve_runner_group_id("default").await.unwrap(), 1);
    assert_eq!(client.resolve_runner_group_id("").await.unwrap(), 1);
    assert_eq!(fake.request_count(Endpoint::RunnerGroups), 0);

    let default = client.runner_group_by_name("Default").await.unwrap();
    assert_eq!((default.id, default.is_default_group), (1, true));

    let added = fake.add_runner_group("arm-builders");
    assert_ne!(added, DEFAULT_RUNNER_GROUP_ID);
    assert_eq!(
        client
            .resolve_runner_group_id("arm-builders")
            .await
            .unwrap(),
        added
    );
    let group = client.runner_group_by_name("arm-builders").await.unwrap();
    assert_eq!(
        (group.id, group.name.as_str(), group.is_default_group),
        (added, "arm-builders", false)
    );

    let error = client
        .runner_group_by_name("no-such-group")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Protocol { .. }), "{error:?}");
    assert!(error.to_string().contains("runnerGroup"), "{error}");
    assert_eq!(fake.request_count(Endpoint::RunnerGroups), 4);

    // A scale set in the named group carries the group's name.
    let set = client.create_scale_set("arm", added, &[]).await.unwrap();
    assert_eq!(
        (set.runner_group_id, set.runner_group_name.as_str()),
        (added, "arm-builders")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_sets_are_created_found_updated_and_deleted() {
    let fake = start_fake().await;
    let client = pat_client(&fake, "my-org");
    assert_eq!(client.scale_set_by_name(1, "linux").await.unwrap(), None);

    let extra = ["self-hosted-linux".to_owned(), "gpu".to_owned()];
    let created = client.create_scale_set("linux", 1, &extra).await.unwrap();
    assert_eq!(created.name, "linux");
    assert_eq!(
        created.labels,
        labels(&["linux", "self-hosted-linux", "gpu"])
    );
    assert!(created.runner_setting.disable_update);
    assert!(created.runner_setting.ephemeral);
    assert!(created.created_on.is_some());
    assert_eq!(created.statistics, Some(RunnerScaleSetStatistic::default()));

    let snapshot = fake.snapshot();
    let [view] = snapshot.scale_sets.as_slice() else {
        panic!("one scale set: {snapshot:?}")
    };
    assert_eq!(view.id, created.id);
    assert_eq!(view.labels, ["linux", "self-hosted-linux", "gpu"]);
    assert!(view.settings.disable_update, "created with disableUpdate");
    assert!(view.settings.ephemeral);
    assert_eq!(view.runner_group_id, 1);

    let by_name = client.scale_set_by_name(1, "linux").await.unwrap();
    assert_eq!(by_name.as_ref(), Some(&created));
    let other_group = fake.add_runner_group("other");
    assert_eq!(
        client
            .scale_set_by_name(other_group, "linux")
            .await
            .unwrap(),
        None
    );
    assert_eq!(client.scale_set(created.id).await.unwrap(), created);

    let patch = RunnerScaleSetRequest {
        name: Some("linux-v2".to_owned()),
        labels: Some(labels(&["linux-v2", "arm64"])),
        ..RunnerScaleSetRequest::default()
    };
    let updated = client.update_scale_set(created.id, &patch).await.unwrap();
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.name, "linux-v2");
    assert_eq!(updated.labels, labels(&["linux-v2", "arm64"]));
    let snapshot = fake.snapshot();
    let view = &snapshot.scale_sets[0];
    assert_eq!(view.name, "linux-v2");
    assert_eq!(view.labels, ["linux-v2", "arm64"]);
    assert!(
        view.settings.disable_update,
        "a partial PATCH keeps settings"
    );
    assert_eq!(client.scale_set_by_name(1, "linux").await.unwrap(), None);

    client.delete_scale_set(created.id).await.unwrap();
    assert!(fake.snapshot().scale_sets.is_empty());
    assert_eq!(client.scale_set_by_name(1, "linux-v2").await.unwrap(), None);
    assert_requests(
        &fake,
        &[
            (Endpoint::CreateScaleSet, 1),
            (Endpoint::UpdateScaleSet, 1),
            (Endpoint::DeleteScaleSet, 1),
            (Endpoint::ScaleSetById, 1),
            (Endpoint::ScaleSetByName, 5),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jit_configs_register_runners_that_are_found_and_removed() {
    let Connected { fake, client, set } = connected("jit").await;

    let jit = client
        .generate_jit_config(set.id, "jit-runner-1", "_work")
        .await
        .unwrap();
    assert_eq!(jit.runner.name, "jit-runner-1");
    assert_eq!(jit.runner.runner_scale_set_id, set.id);
    assert!(!jit.encoded_jit_config.is_empty());
    let snapshot = fake.snapshot();
    let registered = snapshot.runner_named("jit-runner-1").expect("registered");
    assert_eq!(
        (registered.id, registered.scale_set_id, registered.busy),
        (jit.runner.id, set.id, false)
    );

    assert_eq!(
        client.runner(jit.runner.id).await.unwrap(),
        Some(jit.runner.clone())
    );
    assert_eq!(
        client.runner_by_name("jit-runner-1").await.unwrap(),
        Some(jit.runner.clone())
    );
    assert_eq!(client.runner_by_name("nobody").await.unwrap(), None);
    assert_eq!(client.runner(jit.runner.id + 1000).await.unwrap(), None);

    let statistics = client.scale_set(set.id).await.unwrap().statistics.unwrap();
    assert_eq!(
        (
            statistics.total_registered_runners,
            statistics.total_idle_runners
        ),
        (1, 1)
    );

    client.remove_runner(jit.runner.id).await.unwrap();
    assert!(fake.snapshot().runners.is_empty());
    assert_eq!(client.runner(jit.runner.id).await.unwrap(), None);
    assert_requests(
        &fake,
        &[
            (Endpoint::GenerateJitConfig, 1),
            (Endpoint::GetRunner, 3),
            (Endpoint::GetRunnerByName, 2),
            (Endpoint::RemoveRunner, 1),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_created_refreshed_and_deleted() {
    let Connected { fake, client, set } = connected("sessions").await;

    let session = client.create_session(set.id, "runway-test").await.unwrap();
    assert!(!session.session_id.is_empty());
    assert_eq!(session.owner_name, "runway-test");
    assert_eq!(
        session.runner_scale_set.as_ref().map(|s| s.id),
        Some(set.id)
    );
    assert!(
        session.message_queue_url.starts_with(&fake.base_url()),
        "{}",
        session.message_queue_url
    );
    assert!(!session.message_queue_access_token.is_empty());
    assert_eq!(session.statistics, Some(RunnerScaleSetStatistic::default()));
    let snapshot = fake.snapshot();
    let [info] = snapshot.sessions.as_slice() else {
        panic!("one session: {snapshot:?}")
    };
    assert_eq!(
        (
            info.session_id.as_str(),
            info.scale_set_id,
            info.owner_name.as_str()
        ),
        (session.session_id.as_str(), set.id, "runway-test")
    );

    let refreshed = client
        .refresh_session(set.id, &session.session_id)
        .await
        .unwrap();
    assert_eq!(refreshed.session_id, session.session_id);
    assert_ne!(
        refreshed.message_queue_access_token, session.message_queue_access_token,
        "a refresh hands out a new queue token"
    );
    assert_eq!(refreshed.message_queue_url, session.message_queue_url);

    client
        .delete_session(set.id, &session.session_id)
        .await
        .unwrap();
    assert!(fake.snapshot().sessions.is_empty());
    // With the old one gone, a new session is no conflict.
    let again = client.create_session(set.id, "runway-test").await.unwrap();
    assert_ne!(again.session_id, session.session_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_the_fakes_ca_as_github_server_tls() {
    let fake = start_fake_with(FakeOptions {
        tls: true,
        ..fake_options()
    })
    .await;
    let ca = fake.ca_cert_pem().expect("a TLS fake has a CA");
    assert!(fake.config_url("my-org").starts_with("https://127.0.0.1:"));

    let mut options = client_options();
    options.transport.extra_root_ca_pem = Some(ca.into_bytes());
    let client = client_with(&fake, "my-org", common::pat(), options);
    let set = scale_set(&client, "tls").await;
    let mut session = client.create_session(set.id, "runway-test").await.unwrap();
    fake.queue_job(set.id, NewJob::default());
    let message = next_message(&client, set.id, &mut session, 0).await;
    assert_eq!(message.jobs.len(), 1);

    // Without the CA the client trusts only the webpki roots: refused.
    let untrusting = pat_client(&fake, "my-org");
    let error = untrusting.scale_set_by_name(1, "tls").await.unwrap_err();
    assert!(error.is_connection_failure(), "{error:?}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    assert_eq!(fake.request_count(Endpoint::RegistrationToken), 1);
}
