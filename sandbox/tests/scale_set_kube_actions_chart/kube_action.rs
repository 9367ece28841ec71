//! The reusable action `workflows/actions/kube`: valid for action-validator,
//! inputs passed as data only, and its script, run as GitHub runs a bash
//! step against a stand-in `runway`, builds the CLI call and sets the
//! outputs (multi-line safe) and the exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use runway_sandbox::actions;
use serde_json::Value;

// ------------------------------------------------------ the reusable action

#[test]
fn the_kube_action_passes_action_validator() {
    if let Err(report) = actions::load("kube").validate() {
        panic!("{report}");
    }
}

/// The action's file, parsed.
fn action() -> Value {
    actions::load("kube").yaml
}

#[test]
fn the_kube_action_never_interpolates_inputs_into_its_script() {
    let action = action();
    assert_eq!(action["runs"]["using"], "composite");
    let step = &action["runs"]["steps"][0];
    let script = step["run"].as_str().expect("run");
    assert!(
        !script.contains("${{"),
        "expressions in the script text:\n{script}"
    );
    let inputs: BTreeSet<&str> = action["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        inputs,
        BTreeSet::from([
            "action",
            "resource",
            "name",
            "namespace",
            "selector",
            "body",
            "dry-run"
        ])
    );
    for input in inputs {
        let var = format!("INPUT_{}", input.to_uppercase().replace('-', "_"));
        assert_eq!(
            step["env"][&var],
            format!("${{{{ inputs.{input} }}}}"),
            "input {input} reaches the script as {var}"
        );
    }
    let outputs: BTreeSet<&str> = action["outputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(outputs, BTreeSet::from(["changed", "result"]));
}

/// A stand-in `runway`: records its arguments (one per line) and the body
/// file's content, prints `$FAKE_OUTPUT` and exits with `$FAKE_RC`.
const FAKE_RUNWAY: &str = r#"#!/usr/bin/env bash
printf '%s\n' "$@" > "$FAKE_DIR/args"
while (( $# )); do
  if [[ "$1" == -f ]]; then cat "$2" > "$FAKE_DIR/body"; fi
  shift
done
printf '%s' "$FAKE_OUTPUT"
exit "${FAKE_RC:-0}"
"#;

struct ActionRun {
    code: i32,
    args: Vec<String>,
    body: Option<String>,
    outputs: BTreeMap<String, String>,
    stdout: String,
}

/// Runs the action's script as GitHub runs a bash step, with `inputs` as
/// the env the step maps them to.
fn run_action(inputs: &[(&str, &str)], fake_output: &str, fake_rc: i32) -> ActionRun {
    run_action_in(Tools::Machine, inputs, fake_output, fake_rc)
}

/// Which commands the step finds on PATH.
#[derive(Clone, Copy, Debug)]
enum Tools {
    /// This machine's PATH (jq, when installed, reads the JSON).
    Machine,
    /// Only what the script needs besides jq, as on a runner image without
    /// it, so that the fallback reads the JSON.
    WithoutJq,
}

/// The commands the step and the stand-in use, jq aside.
const BASE_TOOLS: [&str; 9] = [
    "bash", "cat", "grep", "mktemp", "od", "rm", "sed", "tr", "env",
];

fn which(tool: &str) -> PathBuf {
    actions::on_path(tool).unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

fn run_action_in(
    tools: Tools,
    inputs: &[(&str, &str)],
    fake_output: &str,
    fake_rc: i32,
) -> ActionRun {
    let scratch = actions::ScratchDir::new("kube-action");
    let dir = scratch.path();
    let fake = dir.join("runway");
    actions::write_executable(&fake, FAKE_RUNWAY);
    let script = dir.join("step.sh");
    std::fs::write(&script, actions::load("kube").script()).unwrap();
    let output_file = dir.join("github_output");
    std::fs::write(&output_file, "").unwrap();
    let mut cmd = Command::new(which("bash"));
    if let Tools::WithoutJq = tools {
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        for tool in BASE_TOOLS {
            std::os::unix::fs::symlink(which(tool), bin.join(tool)).unwrap();
        }
        cmd.env("PATH", &bin);
    }
    cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .env("RUNWAY_BIN", &fake)
        .env("FAKE_DIR", dir)
        .env("FAKE_OUTPUT", fake_output)
        .env("FAKE_RC", fake_rc.to_string())
        .env("GITHUB_OUTPUT", &output_file)
        .env("RUNNER_TEMP", dir);
    for name in [
        "action",
        "resource",
        "name",
        "namespace",
        "selector",
        "body",
        "dry-run",
    ] {
        let var = format!("INPUT_{}", name.to_uppercase().replace('-', "_"));
        let value = inputs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        cmd.env(
            var,
            value.unwrap_or(if name == "dry-run" { "false" } else { "" }),
        );
    }
    let out = cmd.output().expect("run bash");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let run = ActionRun {
        code: out.status.code().unwrap_or(-1),
        args: read("args")
            .map(|a| a.lines().map(str::to_string).collect())
            .unwrap_or_default(),
        body: read("body"),
        outputs: actions::parse_github_output(&std::fs::read_to_string(&output_file).unwrap()),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("runway-kube-body"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the body file is left behind: {leftovers:?}"
    );
    run
}

#[test]
fn the_kube_action_runs_the_cli_and_sets_multi_line_outputs() {
    // Pretty JSON whose nested object also has a `changed` key, and a line
    // that looks like a GitHub output delimiter.
    let changed = "{\n  \"summary\": \"restarted deployments/api in prod\",\n  \"changed\": true,\n  \"result\": {\"data\": {\"changed\": false, \"note\": \"EOF\\nrunway_\"}}\n}";
    // A summary quoting the key (escaped) must not be read as the field.
    let unchanged = "{\"summary\":\"already \\\"changed\\\": true\",\"changed\":false,\"result\":{\"changed\":true}}";
    for tools in [Tools::Machine, Tools::WithoutJq] {
        for (json, expected) in [(changed, "true"), (unchanged, "false")] {
            let run = run_action_in(
                tools,
                &[
                    ("action", "restart"),
                    ("resource", "deployments"),
                    ("name", "api"),
                    ("namespace", "prod"),
                    ("dry-run", "true"),
                ],
                json,
                0,
            );
            assert_eq!(run.code, 0, "{tools:?}: stdout: {}", run.stdout);
            assert_eq!(
                run.args,
                [
                    "kube",
                    "restart",
                    "deployments/api",
                    "-o",
                    "json",
                    "-n",
                    "prod",
                    "--dry-run"
                ]
            );
            assert_eq!(run.outputs["result"], json, "{tools:?}");
            assert_eq!(run.outputs["changed"], expected, "{tools:?}: {json}");
            if let Tools::WithoutJq = tools {
                // Only jq's path prints the summary: the fallback ran.
                assert!(!run.stdout.contains("deployments/api"), "{}", run.stdout);
            }
        }
    }
}

/// shellcheck from PATH; install-deps.sh installs it.
#[test]
fn the_kube_action_script_passes_shellcheck() {
    if let Err(findings) = actions::load("kube").shellcheck() {
        panic!("{findings}");
    }
}

#[test]
fn the_kube_action_passes_inputs_as_data() {
    // Shell syntax in inputs stays text: no command runs, no word splits.
    let marker = std::env::temp_dir().join(format!("runway-pwned-{}", std::process::id()));
    let evil = format!("app=x,$(touch {m}) `touch {m}`", m = marker.display());
    let body = "{\"replicas\": 3,\n \"note\": \"$(touch /tmp/x) 'quoted' \\\"q\\\"\"}";
    let run = run_action(
        &[
            ("action", "scale"),
            ("resource", "deployments"),
            ("selector", &evil),
            ("body", body),
        ],
        "{\"summary\":\"scaled\",\"changed\":false,\"result\":{\"changed\":true}}",
        0,
    );
    assert_eq!(run.code, 0, "stdout: {}", run.stdout);
    assert!(!marker.exists(), "an input ran as a command");
    assert_eq!(
        run.args[..5],
        ["kube", "scale", "deployments", "-o", "json"]
    );
    assert_eq!(run.args[5..7], ["-l".to_string(), evil]);
    assert_eq!(run.args[7], "-f");
    assert_eq!(
        run.body.as_deref(),
        Some(body),
        "the body reaches the CLI unchanged"
    );
    assert_eq!(
        run.outputs["changed"], "false",
        "the top-level field, not the result's"
    );
}

#[test]
fn the_kube_action_keeps_the_cli_exit_code_and_refuses_bad_inputs() {
    let denied = run_action(
        &[("action", "delete"), ("resource", "pods"), ("name", "x")],
        "",
        3,
    );
    assert_eq!(denied.code, 3);
    assert_eq!(denied.outputs["changed"], "false");
    assert_eq!(denied.outputs["result"], "");

    for inputs in [
        vec![
            ("action", "get"),
            ("resource", "pods"),
            ("name", "--kubeconfig=/tmp/k"),
        ],
        vec![("action", "-h"), ("resource", "pods")],
        vec![("action", "get"), ("resource", "pods"), ("namespace", "-x")],
        vec![
            ("action", "get"),
            ("resource", "pods"),
            ("dry-run", "maybe"),
        ],
        vec![("action", "get"), ("resource", "pods/x")],
        vec![("action", ""), ("resource", "pods")],
    ] {
        let run = run_action(&inputs, "{}", 0);
        assert_eq!(run.code, 2, "{inputs:?}: {}", run.stdout);
        assert!(run.args.is_empty(), "{inputs:?}: the CLI ran");
        assert!(run.stdout.contains("::error"), "{inputs:?}: {}", run.stdout);
    }
}
