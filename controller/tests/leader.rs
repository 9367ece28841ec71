//! Leader election against the sandbox's real kube-apiserver: a missing
//! Lease is created, a standby waits while the leader renews, a release
//! hands over at once, an abandoned Lease is taken after it expires, and a
//! leader notices when someone else takes its Lease.
//!
//! Timing: lease 2 s, renew deadline 1.5 s, retry period 200 ms.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use runway_controller::leader::{LeaderConfig, LeaderElector, Leadership, controller_config};
use runway_sandbox::{TestNamespace, test_namespace};
use tokio::sync::watch;

const LEASE: &str = "runway-leader";
const LEASE_DURATION: Duration = Duration::from_secs(2);

fn config(ns: &TestNamespace, identity: &str) -> LeaderConfig {
    LeaderConfig {
        lease_duration: LEASE_DURATION,
        renew_deadline: Duration::from_millis(1_500),
        retry_period: Duration::from_millis(200),
        ..controller_config(ns.name(), LEASE, identity)
    }
}

fn elector(ns: &TestNamespace, identity: &str) -> LeaderElector {
    LeaderElector::new(ns.client(), config(ns, identity)).expect("valid leader config")
}

/// Acquires within `within`, or panics.
async fn acquire(elector: &LeaderElector, within: Duration) -> Leadership {
    let (_keep, mut shutdown) = watch::channel(false);
    tokio::time::timeout(within, elector.acquire(&mut shutdown))
        .await
        .expect("acquired in time")
        .expect("no election error")
        .expect("not shut down")
}

async fn lease(ns: &TestNamespace) -> Lease {
    let api: Api<Lease> = ns.api();
    api.get(LEASE).await.expect("read the Lease")
}

fn holder(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}

fn transitions(lease: &Lease) -> i32 {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

/// A standby campaigning in the background; `shutdown` stops it.
struct Standby {
    task: tokio::task::JoinHandle<Option<Leadership>>,
    shutdown: watch::Sender<bool>,
}

fn campaign(elector: LeaderElector) -> Standby {
    let (shutdown, mut rx) = watch::channel(false);
    let task =
        tokio::spawn(async move { elector.acquire(&mut rx).await.expect("no election error") });
    Standby { task, shutdown }
}

#[tokio::test]
async fn a_candidate_creates_and_holds_a_missing_lease() {
    let ns = test_namespace().await;
    let a = elector(&ns, "a");
    let mut leadership = acquire(&a, Duration::from_secs(10)).await;
    assert_eq!(leadership.identity(), "a");

    let first = lease(&ns).await;
    let spec = first.spec.clone().expect("spec");
    assert_eq!(holder(&first).as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some());
    let renewed = spec.renew_time.expect("renewTime");
    assert_eq!(
        first
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some("runway")
    );

    // It keeps renewing: renewTime moves, the holder and acquire time stay.
    let (ns_ref, renewed_ref) = (&ns, &renewed);
    runway_sandbox::wait::until("a renewal", Duration::from_secs(5), || async move {
        let now = lease(ns_ref).await;
        let spec = now.spec?;
        (spec.renew_time? > *renewed_ref).then_some(())
    })
    .await
    .expect("renewTime advances");
    let later = lease(&ns).await;
    assert_eq!(holder(&later).as_deref(), Some("a"));
    assert_eq!(later.spec.as_ref().unwrap().acquire_time, spec.acquire_time);

    // Still leading.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), leadership.lost())
            .await
            .is_err()
    );
    leadership.release().await;
}

#[tokio::test]
async fn a_standby_waits_while_the_leader_renews_and_takes_over_on_release() {
    let ns = test_namespace().await;
    let first = acquire(&elector(&ns, "first"), Duration::from_secs(10)).await;
    let before = transitions(&lease(&ns).await);

    let standby = campaign(elector(&ns, "second"));
    // More than two lease durations: renewals keep the standby out.
    tokio::time::sleep(2 * LEASE_DURATION + Duration::from_millis(500)).await;
    assert!(!standby.task.is_finished(), "the standby must still wait");
    assert_eq!(holder(&lease(&ns).await).as_deref(), Some("first"));

    let released = Instant::now();
    first.release().await;
    let second = tokio::time::timeout(Duration::from_secs(10), standby.task)
        .await
        .expect("standby acquired")
        .expect("standby task")
        .expect("not shut down");
    let took = released.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a released Lease is taken promptly, took {took:?}"
    );
    assert_eq!(second.identity(), "second");
    let now = lease(&ns).await;
    assert_eq!(holder(&now).as_deref(), Some("second"));
    assert_eq!(transitions(&now), before + 1);
    assert_eq!(now.spec.as_ref().unwrap().lease_duration_seconds, Some(2));
    second.release().await;
    drop(standby.shutdown);
}

#[tokio::test]
async fn an_abandoned_lease_is_taken_after_it_expires() {
    let ns = test_namespace().await;
    let first = acquire(&elector(&ns, "first"), Duration::from_secs(10)).await;
    let standby = campaign(elector(&ns, "second"));
    // Let the standby see a few renewals.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!standby.task.is_finished());

    let crashed = Instant::now();
    first.abandon();
    let second = tokio::time::timeout(Duration::from_secs(10), standby.task)
        .await
        .expect("standby acquired")
        .expect("standby task")
        .expect("not shut down");
    let took = crashed.elapsed();
    // The standby counts the duration from the last renewal it saw, at
    // most a retry period (plus a request) before the crash.
    assert!(
        took >= Duration::from_millis(1_500),
        "not before the Lease expired, took {took:?}"
    );
    assert!(took < Duration::from_secs(5), "soon after, took {took:?}");
    let now = lease(&ns).await;
    assert_eq!(holder(&now).as_deref(), Some("second"));
    assert_eq!(transitions(&now), 1);
    second.release().await;
    drop(standby.shutdown);
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_sees_it_lost() {
    let ns = test_namespace().await;
    let mut leadership = acquire(&elector(&ns, "first"), Duration::from_secs(10)).await;

    let api: Api<Lease> = ns.api();
    let intruder = serde_json::json!({
        "spec": {
            "holderIdentity": "intruder",
            "leaseDurationSeconds": 60,
            "renewTime": MicroTime(Timestamp::now()),
        }
    });
    api.patch(LEASE, &PatchParams::default(), &Patch::Merge(&intruder))
        .await
        .expect("take the Lease");

    tokio::time::timeout(Duration::from_secs(3), leadership.lost())
        .await
        .expect("loss noticed within a few renewals");
    // The loser does not write again: the intruder keeps it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(holder(&lease(&ns).await).as_deref(), Some("intruder"));
    // Releasing a lost Lease leaves the new holder alone.
    leadership.release().await;
    assert_eq!(holder(&lease(&ns).await).as_deref(), Some("intruder"));
}

#[tokio::test]
async fn shutdown_stops_a_waiting_candidate() {
    let ns = test_namespace().await;
    let first = acquire(&elector(&ns, "first"), Duration::from_secs(10)).await;
    let standby = campaign(elector(&ns, "second"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    standby.shutdown.send(true).expect("standby listening");
    let outcome = tokio::time::timeout(Duration::from_secs(2), standby.task)
        .await
        .expect("stopped promptly")
        .expect("standby task");
    assert!(outcome.is_none());
    first.release().await;
}
