//! The real Helm 4 SDK, for chart tests: a small typed bridge to the PyPI
//! package `helm-python-sdk` (import `helm_python`, which binds Helm's Go SDK;
//! `sandbox/scripts/install-deps.sh` installs it). Each call runs
//! `python3 -c <script>` with a JSON request on stdin and reads one JSON
//! answer on stdout; `$PYTHON` picks another interpreter.
//!
//! Offline only for now: [`lint`] and [`render`]. Install and upgrade against
//! the sandbox's API server come later.

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

fn call(chart: &str, request: Value) -> Result<Value, HelmError> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let bridge = |message: String| HelmError::Bridge {
        chart: chart.to_string(),
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
            chart: chart.to_string(),
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
        (_, Some(error)) => Err(HelmError::Helm {
            chart: chart.to_string(),
            kind: error.kind,
            message: error.message.trim().to_string(),
        }),
        (Some(ok), None) => Ok(ok),
        (None, None) => Err(bridge("an empty answer".to_string())),
    }
}
