//! The sandbox's real node: kubelet 1.20.2, containerd and runc run pods as
//! containers from images built on this machine. What the controller meets
//! in production, seen here for real: logs served by the kubelet, a runner
//! container that exits while its dind sidecar keeps the pod Running, the
//! kernel's OOM kill, projected tokens, loopback ports reached from
//! `hostNetwork` pods, and a `down` that leaves nothing behind.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::Api;
use kube::api::{LogParams, PostParams};
use runway_sandbox::cluster::StartOptions;
use runway_sandbox::node::ForwardBy;
use runway_sandbox::{ControlPlane, images, node_test_namespace, wait};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("a pod")
}

fn container(name: &str, image: &str, script: &str) -> serde_json::Value {
    json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
    })
}

async fn until_pod<F>(pods: &Api<Pod>, name: &str, what: &str, check: F) -> Pod
where
    F: Fn(&Pod) -> bool,
{
    let found = wait::until(what, WAIT, || async {
        pods.get(name).await.ok().filter(|p| check(p))
    })
    .await;
    match found {
        Ok(pod) => pod,
        Err(e) => panic!(
            "{e}; the pod is now {:#?}",
            pods.get(name).await.ok().and_then(|p| p.status)
        ),
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn terminated<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

fn running(pod: &Pod, container: &str) -> bool {
    runway_sandbox::play::container_running(pod, container)
}

async fn logs(pods: &Api<Pod>, name: &str, container: &str) -> String {
    pods.logs(
        name,
        &LogParams {
            container: Some(container.into()),
            ..LogParams::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("logs of {name}/{container} through the kubelet: {e}"))
}

#[tokio::test]
async fn a_pod_runs_in_containers_and_its_logs_come_from_the_kubelet() {
    let ns = node_test_namespace().await;
    let pods: Api<Pod> = ns.api();
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [container(
            "main",
            images::RUNNER,
            "echo hello-from-a-real-container; id -u; ip=$(hostname -i); echo \"pod ip $ip\"",
        )],
    });
    pods.create(&PostParams::default(), &pod("hello", spec))
        .await
        .expect("create the pod");
    let done = until_pod(&pods, "hello", "the pod to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(terminated(&done, "main").map(|t| t.exit_code), Some(0));
    let text = logs(&pods, "hello", "main").await;
    assert!(text.contains("hello-from-a-real-container"), "{text}");
    // The runner image runs as ARC's runner user.
    assert!(text.lines().any(|l| l.trim() == "1001"), "{text}");
    // Without hostNetwork the pod gets an address on the node's bridge.
    assert!(text.contains("pod ip 10.88."), "{text}");
}

#[tokio::test]
async fn a_runner_container_that_exits_leaves_the_pod_running_while_dind_runs() {
    let ns = node_test_namespace().await;
    let pods: Api<Pod> = ns.api();
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [
            container("runner", images::RUNNER, "echo job done; exit 0"),
            {
                "name": "dind",
                "image": images::DIND,
                "imagePullPolicy": "Never",
            },
        ],
    });
    pods.create(&PostParams::default(), &pod("runner-exits", spec))
        .await
        .expect("create the pod");
    let seen = until_pod(&pods, "runner-exits", "the runner container to end", |p| {
        terminated(p, "runner").is_some()
    })
    .await;
    let runner = terminated(&seen, "runner").expect("terminated");
    assert_eq!(runner.exit_code, 0);
    assert_eq!(runner.reason.as_deref(), Some("Completed"));
    assert!(running(&seen, "dind"), "{:#?}", seen.status);
    // The kubelet keeps the pod Running: the phase says nothing about the
    // runner's end on Kubernetes < 1.29.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = pods.get("runner-exits").await.expect("the pod");
    assert_eq!(phase(&later), "Running", "{:#?}", later.status);
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed_by_the_kernel() {
    let ns = node_test_namespace().await;
    let pods: Api<Pod> = ns.api();
    let mut hungry = container(
        "runner",
        images::RUNNER,
        // `tail` keeps the last line, and /dev/zero has no newline.
        "head -c 200m /dev/zero | tail",
    );
    hungry["resources"] = json!({ "limits": { "memory": "32Mi" } });
    let spec = json!({ "restartPolicy": "Never", "containers": [hungry] });
    pods.create(&PostParams::default(), &pod("hungry", spec))
        .await
        .expect("create the pod");
    let ended = until_pod(&pods, "hungry", "the pod to fail", |p| phase(p) == "Failed").await;
    let runner = terminated(&ended, "runner").expect("terminated");
    assert_eq!(runner.reason.as_deref(), Some("OOMKilled"), "{runner:?}");
    assert_eq!(runner.exit_code, 137);
}

#[tokio::test]
async fn projected_tokens_appear_where_the_pod_spec_says_and_nowhere_else() {
    let ns = node_test_namespace().await;
    let pods: Api<Pod> = ns.api();
    let irsa = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
    let mut with_token = container(
        "with",
        images::BASE,
        &format!(
            "cut -d. -f2 {irsa}/token | base64 -d 2>/dev/null; echo; \
             ls /var/run/secrets/kubernetes.io/serviceaccount/"
        ),
    );
    with_token["volumeMounts"] =
        json!([{ "name": "aws-iam-token", "mountPath": irsa, "readOnly": true }]);
    let without = container(
        "without",
        images::BASE,
        &format!("ls {irsa} 2>&1 || echo no-irsa-token"),
    );
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [with_token, without],
        "volumes": [{
            "name": "aws-iam-token",
            "projected": { "sources": [{ "serviceAccountToken": {
                "audience": "sts.amazonaws.com",
                "expirationSeconds": 3600,
                "path": "token",
            }}]},
        }],
    });
    pods.create(&PostParams::default(), &pod("tokens", spec))
        .await
        .expect("create the pod");
    until_pod(&pods, "tokens", "the pod to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let with = logs(&pods, "tokens", "with").await;
    assert!(with.contains("\"sts.amazonaws.com\""), "{with}");
    assert!(
        with.contains(&format!("system:serviceaccount:{}:default", ns.name())),
        "{with}"
    );
    // The automounted API token is there too, at its own path.
    assert!(with.contains("token"), "{with}");
    let without = logs(&pods, "tokens", "without").await;
    assert!(without.contains("no-irsa-token"), "{without}");
}

#[tokio::test]
async fn a_host_network_pod_reaches_a_loopback_port_forwarded_from_the_machine() {
    let ns = node_test_namespace().await;
    let pods: Api<Pod> = ns.api();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 14\r\n\r\nfrom-the-host\n")
                .await;
        }
    });
    let _forward = runway_sandbox::shared_node()
        .forward_to_node(port)
        .expect("forward the port into the node");
    let spec = json!({
        "restartPolicy": "Never",
        "hostNetwork": true,
        "containers": [container(
            "main",
            images::BASE,
            &format!("wget -qO- http://127.0.0.1:{port}/"),
        )],
    });
    pods.create(&PostParams::default(), &pod("reach", spec))
        .await
        .expect("create the pod");
    until_pod(&pods, "reach", "the pod to succeed", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let text = logs(&pods, "reach", "main").await;
    assert!(text.contains("from-the-host"), "{text}");
}

/// A node of its own (not the shared one), taken down while a pod runs: no
/// process, mount or network device is left.
#[tokio::test]
async fn down_leaves_no_process_mount_container_or_network_device() {
    let bins = runway_sandbox::binaries::Binaries::locate().expect("binaries");
    let name = format!("down-{}", std::process::id());
    let dir = runway_sandbox::paths::cache_root()
        .join("sandbox")
        .join(&name);
    let options = StartOptions {
        node: Some(ForwardBy::Thread),
    };
    let plane = ControlPlane::start_with(&name, &dir, &bins, &options)
        .await
        .expect("a sandbox with a node");
    let client = plane.admin_client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    wait::until("the default ServiceAccount", WAIT, || async {
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(plane.admin_client().await.ok()?, "default");
        accounts
            .get("default")
            .await
            .ok()?
            .secrets
            .filter(|s| !s.is_empty())
    })
    .await
    .expect("the token controller");
    let spec = json!({
        "restartPolicy": "Never",
        "containers": [container("sleeper", images::BASE, "sleep 4242")],
    });
    pods.create(&PostParams::default(), &pod("sleeper", spec))
        .await
        .expect("create the pod");
    until_pod(&pods, "sleeper", "the pod to run", |p| {
        running(p, "sleeper")
    })
    .await;
    let before = plane.node_leftovers().expect("a node");
    assert!(
        !before.processes.is_empty() && !before.mounts.is_empty(),
        "{before}"
    );
    assert!(
        sleepers().len() == 1,
        "the container's process: {:?}",
        sleepers()
    );

    plane.stop().expect("stop");
    let left = plane.node_leftovers().expect("a node");
    assert!(left.is_empty(), "left behind: {left}");
    assert!(
        sleepers().is_empty(),
        "container processes left: {:?}",
        sleepers()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Live `sleep 4242` processes on the machine (the test pod's container).
fn sleepers() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            runway_sandbox::process::is_alive(*pid)
                && runway_sandbox::process::cmdline(*pid).is_some_and(|c| c == "sleep 4242")
        })
        .collect()
}
