//! What the `runway kube` integration tests share: a test namespace with the
//! RBAC, ServiceAccount and allowlist that the REAL scale-set chart renders
//! for a given `kubernetesActions`, applied to the sandbox's API server, and
//! the real `runway` binary run with that ServiceAccount's token.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Client, ResourceExt};
use runway_sandbox::TestNamespace;
use runway_sandbox::helm;
use serde_json::{Value, json};

/// The kinds of the chart's output these tests apply; the rest (the
/// RunnerScaleSet, the GitHub Secret) belongs to the controller.
const APPLIED: [&str; 6] = [
    "ServiceAccount",
    "ConfigMap",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// How `runway kube` reaches Kubernetes in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The CLI itself, with the runners' ServiceAccount token in a kubeconfig.
    Direct,
    /// The executor beside the job (`runway serve --local`), which holds the
    /// token; the CLI has only $RUNWAY_KUBE_EXECUTOR, as in a runner pod.
    Executor,
}

pub struct Setup {
    pub ns: TestNamespace,
    pub via: Via,
    /// The executors (live and offline) when `via` is [`Via::Executor`];
    /// killed when the setup is dropped.
    executors: Vec<tokio::process::Child>,
    /// The release namespace, when it is not `ns` (see [`needs_home`]).
    pub home: Option<TestNamespace>,
    pub dir: PathBuf,
    /// A kubeconfig with the runner ServiceAccount's token.
    pub kubeconfig: PathBuf,
    /// A kubeconfig naming a server that does not answer: a command run with
    /// it that still exits 3 was refused before any Kubernetes call.
    pub dead_kubeconfig: PathBuf,
    pub allowlist: PathBuf,
    /// The runner ServiceAccount's client (RBAC applies).
    pub sa: Client,
    pub service_account: String,
    cluster_objects: Vec<(ApiResource, String)>,
}

fn ar_of(obj: &DynamicObject) -> ApiResource {
    let types = obj
        .types
        .as_ref()
        .expect("rendered objects have apiVersion and kind");
    let (group, version) = types
        .api_version
        .split_once('/')
        .unwrap_or(("", types.api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    let plural = format!("{}s", types.kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&gvk, &plural)
}

/// The chart's manifests for `extra` values, as objects.
pub fn render(namespace: &str, extra: Value) -> Vec<DynamicObject> {
    let mut values = json!({
        "githubConfigUrl": "https://github.com/acme-corp",
        "githubConfigSecret": {"github_token": "ghp_test"},
    });
    for (k, v) in extra.as_object().expect("values object") {
        values[k] = v.clone();
    }
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/runway-scale-set");
    let rendered = helm::render(&chart, &values, "rs", namespace)
        .unwrap_or_else(|e| panic!("rendering the scale-set chart: {e}"));
    helm::manifests(&rendered)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter_map(|value| serde_json::from_value::<DynamicObject>(value).ok())
        .collect()
}

impl Setup {
    /// A fresh namespace with what the chart renders for `values` (its
    /// `kubernetesActions`, `roleType`, ...) applied, the release in this
    /// namespace.
    pub async fn new(values: Value) -> Setup {
        let home = if needs_home(&values) {
            Some(runway_sandbox::test_namespace().await)
        } else {
            None
        };
        Self::in_namespace(runway_sandbox::test_namespace().await, home, values).await
    }

    /// [`Setup::new`], with `runway kube` going the way `via` says.
    pub async fn via(values: Value, via: Via) -> Setup {
        let mut setup = Self::new(values).await;
        if via == Via::Executor {
            let live = setup
                .start_executor("kube.sock", &setup.kubeconfig.clone())
                .await;
            let offline = setup
                .start_executor("offline.sock", &setup.dead_kubeconfig.clone())
                .await;
            setup.executors = vec![live, offline];
            setup.via = Via::Executor;
        }
        setup
    }

    /// `runway serve --local <dir>/<socket>` with `kubeconfig` standing in
    /// for the pod's ServiceAccount token; its stderr (the audit lines) in
    /// `<dir>/<socket>.log`.
    async fn start_executor(&self, socket: &str, kubeconfig: &Path) -> tokio::process::Child {
        let path = self.dir.join(socket);
        let log = std::fs::File::create(self.dir.join(format!("{socket}.log"))).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runway"))
            .arg("serve")
            .arg("--local")
            .arg(&path)
            .arg("--allowlist")
            .arg(&self.allowlist)
            .env("KUBECONFIG", kubeconfig)
            // As in a runner pod: the release's namespace, where its state
            // ConfigMap lives.
            .env("RUNWAY_NAMESPACE", self.release_namespace())
            .env("RUNWAY_RUNNER_NAME", "rs-runner-x")
            .env_remove("RUNWAY_KUBE_ALLOWLIST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("runway serve --local starts");
        runway_sandbox::wait::until("the executor's socket", Duration::from_secs(30), || async {
            path.exists().then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        child
    }

    /// The namespace of the release (and of the runner pods).
    pub fn release_namespace(&self) -> &str {
        self.home.as_ref().unwrap_or(&self.ns).name()
    }

    /// What the live executor logged (its audit lines), empty without one.
    pub fn executor_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kube.sock.log")).unwrap_or_default()
    }

    /// [`Setup::new`] on the sandbox with a real node: pods run for real.
    #[allow(dead_code)]
    pub async fn on_node(values: Value) -> Setup {
        let home = if needs_home(&values) {
            Some(runway_sandbox::node_test_namespace().await)
        } else {
            None
        };
        Self::in_namespace(runway_sandbox::node_test_namespace().await, home, values).await
    }

    async fn in_namespace(
        ns: runway_sandbox::TestNamespace,
        home: Option<runway_sandbox::TestNamespace>,
        mut values: Value,
    ) -> Setup {
        let admin = ns.client();
        let release_ns = home.as_ref().unwrap_or(&ns).name().to_string();
        if home.is_some() {
            values["kubernetesActionsNamespaces"] = json!([ns.name()]);
        }
        let objects = render(&release_ns, values);
        let mut allowlist_text = None;
        let mut service_account = None;
        let mut cluster_objects = Vec::new();
        for obj in &objects {
            let kind = obj
                .types
                .as_ref()
                .map(|t| t.kind.clone())
                .unwrap_or_default();
            if !APPLIED.contains(&kind.as_str()) {
                continue;
            }
            let ar = ar_of(obj);
            if let Some(text) = obj
                .data
                .pointer("/data/allowlist.yaml")
                .and_then(Value::as_str)
            {
                allowlist_text = Some(text.to_string());
            }
            if kind == "ServiceAccount" {
                service_account = Some(obj.name_any());
            }
            let api: Api<DynamicObject> = match kind.as_str() {
                "ClusterRole" | "ClusterRoleBinding" => {
                    cluster_objects.push((ar.clone(), obj.name_any()));
                    Api::all_with(admin.clone(), &ar)
                }
                _ => {
                    let target = obj.namespace().unwrap_or_else(|| release_ns.clone());
                    Api::namespaced_with(admin.clone(), &target, &ar)
                }
            };
            api.create(&PostParams::default(), obj)
                .await
                .unwrap_or_else(|e| panic!("applying {kind} {}: {e}", obj.name_any()));
        }
        let allowlist_text = allowlist_text.expect("the chart renders the allowlist ConfigMap");
        let service_account =
            service_account.expect("the chart renders the runners' ServiceAccount");
        let dir = std::env::temp_dir().join(format!("runway-kube-{}", ns.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let allowlist = dir.join("allowlist.yaml");
        std::fs::write(&allowlist, allowlist_text).unwrap();
        let token = ns
            .plane()
            .service_account_token(&release_ns, &service_account)
            .await
            .expect("a token for the runners' ServiceAccount");
        let kubeconfig = dir.join("kubeconfig");
        runway_sandbox::testing::token_kubeconfig(
            ns.plane().kubeconfig_path(),
            &token,
            &kubeconfig,
        );
        let dead_kubeconfig = dir.join("dead-kubeconfig");
        let text = std::fs::read_to_string(&kubeconfig).unwrap();
        let server = ns.plane().server_url();
        std::fs::write(
            &dead_kubeconfig,
            text.replace(&server, "https://127.0.0.1:9"),
        )
        .unwrap();
        let sa = ns
            .plane()
            .client_with_token(&token)
            .await
            .expect("ServiceAccount client");
        Setup {
            ns,
            via: Via::Direct,
            executors: Vec::new(),
            home,
            dir,
            kubeconfig,
            dead_kubeconfig,
            allowlist,
            sa,
            service_account,
            cluster_objects,
        }
    }

    pub fn name(&self) -> &str {
        self.ns.name()
    }

    pub fn admin(&self) -> Client {
        self.ns.client()
    }

    /// Creates `obj` in the test namespace as admin.
    pub async fn create<K>(&self, obj: &K) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.ns
            .api::<K>()
            .create(&PostParams::default(), obj)
            .await
            .unwrap_or_else(|e| panic!("creating {obj:?}: {e}"))
    }

    /// Runs `runway kube ARGS -n <ns>` as the runners' ServiceAccount.
    pub async fn kube(&self, args: &[&str]) -> Run {
        self.kube_with(&self.kubeconfig, args).await
    }

    /// The same against a server that does not answer.
    pub async fn kube_offline(&self, args: &[&str]) -> Run {
        self.kube_with(&self.dead_kubeconfig, args).await
    }

    async fn kube_with(&self, kubeconfig: &Path, args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_runway"));
        command.arg("kube").args(args);
        match self.via {
            Via::Direct => {
                command
                    .arg("--kubeconfig")
                    .arg(kubeconfig)
                    .arg("--allowlist")
                    .arg(&self.allowlist)
                    .env_remove("RUNWAY_KUBE_EXECUTOR");
            }
            Via::Executor => {
                // As in a runner pod: no credential and no allowlist of its
                // own, only the executor's socket.
                let socket = if kubeconfig == self.kubeconfig {
                    "kube.sock"
                } else {
                    "offline.sock"
                };
                command.env("RUNWAY_KUBE_EXECUTOR", self.dir.join(socket));
            }
        }
        command
            .env_remove("KUBECONFIG")
            .env_remove("RUNWAY_KUBE_ALLOWLIST")
            .env("GITHUB_REPOSITORY", "acme-corp/app")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_JOB", "deploy")
            .env("RUNWAY_RUNNER_NAME", "rs-runner-x")
            .stdin(Stdio::null());
        if !args
            .iter()
            .any(|a| *a == "-n" || a.starts_with("nodes") || a.starts_with("no/"))
        {
            command.arg("-n").arg(self.name());
        }
        let out = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .expect("runway kube finished within 120 s")
            .expect("runway runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Deletes the cluster-scoped objects the chart rendered.
    pub async fn cleanup(self) {
        for (ar, name) in &self.cluster_objects {
            let api: Api<DynamicObject> = Api::all_with(self.admin(), ar);
            let _ = api.delete(name, &DeleteParams::default()).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The chart refuses Secret access where the scale set's own Secrets live
/// (the release namespace): values with `kubernetesActions.secrets` and no
/// namespaces of their own get the release in a namespace apart and the
/// actions in the test namespace, as a real install must be configured.
fn needs_home(values: &Value) -> bool {
    values
        .pointer("/kubernetesActions/secrets")
        .and_then(Value::as_array)
        .is_some_and(|verbs| !verbs.is_empty())
        && values.get("kubernetesActionsNamespaces").is_none()
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts exit 0 with `-o json` and returns the result.
    pub fn json(&self) -> Value {
        let out: Value = serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("-o json output is JSON ({e}): {self:#?}"));
        out
    }

    /// Asserts the exit code and that stderr says `needle`.
    pub fn failed(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "expected exit {code}: {self:#?}");
        assert!(
            self.stderr.contains(needle),
            "expected stderr to say {needle:?}: {self:#?}"
        );
    }
}

/// Asserts that the API server itself refuses (403) a call the chart's RBAC
/// does not grant.
pub fn forbidden<T: std::fmt::Debug>(result: kube::Result<T>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 from the API server, got {other:?}"),
    }
}
