//! Scale-set releases installed for real with the Helm 4 SDK, next to the
//! controller chart, and served by the real `runway-controller` run with the
//! chart ServiceAccount's token against a fake GitHub: one release whose
//! values carry a PAT (the chart makes the Secret), one from
//! `examples/arc-migration.yaml` as an ARC user has it (its Secret and
//! ServiceAccount exist already). Both become Ready and Listening; a
//! `helm upgrade` of maxRunners reaches the RunnerScaleSet, the session's
//! max capacity and the number of runner pods; `helm uninstall` of a release
//! with a busy runner waits for its job, then leaves nothing behind, on
//! Kubernetes or on GitHub.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use runway_sandbox::github::{
    EXAMPLE_APP_PRIVATE_KEY_PEM, FakeApp, FakeGitHub, FakeOptions, JobState, NewJob,
};
use runway_sandbox::{TestNamespace, kubelet, test_namespace, wait};
use serde_json::json;
use support::{
    CONTROLLER, Controller, events, example, helm_install, helm_uninstall, helm_upgrade,
    install_controller_chart, leftovers, rss_api, start_chart_controller,
};

/// The release whose values carry a PAT: the chart makes its Secret and
/// its runners' ServiceAccount.
const PAT_RELEASE: &str = "pat-runners";
const PAT_SECRET: &str = "pat-runners-gha-rs-github-secret";
const PAT_ACCOUNT: &str = "pat-runners-gha-rs-runner";
/// The release from examples/arc-migration.yaml.
const ARC_RELEASE: &str = "arc-runner-set";
/// What the ARC values file names, and the ARC user created beforehand.
const ARC_SECRET: &str = "github-app-credentials";
const ARC_ACCOUNT: &str = "ci-runner";
const PAT: &str = "ghp_scaleSetInstallExample";

const SCALE_SET_LABEL: &str = "actions.runway.dev/scale-set";
const BUSY_ANNOTATION: &str = "actions.runway.dev/busy";
const WAIT: Duration = Duration::from_secs(90);

/// What the test reads of the watched namespace.
struct Team<'a> {
    ns: &'a TestNamespace,
    fake: &'a FakeGitHub,
}

impl Team<'_> {
    fn rss(&self) -> Api<DynamicObject> {
        rss_api(self.ns.client(), self.ns.name())
    }

    async fn pods(&self, scale_set: &str) -> Vec<Pod> {
        self.ns
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("{SCALE_SET_LABEL}={scale_set}")))
            .await
            .unwrap()
            .items
    }

    async fn pod_names(&self, scale_set: &str) -> BTreeSet<String> {
        self.pods(scale_set)
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    async fn secret_names(&self) -> BTreeSet<String> {
        self.ns
            .api::<Secret>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect()
    }

    /// The scale set id once Ready and Listening are both True.
    async fn until_listening(&self, name: &str, controller: &Controller) -> i64 {
        let api = self.rss();
        let found = wait::until(&format!("{name} Ready and Listening"), WAIT, || async {
            let rss = api.get_opt(name).await.ok()??;
            let status = &rss.data["status"];
            let is_true = |t: &str| {
                status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == t && c["status"] == "True")
            };
            (is_true("Ready") && is_true("Listening"))
                .then(|| status["scaleSetId"].as_i64())
                .flatten()
        })
        .await;
        match found {
            Ok(id) => id,
            Err(e) => {
                let rss = api.get_opt(name).await.unwrap();
                panic!(
                    "{e}\nstatus: {:#}\nevents: {:#?}\n{}",
                    rss.map(|r| r.data["status"].clone()).unwrap_or_default(),
                    self.events().await,
                    controller.tail()
                )
            }
        }
    }

    fn registered(&self, scale_set_id: i64) -> BTreeSet<String> {
        self.fake
            .snapshot()
            .runners
            .into_iter()
            .filter(|r| r.scale_set_id == scale_set_id)
            .map(|r| r.name)
            .collect()
    }

    fn jobs(&self, scale_set_id: i64, state: JobState) -> Vec<i64> {
        self.fake
            .snapshot()
            .jobs
            .into_iter()
            .filter(|j| j.scale_set_id == scale_set_id && j.state == state)
            .map(|j| j.runner_request_id)
            .collect()
    }

    fn on_github(&self, scale_set_id: i64) -> bool {
        self.fake
            .snapshot()
            .scale_sets
            .iter()
            .any(|s| s.id == scale_set_id)
    }

    fn sessions(&self, scale_set_id: i64) -> usize {
        self.fake
            .snapshot()
            .sessions
            .iter()
            .filter(|s| s.scale_set_id == scale_set_id)
            .count()
    }

    /// (reason, object, message) of every Event in the namespace.
    async fn events(&self) -> Vec<(String, String, String)> {
        events(self.ns).await
    }
}

/// Pods and RunnerScaleSets being deleted but held by a finalizer.
async fn stuck(client: &Client, namespace: &str) -> Vec<String> {
    let mut stuck = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        if pod.metadata.deletion_timestamp.is_some() {
            stuck.push(format!(
                "Pod/{} {:?}",
                pod.metadata.name.unwrap_or_default(),
                pod.metadata.finalizers
            ));
        }
    }
    for rss in rss_api(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        stuck.push(format!(
            "RunnerScaleSet/{} {:?}",
            rss.metadata.name.unwrap_or_default(),
            rss.metadata.finalizers
        ));
    }
    stuck
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_releases_become_ready_upgrade_and_uninstall_with_a_busy_runner() {
    let started = Instant::now();
    let system = test_namespace().await;
    let team_ns = test_namespace().await;
    let plane = system.plane();
    let kubeconfig = plane.kubeconfig_path().to_path_buf();
    let admin = system.client();
    let fake = FakeGitHub::start_with(FakeOptions {
        long_poll_timeout: Duration::from_secs(2),
        // A job nobody starts stays with its scale set for the whole test.
        requeue_after: Duration::from_secs(3600),
        ..FakeOptions::default()
    })
    .await
    .expect("the fake GitHub starts");
    fake.add_pat(PAT);
    let app = FakeApp::example();
    let (app_id, installation_id) = (app.app_id, app.installation_id);
    fake.add_app(app);
    let team = Team {
        ns: &team_ns,
        fake: &fake,
    };
    let config_url = fake.config_url("my-org");

    // The controller chart, watching the team's namespace.
    let mut args = install_controller_chart(&system, team_ns.name()).await;
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--namespace" && w[1] == team_ns.name()),
        "{args:?}"
    );
    args.extend(["--lease-namespace".to_string(), system.name().to_string()]);

    // The real controller with the chart ServiceAccount's token.
    let dir = std::env::temp_dir().join(format!("runway-scale-set-install-{}", system.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut controller = start_chart_controller(&system, &args, &dir).await;
    eprintln!("controller log: {}", controller.log.display());

    // What an ARC user has in the namespace already: the App's Secret and
    // the runners' ServiceAccount the values file names.
    let app_secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": ARC_SECRET },
        "stringData": {
            "github_app_id": app_id.to_string(),
            "github_app_installation_id": installation_id.to_string(),
            "github_app_private_key": EXAMPLE_APP_PRIVATE_KEY_PEM,
        }
    }))
    .unwrap();
    team_ns
        .api::<Secret>()
        .create(&PostParams::default(), &app_secret)
        .await
        .expect("the ARC user's App Secret");
    let account: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": ARC_ACCOUNT } })).unwrap();
    team_ns
        .api::<ServiceAccount>()
        .create(&PostParams::default(), &account)
        .await
        .expect("the ARC user's runner ServiceAccount");

    // 1. Two scale-set releases: a PAT in the values, and the ARC file.
    let pat_values = json!({
        "githubConfigUrl": config_url,
        "githubConfigSecret": { "github_token": PAT },
        "minRunners": 0,
        "maxRunners": 5,
    });
    let pat = helm_install(
        "runway-scale-set",
        PAT_RELEASE,
        team_ns.name(),
        &pat_values,
        &kubeconfig,
    )
    .await;
    assert_eq!(pat.status, "deployed");
    let mut arc_values = example("arc-migration");
    assert_eq!(arc_values["githubConfigSecret"], ARC_SECRET);
    arc_values["githubConfigUrl"] = json!(config_url);
    let arc = helm_install(
        "runway-scale-set",
        ARC_RELEASE,
        team_ns.name(),
        &arc_values,
        &kubeconfig,
    )
    .await;
    assert_eq!(arc.status, "deployed");
    // The chart made the PAT release's Secret and ServiceAccount only.
    let secrets = team.secret_names().await;
    assert!(secrets.contains(PAT_SECRET), "{secrets:?}");
    assert!(
        team_ns
            .api::<ServiceAccount>()
            .get_opt(PAT_ACCOUNT)
            .await
            .unwrap()
            .is_some()
    );
    let arc_secret = team_ns.api::<Secret>().get(ARC_SECRET).await.unwrap();
    assert!(
        arc_secret
            .metadata
            .labels
            .is_none_or(|l| !l.contains_key("app.kubernetes.io/instance")),
        "the ARC user's Secret is not the release's"
    );

    let pat_id = team.until_listening(PAT_RELEASE, &controller).await;
    let arc_id = team.until_listening(ARC_RELEASE, &controller).await;
    assert_ne!(pat_id, arc_id);
    let snapshot = fake.snapshot();
    for (id, name) in [(pat_id, PAT_RELEASE), (arc_id, ARC_RELEASE)] {
        let set = snapshot
            .scale_sets
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("scale set {id} ({name}) on the fake: {snapshot:#?}"));
        assert_eq!(set.name, name);
        assert_eq!(set.scope, "my-org");
    }
    // The ARC file's minRunners: 1 gives one idle runner, with its
    // ServiceAccount and hand-written dind.
    let arc_pod = wait::until("the ARC release's idle runner", WAIT, || async {
        team.pods(ARC_RELEASE).await.into_iter().next()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.tail()));
    let spec = arc_pod.spec.expect("pod spec");
    assert_eq!(spec.service_account_name.as_deref(), Some(ARC_ACCOUNT));
    let containers: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert!(
        containers.contains(&"runner") && containers.contains(&"dind"),
        "{containers:?}"
    );
    eprintln!(
        "[{:>5.1}s] both releases Ready and Listening",
        started.elapsed().as_secs_f64()
    );

    // 2. helm upgrade: maxRunners 5 -> 2 reaches the object and the session.
    wait::until("the session's max capacity 5", WAIT, || async {
        fake.snapshot()
            .sessions
            .iter()
            .any(|s| s.scale_set_id == pat_id && s.max_capacity == Some(5))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: sessions {:?}", fake.snapshot().sessions));
    let mut upgraded = pat_values.clone();
    upgraded["maxRunners"] = json!(2);
    let release = helm_upgrade(
        "runway-scale-set",
        PAT_RELEASE,
        team_ns.name(),
        &upgraded,
        &kubeconfig,
    )
    .await;
    assert_eq!((release.revision, release.status.as_str()), (2, "deployed"));
    let object = team.rss().get(PAT_RELEASE).await.unwrap();
    assert_eq!(object.data["spec"]["maxRunners"], 2);
    wait::until("the session's max capacity 2", WAIT, || async {
        fake.snapshot()
            .sessions
            .iter()
            .any(|s| s.scale_set_id == pat_id && s.max_capacity == Some(2))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: sessions {:?}\n{}",
            fake.snapshot().sessions,
            controller.tail()
        )
    });
    const JOBS: usize = 4;
    let jobs: Vec<i64> = (0..JOBS)
        .map(|_| fake.queue_job(pat_id, NewJob::default()).runner_request_id)
        .collect();
    let mut most = 0;
    let pods = wait::until("two runner pods for four jobs", WAIT, || async {
        let names = team.pod_names(PAT_RELEASE).await;
        (names.len() >= 2).then_some(names)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.tail()));
    // Never more than the new max, for a while.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        most = most.max(team.pod_names(PAT_RELEASE).await.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    most = most.max(pods.len());
    assert_eq!(most, 2, "at most maxRunners=2 runner pods for {JOBS} jobs");
    eprintln!(
        "[{:>5.1}s] upgraded to maxRunners 2",
        started.elapsed().as_secs_f64()
    );

    // 3. One runner busy, then helm uninstall of its release.
    let busy_pod = pods.iter().next().unwrap().clone();
    let pod_api: Api<Pod> = team_ns.api();
    kubelet::set_running(&pod_api, &busy_pod, "runner")
        .await
        .unwrap();
    let job = wait::until("an assigned job", WAIT, || async {
        team.jobs(pat_id, JobState::Assigned).first().copied()
    })
    .await
    .unwrap();
    assert!(jobs.contains(&job));
    wait::until("the runner registered", WAIT, || async {
        team.registered(pat_id).contains(&busy_pod).then_some(())
    })
    .await
    .unwrap();
    fake.start_job(job, &busy_pod).expect("start the job");
    wait::until("the pod marked busy", WAIT, || async {
        let pod = pod_api.get(&busy_pod).await.ok()?;
        (pod.metadata.annotations?.get(BUSY_ANNOTATION)? == "true").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.tail()));
    let jit_secrets: BTreeSet<String> = pods.iter().map(|p| format!("{p}-jit")).collect();
    let secrets = team.secret_names().await;
    assert!(
        jit_secrets.is_subset(&secrets),
        "{jit_secrets:?} in {secrets:?}"
    );

    let uninstalled = helm_uninstall(PAT_RELEASE, team_ns.name(), &kubeconfig).await;
    assert_eq!(uninstalled.status, "uninstalled");
    // The finalizer holds the object while the job runs.
    wait::until("the RunnerScaleSet being deleted", WAIT, || async {
        team.rss()
            .get_opt(PAT_RELEASE)
            .await
            .ok()??
            .metadata
            .deletion_timestamp
            .map(|_| ())
    })
    .await
    .expect("helm deleted the RunnerScaleSet, its finalizer holds it");
    let hold = Instant::now() + Duration::from_secs(5);
    while Instant::now() < hold {
        assert!(
            team.rss().get_opt(PAT_RELEASE).await.unwrap().is_some(),
            "the RunnerScaleSet went while its runner was busy"
        );
        assert!(
            pod_api.get_opt(&busy_pod).await.unwrap().is_some(),
            "the busy runner's pod went while its job ran"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = team.events().await;
    let blocked: Vec<_> = events
        .iter()
        .filter(|(reason, _, _)| reason == "CleanupBlocked")
        .collect();
    eprintln!(
        "[{:>5.1}s] uninstalled {PAT_RELEASE} with a busy runner; events on it: {:?}",
        started.elapsed().as_secs_f64(),
        events
            .iter()
            .filter(|(_, object, _)| object == PAT_RELEASE)
            .collect::<Vec<_>>()
    );

    // The job ends: everything of the release goes.
    fake.complete_job(job, "succeeded").unwrap();
    kubelet::set_terminated(
        &pod_api,
        &busy_pod,
        "runner",
        kubelet::Termination::completed(),
    )
    .await
    .unwrap();
    let cleaned = wait::until("the PAT release fully cleaned up", WAIT, || async {
        let rss = team.rss().get_opt(PAT_RELEASE).await.ok()?;
        let pods = team.pod_names(PAT_RELEASE).await;
        let secrets = team.secret_names().await;
        let account = team_ns
            .api::<ServiceAccount>()
            .get_opt(PAT_ACCOUNT)
            .await
            .ok()?;
        (rss.is_none()
            && pods.is_empty()
            && secrets.is_disjoint(&jit_secrets)
            && !secrets.contains(PAT_SECRET)
            && account.is_none()
            && !team.on_github(pat_id)
            && team.registered(pat_id).is_empty()
            && team.sessions(pat_id) == 0)
            .then_some(())
    })
    .await;
    if let Err(e) = cleaned {
        let rss = team.rss().get_opt(PAT_RELEASE).await.unwrap();
        let events = team.events().await;
        panic!(
            "{e}\nRunnerScaleSet: {:?}\npods: {:?}\nsecrets: {:?}\non GitHub: {}, registered: {:?}, sessions: {}\nCleanupBlocked before the job ended: {blocked:?}\nevents: {events:#?}\n{}",
            rss.map(|r| (r.metadata.finalizers, r.data["status"].clone())),
            team.pods(PAT_RELEASE)
                .await
                .into_iter()
                .map(|p| (
                    p.metadata.name,
                    p.status.and_then(|s| s.phase),
                    p.metadata.deletion_timestamp.is_some(),
                    p.metadata.finalizers,
                    p.metadata.annotations
                ))
                .collect::<Vec<_>>(),
            team.secret_names().await,
            team.on_github(pat_id),
            team.registered(pat_id),
            team.sessions(pat_id),
            controller.tail()
        );
    }
    let events = team.events().await;
    let blocked: Vec<_> = events
        .iter()
        .filter(|(reason, _, _)| reason == "CleanupBlocked" || reason == "CleanupTimedOut")
        .collect();
    assert!(
        blocked.is_empty(),
        "the cleanup was not clean: {blocked:#?}"
    );
    eprintln!(
        "[{:>5.1}s] {PAT_RELEASE} gone",
        started.elapsed().as_secs_f64()
    );

    // The other release (an idle runner), then the controller chart.
    controller.assert_alive();
    let uninstalled = helm_uninstall(ARC_RELEASE, team_ns.name(), &kubeconfig).await;
    assert_eq!(uninstalled.status, "uninstalled");
    let cleaned = wait::until("the ARC release cleaned up", WAIT, || async {
        (team.rss().get_opt(ARC_RELEASE).await.ok()?.is_none()
            && team.pods(ARC_RELEASE).await.is_empty()
            && !team.on_github(arc_id)
            && team.registered(arc_id).is_empty()
            && team.sessions(arc_id) == 0)
            .then_some(())
    })
    .await;
    if let Err(e) = cleaned {
        panic!(
            "{e}\nevents: {:#?}\n{}",
            team.events().await,
            controller.tail()
        );
    }
    // The ARC user's own objects stay.
    assert!(team.secret_names().await.contains(ARC_SECRET));
    controller.assert_alive();
    let log = controller.stop().await;
    assert!(
        !log.to_lowercase().contains("forbidden") && !log.contains("code: 403"),
        "the controller was refused something it needs:\n{log}"
    );
    let uninstalled = helm_uninstall(CONTROLLER, system.name(), &kubeconfig).await;
    assert_eq!(uninstalled.status, "uninstalled");
    let namespaces = [system.name(), team_ns.name()];
    let releases = [CONTROLLER, PAT_RELEASE, ARC_RELEASE];
    let gone = wait::until("nothing of the releases left", WAIT, || async {
        (leftovers(&admin, &namespaces, &releases).await.is_empty()
            && stuck(&admin, team_ns.name()).await.is_empty())
        .then_some(())
    })
    .await;
    if let Err(e) = gone {
        panic!(
            "{e}; left: {:?}; held by finalizers: {:?}",
            leftovers(&admin, &namespaces, &releases).await,
            stuck(&admin, team_ns.name()).await
        );
    }
    assert!(
        fake.snapshot().scale_sets.is_empty(),
        "{:?}",
        fake.snapshot().scale_sets
    );
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("[{:>5.1}s] done", started.elapsed().as_secs_f64());
}
