//! One scale set end to end: `run_scale_set` against the sandbox's real
//! kube-apiserver (with the real garbage collector) and the fake GitHub,
//! through the real Actions client. Nothing is scripted between the pieces:
//! the supervisor creates the scale set, its listener acquires the queued
//! jobs, its reconciler makes and removes the runner pods. The test plays
//! GitHub's runners (start and complete jobs on the fake) and the kubelet.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::scale_set::start;
use runway_controller::runner::reconcile::{GitHubCalls, KubeWrites};
use runway_controller::runner::{BUSY_ANNOTATION, jit_secret_name};
use runway_sandbox::github::{Endpoint, JobState};
use runway_sandbox::kubelet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_become_runner_pods_and_leave_no_trace_when_done() {
    const JOBS: usize = 20;
    let mut s = start("e2e-builders", 0, 30).await;
    let started = Instant::now();

    // Queue: one runner pod, one JIT Secret and one registration per job.
    let jobs = s.queue_jobs(JOBS);
    // The pod is made before its Secret: wait for both, and for the
    // registrations, to match.
    let pods = s
        .until(
            "a runner pod, a JIT Secret and a registration per job",
            || async {
                let names = s.pod_names().await;
                let secrets: BTreeSet<String> = names.iter().map(|p| jit_secret_name(p)).collect();
                (names.len() == JOBS
                    && s.secret_names().await == secrets
                    && s.registered() == names)
                    .then_some(names)
            },
        )
        .await;
    let up = started.elapsed();
    s.until("the listener to acquire every job", || async {
        (s.jobs_in(JobState::Assigned) == JOBS).then_some(())
    })
    .await;
    // No more pods than jobs, even after more passes.
    s.until("the status to show the desired runners", || async {
        let status = s.status().await;
        (status.desired_runners == Some(JOBS as i32) && status.current_runners == Some(JOBS as i32))
            .then_some(())
    })
    .await;
    assert_eq!(s.pod_names().await.len(), JOBS);

    // Run: every runner takes one job.
    for (job, pod) in jobs.iter().zip(&pods) {
        kubelet::set_running(&s.pods(), pod, "runner")
            .await
            .expect("report the pod running");
        s.fake.start_job(*job, pod).expect("start the job");
    }
    s.until("every pod marked busy", || async {
        let busy = s
            .pod_list()
            .await
            .iter()
            .filter(|p| {
                p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(BUSY_ANNOTATION))
            })
            .count();
        (busy == JOBS).then_some(())
    })
    .await;
    s.until("the status to show every runner busy", || async {
        (s.status().await.busy_runners == Some(JOBS as i32)).then_some(())
    })
    .await;
    let busy_at = started.elapsed();

    // Complete: pods, JIT Secrets and registrations all go; back to min (0).
    for job in &jobs {
        s.fake.complete_job(*job, "succeeded").expect("complete");
    }
    s.until("every runner pod gone", || async {
        s.pod_names().await.is_empty().then_some(())
    })
    .await;
    s.until("every JIT Secret collected", || async {
        s.secret_names().await.is_empty().then_some(())
    })
    .await;
    assert!(s.registered().is_empty(), "{:?}", s.registered());
    s.until("the status back to minRunners", || async {
        let status = s.status().await;
        (status.desired_runners == Some(0) && status.current_runners == Some(0)).then_some(())
    })
    .await;
    let down = started.elapsed();
    assert_eq!(s.jobs_in(JobState::Completed), JOBS);

    let calls: Vec<_> = [
        Endpoint::GenerateJitConfig,
        Endpoint::RemoveRunner,
        Endpoint::GetRunnerByName,
        Endpoint::AcquireJobs,
        Endpoint::GetMessage,
        Endpoint::DeleteMessage,
        Endpoint::CreateSession,
    ]
    .into_iter()
    .map(|e| (e, s.fake.request_count(e)))
    .collect();
    let totals = *s.totals.borrow();
    eprintln!(
        "e2e: {JOBS} jobs -> {JOBS} pods in {up:?}, all busy at {busy_at:?}, all gone at {down:?}; \
         fake GitHub requests {calls:?}; supervisor {totals:?}"
    );
    assert_eq!(
        s.fake.request_count(Endpoint::GenerateJitConfig),
        JOBS as u64
    );
    assert_eq!(s.fake.request_count(Endpoint::CreateSession), 1);
    // Four Kubernetes writes per job: the busy mark also releases the
    // finalizer, and GitHub removes the registration when the job ends.
    let n = JOBS as u32;
    assert_eq!(
        totals.kube,
        KubeWrites {
            pod_creates: n,
            secret_creates: n,
            pod_deletes: n,
            finalizer_removals: 0,
            busy_patches: n,
            events: totals.kube.events,
        }
    );
    // One ScaledUp Event per pass that made runners, not one per runner.
    assert!(
        (1..=JOBS as u32 / 4).contains(&totals.kube.events),
        "{} events",
        totals.kube.events
    );
    assert_eq!(
        totals.github,
        GitHubCalls {
            jit_configs: n,
            runner_lookups: 0,
            runner_removals: 0,
        }
    );

    // Shutdown: the listener deletes its session and says so in the status.
    assert_eq!(s.sessions(), 1);
    s.shutdown().await.expect("run_scale_set ends cleanly");
    assert_eq!(s.sessions(), 0, "the session was deleted");
    assert_eq!(s.fake.request_count(Endpoint::DeleteSession), 1);
    let status = s.status().await;
    assert_eq!(status.session_id, None);
    assert_eq!(status.scale_set_id, Some(s.scale_set_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_runners_caps_the_pods_below_the_queued_jobs() {
    let mut s = start("e2e-capped", 0, 5).await;
    s.queue_jobs(8);
    s.until("five runner pods", || async {
        (s.pod_names().await.len() == 5).then_some(())
    })
    .await;
    s.until("the status to show 5 desired and 5 current", || async {
        let status = s.status().await;
        (status.desired_runners == Some(5) && status.current_runners == Some(5)).then_some(())
    })
    .await;
    // Several more passes (resync is 1 s, the long poll 300 ms) change nothing.
    let passes_from = s.fake.request_count(Endpoint::GetMessage);
    s.until("three more polls", || async {
        (s.fake.request_count(Endpoint::GetMessage) >= passes_from + 3).then_some(())
    })
    .await;
    assert_eq!(s.pod_names().await.len(), 5);
    assert_eq!(s.registered().len(), 5);
    assert_eq!(s.totals.borrow().kube.pod_creates, 5);
    let capacity = s
        .fake
        .snapshot()
        .sessions
        .iter()
        .find(|x| x.scale_set_id == s.scale_set_id)
        .and_then(|x| x.max_capacity);
    assert_eq!(capacity, Some(5));

    s.shutdown().await.expect("run_scale_set ends cleanly");
    assert_eq!(s.sessions(), 0, "the session was deleted");
}
