//! The controller chart installed for real with the Helm 4 SDK into the
//! sandbox's API server: the objects it creates, the RBAC they grant (checked
//! by the real API server with the chart's ServiceAccount token), the real
//! `runway-controller` run with that token and the chart's own command line,
//! an upgrade, and an uninstall that leaves nothing behind.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use runway_sandbox::helm::{self, HelmError};
use runway_sandbox::{TestNamespace, test_namespace, wait};
use serde_json::json;
use support::{
    Controller, names, on_a_free_metrics_port, real_controller_binary, rss_api, rss_resource,
};

const RELEASE: &str = "ctl";
/// The chart's full name for release `ctl`.
const FULLNAME: &str = "ctl-runway-controller";
const CRD: &str = "runnerscalesets.actions.runway.dev";
const WAIT: Duration = Duration::from_secs(60);

fn chart() -> PathBuf {
    helm::chart_path("runway-controller")
}

fn runner_scale_set(name: &str) -> DynamicObject {
    let mut rss = DynamicObject::new(name, &rss_resource());
    rss.data = json!({
        "spec": {
            "githubConfigUrl": "https://github.com/example/repo",
            "githubConfigSecret": "no-such-secret",
            "minRunners": 0,
            "maxRunners": 1,
            "template": { "spec": { "containers": [{ "name": "runner", "image": "runner" }] } }
        }
    });
    rss
}

/// The HTTP status of a refused call, or None if it was allowed.
fn status_of<T>(result: Result<T, kube::Error>) -> Option<u16> {
    match result {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.code),
        Err(e) => panic!("not an API answer: {e}"),
    }
}

fn assert_allowed<T>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Ok(_) => {}
        // Allowed but absent: RBAC let it through.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => panic!("{what}: expected allowed, got {e}"),
    }
}

fn assert_forbidden<T>(what: &str, result: Result<T, kube::Error>) {
    assert_eq!(
        status_of(result),
        Some(403),
        "{what}: expected 403 Forbidden"
    );
}

fn labelled_by_the_release(meta: &kube::api::ObjectMeta, kind: &str) {
    let labels = meta.labels.clone().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("Helm"),
        "{kind} {name}: {labels:?}"
    );
    assert_eq!(
        labels.get("app.kubernetes.io/instance").map(String::as_str),
        Some(RELEASE),
        "{kind} {name}: {labels:?}"
    );
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("runway-controller"),
        "{kind} {name}: {labels:?}"
    );
    let annotations = meta.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("meta.helm.sh/release-name")
            .map(String::as_str),
        Some(RELEASE),
        "{kind} {name}: {annotations:?}"
    );
}

async fn deployment_args(ns: &TestNamespace) -> Vec<String> {
    let deployments: Api<Deployment> = ns.api();
    let deployment = deployments.get(FULLNAME).await.expect("the Deployment");
    deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.args)
        .expect("the controller container's args")
}

fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_grants_least_privilege_runs_upgrades_and_uninstalls() {
    // The release's namespace, the one watched namespace, and another one.
    let system = test_namespace().await;
    let team = test_namespace().await;
    let other = test_namespace().await;
    let plane = system.plane();
    let kubeconfig = plane.kubeconfig_path().to_path_buf();
    let admin = system.client();

    let values = json!({
        "watchNamespaces": [team.name()],
        "kubeClient": { "qps": 20, "burst": 40 },
        "log": { "level": "info,runway_controller=debug" },
    });
    let release = helm::install(&chart(), RELEASE, system.name(), &values, &kubeconfig)
        .unwrap_or_else(|e| panic!("helm install: {e}"));
    assert_eq!(release.name, RELEASE);
    assert_eq!(release.namespace, system.name());
    assert_eq!(release.revision, 1);
    assert_eq!(release.status, "deployed");
    assert_eq!(release.chart_name, "runway-controller");
    assert!(release.notes.contains(team.name()), "{}", release.notes);

    // The CRD (from crds/, or already there) is served.
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    wait::until("the RunnerScaleSet CRD to be Established", WAIT, || async {
        let crd = crds.get(CRD).await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await
    .unwrap();

    // The objects, with the release's labels, in the right namespaces.
    let deployment = system
        .api::<Deployment>()
        .get(FULLNAME)
        .await
        .expect("Deployment");
    labelled_by_the_release(&deployment.metadata, "Deployment");
    let account = system
        .api::<ServiceAccount>()
        .get(FULLNAME)
        .await
        .expect("ServiceAccount");
    labelled_by_the_release(&account.metadata, "ServiceAccount");
    let service = system
        .api::<Service>()
        .get(FULLNAME)
        .await
        .expect("Service");
    labelled_by_the_release(&service.metadata, "Service");
    let lease_name = format!("{FULLNAME}-leader-election");
    let lease_role = system
        .api::<Role>()
        .get(&lease_name)
        .await
        .expect("Lease Role");
    labelled_by_the_release(&lease_role.metadata, "Role");
    let lease_binding = system
        .api::<RoleBinding>()
        .get(&lease_name)
        .await
        .expect("Lease RoleBinding");
    labelled_by_the_release(&lease_binding.metadata, "RoleBinding");
    let role = team.api::<Role>().get(FULLNAME).await.expect("Role");
    labelled_by_the_release(&role.metadata, "Role");
    let binding = team
        .api::<RoleBinding>()
        .get(FULLNAME)
        .await
        .expect("RoleBinding");
    labelled_by_the_release(&binding.metadata, "RoleBinding");
    let subject = &binding.subjects.as_ref().expect("subjects")[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str()),
        ("ServiceAccount", FULLNAME)
    );
    assert_eq!(subject.namespace.as_deref(), Some(system.name()));
    let by_release = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let cluster_roles: Api<ClusterRole> = Api::all(admin.clone());
    assert!(
        cluster_roles
            .list(&by_release)
            .await
            .unwrap()
            .items
            .is_empty(),
        "one watched namespace: no ClusterRole"
    );
    let args = deployment_args(&system).await;
    assert_eq!(flag(&args, "--kube-qps"), Some("20"));
    assert_eq!(flag(&args, "--namespace"), Some(team.name()));

    // RBAC, as the real API server decides it for the chart's ServiceAccount.
    let token = plane
        .service_account_token(system.name(), FULLNAME)
        .await
        .expect("a token for the chart's ServiceAccount");
    let sa = plane.client_with_token(&token).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(sa.clone(), team.name());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "rbac-probe" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] }
    }))
    .unwrap();
    assert_allowed("list pods", pods.list(&ListParams::default()).await);
    assert_allowed(
        "create a pod",
        pods.create(&PostParams::default(), &pod).await,
    );
    assert_allowed(
        "patch a pod",
        pods.patch(
            "rbac-probe",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "probe": "yes" } } })),
        )
        .await,
    );
    assert_allowed(
        "delete a pod",
        pods.delete("rbac-probe", &DeleteParams::default()).await,
    );
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), team.name());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "rbac-probe" },
        "stringData": { "k": "v" }
    }))
    .unwrap();
    assert_allowed(
        "create a secret",
        secrets.create(&PostParams::default(), &secret).await,
    );
    assert_allowed("get a secret", secrets.get("rbac-probe").await);
    assert_forbidden("list secrets", secrets.list(&ListParams::default()).await);
    assert_forbidden(
        "delete a secret",
        secrets.delete("rbac-probe", &DeleteParams::default()).await,
    );
    assert_allowed(
        "get a ServiceAccount",
        Api::<ServiceAccount>::namespaced(sa.clone(), team.name())
            .get("default")
            .await,
    );
    assert_allowed(
        "get a ConfigMap",
        Api::<ConfigMap>::namespaced(sa.clone(), team.name())
            .get("no-such-configmap")
            .await,
    );
    assert_forbidden(
        "list ConfigMaps",
        Api::<ConfigMap>::namespaced(sa.clone(), team.name())
            .list(&ListParams::default())
            .await,
    );

    // RunnerScaleSets: the controller patches them and their status, but
    // neither creates nor deletes them (users do, through Helm).
    let probe = "rbac-probe";
    rss_api(admin.clone(), team.name())
        .create(&PostParams::default(), &runner_scale_set(probe))
        .await
        .expect("admin creates a RunnerScaleSet");
    let rss = rss_api(sa.clone(), team.name());
    assert_allowed(
        "list RunnerScaleSets",
        rss.list(&ListParams::default()).await,
    );
    assert_allowed(
        "patch RunnerScaleSet status",
        rss.patch_status(
            probe,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "desiredRunners": 0 } })),
        )
        .await,
    );
    // The listener's checkpoint reads the status again when its guarded
    // write is refused (another leader's session is stored).
    assert_allowed("get RunnerScaleSet status", rss.get_status(probe).await);
    assert_forbidden(
        "delete a RunnerScaleSet",
        rss.delete(probe, &DeleteParams::default()).await,
    );
    assert_forbidden(
        "create a RunnerScaleSet",
        rss.create(&PostParams::default(), &runner_scale_set("another"))
            .await,
    );
    rss_api(admin.clone(), team.name())
        .delete(probe, &DeleteParams::default())
        .await
        .expect("admin deletes the probe RunnerScaleSet");

    // Refused outside the watched namespace.
    let elsewhere: Api<Secret> = Api::namespaced(sa.clone(), other.name());
    assert_forbidden(
        "list secrets in another namespace",
        elsewhere.list(&ListParams::default()).await,
    );
    assert_forbidden(
        "get a secret in another namespace",
        elsewhere.get("any").await,
    );
    assert_forbidden(
        "create a secret in another namespace",
        elsewhere.create(&PostParams::default(), &secret).await,
    );
    assert_forbidden(
        "list pods in another namespace",
        Api::<Pod>::namespaced(sa.clone(), other.name())
            .list(&ListParams::default())
            .await,
    );
    assert_forbidden(
        "list RunnerScaleSets in all namespaces",
        Api::<DynamicObject>::all_with(sa.clone(), &rss_resource())
            .list(&ListParams::default())
            .await,
    );
    // Its own namespace holds only its Lease.
    assert_forbidden(
        "list secrets in the release namespace",
        Api::<Secret>::namespaced(sa.clone(), system.name())
            .list(&ListParams::default())
            .await,
    );
    assert_forbidden(
        "delete a Lease",
        Api::<Lease>::namespaced(sa.clone(), system.name())
            .delete("any", &DeleteParams::default())
            .await,
    );

    // The real controller, as the chart runs it, with that token.
    let binary = real_controller_binary();
    let dir = std::env::temp_dir().join(format!("runway-chart-install-{}", system.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut run_args = args.clone();
    on_a_free_metrics_port(&mut run_args);
    let mut controller =
        Controller::spawn(&binary, &run_args, &kubeconfig, &token, system.name(), &dir);
    // A scale set to serve: its finalizer goes on and off with the token's
    // rights (its GitHub secret is missing, so it never gets further).
    let served = "served";
    rss_api(admin.clone(), team.name())
        .create(&PostParams::default(), &runner_scale_set(served))
        .await
        .expect("admin creates a RunnerScaleSet");
    let leases: Api<Lease> = system.api();
    let lease_name_in_args = flag(&args, "--lease-name").unwrap_or("runway-controller");
    wait::until("the controller to take the leader Lease", WAIT, || async {
        let lease = leases.get_opt(lease_name_in_args).await.ok()??;
        lease
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
            .map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.log()));
    let admin_rss = rss_api(admin.clone(), team.name());
    wait::until(
        "the controller's finalizer on the scale set",
        WAIT,
        || async {
            let rss = admin_rss.get(served).await.ok()?;
            rss.metadata
                .finalizers
                .filter(|f| !f.is_empty())
                .map(|_| ())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.log()));
    // Its status (Ready=False, SecretMissing) and an Event say why, both
    // written with the chart's rights.
    wait::until(
        "the controller's Ready condition on the scale set",
        WAIT,
        || async {
            let rss = admin_rss.get(served).await.ok()?;
            let conditions = rss.data["status"]["conditions"].as_array()?.clone();
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["reason"] == "SecretMissing")
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.log()));
    let events: Api<Event> = team.api();
    wait::until(
        "the controller's Event about the scale set",
        WAIT,
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("SecretMissing")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(served)
                })
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controller.log()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    controller.assert_alive();
    admin_rss
        .delete(served, &DeleteParams::default())
        .await
        .unwrap();
    wait::gone(&admin_rss, served, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", controller.log()));
    controller.assert_alive();
    let log = controller.stop().await;
    assert!(
        !log.to_lowercase().contains("forbidden") && !log.contains("code: 403"),
        "the controller was refused something it needs:\n{log}"
    );
    assert!(
        log.contains("acquired the Lease"),
        "no Lease acquired:\n{log}"
    );
    // The folder holds a token: gone once the run checked out.
    let _ = std::fs::remove_dir_all(&dir);

    // Upgrade: a changed value reaches the Deployment.
    let mut upgraded = values.clone();
    upgraded["kubeClient"]["qps"] = json!(7);
    let release = helm::upgrade(&chart(), RELEASE, system.name(), &upgraded, &kubeconfig)
        .unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    assert_eq!(release.revision, 2);
    assert_eq!(release.status, "deployed");
    let args = deployment_args(&system).await;
    assert_eq!(flag(&args, "--kube-qps"), Some("7"));
    assert_eq!(flag(&args, "--kube-burst"), Some("40"));

    // Uninstall: every object of the release goes, none stuck.
    let release = helm::uninstall(RELEASE, system.name(), &kubeconfig)
        .unwrap_or_else(|e| panic!("helm uninstall: {e}"));
    assert_eq!(release.status, "uninstalled");
    let gone = wait::until("every object of the release to be gone", WAIT, || async {
        let left = leftovers(&admin, &[system.name(), team.name()], &by_release).await;
        left.is_empty().then_some(())
    })
    .await;
    if let Err(e) = gone {
        let left = leftovers(&admin, &[system.name(), team.name()], &by_release).await;
        panic!("{e}; left: {left:?}");
    }
    // Helm's own release records, and the ServiceAccount's token Secret.
    let helm_records = ListParams::default().labels(&format!("owner=helm,name={RELEASE}"));
    wait::until("the release's Secrets to be gone", WAIT, || async {
        let secrets = system
            .api::<Secret>()
            .list(&ListParams::default())
            .await
            .ok()?;
        let left: Vec<_> = secrets
            .items
            .iter()
            .filter(|s| {
                s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kubernetes.io/service-account.name"))
                    .is_some_and(|n| n == FULLNAME)
            })
            .collect();
        let records = system.api::<Secret>().list(&helm_records).await.ok()?;
        (left.is_empty() && records.items.is_empty()).then_some(())
    })
    .await
    .unwrap();
    // The CRD stays (Helm never deletes CRDs).
    assert!(crds.get_opt(CRD).await.unwrap().is_some());

    // A second uninstall names the release and carries Helm's message.
    match helm::uninstall(RELEASE, system.name(), &kubeconfig) {
        Err(e @ HelmError::Release { .. }) => {
            let text = e.to_string();
            assert!(text.contains(RELEASE), "{text}");
            assert!(text.contains(system.name()), "{text}");
            assert!(text.contains("not found"), "{text}");
        }
        other => panic!("second uninstall: {other:?}"),
    }
}

/// Objects with the release's instance label still there (by kind/name).
async fn leftovers(client: &Client, namespaces: &[&str], by_release: &ListParams) -> Vec<String> {
    let mut left = Vec::new();
    for ns in namespaces {
        left.extend(
            names(
                Api::<Deployment>::namespaced(client.clone(), ns),
                by_release,
                "Deployment",
            )
            .await,
        );
        left.extend(
            names(
                Api::<ServiceAccount>::namespaced(client.clone(), ns),
                by_release,
                "ServiceAccount",
            )
            .await,
        );
        left.extend(
            names(
                Api::<Service>::namespaced(client.clone(), ns),
                by_release,
                "Service",
            )
            .await,
        );
        left.extend(
            names(
                Api::<Role>::namespaced(client.clone(), ns),
                by_release,
                "Role",
            )
            .await,
        );
        left.extend(
            names(
                Api::<RoleBinding>::namespaced(client.clone(), ns),
                by_release,
                "RoleBinding",
            )
            .await,
        );
        left.extend(
            names(
                Api::<Pod>::namespaced(client.clone(), ns),
                by_release,
                "Pod",
            )
            .await,
        );
    }
    left.extend(
        names(
            Api::<ClusterRole>::all(client.clone()),
            by_release,
            "ClusterRole",
        )
        .await,
    );
    left.extend(
        names(
            Api::<ClusterRoleBinding>::all(client.clone()),
            by_release,
            "ClusterRoleBinding",
        )
        .await,
    );
    left
}

#[tokio::test]
async fn a_refused_install_names_the_release_and_the_chart() {
    let ns = test_namespace().await;
    let kubeconfig = ns.plane().kubeconfig_path().to_path_buf();
    let error = helm::install(
        &chart(),
        "refused",
        ns.name(),
        &json!({ "watchNamespaces": ["a", "b"] }),
        &kubeconfig,
    )
    .expect_err("two watched namespaces are refused");
    let text = error.to_string();
    assert!(matches!(error, HelmError::Release { .. }), "{error:?}");
    assert!(text.contains("release refused"), "{text}");
    assert!(text.contains(ns.name()), "{text}");
    assert!(text.contains("runway-controller"), "{text}");
    assert!(
        text.contains("watchNamespaces: the controller watches one namespace or all"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_namespaces_install_grants_the_same_rules_cluster_wide_and_uninstalls() {
    let system = test_namespace().await;
    let other = test_namespace().await;
    let plane = system.plane();
    let kubeconfig = plane.kubeconfig_path().to_path_buf();
    let admin = system.client();
    // Cluster-scoped names must not collide with other tests' releases.
    let release = format!("cw{}", &system.name()[2..]);
    let fullname = format!("{release}-runway-controller");

    let installed = helm::install(&chart(), &release, system.name(), &json!({}), &kubeconfig)
        .unwrap_or_else(|e| panic!("helm install: {e}"));
    assert_eq!(installed.status, "deployed");
    assert!(
        installed.notes.contains("all namespaces"),
        "{}",
        installed.notes
    );

    let cluster_role = Api::<ClusterRole>::all(admin.clone())
        .get(&fullname)
        .await
        .expect("ClusterRole");
    let binding = Api::<ClusterRoleBinding>::all(admin.clone())
        .get(&fullname)
        .await
        .expect("ClusterRoleBinding");
    for meta in [&cluster_role.metadata, &binding.metadata] {
        let labels = meta.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("app.kubernetes.io/instance"),
            Some(&release),
            "{labels:?}"
        );
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("Helm")
        );
    }
    let subject = &binding.subjects.as_ref().expect("subjects")[0];
    assert_eq!(subject.name, fullname);
    assert_eq!(subject.namespace.as_deref(), Some(system.name()));
    assert!(
        system
            .api::<Role>()
            .get_opt(&fullname)
            .await
            .unwrap()
            .is_none(),
        "all namespaces: no namespaced controller Role"
    );

    let sa = plane
        .service_account_client(system.name(), &fullname)
        .await
        .expect("a client for the chart's ServiceAccount");
    assert_forbidden(
        "list secrets in any namespace",
        Api::<Secret>::namespaced(sa.clone(), other.name())
            .list(&ListParams::default())
            .await,
    );
    assert_forbidden(
        "list secrets in all namespaces",
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await,
    );
    assert_allowed(
        "get a secret in any namespace",
        Api::<Secret>::namespaced(sa.clone(), other.name())
            .get_opt("any")
            .await,
    );
    assert_allowed(
        "list pods in all namespaces",
        Api::<Pod>::all(sa.clone())
            .list(&ListParams::default())
            .await,
    );
    assert_allowed(
        "list RunnerScaleSets in all namespaces",
        Api::<DynamicObject>::all_with(sa.clone(), &rss_resource())
            .list(&ListParams::default())
            .await,
    );
    assert_forbidden(
        "delete a RunnerScaleSet",
        rss_api(sa.clone(), other.name())
            .delete("any", &DeleteParams::default())
            .await,
    );
    assert_forbidden(
        "delete a secret",
        Api::<Secret>::namespaced(sa.clone(), other.name())
            .delete("any", &DeleteParams::default())
            .await,
    );
    assert_forbidden(
        "list ConfigMaps",
        Api::<ConfigMap>::namespaced(sa.clone(), other.name())
            .list(&ListParams::default())
            .await,
    );
    assert_forbidden(
        "list Leases outside the release namespace",
        Api::<Lease>::namespaced(sa.clone(), other.name())
            .list(&ListParams::default())
            .await,
    );

    helm::uninstall(&release, system.name(), &kubeconfig)
        .unwrap_or_else(|e| panic!("helm uninstall: {e}"));
    let by_release = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let gone = wait::until("every object of the release to be gone", WAIT, || async {
        leftovers(&admin, &[system.name()], &by_release)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    if let Err(e) = gone {
        let left = leftovers(&admin, &[system.name()], &by_release).await;
        panic!("{e}; left: {left:?}");
    }
}
