//! URL building and decoding as tables; then sessions and the queue against
//! a scripted server, headers and the 401 refresh included.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;
use crate::github::testing::{self, Reply, ScriptedServer, admin_token};

#[test]
fn poll_urls() {
    let cases = [
        (
            "https://broker.example/rss/1/messages",
            0,
            "https://broker.example/rss/1/messages",
        ),
        (
            "https://broker.example/rss/1/messages",
            -1,
            "https://broker.example/rss/1/messages",
        ),
        (
            "https://broker.example/rss/1/messages",
            5,
            "https://broker.example/rss/1/messages?lastMessageId=5",
        ),
        (
            "https://broker.example/rss/1/messages?sessionId=abc&status=online",
            12,
            "https://broker.example/rss/1/messages?sessionId=abc&status=online&lastMessageId=12",
        ),
        (
            "https://broker.example/m?lastMessageId=3&sessionId=abc",
            4,
            "https://broker.example/m?sessionId=abc&lastMessageId=4",
        ),
        (
            "http://127.0.0.1:4000/q/9?x=%2B",
            1,
            "http://127.0.0.1:4000/q/9?x=%2B&lastMessageId=1",
        ),
    ];
    for (queue, last, expected) in cases {
        assert_eq!(
            poll_url("op", queue, last).unwrap().as_str(),
            expected,
            "{queue} {last}"
        );
    }
    assert!(poll_url("op", "not a url", 1).is_err());
}

#[test]
fn acknowledge_urls() {
    let cases = [
        (
            "https://broker.example/rss/1/messages",
            "https://broker.example/rss/1/messages/7",
        ),
        (
            "https://broker.example/rss/1/messages/",
            "https://broker.example/rss/1/messages/7",
        ),
        (
            "https://broker.example/rss/1/messages?sessionId=abc",
            "https://broker.example/rss/1/messages/7?sessionId=abc",
        ),
    ];
    for (queue, expected) in cases {
        assert_eq!(acknowledge_url("op", queue, 7).unwrap().as_str(), expected);
    }
}

#[test]
fn decoding_messages() {
    let body = serde_json::json!({
        "messageId": 3,
        "messageType": "RunnerScaleSetJobMessages",
        "body": r#"[{"messageType":"JobAssigned","runnerRequestId":9}]"#,
        "statistics": {"totalAssignedJobs": 1},
    })
    .to_string();
    let with_bom = [b"\xEF\xBB\xBF".as_slice(), body.as_bytes()].concat();
    let message = decode_message("poll", &with_bom).unwrap();
    assert_eq!(message.message_id, 3);
    assert_eq!(message.statistics.unwrap().total_assigned_jobs, 1);
    assert!(
        matches!(&message.jobs[..], [JobMessage::Assigned(m)] if m.base.runner_request_id == 9)
    );

    let other = br#"{"messageId":4,"messageType":"RunnerScaleSetSomethingElse","body":"[]"}"#;
    let error = decode_message("poll", other).unwrap_err();
    assert!(
        matches!(&error, Error::UnexpectedMessageType { message_id: 4, message_type } if message_type == "RunnerScaleSetSomethingElse"),
        "{error}"
    );

    let broken = br#"{"messageId":5,"messageType":"RunnerScaleSetJobMessages","body":"[{"}"#;
    let error = decode_message("poll", broken).unwrap_err();
    assert_eq!(error.metric_label(), "undecodable_message");
    assert!(
        matches!(&error, Error::UndecodableMessage { message_id: 5, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("message 5"), "{error}");
}

#[test]
fn nulls_in_the_envelope_read_as_absent() {
    let body = br#"{"messageId":6,"messageType":"RunnerScaleSetJobMessages","body":null,
        "statistics":null}"#;
    let message = decode_message("poll", body).unwrap();
    assert_eq!(
        (message.message_id, message.statistics, message.jobs.len()),
        (6, None, 0)
    );
    let body = br#"{"messageId":6,"messageType":"RunnerScaleSetJobMessages","body":"[]",
        "statistics":{"totalAssignedJobs":2,"totalBusyRunners":null}}"#;
    let message = decode_message("poll", body).unwrap();
    assert_eq!(message.statistics.unwrap().total_assigned_jobs, 2);
    // Statistics that do not decode are absent: the listener keeps the last.
    let body = br#"{"messageId":6,"messageType":"RunnerScaleSetJobMessages","body":"[]",
        "statistics":{"totalAssignedJobs":"2"}}"#;
    assert_eq!(decode_message("poll", body).unwrap().statistics, None);
}

#[test]
fn what_cannot_be_read_is_typed_by_whether_the_message_id_is_known() {
    // (body, message id of an UndecodableMessage, or None: no id to skip)
    let cases: [(&[u8], Option<i64>); 8] = [
        (b"", None),
        (b"not json", None),
        (b"[1,2]", None),
        (
            br#"{"messageType":"RunnerScaleSetJobMessages","body":"[]"}"#,
            None,
        ),
        (
            br#"{"messageId":"8","messageType":"RunnerScaleSetJobMessages"}"#,
            None,
        ),
        (br#"{"messageId":8,"body":"[]"}"#, Some(8)),
        (
            br#"{"messageId":8,"messageType":"RunnerScaleSetJobMessages","body":[]}"#,
            Some(8),
        ),
        (
            br#"{"messageId":8,"messageType":"RunnerScaleSetJobMessages","body":"{}"}"#,
            Some(8),
        ),
    ];
    for (body, id) in cases {
        let error = decode_message("poll", body).unwrap_err();
        match (id, &error) {
            (Some(id), Error::UndecodableMessage { message_id, .. }) => assert_eq!(*message_id, id),
            (None, Error::Decode { .. } | Error::Protocol { .. }) => {}
            _ => panic!("{}: {error:?}", String::from_utf8_lossy(body)),
        }
    }
}

fn session(token: &str, base: &str) -> serde_json::Value {
    json!({
        "sessionId": "s-1", "ownerName": "runway-0",
        "runnerScaleSet": {"id": 42, "name": "arm"},
        "messageQueueUrl": format!("http://{base}/queue/42/messages?sessionId=s-1"),
        "messageQueueAccessToken": token,
        "statistics": {"totalAssignedJobs": 2}
    })
}

#[tokio::test]
async fn sessions_and_the_message_queue() {
    let admin = admin_token();
    let polls = AtomicUsize::new(0);
    let server = ScriptedServer::start(move |r| {
        if let Some(reply) = testing::rest(r, &admin) {
            return reply;
        }
        let host = r.header("host").to_owned();
        let queue_token = r.header("authorization").trim_start_matches("Bearer ").to_owned();
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/svc/_apis/runtime/runnerscalesets/42/sessions") => Reply::json(200, session("queue-1", &host)),
            ("PATCH", "/svc/_apis/runtime/runnerscalesets/42/sessions/s-1") => {
                Reply::json(200, session("queue-2", &host))
            }
            ("DELETE", "/svc/_apis/runtime/runnerscalesets/42/sessions/s-1") => Reply::status(204),
            ("GET", "/queue/42/messages") => match polls.fetch_add(1, Ordering::SeqCst) {
                0 => Reply::status(202),
                // The first queue token expires here.
                1 => Reply::status(401),
                _ if queue_token != "queue-2" => Reply::status(401),
                _ => Reply::json(
                    200,
                    json!({
                        "messageId": 8,
                        "messageType": "RunnerScaleSetJobMessages",
                        "body": r#"[{"messageType":"JobAvailable","runnerRequestId":100,"acquireJobUrl":"u"}]"#,
                        "statistics": {"totalAvailableJobs": 1}
                    }),
                )
                .with_bom(),
            },
            ("DELETE", "/queue/42/messages/8") if queue_token == "queue-2" => Reply::status(204),
            ("POST", "/svc/_apis/runtime/runnerscalesets/42/acquirejobs") if queue_token == "queue-2" => {
                Reply::json(200, json!({"count": 1, "value": [100]}))
            }
            _ => Reply::status(418),
        }
    })
    .await;
    let client = testing::client(&server.base);

    let mut session = client.create_session(42, "runway-0").await.unwrap();
    assert_eq!(
        server
            .last("POST", "/svc/_apis/runtime/runnerscalesets/42/sessions")
            .json(),
        json!({"ownerName": "runway-0"})
    );
    assert_eq!(session.statistics.as_ref().unwrap().total_assigned_jobs, 2);

    assert_eq!(
        client.get_message(42, &mut session, 0, 10).await.unwrap(),
        None
    );
    let first_poll = server.last("GET", "/queue/42/messages");
    assert_eq!(first_poll.query, "sessionId=s-1");
    assert_eq!(first_poll.header("authorization"), "Bearer queue-1");
    assert_eq!(
        first_poll.header("accept"),
        "application/json; api-version=6.0-preview"
    );
    assert_eq!(first_poll.header("x-scalesetmaxcapacity"), "10");

    // 401: the session is refreshed once and the poll repeated.
    let message = client
        .get_message(42, &mut session, 7, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.message_queue_access_token.expose(), "queue-2");
    assert_eq!(
        server.count(
            "PATCH",
            "/svc/_apis/runtime/runnerscalesets/42/sessions/s-1"
        ),
        1
    );
    let poll = server.last("GET", "/queue/42/messages");
    assert_eq!(poll.query, "sessionId=s-1&lastMessageId=7");
    assert_eq!(message.message_id, 8);
    assert_eq!(message.statistics.unwrap().total_available_jobs, 1);
    assert!(
        matches!(&message.jobs[..], [JobMessage::Available(m)] if m.base.runner_request_id == 100)
    );

    client
        .acknowledge_message(42, &mut session, 8)
        .await
        .unwrap();
    assert_eq!(
        server.last("DELETE", "/queue/42/messages/8").query,
        "sessionId=s-1"
    );

    assert_eq!(
        client
            .acquire_jobs(42, &mut session, &[100, 101])
            .await
            .unwrap(),
        vec![100]
    );
    let acquire = server.last("POST", "/svc/_apis/runtime/runnerscalesets/42/acquirejobs");
    assert_eq!(acquire.query, "api-version=6.0-preview");
    assert_eq!(acquire.header("authorization"), "Bearer queue-2");
    assert_eq!(acquire.header("content-type"), "application/json");
    assert_eq!(acquire.json(), json!([100, 101]));

    client.delete_session(42, "s-1").await.unwrap();
    assert_eq!(
        server.count(
            "DELETE",
            "/svc/_apis/runtime/runnerscalesets/42/sessions/s-1"
        ),
        1
    );
}

#[tokio::test]
async fn a_session_conflict_is_named() {
    let admin = admin_token();
    let server = ScriptedServer::start(move |r| {
        testing::rest(r, &admin).unwrap_or_else(|| {
            Reply::json(
                409,
                json!({"typeName": "RunnerScaleSetSessionConflictException", "message": "owned by runway-1"}),
            )
        })
    })
    .await;
    let error = testing::client(&server.base)
        .create_session(42, "runway-0")
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::SessionConflict { .. }), "{error:?}");
    assert!(error.to_string().contains("owned by runway-1"), "{error}");
}
