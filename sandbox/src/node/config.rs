//! The node's configuration files, as pure functions of where things live
//! (tested below; the I/O is in `node/mod.rs`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::json;

/// The pause image every pod sandbox runs (built by `images`).
pub const PAUSE_IMAGE: &str = "runway.local/pause:3.2";

/// Pod addresses for pods without `hostNetwork`, on a bridge inside the
/// node's namespace only (no route to it exists outside).
pub const POD_SUBNET: &str = "10.88.0.0/16";

/// Where the node's files live, all under the sandbox's folder.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(sandbox_dir: &Path) -> Self {
        Self {
            dir: sandbox_dir.join("node"),
        }
    }
    pub fn containerd_config(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }
    pub fn containerd_root(&self) -> PathBuf {
        self.dir.join("containerd").join("root")
    }
    pub fn containerd_state(&self) -> PathBuf {
        self.dir.join("containerd").join("state")
    }
    /// containerd's socket (a unix socket path must stay under 108 bytes).
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.dir.join("cni-ipam")
    }
    pub fn kubelet_root(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.dir.join("kubelet.yaml")
    }
}

/// containerd 1.6 (config version 2): its own root, state and socket; the
/// CRI plugin with our pause image, runc v2, overlayfs, CNI config from our
/// folder, network namespaces under its state folder (not /var/run/netns),
/// and `restrict_oom_score_adj` (this machine's root lacks
/// CAP_SYS_RESOURCE, so runc cannot lower `oom_score_adj`).
pub fn containerd_toml(layout: &Layout) -> String {
    let p = |path: PathBuf| toml_string(&path.display().to_string());
    format!(
        r#"version = 2
root = {root}
state = {state}
disabled_plugins = ["io.containerd.grpc.v1.cri.v1alpha1.disabled"]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {pause}
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = {cni}
"#,
        root = p(layout.containerd_root()),
        state = p(layout.containerd_state()),
        socket = p(layout.containerd_socket()),
        ttrpc = p(layout.dir.join("containerd.sock.ttrpc")),
        opt = p(layout.dir.join("containerd").join("opt")),
        pause = toml_string(PAUSE_IMAGE),
        cni = p(layout.cni_conf_dir()),
    )
}

/// A CNI bridge inside the node's namespace for pods without `hostNetwork`
/// (containerd reports the network ready only with a config), its IPAM
/// state in our folder.
pub fn cni_conflist(layout: &Layout) -> String {
    let conf = json!({
        "cniVersion": "0.4.0",
        "name": "runway-sandbox",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "runway0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": layout.cni_ipam_dir(),
                    "ranges": [[{ "subnet": POD_SUBNET }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "loopback" }
        ]
    });
    serde_json::to_string_pretty(&conf).unwrap_or_default()
}

/// The kubelet's configuration: cgroupfs, swap allowed, no QoS cgroups or
/// allocatable enforcement (this machine's cgroup v1 hierarchy is shared),
/// serving on the node address only, anonymous access for the API server's
/// log and exec calls, and image garbage collection off (the images were
/// imported, not pulled: nothing could bring them back).
pub fn kubelet_yaml(node_ip: Ipv4Addr) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "{node_ip}"
port: 10250
readOnlyPort: 0
healthzBindAddress: "127.0.0.1"
healthzPort: 10248
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
serializeImagePulls: false
nodeStatusUpdateFrequency: "4s"
syncFrequency: "10s"
fileCheckFrequency: "20s"
maxPods: 110
"#
    )
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_keeps_everything_under_the_sandbox_folder() {
        let layout = Layout::new(Path::new("/tmp/sb \"x\""));
        let toml = containerd_toml(&layout);
        for needle in [
            r#"root = "/tmp/sb \"x\"/node/containerd/root""#,
            r#"state = "/tmp/sb \"x\"/node/containerd/state""#,
            r#"address = "/tmp/sb \"x\"/node/containerd.sock""#,
            "restrict_oom_score_adj = true",
            "netns_mounts_under_state_dir = true",
            r#"sandbox_image = "runway.local/pause:3.2""#,
            r#"conf_dir = "/tmp/sb \"x\"/node/cni""#,
        ] {
            assert!(toml.contains(needle), "{needle} missing from\n{toml}");
        }
        assert!(!toml.contains("/var/lib/containerd"));
    }

    #[test]
    fn the_cni_bridge_keeps_its_ipam_state_in_our_folder() {
        let layout = Layout::new(Path::new("/sb"));
        let conf: serde_json::Value = serde_json::from_str(&cni_conflist(&layout)).unwrap();
        assert_eq!(conf["plugins"][0]["type"], "bridge");
        assert_eq!(conf["plugins"][0]["ipam"]["dataDir"], "/sb/node/cni-ipam");
        assert_eq!(
            conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            POD_SUBNET
        );
    }

    #[test]
    fn the_kubelet_serves_on_the_node_address_with_cgroupfs() {
        let yaml = kubelet_yaml(Ipv4Addr::new(100, 72, 0, 2));
        let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(doc["address"].as_str(), Some("100.72.0.2"));
        assert_eq!(doc["cgroupDriver"].as_str(), Some("cgroupfs"));
        assert_eq!(doc["failSwapOn"].as_bool(), Some(false));
        assert_eq!(doc["cgroupsPerQOS"].as_bool(), Some(false));
        assert_eq!(doc["authorization"]["mode"].as_str(), Some("AlwaysAllow"));
    }
}
