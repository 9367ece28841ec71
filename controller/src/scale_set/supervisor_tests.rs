//! Unit tests of the supervisor's pure parts: the status summary, the
//! status patch, the error messages.

use super::*;
use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn pod(name: &str, phase: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        status: phase.map(|p| PodStatus {
            phase: Some(p.into()),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

#[test]
fn summary_counts_each_runner_once_by_state() {
    let mut deleting = pod("leaving", Some("Running"));
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let pods = [
        pod("new", None),
        pod("idle", Some("Running")),
        pod("busy", Some("Running")),
        pod("done", Some("Running")),
        pod("dead", Some("Failed")),
        deleting,
    ];
    let demand = runner::Demand {
        desired: 4,
        busy: ["busy".to_string()].into(),
        completed: ["done".to_string()].into(),
    };
    assert_eq!(
        Summary::of(4, &pods, &demand),
        Summary {
            desired_runners: 4,
            current_runners: 3,
            pending_runners: 1,
            idle_runners: 1,
            busy_runners: 1,
            failed_runners: 1,
        }
    );
}

#[test]
fn a_new_scale_set_resets_the_resume_point_and_an_adopted_one_keeps_it() {
    let status = |new: bool| ScaleSetStatus {
        scale_set_id: 7,
        runner_group_id: 1,
        runner_group_name: "Default",
        observed_generation: Some(2),
        session_id: new.then_some(None),
        last_message_id: new.then_some(0),
        conditions: &[],
    };
    assert_eq!(
        serde_json::to_value(StatusPatch {
            status: status(true)
        })
        .unwrap(),
        serde_json::json!({ "status": {
            "scaleSetId": 7, "runnerGroupId": 1, "runnerGroupName": "Default",
            "observedGeneration": 2, "sessionId": null, "lastMessageId": 0,
            "conditions": [],
        }})
    );
    assert_eq!(
        serde_json::to_value(StatusPatch {
            status: status(false)
        })
        .unwrap(),
        serde_json::json!({ "status": {
            "scaleSetId": 7, "runnerGroupId": 1, "runnerGroupName": "Default",
            "observedGeneration": 2, "conditions": [],
        }})
    );
}

#[test]
fn errors_name_the_setting_to_change() {
    let missing = SupervisorError::SecretMissing {
        namespace: "team-a".into(),
        secret: "github".into(),
    };
    assert!(
        missing.to_string().contains("githubConfigSecret"),
        "{missing}"
    );
    assert_eq!(missing.metric_label(), "secret_missing");
    let invalid = SupervisorError::InvalidSpec {
        namespace: "team-a".into(),
        name: "arm".into(),
        errors: vec![SpecError::MinAboveMax { min: 3, max: 1 }],
    };
    assert!(invalid.to_string().contains("maxRunners"), "{invalid}");
}
