//! The real `runway-controller` binary as a child process of the sandbox
//! (the demo and the benchmarks run it the way a cluster would): where to
//! find it, its command line, its log file, its `/metrics` (scraped and
//! parsed) and its peak memory. The process is stopped when its handle is
//! dropped: SIGTERM, a grace period, SIGKILL, and it is always reaped.

mod metrics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use metrics::{Metrics, MetricsParseError, Series};

/// Environment variable naming the controller binary to run (by default the
/// `runway-controller` next to the running executable).
pub const BIN_ENV: &str = "RUNWAY_CONTROLLER_BIN";

/// How long a stop waits after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "no runway-controller binary at {path}: build it with `cargo build -p runway-controller` or name one in {BIN_ENV}"
    )]
    NotFound { path: String },
    #[error("cannot tell where the running executable is: {0}")]
    CurrentExe(std::io::Error),
    #[error("cannot open the controller log {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program} crd` failed: {detail}")]
    Crd { program: String, detail: String },
    #[error("`{program} crd` printed no CustomResourceDefinition: {source}")]
    CrdYaml {
        program: String,
        source: serde_yaml::Error,
    },
    #[error("scraping http://{addr}/metrics: {detail}")]
    Scrape { addr: SocketAddr, detail: String },
    #[error(transparent)]
    Parse(#[from] MetricsParseError),
    #[error("controller pid {pid}: {detail}")]
    Stop { pid: u32, detail: String },
}

/// Where to find the controller binary: [`BIN_ENV`] if set, else
/// `runway-controller` next to the running executable (`target/debug/`; a
/// test binary in `target/debug/deps/` looks one folder up too).
pub fn controller_binary() -> Result<PathBuf, ControllerError> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ControllerError::NotFound {
                path: path.display().to_string(),
            })
        };
    }
    let exe = std::env::current_exe().map_err(ControllerError::CurrentExe)?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.join("runway-controller"),
        dir.join("..").join("runway-controller"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ControllerError::NotFound {
            path: candidates[0].display().to_string(),
        })
}

/// Runs `<binary> crd` and parses the RunnerScaleSet CRD it prints.
pub async fn print_crd(binary: &Path) -> Result<CustomResourceDefinition, ControllerError> {
    let program = binary.display().to_string();
    let output = tokio::process::Command::new(binary)
        .arg("crd")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| ControllerError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(ControllerError::Crd {
            program,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    serde_yaml::from_slice(&output.stdout)
        .map_err(|source| ControllerError::CrdYaml { program, source })
}

/// How to run the controller.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub binary: PathBuf,
    /// Passed as `KUBECONFIG`.
    pub kubeconfig: PathBuf,
    /// stdout and stderr go here (the file is started afresh).
    pub log: PathBuf,
    /// `/metrics` is served on 127.0.0.1 at this port.
    pub metrics_port: u16,
    pub kube_qps: u32,
    pub kube_burst: u32,
    pub leader_elect: bool,
    pub lease_namespace: Option<String>,
    /// `--status-interval` in seconds, when not the controller's default.
    pub status_interval_secs: Option<u64>,
    /// Passed as `RUST_LOG`.
    pub rust_log: String,
    /// Passed as `POD_NAME` (the session owner and the Lease identity's
    /// prefix), to tell two controllers apart.
    pub pod_name: Option<String>,
}

impl ControllerOptions {
    /// Options for `binary` against `kubeconfig` with the controller's
    /// default rates, leader election on, and a free metrics port.
    pub fn new(binary: PathBuf, kubeconfig: PathBuf, log: PathBuf) -> std::io::Result<Self> {
        Ok(Self {
            binary,
            kubeconfig,
            log,
            metrics_port: crate::process::free_port()?,
            kube_qps: 50,
            kube_burst: 100,
            leader_elect: true,
            lease_namespace: None,
            status_interval_secs: None,
            // `RUNWAY_CONTROLLER_LOG` overrides, to debug a run.
            rust_log: std::env::var("RUNWAY_CONTROLLER_LOG").unwrap_or_else(|_| "info".into()),
            pod_name: None,
        })
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.metrics_port))
    }

    /// The command line after the program name.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            "--metrics-addr".into(),
            self.metrics_addr().to_string(),
            "--kube-qps".into(),
            self.kube_qps.to_string(),
            "--kube-burst".into(),
            self.kube_burst.to_string(),
            "--leader-elect".into(),
            self.leader_elect.to_string(),
        ];
        if let Some(ns) = &self.lease_namespace {
            args.extend(["--lease-namespace".into(), ns.clone()]);
        }
        if let Some(secs) = self.status_interval_secs {
            args.extend(["--status-interval".into(), secs.to_string()]);
        }
        args
    }
}

/// A running controller. Dropping it stops it (SIGTERM, then SIGKILL after
/// [`STOP_GRACE`]) and reaps it.
#[derive(Debug)]
pub struct ControllerProcess {
    child: Child,
    metrics_addr: SocketAddr,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl ControllerProcess {
    /// Starts the controller in a process group of its own (a Ctrl-C in the
    /// terminal reaches the sandbox, which then stops it in order).
    pub fn spawn(options: &ControllerOptions) -> Result<Self, ControllerError> {
        use std::os::unix::process::CommandExt;
        let log_error = |source| ControllerError::Log {
            path: options.log.display().to_string(),
            source,
        };
        if let Some(dir) = options.log.parent() {
            std::fs::create_dir_all(dir).map_err(log_error)?;
        }
        let out = std::fs::File::create(&options.log).map_err(log_error)?;
        let err = out.try_clone().map_err(log_error)?;
        let mut command = Command::new(&options.binary);
        if let Some(name) = &options.pod_name {
            command.env("POD_NAME", name);
        }
        let child = command
            .args(options.args())
            .env("KUBECONFIG", &options.kubeconfig)
            .env("RUST_LOG", &options.rust_log)
            // Plain text in the log file.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| ControllerError::Spawn {
                program: options.binary.display().to_string(),
                source,
            })?;
        Ok(Self {
            child,
            metrics_addr: options.metrics_addr(),
            log: options.log.clone(),
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. SIGSTOP and SIGCONT, to pause it as a frozen
    /// node would).
    pub fn signal(&self, signal: Signal) -> Result<(), ControllerError> {
        let pid = self.pid();
        kill(Pid::from_raw(pid as i32), signal).map_err(|e| ControllerError::Stop {
            pid,
            detail: format!("{signal}: {e}"),
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        crate::cluster::tail(&self.log, lines)
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// How it exited, if it has (reaping it).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// True while the process runs (a zombie does not count).
    pub fn is_running(&self) -> bool {
        self.exit.is_none() && crate::process::is_alive(self.pid())
    }

    /// Peak resident memory (`VmHWM`) so far, in KiB; None once it exited.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        parse_vm_hwm(&status)
    }

    /// Scrapes and parses `/metrics`.
    pub async fn metrics(&self) -> Result<Metrics, ControllerError> {
        let text = scrape(self.metrics_addr).await?;
        Ok(Metrics::parse(&text)?)
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; reaps it.
    pub async fn shutdown(&mut self, grace: Duration) -> Result<ExitStatus, ControllerError> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        self.terminate()?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill_and_reap()
    }

    /// [`ControllerProcess::shutdown`] for places that cannot await (Drop).
    pub fn stop_blocking(&mut self, grace: Duration) -> Result<ExitStatus, ControllerError> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        self.terminate()?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_and_reap()
    }

    fn terminate(&self) -> Result<(), ControllerError> {
        let pid = self.pid();
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).map_err(|e| ControllerError::Stop {
            pid,
            detail: format!("SIGTERM: {e}"),
        })
    }

    fn kill_and_reap(&mut self) -> Result<ExitStatus, ControllerError> {
        let pid = self.pid();
        let stop_error = |what: &str, e: std::io::Error| ControllerError::Stop {
            pid,
            detail: format!("{what}: {e}"),
        };
        // Exited between the last look and now: kill fails, wait reaps.
        let _ = self.child.kill();
        let status = self.child.wait().map_err(|e| stop_error("wait", e))?;
        self.exit = Some(status);
        Ok(status)
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        if let Err(e) = self.stop_blocking(STOP_GRACE) {
            eprintln!("stopping runway-controller: {e}");
        }
    }
}

/// `VmHWM` (peak resident set) of a `/proc/<pid>/status` text, in KiB.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmHWM:")?;
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        match parts.next() {
            Some("kB") | None => Some(value),
            Some(_) => None,
        }
    })
}

/// GET `/metrics` over plain HTTP/1.0 (a full body, no chunking) with a
/// 10 s limit.
async fn scrape(addr: SocketAddr) -> Result<String, ControllerError> {
    let fail = |detail: String| ControllerError::Scrape { addr, detail };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request =
            format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| fail("no answer within 10 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("the answer has no HTTP header".into()))?;
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        return Err(fail(format!("answered {status_line:?}")));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\trunway-controller\nVmPeak:\t  900000 kB\nVmHWM:\t   45678 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(45678));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
    }

    #[test]
    fn the_command_line_follows_the_contract() {
        let mut options = ControllerOptions {
            binary: "runway-controller".into(),
            kubeconfig: "/k".into(),
            log: "/l".into(),
            metrics_port: 9100,
            kube_qps: 50,
            kube_burst: 100,
            leader_elect: true,
            lease_namespace: None,
            status_interval_secs: None,
            rust_log: "info".into(),
            pod_name: None,
        };
        assert_eq!(
            options.args().join(" "),
            "run --metrics-addr 127.0.0.1:9100 --kube-qps 50 --kube-burst 100 --leader-elect true"
        );
        options.leader_elect = false;
        options.lease_namespace = Some("ns".into());
        options.status_interval_secs = Some(1);
        assert!(
            options
                .args()
                .join(" ")
                .ends_with("--leader-elect false --lease-namespace ns --status-interval 1")
        );
    }
}
