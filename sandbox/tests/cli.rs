//! `runway-sandbox up`, `status`, `env`, `down` as a person runs them: the
//! processes outlive `up`, and `down` leaves none of them behind (checked by
//! process id).

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
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver, kube-controller-manager"
    );
    assert!(
        pids.iter().all(|p| process::is_alive(*p)),
        "all three outlive `up`"
    );

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
