//! Contract tests for HTTP retries (PROTOCOL.md sections 2 and 5.4), counted
//! on the fake's side: connection errors, timeouts, 429 and 5xx except 501
//! are retried, four tries in all, `Retry-After` honoured; every other status
//! is final; GitHub's transient 401/403 from `actions/runner-registration`
//! are retried with their own policy.

mod common;

use std::time::{Duration, Instant};

use common::{
    Connected, Secrets, client_options, client_with, connected, fault, pat_client, scale_set,
    start_fake,
};
use runway_controller::github::{ActionsClient, Error, RetryPolicy};
use runway_sandbox::github::{Endpoint, FakeGitHub, Fault};

/// A client whose retry cap lets a 1 s `Retry-After` be waited out.
fn patient_client(fake: &FakeGitHub) -> ActionsClient {
    let mut options = client_options();
    options.retry = RetryPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_secs(2),
        attempts: 4,
    };
    client_with(fake, "my-org", common::pat(), options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let fake = start_fake().await;
    let client = patient_client(&fake);
    let set = scale_set(&client, "slow-down").await;

    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            status: 429,
            retry_after: Some(1),
            ..Fault::default()
        },
    );
    let started = Instant::now();
    client.scale_set(set.id).await.unwrap();
    let elapsed = started.elapsed();
    let times = fake.request_times(Endpoint::ScaleSetById);
    assert_eq!(times.len(), 2);
    let waited = times[1] - times[0];
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, Retry-After said 1 s"
    );
    assert!(waited < Duration::from_millis(1500), "waited {waited:?}");
    assert!(elapsed >= Duration::from_secs(1));

    // GitHub's secondary rate limit: 403 with Retry-After is retried too.
    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            status: 403,
            retry_after: Some(0),
            ..Fault::default()
        },
    );
    client.scale_set(set.id).await.unwrap();
    assert_eq!(fake.request_count(Endpoint::ScaleSetById), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_cap_is_returned_not_slept() {
    let fake = start_fake().await;
    let client = patient_client(&fake);
    let set = scale_set(&client, "too-slow").await;
    let secrets = Secrets::of(&client).await;
    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            status: 429,
            retry_after: Some(60),
            ..Fault::default()
        },
    );
    let started = Instant::now();
    let error = client.scale_set(set.id).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    let Error::RateLimited {
        status,
        retry_after,
        ..
    } = &error
    else {
        panic!("expected RateLimited: {error:?}")
    };
    assert_eq!(
        (*status, *retry_after),
        (429, Some(Duration::from_secs(60)))
    );
    secrets.assert_hidden_in(&error);
    assert_eq!(fake.request_count(Endpoint::ScaleSetById), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_tries_run_out() {
    let Connected { fake, client, set } = connected("flaky").await;
    let secrets = Secrets::of(&client).await;

    // 503 twice, then the real answer: three requests, one success.
    fake.inject_fault(Endpoint::ScaleSetById, fault(503, 2));
    assert_eq!(client.scale_set(set.id).await.unwrap().id, set.id);
    assert_eq!(fake.request_count(Endpoint::ScaleSetById), 3);

    // A POST is retried the same way and registers one runner, not two.
    fake.inject_fault(Endpoint::GenerateJitConfig, fault(502, 1));
    client
        .generate_jit_config(set.id, "retried", "_work")
        .await
        .unwrap();
    assert_eq!(fake.request_count(Endpoint::GenerateJitConfig), 2);
    assert_eq!(fake.snapshot().runners.len(), 1);

    // Four 500s: four tries (PROTOCOL.md), then the error.
    fake.inject_fault(Endpoint::ScaleSetByName, fault(500, 10));
    let error = client.scale_set_by_name(1, "flaky").await.unwrap_err();
    assert_eq!(error.status(), Some(500), "{error:?}");
    secrets.assert_hidden_in(&error);
    assert_eq!(fake.request_count(Endpoint::ScaleSetByName), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_implemented_and_client_errors_are_not_retried() {
    let Connected { fake, client, set } = connected("final").await;
    let secrets = Secrets::of(&client).await;

    for status in [501, 400, 401, 403, 404, 409, 422] {
        fake.clear_faults();
        let before = fake.request_count(Endpoint::ScaleSetByName);
        fake.inject_fault(Endpoint::ScaleSetByName, fault(status, 5));
        let error = client.scale_set_by_name(1, "final").await.unwrap_err();
        assert_eq!(error.status(), Some(status), "{error:?}");
        secrets.assert_hidden_in(&error);
        assert_eq!(
            fake.request_count(Endpoint::ScaleSetByName) - before,
            1,
            "HTTP {status} was retried"
        );
    }
    fake.clear_faults();
    assert!(
        client
            .scale_set_by_name(1, "final")
            .await
            .unwrap()
            .is_some()
    );

    // By id, a bare 404 means the scale set is gone, named or not.
    fake.inject_fault(Endpoint::ScaleSetById, fault(404, 1));
    let error = client.scale_set(set.id).await.unwrap_err();
    assert!(matches!(error, Error::ScaleSetNotFound { .. }), "{error:?}");
    assert_eq!(fake.request_count(Endpoint::ScaleSetById), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_timeouts_are_retried() {
    let fake = start_fake().await;
    let mut options = client_options();
    options.transport.timeout = Duration::from_millis(300);
    let client = client_with(&fake, "my-org", common::pat(), options);
    let set = scale_set(&client, "drops").await;
    let secrets = Secrets::of(&client).await;

    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            drop_connection: true,
            ..Fault::default()
        },
    );
    client.scale_set(set.id).await.unwrap();
    assert_eq!(fake.request_count(Endpoint::ScaleSetById), 2);

    fake.inject_fault(
        Endpoint::GenerateJitConfig,
        Fault {
            drop_connection: true,
            ..Fault::default()
        },
    );
    client
        .generate_jit_config(set.id, "after-a-drop", "_work")
        .await
        .unwrap();
    assert_eq!(fake.request_count(Endpoint::GenerateJitConfig), 2);
    assert_eq!(fake.snapshot().runners.len(), 1);

    // Slower than the client timeout once: a timeout, then a retry.
    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            status: 200,
            delay: Duration::from_secs(2),
            ..Fault::default()
        },
    );
    client.scale_set(set.id).await.unwrap();
    assert_eq!(fake.request_count(Endpoint::ScaleSetById), 4);

    // Dropped every time: a transport error after four tries.
    fake.inject_fault(
        Endpoint::ScaleSetById,
        Fault {
            drop_connection: true,
            times: 10,
            ..Fault::default()
        },
    );
    let error = client.scale_set(set.id).await.unwrap_err();
    assert!(error.is_connection_failure(), "{error:?}");
    secrets.assert_hidden_in(&error);
    assert_eq!(fake.request_count(Endpoint::ScaleSetById), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_registration_refusals_are_retried_with_backoff() {
    // PROTOCOL.md section 2: GitHub answers 401/403 transiently right after
    // issuing a registration token.
    let fake = start_fake().await;
    fake.inject_fault(Endpoint::RunnerRegistration, fault(401, 1));
    fake.inject_fault(Endpoint::RunnerRegistration, fault(403, 1));
    let client = pat_client(&fake, "my-org");
    scale_set(&client, "eventually").await;
    assert_eq!(fake.request_count(Endpoint::RunnerRegistration), 3);
    assert_eq!(fake.request_count(Endpoint::RegistrationToken), 1);

    // Refused for good: `registration_retry.attempts` tries, then the error.
    let fake = start_fake().await;
    fake.inject_fault(Endpoint::RunnerRegistration, fault(403, 100));
    let client = pat_client(&fake, "my-org");
    // Fetched (and cached) first: the refused exchange presents this one.
    let mut secrets = Secrets::new();
    secrets.add_secret(
        "registration token",
        &client.auth().registration_token().await.unwrap(),
    );
    let error = client.scale_set_by_name(1, "x").await.unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 403, .. }),
        "{error:?}"
    );
    secrets.assert_hidden_in(&error);
    assert_eq!(fake.request_count(Endpoint::RunnerRegistration), 4);
}
