//! Set-up shared by the sandbox's chart tests: the repository's example
//! values files, Helm's calls run off the async runtime, the controller
//! chart installed and the real `runway-controller` run as the chart runs it
//! with the chart ServiceAccount's token, and the objects an uninstall must
//! not leave behind.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use runway_sandbox::TestNamespace;
use runway_sandbox::controller_process::controller_binary;
use runway_sandbox::helm::{self, HelmError, Release};
use serde_json::{Value, json};

/// The controller chart's release name, and its full name for it.
pub const CONTROLLER: &str = "ctl";
pub const CONTROLLER_FULLNAME: &str = "ctl-runway-controller";

pub fn rss_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("actions.runway.dev", "v1alpha1", "RunnerScaleSet"),
        "runnerscalesets",
    )
}

pub fn rss_api(client: Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &rss_resource())
}

/// An example values file of the repository (`examples/<name>.yaml`).
pub fn example(name: &str) -> Value {
    let path = helm::chart_path("..")
        .join("examples")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

type ChartAction = fn(&Path, &str, &str, &Value, &Path) -> Result<Release, HelmError>;

/// Helm's calls block: they run off the runtime that serves the fake.
async fn chart_action(
    verb: &'static str,
    action: ChartAction,
    chart: &str,
    release: &str,
    namespace: &str,
    values: &Value,
    kubeconfig: &Path,
) -> Release {
    let (chart_dir, release, namespace, values, kubeconfig) = (
        helm::chart_path(chart),
        release.to_string(),
        namespace.to_string(),
        values.clone(),
        kubeconfig.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        action(&chart_dir, &release, &namespace, &values, &kubeconfig)
            .unwrap_or_else(|e| panic!("helm {verb} {release}: {e}"))
    })
    .await
    .unwrap()
}

pub async fn helm_install(
    chart: &str,
    release: &str,
    namespace: &str,
    values: &Value,
    kubeconfig: &Path,
) -> Release {
    chart_action(
        "install",
        helm::install,
        chart,
        release,
        namespace,
        values,
        kubeconfig,
    )
    .await
}

pub async fn helm_upgrade(
    chart: &str,
    release: &str,
    namespace: &str,
    values: &Value,
    kubeconfig: &Path,
) -> Release {
    chart_action(
        "upgrade",
        helm::upgrade,
        chart,
        release,
        namespace,
        values,
        kubeconfig,
    )
    .await
}

pub async fn helm_uninstall(release: &str, namespace: &str, kubeconfig: &Path) -> Release {
    let (release, namespace, kubeconfig) = (
        release.to_string(),
        namespace.to_string(),
        kubeconfig.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        helm::uninstall(&release, &namespace, &kubeconfig)
            .unwrap_or_else(|e| panic!("helm uninstall {release}: {e}"))
    })
    .await
    .unwrap()
}

pub use runway_sandbox::testing::token_kubeconfig;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `runway-controller` binary, which these tests run for real.
pub fn real_controller_binary() -> PathBuf {
    controller_binary().unwrap_or_else(|e| {
        panic!("this test runs the real controller: {e} (cargo build -p runway-controller)")
    })
}

/// `args` with `--metrics-addr` moved to a free port of 127.0.0.1.
pub fn on_a_free_metrics_port(args: &mut [String]) {
    let at = args
        .iter()
        .position(|a| a == "--metrics-addr")
        .expect("--metrics-addr in the chart's args");
    args[at + 1] = format!("127.0.0.1:{}", free_port());
}

/// The controller chart installed as release [`CONTROLLER`] in `system`,
/// watching `watched`: the args of its Deployment's container, with the
/// metrics on a free port.
pub async fn install_controller_chart(system: &TestNamespace, watched: &str) -> Vec<String> {
    let kubeconfig = system.plane().kubeconfig_path().to_path_buf();
    let installed = helm_install(
        "runway-controller",
        CONTROLLER,
        system.name(),
        &json!({
            "watchNamespaces": [watched],
            "statusInterval": 1,
            "deletionTimeout": 300,
            "log": { "level": "info,runway_controller=debug" },
        }),
        &kubeconfig,
    )
    .await;
    assert_eq!(installed.status, "deployed");
    let deployment = system
        .api::<Deployment>()
        .get(CONTROLLER_FULLNAME)
        .await
        .expect("the controller Deployment");
    let mut args = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.args)
        .expect("the controller container's args");
    on_a_free_metrics_port(&mut args);
    args
}

/// The real controller started with the chart ServiceAccount's token, its
/// kubeconfig and log in `dir`.
pub async fn start_chart_controller(
    system: &TestNamespace,
    args: &[String],
    dir: &Path,
) -> Controller {
    let plane = system.plane();
    let binary = real_controller_binary();
    let token = plane
        .service_account_token(system.name(), CONTROLLER_FULLNAME)
        .await
        .expect("a token for the chart's ServiceAccount");
    Controller::spawn(
        &binary,
        args,
        plane.kubeconfig_path(),
        &token,
        system.name(),
        dir,
    )
}

/// The real controller, run as the chart runs it, with its token.
pub struct Controller {
    pub child: Child,
    pub log: PathBuf,
}

impl Controller {
    /// `binary` run with `args` and the chart's environment in `namespace`,
    /// authenticated with `token` (a kubeconfig like `admin_kubeconfig`
    /// written in `dir`), logging to `dir/controller.log`.
    pub fn spawn(
        binary: &Path,
        args: &[String],
        admin_kubeconfig: &Path,
        token: &str,
        namespace: &str,
        dir: &Path,
    ) -> Controller {
        let token_config = dir.join("kubeconfig");
        token_kubeconfig(admin_kubeconfig, token, &token_config);
        let log = dir.join("controller.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .args(args)
            .env("KUBECONFIG", &token_config)
            .env("POD_NAMESPACE", namespace)
            .env("POD_NAME", "ctl-runway-controller-test")
            .env("RUST_LOG", "info,runway_controller=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start runway-controller");
        Controller { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's last lines, without the message polls, for a failure.
    pub fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !(l.contains("/messages status=202") || l.contains("/messages?")))
            .collect();
        let from = lines.len().saturating_sub(80);
        format!(
            "controller log {} (last lines):\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }

    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the controller exited ({status}):\n{}", self.log());
        }
    }

    pub async fn stop(mut self) -> String {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.log();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "the controller did not exit within 30 s of SIGTERM:\n{}",
            self.log()
        );
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// (reason, object, message) of every Event in the namespace.
pub async fn events(ns: &TestNamespace) -> Vec<(String, String, String)> {
    ns.api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

/// `kind/name` of every object `api` lists with `lp`, or why it cannot.
pub async fn names<K>(api: Api<K>, lp: &ListParams, kind: &str) -> Vec<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list(lp).await {
        Ok(list) => list
            .items
            .iter()
            .map(|o| format!("{kind}/{}", o.meta().name.clone().unwrap_or_default()))
            .collect(),
        Err(e) => vec![format!("{kind}: cannot list: {e}")],
    }
}

/// Objects with one of the releases' instance labels still there.
pub async fn leftovers(client: &Client, namespaces: &[&str], releases: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    for release in releases {
        let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
        for ns in namespaces {
            let c = client.clone();
            left.extend(
                names(
                    Api::<Deployment>::namespaced(c.clone(), ns),
                    &lp,
                    "Deployment",
                )
                .await,
            );
            left.extend(
                names(
                    Api::<ServiceAccount>::namespaced(c.clone(), ns),
                    &lp,
                    "ServiceAccount",
                )
                .await,
            );
            left.extend(names(Api::<Service>::namespaced(c.clone(), ns), &lp, "Service").await);
            left.extend(names(Api::<Secret>::namespaced(c.clone(), ns), &lp, "Secret").await);
            left.extend(names(Api::<Role>::namespaced(c.clone(), ns), &lp, "Role").await);
            left.extend(
                names(
                    Api::<RoleBinding>::namespaced(c.clone(), ns),
                    &lp,
                    "RoleBinding",
                )
                .await,
            );
            left.extend(names(Api::<Pod>::namespaced(c.clone(), ns), &lp, "Pod").await);
            left.extend(names(rss_api(c.clone(), ns), &lp, "RunnerScaleSet").await);
        }
        left.extend(names(Api::<ClusterRole>::all(client.clone()), &lp, "ClusterRole").await);
        left.extend(
            names(
                Api::<ClusterRoleBinding>::all(client.clone()),
                &lp,
                "ClusterRoleBinding",
            )
            .await,
        );
    }
    left
}
