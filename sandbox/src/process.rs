//! Starting and stopping the control plane's processes by process id.
//!
//! Processes are started in their own process group so that they outlive the
//! `runway-sandbox up` command that started them and a Ctrl-C in the terminal
//! does not take them down half-way. Stopping is by pid: SIGTERM, a grace
//! period, then SIGKILL, and a check that the pid is really gone.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot open log file {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("process {pid} ({what}) did not exit after SIGKILL")]
    Stuck { pid: u32, what: String },
}

/// Starts `program args...` detached, with stdout and stderr appended to `log`.
pub fn spawn_detached(program: &Path, args: &[String], log: &Path) -> Result<u32, ProcessError> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| ProcessError::Log {
            path: log.display().to_string(),
            source,
        })?;
    let err = out.try_clone().map_err(|source| ProcessError::Log {
        path: log.display().to_string(),
        source,
    })?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    Ok(child.id())
}

/// True if a process with this pid exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised command name) is the state.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The command line of a live process, to make sure a pid from a state file
/// still belongs to the program we started (pids are reused).
pub fn cmdline(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
}

/// SIGTERM, wait up to `grace`, then SIGKILL; returns once the pid is gone.
pub fn stop(pid: u32, what: &str, grace: Duration) -> Result<(), ProcessError> {
    let target = Pid::from_raw(pid as i32);
    if !is_alive(pid) {
        return Ok(());
    }
    let _ = kill(target, Signal::SIGTERM);
    if wait_gone(pid, grace) {
        return Ok(());
    }
    let _ = kill(target, Signal::SIGKILL);
    if wait_gone(pid, Duration::from_secs(5)) {
        return Ok(());
    }
    Err(ProcessError::Stuck {
        pid,
        what: what.to_string(),
    })
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !is_alive(pid)
}

/// A free TCP port on 127.0.0.1 (bound and released; the kernel does not hand
/// it out again right away).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
