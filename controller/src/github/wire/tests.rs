//! Golden tests: PROTOCOL.md's JSON shapes, decoded and re-encoded.
//!
//! Decoding alone cannot catch a renamed optional field (it silently stays
//! empty), so every golden document must also re-encode to exactly itself:
//! a renamed field then shows up under the wrong key, a dropped one goes
//! missing. `a_renamed_field_fails_the_golden_check` proves the check bites.

use chrono::TimeZone;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;

fn round_trip<T: DeserializeOwned + Serialize>(json: &str) -> Result<T, String> {
    let decoded: T = serde_json::from_str(json).map_err(|e| format!("decode: {e}"))?;
    let original: Value = serde_json::from_str(json).expect("golden JSON is valid");
    let encoded = serde_json::to_value(&decoded).expect("encodes");
    if encoded != original {
        return Err(format!(
            "re-encoding changed the document\n golden:  {original}\n encoded: {encoded}"
        ));
    }
    Ok(decoded)
}

fn golden<T: DeserializeOwned + Serialize>(json: &str) -> T {
    round_trip(json).unwrap_or_else(|e| panic!("{e}"))
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, h, m, s).unwrap()
}

const STATISTICS: &str = r#"{
    "totalAvailableJobs": 1, "totalAcquiredJobs": 2, "totalAssignedJobs": 3,
    "totalRunningJobs": 4, "totalRegisteredRunners": 5, "totalBusyRunners": 6,
    "totalIdleRunners": 7
}"#;

fn scale_set_json() -> String {
    format!(
        r#"{{
        "id": 42,
        "name": "arm-builders",
        "runnerGroupId": 1,
        "runnerGroupName": "Default",
        "labels": [{{"type": "System", "name": "arm-builders"}}, {{"type": "System", "name": "arm64"}}],
        "RunnerSetting": {{"ephemeral": true, "isElastic": true, "disableUpdate": true}},
        "createdOn": "2024-05-01T12:00:00Z",
        "runnerJitConfigUrl": "https://pipelines.example/_apis/runtime/runnerscalesets/42/generatejitconfig",
        "statistics": {STATISTICS}
    }}"#
    )
}

#[test]
fn statistics() {
    let stats: RunnerScaleSetStatistic = golden(STATISTICS);
    assert_eq!(
        stats,
        RunnerScaleSetStatistic {
            total_available_jobs: 1,
            total_acquired_jobs: 2,
            total_assigned_jobs: 3,
            total_running_jobs: 4,
            total_registered_runners: 5,
            total_busy_runners: 6,
            total_idle_runners: 7,
        }
    );
}

#[test]
fn runner_scale_set() {
    let set: RunnerScaleSet = golden(&scale_set_json());
    assert_eq!(set.id, 42);
    assert_eq!(set.name, "arm-builders");
    assert_eq!(set.runner_group_id, 1);
    assert_eq!(set.runner_group_name, "Default");
    assert_eq!(
        set.labels,
        vec![Label::system("arm-builders"), Label::system("arm64")]
    );
    assert_eq!(
        set.runner_setting,
        RunnerSetting {
            ephemeral: true,
            is_elastic: true,
            disable_update: true
        }
    );
    assert_eq!(set.created_on, Some(at(12, 0, 0)));
    assert!(
        set.runner_jit_config_url
            .unwrap()
            .ends_with("/generatejitconfig")
    );
    assert_eq!(set.statistics.unwrap().total_assigned_jobs, 3);
}

#[test]
fn a_renamed_field_fails_the_golden_check() {
    // `RunnerSetting` is the one capitalised field; a lower-case spelling
    // decodes (the field is optional) but must not pass as golden.
    let renamed = scale_set_json().replace("\"RunnerSetting\"", "\"runnerSetting\"");
    assert!(round_trip::<RunnerScaleSet>(&renamed).is_err());
    let renamed = STATISTICS.replace("totalIdleRunners", "totalIdle");
    assert!(round_trip::<RunnerScaleSetStatistic>(&renamed).is_err());
    let renamed = r#"{"runner":{"id":1,"name":"r","runnerScaleSetId":2},"encodedJitConfig":"x"}"#;
    assert!(round_trip::<JitConfig>(renamed).is_err());
}

#[test]
fn runner_groups_list() {
    let list: List<RunnerGroup> = golden(
        r#"{"count": 1, "value": [{"id": 1, "name": "Default", "size": 3, "isDefaultGroup": true}]}"#,
    );
    assert_eq!(list.count, 1);
    assert_eq!(
        list.value,
        vec![RunnerGroup {
            id: 1,
            name: "Default".into(),
            size: 3,
            is_default_group: true
        }]
    );
}

#[test]
fn scale_sets_list() {
    let list: List<RunnerScaleSet> = golden(&format!(
        r#"{{"count": 1, "value": [{}]}}"#,
        scale_set_json()
    ));
    assert_eq!(list.value[0].id, 42);
    let empty: List<RunnerScaleSet> = golden(r#"{"count": 0, "value": []}"#);
    assert!(empty.value.is_empty());
}

#[test]
fn scale_set_requests() {
    let create = RunnerScaleSetRequest {
        name: Some("arm-builders".into()),
        runner_group_id: Some(1),
        labels: Some(vec![Label::system("arm-builders")]),
        runner_setting: Some(RunnerSetting {
            ephemeral: true,
            is_elastic: false,
            disable_update: true,
        }),
    };
    assert_eq!(
        serde_json::to_value(&create).unwrap(),
        serde_json::json!({
            "name": "arm-builders",
            "runnerGroupId": 1,
            "labels": [{"type": "System", "name": "arm-builders"}],
            "RunnerSetting": {"ephemeral": true, "isElastic": false, "disableUpdate": true}
        })
    );
    let patch = RunnerScaleSetRequest {
        runner_group_id: Some(7),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&patch).unwrap(),
        r#"{"runnerGroupId":7}"#
    );
}

#[test]
fn jit_config() {
    let request = JitConfigRequest {
        name: "arm-builders-abc12".into(),
        work_folder: "_work".into(),
    };
    assert_eq!(
        serde_json::to_string(&request).unwrap(),
        r#"{"name":"arm-builders-abc12","workFolder":"_work"}"#
    );
    let config: JitConfig = golden(
        r#"{"runner": {"id": 17, "name": "arm-builders-abc12", "runnerScaleSetId": 42},
            "encodedJITConfig": "eyJzZWNyZXQiOiJ2YWx1ZSJ9"}"#,
    );
    assert_eq!(config.runner.id, 17);
    assert_eq!(config.runner.runner_scale_set_id, 42);
    assert_eq!(
        config.encoded_jit_config.expose(),
        "eyJzZWNyZXQiOiJ2YWx1ZSJ9"
    );
    assert!(!format!("{config:?}").contains("eyJzZWNyZXQ"));
}

#[test]
fn runner_references() {
    let one: RunnerReference = golden(r#"{"id": 17, "name": "r-1", "runnerScaleSetId": 42}"#);
    assert_eq!(one.name, "r-1");
    let list: List<RunnerReference> =
        golden(r#"{"count": 1, "value": [{"id": 17, "name": "r-1", "runnerScaleSetId": 42}]}"#);
    assert_eq!(list.value, vec![one]);
}

#[test]
fn session() {
    assert_eq!(
        serde_json::to_string(&SessionRequest {
            owner_name: "runway-0".into()
        })
        .unwrap(),
        r#"{"ownerName":"runway-0"}"#
    );
    let json = format!(
        r#"{{
        "sessionId": "6d6b3a38-3c2f-4c49-9f0e-2c5d1f1d7a10",
        "ownerName": "runway-0",
        "runnerScaleSet": {},
        "messageQueueUrl": "https://broker.example/rss/42/messages?sessionId=6d6b",
        "messageQueueAccessToken": "eyJhbGciOiJIUzI1NiJ9.e30.queue",
        "statistics": {STATISTICS}
    }}"#,
        scale_set_json()
    );
    let session: RunnerScaleSetSession = golden(&json);
    assert_eq!(session.session_id, "6d6b3a38-3c2f-4c49-9f0e-2c5d1f1d7a10");
    assert_eq!(session.owner_name, "runway-0");
    assert_eq!(session.runner_scale_set.as_ref().unwrap().id, 42);
    assert!(session.message_queue_url.ends_with("sessionId=6d6b"));
    assert_eq!(
        session.message_queue_access_token.expose(),
        "eyJhbGciOiJIUzI1NiJ9.e30.queue"
    );
    assert_eq!(session.statistics.as_ref().unwrap().total_busy_runners, 6);
    assert!(!format!("{session:?}").contains("e30.queue"));
}

const JOB_BODY: &[&str] = &[
    r#"{"messageType": "JobAvailable", "acquireJobUrl": "https://broker.example/acquire/1001",
        "runnerRequestId": 1001, "repositoryName": "app", "ownerName": "my-org", "jobId": "a1b2",
        "jobWorkflowRef": "my-org/app/.github/workflows/ci.yml@refs/heads/main",
        "jobDisplayName": "build", "workflowRunId": 9001, "eventName": "push",
        "requestLabels": ["arm-builders"], "queueTime": "2024-05-01T12:00:00Z",
        "scaleSetAssignTime": "2024-05-01T12:00:01Z", "runnerAssignTime": "2024-05-01T12:00:02Z",
        "finishTime": "2024-05-01T12:00:03Z"}"#,
    r#"{"messageType": "JobAssigned", "runnerRequestId": 1001, "repositoryName": "app",
        "ownerName": "my-org", "jobId": "a1b2", "jobWorkflowRef": "w", "jobDisplayName": "build",
        "workflowRunId": 9001, "eventName": "push", "requestLabels": ["arm-builders"],
        "queueTime": "2024-05-01T12:00:00Z", "scaleSetAssignTime": "2024-05-01T12:00:01Z",
        "runnerAssignTime": "2024-05-01T12:00:02Z", "finishTime": "2024-05-01T12:00:03Z"}"#,
    r#"{"messageType": "JobStarted", "runnerId": 17, "runnerName": "arm-builders-abc12",
        "runnerRequestId": 1001, "repositoryName": "app", "ownerName": "my-org", "jobId": "a1b2",
        "jobWorkflowRef": "w", "jobDisplayName": "build", "workflowRunId": 9001,
        "eventName": "push", "requestLabels": ["arm-builders"], "queueTime": "2024-05-01T12:00:00Z",
        "scaleSetAssignTime": "2024-05-01T12:00:01Z", "runnerAssignTime": "2024-05-01T12:00:02Z",
        "finishTime": "2024-05-01T12:00:03Z"}"#,
    r#"{"messageType": "JobCompleted", "result": "succeeded", "runnerId": 17,
        "runnerName": "arm-builders-abc12", "runnerRequestId": 1001, "repositoryName": "app",
        "ownerName": "my-org", "jobId": "a1b2", "jobWorkflowRef": "w", "jobDisplayName": "build",
        "workflowRunId": 9001, "eventName": "push", "requestLabels": ["arm-builders"],
        "queueTime": "2024-05-01T12:00:00Z", "scaleSetAssignTime": "2024-05-01T12:00:01Z",
        "runnerAssignTime": "2024-05-01T12:00:02Z", "finishTime": "2024-05-01T12:00:03Z"}"#,
];

#[test]
fn each_job_message_type_round_trips() {
    let available: JobAvailable = golden(JOB_BODY[0]);
    assert_eq!(
        available.acquire_job_url,
        "https://broker.example/acquire/1001"
    );
    let base = &available.base;
    assert_eq!(base.message_type, "JobAvailable");
    assert_eq!(base.runner_request_id, 1001);
    assert_eq!(base.repository_name, "app");
    assert_eq!(base.owner_name, "my-org");
    assert_eq!(base.job_id, "a1b2");
    assert_eq!(
        base.job_workflow_ref,
        "my-org/app/.github/workflows/ci.yml@refs/heads/main"
    );
    assert_eq!(base.job_display_name, "build");
    assert_eq!(base.workflow_run_id, 9001);
    assert_eq!(base.event_name, "push");
    assert_eq!(base.request_labels, vec!["arm-builders"]);
    assert_eq!(base.queue_time, Some(at(12, 0, 0)));
    assert_eq!(base.scale_set_assign_time, Some(at(12, 0, 1)));
    assert_eq!(base.runner_assign_time, Some(at(12, 0, 2)));
    assert_eq!(base.finish_time, Some(at(12, 0, 3)));

    let assigned: JobAssigned = golden(JOB_BODY[1]);
    assert_eq!(assigned.base.message_type, "JobAssigned");
    let started: JobStarted = golden(JOB_BODY[2]);
    assert_eq!(
        (started.runner_id, started.runner_name.as_str()),
        (17, "arm-builders-abc12")
    );
    let completed: JobCompleted = golden(JOB_BODY[3]);
    assert_eq!(completed.result, "succeeded");
    assert_eq!(
        (completed.runner_id, completed.runner_name.as_str()),
        (17, "arm-builders-abc12")
    );
}

#[test]
fn message_body_is_a_json_array_encoded_as_a_string() {
    let mut elements = JOB_BODY.to_vec();
    elements.push(r#"{"messageType": "JobSomethingNew", "runnerRequestId": 5}"#);
    let body = format!("[{}]", elements.join(","));
    let message = serde_json::json!({
        "messageId": 7,
        "messageType": "RunnerScaleSetJobMessages",
        "body": body,
        "statistics": serde_json::from_str::<Value>(STATISTICS).unwrap(),
    })
    .to_string();
    let decoded: RunnerScaleSetMessage = golden(&message);
    assert_eq!(decoded.message_id, 7);
    assert_eq!(decoded.message_type, "RunnerScaleSetJobMessages");
    assert_eq!(decoded.statistics.as_ref().unwrap().total_available_jobs, 1);

    let jobs = JobMessage::decode_body(&decoded.body).unwrap();
    assert_eq!(jobs.len(), 5);
    assert!(matches!(&jobs[0], JobMessage::Available(m) if m.base.runner_request_id == 1001));
    assert!(matches!(&jobs[1], JobMessage::Assigned(_)));
    assert!(matches!(&jobs[2], JobMessage::Started(m) if m.runner_id == 17));
    assert!(matches!(&jobs[3], JobMessage::Completed(m) if m.result == "succeeded"));
    assert_eq!(
        jobs[4],
        JobMessage::Unknown {
            message_type: "JobSomethingNew".into()
        }
    );
    assert_eq!(jobs[0].base().unwrap().job_id, "a1b2");
    assert!(jobs[4].base().is_none());
}

#[test]
fn message_body_edge_cases() {
    assert!(JobMessage::decode_body("").unwrap().is_empty());
    assert!(JobMessage::decode_body("[]").unwrap().is_empty());
    // The body is a string holding an array, not the array itself.
    assert!(JobMessage::decode_body(r#"{"messageType":"JobAvailable"}"#).is_err());
    // A known type missing a required field is one undecodable element,
    // not an error for the whole body.
    let jobs = JobMessage::decode_body(r#"[{"messageType":"JobAvailable"}]"#).unwrap();
    assert!(
        matches!(&jobs[..], [JobMessage::Undecodable(UndecodableJob { message_type: Some(t), runner_request_id: None, error })]
            if t == "JobAvailable" && error.contains("runnerRequestId")),
        "{jobs:?}"
    );
    // The reference client reads a missing runnerId as 0.
    let jobs =
        JobMessage::decode_body(r#"[{"messageType":"JobStarted","runnerRequestId":1}]"#).unwrap();
    assert!(
        matches!(&jobs[..], [JobMessage::Started(m)] if m.runner_id == 0 && m.runner_name.is_empty()),
        "{jobs:?}"
    );
}

#[test]
fn service_timestamps() {
    // The service writes .NET timestamps with 7 fractional digits, with or
    // without an offset, and Go's (or .NET's) zero time for "not yet".
    let json = r#"{"messageType":"JobCompleted","runnerRequestId":1,
        "queueTime":"2024-05-01T12:00:00.1234567Z","finishTime":"0001-01-01T00:00:00Z",
        "scaleSetAssignTime":"2024-05-01T12:00:01.1234567","runnerAssignTime":"0001-01-01T00:00:00"}"#;
    let completed: JobCompleted = serde_json::from_str(json).unwrap();
    let queued = completed.base.queue_time.unwrap();
    assert_eq!(queued.timestamp_subsec_nanos(), 123_456_700);
    assert_eq!(completed.base.finish_time, None);
    assert_eq!(completed.base.runner_assign_time, None);
    let assigned = completed.base.scale_set_assign_time.unwrap();
    assert_eq!(
        (assigned.timestamp(), assigned.timestamp_subsec_nanos()),
        (at(12, 0, 1).timestamp(), 123_456_700)
    );
}

#[test]
fn timestamps_in_any_form_never_cost_the_element() {
    let cases = [
        ("2024-05-01T12:00:00Z", Some(at(12, 0, 0))),
        ("2024-05-01T14:00:00+02:00", Some(at(12, 0, 0))),
        ("2024-05-01T12:00:00", Some(at(12, 0, 0))),
        ("2024-05-01T12:00:00.0000000", Some(at(12, 0, 0))),
        (" 2024-05-01T12:00:00Z ", Some(at(12, 0, 0))),
        ("0001-01-01T00:00:00Z", None),
        ("0001-01-01T00:00:00.0000000+00:00", None),
        ("yesterday", None),
        ("2024-13-45T99:00:00Z", None),
        ("", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_service_time(text), expected, "{text:?}");
        let element = serde_json::json!([{
            "messageType": "JobAvailable", "runnerRequestId": 3, "queueTime": text,
        }]);
        let jobs = JobMessage::decode_body(&element.to_string()).unwrap();
        assert!(
            matches!(&jobs[..], [JobMessage::Available(m)] if m.base.queue_time == expected),
            "{text:?}: {jobs:?}"
        );
    }
    // Not a string at all.
    for odd in [
        serde_json::json!(17),
        serde_json::json!({"t": 1}),
        serde_json::json!(true),
    ] {
        let element = serde_json::json!([{
            "messageType": "JobAssigned", "runnerRequestId": 3, "finishTime": odd,
        }]);
        let jobs = JobMessage::decode_body(&element.to_string()).unwrap();
        assert!(
            matches!(&jobs[..], [JobMessage::Assigned(m)] if m.base.finish_time.is_none()),
            "{odd}: {jobs:?}"
        );
    }
}

/// Every field of every job message type as the real service may send it:
/// `null`. Required ones aside, each reads as absent and the element
/// decodes; on main a `null` in a `String` field failed the whole body.
#[test]
fn null_in_every_optional_field_reads_as_absent() {
    // `statistics` belongs to the envelope: an element may carry it too.
    let optional = JOB_MESSAGE_FIELDS[JOB_MESSAGE_REQUIRED..]
        .iter()
        .chain(&["statistics"]);
    for message_type in ["JobAvailable", "JobAssigned", "JobStarted", "JobCompleted"] {
        let mut element = serde_json::Map::new();
        element.insert("messageType".into(), message_type.into());
        element.insert("runnerRequestId".into(), 11.into());
        for field in optional.clone() {
            element.insert((*field).into(), Value::Null);
        }
        let body = Value::Array(vec![
            Value::Object(element),
            serde_json::json!({"messageType": "JobAvailable", "runnerRequestId": 12,
                "requestLabels": [null, "linux"]}),
        ])
        .to_string();
        let jobs = JobMessage::decode_body(&body).unwrap();
        assert_eq!(jobs.len(), 2, "{message_type}");
        let base = jobs[0]
            .base()
            .unwrap_or_else(|| panic!("{message_type}: {:?}", jobs[0]));
        assert_eq!(
            (base.message_type.as_str(), base.runner_request_id),
            (message_type, 11)
        );
        assert_eq!(base.job_id, "");
        assert_eq!(base.queue_time, None);
        assert!(
            matches!(&jobs[1], JobMessage::Available(m) if m.base.request_labels == ["linux"]),
            "{:?}",
            jobs[1]
        );
    }
}

#[test]
fn one_bad_element_among_fifty_costs_only_itself() {
    let mut elements: Vec<Value> = (0..50)
        .map(|id| serde_json::json!({"messageType": "JobAvailable", "runnerRequestId": id}))
        .collect();
    // Its id is a string, its type is not a string, it is not an object.
    elements[7] = serde_json::json!({"messageType": "JobAvailable", "runnerRequestId": "7"});
    elements[20] = serde_json::json!({"messageType": 5, "runnerRequestId": 20});
    elements[33] = serde_json::json!("JobAvailable");
    // A wrong type in a field nothing acts on reads as absent.
    elements[40] = serde_json::json!({"messageType": "JobStarted", "runnerRequestId": 40,
        "runnerName": "r-40", "jobDisplayName": 5, "requestLabels": "linux", "workflowRunId": "x"});
    let jobs = JobMessage::decode_body(&Value::Array(elements).to_string()).unwrap();
    assert_eq!(jobs.len(), 50);
    let bad: Vec<(usize, Option<&str>, Option<i64>)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, job)| match job {
            JobMessage::Undecodable(u) => Some((i, u.message_type.as_deref(), u.runner_request_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        bad,
        [
            (7, Some("JobAvailable"), None),
            (20, None, Some(20)),
            (33, None, None)
        ]
    );
    assert!(
        matches!(&jobs[40], JobMessage::Started(m) if m.runner_name == "r-40" && m.base.job_display_name.is_empty() && m.base.request_labels.is_empty()),
        "{:?}",
        jobs[40]
    );
}

#[test]
fn acquire_jobs() {
    assert_eq!(
        serde_json::to_string(&vec![1001i64, 1002]).unwrap(),
        "[1001,1002]"
    );
    let acquired: List<i64> = golden(r#"{"count": 1, "value": [1001]}"#);
    assert_eq!(acquired.value, vec![1001]);
}

#[test]
fn error_body() {
    let error: ActionsErrorBody = golden(
        r#"{"typeName": "RunnerScaleSetSessionConflictException", "message": "A session already exists"}"#,
    );
    assert_eq!(
        error.type_name.as_deref(),
        Some("RunnerScaleSetSessionConflictException")
    );
    assert_eq!(error.message.as_deref(), Some("A session already exists"));
}

#[test]
fn rest_tokens_and_registration() {
    let token: ExpiringToken = golden(
        r#"{"token": "AABF3JGZDX3P5PMEXLND6TS6FCWO6", "expires_at": "2024-05-01T13:00:00Z"}"#,
    );
    assert_eq!(token.token.expose(), "AABF3JGZDX3P5PMEXLND6TS6FCWO6");
    assert_eq!(token.expires_at, at(13, 0, 0));
    assert!(!format!("{token:?}").contains("AABF3"));
    // GitHub Enterprise Server writes offsets rather than Z.
    let token: ExpiringToken =
        serde_json::from_str(r#"{"token":"t","expires_at":"2024-05-01T06:00:00-07:00"}"#).unwrap();
    assert_eq!(token.expires_at, at(13, 0, 0));

    let request = RunnerRegistrationRequest {
        url: "https://github.com/my-org".into(),
        runner_event: "register".into(),
    };
    assert_eq!(
        serde_json::to_string(&request).unwrap(),
        r#"{"url":"https://github.com/my-org","runner_event":"register"}"#
    );
    let connection: ActionsServiceConnection = golden(
        r#"{"url": "https://pipelines.example/abc/", "token": "eyJhbGciOiJSUzI1NiJ9.e30.sig"}"#,
    );
    assert_eq!(
        connection.url.as_deref(),
        Some("https://pipelines.example/abc/")
    );
    assert_eq!(
        connection.token.unwrap().expose(),
        "eyJhbGciOiJSUzI1NiJ9.e30.sig"
    );
}

#[test]
fn bom_is_stripped() {
    assert_eq!(strip_bom(b"\xEF\xBB\xBF{\"a\":1}"), b"{\"a\":1}");
    assert_eq!(strip_bom(b"{\"a\":1}"), b"{\"a\":1}");
    assert_eq!(strip_bom(b""), b"");
    assert_eq!(strip_bom(b"\xEF\xBB"), b"\xEF\xBB");
}
