//! Finding the sandbox's programs: etcd, containerd and runc from Debian;
//! kube-apiserver, kube-controller-manager, kube-scheduler and kubelet built
//! by `scripts/install-deps.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::paths;

#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubelet: PathBuf,
    pub containerd: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error(
        "{missing} is not installed (looked in {looked}). Install everything the sandbox needs with:\n    bash {script}\n(builds Kubernetes {version} from Debian's source once, about 8 minutes)"
    )]
    Missing {
        missing: String,
        looked: String,
        script: String,
        version: &'static str,
    },
    #[error(
        "the install script {script} failed ({status}); its output above names the step that failed and how to retry"
    )]
    InstallFailed {
        script: String,
        status: std::process::ExitStatus,
    },
    #[error("cannot run the install script {script}: {source}")]
    InstallSpawn {
        script: String,
        source: std::io::Error,
    },
}

impl Binaries {
    /// Finds the programs, or says exactly what is missing and how to get it.
    pub fn locate() -> Result<Self, BinariesError> {
        let k8s = paths::k8s_bin_dir();
        let etcd = which("etcd").unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"));
        let found = Self {
            etcd,
            kube_apiserver: k8s.join("kube-apiserver"),
            kube_controller_manager: k8s.join("kube-controller-manager"),
            kube_scheduler: k8s.join("kube-scheduler"),
            kubelet: k8s.join("kubelet"),
            containerd: which("containerd").unwrap_or_else(|| PathBuf::from("/usr/bin/containerd")),
        };
        for path in [
            &found.etcd,
            &found.kube_apiserver,
            &found.kube_controller_manager,
            &found.kube_scheduler,
            &found.kubelet,
            &found.containerd,
        ] {
            if !is_executable(path) {
                return Err(BinariesError::Missing {
                    missing: path
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    looked: path.display().to_string(),
                    script: paths::install_script().display().to_string(),
                    version: paths::K8S_VERSION,
                });
            }
        }
        Ok(found)
    }

    /// Like [`Binaries::locate`], but runs the install script first when
    /// something is missing (its progress goes to this process's stderr).
    pub fn locate_or_install() -> Result<Self, BinariesError> {
        if let Ok(found) = Self::locate() {
            return Ok(found);
        }
        let script = paths::install_script();
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .map_err(|source| BinariesError::InstallSpawn {
                script: script.display().to_string(),
                source,
            })?;
        if !status.success() {
            return Err(BinariesError::InstallFailed {
                script: script.display().to_string(),
                status,
            });
        }
        Self::locate()
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|m| m.is_file() && m.len() > 0 && m.permissions().mode() & 0o111 != 0)
}
