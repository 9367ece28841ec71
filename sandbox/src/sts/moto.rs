//! moto's STS (`moto_server`, from `pip install 'moto[server]'`, installed
//! by sandbox/scripts/install-deps.sh) on a free 127.0.0.1 port, for tests
//! that show a client's wire handling against a second, independent STS
//! implementation. moto accepts any credentials and ignores trust, tags and
//! the chain limit: use it for happy paths only.
//!
//! The process is killed when the [`MotoServer`] is dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::StsError;

const READY_WITHIN: Duration = Duration::from_secs(30);

pub struct MotoServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl std::fmt::Debug for MotoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// How to run moto here: `moto_server` on PATH, else `python3 -m moto.server`.
fn launcher() -> Option<(String, Vec<String>)> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|dir| dir.join("moto_server"))
            .collect::<Vec<_>>()
    });
    if let Some(bin) = on_path.into_iter().find(|p| p.is_file()) {
        return Some((bin.display().to_string(), Vec::new()));
    }
    let python_has_moto = std::process::Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    python_has_moto.then(|| {
        (
            "python3".to_owned(),
            vec!["-m".into(), "moto.server".into()],
        )
    })
}

fn free_port() -> Result<u16, StsError> {
    // Bound and released: moto binds it a moment later. A race with another
    // process is possible but shows as MotoNotReady, not as a wrong server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(StsError::MotoSpawn)?;
    Ok(listener.local_addr().map_err(StsError::MotoSpawn)?.port())
}

impl MotoServer {
    /// Starts moto and waits until its port accepts connections.
    pub async fn start() -> Result<MotoServer, StsError> {
        let (program, mut args) = launcher().ok_or(StsError::MotoMissing)?;
        let port = free_port()?;
        args.extend([
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]);
        let log = std::env::temp_dir().join(format!("runway-moto-{port}.log"));
        let log_file = std::fs::File::create(&log).map_err(StsError::MotoSpawn)?;
        let log_err = log_file.try_clone().map_err(StsError::MotoSpawn)?;
        let child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(StsError::MotoSpawn)?;
        let mut server = MotoServer { child, port, log };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), StsError> {
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || started.elapsed() > READY_WITHIN {
                return Err(StsError::MotoNotReady {
                    port: self.port,
                    waited: started.elapsed(),
                    output: std::fs::read_to_string(&self.log).unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // kill_on_drop also does this; doing it here makes it happen before
        // the log file goes away.
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
