//! The sandbox as integration tests use it: one control plane per test
//! process, started on first use and stopped when the process exits, and a
//! fresh namespace per test, deleted when the test ends.
//!
//! The Rust test harness has no "after all tests" hook, so a small watchdog
//! process stops the control plane by pid once the test process is gone (even
//! if it was killed) and deletes its folder, unless a test failed: then the
//! folder, with every component's log, is kept and its path printed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::binaries::Binaries;
use crate::cluster::ControlPlane;
use crate::paths;

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static SHARED_NODE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// The control plane shared by every test in this process.
///
/// Panics with the reason (and how to fix it) if it cannot be started.
pub fn shared() -> &'static ControlPlane {
    shared_in(&SHARED, false)
}

/// The control plane with a real node (kube-scheduler, containerd, kubelet)
/// shared by every test in this process that runs pods for real. Tests that
/// only write pod status themselves use [`shared`], which has no node.
///
/// Panics with the reason (and how to fix it) if it cannot be started.
pub fn shared_node() -> &'static ControlPlane {
    shared_in(&SHARED_NODE, true)
}

fn shared_in(
    cell: &'static OnceLock<Result<ControlPlane, String>>,
    with_node: bool,
) -> &'static ControlPlane {
    let started = cell.get_or_init(|| {
        // Tests run on many short-lived runtimes; start on a thread of our
        // own so that the start does not depend on any of them.
        std::thread::spawn(move || start_for_tests(with_node))
            .join()
            .unwrap_or_else(|_| Err("start-up panicked".into()))
    });
    match started {
        Ok(plane) => plane,
        Err(reason) => panic!(
            "the sandbox control plane{} could not be started:\n{reason}",
            if with_node { " with a node" } else { "" }
        ),
    }
}

fn start_for_tests(with_node: bool) -> Result<ControlPlane, String> {
    let bins = Binaries::locate().map_err(|e| e.to_string())?;
    let root = paths::cache_root().join("sandbox");
    prune_stale_test_dirs(&root);
    let id = if with_node {
        format!("test-{}-node", std::process::id())
    } else {
        format!("test-{}", std::process::id())
    };
    let dir = root.join(&id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // The watchdog comes first, so that even a start interrupted half-way
    // (the test process killed) leaves nothing running.
    spawn_watchdog(&dir).map_err(|e| format!("cannot start the sandbox watchdog: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let options = crate::cluster::StartOptions {
        node: with_node.then_some(crate::node::ForwardBy::Thread),
    };
    runtime
        .block_on(ControlPlane::start_with(&id, &dir, &bins, &options))
        .map_err(|e| e.to_string())
}

/// Stops the control plane by pid once this process is gone; removes its
/// folder unless a test left a `keep` marker in it.
fn spawn_watchdog(dir: &Path) -> std::io::Result<()> {
    // The pids come from the control plane's `pids` file, read when the test
    // process is gone (it grows while the control plane starts). A pid is
    // only signalled while its command line still names this folder.
    const SCRIPT: &str = r#"
        parent=$1; dir=$2
        # A zombie is dead too: not every init reaps orphans promptly.
        alive() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^Z'; }
        ours() { alive "$1" && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF "$dir"; }
        while alive "$parent"; do sleep 0.5; done
        pids=$(tac "$dir/pids" 2>/dev/null)
        for p in $pids; do ours "$p" && kill "$p"; done
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            any=0; for p in $pids; do ours "$p" && any=1; done
            [ "$any" = 0 ] && break; sleep 0.5
        done
        for p in $pids; do ours "$p" && kill -9 "$p"; done
        # A node: whatever runs in its network namespace, containerd's shims,
        # and everything below them; then its mounts and its namespace.
        if [ -r "$dir/node/network" ]; then
            read -r ns hostif < "$dir/node/network"
            victims() {
                roots=$( (ip netns pids "$ns" 2>/dev/null
                    for p in /proc/[0-9]*; do
                        tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q "containerd-shim.*$dir" && echo "${p#/proc/}"
                    done) | tr '\n' ' ')
                ps -eo pid=,ppid= | awk -v roots="$roots" '
                    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) s[r[i]] = 1 }
                    { pp[$1] = $2 }
                    END { c = 1; while (c) { c = 0; for (p in pp) if (!(p in s) && (pp[p] in s)) { s[p] = 1; c = 1 } }
                          for (p in s) print p }'
            }
            for _ in 1 2 3 4 5; do
                v=$(victims); [ -z "$v" ] && break
                # shellcheck disable=SC2086
                kill -9 $v 2>/dev/null; sleep 0.5
            done
            awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
                while read -r m; do umount -l "$m" 2>/dev/null; done
            ip netns delete "$ns" 2>/dev/null; ip link delete "$hostif" 2>/dev/null
        fi
        [ -e "$dir/keep" ] || rm -rf "$dir"
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("runway-sandbox-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    Ok(())
}

/// Removes folders of earlier test processes that are gone, except those a
/// failed test asked to keep (the newest five of those stay).
fn prune_stale_test_dirs(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut kept: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("test-")
            .map(|p| p.strip_suffix("-node").unwrap_or(p))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if crate::process::is_alive(pid) {
            continue;
        }
        let path = entry.path();
        crate::cluster::stop_leftovers(&path);
        if path.join("keep").exists() {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            kept.push((modified, path));
        } else {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    kept.sort();
    let excess = kept.len().saturating_sub(5);
    for (_, path) in kept.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// A namespace of its own for one test; deleted when dropped. If the test
/// fails (panics), the namespace and the control plane's logs are kept and
/// their location printed.
pub struct TestNamespace {
    name: String,
    client: Client,
    plane: &'static ControlPlane,
}

/// Creates a fresh namespace on the shared control plane and waits until its
/// `default` ServiceAccount has a token, so that pods can be created in it.
pub async fn test_namespace() -> TestNamespace {
    namespace_on(shared()).await
}

/// Like [`test_namespace`], on the shared control plane with a real node
/// ([`shared_node`]): pods created in it run as containers.
pub async fn node_test_namespace() -> TestNamespace {
    namespace_on(shared_node()).await
}

async fn namespace_on(plane: &'static ControlPlane) -> TestNamespace {
    let client = plane
        .admin_client()
        .await
        .expect("admin client for the sandbox");
    let name = format!("t-{}", crate::names::random_suffix(8));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("runway.dev/test".to_string(), "true".to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create test namespace");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    crate::wait::until(
        "the namespace's default ServiceAccount token",
        std::time::Duration::from_secs(60),
        || async {
            let sa = accounts.get_opt("default").await.ok().flatten()?;
            sa.secrets.filter(|s| !s.is_empty()).map(|_| ())
        },
    )
    .await
    .expect("default ServiceAccount of the test namespace");
    TestNamespace {
        name,
        client,
        plane,
    }
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client (RBAC does not apply to it).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn plane(&self) -> &'static ControlPlane {
        self.plane
    }

    /// A typed API for this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Lets ServiceAccount `service_account` of this namespace get and list
    /// pods here (Role and RoleBinding `<service_account>-pod-reader`).
    pub async fn grant_pod_reads(&self, service_account: &str) {
        use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
        let name = format!("{service_account}-pod-reader");
        let meta = ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        };
        let role = Role {
            metadata: meta.clone(),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".into()]),
                verbs: vec!["get".into(), "list".into()],
                ..PolicyRule::default()
            }]),
        };
        let binding = RoleBinding {
            metadata: meta,
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name,
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: service_account.into(),
                namespace: Some(self.name.clone()),
                ..Subject::default()
            }]),
        };
        self.api::<Role>()
            .create(&PostParams::default(), &role)
            .await
            .unwrap_or_else(|e| panic!("create Role in {}: {e}", self.name));
        self.api::<RoleBinding>()
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("create RoleBinding in {}: {e}", self.name));
    }

    /// A client acting as ServiceAccount `name` of this namespace.
    pub async fn service_account_client(&self, name: &str) -> Client {
        self.plane
            .service_account_client(&self.name, name)
            .await
            .unwrap_or_else(|e| panic!("token for ServiceAccount {}/{name}: {e}", self.name))
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::fs::write(self.plane.dir().join("keep"), b"a test failed\n");
            eprintln!(
                "sandbox: test failed; namespace {} kept, control plane logs kept in {}",
                self.name,
                self.plane.logs_dir().display()
            );
            return;
        }
        let name = self.name.clone();
        let plane = self.plane;
        // Drop cannot be async. The delete runs on a thread with a runtime of
        // its own and a client of its own: the test's client is bound to the
        // test's runtime, whose thread is blocked right here, so using it
        // would deadlock.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(client) = plane.admin_client().await {
                    let _ = Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::background())
                        .await;
                }
            });
        })
        .join();
    }
}

/// A kubeconfig like the sandbox's admin one at `admin`, authenticated with
/// `token` (e.g. a ServiceAccount's, so that RBAC applies), written to `out`.
pub fn token_kubeconfig(admin: &Path, token: &str, out: &Path) {
    let text = std::fs::read_to_string(admin).expect("the admin kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    config["users"] = serde_yaml::to_value(serde_json::json!([
        { "name": "token-user", "user": { "token": token } }
    ]))
    .expect("users as YAML");
    for context in config["contexts"].as_sequence_mut().expect("contexts") {
        context["context"]["user"] = "token-user".into();
    }
    std::fs::write(
        out,
        serde_yaml::to_string(&config).expect("kubeconfig as YAML"),
    )
    .expect("write the token kubeconfig");
}
