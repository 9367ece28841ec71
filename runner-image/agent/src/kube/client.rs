//! The Kubernetes client `runway` acts with: the pod's ServiceAccount in a
//! runner pod, or a kubeconfig for local use and tests.
//!
//! kube's default retry of 429/503 answers is off: a 429 from the Eviction
//! API means a PodDisruptionBudget said no, which drain must see and report
//! at once, and an action should fail plainly rather than wait on its own.

use std::path::{Path, PathBuf};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error(
        "no Kubernetes configuration: {0} (in a runner pod the ServiceAccount is used; elsewhere set KUBECONFIG or --kubeconfig)"
    )]
    NotFound(String),
    #[error("cannot build the Kubernetes client: {0}")]
    Build(String),
}

/// A client from `kubeconfig`/`context`, else the usual inference
/// ($KUBECONFIG, ~/.kube/config, the pod's ServiceAccount).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Client, ClientError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| ClientError::Kubeconfig {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| ClientError::Kubeconfig {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ClientError::NotFound(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| ClientError::NotFound(e.to_string()))?,
    };
    config.default_retry = false;
    Client::try_from(config).map_err(|e| ClientError::Build(e.to_string()))
}
