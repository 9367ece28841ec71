//! The [`Player`] against the real API server and the fake GitHub, without
//! the controller: the test does the controller's part by hand (a scale
//! set, a session, JIT registrations, acquiring jobs, runner pods) and the
//! player does the kubelet's and the runners' part.

#[allow(dead_code)]
#[path = "fake_github/support.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use reqwest::StatusCode;
use runway_sandbox::github::{FakeGitHub, JobState, JobView, NewJob};
use runway_sandbox::play::{JobStart, PlayOptions, Player, RUNNER_CONTAINER, SCALE_SET_LABEL};
use runway_sandbox::{TestNamespace, test_namespace, wait};
use serde_json::json;
use support::{Service, Session, long_poll, scale_set_path, session_for};

const WAIT: Duration = Duration::from_secs(30);
const SCALE_SET: &str = "play";

/// A namespace, a fake with scale set `play` and a session on it (the
/// controller's side, done by hand).
struct Setup {
    ns: TestNamespace,
    fake: FakeGitHub,
    service: Service,
    id: i64,
    session: Session,
}

async fn setup() -> Setup {
    let ns = test_namespace().await;
    let (fake, service, id, session) = session_for(long_poll(100)).await;
    Setup {
        ns,
        fake,
        service,
        id,
        session,
    }
}

impl Setup {
    fn player(&self, job_duration: Duration) -> Player {
        Player::start(
            self.ns.client(),
            self.ns.name(),
            SCALE_SET,
            self.fake.clone(),
            self.id,
            PlayOptions {
                start_delay: Duration::from_millis(200),
                job_duration,
                tick: Duration::from_millis(50),
                ..PlayOptions::default()
            },
        )
    }

    /// Registers runner `name` through a JIT config and creates its pod.
    async fn runner(&self, name: &str) {
        let path = format!("{}/generatejitconfig", scale_set_path(self.id));
        let (status, jit) = self
            .service
            .post(&path, json!({"name": name, "workFolder": "_work"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{jit}");
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(SCALE_SET_LABEL.to_string(), SCALE_SET.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: RUNNER_CONTAINER.into(),
                    image: Some("ghcr.io/actions/actions-runner:latest".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        };
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create the runner pod");
    }

    /// Queues `n` jobs and acquires them (they become Assigned).
    async fn assigned_jobs(&self, n: usize) -> Vec<i64> {
        let jobs: Vec<i64> = (0..n)
            .map(|_| {
                self.fake
                    .queue_job(self.id, NewJob::default())
                    .runner_request_id
            })
            .collect();
        self.session
            .events_until(WAIT, |seen| seen.len() >= n)
            .await;
        let (status, acquired) = self.session.acquire(&self.service, &jobs).await;
        assert_eq!(status, StatusCode::OK, "{acquired}");
        assert_eq!(acquired["count"], json!(n), "{acquired}");
        jobs
    }

    fn pods(&self) -> Api<Pod> {
        self.ns.api()
    }

    fn job(&self, id: i64) -> JobView {
        self.fake
            .snapshot()
            .job(id)
            .cloned()
            .expect("the job exists")
    }

    async fn until_completed(&self, jobs: &[i64]) -> Vec<JobView> {
        wait::until("the jobs to complete", WAIT, || async {
            let views: Vec<JobView> = jobs.iter().map(|j| self.job(*j)).collect();
            views
                .iter()
                .all(|v| v.state == JobState::Completed)
                .then_some(views)
        })
        .await
        .unwrap()
    }

    async fn phase(&self, pod: &str) -> Option<String> {
        self.pods().get(pod).await.ok()?.status?.phase
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_pod_starts_runs_one_job_and_exits() {
    let s = setup().await;
    let player = s.player(Duration::from_millis(300));
    s.runner("play-runner-1").await;
    let jobs = s.assigned_jobs(1).await;

    let done = s.until_completed(&jobs).await;
    assert_eq!(done[0].result.as_deref(), Some("succeeded"));
    assert_eq!(done[0].runner_name.as_deref(), Some("play-runner-1"));
    wait::until("the pod to have exited", WAIT, || async {
        (s.phase("play-runner-1").await.as_deref() == Some("Succeeded")).then_some(())
    })
    .await
    .unwrap();
    let pod = s.pods().get("play-runner-1").await.unwrap();
    let container = &pod.status.unwrap().container_statuses.unwrap()[0];
    let terminated = container
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(
        (container.name.as_str(), terminated.exit_code),
        (RUNNER_CONTAINER, 0)
    );

    let stats = player.stats();
    assert_eq!(
        (
            stats.pods_set_running,
            stats.jobs_started,
            stats.jobs_completed,
            stats.pods_terminated,
            stats.jobs_abandoned
        ),
        (1, 1, 1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(
        player.starts(),
        vec![JobStart {
            runner_request_id: jobs[0],
            runner_name: "play-runner-1".into()
        }]
    );
    assert_eq!(player.watch().peak_live(), 1);
    // The ephemeral runner is gone from the fake with its job.
    assert!(s.fake.snapshot().runners.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_runner_takes_one_job_and_a_job_waits_for_a_new_runner() {
    let s = setup().await;
    let player = s.player(Duration::from_millis(200));
    s.runner("play-a").await;
    s.runner("play-b").await;
    let jobs = s.assigned_jobs(3).await;

    wait::until("two jobs done", WAIT, || async {
        let done = jobs
            .iter()
            .filter(|j| s.job(**j).state == JobState::Completed)
            .count();
        (done == 2).then_some(())
    })
    .await
    .unwrap();
    // Both runners exited after their job: the third job has no runner.
    for pod in ["play-a", "play-b"] {
        wait::until("the runner to exit", WAIT, || async {
            (s.phase(pod).await.as_deref() == Some("Succeeded")).then_some(())
        })
        .await
        .unwrap();
    }
    let waiting: Vec<i64> = jobs
        .iter()
        .copied()
        .filter(|j| s.job(*j).state == JobState::Assigned)
        .collect();
    assert_eq!(waiting.len(), 1, "{:?}", s.fake.snapshot().jobs);

    s.runner("play-c").await;
    let done = s.until_completed(&jobs).await;
    let third = done
        .iter()
        .find(|v| v.runner_request_id == waiting[0])
        .unwrap();
    assert_eq!(third.runner_name.as_deref(), Some("play-c"));

    let starts = player.starts();
    assert_eq!(starts.len(), 3, "{starts:?}");
    let mut runners: Vec<&str> = starts.iter().map(|s| s.runner_name.as_str()).collect();
    runners.sort_unstable();
    assert_eq!(runners, ["play-a", "play-b", "play-c"]);
    let mut started: Vec<i64> = starts.iter().map(|s| s.runner_request_id).collect();
    started.sort_unstable();
    let mut expected = jobs.clone();
    expected.sort_unstable();
    assert_eq!(started, expected);
    assert_eq!(player.stats().jobs_completed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_deleted_mid_job_fails_its_job() {
    let s = setup().await;
    let player = s.player(Duration::from_secs(600));
    s.runner("play-doomed").await;
    let jobs = s.assigned_jobs(1).await;
    wait::until("the job to run", WAIT, || async {
        (s.job(jobs[0]).state == JobState::Running).then_some(())
    })
    .await
    .unwrap();

    // Never scheduled, so the API server removes it at once.
    s.pods()
        .delete("play-doomed", &DeleteParams::default())
        .await
        .unwrap();
    let done = s.until_completed(&jobs).await;
    assert_eq!(done[0].result.as_deref(), Some("failed"));
    assert_eq!(player.stats().jobs_abandoned, 1);
    assert_eq!(player.stats().jobs_completed, 0);
}
