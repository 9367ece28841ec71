//! The node's network namespace: the sandbox's kubelet, containerd and every
//! runner pod (`hostNetwork: true`) live in a namespace the sandbox creates,
//! joined to the machine by one veth pair with addresses of our own.
//!
//! Why: the kubelet refuses a loopback node address, and without a node
//! address the API server cannot reach it for logs, exec or eviction. Inside
//! the namespace the node has a non-loopback address on the veth, and the
//! API server reaches it there. Traffic goes only to loopback and to the two
//! ends of our own veth, never to any other address (TEST-ENV.md).
//!
//! Each end is named after the sandbox (`rwh-<hash>` on the machine,
//! `rwn-<hash>` in the namespace) and gets one address of a /30 in
//! 100.72.0.0/16 chosen from the same hash; a /30 already in use on the
//! machine is skipped. Deleting the namespace deletes both ends.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `ip`: {0} (install iproute2: bash sandbox/scripts/install-deps.sh)")]
    Spawn(std::io::Error),
    #[error("no free /30 left in 100.72.0.0/16 for the node's veth")]
    NoAddress,
}

/// A network namespace of the sandbox's and the veth pair into it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeNetwork {
    /// Name under /run/netns.
    pub netns: String,
    /// The veth end on the machine.
    pub host_if: String,
    /// The veth end in the namespace.
    pub node_if: String,
    /// The machine's end of the veth.
    pub host_ip: Ipv4Addr,
    /// The node's address (the kubelet's `--node-ip`).
    pub node_ip: Ipv4Addr,
}

impl NodeNetwork {
    /// Names and addresses for the sandbox `name`, avoiding the /30s whose
    /// addresses `used` holds. Pure: the caller reads `used` from the machine.
    pub fn plan(name: &str, used: &[Ipv4Addr]) -> Result<Self, NetnsError> {
        let hash = fnv1a(name.as_bytes());
        let tag = format!("{:08x}", hash);
        let blocks = 1u32 << 14; // /30s in a /16
        let start = hash % blocks;
        let block = (0..blocks)
            .map(|i| (start + i) % blocks)
            .find(|b| {
                let base = block_base(*b);
                !used.iter().any(|ip| u32::from(*ip) & !3 == base)
            })
            .ok_or(NetnsError::NoAddress)?;
        let base = block_base(block);
        Ok(Self {
            netns: format!("runway-{tag}"),
            host_if: format!("rwh-{tag}"),
            node_if: format!("rwn-{tag}"),
            host_ip: Ipv4Addr::from(base + 1),
            node_ip: Ipv4Addr::from(base + 2),
        })
    }

    /// Names only (for cleaning up after an interrupted start).
    pub fn named(netns: &str, host_if: &str) -> Self {
        Self {
            netns: netns.to_string(),
            host_if: host_if.to_string(),
            node_if: String::new(),
            host_ip: Ipv4Addr::UNSPECIFIED,
            node_ip: Ipv4Addr::UNSPECIFIED,
        }
    }

    /// Creates the namespace and the veth pair, addresses up. A namespace of
    /// the same name left by an earlier run is removed first.
    pub fn create(&self) -> Result<(), NetnsError> {
        self.delete();
        ip(&["netns", "add", &self.netns])?;
        let made = (|| {
            ip(&[
                "link",
                "add",
                &self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &self.node_if,
                "netns",
                &self.netns,
            ])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/30", self.host_ip),
                "dev",
                &self.host_if,
            ])?;
            ip(&["link", "set", &self.host_if, "up"])?;
            let ns = ["-n", self.netns.as_str()];
            ip(&[&ns[..], &["link", "set", "lo", "up"]].concat())?;
            ip(&[
                &ns[..],
                &[
                    "addr",
                    "add",
                    &format!("{}/30", self.node_ip),
                    "dev",
                    &self.node_if,
                ],
            ]
            .concat())?;
            ip(&[&ns[..], &["link", "set", &self.node_if, "up"]].concat())
        })();
        if made.is_err() {
            self.delete();
        }
        made
    }

    /// Removes the namespace (and with it both veth ends); quiet if gone.
    pub fn delete(&self) {
        let _ = ip(&["netns", "delete", &self.netns]);
        let _ = ip(&["link", "delete", &self.host_if]);
    }

    /// The namespace's file, for `nsenter --net=` and `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    /// True if the namespace or the machine's veth end still exists.
    pub fn exists(&self) -> bool {
        self.path().exists() || PathBuf::from("/sys/class/net").join(&self.host_if).exists()
    }
}

/// Every IPv4 address on the machine's interfaces (`ip -4 -o addr`).
pub fn machine_addresses() -> Result<Vec<Ipv4Addr>, NetnsError> {
    let out = ip_output(&["-4", "-o", "addr", "show"])?;
    Ok(parse_addresses(&out))
}

fn parse_addresses(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

fn block_base(block: u32) -> u32 {
    u32::from(Ipv4Addr::new(100, 72, 0, 0)) + block * 4
}

/// FNV-1a: a stable hash (std's is randomised per process).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    ip_output(args).map(|_| ())
}

fn ip_output(args: &[&str]) -> Result<String, NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetnsError::Spawn)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(NetnsError::Command {
        command: format!("ip {}", args.join(" ")),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_stable_and_names_fit_linux_interface_names() {
        let a = NodeNetwork::plan("demo", &[]).unwrap();
        assert_eq!(a, NodeNetwork::plan("demo", &[]).unwrap());
        assert_ne!(a.netns, NodeNetwork::plan("test-1", &[]).unwrap().netns);
        for name in [&a.host_if, &a.node_if] {
            assert!(name.len() <= 15, "{name} is longer than IFNAMSIZ-1");
        }
        assert_eq!(u32::from(a.host_ip) & !3, u32::from(a.node_ip) & !3);
        assert_eq!(u32::from(a.host_ip) & 3, 1);
        assert_eq!(u32::from(a.node_ip) & 3, 2);
        assert_eq!(a.host_ip.octets()[..2], [100, 72]);
    }

    #[test]
    fn a_block_in_use_on_the_machine_is_skipped() {
        let first = NodeNetwork::plan("demo", &[]).unwrap();
        let second = NodeNetwork::plan("demo", &[first.node_ip]).unwrap();
        assert_ne!(
            u32::from(first.host_ip) & !3,
            u32::from(second.host_ip) & !3
        );
        assert_eq!(second.netns, first.netns);
    }

    #[test]
    fn addresses_are_read_from_ip_output() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n\
                    3: odd line\n";
        assert_eq!(
            parse_addresses(text),
            vec![Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
    }
}
