//! Golden contract: the fake's raw responses, decoded with the client's wire
//! types and encoded again, must give back the same JSON, field for field.
//!
//! The client's wire types do not deny unknown fields and default the ones
//! GitHub may leave out, so a field renamed on one side would otherwise pass
//! unnoticed: the client would drop the new name and default the old one.
//! Re-encoding turns either into a difference. Raw bodies are fetched with
//! the URL and tokens the client itself obtained, so this is exactly what the
//! client receives; and each typed value the client returns for the same
//! object must equal the decoded raw one.

mod common;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use common::{pat_client, scale_set, start_fake};
use reqwest::{Method, StatusCode};
use runway_controller::github::actions::service_url;
use runway_controller::github::wire::{
    ActionsErrorBody, ActionsServiceConnection, ExpiringToken, JitConfig, JobMessage, List,
    RunnerGroup, RunnerReference, RunnerScaleSet, RunnerScaleSetMessage, RunnerScaleSetSession,
};
use runway_controller::github::{ActionsConnection, ScaleSetMessage};
use runway_sandbox::github::NewJob;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("a reqwest client")
}

/// Status and JSON body of one raw request (the fake sends no BOM here).
async fn raw(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    authorization: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http
        .request(method, url)
        .header("Authorization", authorization)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json; api-version=6.0-preview");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("a response");
    let status = response.status();
    let bytes = response.bytes().await.expect("a body");
    (status, serde_json::from_slice(&bytes).expect("a JSON body"))
}

/// A raw Actions service call with the client's admin token.
async fn service(
    http: &reqwest::Client,
    connection: &ActionsConnection,
    method: Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = service_url(&connection.url, path, query);
    let bearer = format!("Bearer {}", connection.token.expose());
    raw(http, method, url.as_str(), &bearer, body).await
}

/// Timestamps compare as instants: the fake writes milliseconds, chrono
/// writes as many digits as it needs. The zero time means "not yet", which
/// the client reads as absent: a member holding it compares as absent.
fn normalized(value: &Value) -> Value {
    match value {
        Value::String(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Value::String(
                t.with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Nanos, true),
            ),
            Err(_) => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| v.as_str() != Some("0001-01-01T00:00:00Z"))
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Decodes `raw` as `T`, encodes it again and requires the same JSON.
fn round_trip<T: DeserializeOwned + Serialize>(what: &str, raw: &Value) -> T {
    let decoded: T = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("{what}: the client cannot decode the fake's {raw}: {e}"));
    let encoded = serde_json::to_value(&decoded).expect("encodes");
    assert_eq!(
        normalized(&encoded),
        normalized(raw),
        "{what}: the client's wire type and the fake's JSON differ (left: client, right: fake)"
    );
    decoded
}

/// A job message typed by the client, encoded again.
fn encode_job(job: &JobMessage) -> Value {
    match job {
        JobMessage::Available(m) => serde_json::to_value(m),
        JobMessage::Assigned(m) => serde_json::to_value(m),
        JobMessage::Started(m) => serde_json::to_value(m),
        JobMessage::Completed(m) => serde_json::to_value(m),
        JobMessage::Unknown { message_type } => panic!("unknown job message {message_type}"),
        JobMessage::Undecodable(job) => panic!("undecodable job message {job:?}"),
    }
    .expect("encodes")
}

/// Compares a raw message with the client's wire types and with what the
/// client's own poll returned; the job messages' types, in order.
fn check_message(raw_message: &Value, typed: &ScaleSetMessage) -> Vec<String> {
    let message: RunnerScaleSetMessage = round_trip("message", raw_message);
    let elements: Vec<Value> =
        serde_json::from_str(&message.body).expect("the body is a JSON array in a string");
    let jobs = JobMessage::decode_body(&message.body).expect("the client decodes the body");
    assert_eq!(jobs.len(), elements.len());
    for (job, element) in jobs.iter().zip(&elements) {
        assert_eq!(
            normalized(&encode_job(job)),
            normalized(element),
            "job message: the client's wire type and the fake's JSON differ (left: client)"
        );
    }
    assert_eq!(typed.message_id, message.message_id);
    assert_eq!(typed.jobs, jobs);
    assert_eq!(typed.statistics, message.statistics);
    jobs.iter()
        .map(|j| j.base().expect("a known type").message_type.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fakes_responses_round_trip_through_the_clients_wire_types() {
    let fake = start_fake().await;
    let client = pat_client(&fake, "my-org");
    let http = http();

    // REST (section 2), with the PAT, as the client sends it.
    let pat = format!("Bearer {}", common::PAT);
    let (status, body) = raw(
        &http,
        Method::POST,
        &format!(
            "{}/orgs/my-org/actions/runners/registration-token",
            fake.rest_url()
        ),
        &pat,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let registration: ExpiringToken = round_trip("registration token", &body);
    let (status, body) = raw(
        &http,
        Method::POST,
        &format!("{}/actions/runner-registration", fake.rest_url()),
        &format!("RemoteAuth {}", registration.token.expose()),
        Some(json!({"url": fake.config_url("my-org"), "runner_event": "register"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let connection: ActionsServiceConnection = round_trip("runner-registration", &body);
    assert!(connection.url.is_some_and(|u| !u.is_empty()));

    // The Actions service (section 3), with the client's own connection.
    let connection = client.auth().actions_connection().await.unwrap();
    let (_, body) = service(
        &http,
        &connection,
        Method::GET,
        "_apis/runtime/runnergroups/",
        &[("groupName", "Default")],
        None,
    )
    .await;
    let groups: List<RunnerGroup> = round_trip("runner groups", &body);
    assert_eq!(
        groups.value,
        [client.runner_group_by_name("Default").await.unwrap()]
    );

    let created = scale_set(&client, "golden").await;
    let path = format!("_apis/runtime/runnerscalesets/{}", created.id);
    let (status, body) = service(&http, &connection, Method::GET, &path, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let raw_set: RunnerScaleSet = round_trip("scale set", &body);
    assert_eq!(raw_set, client.scale_set(created.id).await.unwrap());
    assert_eq!(raw_set, created);
    // Every field PROTOCOL.md lists is there, under its exact name.
    for field in [
        "id",
        "name",
        "runnerGroupId",
        "runnerGroupName",
        "labels",
        "RunnerSetting",
        "createdOn",
        "runnerJitConfigUrl",
        "statistics",
    ] {
        assert!(
            body.get(field).is_some(),
            "scale set without {field}: {body}"
        );
    }

    let (_, body) = service(
        &http,
        &connection,
        Method::GET,
        "_apis/runtime/runnerscalesets",
        &[("runnerGroupId", "1"), ("name", "golden")],
        None,
    )
    .await;
    let list: List<RunnerScaleSet> = round_trip("scale sets by name", &body);
    assert_eq!(list.count, 1);

    let (_, body) = service(
        &http,
        &connection,
        Method::POST,
        &format!("{path}/generatejitconfig"),
        &[],
        Some(json!({"name": "golden-runner", "workFolder": "_work"})),
    )
    .await;
    let jit: JitConfig = round_trip("JIT config", &body);
    let (_, body) = service(
        &http,
        &connection,
        Method::GET,
        &format!("_apis/distributedtask/pools/0/agents/{}", jit.runner.id),
        &[],
        None,
    )
    .await;
    let runner: RunnerReference = round_trip("runner", &body);
    assert_eq!(Some(runner), client.runner(jit.runner.id).await.unwrap());
    let (_, body) = service(
        &http,
        &connection,
        Method::GET,
        "_apis/distributedtask/pools/0/agents",
        &[("agentName", "golden-runner")],
        None,
    )
    .await;
    let _: List<RunnerReference> = round_trip("runners by name", &body);

    let (status, body) = service(
        &http,
        &connection,
        Method::POST,
        &format!("{path}/sessions"),
        &[],
        Some(json!({"ownerName": "golden"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut session: RunnerScaleSetSession = round_trip("session", &body);

    // An exception body, as the client reads it.
    let (status, body) = service(
        &http,
        &connection,
        Method::POST,
        &format!("{path}/sessions"),
        &[],
        Some(json!({"ownerName": "second"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let exception: ActionsErrorBody = round_trip("exception", &body);
    assert_eq!(
        exception.type_name.as_deref(),
        Some("RunnerScaleSetSessionConflictException")
    );

    // Messages (section 4): one of each job message type. Each raw poll is
    // followed by the client's, which gets the same message (not yet
    // acknowledged) and must see the same thing.
    let job = fake.queue_job(created.id, NewJob::default());
    let queue_url = session.message_queue_url.clone();
    let queue_token = format!("Bearer {}", session.message_queue_access_token.expose());
    let (status, first) = raw(&http, Method::GET, &queue_url, &queue_token, None).await;
    assert_eq!(status, StatusCode::OK);
    let typed = client
        .get_message(created.id, &mut session, 0, 10)
        .await
        .unwrap()
        .expect("the message is delivered again");
    let mut kinds = check_message(&first, &typed);

    let id = job.runner_request_id;
    let ids = client
        .acquire_jobs(created.id, &mut session, &[id])
        .await
        .unwrap();
    assert_eq!(ids, [id]);
    fake.start_job(id, "golden-runner").unwrap();
    fake.complete_job(id, "failed").unwrap();
    let after_first = format!("{queue_url}?lastMessageId={}", typed.message_id);
    let (status, second) = raw(&http, Method::GET, &after_first, &queue_token, None).await;
    assert_eq!(status, StatusCode::OK);
    let typed = client
        .get_message(created.id, &mut session, typed.message_id, 10)
        .await
        .unwrap()
        .expect("the message is delivered again");
    kinds.extend(check_message(&second, &typed));

    assert_eq!(
        kinds,
        ["JobAvailable", "JobAssigned", "JobStarted", "JobCompleted"]
    );
}
