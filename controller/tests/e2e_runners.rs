//! Runner behaviour end to end: `run_scale_set` against the sandbox's real
//! kube-apiserver and the fake GitHub (see `e2e.rs`). Each test drives one
//! scale set through a runner's life the way a cluster would: the kubelet
//! (runs, OOM kills), GitHub's runners (start and complete jobs), cancelled
//! workflows (a job completed with no runner), someone deleting a pod.

mod common;

use std::collections::BTreeSet;

use common::scale_set::{only, start};
use kube::api::DeleteParams;
use runway_controller::runner::RUNNER_CONTAINER;
use runway_sandbox::github::{Endpoint, JobState};
use runway_sandbox::kubelet::{self, Termination};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_runners_zero_scales_to_zero() {
    let mut s = start("e2e-zero", 0, 5).await;

    // Idle with no jobs: no runner at all, however long the listener polls.
    let polls = s.fake.request_count(Endpoint::GetMessage);
    s.until("three more listener polls", || async {
        (s.fake.request_count(Endpoint::GetMessage) >= polls + 3).then_some(())
    })
    .await;
    s.more_passes(2).await;
    assert!(s.pod_names().await.is_empty(), "{:?}", s.pod_names().await);
    assert!(s.secret_names().await.is_empty());
    assert!(s.registered().is_empty());
    assert_eq!(s.jit_configs(), 0);
    s.until_status(0, 0, Some(0), Some(0)).await;

    // Two jobs: two runners.
    let jobs = s.queue_jobs(2);
    let pods = s.runners(2).await;
    s.until("the listener to acquire both jobs", || async {
        (s.jobs_in(JobState::Assigned) == 2).then_some(())
    })
    .await;
    s.set_running(&pods).await;
    s.until_status(2, 2, Some(2), Some(0)).await;

    // Both workflows are cancelled before a runner takes them: the jobs
    // complete with no runner, and the idle runners are scaled away.
    for job in &jobs {
        s.fake.complete_job(*job, "canceled").expect("cancel");
    }
    for pod in &pods {
        s.until_gone(pod).await;
    }
    s.until("every JIT Secret collected", || async {
        s.secret_names().await.is_empty().then_some(())
    })
    .await;
    s.until_status(0, 0, Some(0), Some(0)).await;
    assert!(s.registered().is_empty(), "{:?}", s.registered());
    assert_eq!(s.jobs_in(JobState::Completed), 2);

    // And it stays at zero: nothing replaces them.
    s.more_passes(3).await;
    assert!(s.pod_names().await.is_empty(), "{:?}", s.pod_names().await);
    assert_eq!(s.jit_configs(), 2);

    s.shutdown().await.expect("run_scale_set ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_runners_keeps_idle_runners_warm() {
    let mut s = start("e2e-warm", 2, 5).await;

    // Two idle runners with no job, and they stay the same two.
    let warm = s.runners(2).await;
    s.set_running(&warm).await;
    s.until_status(2, 2, Some(2), Some(0)).await;
    s.more_passes(3).await;
    assert_eq!(s.pod_names().await, warm);
    assert_eq!(s.jit_configs(), 2);

    // A job: minRunners idle plus one per assigned job, so a third runner.
    let job = s.queue_jobs(1)[0];
    s.until("the listener to acquire the job", || async {
        (s.jobs_in(JobState::Assigned) == 1).then_some(())
    })
    .await;
    let all = s.runners(3).await;
    assert!(all.is_superset(&warm), "{all:?} keeps {warm:?}");
    let third = only(&all.difference(&warm).cloned().collect());

    // One of the warm runners takes it and finishes it.
    let taker = warm.iter().next().cloned().unwrap();
    let other = warm.iter().nth(1).cloned().unwrap();
    s.fake.start_job(job, &taker).expect("start the job");
    s.until_busy(&taker).await;
    s.until_status(3, 3, None, Some(1)).await;
    s.fake.complete_job(job, "succeeded").expect("complete");

    // It goes; the new runner keeps the pool at two.
    s.until_gone(&taker).await;
    let after = s.runners(2).await;
    assert_eq!(after, BTreeSet::from([other.clone(), third.clone()]));
    assert!(!warm.contains(&third), "{third} is a new runner");
    s.until_status(2, 2, None, Some(0)).await;
    s.more_passes(3).await;
    assert_eq!(s.pod_names().await, after);
    assert_eq!(s.jit_configs(), 3);
    let done = s.job(job);
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.runner_name.as_deref(), Some(taker.as_str()));

    s.shutdown().await.expect("run_scale_set ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_runner_is_never_deleted_on_scale_down() {
    let mut s = start("e2e-busy", 0, 10).await;

    let jobs = s.queue_jobs(3);
    let pods = s.runners(3).await;
    s.until("the listener to acquire the jobs", || async {
        (s.jobs_in(JobState::Assigned) == 3).then_some(())
    })
    .await;
    s.set_running(&pods).await;
    s.until_status(3, 3, Some(3), Some(0)).await;

    // One runner takes a job; the other two jobs are cancelled.
    let busy = pods.iter().next().cloned().unwrap();
    s.fake.start_job(jobs[0], &busy).expect("start the job");
    s.until_busy(&busy).await;
    let uid = s.pod(&busy).await.and_then(|p| p.metadata.uid);
    for job in &jobs[1..] {
        s.fake.complete_job(*job, "canceled").expect("cancel");
    }

    // Desired falls to one: two runners go, and they are the idle ones.
    s.until("the scale-down to one runner pod", || async {
        (s.pod_names().await.len() <= 1).then_some(())
    })
    .await;
    assert_eq!(
        s.pod_names().await,
        BTreeSet::from([busy.clone()]),
        "the busy runner {busy} is the one left"
    );
    for pod in pods.iter().filter(|p| **p != busy) {
        s.until_gone(pod).await;
    }
    s.until_status(1, 1, Some(0), Some(1)).await;
    for pass in 0..5 {
        s.more_passes(1).await;
        let pod = s.pod(&busy).await;
        let pod = pod.unwrap_or_else(|| panic!("busy pod {busy} deleted after {pass} passes"));
        assert_eq!(pod.metadata.uid, uid, "the same pod {busy}");
        assert!(
            pod.metadata.deletion_timestamp.is_none(),
            "busy pod {busy} is being deleted after {pass} passes"
        );
        assert!(
            s.registered().contains(&busy),
            "busy runner {busy} unregistered after {pass} passes"
        );
        assert_eq!(s.pod_names().await, BTreeSet::from([busy.clone()]));
    }
    assert_eq!(s.job(jobs[0]).state, JobState::Running);

    // Its job ends: it goes too, and nothing replaces it.
    s.fake.complete_job(jobs[0], "succeeded").expect("complete");
    s.until_gone(&busy).await;
    s.until("every JIT Secret collected", || async {
        s.secret_names().await.is_empty().then_some(())
    })
    .await;
    s.until_status(0, 0, Some(0), Some(0)).await;
    assert!(s.registered().is_empty(), "{:?}", s.registered());
    assert_eq!(s.jit_configs(), 3);

    s.shutdown().await.expect("run_scale_set ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runner_oomkilled_is_replaced_by_a_new_runner() {
    let mut s = start("e2e-oom", 1, 5).await;

    let old = only(&s.runners(1).await);
    s.set_running([&old]).await;
    s.until_status(1, 1, Some(1), Some(0)).await;
    let old_config = s.jit_config(&old).await.expect("the JIT Secret");
    let configs = s.jit_configs();
    assert_eq!(configs, 1);

    kubelet::set_terminated(&s.pods(), &old, RUNNER_CONTAINER, Termination::oom_killed())
        .await
        .expect("report the runner OOM-killed");

    // The dead runner goes, pod and registration; a new one takes its place
    // with a new name and a new JIT config (a JIT config is used once).
    let new = s.until_replaced(&old).await;
    assert_ne!(new, old);
    let new_config = s
        .until("the replacement's JIT Secret", || s.jit_config(&new))
        .await;
    assert_ne!(new_config, old_config, "a new JIT config");
    assert_eq!(s.secret_names().await.len(), 1, "the old JIT Secret went");
    s.set_running([&new]).await;
    s.until_status(1, 1, Some(1), Some(0)).await;
    s.more_passes(3).await;
    assert_eq!(s.pod_names().await, BTreeSet::from([new.clone()]));
    assert_eq!(s.jit_configs(), configs + 1, "exactly one new JIT config");
    assert_eq!(s.registered(), BTreeSet::from([new.clone()]));

    // No job was lost: none was touched, and the next one runs on the new
    // runner.
    assert!(s.fake.snapshot().jobs.is_empty());
    let job = s.queue_jobs(1)[0];
    s.until("the listener to acquire the job", || async {
        (s.jobs_in(JobState::Assigned) == 1).then_some(())
    })
    .await;
    s.fake
        .start_job(job, &new)
        .expect("the new runner starts the job");
    s.fake.complete_job(job, "succeeded").expect("complete");
    s.until_gone(&new).await;
    let done = s.job(job);
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.result.as_deref(), Some("succeeded"));
    assert_eq!(done.runner_name.as_deref(), Some(new.as_str()));

    s.shutdown().await.expect("run_scale_set ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_by_someone_is_replaced() {
    let mut s = start("e2e-deleted", 1, 5).await;

    let old = only(&s.runners(1).await);
    s.set_running([&old]).await;
    s.until_status(1, 1, Some(1), Some(0)).await;
    assert!(s.registered().contains(&old));

    s.pods()
        .delete(&old, &DeleteParams::default())
        .await
        .expect("delete the runner pod");

    // Its registration is removed before the pod may go, and a new runner
    // takes its place.
    s.until_gone(&old).await;
    let new = only(&s.runners(1).await);
    assert_ne!(new, old);
    s.set_running([&new]).await;
    s.until_status(1, 1, Some(1), Some(0)).await;
    s.more_passes(3).await;
    assert_eq!(s.pod_names().await, BTreeSet::from([new.clone()]));
    assert_eq!(s.registered(), BTreeSet::from([new]));
    assert_eq!(s.jit_configs(), 2);

    s.shutdown().await.expect("run_scale_set ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_runners_waiting_for_assigned_jobs() {
    let mut s = start("e2e-restart", 0, 5).await;
    s.queue_jobs(2);
    let runners = s.runners(2).await;
    s.set_running(&runners).await;
    s.until_status(2, 2, Some(2), Some(0)).await;

    // Before the new listener's session says two jobs are assigned, its
    // supervisor must not take "nothing assigned" for the truth.
    s.restart().await;
    s.more_passes(3).await;
    assert_eq!(s.pod_names().await, runners, "the same two runners");
    assert_eq!(s.jit_configs(), 2, "no runner was made again");
    assert_eq!(s.registered(), runners);
}
