//! A real node beside the control plane: kube-scheduler, containerd 1.6 with
//! runc, and a kubelet 1.20.2 that registers a Node which becomes Ready, so
//! runner pods run as real containers (see docs/sandbox-node.md).
//!
//! Layout: containerd and the kubelet run in a network namespace of the
//! sandbox's own ([`netns`]), everything else of theirs under
//! `<sandbox>/node/` ([`config::Layout`]). The machine's loopback ports the
//! node needs (the API server; a test's fake GitHub) are forwarded into the
//! namespace on the same port numbers ([`forward`]). Images come from
//! [`crate::images`], imported into containerd, never pulled.
//!
//! Invariant: after [`stop`], no process, mount or network device of the
//! node is left ([`cleanup::leftovers`] is empty).

pub mod cleanup;
pub mod config;
pub mod forward;
pub mod netns;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cleanup::Leftovers;
pub use forward::Forward;
pub use netns::NodeNetwork;

/// What `state.json` records of a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    /// The Node object's name.
    pub name: String,
    pub network: NodeNetwork,
    /// containerd's socket, for `ctr --address`.
    pub containerd_socket: PathBuf,
}

/// How the API server's port reaches the node's namespace.
#[derive(Debug, Clone)]
pub enum ForwardBy {
    /// A thread of this process (tests: the node lives as long as the test
    /// process).
    Thread,
    /// A `runway-sandbox forward` process (`up`: the node outlives the command).
    Process(PathBuf),
}

/// The Node's name for the sandbox `name`.
pub fn node_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{}-node", clean.trim_matches('-'))
}

/// Runs `program` with `args` inside the node's namespace: `nsenter --net`
/// execs it, so the pid is the program's and so is its command line.
pub fn in_netns(network: &NodeNetwork, program: &Path, args: &[String]) -> (PathBuf, Vec<String>) {
    let mut all = vec![
        format!("--net={}", network.path().display()),
        "--".to_string(),
        program.display().to_string(),
    ];
    all.extend_from_slice(args);
    (PathBuf::from("nsenter"), all)
}

/// containerd's command line.
pub fn containerd_args(layout: &config::Layout) -> Vec<String> {
    vec![
        format!("--config={}", layout.containerd_config().display()),
        "--log-level=warn".into(),
    ]
}

/// The kubelet's command line (1.20: the remote runtime is named by flags).
pub fn kubelet_args(layout: &config::Layout, kubeconfig: &Path, state: &NodeState) -> Vec<String> {
    vec![
        format!("--config={}", layout.kubelet_config().display()),
        format!("--kubeconfig={}", kubeconfig.display()),
        "--container-runtime=remote".into(),
        format!(
            "--container-runtime-endpoint=unix://{}",
            state.containerd_socket.display()
        ),
        format!("--root-dir={}", layout.kubelet_root().display()),
        format!("--cert-dir={}", layout.dir.join("kubelet-pki").display()),
        format!("--hostname-override={}", state.name),
        format!("--node-ip={}", state.network.node_ip),
        format!("--pod-infra-container-image={}", config::PAUSE_IMAGE),
        "--v=1".into(),
    ]
}

/// kube-scheduler's command line: no leader election, no serving ports.
pub fn scheduler_args(kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--leader-elect=false".into(),
        "--port=0".into(),
        "--secure-port=0".into(),
        "--v=1".into(),
    ]
}

/// A runner pod template for the sandbox's node: the stand-in runner in the
/// runner image (`/home/runner/run.sh`, as ARC's image), optionally a
/// stand-in dind sidecar, on the node's network (`hostNetwork`: the fake
/// GitHub and the API server are on 127.0.0.1, forwarded into the node);
/// in-cluster clients (`runway kube`) find the API server through
/// `KUBERNETES_SERVICE_HOST`/`PORT`, since the node has no kube-proxy.
pub fn runner_pod_spec(api_port: u16, dind: bool) -> k8s_openapi::api::core::v1::PodSpec {
    use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
    let env = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..EnvVar::default()
    };
    let mut containers = vec![Container {
        name: "runner".into(),
        image: Some(crate::images::RUNNER.into()),
        image_pull_policy: Some("Never".into()),
        command: Some(vec!["/home/runner/run.sh".into()]),
        env: Some(vec![
            env("KUBERNETES_SERVICE_HOST", "127.0.0.1".into()),
            env("KUBERNETES_SERVICE_PORT", api_port.to_string()),
        ]),
        ..Container::default()
    }];
    if dind {
        containers.push(Container {
            name: "dind".into(),
            image: Some(crate::images::DIND.into()),
            image_pull_policy: Some("Never".into()),
            ..Container::default()
        });
    }
    PodSpec {
        host_network: Some(true),
        termination_grace_period_seconds: Some(5),
        containers,
        ..PodSpec::default()
    }
}

/// Writes the node's configuration files and creates its namespace.
pub fn prepare(sandbox: &str, dir: &Path) -> Result<NodeState, NodeError> {
    let layout = config::Layout::new(dir);
    let used = netns::machine_addresses()?;
    let network = NodeNetwork::plan(sandbox, &used)?;
    // An earlier node of this folder: take it down before reusing the folder.
    cleanup::remove_containers(&layout.containerd_socket());
    cleanup::kill_processes(dir, &network);
    cleanup::unmount_all(&layout.dir);
    network.delete();
    let _ = std::fs::remove_dir_all(&layout.dir);
    for sub in [
        layout.dir.clone(),
        layout.cni_conf_dir(),
        layout.cni_ipam_dir(),
        layout.kubelet_root(),
    ] {
        std::fs::create_dir_all(&sub).map_err(|source| NodeError::Io {
            path: sub.display().to_string(),
            source,
        })?;
    }
    let socket = layout.containerd_socket();
    if socket.as_os_str().len() > 100 {
        return Err(NodeError::SocketPath(socket.display().to_string()));
    }
    write(
        &layout.containerd_config(),
        &config::containerd_toml(&layout),
    )?;
    write(
        &layout.cni_conf_dir().join("10-runway.conflist"),
        &config::cni_conflist(&layout),
    )?;
    write(
        &layout.kubelet_config(),
        &config::kubelet_yaml(network.node_ip),
    )?;
    // For the test watchdog (a shell script), before anything exists.
    write(
        &layout.dir.join("network"),
        &format!("{} {}\n", network.netns, network.host_if),
    )?;
    network.create()?;
    Ok(NodeState {
        name: node_name(sandbox),
        network,
        containerd_socket: socket,
    })
}

/// Takes the node down: kubelet first (so it restarts nothing), then every
/// container through containerd, then containerd, every process left in the
/// namespace, every mount, and the namespace. `stop_process` stops one
/// recorded process by component name.
pub fn stop(dir: &Path, state: &NodeState, stop_process: &dyn Fn(&str)) {
    stop_process("kubelet");
    cleanup::remove_containers(&state.containerd_socket);
    stop_process("containerd");
    cleanup::kill_processes(dir, &state.network);
    cleanup::unmount_all(&config::Layout::new(dir).dir);
    state.network.delete();
}

/// Builds (or takes from the cache) the sandbox's images (pause, base,
/// runner, dind) and imports them into the node's containerd.
pub fn import_images(socket: &Path) -> Result<(), NodeError> {
    let dir = binaries_dir()?;
    let inputs = crate::images::Inputs::new(dir.join("runway"), dir.join("runway-runner-standin"));
    for image in crate::images::build_all(&inputs).map_err(|e| NodeError::Images(e.to_string()))? {
        crate::images::import(socket, &image).map_err(|e| NodeError::Images(e.to_string()))?;
    }
    Ok(())
}

/// The folder holding the `runway` and `runway-runner-standin` binaries that
/// go into the runner image: `$RUNWAY_BIN_DIR`, else beside this program
/// (or one folder up, for a test binary in `target/<profile>/deps/`).
pub fn binaries_dir() -> Result<PathBuf, NodeError> {
    let has_both =
        |dir: &Path| dir.join("runway").is_file() && dir.join("runway-runner-standin").is_file();
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let candidates: Vec<PathBuf> = std::env::var_os("RUNWAY_BIN_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(exe_dir.iter().cloned())
        .chain(
            exe_dir
                .iter()
                .filter_map(|d| d.parent().map(Path::to_path_buf)),
        )
        .collect();
    candidates
        .iter()
        .find(|d| has_both(d))
        .cloned()
        .ok_or_else(|| {
            NodeError::Binaries(candidates.iter().map(|d| d.display().to_string()).collect())
        })
}

/// Takes down what an interrupted start of the node in `dir` left (found by
/// the `node/network` file that start writes first).
pub fn stop_leftovers(dir: &Path) {
    let layout = config::Layout::new(dir);
    let Ok(text) = std::fs::read_to_string(layout.dir.join("network")) else {
        return;
    };
    let mut words = text.split_whitespace();
    let (Some(netns), Some(host_if)) = (words.next(), words.next()) else {
        return;
    };
    let network = NodeNetwork::named(netns, host_if);
    cleanup::remove_containers(&layout.containerd_socket());
    cleanup::kill_processes(dir, &network);
    cleanup::unmount_all(&layout.dir);
    network.delete();
}

fn write(path: &Path, content: &str) -> Result<(), NodeError> {
    std::fs::write(path, content).map_err(|source| NodeError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Forward(#[from] forward::ForwardError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "containerd's socket path {0} is too long for a unix socket; use a shorter RUNWAY_CACHE"
    )]
    SocketPath(String),
    #[error("the node's images: {0}")]
    Images(String),
    #[error(
        "the runner image needs the `runway` and `runway-runner-standin` binaries; none of {0:?} has both. Build them with `cargo build -p runway-agent -p runway-sandbox` (or set RUNWAY_BIN_DIR)"
    )]
    Binaries(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_labels() {
        assert_eq!(node_name("test-123"), "test-123-node");
        assert_eq!(node_name("My_Sandbox"), "my-sandbox-node");
    }
}
