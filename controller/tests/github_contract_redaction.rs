//! No credential reaches a log line, an error message or a `Debug` dump.
//!
//! One test, alone in its binary, so that it can install a global TRACE
//! subscriber (with the `log` bridge) and capture everything every thread
//! logs: the client, the fake, hyper, rustls, octocrab. It runs a whole job
//! flow with a GitHub App and a PAT, the errors PROTOCOL.md names, retries
//! and token refreshes, collects every real credential involved (PAT,
//! installation token, registration token, admin tokens, queue tokens, JIT
//! configs, the App's private key) and looks for each of them in the
//! captured output and in every error and value it printed.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{
    Secrets, client_options, client_with, example_app, next_message, pat_client, start_fake,
};
use runway_controller::github::wire::RunnerScaleSetRequest;
use runway_controller::github::{AppIdentifier, Credentials, Error, Secret};
use runway_sandbox::github::{EXAMPLE_APP_PRIVATE_KEY_PEM, Endpoint, FakeApp, Fault, NewJob};

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_logs_errors_or_debug_output() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber in this binary");

    let fake = start_fake().await;
    fake.add_app(FakeApp::example());
    let client = client_with(
        &fake,
        "my-org",
        example_app(AppIdentifier::ClientId(FakeApp::example().client_id)),
        client_options(),
    );
    let mut secrets = Secrets::new();
    // A line from the middle of the App's private key.
    let key_line = EXAMPLE_APP_PRIVATE_KEY_PEM
        .lines()
        .nth(5)
        .expect("a PEM body");
    secrets.add("private key", key_line);
    let mut errors: Vec<Error> = Vec::new();
    let mut printed = Vec::new();

    // Scale set and session.
    fake.add_runner_group("redaction");
    let group = client.resolve_runner_group_id("redaction").await.unwrap();
    let set = client
        .create_scale_set("redaction", group, &["secret-free".to_owned()])
        .await
        .unwrap();
    let patch = RunnerScaleSetRequest {
        labels: Some(set.labels.clone()),
        ..Default::default()
    };
    client.update_scale_set(set.id, &patch).await.unwrap();
    client.scale_set_by_name(group, "redaction").await.unwrap();
    secrets.add_secret(
        "installation token",
        &client.auth().access_token().await.unwrap(),
    );
    secrets.add_client_tokens(&client).await;
    let mut session = client.create_session(set.id, "redaction").await.unwrap();
    secrets.add_session(&session);
    session = client
        .refresh_session(set.id, &session.session_id)
        .await
        .unwrap();
    secrets.add_session(&session);
    errors.push(client.create_session(set.id, "second").await.unwrap_err());

    // A whole job, with a queue token that expires on the way.
    let job = fake.queue_job(set.id, NewJob::default());
    fake.expire_queue_tokens();
    let message = next_message(&client, set.id, &mut session, 0).await;
    secrets.add_session(&session);
    client
        .acknowledge_message(set.id, &mut session, message.message_id)
        .await
        .unwrap();
    client
        .acquire_jobs(set.id, &mut session, &[job.runner_request_id])
        .await
        .unwrap();
    let jit = client
        .generate_jit_config(set.id, "redaction-runner", "_work")
        .await
        .unwrap();
    secrets.add_secret("JIT config", &jit.encoded_jit_config);
    errors.push(
        client
            .generate_jit_config(set.id, "redaction-runner", "_work")
            .await
            .unwrap_err(),
    );
    fake.start_job(job.runner_request_id, "redaction-runner")
        .unwrap();
    errors.push(client.remove_runner(jit.runner.id).await.unwrap_err());
    let mut last = message.message_id;
    for complete in [true, false] {
        let message = next_message(&client, set.id, &mut session, last).await;
        printed.push(format!("{message:?}"));
        client
            .acknowledge_message(set.id, &mut session, message.message_id)
            .await
            .unwrap();
        last = message.message_id;
        if complete {
            fake.complete_job(job.runner_request_id, "succeeded")
                .unwrap();
        }
    }
    errors.push(client.remove_runner(jit.runner.id).await.unwrap_err());
    // A second runner whose config is only ever printed.
    let spare = client
        .generate_jit_config(set.id, "redaction-spare", "_work")
        .await
        .unwrap();
    secrets.add_secret("JIT config", &spare.encoded_jit_config);
    printed.push(format!("{jit:?} {spare:#?} {session:?} {session:#?}"));

    // Retries, a wait beyond the cap, and an admin token the service revoked.
    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            status: 503,
            ..Fault::default()
        },
    );
    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            drop_connection: true,
            ..Fault::default()
        },
    );
    client.scale_set(set.id).await.unwrap();
    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            status: 429,
            retry_after: Some(60),
            ..Fault::default()
        },
    );
    errors.push(client.scale_set(set.id).await.unwrap_err());
    fake.expire_admin_tokens();
    errors.push(client.scale_set(set.id).await.unwrap_err());
    client.scale_set(set.id).await.unwrap();
    secrets.add_client_tokens(&client).await;

    // The session ends; the scale set is deleted behind the client's back.
    fake.expire_sessions();
    errors.push(
        client
            .get_message(set.id, &mut session, last, 10)
            .await
            .unwrap_err(),
    );
    fake.delete_scale_set(set.id);
    errors.push(client.scale_set(set.id).await.unwrap_err());
    errors.push(
        client
            .generate_jit_config(set.id, "gone", "_work")
            .await
            .unwrap_err(),
    );

    // A PAT client, and one with a PAT GitHub refuses.
    let pat = pat_client(&fake, "my-org/my-repo");
    pat.scale_set_by_name(1, "x").await.unwrap();
    secrets.add_client_tokens(&pat).await;
    let wrong = "ghp_refusedTokenForTheRedactionTest0001";
    secrets.add("refused PAT", wrong);
    let refused = client_with(
        &fake,
        "my-org",
        Credentials::Token(Secret::new(wrong)),
        client_options(),
    );
    errors.push(refused.scale_set_by_name(1, "x").await.unwrap_err());
    printed.push(format!(
        "{client:?} {pat:?} {refused:?} {:?}",
        client.auth().actions_connection().await.unwrap()
    ));

    let labels: Vec<&str> = errors.iter().map(Error::metric_label).collect();
    assert_eq!(
        labels,
        [
            "session_conflict",
            "agent_exists",
            "job_still_running",
            "agent_not_found",
            "rate_limited",
            "unauthorized",
            "session_expired",
            "scale_set_not_found",
            "scale_set_not_found",
            "unauthorized",
        ]
    );
    for error in &errors {
        secrets.assert_hidden_in(error);
    }
    secrets.assert_absent("printed values", &printed.join("\n"));

    let logged = logs.text();
    secrets.assert_absent("the logs", &logged);
    // The capture worked: request lines, retries and refreshes are there.
    for expected in [
        "GitHub request",
        "GitHub REST request",
        "retrying",
        "message queue token expired",
        "/generatejitconfig",
    ] {
        assert!(logged.contains(expected), "no {expected:?} in:\n{logged}");
    }
    assert_eq!(
        secrets.len(),
        14,
        "2 PATs, the key, the installation token, 2 registration tokens, \
         3 admin tokens, 3 queue tokens, 2 JIT configs"
    );
}
