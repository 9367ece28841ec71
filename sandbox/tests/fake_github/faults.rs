//! What tests make the fake do on purpose: injected faults, a byte order
//! mark, request counters, and the `/_control` API that drives it all.

use std::time::Instant;

use reqwest::{Method, StatusCode};
use runway_sandbox::github::{Endpoint, FakeOptions, Fault};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_answer_with_status_retry_after_and_type_name_the_given_number_of_times() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    github.inject_fault(
        Endpoint::ScaleSetByName,
        Fault {
            status: 503,
            type_name: Some("ServiceUnavailableException".into()),
            retry_after: Some(2),
            times: 2,
            ..Default::default()
        },
    );
    github.inject_fault(Endpoint::ScaleSetByName, Fault::default());
    let path = "_apis/runtime/runnerscalesets?runnerGroupId=1&name=arm";
    for _ in 0..2 {
        let (status, headers, body) = send(service.request(Method::GET, path)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("2")
        );
        assert_eq!(body["typeName"], "ServiceUnavailableException");
    }
    let (status, headers, body) = send(service.request(Method::GET, path)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(headers.get("retry-after").is_none());
    assert!(
        body.get("typeName").is_none() && body["message"].is_string(),
        "{body}"
    );
    let (status, _, _) = send(service.request(Method::GET, path)).await;
    assert_eq!(status, StatusCode::OK, "the faults are used up");
    assert_eq!(
        github.request_count(Endpoint::ScaleSetByName),
        4,
        "faulted requests count"
    );

    // A fault hits before authentication: even a request without a token gets it.
    github.inject_fault(
        Endpoint::RegistrationToken,
        Fault {
            status: 429,
            retry_after: Some(60),
            ..Default::default()
        },
    );
    let (status, _) = registration_token(&client(), &github, "orgs/my-org", "nobody").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_drop_connections_and_delay_requests() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    github.inject_fault(
        Endpoint::RunnerGroups,
        Fault {
            drop_connection: true,
            times: 2,
            ..Default::default()
        },
    );
    for _ in 0..2 {
        let error = service.request(Method::GET, DEFAULT_GROUP).send().await;
        let error = error.expect_err("the connection is closed without a response");
        assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    }
    let (status, _) = service.get(DEFAULT_GROUP).await;
    assert_eq!(status, StatusCode::OK, "later requests are answered");

    github.inject_fault(
        Endpoint::RunnerGroups,
        Fault {
            status: 200,
            delay: millis(300),
            ..Default::default()
        },
    );
    let started = Instant::now();
    let (status, groups) = service.get(DEFAULT_GROUP).await;
    assert_eq!(
        (status, groups["count"].as_i64()),
        (StatusCode::OK, Some(1)),
        "a slow but real answer"
    );
    assert!(started.elapsed() >= millis(300));
    assert_eq!(github.request_count(Endpoint::RunnerGroups), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_response_can_start_with_a_byte_order_mark() {
    let github = start(FakeOptions {
        bom: true,
        ..Default::default()
    })
    .await;
    let client = client();
    let url = format!(
        "{}/orgs/my-org/actions/runners/registration-token",
        github.rest_url()
    );
    let raw = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("a response");
        response.bytes().await.expect("a body")
    };
    for credential in [PAT, "wrong"] {
        let bytes = raw(client.post(&url).bearer_auth(credential)).await;
        assert!(
            bytes.starts_with(b"\xEF\xBB\xBF{"),
            "{credential}: {bytes:?}"
        );
        serde_json::from_slice::<Value>(&bytes[3..]).expect("JSON after the BOM");
    }
    let service = connect(&github).await;
    let bytes = raw(service.request(Method::GET, DEFAULT_GROUP)).await;
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    github.set_bom(false);
    let bytes = raw(client.post(&url).bearer_auth(PAT)).await;
    assert!(bytes.starts_with(b"{"), "{bytes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_and_timed_per_endpoint() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    let before = Instant::now();
    for _ in 0..5 {
        service
            .get("_apis/distributedtask/pools/0/agents?agentName=nobody")
            .await;
    }
    let (status, _) = fetch(client().get(format!("{}/no/such/route", github.base_url()))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(github.request_count(Endpoint::GetRunnerByName), 5);
    let times = github.request_times(Endpoint::GetRunnerByName);
    assert_eq!(times.len(), 5);
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[0] >= before);
    let counters = github.counters();
    assert_eq!(counters["GetRunnerByName"], 5);
    assert_eq!(
        (
            counters["RegistrationToken"],
            counters["RunnerRegistration"]
        ),
        (1, 1)
    );
    assert_eq!((counters["GetMessage"], counters["Unmatched"]), (0, 1));
    let control = Control::of(&github, &client());
    let (_, over_http) = control.get("counters").await;
    assert_eq!(over_http["GetRunnerByName"], 5);
    let (_, timed) = control.get("requests/GetRunnerByName").await;
    assert_eq!(timed["millis"].as_array().map(Vec::len), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_drives_the_fake_over_http() {
    let github = start(long_poll(100)).await;
    let client = client();
    let control = Control::of(&github, &client);
    let (status, _) = control
        .post("pats", Some(json!({"token": "ghp_second"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = registration_token(&client, &github, "orgs/my-org", "ghp_second").await;
    assert_eq!(status, StatusCode::CREATED);

    let service = connect(&github).await;
    let id = service.create_scale_set("arm").await;
    let session = service.create_session(id).await;
    let (status, queued) = control
        .post(
            "jobs",
            Some(json!({"scaleSetId": id, "displayName": "lint"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{queued}");
    let request_id = queued["runnerRequestId"].as_i64().expect("runnerRequestId");
    let events = session.first_events().await;
    assert_eq!(events[0]["jobDisplayName"], "lint");
    session.acquire(&service, &[request_id]).await;
    service
        .post(
            &format!("{}/generatejitconfig", scale_set_path(id)),
            json!({"name": "r1"}),
        )
        .await;
    let start_job = format!("jobs/{request_id}/start");
    let (status, _) = control
        .post(&start_job, Some(json!({"runnerName": "r1"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, error) = control
        .post(&start_job, Some(json!({"runnerName": "r1"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let (status, _) = control
        .post(
            &format!("jobs/{request_id}/complete"),
            Some(json!({"result": "failed"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let fault = json!({"endpoint": "RunnerGroups", "status": 502, "typeName": "BadGatewayException", "retryAfter": 1});
    let (status, _) = control.post("faults", Some(fault)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expect_exception(
        service.get(DEFAULT_GROUP).await,
        StatusCode::BAD_GATEWAY,
        "BadGatewayException",
    );

    let (_, state) = control.get("state").await;
    let job = state["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["runnerRequestId"] == request_id))
        .expect("the job");
    assert_eq!(
        (job["state"].as_str(), job["result"].as_str()),
        (Some("completed"), Some("failed"))
    );
    assert_eq!(state["sessions"][0]["scaleSetId"], id);

    let (status, _) = control.post("expire/admin-tokens", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = service.get(DEFAULT_GROUP).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = control.post("expire/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = control.delete(&format!("scalesets/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(github.snapshot().scale_sets.is_empty());
}
