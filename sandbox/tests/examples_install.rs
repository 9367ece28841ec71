//! `examples/eks-arm64-dind-irsa.yaml` installed for real with the Helm 4
//! SDK, as its header says (`helm install arm-builders
//! charts/runway-scale-set -f examples/eks-arm64-dind-irsa.yaml`), with only
//! `githubConfigUrl` and `githubConfigSecret` overridden on top of the file
//! (as `--set` does) to point at the fake GitHub. The controller chart is
//! installed next to it and the real `runway-controller` runs with the
//! chart ServiceAccount's token.
//!
//! Checks: the scale set becomes Ready and Listening; the chart made the
//! runners' ServiceAccount with its IRSA role annotation; one queued job
//! gives a runner pod with the file's arm64 node selector, toleration,
//! ServiceAccount and `karpenter.sh/do-not-disrupt` annotation, and the dind
//! the controller adds (init container copying the externals, a privileged
//! `docker:dind` container, `DOCKER_HOST` in the runner). The sandbox has no
//! pod identity webhook, as a cluster without it: the controller replaces
//! the pod once (Event `RunnerPodWithoutIrsa`) and raises `IrsaMissing` on
//! the RunnerScaleSet. Uninstalling both releases leaves nothing behind.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{DynamicObject, ListParams, WatchEvent, WatchParams};
use runway_sandbox::github::{FakeGitHub, FakeOptions, NewJob};
use runway_sandbox::{TestNamespace, test_namespace, wait};
use serde_json::{Value, json};
use support::{
    CONTROLLER, Controller, events, example, helm_install, helm_uninstall,
    install_controller_chart, leftovers, rss_api, start_chart_controller,
};

/// The release name of the example's header.
const RELEASE: &str = "arm-builders";
/// The file's runnerScaleSetName.
const SCALE_SET: &str = "arm-builders";
/// The file's serviceAccount.name (the chart creates it).
const ACCOUNT: &str = "arm-builders-runner";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/arm-builders-ci";
/// The Secret the chart makes from `githubConfigSecret.github_token`.
const CHART_SECRET: &str = "arm-builders-gha-rs-github-secret";
const PAT: &str = "ghp_examplesInstallEksArm64";

const SCALE_SET_LABEL: &str = "actions.runway.dev/scale-set";
const WAIT: Duration = Duration::from_secs(90);

/// `overrides` on top of `base` as Helm merges `--set` over `-f`: maps
/// merge key by key, anything else is replaced.
fn merge_values(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge_values(existing, value)
                    }
                    _ => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overrides) => *base = overrides.clone(),
    }
}

/// Installs the controller chart watching `watched` and starts the real
/// controller with the args of the chart's Deployment and the chart
/// ServiceAccount's token.
async fn controller(system: &TestNamespace, watched: &str, dir: &Path) -> Controller {
    let mut args = install_controller_chart(system, watched).await;
    args.extend(["--lease-namespace".to_string(), system.name().to_string()]);
    let controller = start_chart_controller(system, &args, dir).await;
    eprintln!("controller log: {}", controller.log.display());
    controller
}

async fn runner_pods(ns: &TestNamespace) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("{SCALE_SET_LABEL}={SCALE_SET}")))
        .await
        .unwrap()
        .items
}

fn condition<'a>(rss: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    rss.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is_true(rss: &DynamicObject, type_: &str) -> bool {
    condition(rss, type_).is_some_and(|c| c["status"] == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_arm64_dind_irsa_example_installs_and_runs_a_job() {
    let started = Instant::now();
    let system = test_namespace().await;
    let team_ns = test_namespace().await;
    let kubeconfig = system.plane().kubeconfig_path().to_path_buf();
    let admin = system.client();
    let fake = FakeGitHub::start_with(FakeOptions {
        long_poll_timeout: Duration::from_secs(2),
        // The queued job stays with the scale set for the whole test.
        requeue_after: Duration::from_secs(3600),
        ..FakeOptions::default()
    })
    .await
    .expect("the fake GitHub starts");
    fake.add_pat(PAT);
    let config_url = fake.config_url("acme-corp");

    let dir = std::env::temp_dir().join(format!("runway-examples-install-{}", system.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut controller = controller(&system, team_ns.name(), &dir).await;

    // The file as it is, with what a user passes as
    // `--set githubConfigUrl=... --set githubConfigSecret.github_token=...`.
    let file = example("eks-arm64-dind-irsa");
    assert_eq!(file["runnerScaleSetName"], SCALE_SET);
    assert_eq!(file["serviceAccount"]["name"], ACCOUNT);
    let mut values = file.clone();
    merge_values(
        &mut values,
        &json!({
            "githubConfigUrl": config_url,
            "githubConfigSecret": { "github_token": PAT },
        }),
    );
    let mut untouched = values.clone();
    for key in ["githubConfigUrl", "githubConfigSecret"] {
        untouched[key] = file[key].clone();
    }
    assert_eq!(untouched, file, "only the two GitHub keys are overridden");
    let installed = helm_install(
        "runway-scale-set",
        RELEASE,
        team_ns.name(),
        &values,
        &kubeconfig,
    )
    .await;
    assert_eq!(installed.status, "deployed");

    // The runners' ServiceAccount, with the IRSA role, from the chart.
    let account = team_ns
        .api::<ServiceAccount>()
        .get(ACCOUNT)
        .await
        .expect("the chart's runner ServiceAccount");
    let annotations = account.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("eks.amazonaws.com/role-arn")
            .map(String::as_str),
        Some(ROLE_ARN),
        "{annotations:?}"
    );
    assert_eq!(
        account
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/instance"))
            .map(String::as_str),
        Some(RELEASE)
    );
    assert!(
        team_ns
            .api::<Secret>()
            .get_opt(CHART_SECRET)
            .await
            .unwrap()
            .is_some(),
        "the chart's GitHub Secret from --set githubConfigSecret.github_token"
    );

    // Ready and Listening against the fake.
    let rss_api = rss_api(team_ns.client(), team_ns.name());
    let found = wait::until("Ready and Listening", WAIT, || async {
        let rss = rss_api.get_opt(SCALE_SET).await.ok()??;
        (is_true(&rss, "Ready") && is_true(&rss, "Listening"))
            .then(|| rss.data["status"]["scaleSetId"].as_i64())
            .flatten()
    })
    .await;
    let scale_set_id = match found {
        Ok(id) => id,
        Err(e) => {
            let rss = rss_api.get_opt(SCALE_SET).await.unwrap();
            panic!(
                "{e}\nstatus: {:#}\nevents: {:#?}\n{}",
                rss.map(|r| r.data["status"].clone()).unwrap_or_default(),
                events(&team_ns).await,
                controller.tail()
            )
        }
    };
    let rss = rss_api.get(SCALE_SET).await.unwrap();
    assert_eq!(rss.data["spec"]["serviceAccountName"], ACCOUNT);
    assert_eq!(rss.data["spec"]["containerMode"]["type"], "dind");
    {
        let snapshot = fake.snapshot();
        let set = snapshot
            .scale_sets
            .iter()
            .find(|s| s.id == scale_set_id)
            .unwrap_or_else(|| panic!("scale set {scale_set_id} on the fake: {snapshot:#?}"));
        assert_eq!(set.name, SCALE_SET);
        assert_eq!(set.scope, "acme-corp");
    }
    assert!(runner_pods(&team_ns).await.is_empty(), "minRunners: 0");
    eprintln!(
        "[{:>5.1}s] {SCALE_SET} Ready and Listening",
        started.elapsed().as_secs_f64()
    );

    // Every IrsaMissing the RunnerScaleSet's status goes through: it may
    // be True only between two status writes.
    let irsa_seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let version = rss.metadata.resource_version.clone().unwrap();
    let mut stream = rss_api
        .watch(
            &WatchParams::default().fields(&format!("metadata.name={SCALE_SET}")),
            &version,
        )
        .await
        .expect("watch the RunnerScaleSet")
        .boxed();
    let seen = irsa_seen.clone();
    let watcher = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            if let Ok(WatchEvent::Modified(rss)) = event
                && let Some(c) = condition(&rss, "IrsaMissing")
            {
                let mut seen = seen.lock().unwrap();
                if seen.last() != Some(c) {
                    seen.push(c.clone());
                }
            }
        }
    });

    // One job: one runner pod, after one replacement for the missing IRSA.
    fake.queue_job(scale_set_id, NewJob::default());
    let replaced = wait::until("the RunnerPodWithoutIrsa Event", WAIT, || async {
        events(&team_ns)
            .await
            .into_iter()
            .find(|(reason, object, _)| reason == "RunnerPodWithoutIrsa" && object == SCALE_SET)
    })
    .await;
    let replaced = match replaced {
        Ok(event) => event,
        Err(e) => panic!(
            "{e}\nevents: {:#?}\n{}",
            events(&team_ns).await,
            controller.tail()
        ),
    };
    eprintln!("event: {}", replaced.2);
    let pod = wait::until("one runner pod", WAIT, || async {
        let pods: Vec<Pod> = runner_pods(&team_ns)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (pods.len() == 1).then(|| pods.into_iter().next().unwrap())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.tail()));
    let pod_name = pod.metadata.name.clone().unwrap();
    assert!(
        !replaced.2.contains(&format!("runner pod {pod_name} ")),
        "the pod left is the replacement, not {pod_name}: {}",
        replaced.2
    );
    eprintln!(
        "[{:>5.1}s] runner pod {pod_name}",
        started.elapsed().as_secs_f64()
    );

    // The pod: the file's template, and the controller's dind.
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("karpenter.sh/do-not-disrupt")
            .map(String::as_str),
        Some("true"),
        "{annotations:?}"
    );
    let spec = pod.spec.clone().expect("pod spec");
    assert_eq!(
        spec.node_selector
            .as_ref()
            .and_then(|n| n.get("kubernetes.io/arch"))
            .map(String::as_str),
        Some("arm64"),
        "{:?}",
        spec.node_selector
    );
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    assert!(
        tolerations.iter().any(|t| t.key.as_deref() == Some("arch")
            && t.operator.as_deref() == Some("Equal")
            && t.value.as_deref() == Some("arm64")
            && t.effect.as_deref() == Some("NoSchedule")),
        "{tolerations:?}"
    );
    assert_eq!(spec.service_account_name.as_deref(), Some(ACCOUNT));
    let runner = spec
        .containers
        .iter()
        .find(|c| c.name == "runner")
        .expect("the runner container");
    assert_eq!(
        runner.image.as_deref(),
        Some("ghcr.io/actions/actions-runner:latest")
    );
    let requests = runner
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("2"));
    assert_eq!(requests.get("memory").map(|q| q.0.as_str()), Some("4Gi"));
    let env = |name: &str| {
        runner
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        env("DOCKER_HOST").as_deref(),
        Some("unix:///var/run/docker.sock")
    );
    assert_eq!(env("AWS_ROLE_ARN"), None, "no IRSA webhook in the sandbox");
    let init = spec.init_containers.clone().unwrap_or_default();
    let externals = init
        .iter()
        .find(|c| c.name == "init-dind-externals")
        .unwrap_or_else(|| panic!("the externals init container: {init:?}"));
    assert_eq!(
        externals.image.as_deref(),
        Some("ghcr.io/actions/actions-runner:latest")
    );
    assert_eq!(externals.command.as_deref(), Some(&["cp".to_string()][..]));
    // The sandbox's API server is v1.20: no native sidecars, so dind is a
    // plain container; from 1.29 an init container that always restarts.
    let version = admin.apiserver_version().await.unwrap();
    let minor: u32 = version
        .minor
        .trim_end_matches('+')
        .parse()
        .unwrap_or_default();
    let native = version.major == "1" && minor >= 29;
    let dind = if native {
        let dind = init
            .iter()
            .find(|c| c.name == "dind")
            .expect("dind as a native sidecar");
        assert_eq!(dind.restart_policy.as_deref(), Some("Always"));
        dind.clone()
    } else {
        assert!(init.iter().all(|c| c.name != "dind"), "{init:?}");
        spec.containers
            .iter()
            .find(|c| c.name == "dind")
            .expect("dind as a plain container")
            .clone()
    };
    assert_eq!(dind.image.as_deref(), Some("docker:dind"));
    assert_eq!(
        dind.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    eprintln!(
        "[{:>5.1}s] pod checked (API server {}.{}: dind {})",
        started.elapsed().as_secs_f64(),
        version.major,
        version.minor,
        if native {
            "native sidecar"
        } else {
            "plain container"
        }
    );

    // What a cluster without the webhook shows: IrsaMissing=True, raised by
    // the pass that made the replacement, and still True while the runner
    // it is about runs without IRSA (several status intervals on). Checked
    // after the uninstall below, so that one run reports everything.
    let mut irsa_problems = Vec::new();
    // The controller writes its status at most once per statusInterval (1 s).
    let raised = wait::until(
        "IrsaMissing=True on the RunnerScaleSet",
        Duration::from_secs(15),
        || async {
            irsa_seen
                .lock()
                .unwrap()
                .iter()
                .find(|c| c["status"] == "True")
                .cloned()
        },
    )
    .await;
    match raised {
        Ok(raised) if raised["reason"] != "RunnerPodWithoutIrsa" => {
            irsa_problems.push(format!("IrsaMissing=True with another reason: {raised}"))
        }
        Ok(_) => {}
        Err(e) => irsa_problems.push(format!(
            "{e} (the pass that replaced the pod raised it, but no status write carried it)"
        )),
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let now = rss_api.get(SCALE_SET).await.unwrap();
    if !is_true(&now, "IrsaMissing") {
        irsa_problems.push(format!(
            "IrsaMissing is not True 4 s on, while runner {pod_name} still has no IRSA: {:?}",
            condition(&now, "IrsaMissing")
        ));
    }
    watcher.abort();
    let seen = irsa_seen.lock().unwrap().clone();
    eprintln!(
        "[{:>5.1}s] IrsaMissing as the status went: {seen:?}",
        started.elapsed().as_secs_f64()
    );

    // helm uninstall of both releases: nothing left.
    controller.assert_alive();
    let uninstalled = helm_uninstall(RELEASE, team_ns.name(), &kubeconfig).await;
    assert_eq!(uninstalled.status, "uninstalled");
    let cleaned = wait::until("the scale set release cleaned up", WAIT, || async {
        let secrets: BTreeSet<String> = team_ns
            .api::<Secret>()
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        let snapshot = fake.snapshot();
        (rss_api.get_opt(SCALE_SET).await.ok()?.is_none()
            && runner_pods(&team_ns).await.is_empty()
            && !secrets.contains(&format!("{pod_name}-jit"))
            && !secrets.contains(CHART_SECRET)
            && team_ns
                .api::<ServiceAccount>()
                .get_opt(ACCOUNT)
                .await
                .ok()?
                .is_none()
            && !snapshot.scale_sets.iter().any(|s| s.id == scale_set_id)
            && !snapshot
                .runners
                .iter()
                .any(|r| r.scale_set_id == scale_set_id)
            && !snapshot
                .sessions
                .iter()
                .any(|s| s.scale_set_id == scale_set_id))
        .then_some(())
    })
    .await;
    if let Err(e) = cleaned {
        panic!(
            "{e}\nRunnerScaleSet: {:?}\npods: {:?}\nevents: {:#?}\n{}",
            rss_api
                .get_opt(SCALE_SET)
                .await
                .unwrap()
                .map(|r| (r.metadata.finalizers, r.data["status"].clone())),
            runner_pods(&team_ns)
                .await
                .into_iter()
                .map(|p| (p.metadata.name, p.metadata.finalizers))
                .collect::<Vec<_>>(),
            events(&team_ns).await,
            controller.tail()
        );
    }
    controller.assert_alive();
    let log = controller.stop().await;
    assert!(
        !log.to_lowercase().contains("forbidden") && !log.contains("code: 403"),
        "the controller was refused something it needs:\n{log}"
    );
    let uninstalled = helm_uninstall(CONTROLLER, system.name(), &kubeconfig).await;
    assert_eq!(uninstalled.status, "uninstalled");
    let namespaces = [system.name(), team_ns.name()];
    let releases = [CONTROLLER, RELEASE];
    let gone = wait::until("nothing of the releases left", WAIT, || async {
        leftovers(&admin, &namespaces, &releases)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    if let Err(e) = gone {
        panic!(
            "{e}; left: {:?}",
            leftovers(&admin, &namespaces, &releases).await
        );
    }
    assert!(
        fake.snapshot().scale_sets.is_empty(),
        "{:?}",
        fake.snapshot().scale_sets
    );
    eprintln!("[{:>5.1}s] done", started.elapsed().as_secs_f64());
    assert!(
        irsa_problems.is_empty(),
        "without the pod identity webhook:\n{}\nIrsaMissing as the status went: {seen:?}",
        irsa_problems.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
