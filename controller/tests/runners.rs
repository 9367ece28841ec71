//! The runner reconciler against the sandbox's real kube-apiserver (1.20.2,
//! with the real garbage collector and quota admission) and the fake GitHub,
//! through the real Actions client. The tests play the kubelet: they write
//! pod status through the status subresource.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Pod, ResourceQuota, ResourceQuotaSpec, Secret, ServiceAccount,
};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use runway_controller::crd::{RunnerScaleSet, RunnerScaleSetSpec};
use runway_controller::github::ActionsClient;
use runway_controller::runner::cleanup::retire_runners;
use runway_controller::runner::reconcile::{
    CONDITION_IRSA_MISSING, CONDITION_QUOTA_EXCEEDED, Context, Outcome, ReconcileError, Settings,
    reconcile_runners,
};
use runway_controller::runner::{
    BUSY_ANNOTATION, DO_NOT_DISRUPT_ANNOTATION, Demand, REGISTRATION_FINALIZER, SCALE_SET_LABEL,
    jit_secret_name,
};
use runway_sandbox::github::{Endpoint, FakeGitHub, Fault, NewJob};
use runway_sandbox::kubelet::{self, Termination, container};
use runway_sandbox::{TestNamespace, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(30);

/// A namespace, a fake GitHub with the scale set on it, the stored
/// `RunnerScaleSet` with `status.scaleSetId`, and a reconciler context.
struct Setup {
    ns: TestNamespace,
    fake: FakeGitHub,
    client: ActionsClient,
    rss: RunnerScaleSet,
    ctx: Context<ActionsClient>,
}

fn settings() -> Settings {
    Settings {
        busy_requeue: Duration::from_secs(1),
        error_requeue: Duration::from_secs(1),
        quota_backoff_base: Duration::from_secs(60),
        ..Settings::default()
    }
}

async fn setup(name: &str, min: i32, max: Option<i32>) -> Setup {
    setup_with(name, |fake| {
        common::scale_set_spec(fake, "github", min, max)
    })
    .await
}

async fn setup_with(
    name: &str,
    make_spec: impl FnOnce(&FakeGitHub) -> RunnerScaleSetSpec,
) -> Setup {
    let ns = test_namespace().await;
    common::install_crd(&ns.client()).await;
    let fake = common::start_fake().await;
    let client = common::pat_client(&fake, "my-org");
    let set = common::scale_set(&client, name).await;

    let api: Api<RunnerScaleSet> = ns.api();
    let object = RunnerScaleSet::new(name, make_spec(&fake));
    api.create(&PostParams::default(), &object)
        .await
        .expect("create the RunnerScaleSet");
    let status = serde_json::json!({ "status": { "scaleSetId": set.id } });
    let rss = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("set status.scaleSetId");
    let ctx = Context::new(ns.client(), client.clone(), settings());
    Setup {
        ns,
        fake,
        client,
        rss,
        ctx,
    }
}

impl Setup {
    async fn reconcile(&self, demand: &Demand) -> Outcome {
        let outcome = reconcile_runners(&self.ctx, &self.rss, demand)
            .await
            .expect("reconcile");
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        outcome
    }

    fn pods(&self) -> Api<Pod> {
        self.ns.api()
    }

    async fn pod_names(&self) -> BTreeSet<String> {
        let selector = format!(
            "{SCALE_SET_LABEL}={}",
            self.rss.metadata.name.as_deref().unwrap()
        );
        self.pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    /// Names of the runners registered on the fake.
    fn registered(&self) -> BTreeSet<String> {
        self.fake
            .snapshot()
            .runners
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    /// The kubelet's report: the runner container is running.
    async fn running(&self, name: &str) {
        kubelet::set_running(&self.pods(), name, "runner")
            .await
            .expect("report the pod running");
    }

    async fn oom_killed(&self, name: &str) {
        kubelet::set_terminated(&self.pods(), name, "runner", Termination::oom_killed())
            .await
            .expect("report the pod OOM-killed");
    }

    async fn wait_pod_gone(&self, name: &str) {
        wait::gone(&self.pods(), name, WAIT).await.unwrap();
    }

    /// The real garbage collector removes the Secret with its pod.
    async fn wait_secret_gone(&self, runner: &str) {
        let secrets: Api<Secret> = self.ns.api();
        wait::gone(&secrets, &jit_secret_name(runner), WAIT)
            .await
            .unwrap();
    }

    /// A job queued, acquired and started on `runner` (the fake's runner is
    /// busy from then on). Returns its runner request id.
    async fn start_job_on(&self, runner: &str) -> i64 {
        let scale_set_id = self.scale_set_id();
        let job = self.fake.queue_job(scale_set_id, NewJob::default());
        let mut session = self
            .client
            .create_session(scale_set_id, "runway-test")
            .await
            .expect("session");
        let acquired = self
            .client
            .acquire_jobs(scale_set_id, &mut session, &[job.runner_request_id])
            .await
            .expect("acquire");
        assert_eq!(acquired, [job.runner_request_id]);
        self.fake
            .start_job(job.runner_request_id, runner)
            .expect("start the job");
        job.runner_request_id
    }

    fn scale_set_id(&self) -> i64 {
        self.rss.status.as_ref().unwrap().scale_set_id.unwrap()
    }
}

/// A ServiceAccount, once its token exists (the 1.20 ServiceAccount
/// admission plugin refuses pods until then).
async fn create_service_account(ns: &TestNamespace, name: &str, annotations: &[(&str, &str)]) {
    let accounts: Api<ServiceAccount> = ns.api();
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    wait::until(&format!("ServiceAccount {name}'s token"), WAIT, || async {
        let sa = accounts.get_opt(name).await.ok().flatten()?;
        sa.secrets.filter(|s| !s.is_empty()).map(|_| ())
    })
    .await
    .unwrap();
}

fn demand(desired: u32, busy: &[&str], completed: &[&str]) -> Demand {
    Demand {
        desired,
        busy: busy.iter().map(|s| s.to_string()).collect(),
        completed: completed.iter().map(|s| s.to_string()).collect(),
    }
}

fn names(list: &[String]) -> BTreeSet<String> {
    list.iter().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_creates_pods_each_with_its_own_jit_secret_and_registration() {
    let s = setup("up", 0, Some(10)).await;
    let out = s.reconcile(&Demand::desired(5)).await;

    assert_eq!(out.created.len(), 5, "{out:?}");
    // Two Kubernetes writes and one GitHub call per new runner.
    assert_eq!(out.kube.pod_creates, 5);
    assert_eq!(out.kube.secret_creates, 5);
    assert_eq!(out.kube.total(), 10, "{:?}", out.kube);
    assert_eq!(out.github.jit_configs, 5);
    assert_eq!(out.github.total(), 5, "{:?}", out.github);
    assert_eq!(s.fake.request_count(Endpoint::GenerateJitConfig), 5);

    let created = names(&out.created);
    assert_eq!(s.pod_names().await, created);
    assert_eq!(s.registered(), created);
    let secrets: Api<Secret> = s.ns.api();
    for name in &created {
        assert!(name.starts_with("up-"), "{name}");
        let pod = s.pods().get(name).await.unwrap();
        assert_eq!(
            pod.metadata.finalizers.as_deref(),
            Some(&[REGISTRATION_FINALIZER.to_string()][..])
        );
        let secret = secrets.get(&jit_secret_name(name)).await.unwrap();
        let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Pod", name.as_str())
        );
        assert_eq!(Some(&owner.uid), pod.metadata.uid.as_ref());
        assert!(secret.data.unwrap()["jitConfig"].0.len() > 10);
    }

    // Pending runners count: the same demand again writes nothing.
    let again = s.reconcile(&Demand::desired(5)).await;
    assert_eq!(again.kube.total(), 0, "{again:?}");
    assert_eq!(again.github.total(), 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_removes_only_idle_runners_and_a_deleted_pod_releases_its_registration() {
    let s = setup("down", 1, Some(10)).await;
    let out = s.reconcile(&Demand::desired(4)).await;
    assert_eq!(out.created.len(), 4);
    for name in &out.created {
        s.running(name).await;
    }
    let busy = out.created[0].clone();
    s.start_job_on(&busy).await;

    // One job running: desired = minRunners + 1 = 2, so two idle runners go.
    let down = s.reconcile(&demand(2, &[&busy], &[])).await;
    assert_eq!(down.marked_busy, [busy.as_str()]);
    assert_eq!(down.deleted.len(), 2, "{down:?}");
    assert!(!down.deleted.contains(&busy));
    assert_eq!(names(&down.released), names(&down.deleted));
    // Per removed runner: one delete, one finalizer removal; on GitHub a
    // lookup by name (the pod is made before its registration, so it does
    // not carry the runner id) and the removal.
    assert_eq!(down.kube.pod_deletes, 2);
    assert_eq!(down.kube.finalizer_removals, 2);
    assert_eq!(down.kube.busy_patches, 1);
    assert_eq!(down.kube.total(), 5, "{:?}", down.kube);
    assert_eq!(down.github.runner_lookups, 2);
    assert_eq!(down.github.runner_removals, 2);
    assert_eq!(down.github.total(), 4);
    for name in &down.deleted {
        s.wait_pod_gone(name).await;
        s.wait_secret_gone(name).await;
        assert!(!s.registered().contains(name));
    }
    let pod = s.pods().get(&busy).await.unwrap();
    let annotations = pod.metadata.annotations.unwrap();
    assert_eq!(annotations[BUSY_ANNOTATION], "true");
    assert_eq!(annotations[DO_NOT_DISRUPT_ANNOTATION], "true");

    // Nothing left to do: the same demand again writes nothing.
    let steady = s.reconcile(&demand(2, &[&busy], &[])).await;
    assert_eq!(steady.kube.total() + steady.github.total(), 0, "{steady:?}");

    // Someone else deletes the idle runner: the finalizer holds the pod
    // until the reconciler has removed its registration.
    let idle: Vec<String> = s
        .pod_names()
        .await
        .into_iter()
        .filter(|n| *n != busy)
        .collect();
    assert_eq!(idle.len(), 1, "{idle:?}");
    let idle = idle[0].clone();
    s.pods()
        .delete(&idle, &DeleteParams::default())
        .await
        .unwrap();
    let deleting = s.pods().get(&idle).await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert!(s.registered().contains(&idle));

    let after = s.reconcile(&demand(2, &[&busy], &[])).await;
    assert_eq!(after.released, [idle.as_str()]);
    assert_eq!(after.kube.finalizer_removals, 1);
    assert_eq!(after.kube.pod_deletes, 0);
    assert_eq!(after.github.runner_removals, 1);
    // It is replaced: one job running, one idle runner wanted.
    assert_eq!(after.created.len(), 1);
    s.wait_pod_gone(&idle).await;
    s.wait_secret_gone(&idle).await;
    assert!(!s.registered().contains(&idle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_killed_idle_runner_is_replaced_by_a_new_runner() {
    let s = setup("oom", 1, Some(5)).await;
    let first = s.reconcile(&Demand::desired(1)).await;
    let old = first.created[0].clone();
    s.running(&old).await;
    s.oom_killed(&old).await;

    let out = s.reconcile(&Demand::desired(1)).await;
    assert_eq!(out.deleted, [old.as_str()]);
    assert_eq!(out.released, [old.as_str()]);
    assert_eq!(out.created.len(), 1);
    let new = out.created[0].clone();
    assert_ne!(new, old);
    // Replacement: delete + finalizer + pod + Secret; remove + new JIT config.
    assert_eq!(out.kube.total(), 4, "{:?}", out.kube);
    assert_eq!(out.github.runner_removals, 1);
    assert_eq!(out.github.jit_configs, 1);

    s.wait_pod_gone(&old).await;
    s.wait_secret_gone(&old).await;
    assert_eq!(s.registered(), BTreeSet::from([new.clone()]));
    let secrets: Api<Secret> = s.ns.api();
    assert!(
        secrets
            .get_opt(&jit_secret_name(&new))
            .await
            .unwrap()
            .is_some()
    );
    // An OOM kill after start is not a startup failure: no backoff.
    assert_eq!(s.ctx.remembered().failures.consecutive, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_drops_its_finalizer_and_its_completed_pod_is_one_delete() {
    let s = setup("done", 0, Some(5)).await;
    let first = s.reconcile(&Demand::desired(1)).await;
    let runner = first.created[0].clone();
    s.running(&runner).await;
    let job = s.start_job_on(&runner).await;
    // The busy mark releases the finalizer in the same write: from now on
    // the service removes the registration when the job ends.
    let busy = s.reconcile(&demand(1, &[&runner], &[])).await;
    assert_eq!(busy.kube.busy_patches, 1);
    assert_eq!(busy.kube.total(), 1);
    let pod = s.pods().get(&runner).await.unwrap();
    assert!(
        pod.metadata
            .finalizers
            .iter()
            .flatten()
            .all(|f| f != REGISTRATION_FINALIZER),
        "{:?}",
        pod.metadata.finalizers
    );

    // The service removes an ephemeral runner when its job completes.
    s.fake.complete_job(job, "succeeded").unwrap();
    assert!(!s.registered().contains(&runner));

    let out = s.reconcile(&demand(0, &[], &[&runner])).await;
    assert_eq!(out.deleted, [runner.as_str()]);
    assert!(out.released.is_empty());
    assert!(out.created.is_empty());
    assert_eq!(out.kube.pod_deletes, 1);
    assert_eq!(out.kube.total(), 1);
    assert_eq!(out.github.runner_removals, 0);
    s.wait_pod_gone(&runner).await;
    s.wait_secret_gone(&runner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_still_running_keeps_the_finalizer_until_the_job_ends() {
    let s = setup("busy", 0, Some(5)).await;
    let first = s.reconcile(&Demand::desired(1)).await;
    let runner = first.created[0].clone();
    s.running(&runner).await;
    let job = s.start_job_on(&runner).await;

    // A drain deletes the pod while its job runs.
    s.pods()
        .delete(&runner, &DeleteParams::default())
        .await
        .unwrap();
    let out = s.reconcile(&demand(1, &[&runner], &[])).await;
    assert_eq!(out.waiting_for_job, [runner.as_str()]);
    assert!(out.released.is_empty());
    assert_eq!(out.kube.finalizer_removals, 0);
    assert_eq!(out.requeue_after, Some(Duration::from_secs(1)));
    let pod = s.pods().get(&runner).await.unwrap();
    assert_eq!(
        pod.metadata.finalizers.as_deref(),
        Some(&[REGISTRATION_FINALIZER.to_string()][..])
    );
    assert!(s.registered().contains(&runner));

    s.fake.complete_job(job, "succeeded").unwrap();
    let out = s.reconcile(&demand(0, &[], &[&runner])).await;
    assert_eq!(out.released, [runner.as_str()]);
    s.wait_pod_gone(&runner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_service_account_creates_nothing_and_names_the_setting() {
    let s = setup_with("nosa", |fake| RunnerScaleSetSpec {
        service_account_name: Some("runners".into()),
        ..common::scale_set_spec(fake, "github", 1, Some(5))
    })
    .await;
    let error = reconcile_runners(&s.ctx, &s.rss, &Demand::desired(2))
        .await
        .expect_err("the ServiceAccount is missing");
    assert!(
        matches!(error, ReconcileError::ServiceAccountMissing { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("\"runners\""), "{text}");
    assert!(text.contains("serviceAccountName"), "{text}");
    assert!(s.pod_names().await.is_empty());
    assert_eq!(s.fake.request_count(Endpoint::GenerateJitConfig), 0);

    // Once it exists, runners come.
    create_service_account(&s.ns, "runners", &[]).await;
    let out = s.reconcile(&Demand::desired(2)).await;
    assert_eq!(out.created.len(), 2);
    let pod = s.pods().get(&out.created[0]).await.unwrap();
    assert_eq!(
        pod.spec.unwrap().service_account_name.as_deref(),
        Some("runners")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runners_caps_and_zero_means_zero() {
    let s = setup("cap", 0, Some(3)).await;
    let out = s.reconcile(&Demand::desired(10)).await;
    assert_eq!(out.created.len(), 3);
    assert_eq!(s.pod_names().await.len(), 3);
    assert_eq!(s.registered().len(), 3);

    let zero = setup("zero", 0, Some(3)).await;
    let out = zero.reconcile(&Demand::desired(0)).await;
    assert!(out.created.is_empty());
    assert_eq!(out.kube.total() + out.github.total(), 0);
    assert!(zero.pod_names().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_admitted_without_irsa_is_replaced_once_with_an_event() {
    let s = setup_with("irsa", |fake| RunnerScaleSetSpec {
        service_account_name: Some("aws-runners".into()),
        ..common::scale_set_spec(fake, "github", 1, Some(5))
    })
    .await;
    create_service_account(
        &s.ns,
        "aws-runners",
        &[(
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::111122223333:role/runner",
        )],
    )
    .await;

    // The sandbox has no pod identity webhook: every pod misses IRSA. The
    // first is replaced; the replacement is kept, with a condition.
    let out = s.reconcile(&Demand::desired(1)).await;
    assert_eq!(out.replaced_without_irsa.len(), 1, "{out:?}");
    assert_eq!(out.created.len(), 1);
    assert_ne!(out.created[0], out.replaced_without_irsa[0]);
    assert!(
        out.conditions
            .iter()
            .any(|c| c.type_ == CONDITION_IRSA_MISSING),
        "{:?}",
        out.conditions
    );
    let replaced = out.replaced_without_irsa[0].clone();
    s.wait_pod_gone(&replaced).await;
    assert_eq!(s.pod_names().await, names(&out.created));
    assert_eq!(s.registered(), names(&out.created));
    assert_eq!(out.kube.events, 1);

    let events: Api<KubeEvent> = s.ns.api();
    let listed = events.list(&ListParams::default()).await.unwrap();
    let event = listed
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("RunnerPodWithoutIrsa"))
        .expect("a RunnerPodWithoutIrsa event");
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .contains(&replaced)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_refusal_backs_off_and_surfaces_a_condition() {
    let s = setup("quota", 0, Some(10)).await;
    let quotas: Api<ResourceQuota> = s.ns.api();
    quotas
        .create(
            &PostParams::default(),
            &ResourceQuota {
                metadata: ObjectMeta {
                    name: Some("pods".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(ResourceQuotaSpec {
                    hard: Some([("pods".to_string(), Quantity("2".into()))].into()),
                    ..ResourceQuotaSpec::default()
                }),
                ..ResourceQuota::default()
            },
        )
        .await
        .unwrap();
    // Quota admission refuses everything until the quota controller has
    // computed the usage.
    wait::until("the quota's usage", WAIT, || async {
        let quota = quotas.get("pods").await.ok()?;
        quota.status?.used.map(|_| ())
    })
    .await
    .unwrap();

    let out = s.reconcile(&Demand::desired(3)).await;
    assert_eq!(out.created.len(), 2, "{out:?}");
    assert_eq!(out.kube.pod_creates, 3);
    let condition = out
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_QUOTA_EXCEEDED)
        .expect("a QuotaExceeded condition");
    assert!(
        condition.message.contains("exceeded quota"),
        "{condition:?}"
    );
    assert!(out.requeue_after.is_some());
    // The refused runner was never registered: its pod comes first.
    assert_eq!(s.registered(), names(&out.created));
    assert_eq!(out.github.jit_configs, 2);
    assert_eq!(out.github.runner_removals, 0);

    // In backoff: nothing is tried, the condition stays.
    let again = s.reconcile(&Demand::desired(3)).await;
    assert_eq!(again.kube.total() + again.github.total(), 0, "{again:?}");
    assert!(
        again
            .conditions
            .iter()
            .any(|c| c.type_ == CONDITION_QUOTA_EXCEEDED)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_runner_name_is_looked_up_and_a_new_name_tried() {
    let s = setup("taken", 0, Some(5)).await;
    s.fake.inject_fault(
        Endpoint::GenerateJitConfig,
        Fault {
            status: 409,
            type_name: Some("AgentExistsException".into()),
            times: 1,
            ..Fault::default()
        },
    );
    let out = s.reconcile(&Demand::desired(1)).await;
    assert_eq!(out.created.len(), 1);
    assert_eq!(out.github.jit_configs, 2);
    assert_eq!(out.github.runner_lookups, 1);
    // The name is not taken by a runner of this scale set: nothing removed.
    assert_eq!(out.github.runner_removals, 0);
    assert_eq!(s.registered(), names(&out.created));
    assert_eq!(out.kube.total(), 2);
}

/// A pod with the scale set's labels that the scale set does not own:
/// `owner` is a ConfigMap made to own it (the real garbage collector
/// deletes a pod whose owner does not exist), `None` for no owner at all.
async fn labelled_pod(s: &Setup, name: &str, owner: Option<&str>) {
    let owner_references = match owner {
        Some(config_map) => {
            let config_maps: Api<ConfigMap> = s.ns.api();
            let made = config_maps
                .create(
                    &PostParams::default(),
                    &ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(config_map.into()),
                            ..ObjectMeta::default()
                        },
                        ..ConfigMap::default()
                    },
                )
                .await
                .unwrap();
            vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: config_map.into(),
                uid: made.metadata.uid.unwrap(),
                controller: Some(true),
                block_owner_deletion: None,
            }]
        }
        None => vec![],
    };
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": {
                SCALE_SET_LABEL: s.rss.metadata.name.as_deref().unwrap(),
                "app.kubernetes.io/managed-by": "runway",
            },
            "ownerReferences": owner_references,
        },
        "spec": { "containers": [{ "name": "runner", "image": "busybox" }] }
    }))
    .unwrap();
    s.pods().create(&PostParams::default(), &pod).await.unwrap();
    s.running(name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_labelled_like_a_runner_but_not_owned_is_neither_counted_nor_deleted() {
    let s = setup("owned", 1, Some(3)).await;
    labelled_pod(&s, "foreign-bare", None).await;
    labelled_pod(&s, "foreign-owned", Some("someone-else")).await;

    // Two idle "runners" by label, one wanted: the scaler must not see them.
    let out = s.reconcile(&Demand::desired(1)).await;
    assert!(out.deleted.is_empty(), "{out:?}");
    assert_eq!(out.created.len(), 1, "{out:?}");
    assert_eq!(out.github.runner_lookups + out.github.runner_removals, 0);
    let ours = out.created[0].clone();
    assert_eq!(
        s.ctx.remembered().foreign_pods,
        BTreeSet::from(["foreign-bare".to_string(), "foreign-owned".to_string()])
    );

    // The deletion's cleanup takes its own runner apart, and only it.
    let cleanup = retire_runners(&s.ctx, &s.rss).await.expect("cleanup");
    assert!(cleanup.outcome.errors.is_empty(), "{:?}", cleanup.outcome);
    assert_eq!(cleanup.outcome.deleted, [ours.as_str()]);
    assert!(cleanup.is_done(), "foreign pods are not left-overs");
    s.wait_pod_gone(&ours).await;
    for name in ["foreign-bare", "foreign-owned"] {
        let pod = s.pods().get(name).await.unwrap();
        assert!(pod.metadata.deletion_timestamp.is_none(), "{name} kept");
    }
}

/// A client with the controller chart's rules in this namespace (and not
/// one more: no `list` on Secrets).
async fn controller_client(ns: &TestNamespace) -> kube::Client {
    const RULES: &[(&str, &str, &[&str])] = &[
        ("", "pods", &["list", "watch", "create", "patch", "delete"]),
        ("", "secrets", &["get", "create"]),
        ("", "serviceaccounts", &["get"]),
        ("", "configmaps", &["get"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ];
    let name = "runway-controller";
    let meta = || ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    ns.api::<ServiceAccount>()
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta(),
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap();
    let rules = RULES
        .iter()
        .map(|(group, resource, verbs)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        })
        .collect();
    ns.api::<Role>()
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta(),
                rules: Some(rules),
            },
        )
        .await
        .unwrap();
    ns.api::<RoleBinding>()
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta(),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: name.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: name.into(),
                    namespace: Some(ns.name().into()),
                    ..Subject::default()
                }]),
            },
        )
        .await
        .unwrap();
    let client = ns.service_account_client(name).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    wait::until("the controller's Role to apply", WAIT, || async {
        secrets.get_opt("none").await.ok().map(|_| ())
    })
    .await
    .unwrap();
    assert!(
        secrets.list(&ListParams::default()).await.is_err(),
        "no list on Secrets"
    );
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_pod_left_without_its_secret_is_taken_apart_with_get_only_on_secrets() {
    let s = setup("half", 1, Some(3)).await;
    let first = s.reconcile(&Demand::desired(1)).await;
    let half = first.created[0].clone();
    // A crash between the two creates: the pod without its JIT Secret.
    let secrets: Api<Secret> = s.ns.api();
    secrets
        .delete(&jit_secret_name(&half), &DeleteParams::default())
        .await
        .unwrap();
    s.wait_secret_gone(&half).await;

    // The next process, with the controller's rules only, finds it.
    let client = controller_client(&s.ns).await;
    let restarted = Context::new(client.clone(), s.client.clone(), settings());
    let out = reconcile_runners(&restarted, &s.rss, &Demand::desired(1))
        .await
        .expect("reconcile without list on Secrets");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.deleted, [half.as_str()]);
    assert_eq!(out.created.len(), 1, "{out:?}");
    let whole = out.created[0].clone();
    s.wait_pod_gone(&half).await;
    assert_eq!(s.registered(), BTreeSet::from([whole.clone()]));

    // A runner with its Secret is left alone by the check.
    let again = Context::new(client, s.client.clone(), settings());
    let out = reconcile_runners(&again, &s.rss, &Demand::desired(1))
        .await
        .expect("reconcile");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.deleted.is_empty() && out.created.is_empty(), "{out:?}");
    assert_eq!(s.pod_names().await, BTreeSet::from([whole]));
}

/// The kubelet's report on 1.20 (no native sidecars) after the runner's job:
/// the runner container exited 0, dind runs on, the pod stays `Running`.
async fn exited_beside_dind(s: &Setup, name: &str) {
    kubelet::set_containers(
        &s.pods(),
        name,
        "Running",
        vec![
            container::terminated("runner", Termination::completed()),
            container::running("dind"),
        ],
    )
    .await
    .expect("report the runner exited beside a running dind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_that_exited_beside_its_dind_sidecar_is_deleted_and_not_replaced_early() {
    let s = setup("sidecar-busy", 0, Some(5)).await;
    let first = s.reconcile(&Demand::desired(1)).await;
    let runner = first.created[0].clone();
    s.running(&runner).await;
    s.start_job_on(&runner).await;
    s.reconcile(&demand(1, &[&runner], &[])).await;
    exited_beside_dind(&s, &runner).await;

    // Its JobCompleted has not arrived: the job still counts as assigned,
    // but its runner is done, so nothing replaces it.
    let out = s.reconcile(&demand(1, &[&runner], &[])).await;
    assert_eq!(out.deleted, [runner.as_str()]);
    assert!(out.created.is_empty(), "{:?}", out.created);
    s.wait_pod_gone(&runner).await;
    let again = s.reconcile(&demand(1, &[], &[])).await;
    assert!(again.created.is_empty(), "{:?}", again.created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_takes_apart_a_busy_runner_that_exited_beside_its_dind_sidecar() {
    let s = setup("sidecar-cleanup", 0, Some(5)).await;
    let first = s.reconcile(&Demand::desired(1)).await;
    let runner = first.created[0].clone();
    s.running(&runner).await;
    s.start_job_on(&runner).await;
    s.reconcile(&demand(1, &[&runner], &[])).await;
    exited_beside_dind(&s, &runner).await;

    // Busy-annotated, but its runner has exited: nothing to wait for.
    let cleanup = retire_runners(&s.ctx, &s.rss).await.expect("cleanup");
    assert!(cleanup.busy.is_empty(), "{:?}", cleanup.busy);
    assert_eq!(cleanup.outcome.deleted, [runner.as_str()]);
    s.wait_pod_gone(&runner).await;
}
