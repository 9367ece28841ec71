//! Where the sandbox keeps things on disk. Everything lives under
//! `~/.cache/runway/` (or `$RUNWAY_CACHE`), so that a second run is fast and a
//! `rm -rf ~/.cache/runway` starts over.

use std::path::PathBuf;

/// Version of the Kubernetes control plane the sandbox runs.
pub const K8S_VERSION: &str = "v1.20.2";

/// `~/.cache/runway`, or `$RUNWAY_CACHE` when set.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNWAY_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("runway")
}

/// Where the built `kube-apiserver` and `kube-controller-manager` live.
pub fn k8s_bin_dir() -> PathBuf {
    cache_root().join("k8s").join(K8S_VERSION)
}

/// The state folder of a named sandbox (`runway-sandbox up --name NAME`).
pub fn sandbox_dir(name: &str) -> PathBuf {
    cache_root().join("sandbox").join(name)
}

/// The project's install script, found next to this crate's sources.
pub fn install_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join("install-deps.sh")
}
