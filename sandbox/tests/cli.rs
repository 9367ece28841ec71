//! `runway-sandbox up`, `status`, `env`, `down` as a person runs them: the
//! processes outlive `up` (the control plane and the node), and `down`
//! leaves none of them behind (checked by process id), nor any of the node's
//! containers, mounts or network devices.

use std::process::Command;

use runway_sandbox::{ControlPlane, paths, process};

fn sandbox(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_runway-sandbox"))
        .args(args)
        .output()
        .expect("run runway-sandbox");
    assert!(
        out.status.success(),
        "runway-sandbox {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn up_status_env_down_leaves_no_process_behind() {
    let name = format!("cli-{}", runway_sandbox::names::random_suffix(6));
    let up = sandbox(&["up", "--name", &name]);
    let stdout = String::from_utf8_lossy(&up.stdout);
    let kubeconfig = paths::sandbox_dir(&name).join("kubeconfig");
    assert_eq!(
        stdout.trim(),
        format!("export KUBECONFIG={}", kubeconfig.display())
    );

    let plane = ControlPlane::load(&paths::sandbox_dir(&name)).unwrap();
    let pids: Vec<u32> = plane.state().processes.iter().map(|p| p.pid).collect();
    let components: Vec<&str> = plane
        .state()
        .processes
        .iter()
        .map(|p| p.component.as_str())
        .collect();
    assert_eq!(
        components,
        [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "forward",
            "containerd",
            "kube-scheduler",
            "kubelet"
        ]
    );
    assert!(
        pids.iter().all(|p| process::is_alive(*p)),
        "all of them outlive `up`"
    );
    let node = plane.node().expect("a node").clone();
    assert!(node.network.exists(), "the node's network namespace");

    let status =
        String::from_utf8_lossy(&sandbox(&["status", "--name", &name]).stdout).into_owned();
    assert!(status.contains("API server answers: v1.20.2"), "{status}");
    let env = String::from_utf8_lossy(&sandbox(&["env", "--name", &name]).stdout).into_owned();
    assert_eq!(env.trim(), stdout.trim());

    // A second `up` of a running sandbox reuses it.
    sandbox(&["up", "--name", &name]);
    let again = ControlPlane::load(&paths::sandbox_dir(&name)).unwrap();
    assert_eq!(
        again
            .state()
            .processes
            .iter()
            .map(|p| p.pid)
            .collect::<Vec<_>>(),
        pids
    );

    sandbox(&["down", "--name", &name]);
    let left: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| process::is_alive(*p))
        .collect();
    assert!(left.is_empty(), "pids still alive after down: {left:?}");
    let node_left = plane.node_leftovers().expect("a node");
    assert!(node_left.is_empty(), "the node left behind: {node_left}");
    assert!(
        !node.network.exists(),
        "the node's network namespace is gone"
    );
    let _ = std::fs::remove_dir_all(paths::sandbox_dir(&name));
}

#[test]
fn down_of_an_unknown_sandbox_says_how_to_start_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_runway-sandbox"))
        .args(["down", "--name", "never-started"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runway-sandbox up --name never-started"),
        "{err}"
    );
}
