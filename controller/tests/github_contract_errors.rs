//! Contract tests for what goes wrong: every exception PROTOCOL.md names, as
//! the fake raises it and the client types it (sections 3 to 5.3); expired and
//! revoked credentials and how the client recovers; byte-order marks in front
//! of every response. HTTP retries are in `github_contract_retries.rs`.
//!
//! Every error a test gets is also checked for credentials in its `Display`
//! and `Debug` ([`Secrets::assert_hidden_in`]).

mod common;

use common::{
    Connected, Listening, Secrets, assert_exception, client_options, client_with, connected,
    fake_options, fault, listening, next_message, scale_set, start_fake, start_fake_with,
};
use runway_controller::github::wire::RunnerScaleSetRequest;
use runway_controller::github::{AppIdentifier, Credentials, Error, Secret};
use runway_sandbox::github::{Endpoint, FakeApp, FakeOptions, NewJob};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_is_a_conflict() {
    let Connected { fake, client, set } = connected("conflict").await;
    let session = client.create_session(set.id, "first").await.unwrap();
    let secrets = Secrets::of_session(&client, &session).await;

    let error = client.create_session(set.id, "second").await.unwrap_err();
    assert_exception(&error, "session_conflict", &secrets);
    assert_eq!(error.status(), None, "a named exception, not a bare status");
    assert_eq!(
        fake.request_count(Endpoint::CreateSession),
        2,
        "409 is final"
    );
    assert_eq!(fake.snapshot().sessions[0].owner_name, "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_queue_token_refreshes_the_session_once() {
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = listening("queue-token").await;
    let original = session.message_queue_access_token.clone();
    let job = fake.queue_job(set.id, NewJob::default());

    // The poll: 401, one PATCH, the poll again with the new token.
    fake.expire_queue_tokens();
    let message = client
        .get_message(set.id, &mut session, 0, 10)
        .await
        .unwrap()
        .expect("the poll succeeds after the refresh");
    assert_eq!(fake.counters()["RefreshSession"], 1);
    assert_eq!(fake.request_count(Endpoint::GetMessage), 2);
    assert_ne!(session.message_queue_access_token, original);
    let after_poll = session.message_queue_access_token.clone();

    // Acknowledge and acquire do the same.
    fake.expire_queue_tokens();
    client
        .acknowledge_message(set.id, &mut session, message.message_id)
        .await
        .unwrap();
    assert_eq!(fake.counters()["RefreshSession"], 2);
    assert_eq!(fake.request_count(Endpoint::DeleteMessage), 2);
    assert_ne!(session.message_queue_access_token, after_poll);

    fake.expire_queue_tokens();
    let acquired = client
        .acquire_jobs(set.id, &mut session, &[job.runner_request_id])
        .await
        .unwrap();
    assert_eq!(acquired, [job.runner_request_id]);
    assert_eq!(fake.counters()["RefreshSession"], 3);
    assert_eq!(fake.request_count(Endpoint::AcquireJobs), 2);
    // The admin token was never the problem.
    assert_eq!(fake.request_count(Endpoint::RunnerRegistration), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_session_expired() {
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = listening("ended").await;
    let secrets = Secrets::of_session(&client, &session).await;

    fake.expire_sessions();
    let error = client
        .get_message(set.id, &mut session, 0, 10)
        .await
        .unwrap_err();
    assert_exception(&error, "session_expired", &secrets);
    assert_eq!(
        fake.counters()["RefreshSession"],
        1,
        "refreshed once, no more"
    );
    assert_eq!(fake.request_count(Endpoint::GetMessage), 1);
    // A new session is possible.
    client.create_session(set.id, "runway-test").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_scale_set_is_scale_set_not_found_everywhere() {
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = listening("doomed").await;
    let secrets = Secrets::of_session(&client, &session).await;

    fake.delete_scale_set(set.id);
    let mut errors = vec![
        client.scale_set(set.id).await.unwrap_err(),
        client
            .get_message(set.id, &mut session, 0, 10)
            .await
            .unwrap_err(),
        client
            .update_scale_set(
                set.id,
                &RunnerScaleSetRequest {
                    name: Some("renamed".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err(),
        client
            .generate_jit_config(set.id, "r", "_work")
            .await
            .unwrap_err(),
        client.create_session(set.id, "again").await.unwrap_err(),
        client.delete_scale_set(set.id).await.unwrap_err(),
    ];
    for error in errors.drain(..) {
        assert_exception(&error, "scale_set_not_found", &secrets);
    }
    assert_eq!(client.scale_set_by_name(1, "doomed").await.unwrap(), None);
    // Re-created, as PROTOCOL.md says to.
    let recreated = scale_set(&client, "doomed").await;
    assert_ne!(recreated.id, set.id);
    // 404 is final: one request each.
    assert_eq!(fake.request_count(Endpoint::ScaleSetById), 1);
    assert_eq!(fake.request_count(Endpoint::RefreshSession), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_runner_name_is_agent_exists_and_can_be_reclaimed() {
    let Connected { fake, client, set } = connected("names").await;
    let first = client
        .generate_jit_config(set.id, "runner-a", "_work")
        .await
        .unwrap();
    let mut secrets = Secrets::of(&client).await;
    secrets.add_secret("JIT config", &first.encoded_jit_config);

    let error = client
        .generate_jit_config(set.id, "RUNNER-A", "_work")
        .await
        .unwrap_err();
    assert_exception(&error, "agent_exists", &secrets);
    assert_eq!(fake.request_count(Endpoint::GenerateJitConfig), 2);

    // PROTOCOL.md section 5.3: look it up; same scale set -> remove, retry.
    let taken = client.runner_by_name("runner-a").await.unwrap().unwrap();
    assert_eq!(taken.runner_scale_set_id, set.id);
    client.remove_runner(taken.id).await.unwrap();
    let second = client
        .generate_jit_config(set.id, "runner-a", "_work")
        .await
        .unwrap();
    assert_ne!(second.runner.id, first.runner.id);
    assert_eq!(fake.snapshot().runners.len(), 1);

    // A name taken in another scale set of the same scope is found there.
    let other = scale_set(&client, "other").await;
    let error = client
        .generate_jit_config(other.id, "runner-a", "_work")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AgentExists { .. }), "{error:?}");
    let owner = client.runner_by_name("runner-a").await.unwrap().unwrap();
    assert_eq!(owner.runner_scale_set_id, set.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_is_job_still_running_and_a_gone_one_agent_not_found() {
    let Listening {
        fake,
        client,
        set,
        mut session,
    } = listening("busy").await;
    let job = fake.queue_job(set.id, NewJob::default());
    next_message(&client, set.id, &mut session, 0).await;
    client
        .acquire_jobs(set.id, &mut session, &[job.runner_request_id])
        .await
        .unwrap();
    let jit = client
        .generate_jit_config(set.id, "busy-runner", "_work")
        .await
        .unwrap();
    fake.start_job(job.runner_request_id, "busy-runner")
        .unwrap();
    let mut secrets = Secrets::of_session(&client, &session).await;
    secrets.add_secret("JIT config", &jit.encoded_jit_config);

    let error = client.remove_runner(jit.runner.id).await.unwrap_err();
    assert_exception(&error, "job_still_running", &secrets);
    assert_eq!(
        fake.request_count(Endpoint::RemoveRunner),
        1,
        "400 is final"
    );
    assert!(fake.snapshot().runner_named("busy-runner").unwrap().busy);

    // Completed: the service removed the ephemeral runner itself.
    fake.complete_job(job.runner_request_id, "succeeded")
        .unwrap();
    let error = client.remove_runner(jit.runner.id).await.unwrap_err();
    assert_exception(&error, "agent_not_found", &secrets);
    assert_eq!(client.runner(jit.runner.id).await.unwrap(), None);
    assert_eq!(client.runner_by_name("busy-runner").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_admin_token_makes_the_client_register_again() {
    let Connected { fake, client, set } = connected("admin").await;
    let secrets = Secrets::of(&client).await;
    let old = client.auth().actions_connection().await.unwrap().token;

    fake.expire_admin_tokens();
    // The call the service refused fails and drops the admin token ...
    let error = client.scale_set(set.id).await.unwrap_err();
    assert_exception(&error, "unauthorized", &secrets);
    assert_eq!(error.status(), Some(401));
    // ... the next one registers again and goes through.
    client.scale_set(set.id).await.unwrap();
    assert_eq!(fake.request_count(Endpoint::RunnerRegistration), 2);
    assert_eq!(fake.request_count(Endpoint::RegistrationToken), 1);
    let new = client.auth().actions_connection().await.unwrap().token;
    assert_ne!(new, old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_unauthorized_and_not_retried() {
    let fake = start_fake().await;
    let wrong = "ghp_wrongTokenThatTheFakeDoesNotKnow0123";
    let client = client_with(
        &fake,
        "my-org",
        Credentials::Token(Secret::new(wrong)),
        client_options(),
    );
    let error = client.scale_set_by_name(1, "x").await.unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("githubConfigSecret"), "{error}");
    let mut secrets = Secrets::new();
    secrets.add("wrong PAT", wrong);
    secrets.assert_hidden_in(&error);
    assert_eq!(fake.request_count(Endpoint::RegistrationToken), 1);
    assert_eq!(fake.request_count(Endpoint::RunnerRegistration), 0);

    // An app GitHub does not know.
    let client = client_with(
        &fake,
        "my-org",
        common::example_app(AppIdentifier::AppId(4242)),
        client_options(),
    );
    let error = client.scale_set_by_name(1, "x").await.unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    secrets.assert_hidden_in(&error);
    assert_eq!(fake.request_count(Endpoint::InstallationToken), 1);
    assert_eq!(fake.request_count(Endpoint::RegistrationToken), 1);

    // The right app for another installation: 404, as GitHub answers.
    fake.add_app(FakeApp {
        installation_id: 7,
        ..FakeApp::example()
    });
    let error = client_with(
        &fake,
        "my-org",
        common::example_app(AppIdentifier::AppId(FakeApp::example().app_id)),
        client_options(),
    )
    .scale_set_by_name(1, "x")
    .await
    .unwrap_err();
    assert_eq!(error.status(), Some(404), "{error:?}");
    secrets.assert_hidden_in(&error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_order_marks_on_every_response_decode() {
    let fake = start_fake_with(FakeOptions {
        bom: false,
        ..fake_options()
    })
    .await;
    fake.set_bom(true);
    fake.add_app(FakeApp::example());
    let client = client_with(
        &fake,
        "my-org",
        common::example_app(AppIdentifier::AppId(FakeApp::example().app_id)),
        client_options(),
    );

    let group = fake.add_runner_group("bom-group");
    assert_eq!(
        client.runner_group_by_name("bom-group").await.unwrap().id,
        group
    );
    let set = client
        .create_scale_set("bom", group, &["x".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        client
            .scale_set_by_name(group, "bom")
            .await
            .unwrap()
            .map(|s| s.id),
        Some(set.id)
    );
    client
        .update_scale_set(
            set.id,
            &RunnerScaleSetRequest {
                name: Some("bom-2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut session = client.create_session(set.id, "bom").await.unwrap();
    session = client
        .refresh_session(set.id, &session.session_id)
        .await
        .unwrap();
    let job = fake.queue_job(set.id, NewJob::default());
    let message = next_message(&client, set.id, &mut session, 0).await;
    assert_eq!(message.jobs.len(), 1);
    client
        .acknowledge_message(set.id, &mut session, message.message_id)
        .await
        .unwrap();
    assert_eq!(
        client
            .acquire_jobs(set.id, &mut session, &[job.runner_request_id])
            .await
            .unwrap(),
        [job.runner_request_id]
    );
    let jit = client
        .generate_jit_config(set.id, "bom-runner", "_work")
        .await
        .unwrap();
    let mut secrets = Secrets::of_session(&client, &session).await;
    secrets.add_secret("JIT config", &jit.encoded_jit_config);
    assert_eq!(
        client.runner(jit.runner.id).await.unwrap(),
        Some(jit.runner.clone())
    );
    assert_eq!(
        client.runner_by_name("bom-runner").await.unwrap(),
        Some(jit.runner.clone())
    );
    // Error bodies carry the mark too; the exception is still named.
    let error = client
        .generate_jit_config(set.id, "bom-runner", "_work")
        .await
        .unwrap_err();
    assert_exception(&error, "agent_exists", &secrets);
    let error = client.create_session(set.id, "bom").await.unwrap_err();
    assert_exception(&error, "session_conflict", &secrets);
    client.remove_runner(jit.runner.id).await.unwrap();
    client
        .delete_session(set.id, &session.session_id)
        .await
        .unwrap();
    client.delete_scale_set(set.id).await.unwrap();
    assert!(fake.snapshot().scale_sets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_installation_token_is_replaced() {
    let fake = start_fake().await;
    fake.add_app(FakeApp::example());
    let client = client_with(
        &fake,
        "my-org",
        common::example_app(AppIdentifier::AppId(FakeApp::example().app_id)),
        client_options(),
    );
    client.scale_set_by_name(1, "x").await.unwrap();
    let first = client.auth().access_token().await.unwrap();
    let secrets = Secrets::of(&client).await;

    // GitHub revokes the installation token long before its `expires_at`,
    // and the Actions service connection has to be made again (a refused
    // runner-registration drops the registration token too).
    fake.expire_installation_tokens();
    fake.inject_fault(Endpoint::RunnerRegistration, fault(404, 1));
    fake.expire_admin_tokens();
    let errors = [
        client.scale_set_by_name(1, "x").await.unwrap_err(),
        client.scale_set_by_name(1, "x").await.unwrap_err(),
    ];
    assert!(
        matches!(errors[0], Error::Unauthorized { .. }),
        "{:?}",
        errors[0]
    );
    assert_eq!(errors[1].status(), Some(404), "{:?}", errors[1]);
    // The next registration token is asked for with the revoked token: 401.
    let error = client.scale_set_by_name(1, "x").await.unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    for error in errors.iter().chain([&error]) {
        secrets.assert_hidden_in(error);
    }
    // ... which must not stick: the next call gets a new installation token.
    client.scale_set_by_name(1, "x").await.unwrap();
    assert_ne!(client.auth().access_token().await.unwrap(), first);
    assert_eq!(fake.request_count(Endpoint::InstallationToken), 2);
}
