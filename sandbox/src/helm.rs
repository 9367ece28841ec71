//! The real Helm 4 SDK, for chart tests: a small typed bridge to the PyPI
//! package `helm-python-sdk` (import `helm_python`, which binds Helm's Go SDK;
//! `sandbox/scripts/install-deps.sh` installs it). Each call runs
//! `python3 -c <script>` with a JSON request on stdin and reads one JSON
//! answer on stdout; `$PYTHON` picks another interpreter.
//!
//! Offline: [`lint`] and [`render`]. Against an API server (the sandbox's,
//! through a kubeconfig): [`install`], [`upgrade`] and [`uninstall`], which
//! return once Helm has written every object (no `--wait`: no kubelet runs
//! pods in the sandbox, so nothing would ever become ready).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::{Value, json};

/// The bridge script. Helm's Go side may log on the process's stdout, so the
/// answer goes to a private copy of the original stdout and everything else
/// to stderr.
const SCRIPT: &str = r#"
import json, os, sys
answer = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
def reply(obj):
    answer.write(json.dumps(obj))
    answer.flush()
try:
    import helm_python as helm
except Exception as e:
    reply({"error": {"kind": "ImportError", "message": "import helm_python: %s (run sandbox/scripts/install-deps.sh)" % e}})
    sys.exit(0)
req = json.load(sys.stdin)
try:
    if req["op"] == "lint":
        reply({"ok": helm.lint(req["chart"], req["values"], namespace=req.get("namespace"))})
    elif req["op"] in ("install", "upgrade", "uninstall"):
        with helm.Config(kubeconfig_path=req["kubeconfig"], namespace=req["namespace"]) as cfg:
            if req["op"] == "install":
                out = cfg.install(req["chart"], req["name"], req["values"],
                                  namespace=req["namespace"], timeout=req["timeout"])
            elif req["op"] == "upgrade":
                out = cfg.upgrade(req["chart"], req["name"], req["values"],
                                  namespace=req["namespace"], timeout=req["timeout"])
            else:
                out = cfg.uninstall(req["name"], timeout=req["timeout"])["release"]
        reply({"ok": out})
    elif req["op"] == "render":
        with helm.Chart.load(req["chart"]) as chart:
            out = chart.render(req["values"], name=req["name"], namespace=req["namespace"])
        reply({"ok": out})
    else:
        reply({"error": {"kind": "BadRequest", "message": "unknown op %r" % req["op"]}})
except Exception as e:
    reply({"error": {"kind": type(e).__name__, "message": str(e)}})
"#;

/// What can go wrong talking to Helm. Every variant names the chart.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// The interpreter could not be started.
    #[error("chart {chart}: cannot run {python} for the Helm SDK: {source}")]
    Spawn {
        chart: String,
        python: String,
        #[source]
        source: std::io::Error,
    },
    /// The bridge itself failed (no answer, or an answer it cannot read).
    #[error("chart {chart}: the Helm SDK bridge failed: {message}")]
    Bridge { chart: String, message: String },
    /// Helm refused: `kind` is the SDK's exception class (`HelmValuesError`
    /// for a schema violation, `HelmRenderError` for a template's `fail`),
    /// `message` Helm's own text.
    #[error("chart {chart}: {kind}: {message}")]
    Helm {
        chart: String,
        kind: String,
        message: String,
    },
    /// A rendered template is not YAML.
    #[error("the rendered {template} is not YAML: {message}")]
    Manifest { template: String, message: String },
    /// Helm refused or failed a release action (install, upgrade,
    /// uninstall): `kind` is the SDK's exception class (`HelmReleaseError`,
    /// `HelmNotFoundError`, `HelmKubeError`, ...), `message` Helm's own text.
    #[error(
        "release {release} in namespace {namespace}{}: {kind}: {message}",
        .chart.as_deref().map(|c| format!(" (chart {c})")).unwrap_or_default()
    )]
    Release {
        release: String,
        namespace: String,
        /// The chart installed or upgraded; None for an uninstall.
        chart: Option<String>,
        kind: String,
        message: String,
    },
}

/// How serious a lint finding is (Helm's numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Unknown,
    Info,
    Warning,
    Error,
}

impl Severity {
    fn from_code(code: i64) -> Self {
        match code {
            1 => Severity::Info,
            2 => Severity::Warning,
            3 => Severity::Error,
            _ => Severity::Unknown,
        }
    }
}

/// One lint finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintMessage {
    pub severity: Severity,
    /// The chart file it is about (`Chart.yaml`, `values.yaml`, `templates/`).
    pub path: String,
    pub message: String,
}

/// `helm lint`'s findings: data, not an error, even when the chart is bad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LintReport {
    pub messages: Vec<LintMessage>,
    /// Helm's error texts (the findings of severity error, as Helm lists them).
    pub errors: Vec<String>,
}

impl LintReport {
    /// Findings at `severity` or above.
    pub fn at_least(&self, severity: Severity) -> impl Iterator<Item = &LintMessage> {
        self.messages.iter().filter(move |m| m.severity >= severity)
    }
}

#[derive(Deserialize)]
struct RawLint {
    #[serde(default)]
    messages: Vec<RawMessage>,
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    severity: i64,
    path: String,
    error: String,
}

#[derive(Deserialize)]
struct Answer {
    ok: Option<Value>,
    error: Option<RawError>,
}

#[derive(Deserialize)]
struct RawError {
    kind: String,
    message: String,
}

/// A chart of this repository by name (`runway-controller`, ...).
pub fn chart_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("charts")
        .join(name)
}

/// Lints the chart in `chart_dir` with `values` (an object, merged over the
/// chart's values.yaml), including the values schema.
pub fn lint(chart_dir: &Path, values: &Value) -> Result<LintReport, HelmError> {
    let chart = chart_dir.display().to_string();
    let raw = call(
        &chart,
        json!({ "op": "lint", "chart": chart, "values": values }),
    )?;
    let raw: RawLint = serde_json::from_value(raw).map_err(|e| HelmError::Bridge {
        chart: chart.clone(),
        message: format!("unexpected lint report: {e}"),
    })?;
    Ok(LintReport {
        messages: raw
            .messages
            .into_iter()
            .map(|m| LintMessage {
                severity: Severity::from_code(m.severity),
                path: m.path,
                message: m.error,
            })
            .collect(),
        errors: raw.errors,
    })
}

/// Renders the chart offline as release `release_name` in `namespace`:
/// template path (`runway-controller/templates/rbac.yaml`) to manifest
/// text. Values that break the schema and templates that `fail` are errors.
pub fn render(
    chart_dir: &Path,
    values: &Value,
    release_name: &str,
    namespace: &str,
) -> Result<BTreeMap<String, String>, HelmError> {
    let chart = chart_dir.display().to_string();
    let raw = call(
        &chart,
        json!({
            "op": "render",
            "chart": chart,
            "values": values,
            "name": release_name,
            "namespace": namespace,
        }),
    )?;
    serde_json::from_value(raw).map_err(|e| HelmError::Bridge {
        chart,
        message: format!("unexpected render result: {e}"),
    })
}

/// The objects of a render: every document of every `.yaml` template, in
/// template order, empty documents left out (NOTES.txt is not a manifest).
pub fn manifests(rendered: &BTreeMap<String, String>) -> Result<Vec<Value>, HelmError> {
    let mut objects = Vec::new();
    for (template, text) in rendered.iter().filter(|(p, _)| p.ends_with(".yaml")) {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = Value::deserialize(doc).map_err(|e| HelmError::Manifest {
                template: template.clone(),
                message: format!("{e}\n{text}"),
            })?;
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    Ok(objects)
}

/// Seconds Helm may take for one release action before it gives up.
const RELEASE_TIMEOUT_SECS: u64 = 120;

/// A release as Helm reports it after an install, upgrade or uninstall.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub revision: u64,
    /// Helm's state: `deployed` after an install or upgrade, `uninstalled`
    /// after an uninstall.
    pub status: String,
    /// The rendered NOTES.txt.
    #[serde(default)]
    pub notes: String,
    /// Every manifest of the release, as applied.
    #[serde(default)]
    pub manifest: String,
    #[serde(default)]
    pub chart_name: String,
    #[serde(default)]
    pub chart_version: String,
    #[serde(default)]
    pub app_version: String,
}

/// `helm install <release> <chart_dir> -n <namespace>` against the API
/// server of `kubeconfig`, with `values` (an object, merged over the chart's
/// values.yaml). The chart's `crds/` are created when missing and left alone
/// when they exist. Returns once every object is written (no `--wait`).
pub fn install(
    chart_dir: &Path,
    release: &str,
    namespace: &str,
    values: &Value,
    kubeconfig: &Path,
) -> Result<Release, HelmError> {
    release_action(
        "install",
        Some(chart_dir),
        release,
        namespace,
        values,
        kubeconfig,
    )
}

/// `helm upgrade <release> <chart_dir> -n <namespace>` with `values` (the
/// release's values become exactly these, merged over the chart's
/// values.yaml, as the CLI does without `--reuse-values`).
pub fn upgrade(
    chart_dir: &Path,
    release: &str,
    namespace: &str,
    values: &Value,
    kubeconfig: &Path,
) -> Result<Release, HelmError> {
    release_action(
        "upgrade",
        Some(chart_dir),
        release,
        namespace,
        values,
        kubeconfig,
    )
}

/// `helm uninstall <release> -n <namespace>`: deletes the release's objects
/// (not its CRDs, as Helm never does) and its history. Returns once the
/// deletes are accepted (objects with finalizers may still be going), with
/// the release as it was and status `uninstalled`. A release that does not
/// exist is an error (`HelmNotFoundError`).
pub fn uninstall(release: &str, namespace: &str, kubeconfig: &Path) -> Result<Release, HelmError> {
    release_action(
        "uninstall",
        None,
        release,
        namespace,
        &Value::Null,
        kubeconfig,
    )
}

fn release_action(
    op: &str,
    chart_dir: Option<&Path>,
    release: &str,
    namespace: &str,
    values: &Value,
    kubeconfig: &Path,
) -> Result<Release, HelmError> {
    let chart = chart_dir.map(|c| c.display().to_string());
    let subject = match &chart {
        Some(chart) => format!("{chart} (release {release} in namespace {namespace})"),
        None => format!("- (release {release} in namespace {namespace})"),
    };
    let raw = call_raw(
        &subject,
        json!({
            "op": op,
            "chart": chart,
            "name": release,
            "namespace": namespace,
            "values": values,
            "kubeconfig": kubeconfig.display().to_string(),
            "timeout": RELEASE_TIMEOUT_SECS,
        }),
    )?
    .map_err(|error| HelmError::Release {
        release: release.to_string(),
        namespace: namespace.to_string(),
        chart: chart.clone(),
        kind: error.kind,
        message: error.message.trim().to_string(),
    })?;
    serde_json::from_value(raw).map_err(|e| HelmError::Bridge {
        chart: subject,
        message: format!("unexpected {op} result: {e}"),
    })
}

fn call(chart: &str, request: Value) -> Result<Value, HelmError> {
    call_raw(chart, request)?.map_err(|error| HelmError::Helm {
        chart: chart.to_string(),
        kind: error.kind,
        message: error.message.trim().to_string(),
    })
}

/// Runs the bridge. The outer error is the bridge's own failure (named after
/// `subject`); the inner one Helm's refusal, for the caller to name.
fn call_raw(subject: &str, request: Value) -> Result<Result<Value, RawError>, HelmError> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let bridge = |message: String| HelmError::Bridge {
        chart: subject.to_string(),
        message,
    };
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HelmError::Spawn {
            chart: subject.to_string(),
            python: python.clone(),
            source,
        })?;
    let body = serde_json::to_vec(&request).map_err(|e| bridge(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&body)
            .map_err(|e| bridge(format!("writing the request: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| bridge(format!("waiting for {python}: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let answer: Answer = serde_json::from_slice(&output.stdout).map_err(|e| {
        bridge(format!(
            "{python} exited with {} and no answer ({e}); stderr: {}",
            output.status,
            stderr.trim()
        ))
    })?;
    match (answer.ok, answer.error) {
        (_, Some(error)) => Ok(Err(error)),
        (Some(ok), None) => Ok(Ok(ok)),
        (None, None) => Err(bridge("an empty answer".to_string())),
    }
}
