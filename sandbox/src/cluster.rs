//! One local Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager on free 127.0.0.1 ports, with a token-authenticated
//! admin user, RBAC on, and ServiceAccount tokens that can be minted for tests;
//! optionally a real node beside it (kube-scheduler, containerd, kubelet: see
//! [`crate::node`]).
//!
//! Invariants: everything a control plane owns lives in its folder
//! (`~/.cache/runway/sandbox/<name>/`): key material, etcd data, logs, the
//! kubeconfig and `state.json` with the pid of every process it started. A
//! start that fails part-way stops what it had started. A stop is by pid and
//! only returns once every pid is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde::{Deserialize, Serialize};

use crate::binaries::{Binaries, BinariesError};
use crate::node::{self, ForwardBy, NodeError, NodeState};
use crate::pki::{Pki, PkiError};
use crate::process::{self, ProcessError};
use crate::wait;

const READY_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Binaries(#[from] BinariesError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{component} did not become ready within {secs} s; last error: {last}\n--- last lines of {log} ---\n{tail}"
    )]
    NotReady {
        component: &'static str,
        secs: u64,
        last: String,
        log: String,
        tail: String,
    },
    #[error("{component} exited during start-up\n--- last lines of {log} ---\n{tail}")]
    Exited {
        component: &'static str,
        log: String,
        tail: String,
    },
    #[error(
        "no sandbox named {name:?} is running (no {path}); start one with `runway-sandbox up --name {name}`"
    )]
    NotRunning { name: String, path: String },
    #[error("cannot read the sandbox state {path}: {source}")]
    State {
        path: String,
        source: serde_json::Error,
    },
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("the sandbox's node: {0}")]
    Node(#[from] NodeError),
    #[error("this sandbox has no node (start it without --no-node)")]
    NoNode,
}

/// One process the control plane started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub component: String,
    pub pid: u32,
    pub log: PathBuf,
}

/// What `state.json` holds: enough to find, use and stop a running sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub api_port: u16,
    pub etcd_port: u16,
    pub admin_token: String,
    pub kubeconfig: PathBuf,
    pub processes: Vec<ProcessRecord>,
    /// The real node, when the sandbox has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeState>,
}

/// What to start beside the control plane.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// A real node (scheduler, containerd, kubelet), its API server port
    /// forwarded into its namespace by this means; None: no node.
    pub node: Option<ForwardBy>,
}

/// A running control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    dir: PathBuf,
    state: State,
}

impl ControlPlane {
    /// Starts a fresh control plane in `dir` (wiping any earlier data there).
    pub async fn start(name: &str, dir: &Path, bins: &Binaries) -> Result<Self, ClusterError> {
        Self::start_with(name, dir, bins, &StartOptions::default()).await
    }

    /// Starts a fresh control plane, and a node if `options` ask for one.
    pub async fn start_with(
        name: &str,
        dir: &Path,
        bins: &Binaries,
        options: &StartOptions,
    ) -> Result<Self, ClusterError> {
        let mut starting = Starting {
            dir: dir.to_path_buf(),
            processes: Vec::new(),
            node: None,
        };
        match starting.run(name, bins, options).await {
            Ok(plane) => Ok(plane),
            Err(err) => {
                starting.abort();
                Err(err)
            }
        }
    }

    /// Reads the state of a sandbox that `runway-sandbox up` started.
    pub fn load(dir: &Path) -> Result<Self, ClusterError> {
        let path = dir.join("state.json");
        let raw = std::fs::read(&path).map_err(|_| ClusterError::NotRunning {
            name: dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            path: path.display().to_string(),
        })?;
        let state = serde_json::from_slice(&raw).map_err(|source| ClusterError::State {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            state,
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.state.kubeconfig
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.state.api_port)
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Processes of this control plane that are still alive (checked by pid
    /// and command line, since pids are reused).
    pub fn live_processes(&self) -> Vec<&ProcessRecord> {
        self.state
            .processes
            .iter()
            .filter(|p| process::is_alive(p.pid) && owns(p))
            .collect()
    }

    /// Stops every process by pid (controller manager, API server, etcd, in
    /// that order) and removes `state.json`. Returns once all are gone.
    pub fn stop(&self) -> Result<(), ClusterError> {
        if let Some(state) = &self.state.node {
            let stop_component = |component: &str| {
                for record in self
                    .state
                    .processes
                    .iter()
                    .filter(|r| r.component == component)
                {
                    if owns(record) {
                        let _ =
                            process::stop(record.pid, &record.component, Duration::from_secs(10));
                    }
                }
            };
            node::stop(&self.dir, state, &stop_component);
        }
        for record in self.state.processes.iter().rev() {
            if owns(record) {
                process::stop(record.pid, &record.component, Duration::from_secs(10))?;
            }
        }
        let _ = std::fs::remove_file(self.dir.join("state.json"));
        let _ = std::fs::remove_file(self.dir.join(PIDS_FILE));
        Ok(())
    }

    /// The node, if this sandbox has one.
    pub fn node(&self) -> Option<&NodeState> {
        self.state.node.as_ref()
    }

    /// Makes the machine's 127.0.0.1:`port` reachable on the same port from
    /// the node (its pods use `hostNetwork`), for as long as the returned
    /// forward lives, on the current Tokio runtime.
    pub fn forward_to_node(&self, port: u16) -> Result<node::Forward, ClusterError> {
        let state = self.state.node.as_ref().ok_or(ClusterError::NoNode)?;
        Ok(node::Forward::start(&state.network.path(), port).map_err(NodeError::from)?)
    }

    /// What the node left behind (processes, mounts, network devices); empty
    /// after a clean [`ControlPlane::stop`].
    pub fn node_leftovers(&self) -> Option<node::Leftovers> {
        let state = self.state.node.as_ref()?;
        Some(node::cleanup::leftovers(&self.dir, &state.network))
    }

    /// Client configuration for the admin user.
    pub async fn admin_config(&self) -> Result<Config, ClusterError> {
        let path = self.kubeconfig_path();
        let kubeconfig =
            Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })
    }

    /// A client authenticated as the admin user (`system:masters`).
    pub async fn admin_client(&self) -> Result<Client, ClusterError> {
        Ok(Client::try_from(self.admin_config().await?)?)
    }

    /// A client authenticated with a bearer token (for example a
    /// ServiceAccount's), so that RBAC applies for real.
    pub async fn client_with_token(&self, token: &str) -> Result<Client, ClusterError> {
        let mut config = self.admin_config().await?;
        config.auth_info = AuthInfo {
            token: Some(token.to_string().into()),
            ..AuthInfo::default()
        };
        Ok(Client::try_from(config)?)
    }

    /// Mints a token for a ServiceAccount through the TokenRequest API.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<String, ClusterError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin_client().await?, namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        let issued = api
            .create_token_request(service_account, &PostParams::default(), &request)
            .await?;
        Ok(issued.status.map(|s| s.token).unwrap_or_default())
    }

    /// A client that acts as the given ServiceAccount.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<Client, ClusterError> {
        let token = self
            .service_account_token(namespace, service_account)
            .await?;
        self.client_with_token(&token).await
    }
}

/// Every pid a control plane started, one a line, appended as each starts.
pub const PIDS_FILE: &str = "pids";

/// True if the live process with this pid is still the one we started: pids
/// are reused, but every process we start names its folder on its command
/// line.
fn owns(record: &ProcessRecord) -> bool {
    let dir = record.log.parent().and_then(Path::parent);
    dir.is_some_and(|dir| owned_by(record.pid, dir))
}

fn owned_by(pid: u32, dir: &Path) -> bool {
    process::cmdline(pid).is_some_and(|cmd| cmd.contains(&*dir.to_string_lossy()))
}

fn record_pid(dir: &Path, pid: u32) -> Result<(), ClusterError> {
    use std::io::Write;
    let path = dir.join(PIDS_FILE);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{pid}"))
        .map_err(io("recording a pid in", &path))
}

/// Stops whatever an earlier, interrupted start in `dir` left running (by
/// the pids it recorded), so that a folder is never reused or removed while
/// its processes live on.
pub fn stop_leftovers(dir: &Path) {
    let recorded = std::fs::read_to_string(dir.join(PIDS_FILE)).unwrap_or_default();
    for pid in recorded
        .lines()
        .rev()
        .filter_map(|l| l.trim().parse::<u32>().ok())
    {
        if process::is_alive(pid) && owned_by(pid, dir) {
            let _ = process::stop(pid, "leftover", Duration::from_secs(5));
        }
    }
    node::stop_leftovers(dir);
    let _ = std::fs::remove_file(dir.join(PIDS_FILE));
}

/// A start in progress; remembers what it started so that a failure can stop it.
struct Starting {
    dir: PathBuf,
    processes: Vec<ProcessRecord>,
    /// The node being started, so that an abort takes it down too.
    node: Option<NodeState>,
}

impl Starting {
    async fn run(
        &mut self,
        name: &str,
        bins: &Binaries,
        options: &StartOptions,
    ) -> Result<ControlPlane, ClusterError> {
        let dir = self.dir.clone();
        stop_leftovers(&dir);
        let _ = std::fs::remove_dir_all(dir.join("etcd"));
        let _ = std::fs::remove_file(dir.join("state.json"));
        for sub in ["logs", "pki", "etcd"] {
            create_dir(&dir.join(sub))?;
        }
        let pki = Pki::generate()?;
        let pki_dir = dir.join("pki");
        for (file, content) in [
            ("ca.crt", &pki.ca_cert),
            ("apiserver.crt", &pki.serving_cert),
            ("apiserver.key", &pki.serving_key),
            ("sa.key", &pki.sa_private_key),
            ("sa.pub", &pki.sa_public_key),
        ] {
            write(&pki_dir.join(file), content)?;
        }
        let admin_token = random_token();
        write(
            &pki_dir.join("tokens.csv"),
            &format!("{admin_token},admin,admin,system:masters\n"),
        )?;

        let etcd_port = process::free_port().map_err(io("picking a port for", &dir))?;
        let peer_port = process::free_port().map_err(io("picking a port for", &dir))?;
        let api_port = process::free_port().map_err(io("picking a port for", &dir))?;
        let p = |f: &str| pki_dir.join(f).display().to_string();

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        self.spawn(
            "etcd",
            &bins.etcd,
            &[
                format!("--name=runway-{name}"),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=runway-{name}={peer_url}"),
                "--log-level=warn".into(),
            ],
        )?;
        self.wait_tcp("etcd", etcd_port).await?;

        self.spawn(
            "kube-apiserver",
            &bins.kube_apiserver,
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // The `kubernetes` Service may not point at a loopback address;
                // nothing in the sandbox uses it, so do not maintain its endpoints.
                "--endpoint-reconciler-type=none".into(),
                format!("--secure-port={api_port}"),
                "--insecure-port=0".into(),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--token-auth-file={}", p("tokens.csv")),
                "--authorization-mode=RBAC".into(),
                // The node's address is on its veth; never its host name.
                "--kubelet-preferred-address-types=InternalIP".into(),
                "--allow-privileged=true".into(),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--enable-priority-and-fairness=false".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;

        let kubeconfig = dir.join("kubeconfig");
        write(
            &kubeconfig,
            &kubeconfig_yaml(name, api_port, &pki.ca_cert, &admin_token),
        )?;
        let plane = ControlPlane {
            dir: dir.clone(),
            state: State {
                name: name.to_string(),
                api_port,
                etcd_port,
                admin_token,
                kubeconfig: kubeconfig.clone(),
                processes: Vec::new(),
                node: None,
            },
        };
        let client = plane.admin_client().await?;
        self.wait_until("kube-apiserver", || async {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            client
                .request_text(req)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await?;

        self.spawn(
            "kube-controller-manager",
            &bins.kube_controller_manager,
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
                "--controllers=*,-csrsigning,-csrapproving,-nodeipam,-cloud-node-lifecycle".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--port=0".into(),
                "--v=1".into(),
            ],
        )?;
        // The ServiceAccount admission plugin refuses pods until the token
        // controller has minted the `default` account's token: wait for it.
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        self.wait_until("kube-controller-manager", || async {
            let sa = accounts.get("default").await.map_err(|e| e.to_string())?;
            if sa.secrets.is_some_and(|s| !s.is_empty()) {
                Ok(())
            } else {
                Err("no token yet".into())
            }
        })
        .await?;

        let mut plane = plane;
        if let Some(forward) = &options.node {
            self.start_node(name, bins, forward, &plane, &kubeconfig)
                .await?;
            plane.state.node = self.node.clone();
        }
        plane.state.processes = self.processes.clone();
        let state = serde_json::to_vec_pretty(&plane.state).expect("state serializes");
        std::fs::write(dir.join("state.json"), state)
            .map_err(io("writing", &dir.join("state.json")))?;
        self.processes.clear();
        Ok(plane)
    }

    fn spawn(
        &mut self,
        component: &'static str,
        program: &Path,
        args: &[String],
    ) -> Result<(), ClusterError> {
        let log = self.dir.join("logs").join(format!("{component}.log"));
        let pid = process::spawn_detached(program, args, &log)?;
        // Recorded before anything else can fail, so that whoever cleans up
        // after an interrupted start (the watchdog, the next start) finds it.
        record_pid(&self.dir, pid)?;
        self.processes.push(ProcessRecord {
            component: component.to_string(),
            pid,
            log,
        });
        Ok(())
    }

    async fn wait_tcp(&self, component: &'static str, port: u16) -> Result<(), ClusterError> {
        self.wait_until(component, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Polls `check` until it succeeds, the component's process dies, or the
    /// deadline passes; errors carry the tail of the component's log.
    async fn wait_until<F, Fut>(
        &self,
        component: &'static str,
        check: F,
    ) -> Result<(), ClusterError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let record = self.processes.iter().find(|p| p.component == component);
        let last = std::cell::RefCell::new(String::new());
        // Some(Ok) = ready, Some(Err) = the process died: stop polling.
        let outcome = wait::until(component, READY_TIMEOUT, || async {
            let error = match check().await {
                Ok(()) => return Some(Ok(())),
                Err(e) => e,
            };
            *last.borrow_mut() = error;
            match record {
                Some(r) if !process::is_alive(r.pid) => Some(Err(ClusterError::Exited {
                    component,
                    log: r.log.display().to_string(),
                    tail: tail(&r.log, 20),
                })),
                _ => None,
            }
        })
        .await;
        outcome.unwrap_or_else(|_| {
            let log = record.map(|r| r.log.clone()).unwrap_or_default();
            Err(ClusterError::NotReady {
                component,
                secs: READY_TIMEOUT.as_secs(),
                last: last.take(),
                log: log.display().to_string(),
                tail: tail(&log, 20),
            })
        })
    }

    /// The node: its namespace and files, the API server's port forwarded
    /// into it, containerd (then the images), kube-scheduler, the kubelet;
    /// returns once the Node is Ready.
    async fn start_node(
        &mut self,
        name: &str,
        bins: &Binaries,
        forward: &ForwardBy,
        plane: &ControlPlane,
        kubeconfig: &Path,
    ) -> Result<(), ClusterError> {
        let dir = self.dir.clone();
        let state = node::prepare(name, &dir)?;
        self.node = Some(state.clone());
        let netns = state.network.path();
        let api_port = plane.state.api_port;
        match forward {
            ForwardBy::Thread => {
                let listener =
                    node::forward::listen_in(&netns, api_port).map_err(NodeError::from)?;
                std::thread::Builder::new()
                    .name("node-forward".into())
                    .spawn(move || {
                        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        else {
                            return;
                        };
                        rt.block_on(async move {
                            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                                node::forward::serve(listener, api_port).await;
                            }
                        });
                    })
                    .map_err(io("starting the forward thread for", &dir))?;
            }
            ForwardBy::Process(exe) => {
                self.spawn(
                    "forward",
                    exe,
                    &[
                        "forward".into(),
                        format!("--netns={}", netns.display()),
                        format!("--port={api_port}"),
                        format!("--dir={}", dir.display()),
                    ],
                )?;
            }
        }
        let layout = node::config::Layout::new(&dir);
        let (program, args) = node::in_netns(
            &state.network,
            &bins.containerd,
            &node::containerd_args(&layout),
        );
        self.spawn("containerd", &program, &args)?;
        let socket = state.containerd_socket.clone();
        self.wait_until("containerd", || {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(&socket)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{}: {e}", socket.display()))
            }
        })
        .await?;
        node::import_images(&socket)?;
        self.spawn(
            "kube-scheduler",
            &bins.kube_scheduler,
            &node::scheduler_args(kubeconfig),
        )?;
        let (program, args) = node::in_netns(
            &state.network,
            &bins.kubelet,
            &node::kubelet_args(&layout, kubeconfig, &state),
        );
        self.spawn("kubelet", &program, &args)?;
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(plane.admin_client().await?);
        let node_name = state.name.clone();
        self.wait_until("kubelet", || async {
            let node = nodes.get(&node_name).await.map_err(|e| e.to_string())?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready");
            match ready {
                Some(c) if c.status == "True" => Ok(()),
                Some(c) => Err(format!(
                    "Node {node_name} not Ready: {}",
                    c.message.unwrap_or_default()
                )),
                None => Err(format!("Node {node_name} has no Ready condition yet")),
            }
        })
        .await
    }

    fn abort(&mut self) {
        if let Some(state) = self.node.take() {
            let processes = self.processes.clone();
            let stop_component = |component: &str| {
                for record in processes.iter().filter(|r| r.component == component) {
                    let _ = process::stop(record.pid, &record.component, Duration::from_secs(5));
                }
            };
            node::stop(&self.dir, &state, &stop_component);
        }
        for record in self.processes.iter().rev() {
            let _ = process::stop(record.pid, &record.component, Duration::from_secs(5));
        }
        self.processes.clear();
    }
}

fn kubeconfig_yaml(name: &str, port: u16, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: runway-{name}\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: runway-{name}\n  context:\n    cluster: runway-{name}\n    user: admin\n    namespace: default\ncurrent-context: runway-{name}\n"
    )
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The last `lines` lines of a log file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn create_dir(path: &Path) -> Result<(), ClusterError> {
    std::fs::create_dir_all(path).map_err(io("creating", path))
}

fn write(path: &Path, content: &str) -> Result<(), ClusterError> {
    std::fs::write(path, content).map_err(io("writing", path))
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError {
    let path = path.display().to_string();
    move |source| ClusterError::Io { what, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component that dies while starting is reported at once, with its
    /// log, not after the 90 s readiness timeout; nothing is left running.
    #[tokio::test]
    async fn a_component_that_exits_during_start_up_is_named_with_its_log() {
        let dir =
            std::env::temp_dir().join(format!("runway-exits-{}", crate::names::random_suffix(6)));
        let bins = Binaries {
            etcd: "/bin/false".into(),
            kube_apiserver: "/bin/false".into(),
            kube_controller_manager: "/bin/false".into(),
            kube_scheduler: "/bin/false".into(),
            kubelet: "/bin/false".into(),
            containerd: "/bin/false".into(),
        };
        let started = std::time::Instant::now();
        let err = ControlPlane::start("exits", &dir, &bins).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        match err {
            ClusterError::Exited { component, log, .. } => {
                assert_eq!(component, "etcd");
                assert!(log.ends_with("logs/etcd.log"), "{log}");
            }
            other => panic!("expected Exited, got {other}"),
        }
        let recorded = std::fs::read_to_string(dir.join(PIDS_FILE)).unwrap();
        let pid: u32 = recorded.trim().parse().unwrap();
        assert!(!process::is_alive(pid), "pid {pid} still alive");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
