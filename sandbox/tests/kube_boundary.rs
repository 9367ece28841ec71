//! The Kubernetes allowlist as a boundary, end to end on the sandbox's real
//! node: the controller chart and a scale-set release with
//! `kubernetesActions` installed by the real Helm SDK, the real
//! `runway-controller` building the runner pod, the kubelet running it from
//! the runner image built here, and the stand-in runner running a job whose
//! steps try everything a job could:
//! - the runner container has no ServiceAccount token (none mounted, no
//!   file), and a direct call to the API server without one gets 401/403;
//! - `runway kube get` goes through the executor beside the job, which holds
//!   the token, and succeeds; `runway kube delete` outside the allowlist
//!   exits 3.
//!
//! Runner pods use `hostNetwork: true` to reach the fake GitHub and the API
//! server on the node's loopback (see sandbox/src/node/forward.rs).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, ListParams};
use runway_sandbox::github::{FakeGitHub, FakeOptions, JobReport, NewJob};
use runway_sandbox::{node_test_namespace, shared_node, wait};
use serde_json::json;
use support::{
    helm_install, helm_uninstall, install_controller_chart, rss_api, start_chart_controller,
};

const RELEASE: &str = "guarded";
const PAT: &str = "ghp_kubeBoundaryExample";
const SCALE_SET_LABEL: &str = "actions.runway.dev/scale-set";
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const WAIT: Duration = Duration::from_secs(180);

/// The mounts of container `name` (init containers included).
fn mounts_of(pod: &Pod, name: &str) -> Vec<String> {
    let spec = pod.spec.as_ref().expect("a pod spec");
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name} in {:#?}", spec))
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect()
}

#[tokio::test]
async fn a_job_step_holds_no_token_and_acts_only_through_the_executor() {
    let plane = shared_node();
    let system = node_test_namespace().await;
    let team = node_test_namespace().await;
    let kubeconfig = plane.kubeconfig_path().to_path_buf();
    let fake = FakeGitHub::start_with(FakeOptions {
        long_poll_timeout: Duration::from_secs(2),
        ..FakeOptions::default()
    })
    .await
    .expect("the fake GitHub starts");
    fake.add_pat(PAT);
    let _forward = plane
        .forward_to_node(fake.addr().port())
        .expect("the fake GitHub's port forwarded into the node");

    let mut args = install_controller_chart(&system, team.name()).await;
    args.extend(["--lease-namespace".to_string(), system.name().to_string()]);
    let dir = std::env::temp_dir().join(format!("runway-kube-boundary-{}", system.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut controller = start_chart_controller(&system, &args, &dir).await;

    let pod_spec = runway_sandbox::node::runner_pod_spec(plane.state().api_port, false);
    let values = json!({
        "githubConfigUrl": fake.config_url("my-org"),
        "githubConfigSecret": {"github_token": PAT},
        "minRunners": 1,
        "maxRunners": 1,
        "template": {"spec": serde_json::to_value(&pod_spec).unwrap()},
        "kubernetesActions": {"pods": ["get", "list"]},
    });
    let release = helm_install(
        "runway-scale-set",
        RELEASE,
        team.name(),
        &values,
        &kubeconfig,
    )
    .await;
    assert_eq!(release.status, "deployed");

    // The pod the controller built: the runner holds no token, the
    // executor does.
    let pods = team.api::<Pod>();
    let pod = wait::until("the runner pod running", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels(SCALE_SET_LABEL))
            .await
            .ok()?;
        list.items.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Running")
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.tail()));
    controller.assert_alive();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let runner_mounts = mounts_of(&pod, "runner");
    assert!(
        !runner_mounts.iter().any(|m| m.starts_with(TOKEN_DIR)),
        "{runner_mounts:?}"
    );
    let executor_mounts = mounts_of(&pod, "runway-executor");
    assert!(
        executor_mounts.iter().any(|m| m == TOKEN_DIR),
        "{executor_mounts:?}"
    );
    let runner_name = pod.metadata.name.clone().unwrap();

    // A job that tries the API server with and without runway.
    let scale_set_id = rss_api(team.client(), team.name())
        .get(RELEASE)
        .await
        .ok()
        .and_then(|o: DynamicObject| o.data["status"]["scaleSetId"].as_i64())
        .expect("the scale set's id");
    let direct = format!(
        "wget -q -O /dev/null --no-check-certificate \"https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/{}/pods\" 2>&1 | tail -n 1; echo direct-done",
        team.name()
    );
    let steps = vec![
        format!(
            "if [ -e {TOKEN_DIR}/token ]; then echo token-present; else echo no-token-file; fi"
        ),
        direct,
        format!("runway kube get pods/{runner_name}; echo get-exit=$?"),
        "runway kube list pods > /dev/null; echo list-exit=$?".to_string(),
        "runway kube delete pods/x; echo delete-exit=$?".to_string(),
    ];
    let job = fake
        .queue_job(
            scale_set_id,
            NewJob {
                steps,
                ..NewJob::default()
            },
        )
        .runner_request_id;
    let report: JobReport =
        wait::until("the job's report", WAIT, || async { fake.job_report(job) })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", controller.tail()));
    let output = report.output_tail.join("\n");
    assert_eq!(report.result, "succeeded", "{output}");
    // The runner echoes each step's command: look at whole lines of output.
    let said = |line: &str| report.output_tail.iter().any(|l| l.trim() == line);
    assert!(said("no-token-file"), "{output}");
    assert!(!said("token-present"), "{output}");
    // No credential: the API server says who you are not (401) or what
    // anonymous may not do (403).
    assert!(
        said("wget: server returned error: HTTP/1.1 401 Unauthorized")
            || said("wget: server returned error: HTTP/1.1 403 Forbidden"),
        "{output}"
    );
    assert!(
        said(&format!("pod {}/{runner_name}", team.name())),
        "{output}"
    );
    assert!(said("get-exit=0"), "{output}");
    assert!(said("list-exit=0"), "{output}");
    assert!(said("delete-exit=3"), "{output}");
    assert!(
        output.contains("add \"delete\" to `kubernetesActions.pods`"),
        "{output}"
    );
    controller.assert_alive();

    // Uninstalled, the release leaves no runner pod behind on the node.
    helm_uninstall(RELEASE, team.name(), &kubeconfig).await;
    wait::until("no runner pod left", WAIT, || async {
        let left = pods
            .list(&ListParams::default().labels(SCALE_SET_LABEL))
            .await
            .ok()?;
        left.items.is_empty().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.tail()));
    controller.stop().await;
}
