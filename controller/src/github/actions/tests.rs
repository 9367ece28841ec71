//! The client against a scripted GHES-shaped server: exact paths, queries,
//! headers and bodies of every call, retries, errors and redaction.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;
use crate::github::testing::{self, PAT, REGISTRATION_TOKEN, Reply, ScriptedServer, admin_token};

fn scale_set(id: i64, name: &str) -> serde_json::Value {
    json!({
        "id": id, "name": name, "runnerGroupId": 1, "runnerGroupName": "Default",
        "labels": [{"type": "System", "name": name}],
        "RunnerSetting": {"ephemeral": true, "isElastic": false, "disableUpdate": true},
        "createdOn": "2024-05-01T12:00:00Z", "statistics": null
    })
}

#[test]
fn service_urls() {
    let base = Url::parse("https://pipelines.example/abc123/").unwrap();
    let no_slash = Url::parse("https://pipelines.example/abc123").unwrap();
    let cases = [
        (
            &base,
            "_apis/runtime/runnerscalesets/5",
            vec![],
            "https://pipelines.example/abc123/_apis/runtime/runnerscalesets/5?api-version=6.0-preview",
        ),
        (
            &no_slash,
            "_apis/runtime/runnerscalesets/5",
            vec![],
            "https://pipelines.example/abc123/_apis/runtime/runnerscalesets/5?api-version=6.0-preview",
        ),
        (
            &base,
            "_apis/runtime/runnergroups/",
            vec![("groupName", "my group")],
            "https://pipelines.example/abc123/_apis/runtime/runnergroups/?api-version=6.0-preview&groupName=my+group",
        ),
        (
            &base,
            "_apis/runtime/runnerscalesets",
            vec![("runnerGroupId", "1"), ("name", "a&b")],
            "https://pipelines.example/abc123/_apis/runtime/runnerscalesets?api-version=6.0-preview&runnerGroupId=1&name=a%26b",
        ),
    ];
    for (base, path, query, expected) in cases {
        assert_eq!(service_url(base, path, &query).as_str(), expected);
    }
}

#[tokio::test]
async fn connects_once_and_calls_the_scale_set_endpoints() {
    let admin = admin_token();
    let admin_for_server = admin.clone();
    let server = ScriptedServer::start(move |r| {
        if let Some(reply) = testing::rest(r, &admin_for_server) {
            return reply;
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/svc/_apis/runtime/runnergroups/") => Reply::json(
                200,
                json!({"count": 1, "value": [{"id": 3, "name": "linux", "size": 0, "isDefaultGroup": false}]}),
            ),
            ("GET", "/svc/_apis/runtime/runnerscalesets") => Reply::json(200, json!({"count": 0, "value": []})),
            ("POST", "/svc/_apis/runtime/runnerscalesets") => Reply::json(200, scale_set(42, "arm")).with_bom(),
            ("PATCH", "/svc/_apis/runtime/runnerscalesets/42") => Reply::json(200, scale_set(42, "arm")),
            ("GET", "/svc/_apis/runtime/runnerscalesets/43") => Reply::json(
                404,
                json!({"typeName": "RunnerScaleSetNotFoundException", "message": "gone"}),
            ),
            ("GET", "/svc/_apis/runtime/runnerscalesets/44") => Reply::status(404),
            ("DELETE", "/svc/_apis/runtime/runnerscalesets/42") => Reply::status(204),
            _ => Reply::status(418),
        }
    })
    .await;
    let client = testing::client(&server.base);

    assert_eq!(client.resolve_runner_group_id("Default").await.unwrap(), 1);
    assert_eq!(client.resolve_runner_group_id("linux").await.unwrap(), 3);
    assert_eq!(client.scale_set_by_name(3, "arm").await.unwrap(), None);
    let created = client
        .create_scale_set("arm", 3, &["arm64".into()])
        .await
        .unwrap();
    assert_eq!(created.id, 42);
    let patch = RunnerScaleSetRequest {
        runner_group_id: Some(3),
        ..Default::default()
    };
    client.update_scale_set(42, &patch).await.unwrap();
    assert_eq!(
        client.scale_set(43).await.unwrap_err().metric_label(),
        "scale_set_not_found"
    );
    assert_eq!(
        client.scale_set(44).await.unwrap_err().metric_label(),
        "scale_set_not_found"
    );
    client.delete_scale_set(42).await.unwrap();

    // REST: a registration token with the PAT, then the RemoteAuth exchange.
    let token = server.last(
        "POST",
        "/api/v3/orgs/my-org/actions/runners/registration-token",
    );
    assert_eq!(token.header("authorization"), format!("Bearer {PAT}"));
    assert!(token.body.is_empty());
    assert_eq!(token.header("x-github-api-version"), "2022-11-28");
    assert!(token.header("user-agent").starts_with("runway/"));
    let registration = server.last("POST", "/api/v3/actions/runner-registration");
    assert_eq!(
        registration.header("authorization"),
        format!("RemoteAuth {REGISTRATION_TOKEN}")
    );
    assert_eq!(
        registration.json(),
        json!({"url": format!("{}/my-org", server.base), "runner_event": "register"})
    );
    // One connection serves every call while the admin token is fresh.
    assert_eq!(
        server.count("POST", "/api/v3/actions/runner-registration"),
        1
    );

    let groups = server.last("GET", "/svc/_apis/runtime/runnergroups/");
    assert_eq!(groups.query, "api-version=6.0-preview&groupName=linux");
    assert_eq!(groups.header("authorization"), format!("Bearer {admin}"));
    assert_eq!(groups.header("content-type"), "application/json");
    assert!(groups.header("user-agent").starts_with("runway/"));
    let by_name = server.last("GET", "/svc/_apis/runtime/runnerscalesets");
    assert_eq!(
        by_name.query,
        "api-version=6.0-preview&runnerGroupId=3&name=arm"
    );
    assert_eq!(
        server
            .last("POST", "/svc/_apis/runtime/runnerscalesets")
            .json(),
        json!({
            "name": "arm", "runnerGroupId": 3,
            "labels": [{"type": "System", "name": "arm"}, {"type": "System", "name": "arm64"}],
            "RunnerSetting": {"ephemeral": true, "isElastic": false, "disableUpdate": true}
        })
    );
    assert_eq!(
        server
            .last("PATCH", "/svc/_apis/runtime/runnerscalesets/42")
            .json(),
        json!({"runnerGroupId": 3})
    );
}

#[tokio::test]
async fn runners_and_jit_configs() {
    let admin = admin_token();
    let server = ScriptedServer::start(move |r| {
        if let Some(reply) = testing::rest(r, &admin) {
            return reply;
        }
        match (r.method.as_str(), r.path.as_str(), r.query.as_str()) {
            ("POST", "/svc/_apis/runtime/runnerscalesets/42/generatejitconfig", _) => {
                if r.json()["name"] == "taken" {
                    Reply::json(400, json!({"typeName": "AgentExistsException", "message": "taken exists"}))
                } else {
                    Reply::json(
                        200,
                        json!({"runner": {"id": 17, "name": "r-1", "runnerScaleSetId": 42}, "encodedJITConfig": "eyJqaXQiOiJzZWNyZXQifQ=="}),
                    )
                }
            }
            ("GET", "/svc/_apis/distributedtask/pools/0/agents", q) if q.ends_with("agentName=r-1") => {
                Reply::json(200, json!({"count": 1, "value": [{"id": 17, "name": "r-1", "runnerScaleSetId": 42}]}))
            }
            ("GET", "/svc/_apis/distributedtask/pools/0/agents", _) => Reply::json(200, json!({"count": 0, "value": []})),
            ("GET", "/svc/_apis/distributedtask/pools/0/agents/17", _) => {
                Reply::json(200, json!({"id": 17, "name": "r-1", "runnerScaleSetId": 42}))
            }
            ("GET", "/svc/_apis/distributedtask/pools/0/agents/18", _) => {
                Reply::json(404, json!({"typeName": "AgentNotFoundException", "message": "no"}))
            }
            ("DELETE", "/svc/_apis/distributedtask/pools/0/agents/17", _) => Reply::json(
                400,
                json!({"typeName": "JobStillRunningException", "message": "busy"}),
            ),
            ("DELETE", "/svc/_apis/distributedtask/pools/0/agents/19", _) => Reply::status(204),
            _ => Reply::status(418),
        }
    })
    .await;
    let client = testing::client(&server.base);

    let jit = client
        .generate_jit_config(42, "r-1", "_work")
        .await
        .unwrap();
    assert_eq!(jit.runner.id, 17);
    assert_eq!(jit.encoded_jit_config.expose(), "eyJqaXQiOiJzZWNyZXQifQ==");
    assert_eq!(
        server
            .last(
                "POST",
                "/svc/_apis/runtime/runnerscalesets/42/generatejitconfig"
            )
            .json(),
        json!({"name": "r-1", "workFolder": "_work"})
    );
    let taken = client
        .generate_jit_config(42, "taken", "_work")
        .await
        .unwrap_err();
    assert_eq!(taken.metric_label(), "agent_exists");

    assert_eq!(client.runner_by_name("r-1").await.unwrap().unwrap().id, 17);
    assert_eq!(client.runner_by_name("r-2").await.unwrap(), None);
    assert_eq!(client.runner(17).await.unwrap().unwrap().name, "r-1");
    assert_eq!(client.runner(18).await.unwrap(), None);
    assert_eq!(
        client.remove_runner(17).await.unwrap_err().metric_label(),
        "job_still_running"
    );
    client.remove_runner(19).await.unwrap();
}

#[tokio::test]
async fn retries_transient_failures_only() {
    let admin = admin_token();
    let flaky = AtomicUsize::new(0);
    let server = ScriptedServer::start(move |r| {
        if let Some(reply) = testing::rest(r, &admin) {
            return reply;
        }
        match r.path.as_str() {
            "/svc/_apis/runtime/runnerscalesets/1" => match flaky.fetch_add(1, Ordering::SeqCst) {
                0 => Reply::status(503),
                1 => Reply::status(429).header("retry-after", "0"),
                _ => Reply::json(200, scale_set(1, "a")),
            },
            "/svc/_apis/runtime/runnerscalesets/2" => Reply::status(500),
            "/svc/_apis/runtime/runnerscalesets/3" => Reply::status(501),
            "/svc/_apis/runtime/runnerscalesets/4" => Reply::json(400, json!({"message": "bad"})),
            "/svc/_apis/runtime/runnerscalesets/5" => {
                Reply::status(429).header("retry-after", "3600")
            }
            _ => Reply::status(418),
        }
    })
    .await;
    let client = testing::client(&server.base);

    assert_eq!(client.scale_set(1).await.unwrap().id, 1);
    assert_eq!(
        server.count("GET", "/svc/_apis/runtime/runnerscalesets/1"),
        3
    );

    let error = client.scale_set(2).await.unwrap_err();
    assert_eq!(error.status(), Some(500));
    assert_eq!(
        server.count("GET", "/svc/_apis/runtime/runnerscalesets/2"),
        4,
        "4 tries in total"
    );

    client.scale_set(3).await.unwrap_err();
    assert_eq!(
        server.count("GET", "/svc/_apis/runtime/runnerscalesets/3"),
        1,
        "501 is final"
    );
    client.scale_set(4).await.unwrap_err();
    assert_eq!(
        server.count("GET", "/svc/_apis/runtime/runnerscalesets/4"),
        1,
        "4xx is final"
    );

    let error = client.scale_set(5).await.unwrap_err();
    assert!(
        matches!(error, Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 3600),
        "{error:?}"
    );
    assert_eq!(
        server.count("GET", "/svc/_apis/runtime/runnerscalesets/5"),
        1,
        "a long wait is not slept through"
    );
}

#[tokio::test]
async fn an_unauthorized_admin_token_is_replaced_on_the_next_call() {
    let admin = admin_token();
    let refused = AtomicUsize::new(0);
    let server = ScriptedServer::start(move |r| {
        if let Some(reply) = testing::rest(r, &admin) {
            return reply;
        }
        if refused.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::status(401);
        }
        Reply::json(200, scale_set(1, "a"))
    })
    .await;
    let client = testing::client(&server.base);
    assert_eq!(
        client.scale_set(1).await.unwrap_err().metric_label(),
        "unauthorized"
    );
    client.scale_set(1).await.unwrap();
    assert_eq!(
        server.count("POST", "/api/v3/actions/runner-registration"),
        2
    );
}

/// Collects everything the client logs, at every level.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_logs_debug_output_or_errors() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // With a single registered dispatcher, tracing computes a callsite's
    // interest from the default of whichever thread hits it first: a test on
    // another thread would switch our callsites off for good. A second live
    // dispatcher makes it ask every registered one, ours included.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let admin = admin_token();
    let admin_for_server = admin.clone();
    let server = ScriptedServer::start(move |r| {
        if let Some(reply) = testing::rest(r, &admin_for_server) {
            return reply;
        }
        match r.path.as_str() {
            "/svc/_apis/runtime/runnerscalesets/42/generatejitconfig" => Reply::json(
                200,
                json!({"runner": {"id": 1, "name": "r", "runnerScaleSetId": 42}, "encodedJITConfig": "JITSECRETJITSECRET"}),
            ),
            // An error body that echoes a credential back.
            _ => Reply::json(403, json!({"message": format!("token {PAT} cannot do that")})),
        }
    })
    .await;
    let client = testing::client(&server.base);
    let jit = client.generate_jit_config(42, "r", "_work").await.unwrap();
    let error = client.scale_set(1).await.unwrap_err();

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let printed = format!("{client:?} {jit:?} {error} {error:?} {logged}");
    for secret in [
        PAT,
        REGISTRATION_TOKEN,
        admin.as_str(),
        "JITSECRETJITSECRET",
    ] {
        assert!(
            !printed.contains(secret),
            "{secret} leaked into:\n{printed}"
        );
    }
    assert!(
        logged.contains("/svc/_apis/runtime/runnerscalesets/42/generatejitconfig"),
        "{logged}"
    );
    assert!(
        !logged.contains("api-version"),
        "queries are not logged:\n{logged}"
    );
}
