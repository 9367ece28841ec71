//! Scale sets per tenant and the one session each may have.

use reqwest::StatusCode;
use runway_sandbox::github::FakeOptions;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_sets_are_created_read_updated_and_deleted() {
    let github = start(FakeOptions::default()).await;
    let service = connect(&github).await;
    let (status, created) = service
        .post(
            "_apis/runtime/runnerscalesets",
            json!({"name": "arm-builders", "runnerGroupId": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let id = created["id"].as_i64().expect("id");
    assert_eq!(
        created["labels"],
        json!([{"type": "System", "name": "arm-builders"}])
    );
    assert_eq!(created["runnerGroupName"], "Default");
    assert!(
        created["RunnerSetting"].is_object(),
        "capital RunnerSetting: {created}"
    );
    assert!(created.get("runnerSetting").is_none());
    assert_eq!(created["statistics"]["totalAvailableJobs"], 0);
    for key in ["createdOn", "runnerJitConfigUrl"] {
        assert!(created[key].is_string(), "{key}: {created}");
    }

    let (status, found) = service
        .get("_apis/runtime/runnerscalesets?runnerGroupId=1&name=arm-builders")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (found["count"].as_i64(), found["value"][0]["id"].as_i64()),
        (Some(1), Some(id))
    );
    let (_, none) = service
        .get("_apis/runtime/runnerscalesets?runnerGroupId=1&name=missing")
        .await;
    assert_eq!(none, json!({"count": 0, "value": []}));
    let (status, duplicate) = service
        .post(
            "_apis/runtime/runnerscalesets",
            json!({"name": "arm-builders"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{duplicate}");

    let patch = json!({"labels": [{"type": "System", "name": "arm-builders"}, {"type": "System", "name": "arm64"}]});
    let (status, updated) = service
        .call(reqwest::Method::PATCH, &scale_set_path(id), Some(patch))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "arm-builders", "PATCH is partial");
    assert_eq!(updated["labels"][1]["name"], "arm64");
    assert_eq!(updated["RunnerSetting"], created["RunnerSetting"]);
    let (status, by_id) = service.get(&scale_set_path(id)).await;
    assert_eq!(
        (status, &by_id["labels"]),
        (StatusCode::OK, &updated["labels"])
    );

    // Another scope is another tenant: it sees none of this.
    let other = connect_to(&github, &client(), "orgs/other-org", "other-org").await;
    expect_exception(
        other.get(&scale_set_path(id)).await,
        StatusCode::NOT_FOUND,
        "RunnerScaleSetNotFoundException",
    );
    let foreign = Service {
        client: client(),
        url: other.url.clone(),
        token: service.token.clone(),
    };
    let (status, _) = foreign.get(&scale_set_path(id)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an admin token works only for its own tenant"
    );

    let (status, _) = service.delete(&scale_set_path(id)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expect_exception(
        service.get(&scale_set_path(id)).await,
        StatusCode::NOT_FOUND,
        "RunnerScaleSetNotFoundException",
    );

    let again = service.create_scale_set("x86").await;
    github.delete_scale_set(again);
    let sessions = format!("{}/sessions", scale_set_path(again));
    expect_exception(
        service.post(&sessions, json!({})).await,
        StatusCode::NOT_FOUND,
        "RunnerScaleSetNotFoundException",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_per_scale_set() {
    let (_github, service, id, session) = session_for(FakeOptions::default()).await;
    let sessions = format!("{}/sessions", scale_set_path(id));
    let (status, conflict) = service.post(&sessions, json!({"ownerName": "b"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        conflict["typeName"],
        "RunnerScaleSetSessionConflictException"
    );
    assert!(conflict["message"].is_string());

    let path = session_path(id, &session.id);
    let (status, refreshed) = service.patch(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refreshed["sessionId"].as_str(), Some(session.id.as_str()));
    assert_ne!(
        refreshed["messageQueueAccessToken"].as_str(),
        Some(session.queue_token.as_str()),
        "a new queue token"
    );
    assert!(refreshed["statistics"].is_object());

    let (status, _) = service.delete(&path).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expect_exception(
        service.patch(&path).await,
        StatusCode::BAD_REQUEST,
        "RunnerScaleSetSessionExpiredException",
    );
    let (status, _) = session.poll(0).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the deleted session's queue token is dead"
    );
    service.create_session(id).await;
}
