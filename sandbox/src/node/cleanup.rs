//! Taking a node down without leaving anything behind: containers and pod
//! sandboxes through containerd, then every process still in the node's
//! network namespace or naming the sandbox folder, then every mount under
//! the folder (the kubelet's volumes, its root dir bind-mounted onto itself,
//! containerd's rootfs and network namespace mounts), then the namespace.
//! [`leftovers`] says what, if anything, is still there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::netns::NodeNetwork;

/// What a stopped node left behind; empty when it is clean.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    pub processes: Vec<(u32, String)>,
    pub mounts: Vec<String>,
    pub devices: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty() && self.mounts.is_empty() && self.devices.is_empty()
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "processes {:?}, mounts {:?}, network devices {:?}",
            self.processes, self.mounts, self.devices
        )
    }
}

/// Kills and removes every container and pod sandbox containerd knows in the
/// `k8s.io` namespace. Best effort: containerd may already be gone.
pub fn remove_containers(socket: &Path) {
    if !socket.exists() {
        return;
    }
    let ctr = |args: &[&str]| {
        Command::new("ctr")
            .arg("--address")
            .arg(socket)
            .args(["--connect-timeout", "2s", "--timeout", "10s"])
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let tasks = ctr(&["tasks", "ls", "-q"]).unwrap_or_default();
    for id in tasks.split_whitespace() {
        let _ = ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", id]);
    }
    for id in tasks.split_whitespace() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while ctr(&["tasks", "delete", "-f", id]).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let containers = ctr(&["containers", "ls", "-q"]).unwrap_or_default();
    for id in containers.split_whitespace() {
        let _ = ctr(&["containers", "delete", id]);
    }
}

/// SIGKILLs every process in the node's network namespace or whose command
/// line names `dir` (containerd's shims), and waits until they are gone.
pub fn kill_processes(dir: &Path, network: &NodeNetwork) {
    for _ in 0..3 {
        let found = processes(dir, network);
        if found.is_empty() {
            return;
        }
        for (pid, _) in &found {
            if let Ok(raw) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && found.iter().any(|(p, _)| crate::process::is_alive(*p)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Lazily unmounts everything mounted under `dir`, deepest first, until
/// nothing is left (a mount can hide another on the same path).
pub fn unmount_all(dir: &Path) {
    for _ in 0..10 {
        let mut found = mounts_under(dir);
        if found.is_empty() {
            return;
        }
        found.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in found {
            let _ = umount2(Path::new(&mount), MntFlags::MNT_DETACH);
        }
    }
}

/// What is still there of the node: processes, mounts and network devices.
pub fn leftovers(dir: &Path, network: &NodeNetwork) -> Leftovers {
    let mut devices = Vec::new();
    if network.path().exists() {
        devices.push(network.path().display().to_string());
    }
    if PathBuf::from("/sys/class/net")
        .join(&network.host_if)
        .exists()
    {
        devices.push(network.host_if.clone());
    }
    Leftovers {
        processes: processes(dir, network),
        mounts: mounts_under(dir),
        devices,
    }
}

/// Live processes in the namespace or naming `dir` (containerd's shims),
/// and their descendants (a pod's containers in a namespace of their own),
/// with their command line.
fn processes(dir: &Path, network: &NodeNetwork) -> Vec<(u32, String)> {
    let netns = std::fs::metadata(network.path())
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let dir = dir.display().to_string();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && crate::process::is_alive(*pid))
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let roots: Vec<u32> = parents
        .iter()
        .map(|(pid, _)| *pid)
        .filter(|pid| {
            let cmd = crate::process::cmdline(*pid).unwrap_or_default();
            let in_netns = netns.is_some_and(|ino| {
                std::fs::read_link(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|l| l.to_string_lossy() == format!("net:[{ino}]"))
            });
            // Only the node's own programs (by name: the API server's flags
            // mention the kubelet, a shell may mention the folder).
            let names_dir = cmd.contains(&dir) && is_node_program(&cmd);
            in_netns || names_dir
        })
        .collect();
    with_descendants(&roots, &parents)
        .into_iter()
        .map(|pid| (pid, crate::process::cmdline(pid).unwrap_or_default()))
        .collect()
}

/// True for the programs a node runs: containerd, its shims, the kubelet, a
/// `runway-sandbox forward`.
fn is_node_program(cmdline: &str) -> bool {
    let mut words = cmdline.split_whitespace();
    let program = words
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or_default();
    matches!(program, "containerd" | "kubelet")
        || program.starts_with("containerd-shim")
        || (program == "runway-sandbox" && words.next() == Some("forward"))
}

/// `roots` and every process below them, given (pid, parent pid) pairs.
fn with_descendants(roots: &[u32], parents: &[(u32, u32)]) -> Vec<u32> {
    let mut found: std::collections::BTreeSet<u32> = roots.iter().copied().collect();
    loop {
        let before = found.len();
        for (pid, parent) in parents {
            if found.contains(parent) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found.into_iter().collect();
        }
    }
}

/// The parent pid, from /proc/PID/stat (the field after the state).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Mount points at or under `dir`, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_mount_points(&text)
        .into_iter()
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// The mount point (field 5) of each mountinfo line, octal escapes decoded.
fn parse_mount_points(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')));
        match octal.and_then(|n| u8::try_from(n).ok()) {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_node_programs_are_the_nodes() {
        for (cmdline, node) in [
            (
                "/usr/bin/containerd --config=/sb/node/containerd.toml",
                true,
            ),
            (
                "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -address /sb/x",
                true,
            ),
            ("/k8s/kubelet --config=/sb/node/kubelet.yaml", true),
            ("/t/runway-sandbox forward --dir=/sb", true),
            ("/t/runway-sandbox up --name sb", false),
            (
                "/k8s/kube-apiserver --kubelet-preferred-address-types=InternalIP /sb",
                false,
            ),
            ("sh -c grep /sb/node", false),
            ("", false),
        ] {
            assert_eq!(is_node_program(cmdline), node, "{cmdline}");
        }
    }

    #[test]
    fn descendants_are_found_at_any_depth() {
        let parents = [(10, 1), (11, 10), (12, 11), (20, 1), (21, 20)];
        assert_eq!(with_descendants(&[10], &parents), vec![10, 11, 12]);
        assert_eq!(with_descendants(&[], &parents), Vec::<u32>::new());
    }

    #[test]
    fn mount_points_are_read_with_escapes_decoded() {
        let text = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    40 36 0:5 / /sb/node/kubelet rw - ext4 /dev/vda rw\n\
                    bad\n";
        assert_eq!(
            parse_mount_points(text),
            vec!["/mnt/a b".to_string(), "/sb/node/kubelet".to_string()]
        );
        assert_eq!(unescape("a\\134b\\"), "a\\b\\");
    }
}
