//! Unit tests of the supervisor's pure parts: the status patch, the error
//! messages. The status summary is tested in `summary.rs`.

use super::*;

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

#[test]
fn a_name_too_long_for_a_label_value_is_refused_naming_the_limit() {
    let owner = |len: usize| Owner::new("team-a", "a".repeat(len), "uid-1");
    assert!(check_name(&owner(1)).is_ok());
    assert!(check_name(&owner(63)).is_ok());
    let error = check_name(&owner(64)).unwrap_err();
    assert_eq!(error.metric_label(), "name_too_long");
    let message = error.to_string();
    for part in ["metadata.name", "64 characters", "63", SCALE_SET_LABEL] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
}
