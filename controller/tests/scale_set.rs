//! `ensure_scale_set` and `delete_scale_set_if_ours` against the fake GitHub
//! through the real Actions client. No Kubernetes: the `RunnerScaleSet`
//! objects are built in memory with the metadata a stored object would have.
//! Except the last test: `StatusCheckpoint` against the sandbox API server.

mod common;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use runway_controller::crd::{RunnerScaleSet, RunnerScaleSetSpec, RunnerScaleSetStatus};
use runway_controller::github::{ActionsClient, DEFAULT_RUNNER_GROUP_ID};
use runway_controller::scale_set::{
    Deleted, EnsureError, Ensured, Outcome, Owner, delete_scale_set_if_ours, ensure_scale_set,
};
use runway_sandbox::github::{Endpoint, FakeGitHub};

fn object(
    fake: &FakeGitHub,
    namespace: &str,
    name: &str,
    uid: &str,
    scale_set_name: Option<&str>,
    labels: &[&str],
) -> RunnerScaleSet {
    let spec = RunnerScaleSetSpec {
        github_config_url: fake.config_url("my-org"),
        github_config_secret: "github".into(),
        runner_group: None,
        runner_scale_set_name: scale_set_name.map(str::to_owned),
        runner_scale_set_labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        min_runners: None,
        max_runners: None,
        template: PodTemplateSpec::default(),
        container_mode: None,
        proxy: None,
        github_server_tls: None,
        service_account_name: None,
        kube_actions: None,
    };
    let mut object = RunnerScaleSet::new(name, spec);
    object.metadata.namespace = Some(namespace.into());
    object.metadata.uid = Some(uid.into());
    object
}

/// What the controller would write to `status.scaleSetId` after an ensure.
fn record(object: &mut RunnerScaleSet, ensured: &Ensured) {
    object.status = Some(RunnerScaleSetStatus {
        scale_set_id: Some(ensured.scale_set.id),
        ..RunnerScaleSetStatus::default()
    });
}

fn owner(object: &RunnerScaleSet) -> Owner {
    Owner::of(object).expect("namespace, name and uid are set")
}

async fn ensure(client: &ActionsClient, object: &RunnerScaleSet) -> Result<Ensured, EnsureError> {
    ensure_scale_set(client, object, &owner(object)).await
}

fn label_names(ensured: &Ensured) -> Vec<String> {
    let mut names: Vec<String> = ensured
        .scale_set
        .labels
        .iter()
        .map(|l| l.name.clone())
        .collect();
    names.sort();
    names
}

fn writes(fake: &FakeGitHub) -> [u64; 3] {
    [
        fake.request_count(Endpoint::CreateScaleSet),
        fake.request_count(Endpoint::UpdateScaleSet),
        fake.request_count(Endpoint::DeleteScaleSet),
    ]
}

#[tokio::test]
async fn creates_the_scale_set_with_spec_labels_and_the_owner_label() {
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let rss = object(&fake, "team-a", "arm", "uid-a-0001", None, &["linux"]);

    let ensured = ensure(&client, &rss).await.expect("ensure");

    assert_eq!(ensured.outcome, Outcome::Created);
    assert_eq!(ensured.scale_set.name, "arm");
    assert_eq!(ensured.scale_set.runner_group_id, DEFAULT_RUNNER_GROUP_ID);
    assert!(ensured.scale_set.runner_setting.disable_update);
    assert_eq!(
        label_names(&ensured),
        ["arm", "linux", "runway-owner:team-a.arm.uid-a-00"]
    );
    assert_eq!(writes(&fake), [1, 0, 0]);
}

#[tokio::test]
async fn second_ensure_adopts_without_writing() {
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let mut rss = object(&fake, "team-a", "arm", "uid-a-0001", None, &["linux"]);
    let first = ensure(&client, &rss).await.expect("first ensure");
    record(&mut rss, &first);

    let second = ensure(&client, &rss).await.expect("second ensure");

    assert_eq!(second.outcome, Outcome::Adopted);
    assert_eq!(second.scale_set.id, first.scale_set.id);
    assert_eq!(writes(&fake), [1, 0, 0]);
    // A controller that lost the status (restart before writing it) adopts too.
    rss.status = None;
    let third = ensure(&client, &rss).await.expect("third ensure");
    assert_eq!(third.outcome, Outcome::Adopted);
    assert_eq!(writes(&fake), [1, 0, 0]);
}

#[tokio::test]
async fn a_label_change_is_one_patch() {
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let mut rss = object(&fake, "team-a", "arm", "uid-a-0001", None, &["linux"]);
    let first = ensure(&client, &rss).await.expect("first ensure");
    record(&mut rss, &first);

    rss.spec.runner_scale_set_labels = vec!["linux".into(), "arm64".into()];
    let patched = ensure(&client, &rss)
        .await
        .expect("ensure after the change");

    assert_eq!(patched.outcome, Outcome::Patched);
    assert_eq!(patched.scale_set.id, first.scale_set.id);
    assert_eq!(
        label_names(&patched),
        ["arm", "arm64", "linux", "runway-owner:team-a.arm.uid-a-00"]
    );
    assert_eq!(writes(&fake), [1, 1, 0]);
    let again = ensure(&client, &rss).await.expect("ensure once more");
    assert_eq!(again.outcome, Outcome::Adopted);
    assert_eq!(writes(&fake), [1, 1, 0]);
}

#[tokio::test]
async fn a_rename_patches_the_scale_set_found_by_its_status_id() {
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let mut rss = object(&fake, "team-a", "arm", "uid-a-0001", None, &[]);
    let first = ensure(&client, &rss).await.expect("first ensure");
    record(&mut rss, &first);

    rss.spec.runner_scale_set_name = Some("arm-v2".into());
    let renamed = ensure(&client, &rss)
        .await
        .expect("ensure after the rename");

    assert_eq!(renamed.outcome, Outcome::Patched);
    assert_eq!(renamed.scale_set.id, first.scale_set.id);
    assert_eq!(renamed.scale_set.name, "arm-v2");
    assert_eq!(
        label_names(&renamed),
        ["arm-v2", "runway-owner:team-a.arm.uid-a-00"]
    );
    assert_eq!(writes(&fake), [1, 1, 0]);
}

#[tokio::test]
async fn a_scale_set_of_another_install_is_a_conflict_and_left_alone() {
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let theirs = client
        .create_scale_set("arm", DEFAULT_RUNNER_GROUP_ID, &["self-hosted".into()])
        .await
        .expect("the other install creates its scale set");
    let rss = object(&fake, "team-a", "arm", "uid-a-0001", None, &["linux"]);

    let error = ensure(&client, &rss).await.expect_err("a conflict");

    match &error {
        EnsureError::Conflict { name, id, owner } => {
            assert_eq!(name, "arm");
            assert_eq!(*id, theirs.id);
            assert_eq!(owner, &None);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let text = error.to_string();
    assert!(text.contains("runnerScaleSetName"), "{text}");
    assert!(text.contains("another installation"), "{text}");
    assert_eq!(writes(&fake), [1, 0, 0], "only the other install's create");
    let unchanged = client.scale_set(theirs.id).await.expect("still there");
    assert_eq!(unchanged.labels, theirs.labels);

    // The finalizer path does not delete it either.
    let deleted = delete_scale_set_if_ours(&client, theirs.id, &owner(&rss))
        .await
        .expect("delete if ours");
    assert_eq!(deleted, Deleted::NotOurs { owner: None });
    assert_eq!(writes(&fake), [1, 0, 0]);
}

#[tokio::test]
async fn the_same_name_in_two_namespaces_conflicts_for_the_second() {
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let a = object(&fake, "team-a", "runners", "uid-a-0001", Some("arm"), &[]);
    let b = object(&fake, "team-b", "runners", "uid-b-0002", Some("arm"), &[]);

    let first = ensure(&client, &a).await.expect("the first one creates");
    let error = ensure(&client, &b).await.expect_err("the second conflicts");

    match error {
        EnsureError::Conflict { name, id, owner } => {
            assert_eq!(name, "arm");
            assert_eq!(id, first.scale_set.id);
            assert_eq!(
                owner.as_deref(),
                Some("runway-owner:team-a.runners.uid-a-00")
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(writes(&fake), [1, 0, 0]);
    // The first still adopts its own.
    let again = ensure(&client, &a).await.expect("the first again");
    assert_eq!(again.outcome, Outcome::Adopted);
}

#[tokio::test]
async fn a_scale_set_deleted_on_github_is_created_again() {
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let mut rss = object(&fake, "team-a", "arm", "uid-a-0001", None, &["linux"]);
    let first = ensure(&client, &rss).await.expect("first ensure");
    record(&mut rss, &first);

    fake.delete_scale_set(first.scale_set.id);
    let again = ensure(&client, &rss)
        .await
        .expect("ensure after the delete");

    assert_eq!(again.outcome, Outcome::Created);
    assert_ne!(again.scale_set.id, first.scale_set.id);
    assert_eq!(label_names(&again), label_names(&first));
    assert_eq!(writes(&fake), [2, 0, 0]);
}

#[tokio::test]
async fn delete_if_ours_deletes_ours_and_tolerates_gone() {
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let rss = object(&fake, "team-a", "arm", "uid-a-0001", None, &[]);
    let ensured = ensure(&client, &rss).await.expect("ensure");
    let id = ensured.scale_set.id;

    let first = delete_scale_set_if_ours(&client, id, &owner(&rss)).await;
    let second = delete_scale_set_if_ours(&client, id, &owner(&rss)).await;

    assert_eq!(first.expect("first delete"), Deleted::Deleted);
    assert_eq!(second.expect("second delete"), Deleted::AlreadyGone);
    assert_eq!(writes(&fake), [1, 0, 1]);
}

/// The one test here that needs Kubernetes: the sandbox's API server.
#[tokio::test]
async fn status_checkpoint_saves_session_and_last_message_id() {
    use runway_controller::listener::Checkpoint;
    use runway_controller::scale_set::StatusCheckpoint;

    let (_ns, api) = stored_with_scale_set_id("arm").await;
    let checkpoint = StatusCheckpoint::new(api.clone(), "arm");

    checkpoint
        .save(Some("session-1"), 5)
        .await
        .expect("first save");
    let first = api.get_status("arm").await.expect("read").status;
    checkpoint.save(None, 9).await.expect("second save");
    let second = api.get_status("arm").await.expect("read").status;

    let first = first.expect("a status");
    assert_eq!(first.session_id.as_deref(), Some("session-1"));
    assert_eq!(first.last_message_id, Some(5));
    let second = second.expect("a status");
    assert_eq!(second.session_id, None);
    assert_eq!(second.last_message_id, Some(9));
    assert_eq!(second.scale_set_id, Some(42));
}

/// A stale leader's late checkpoint (its session, a later message id) must
/// not replace the session id a newer leader recorded since; the newer
/// leader's own checkpoints go on.
#[tokio::test]
async fn a_stale_checkpoint_never_replaces_a_newer_leaders_session() {
    use runway_controller::listener::Checkpoint;
    use runway_controller::scale_set::StatusCheckpoint;

    let (_ns, api) = stored_with_scale_set_id("handover").await;

    // The old leader records its session.
    let old = StatusCheckpoint::new(api.clone(), "handover");
    old.save(Some("session-old"), 5).await.expect("old leader");
    // The new leader resumed from it, replaced it, recorded its own.
    let new = StatusCheckpoint::new(api.clone(), "handover").recorded(Some("session-old".into()));
    new.save(Some("session-new"), 5).await.expect("new leader");
    // The old leader wakes up: a late message id, then its close.
    assert!(old.save(Some("session-old"), 8).await.is_err());
    assert!(old.save(None, 8).await.is_err());
    let after = api
        .get_status("handover")
        .await
        .expect("read")
        .status
        .expect("a status");
    assert_eq!(after.session_id.as_deref(), Some("session-new"));
    assert_eq!(after.last_message_id, Some(5));
    assert_eq!(after.scale_set_id, Some(42));
    // The new leader goes on, and closes its session.
    new.save(Some("session-new"), 9)
        .await
        .expect("new leader goes on");
    new.save(None, 9).await.expect("new leader closes");
    let closed = api
        .get_status("handover")
        .await
        .expect("read")
        .status
        .expect("a status");
    assert_eq!(closed.session_id, None);
    assert_eq!(closed.last_message_id, Some(9));
}

/// A stored RunnerScaleSet `name` whose status holds `scaleSetId: 42`,
/// another writer's field, which checkpoints must leave alone.
async fn stored_with_scale_set_id(
    name: &str,
) -> (runway_sandbox::TestNamespace, kube::Api<RunnerScaleSet>) {
    use kube::Api;
    use kube::api::{Patch, PatchParams, PostParams};
    use runway_controller::crd;

    let ns = runway_sandbox::test_namespace().await;
    runway_sandbox::apply_crd(&ns.client(), &crd::crd())
        .await
        .expect("install the RunnerScaleSet CRD");
    let fake = common::start_fake().await;
    let api: Api<RunnerScaleSet> = ns.api();
    let mut rss = object(&fake, ns.name(), name, "ignored", None, &[]);
    rss.metadata.uid = None; // the API server assigns it
    api.create(&PostParams::default(), &rss)
        .await
        .expect("create the RunnerScaleSet");
    let status = serde_json::json!({ "status": { "scaleSetId": 42 } });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("set status.scaleSetId");
    (ns, api)
}
