//! The controller against a real kubelet: `run_scale_set` in-process, the
//! sandbox's node (kubelet 1.20.2, containerd, runc) running the runner pods
//! from images built on this machine, and the stand-in runner in the runner
//! container taking its job from the fake GitHub and running the job's steps
//! as shell commands. Nobody writes pod status here but the kubelet.
//!
//! Runner pods use `hostNetwork: true` (the node's own network namespace) to
//! reach the fake GitHub and the API server on 127.0.0.1: both ports are
//! forwarded into the node (see sandbox/src/node/forward.rs).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::scale_set::{Running, SECRET, launch, stored_in};
use k8s_openapi::api::core::v1::{Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use runway_controller::runner::{Settings, jit_secret_name};
use runway_sandbox::github::{JobReport, NewJob};
use runway_sandbox::node::Forward;
use runway_sandbox::{node_test_namespace, shared_node, wait};

/// Pods start in seconds on this node; a job's steps take what they take.
const NODE_WAIT: Duration = Duration::from_secs(120);

/// A scale set whose runner pods run the stand-in runner (and, with
/// `dind`, a stand-in dind sidecar), on the node's network.
struct NodeScaleSet {
    running: Running,
    _forward: Forward,
}

/// The sandbox's runner pod (stand-in runner, optionally dind) with a
/// memory limit on the runner container.
fn runner_pod(memory_limit: Option<&str>, dind: bool) -> PodSpec {
    let mut spec = runway_sandbox::node::runner_pod_spec(shared_node().state().api_port, dind);
    if let (Some(limit), Some(runner)) = (memory_limit, spec.containers.first_mut()) {
        runner.resources = Some(ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity(limit.into()))].into()),
            ..ResourceRequirements::default()
        });
    }
    spec
}

async fn start_on_node(name: &str, min: i32, max: i32, pod: PodSpec) -> NodeScaleSet {
    start_on_node_with(name, min, max, pod, |_| {}).await
}

async fn start_on_node_with(
    name: &str,
    min: i32,
    max: i32,
    pod: PodSpec,
    tune: impl FnOnce(&mut Settings),
) -> NodeScaleSet {
    let ns = node_test_namespace().await;
    let fake = common::start_fake().await;
    let forward = shared_node()
        .forward_to_node(fake.addr().port())
        .expect("the fake GitHub's port forwarded into the node");
    let mut spec = common::scale_set_spec(&fake, SECRET, min, Some(max));
    spec.template.spec = Some(pod);
    let (ns, fake, rss) = stored_in(ns, fake, name, spec).await;
    NodeScaleSet {
        running: launch(ns, fake, rss, tune).await,
        _forward: forward,
    }
}

impl NodeScaleSet {
    fn queue(&self, steps: &[&str]) -> i64 {
        let job = NewJob {
            steps: steps.iter().map(|s| s.to_string()).collect(),
            ..NewJob::default()
        };
        self.running
            .fake
            .queue_job(self.running.scale_set_id, job)
            .runner_request_id
    }

    async fn report(&self, job: i64) -> JobReport {
        let found = wait::until(
            "the stand-in runner's report of the job",
            NODE_WAIT,
            || async { self.running.fake.job_report(job) },
        )
        .await;
        match found {
            Ok(report) => report,
            Err(e) => panic!("{e}; runner pods: {:#?}", self.pod_states().await),
        }
    }

    /// Waits until no runner pod, JIT Secret or registration of the scale
    /// set is left.
    async fn until_no_runners(&self) {
        let gone = wait::until(
            "no runner pod, JIT Secret or registration left",
            NODE_WAIT,
            || async {
                (self.running.pod_names().await.is_empty()
                    && self.running.secret_names().await.is_empty()
                    && self.running.registered().is_empty())
                .then_some(())
            },
        )
        .await;
        if let Err(e) = gone {
            panic!(
                "{e}; pods {:#?}, secrets {:?}, registered {:?}",
                self.pod_states().await,
                self.running.secret_names().await,
                self.running.registered()
            );
        }
    }

    async fn pod_states(&self) -> Vec<(String, Option<String>, String)> {
        self.running
            .pod_list()
            .await
            .into_iter()
            .map(|p| {
                let statuses = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_default();
                (
                    p.metadata.name.unwrap_or_default(),
                    p.status.and_then(|s| s.phase),
                    statuses,
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_steps_run_in_the_runner_container_and_the_runner_is_removed() {
    let s = start_on_node("node-job", 0, 1, runner_pod(None, false)).await;
    let job = s.queue(&[
        "echo step-one-ran",
        "test -x /home/runner/run.sh && echo in-the-runner-image",
        "runway --version",
        "id -u",
    ]);
    let report = s.report(job).await;
    assert_eq!(report.result, "succeeded", "{report:?}");
    let out = report.output_tail.join("\n");
    for line in ["step-one-ran", "in-the-runner-image", "1001"] {
        assert!(
            out.contains(line),
            "{line} missing from the job's output:\n{out}"
        );
    }
    s.until_no_runners().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_job_and_the_runner_still_ends() {
    let s = start_on_node("node-fail", 0, 1, runner_pod(None, false)).await;
    let job = s.queue(&["echo before", "exit 3", "echo never"]);
    let report = s.report(job).await;
    assert_eq!(report.result, "failed", "{report:?}");
    assert_eq!(report.failed_step, Some(2));
    assert_eq!(report.exit_code, Some(3));
    assert!(!report.output_tail.iter().any(|l| l.contains("never")));
    s.until_no_runners().await;
}

/// `runway kube get pods` from a job step, with the runner pod's own
/// ServiceAccount token, against the real API server: it reads the runner's
/// own pod (GitHub's runner names itself in `RUNNER_NAME`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_step_runs_runway_kube_against_the_api_server() {
    let s = start_on_node("node-kube", 0, 1, runner_pod(None, false)).await;
    s.running.ns.grant_pod_reads("default").await;
    let job = s.queue(&[
        "printf 'actions:\\n  pods: [get]\\n' > /tmp/allowlist.yaml",
        "RUNWAY_KUBE_ALLOWLIST=/tmp/allowlist.yaml runway kube get \"pods/$RUNNER_NAME\" -n \"$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)\"",
    ]);
    let report = s.report(job).await;
    let out = report.output_tail.join("\n");
    assert_eq!(report.result, "succeeded", "{out}");
    assert!(out.contains(&report.runner_name), "{out}");
    s.until_no_runners().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_job_gets_its_runner_replaced_with_a_new_jit_config() {
    let s = start_on_node("node-oom", 1, 1, runner_pod(Some("48Mi"), false)).await;
    let first: BTreeSet<String> = s.running.runners(1).await;
    let first_name = first.iter().next().cloned().unwrap_or_default();
    let first_jit = s.running.jit_config(&first_name).await;
    let job = s.queue(&["echo allocating", "head -c 300m /dev/zero | tail"]);
    // The kernel kills the runner container; no report comes from it.
    let oom = wait::until("the runner container OOM-killed", NODE_WAIT, || async {
        let pod: Pod = s.running.pod(&first_name).await?;
        pod.status?
            .container_statuses?
            .into_iter()
            .find(|c| c.name == "runner")?
            .state?
            .terminated
            .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
    })
    .await;
    if let Err(e) = oom {
        panic!("{e}; pods {:#?}", s.pod_states().await);
    }
    // The controller replaces the runner: a new name and a new JIT config.
    let replaced = wait::until(
        "a new runner in place of the OOM-killed one",
        NODE_WAIT,
        || async {
            let names = s.running.pod_names().await;
            (names.len() == 1 && !names.contains(&first_name)).then_some(names)
        },
    )
    .await;
    let names = match replaced {
        Ok(names) => names,
        Err(e) => panic!("{e}; pods {:#?}", s.pod_states().await),
    };
    let second = names.iter().next().cloned().unwrap_or_default();
    let second_jit = wait::until("the new runner's JIT Secret", NODE_WAIT, || async {
        s.running.jit_config(&second).await
    })
    .await
    .expect("a JIT Secret");
    assert_ne!(Some(second_jit), first_jit);
    assert!(
        s.running
            .secret_names()
            .await
            .contains(&jit_secret_name(&second))
    );
    assert!(!s.running.registered().contains(&first_name));
    // The kernel killed the step's biggest process (the job's): the runner
    // reported the job failed with the step's SIGKILL, as GitHub's would.
    let report = s.report(job).await;
    assert_eq!(report.result, "failed", "{report:?}");
    assert_eq!(report.failed_step, Some(2), "{report:?}");
    assert_eq!(report.exit_code, Some(137), "{report:?}");
}

/// Kubernetes 1.20 has no native sidecars: when the job is done the runner
/// container exits and the dind container keeps the pod `Running`. The
/// runner container's end is the runner's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_dind_sidecar_the_runner_containers_exit_ends_the_runner() {
    let s = start_on_node("node-dind", 0, 1, runner_pod(None, true)).await;
    let job = s.queue(&["echo with-dind"]);
    let report = s.report(job).await;
    assert_eq!(report.result, "succeeded", "{report:?}");
    s.until_no_runners().await;
}

/// An image no registry serves (the node has no route off the machine; the
/// registry named is a closed port on the node's own loopback): the kubelet
/// reports ErrImagePull, then ImagePullBackOff; the controller deletes the
/// pod after its grace and says which image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_is_a_startup_failure_naming_the_image() {
    let image = "127.0.0.1:9/runway/no-such-runner:1";
    let mut pod = runner_pod(None, false);
    if let Some(runner) = pod.containers.first_mut() {
        runner.image = Some(image.into());
        runner.image_pull_policy = Some("IfNotPresent".into());
    }
    let s = start_on_node_with("node-pull", 1, 1, pod, |settings| {
        settings.start_grace = Duration::from_secs(5);
    })
    .await;
    let first = s.running.runners(1).await;
    let condition = s
        .running
        .until("the RunnersFailingToStart condition", || async {
            s.running
                .status()
                .await
                .conditions
                .into_iter()
                .find(|c| c.type_ == "RunnersFailingToStart" && c.status == "True")
        })
        .await;
    assert_eq!(condition.reason, "ImagePullBackOff", "{condition:?}");
    assert!(
        condition.message.contains(&format!(
            "runner container image \"{image}\" cannot be pulled"
        )),
        "{}",
        condition.message
    );
    // The pod that could not start is gone, with its registration.
    let gone = wait::until("the first runner pod deleted", NODE_WAIT, || async {
        let names = s.running.pod_names().await;
        (!first.iter().any(|f| names.contains(f))
            && first.iter().all(|f| !s.running.registered().contains(f)))
        .then_some(())
    })
    .await;
    if let Err(e) = gone {
        panic!("{e}; pods {:#?}", s.pod_states().await);
    }
}
