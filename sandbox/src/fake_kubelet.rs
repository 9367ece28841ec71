//! A node's kubelet, as far as `pods/log` needs it. The sandbox runs no
//! kubelet; the API server proxies a pod's logs to
//! `https://<node InternalIP>:<kubelet port>/containerLogs/<ns>/<pod>/<container>`,
//! so this serves that path over TLS (the API server does not verify a
//! kubelet's certificate unless `--kubelet-certificate-authority` is set),
//! with the log text a test gives, and registers a Node pointing at itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

type Logs = Arc<Mutex<BTreeMap<(String, String, String), String>>>;

#[derive(Debug, thiserror::Error)]
pub enum FakeKubeletError {
    #[error("the fake kubelet cannot listen on 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::github::tls::TlsError),
}

/// Serves until dropped.
pub struct FakeKubelet {
    port: u16,
    logs: Logs,
    _stop: watch::Sender<()>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    tail_lines: Option<usize>,
}

async fn container_logs(
    State(logs): State<Logs>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<String, StatusCode> {
    let text = logs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(namespace, pod, container))
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)?;
    Ok(match query.tail_lines {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            lines[from..].iter().map(|l| format!("{l}\n")).collect()
        }
        None => text,
    })
}

impl FakeKubelet {
    /// Starts serving on a free 127.0.0.1 port, on the caller's runtime.
    pub async fn start() -> Result<FakeKubelet, FakeKubeletError> {
        let tls = crate::github::tls::generate()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let logs: Logs = Arc::default();
        let router = Router::new()
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                get(container_logs),
            )
            .with_state(logs.clone());
        let (stop, stopped) = watch::channel(());
        tokio::spawn(crate::github::server::serve(
            listener,
            router,
            Some(tls.acceptor),
            stopped,
        ));
        Ok(FakeKubelet {
            port,
            logs,
            _stop: stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the container's log says.
    pub fn set_log(&self, namespace: &str, pod: &str, container: &str, text: &str) {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            (namespace.into(), pod.into(), container.into()),
            text.into(),
        );
    }

    /// Creates the Node `name`, reachable at this kubelet.
    pub async fn register_node(&self, client: &Client, name: &str) -> kube::Result<Node> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name}}))
            .map_err(kube::Error::SerdeError)?;
        nodes.create(&PostParams::default(), &node).await?;
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
    }
}
