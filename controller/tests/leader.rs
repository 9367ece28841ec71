//! Leader election against the sandbox's real kube-apiserver: a missing
//! Lease is created, a standby waits while the leader renews, a release
//! hands over at once, an abandoned Lease is taken after it expires, and a
//! leader notices when someone else takes its Lease.
//!
//! Timing: lease 2 s, renew deadline 1.5 s, retry period 200 ms; except the
//! last test, two real controller processes with their default timing
//! (lease 15 s, renew deadline 10 s), on a stage of their own.

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

/// What the monitor saw at one moment: the session id the RunnerScaleSet
/// status records, and the scale set's sessions on the fake (id, owner).
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    recorded: Option<String>,
    sessions: Vec<(String, String)>,
}

/// Two real controller processes on one stage; the leader is paused
/// (SIGSTOP) in the middle of a burst of runner creations, long enough for
/// its Lease to expire and the standby to take over, then woken (SIGCONT):
/// the dangerous case, a leader that resumes mid-pass with writes queued.
/// Throughout: never more live runner pods than maxRunners, one session at
/// a time and none of the old leader's once it wakes, the new leader's
/// session id never replaced in the status; at the end every job served
/// and no pod, JIT Secret or registration left over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_that_wakes_after_the_hand_over_writes_nothing() {
    use std::collections::BTreeSet;

    use kube::api::DynamicObject;
    use nix::sys::signal::Signal;
    use runway_sandbox::play::{PlayOptions, PodWatch};
    use runway_sandbox::stage::{Stage, StageOptions, runner_scale_set_resource};

    const MAX: usize = 12;
    const JOBS: usize = 2 * MAX;
    /// The old leader's session owner (no POD_NAME) and the standby's.
    const OLD_OWNER: &str = "runway-controller";
    const STANDBY: &str = "standby";

    let options = StageOptions {
        sandbox: format!("fence-{}", std::process::id()),
        namespace: "runway-fence".into(),
        scale_set: "fence".into(),
        min_runners: 0,
        max_runners: MAX as i32,
        // Slow enough that a burst of runners takes seconds: the pause
        // lands in the middle of the leader's creations.
        kube_qps: 5,
        kube_burst: 5,
        leader_elect: true,
        status_interval_secs: None,
        long_poll: Duration::from_secs(2),
        node: false,
    };
    let stage = Stage::start(&options).await.expect("the stage starts");
    let standby = stage.spawn_controller(STANDBY).expect("the standby starts");
    let leases: Api<Lease> = Api::namespaced(stage.client.clone(), &stage.namespace);
    let holder_now = || async {
        let lease = leases.get("runway-controller").await.ok()?;
        holder(&lease)
    };
    let first_holder = holder_now().await.expect("the first controller leads");
    assert!(
        !first_holder.starts_with(STANDBY),
        "the stage's controller leads: {first_holder}"
    );

    let pods = PodWatch::start(stage.client.clone(), &stage.namespace, &stage.scale_set);
    let rss: Api<DynamicObject> = Api::namespaced_with(
        stage.client.clone(),
        &stage.namespace,
        &runner_scale_set_resource(),
    );
    let (stop_monitor, stop_rx) = watch::channel(false);
    let monitor = {
        let (rss, fake, name, id) = (
            rss.clone(),
            stage.fake.clone(),
            stage.scale_set.clone(),
            stage.scale_set_id,
        );
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let stop = *stop_rx.borrow();
                if stop {
                    break;
                }
                let recorded = match rss.get(&name).await {
                    Ok(object) => object.data["status"]["sessionId"]
                        .as_str()
                        .map(str::to_owned),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let sessions = fake
                    .snapshot()
                    .sessions
                    .into_iter()
                    .filter(|s| s.scale_set_id == id)
                    .map(|s| (s.session_id, s.owner_name))
                    .collect();
                seen.push(Seen {
                    at: Instant::now(),
                    recorded,
                    sessions,
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        })
    };

    // The burst; pause the leader once its first runners exist.
    stage.queue_jobs(JOBS).expect("queue the jobs");
    stage
        .until(
            "the leader's first runner pods",
            Duration::from_secs(60),
            || async { (pods.first_seen().len() >= 3).then_some(()) },
        )
        .await
        .expect("runner pods");
    stage
        .controller()
        .signal(Signal::SIGSTOP)
        .expect("pause the leader");
    let paused = Instant::now();
    let pods_at_pause = pods.first_seen().len();

    let new_holder = runway_sandbox::wait::until(
        "the standby to take the Lease",
        Duration::from_secs(60),
        || async { holder_now().await.filter(|h| h.starts_with(STANDBY)) },
    )
    .await
    .expect("the standby leads");
    let failover = paused.elapsed();
    // The standby runs its pass and records its session.
    stage
        .until(
            "the standby's session in the status",
            Duration::from_secs(60),
            || async {
                let recorded = rss.get(&stage.scale_set).await.ok()?.data["status"]["sessionId"]
                    .as_str()?
                    .to_owned();
                let snapshot = stage.fake.snapshot();
                snapshot
                    .sessions
                    .iter()
                    .any(|s| s.session_id == recorded && s.owner_name == STANDBY)
                    .then_some(())
            },
        )
        .await
        .expect("the standby listens");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let live_before_wake = pods.census().live();

    // Wake the old leader: it finds its Lease gone and must exit without
    // another write.
    stage
        .controller()
        .signal(Signal::SIGCONT)
        .expect("wake the old leader");
    let woken = Instant::now();
    runway_sandbox::wait::until(
        "the old leader to exit",
        Duration::from_secs(60),
        || async { (!stage.controller().is_running()).then_some(()) },
    )
    .await
    .expect("the old leader exits");
    let exited_after = woken.elapsed();
    // Whatever it still had queued would have landed by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak_before_play = pods.peak_live();

    // Serve every job.
    let player = stage.player(PlayOptions {
        start_delay: Duration::from_millis(200),
        job_duration: Duration::from_millis(500),
        ..PlayOptions::default()
    });
    let served = runway_sandbox::wait::until(
        "every job done and nothing left over",
        Duration::from_secs(180),
        || async {
            let jobs = stage.job_counts();
            let left = stage.leftovers().await.ok()?;
            (jobs.done >= JOBS
                && jobs.open() == 0
                && left.pods.is_empty()
                && left.jit_secrets.is_empty()
                && left.registrations.is_empty())
            .then_some(())
        },
    )
    .await;
    if let Err(e) = served {
        panic!(
            "{e}: jobs {:?}, left {:?}, player {:?}",
            stage.job_counts(),
            stage.leftovers().await.ok(),
            player.stats()
        );
    }
    player.stop();
    stop_monitor.send_replace(true);
    let seen = monitor.await.expect("the monitor");
    assert!(standby.is_running(), "the standby still leads");

    let most_sessions = seen.iter().map(|s| s.sessions.len()).max().unwrap_or(0);
    let old_sessions_after_wake: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.at >= woken && s.sessions.iter().any(|(_, owner)| owner == OLD_OWNER))
        .collect();
    // From the first sample where the status records the standby's session,
    // it records a session of the standby's in every later sample.
    let standby_sessions: BTreeSet<&str> = seen
        .iter()
        .flat_map(|s| &s.sessions)
        .filter(|(_, owner)| owner == STANDBY)
        .map(|(id, _)| id.as_str())
        .collect();
    let first = seen
        .iter()
        .position(|s| {
            s.recorded
                .as_deref()
                .is_some_and(|r| standby_sessions.contains(r))
        })
        .expect("the standby's session was recorded");
    let replaced: Vec<(Duration, Option<&str>)> = seen[first..]
        .iter()
        .filter(|s| {
            !s.recorded
                .as_deref()
                .is_some_and(|r| standby_sessions.contains(r))
        })
        .map(|s| (s.at.saturating_duration_since(woken), s.recorded.as_deref()))
        .collect();
    let peak = pods.peak_live();
    eprintln!(
        "hand-over: {pods_at_pause} pods at the pause, failover to {new_holder} in {:.1} s, \
         {live_before_wake} live before the wake, old leader exited {:.1} s after waking; \
         peak live pods {peak_before_play} before playing, {peak} overall (max {MAX}); \
         at most {most_sessions} session(s) at once; {} samples",
        failover.as_secs_f64(),
        exited_after.as_secs_f64(),
        seen.len()
    );
    assert!(
        peak <= MAX,
        "at most maxRunners={MAX} live runner pods, saw {peak} ({peak_before_play} before the jobs were played)"
    );
    assert!(
        most_sessions <= 1,
        "one session at a time, saw {most_sessions}"
    );
    assert!(
        old_sessions_after_wake.is_empty(),
        "the old leader opened no session after waking: {old_sessions_after_wake:?}"
    );
    assert!(
        replaced.is_empty(),
        "the new leader's session id stays in the status; replaced at (time after the wake, value): {replaced:?}"
    );
}
