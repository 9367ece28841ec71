//! Loopback ports of the machine, reachable on the same port numbers from
//! inside the node's network namespace.
//!
//! The kubelet and the runner pods (`hostNetwork: true`) live in the node's
//! namespace, whose 127.0.0.1 is its own. The API server, the fake GitHub
//! and the fake STS listen on the machine's 127.0.0.1. A forward listens on
//! 127.0.0.1:P inside the namespace and connects each connection to
//! 127.0.0.1:P on the machine, so a pod uses the very URLs a test prints.
//! No traffic leaves loopback.
//!
//! A socket belongs to the network namespace of the thread that created it,
//! so the listener is made on a short-lived thread that joined the namespace;
//! the outbound connections are made on the runtime's threads, which never
//! leave the machine's namespace.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot open the node's network namespace {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot join the node's network namespace {path}: {source}")]
    Join { path: String, source: nix::Error },
    #[error("cannot listen on 127.0.0.1:{port} in the node's network namespace: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("the thread that joins the node's network namespace panicked")]
    Thread,
}

/// Binds 127.0.0.1:`port` inside the namespace at `netns` (a /run/netns file).
pub fn listen_in(netns: &Path, port: u16) -> Result<std::net::TcpListener, ForwardError> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let file = File::open(&netns).map_err(|source| ForwardError::Open {
            path: netns.display().to_string(),
            source,
        })?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| ForwardError::Join {
            path: netns.display().to_string(),
            source,
        })?;
        let bind = |source| ForwardError::Bind { port, source };
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        Ok(listener)
    })
    .join()
    .map_err(|_| ForwardError::Thread)?
}

/// A running forward; stops when dropped.
#[derive(Debug)]
pub struct Forward {
    port: u16,
    task: JoinHandle<()>,
}

impl Forward {
    /// Forwards 127.0.0.1:`port` in the namespace at `netns` to the
    /// machine's 127.0.0.1:`port`, on the current Tokio runtime.
    pub fn start(netns: &Path, port: u16) -> Result<Self, ForwardError> {
        let listener = listen_in(netns, port)?;
        let listener = TcpListener::from_std(listener)
            .map_err(|source| ForwardError::Bind { port, source })?;
        let task = tokio::spawn(serve(listener, port));
        Ok(Self { port, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts inside the namespace and copies each connection both ways to the
/// machine's 127.0.0.1:`port` until either side closes.
pub async fn serve(listener: TcpListener, port: u16) {
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

/// The `runway-sandbox forward` process: forwards `ports` until killed. Its
/// command line names the sandbox folder (`dir`), so that `down` finds it.
pub async fn run_process(netns: PathBuf, ports: Vec<u16>) -> Result<(), ForwardError> {
    let mut tasks = Vec::new();
    for port in ports {
        let listener = listen_in(&netns, port)?;
        let listener = TcpListener::from_std(listener)
            .map_err(|source| ForwardError::Bind { port, source })?;
        tasks.push(tokio::spawn(serve(listener, port)));
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}
