//! Checked-in render snapshots of both charts with the real Helm 4 SDK: each
//! value set below renders (fixed release name and namespace) to the
//! manifests in `sandbox/tests/snapshots/<name>.yaml`, so that any change of
//! a chart's output shows up in review as a change of a snapshot.
//!
//! A snapshot is the manifests as `helm template` prints them, but in a
//! stable order: template files sorted by path, each document with a
//! `# Source: <path>` header. NOTES.txt and partials are left out, as Helm
//! does. After a deliberate chart change,
//! `RUNWAY_UPDATE_SNAPSHOTS=1 cargo test -p runway-sandbox --test chart_snapshots`
//! rewrites the snapshots; review the diff before committing it.

mod support;

use std::path::{Path, PathBuf};

use runway_sandbox::helm;
use serde_json::{Value, json};
use support::example;

const UPDATE_VAR: &str = "RUNWAY_UPDATE_SNAPSHOTS";
const UPDATE_COMMAND: &str =
    "RUNWAY_UPDATE_SNAPSHOTS=1 cargo test -p runway-sandbox --test chart_snapshots";

const SCALE_SET_RELEASE: &str = "arm-builders";
const SCALE_SET_NAMESPACE: &str = "runners";
const CONTROLLER_RELEASE: &str = "runway";
const CONTROLLER_NAMESPACE: &str = "runway-system";

// ---------------------------------------------------------------- scale set

fn scale_set(snapshot: &str, values: Value) {
    check_snapshot(
        snapshot,
        "runway-scale-set",
        &values,
        SCALE_SET_RELEASE,
        SCALE_SET_NAMESPACE,
    );
}

/// The smallest values that install: a URL and a PAT (a fake one).
#[test]
fn scale_set_default() {
    scale_set(
        "scale-set-default",
        json!({
            "githubConfigUrl": "https://github.com/acme-corp",
            "githubConfigSecret": { "github_token": "ghp_exampleExampleExample" },
        }),
    );
}

/// A GitHub App's three keys as a map: the chart creates the Secret.
#[test]
fn scale_set_github_app() {
    scale_set(
        "scale-set-github-app",
        json!({
            "githubConfigUrl": "https://github.com/acme-corp",
            "githubConfigSecret": {
                "github_app_id": "123456",
                "github_app_installation_id": "654321",
                "github_app_private_key":
                    "-----BEGIN RSA PRIVATE KEY-----\nnot-a-real-key\n-----END RSA PRIVATE KEY-----\n",
            },
        }),
    );
}

/// An existing Secret by name: the chart creates none.
#[test]
fn scale_set_existing_secret() {
    scale_set(
        "scale-set-existing-secret",
        json!({
            "githubConfigUrl": "https://github.com/acme-corp/widgets",
            "githubConfigSecret": "github-credentials",
        }),
    );
}

/// The runners' ServiceAccount with an IRSA role.
#[test]
fn scale_set_irsa_service_account() {
    scale_set(
        "scale-set-irsa",
        json!({
            "githubConfigUrl": "https://github.com/acme-corp",
            "githubConfigSecret": "github-credentials",
            "serviceAccount": {
                "create": true,
                "name": "arm-builders-runner",
                "annotations": {
                    "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/arm-builders-ci",
                },
            },
        }),
    );
}

/// ARC's GHES CA mount (`githubServerTLS.runnerMountPath`), done as ARC
/// does it; ARC's `none` container mode and quoted label values.
#[test]
fn scale_set_arc_server_tls() {
    scale_set(
        "scale-set-arc-server-tls",
        json!({
            "githubConfigUrl": "https://ghe.example.com/enterprises/acme",
            "githubConfigSecret": "github-credentials",
            "containerMode": { "type": "none" },
            "labels": { "cost-center": 1234 },
            "githubServerTLS": {
                "certificateFrom": { "configMapKeyRef": { "name": "ghes-ca", "key": "ca.crt" } },
                "runnerMountPath": "/usr/local/share/ca-certificates/",
            },
        }),
    );
}

/// Kubernetes actions: the allowlist, the RBAC of the runners, the state
/// ConfigMaps and Roles, and the executor named in `spec.kubeActions`. (The
/// `runway serve` Deployment is left out: its token Secret is random.)
#[test]
fn scale_set_kube_actions() {
    scale_set(
        "scale-set-kube-actions",
        json!({
            "githubConfigUrl": "https://github.com/acme-corp",
            "githubConfigSecret": "github-credentials",
            "kubernetesActions": {
                "pods": ["get", "list", "logs"],
                "deployments": ["get", "restart", "scale"],
                "secrets": ["get"],
                "executor": {
                    "image": { "repository": "ghcr.io/acme/runway", "tag": "1.4.0" },
                    "resources": { "limits": { "memory": "64Mi" } },
                },
            },
            "kubernetesActionsNamespaces": ["app-staging"],
            "kubernetesActionsProtectedNamespaces": ["prod-db"],
        }),
    );
}

#[test]
fn scale_set_example_arc_migration() {
    scale_set("scale-set-arc-migration", example("arc-migration"));
}

#[test]
fn scale_set_example_eks_arm64_dind_irsa() {
    scale_set(
        "scale-set-eks-arm64-dind-irsa",
        example("eks-arm64-dind-irsa"),
    );
}

// --------------------------------------------------------------- controller

fn controller(snapshot: &str, values: Value) {
    check_snapshot(
        snapshot,
        "runway-controller",
        &values,
        CONTROLLER_RELEASE,
        CONTROLLER_NAMESPACE,
    );
}

#[test]
fn controller_default() {
    controller("controller-default", json!({}));
}

/// One watched namespace: Roles there instead of a ClusterRole.
#[test]
fn controller_watch_namespaces() {
    controller(
        "controller-watch-namespaces",
        json!({ "watchNamespaces": ["team-a"] }),
    );
}

// ---------------------------------------------------------------- machinery

fn snapshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("snapshots")
        .join(format!("{name}.yaml"))
}

fn updating() -> bool {
    std::env::var(UPDATE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Renders `chart` with `values` and compares the manifests to the snapshot
/// `name` (or writes it, when updating).
fn check_snapshot(name: &str, chart: &str, values: &Value, release: &str, namespace: &str) {
    let rendered = manifests(chart, values, release, namespace);
    // A snapshot of output that changes from one render to the next would
    // only ever fail: catch it here, by name, rather than as a stale file.
    let again = manifests(chart, values, release, namespace);
    if rendered != again {
        panic!(
            "chart {chart} renders differently twice with the same values (snapshot {name}): \
             something random or time-dependent is in a template\n{}",
            diff(&rendered, &again)
        );
    }

    let path = snapshot_path(name);
    if updating() {
        let dir = path.parent().expect("snapshots dir");
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        std::fs::write(&path, &rendered)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let expected = match std::fs::read_to_string(&path) {
        Ok(text) => text.replace("\r\n", "\n"),
        Err(e) => panic!(
            "snapshot {} cannot be read ({e}); `{UPDATE_COMMAND}` writes it",
            path.display()
        ),
    };
    if expected != rendered {
        panic!(
            "chart {chart} no longer renders as snapshot {} (- snapshot, + rendered):\n{}\n\
             If the change is intended, `{UPDATE_COMMAND}` rewrites the snapshots; review \
             the diff before committing.",
            path.display(),
            diff(&expected, &rendered)
        );
    }
}

/// The chart's manifests as one text: template files sorted by path, every
/// non-empty document under `---` and a `# Source: <path>` header, as
/// `helm template` prints them.
fn manifests(chart: &str, values: &Value, release: &str, namespace: &str) -> String {
    let files = helm::render(&helm::chart_path(chart), values, release, namespace)
        .unwrap_or_else(|e| panic!("render {chart} with {values}: {e}"));
    let mut out = String::new();
    // A BTreeMap: sorted by path already.
    for (path, text) in &files {
        let file = path.rsplit('/').next().unwrap_or(path);
        if !(file.ends_with(".yaml") || file.ends_with(".yml")) || file.starts_with('_') {
            continue;
        }
        for doc in documents(text) {
            out.push_str("---\n# Source: ");
            out.push_str(path);
            out.push('\n');
            out.push_str(doc);
            out.push('\n');
        }
    }
    out
}

/// The YAML documents of one rendered file, trimmed, without empty ones
/// (Helm's `SplitManifests`: a line `---` separates documents).
fn documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs.into_iter()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}

/// Lines of diff output shown at most.
const DIFF_LINES: usize = 40;
/// Unchanged lines shown around a change.
const CONTEXT: usize = 3;

/// A short line diff of `old` and `new`: hunks with `@@ line` headers,
/// `-`/`+` lines and a little context, cut after [`DIFF_LINES`] lines.
fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence table (the snapshots are small).
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (tag, line number in old, text).
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', i + 1, a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, a[i]));
            i += 1;
        } else {
            ops.push(('+', i + 1, b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    if changed.is_empty() {
        return "(the texts differ only in line endings or a final newline)".to_string();
    }
    let mut out = Vec::new();
    let mut shown_until = 0; // ops before this index are printed
    for &k in &changed {
        if out.len() >= DIFF_LINES {
            break;
        }
        let from = k.saturating_sub(CONTEXT).max(shown_until);
        if from > shown_until || out.is_empty() {
            out.push(format!("@@ snapshot line {} @@", ops[from].1));
        }
        let to = (k + CONTEXT + 1).min(ops.len());
        for op in &ops[from..to] {
            out.push(format!("{}{}", op.0, op.2));
        }
        shown_until = shown_until.max(to);
    }
    let total = changed.len();
    if out.len() > DIFF_LINES || (shown_until < ops.len() && changed.last() >= Some(&shown_until)) {
        out.truncate(DIFF_LINES);
        out.push(format!("... (diff cut; {total} changed line(s) in all)"));
    } else {
        out.push(format!("({total} changed line(s) in all)"));
    }
    out.join("\n")
}
