//! Exactly-once for payloads, against the sandbox's real API server: the
//! same (id, version) twice, two claimants racing, a "restart", expiry,
//! clock skew, kind mismatch (refused ones answered, not recorded), a claim
//! that never finished, retention and the size limit. "Ran" is observed on the cluster: the pod a `delete_pod`
//! targets is recreated between runs, so a second execution would delete it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use runway_agent::kube::action::{Action, Outcome};
use runway_agent::kube::allowlist::Allowlist;
use runway_agent::kube::audit::AuditContext;
use runway_agent::kube::error::ActionError;
use runway_agent::kube::exec::Executor;
use runway_agent::kube::payload::Payload;
use runway_agent::kube::run_payload::{
    ActionReport, Execute, PayloadReport, run_payload, run_payload_with,
};
use runway_agent::kube::state::decide::{MAX_DATA_BYTES, data_bytes};
use runway_agent::kube::state::{Claim, Existing, Intent, STATE_CONFIGMAP, StateStore, Status};
use runway_sandbox::{TestNamespace, test_namespace};
use serde_json::{Value, json};

const ALLOWLIST: &str = "actions:\n  pods: [get, delete]\n";

fn executor(ns: &TestNamespace) -> Executor {
    Executor::new(
        ns.client(),
        Allowlist::parse(ALLOWLIST).expect("allowlist"),
        AuditContext::default(),
    )
}

fn store(ns: &TestNamespace, holder: &str) -> StateStore {
    StateStore::new(ns.client(), ns.name(), holder)
}

fn action(id: &str, version: u64, action_type: &str, resource: Value, at: DateTime<Utc>) -> Value {
    json!({
        "metadata": {"id": id, "version": version},
        "action_type": action_type,
        "resource": resource,
        "timestamp": {"seconds": at.timestamp(), "nanos": at.timestamp_subsec_nanos()},
    })
}

fn payload(actions: Vec<Value>) -> Payload {
    Payload::from_json(&serde_json::to_vec(&json!({ "actions": actions })).unwrap())
        .expect("well-formed payload")
}

fn delete_pod(
    ns: &TestNamespace,
    id: &str,
    version: u64,
    name: &str,
    at: DateTime<Utc>,
) -> Payload {
    payload(vec![action(
        id,
        version,
        "delete_pod",
        json!({"api_version": "v1", "kind": "Pod", "namespace": ns.name(), "name": name}),
        at,
    )])
}

async fn make_pod(ns: &TestNamespace, name: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

async fn pod_exists(ns: &TestNamespace, name: &str) -> bool {
    ns.api::<Pod>()
        .get_opt(name)
        .await
        .expect("get pod")
        .is_some()
}

fn only(report: &PayloadReport) -> &ActionReport {
    assert_eq!(report.results.len(), 1, "{report:?}");
    &report.results[0]
}

async fn record(store: &StateStore, key: &str) -> runway_agent::kube::state::Record {
    match store.records().await.expect("read records").remove(key) {
        Some(Existing::Record(r)) => r,
        other => panic!("record {key}: {other:?}"),
    }
}

#[tokio::test]
async fn the_same_action_runs_once_even_after_a_restart_and_a_newer_version_runs() {
    let ns = test_namespace().await;
    let (exec, state) = (executor(&ns), store(&ns, "holder-a"));
    make_pod(&ns, "victim").await;
    let now = Utc::now();
    let p = delete_pod(&ns, "a1b2", 3, "victim", now);

    let first = run_payload(&exec, &state, &p, now).await;
    let r = only(&first);
    assert_eq!((r.status, r.exit_code), (Status::Succeeded, 0), "{r:?}");
    assert!(r.result.is_some());
    assert!(!pod_exists(&ns, "victim").await);
    let rec = record(&state, "a1b2.v3").await;
    assert_eq!(
        (rec.status, rec.claimed_by.as_str()),
        (Status::Succeeded, "holder-a")
    );
    assert!(rec.finished_at.is_some_and(|f| f >= rec.claimed_at));

    // The pod comes back: running the action again would delete it.
    make_pod(&ns, "victim").await;
    let second = run_payload(&exec, &state, &p, now + Duration::seconds(5)).await;
    let r = only(&second);
    assert_eq!((r.status, r.exit_code), (Status::Skipped, 0), "{r:?}");
    assert!(r.message.starts_with("already succeeded"), "{}", r.message);
    assert!(
        pod_exists(&ns, "victim").await,
        "the second run deleted the pod"
    );

    // A "restart": a new process, executor and store, another identity.
    let (exec2, state2) = (executor(&ns), store(&ns, "holder-b"));
    let third = run_payload(&exec2, &state2, &p, now + Duration::seconds(10)).await;
    assert_eq!(only(&third).status, Status::Skipped);
    assert!(
        pod_exists(&ns, "victim").await,
        "the restarted run deleted the pod"
    );

    // A newer version of the same id is a different action.
    let newer = delete_pod(&ns, "a1b2", 4, "victim", now + Duration::seconds(10));
    let fourth = run_payload(&exec2, &state2, &newer, now + Duration::seconds(10)).await;
    assert_eq!(only(&fourth).status, Status::Succeeded, "{fourth:?}");
    assert!(!pod_exists(&ns, "victim").await);
    assert_eq!(record(&state2, "a1b2.v3").await.claimed_by, "holder-a");
    assert_eq!(record(&state2, "a1b2.v4").await.claimed_by, "holder-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_claimants_racing_execute_once() {
    let ns = test_namespace().await;
    let now = Utc::now();
    // Round 0 races on a missing ConfigMap (create vs create), the others on
    // an existing one (replace vs replace with the same resourceVersion).
    for round in 0..4 {
        let name = format!("race-{round}");
        make_pod(&ns, &name).await;
        let p = delete_pod(&ns, &format!("race{round}"), 1, &name, now);
        let (ea, sa) = (executor(&ns), store(&ns, "replica-a"));
        let (eb, sb) = (executor(&ns), store(&ns, "replica-b"));
        let (a, b) = tokio::join!(
            run_payload(&ea, &sa, &p, now),
            run_payload(&eb, &sb, &p, now)
        );
        let mut statuses = [only(&a).status, only(&b).status];
        statuses.sort_by_key(|s| s.as_str());
        // Without the claim both would run and the loser would fail with 404.
        assert_eq!(
            statuses,
            [Status::Skipped, Status::Succeeded],
            "round {round}: {a:?} {b:?}"
        );
        assert!(!pod_exists(&ns, &name).await);
    }
}

/// Counts executions; never touches the cluster.
struct Counting {
    runs: Arc<AtomicUsize>,
}

impl Execute for Counting {
    fn execute(
        &self,
        _action: &Action,
    ) -> impl std::future::Future<Output = Result<Outcome, ActionError>> + Send {
        let runs = self.runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(Outcome {
                summary: "counted".into(),
                changed: true,
                result: Value::Null,
            })
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimants_racing_on_many_actions_execute_each_once() {
    let ns = test_namespace().await;
    let now = Utc::now();
    let actions: Vec<Value> = (0..5)
        .map(|i| {
            action(
                &format!("many{i}"),
                1,
                "get_pod",
                json!({"api_version": "v1", "kind": "Pod", "namespace": ns.name(), "name": "x"}),
                now,
            )
        })
        .collect();
    let p = Arc::new(payload(actions));
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for replica in 0..8 {
        let (p, runs) = (p.clone(), runs.clone());
        let state = store(&ns, &format!("replica-{replica}"));
        tasks.push(tokio::spawn(async move {
            run_payload_with(&Counting { runs }, &state, &p, now).await
        }));
    }
    let mut succeeded = [0usize; 5];
    for task in tasks {
        let report = task.await.expect("task");
        for (i, r) in report.results.iter().enumerate() {
            match r.status {
                Status::Succeeded => succeeded[i] += 1,
                Status::Skipped => {}
                other => panic!("action {i}: {other} {}", r.message),
            }
        }
    }
    assert_eq!(succeeded, [1; 5], "each action succeeds exactly once");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        5,
        "each action executed exactly once"
    );
}

#[tokio::test]
async fn expired_and_future_actions_are_answered_never_run_and_not_recorded() {
    let ns = test_namespace().await;
    let (exec, state) = (executor(&ns), store(&ns, "holder-a"));
    make_pod(&ns, "keep").await;
    let now = Utc::now();

    let old = delete_pod(&ns, "old", 1, "keep", now - Duration::seconds(61));
    let r = run_payload(&exec, &state, &old, now).await;
    let r = only(&r);
    assert_eq!((r.status, r.exit_code), (Status::Expired, 3), "{r:?}");
    assert!(r.message.contains("61s old"), "{}", r.message);

    let ahead = delete_pod(&ns, "ahead", 1, "keep", now + Duration::seconds(11));
    let r = run_payload(&exec, &state, &ahead, now).await;
    assert_eq!(only(&r).status, Status::Rejected, "{r:?}");
    assert!(pod_exists(&ns, "keep").await);
    // Not even the ConfigMap was written.
    assert!(
        ns.api::<ConfigMap>()
            .get_opt(STATE_CONFIGMAP)
            .await
            .unwrap()
            .is_none()
    );

    // Within the limits on both sides it runs (checked on another pod).
    make_pod(&ns, "edge").await;
    let edge = delete_pod(&ns, "edge", 1, "edge", now - Duration::seconds(59));
    assert_eq!(
        only(&run_payload(&exec, &state, &edge, now).await).status,
        Status::Succeeded
    );
    let keys: Vec<String> = state.records().await.unwrap().into_keys().collect();
    assert_eq!(keys, ["edge.v1"]);

    // The expired action never ran, so sent again fresh it runs, once.
    let resent = delete_pod(&ns, "old", 1, "keep", now);
    let r = run_payload(&exec, &state, &resent, now).await;
    assert_eq!(only(&r).status, Status::Succeeded, "{r:?}");
    assert!(!pod_exists(&ns, "keep").await);
    make_pod(&ns, "keep").await;
    let r = run_payload(&exec, &state, &resent, now).await;
    assert_eq!(only(&r).status, Status::Skipped, "{r:?}");
    assert!(pod_exists(&ns, "keep").await);
}

#[tokio::test]
async fn bad_actions_fail_alone_and_are_not_recorded() {
    let ns = test_namespace().await;
    let (exec, state) = (executor(&ns), store(&ns, "holder-a"));
    make_pod(&ns, "p").await;
    let now = Utc::now();
    let p = payload(vec![
        // delete_pod aimed at a Deployment: rejected, never executed.
        action(
            "mismatch",
            1,
            "delete_pod",
            json!({"api_version": "apps/v1", "kind": "Deployment", "namespace": ns.name(), "name": "p"}),
            now,
        ),
        // Not in the allowlist: refused before the claim and Kubernetes.
        action(
            "denied",
            1,
            "delete_config_map",
            json!({"api_version": "v1", "kind": "ConfigMap", "namespace": ns.name(), "name": STATE_CONFIGMAP}),
            now,
        ),
        // An id that cannot be a key.
        action(
            "bad/id",
            1,
            "get_pod",
            json!({"api_version": "v1", "kind": "Pod", "namespace": ns.name(), "name": "p"}),
            now,
        ),
        // And a good one still runs.
        action(
            "good",
            1,
            "delete_pod",
            json!({"api_version": "v1", "kind": "Pod", "namespace": ns.name(), "name": "p"}),
            now,
        ),
    ]);
    let report = run_payload(&exec, &state, &p, now).await;
    let got: Vec<(Status, u8)> = report
        .results
        .iter()
        .map(|r| (r.status, r.exit_code))
        .collect();
    assert_eq!(
        got,
        [
            (Status::Rejected, 3),
            (Status::Rejected, 3),
            (Status::Rejected, 2),
            (Status::Succeeded, 0)
        ],
        "{report:?}"
    );
    assert!(
        report.results[0]
            .message
            .contains("resource.kind is `Deployment`")
    );
    assert!(
        report.results[1]
            .message
            .contains("kubernetesActions.configMaps")
    );
    assert!(report.results[2].message.contains("metadata.id `bad/id`"));
    assert_eq!(report.exit_code(), 3);
    // Only the action that ran is recorded.
    let records = state.records().await.unwrap();
    assert_eq!(
        records.keys().collect::<Vec<_>>(),
        ["good.v1"],
        "{records:?}"
    );
    // The state ConfigMap was not deleted by the denied action.
    assert!(
        ns.api::<ConfigMap>()
            .get_opt(STATE_CONFIGMAP)
            .await
            .unwrap()
            .is_some()
    );

    // The report's JSON is the documented shape.
    let json = serde_json::to_value(&report).unwrap();
    let first = &json["results"][0];
    for key in [
        "id",
        "version",
        "action_type",
        "status",
        "message",
        "result",
        "exit_code",
    ] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
    assert_eq!(first["status"], "rejected");
    assert_eq!(first["result"], Value::Null);
}

#[tokio::test]
async fn a_claim_left_without_result_is_never_run_again() {
    let ns = test_namespace().await;
    let (exec, state) = (executor(&ns), store(&ns, "crashed/1"));
    make_pod(&ns, "p").await;
    let now = Utc::now();
    // A process claimed it and died before running or recording.
    let claim = state.claim("stuck.v1", &Intent::Run, now).await.unwrap();
    assert!(matches!(claim, Claim::Won(_)));
    let restarted = store(&ns, "crashed/1");
    let p = delete_pod(&ns, "stuck", 1, "p", now);
    let r = run_payload(&exec, &restarted, &p, now).await;
    let r = only(&r);
    assert_eq!(r.status, Status::Skipped);
    assert!(r.message.contains("no result recorded"), "{}", r.message);
    assert!(pod_exists(&ns, "p").await);
    assert_eq!(record(&state, "stuck.v1").await.status, Status::Claimed);
}

#[tokio::test]
async fn records_older_than_a_day_are_pruned_on_the_next_write() {
    let ns = test_namespace().await;
    let (exec, state) = (executor(&ns), store(&ns, "holder-a"));
    make_pod(&ns, "p").await;
    let get = |id: &str, at: DateTime<Utc>| {
        payload(vec![action(
            id,
            1,
            "get_pod",
            json!({"api_version": "v1", "kind": "Pod", "namespace": ns.name(), "name": "p"}),
            at,
        )])
    };
    let t0 = Utc::now();
    assert_eq!(
        only(&run_payload(&exec, &state, &get("day0", t0), t0).await).status,
        Status::Succeeded
    );
    let t1 = t0 + Duration::hours(23);
    assert_eq!(
        only(&run_payload(&exec, &state, &get("day1", t1), t1).await).status,
        Status::Succeeded
    );
    let keys = |s: &StateStore| {
        let s = s.clone();
        async move { s.records().await.unwrap().into_keys().collect::<Vec<_>>() }
    };
    assert_eq!(keys(&state).await, ["day0.v1", "day1.v1"]);
    // 25 h after the first: its record goes, the 2 h old one stays.
    let t2 = t0 + Duration::hours(25);
    assert_eq!(
        only(&run_payload(&exec, &state, &get("day2", t2), t2).await).status,
        Status::Succeeded
    );
    assert_eq!(keys(&state).await, ["day1.v1", "day2.v1"]);
    // The pruned action sent again is long expired: still not run.
    let again = run_payload(&exec, &state, &get("day0", t0), t2).await;
    assert_eq!(only(&again).status, Status::Expired);
}

#[tokio::test]
async fn a_full_configmap_refuses_to_claim_and_nothing_runs() {
    let ns = test_namespace().await;
    let (exec, state) = (executor(&ns), store(&ns, "holder-a"));
    let cms = Api::<ConfigMap>::namespaced(ns.client(), ns.name());
    make_pod(&ns, "p").await;
    make_pod(&ns, "p2").await;
    // Someone else's bulk (unreadable, so never pruned), leaving room for a
    // few records: an action still runs.
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(STATE_CONFIGMAP.into()),
            ..ObjectMeta::default()
        },
        data: Some([("junk.v1".to_string(), "x".repeat(MAX_DATA_BYTES - 7 - 1000))].into()),
        ..ConfigMap::default()
    };
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let now = Utc::now();
    let r = run_payload(&exec, &state, &delete_pod(&ns, "roomy", 1, "p", now), now).await;
    assert_eq!(only(&r).status, Status::Succeeded, "{r:?}");
    // Now exactly at the limit: the next claim does not fit.
    let mut cm = cms.get(STATE_CONFIGMAP).await.unwrap();
    let data = cm.data.as_mut().unwrap();
    data.remove("junk.v1");
    let junk = MAX_DATA_BYTES - data_bytes(data) - "junk.v1".len();
    data.insert("junk.v1".into(), "x".repeat(junk));
    assert_eq!(data_bytes(data), MAX_DATA_BYTES);
    cms.replace(STATE_CONFIGMAP, &PostParams::default(), &cm)
        .await
        .expect("a ConfigMap at the limit is still valid for the API server");
    let r = run_payload(&exec, &state, &delete_pod(&ns, "next", 1, "p2", now), now).await;
    let r = only(&r);
    assert_eq!((r.status, r.exit_code), (Status::Failed, 4), "{r:?}");
    assert!(
        r.message.contains("over the 1032192-byte limit"),
        "{}",
        r.message
    );
    assert!(pod_exists(&ns, "p2").await, "an action ran without a claim");
    assert!(!state.records().await.unwrap().contains_key("next.v1"));
}

#[tokio::test]
async fn measure_actions_per_second_through_the_state() {
    let ns = test_namespace().await;
    let (exec, state) = (executor(&ns), store(&ns, "holder-a"));
    make_pod(&ns, "p").await;
    let now = Utc::now();
    let n = 30;
    let p = payload(
        (0..n)
            .map(|i| {
                action(
                    &format!("m{i}"),
                    1,
                    "get_pod",
                    json!({"api_version": "v1", "kind": "Pod", "namespace": ns.name(), "name": "p"}),
                    now,
                )
            })
            .collect(),
    );
    let started = Instant::now();
    let report = run_payload(&exec, &state, &p, now).await;
    let took = started.elapsed();
    assert!(
        report.results.iter().all(|r| r.status == Status::Succeeded),
        "{report:?}"
    );
    eprintln!(
        "{n} payload get actions (claim + get + record) in {took:?}: {:.1} actions/s",
        n as f64 / took.as_secs_f64()
    );
    let again = Instant::now();
    let report = run_payload(&exec, &state, &p, now).await;
    assert!(report.results.iter().all(|r| r.status == Status::Skipped));
    eprintln!("{n} duplicates skipped in {:?}", again.elapsed());
}

/// `runway kube run-payload FILE` in its own process, like a job step.
async fn run_payload_process(
    ns: &TestNamespace,
    dir: &std::path::Path,
    holder: &str,
) -> (i32, PayloadReport) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_runway"))
        .args(["kube", "run-payload"])
        .arg(dir.join("payload.json"))
        .env("KUBECONFIG", ns.plane().kubeconfig_path())
        .env("RUNWAY_NAMESPACE", ns.name())
        .env("RUNWAY_KUBE_ALLOWLIST", dir.join("allowlist.yaml"))
        .env("RUNWAY_RUNNER_NAME", holder)
        .env("RUNWAY_HOLDER_IDENTITY", holder)
        .output()
        .await
        .expect("run the runway binary");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{holder}: not a report ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runway_processes_racing_execute_once_and_a_third_skips() {
    let ns = test_namespace().await;
    let dir = std::env::temp_dir().join(format!("runway-payload-{}", ns.name()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("allowlist.yaml"), ALLOWLIST).unwrap();
    make_pod(&ns, "target").await;
    let now = Utc::now();
    let p = delete_pod(&ns, "proc", 1, "target", now);
    std::fs::write(dir.join("payload.json"), serde_json::to_vec(&p).unwrap()).unwrap();

    let started = Instant::now();
    let (a, b) = tokio::join!(
        run_payload_process(&ns, &dir, "proc-a"),
        run_payload_process(&ns, &dir, "proc-b")
    );
    eprintln!(
        "two racing run-payload processes done in {:?}",
        started.elapsed()
    );
    assert_eq!((a.0, b.0), (0, 0), "{a:?} {b:?}");
    let mut statuses = [only(&a.1).status, only(&b.1).status];
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(
        statuses,
        [Status::Skipped, Status::Succeeded],
        "{a:?} {b:?}"
    );
    assert!(!pod_exists(&ns, "target").await);

    // The pod comes back; a later process (a "restart") must not delete it.
    make_pod(&ns, "target").await;
    let (code, c) = run_payload_process(&ns, &dir, "proc-c").await;
    assert_eq!((code, only(&c).status), (0, Status::Skipped), "{c:?}");
    assert!(pod_exists(&ns, "target").await);
    let winner = record(&store(&ns, "reader"), "proc.v1").await;
    // The CLI names its claims after RUNWAY_HOLDER_IDENTITY.
    assert!(
        ["proc-a", "proc-b"].contains(&winner.claimed_by.as_str()),
        "{winner:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
