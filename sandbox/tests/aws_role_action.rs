//! The reusable action `workflows/actions/aws-role`: valid for
//! action-validator and shellcheck, inputs reaching its script only as
//! environment variables, and its script, run as GitHub runs a bash step
//! against a stand-in `runway`, turns each input into the right
//! `runway aws assume-role` flag, never executes input text, keeps or drops
//! the earlier step's keys as `role-chaining` says, and exits with the CLI's
//! code.
//!
//! The input -> variable mapping is read from action.yml itself (as the
//! runner does), so these tests run the script with exactly the environment
//! a job would give it; the stand-in writes `$GITHUB_ENV`/`$GITHUB_OUTPUT`
//! in the format of the real CLI (runner-image/agent/src/aws/cli.rs, whose
//! own tests pin that format against the fake STS).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use runway_sandbox::actions;
use serde_json::Value;

// ------------------------------------------------------ the reusable action

fn action() -> Value {
    actions::load("aws-role").yaml
}

fn step(action: &Value) -> &Value {
    &action["runs"]["steps"][0]
}

/// Input name -> the environment variable the step maps it to, read from
/// the step's `env:` (`VAR: ${{ inputs.NAME }}`).
fn input_vars(action: &Value) -> BTreeMap<String, String> {
    step(action)["env"]
        .as_object()
        .expect("the step has env")
        .iter()
        .filter_map(|(var, value)| {
            let input = value
                .as_str()?
                .strip_prefix("${{ inputs.")?
                .strip_suffix(" }}")?;
            Some((input.to_string(), var.clone()))
        })
        .collect()
}

#[test]
fn the_aws_role_action_passes_action_validator() {
    if let Err(report) = actions::load("aws-role").validate() {
        panic!("{report}");
    }
}

#[test]
fn the_aws_role_action_script_passes_shellcheck() {
    if let Err(findings) = actions::load("aws-role").shellcheck() {
        panic!("{findings}");
    }
}

#[test]
fn the_aws_role_action_maps_every_input_to_env_and_every_output_to_the_step() {
    let action = action();
    assert_eq!(action["runs"]["using"], "composite");
    let step = step(&action);
    assert_eq!(step["shell"], "bash");
    assert_eq!(step["id"], "assume");
    let script = step["run"].as_str().unwrap();
    // An input spliced into the text would be script, not data.
    assert!(
        !script.contains("${{"),
        "expressions in the script text:\n{script}"
    );
    let inputs: BTreeSet<String> = action["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let vars = input_vars(&action);
    assert_eq!(
        vars.keys().cloned().collect::<BTreeSet<_>>(),
        inputs,
        "every input, and only inputs, reach the script as env"
    );
    assert_eq!(
        step["env"].as_object().unwrap().len(),
        vars.len(),
        "env entries that are not `${{{{ inputs.* }}}}`"
    );
    for var in vars.values() {
        assert!(
            script.contains(&format!("\"${var}\"")),
            "{var} is mapped but never used (quoted) by the script"
        );
    }
    for (name, output) in action["outputs"].as_object().unwrap() {
        assert_eq!(
            output["value"],
            format!("${{{{ steps.assume.outputs.{name} }}}}"),
            "output {name} is the step output the CLI writes under the same name"
        );
    }
}

// ------------------------------------------------------ running the step

/// A stand-in `runway`: records its argv and the AWS keys it was given
/// (NUL-separated, so newlines in values survive), writes `$GITHUB_ENV` and
/// the step outputs `--step-outputs` asks for as the real CLI does, and
/// exits with `$FAKE_RC` (writing nothing when that is not 0).
const FAKE_RUNWAY: &str = r#"#!/usr/bin/env bash
set -u
printf '%s\0' "$@" > "$FAKE_DIR/args"
printf '%s\0' "${AWS_ACCESS_KEY_ID-<unset>}" "${AWS_SECRET_ACCESS_KEY-<unset>}" \
  "${AWS_SESSION_TOKEN-<unset>}" > "$FAKE_DIR/keys"
outputs=none prev=
for a in "$@"; do
  if [[ $prev == --step-outputs ]]; then outputs=$a; fi
  prev=$a
done
if [[ ${FAKE_RC:-0} == 0 ]]; then
  printf 'AWS_ACCESS_KEY_ID=ASIAFAKEKEY\nAWS_SECRET_ACCESS_KEY=fake-secret\nAWS_SESSION_TOKEN=fake-token\n' >> "$GITHUB_ENV"
  if [[ $outputs != none ]]; then
    printf 'aws-account-id=222233334444\nauthenticated-arn=arn:aws:sts::222233334444:assumed-role/deploy/s\n' >> "$GITHUB_OUTPUT"
  fi
  if [[ $outputs == credentials ]]; then
    printf 'aws-access-key-id=ASIAFAKEKEY\naws-secret-access-key=fake-secret\naws-session-token=fake-token\naws-expiration=2026-11-21T21:00:00Z\n' >> "$GITHUB_OUTPUT"
  fi
else
  echo "::error::assume-role refused (stand-in)" >&2
fi
exit "${FAKE_RC:-0}"
"#;

/// The AWS keys an earlier step exported into the job's environment.
const EARLIER_KEYS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIAEARLIER"),
    ("AWS_SECRET_ACCESS_KEY", "earlier-secret"),
    ("AWS_SESSION_TOKEN", "earlier-token"),
];

#[derive(Debug)]
struct ActionRun {
    code: i32,
    /// The stand-in's argv; empty when it did not run.
    args: Vec<String>,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN as the
    /// CLI saw them (`<unset>` when absent).
    keys: Vec<String>,
    /// The action's outputs, resolved from `$GITHUB_OUTPUT` through the
    /// action's `outputs:` expressions, as GitHub resolves them.
    outputs: BTreeMap<String, String>,
    github_env: String,
    stderr: String,
}

/// Runs the action's script as GitHub runs a `shell: bash` step: each input
/// (by its action.yml name; unset ones get their default) in the variable
/// the step's `env:` maps it to, `runway` on PATH, and the earlier step's
/// AWS keys in the environment.
fn run_action(inputs: &[(&str, &str)], fake_rc: i32) -> ActionRun {
    let action = action();
    let declared = action["inputs"].as_object().unwrap();
    for (name, _) in inputs {
        assert!(
            declared.contains_key(*name),
            "no input {name} in action.yml"
        );
    }
    let scratch = actions::ScratchDir::new("aws-role-action");
    let dir = scratch.path();
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    actions::write_executable(&bin.join("runway"), FAKE_RUNWAY);
    let script = dir.join("step.sh");
    std::fs::write(&script, step(&action)["run"].as_str().unwrap()).unwrap();
    let github_env = dir.join("github_env");
    let github_output = dir.join("github_output");
    std::fs::write(&github_env, "").unwrap();
    std::fs::write(&github_output, "").unwrap();

    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut cmd = Command::new(actions::on_path("bash").expect("bash on PATH"));
    cmd.args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .env("FAKE_DIR", dir)
        .env("FAKE_RC", fake_rc.to_string())
        .env("GITHUB_ENV", &github_env)
        .env("GITHUB_OUTPUT", &github_output)
        .envs(EARLIER_KEYS);
    for (input, var) in input_vars(&action) {
        let default = declared[&input]["default"].as_str().unwrap_or("");
        let value = inputs
            .iter()
            .find(|(k, _)| *k == input)
            .map_or(default, |(_, v)| v);
        cmd.env(var, value);
    }
    let out = cmd.output().expect("run bash");

    let read_nul = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(name))
            .map(|t| t.split_terminator('\0').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let step_outputs =
        actions::parse_github_output(&std::fs::read_to_string(&github_output).unwrap());
    let outputs = action["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, o)| {
            let expr = o["value"].as_str().unwrap();
            let step_output = expr
                .strip_prefix("${{ steps.assume.outputs.")
                .and_then(|s| s.strip_suffix(" }}"))
                .unwrap_or_else(|| panic!("output {name}: {expr}"));
            // A step output nobody wrote is the empty string in GitHub.
            let value = step_outputs.get(step_output).cloned().unwrap_or_default();
            (name.clone(), value)
        })
        .collect();
    ActionRun {
        code: out.status.code().unwrap_or(-1),
        args: read_nul("args"),
        keys: read_nul("keys"),
        outputs,
        github_env: std::fs::read_to_string(&github_env).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The values given to `flag`, in the `--flag=value` form the script uses
/// (so that a value starting with `-` stays a value).
fn values_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    let prefix = format!("{flag}=");
    args.iter()
        .filter_map(|a| a.strip_prefix(prefix.as_str()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const ROLE: &str = "arn:aws:iam::222233334444:role/deploy";

// ------------------------------------------------------ the tests

#[test]
fn one_role_to_assume_is_one_role_flag_from_the_pods_identity() {
    let run = run_action(&[("role-to-assume", ROLE)], 0);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(
        run.args,
        strings(&[
            "aws",
            "assume-role",
            "--output",
            "github-env",
            &format!("--role={ROLE}"),
            "--step-outputs",
            "identity"
        ])
    );
    // Without role-chaining, the earlier step's keys are hidden from the
    // CLI so the chain starts from the pod's identity.
    assert_eq!(run.keys, ["<unset>", "<unset>", "<unset>"]);
    // What the CLI exported reaches the following steps.
    assert!(
        run.github_env.contains("AWS_ACCESS_KEY_ID=ASIAFAKEKEY\n"),
        "{}",
        run.github_env
    );
}

#[test]
fn no_role_at_all_is_the_pods_identity_alone() {
    let run = run_action(&[], 0);
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    // Empty inputs add no flag: the scale set's settings stay in charge.
    let base = ["aws", "assume-role", "--output", "github-env"];
    assert_eq!(
        run.args,
        strings(&[&base[..], &["--step-outputs", "identity"]].concat())
    );
}

#[test]
fn role_chaining_with_roles_keeps_the_order_and_the_earlier_keys() {
    let roles = "  arn:aws:iam::333344445555:role/a\r\n\narn:aws:iam::444455556666:role/b \n\tarn:aws:iam::555566667777:role/c\n";
    let run = run_action(
        &[
            ("role-to-assume", ROLE),
            ("roles", roles),
            ("role-chaining", "true"),
        ],
        0,
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(
        values_of(&run.args, "--role"),
        [
            ROLE,
            "arn:aws:iam::333344445555:role/a",
            "arn:aws:iam::444455556666:role/b",
            "arn:aws:iam::555566667777:role/c"
        ],
        "role-to-assume first, then roles line by line, blanks and CR dropped"
    );
    let earlier: Vec<&str> = EARLIER_KEYS.iter().map(|(_, v)| *v).collect();
    assert_eq!(
        run.keys, earlier,
        "role-chaining starts from the env's keys"
    );

    // `roles` without `role-to-assume` is the whole chain.
    let run = run_action(
        &[("roles", "arn:aws:iam::1:role/x\narn:aws:iam::2:role/y")],
        0,
    );
    assert_eq!(
        values_of(&run.args, "--role"),
        ["arn:aws:iam::1:role/x", "arn:aws:iam::2:role/y"]
    );
    assert_eq!(run.keys, ["<unset>", "<unset>", "<unset>"]);
}

#[test]
fn session_tagging_inputs_become_one_session_tagging_flag() {
    // (role-skip-session-tagging, session-tagging) -> the flag's value.
    let cases: [(&str, &str, Option<&str>); 7] = [
        ("true", "", Some("never")),
        // Skipping wins over an explicit mode, as in configure-aws-credentials.
        ("true", "always", Some("never")),
        ("false", "always", Some("always")),
        ("false", "auto", Some("auto")),
        ("false", "never", Some("never")),
        ("", "auto", Some("auto")),
        ("false", "", None),
    ];
    for (skip, tagging, expected) in cases {
        let run = run_action(
            &[
                ("role-to-assume", ROLE),
                ("role-skip-session-tagging", skip),
                ("session-tagging", tagging),
            ],
            0,
        );
        assert_eq!(run.code, 0, "stderr: {}", run.stderr);
        let flags = values_of(&run.args, "--session-tagging");
        assert_eq!(
            flags,
            expected.into_iter().collect::<Vec<_>>(),
            "skip={skip:?} tagging={tagging:?}: {:?}",
            run.args
        );
    }
}

#[test]
fn the_other_inputs_become_their_flags() {
    let policy = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"*\"}]\n}";
    let run = run_action(
        &[
            ("role-to-assume", ROLE),
            ("role-session-name", "{workflow}_{run_number}_{job}"),
            ("role-duration-seconds", "900"),
            ("aws-region", "eu-central-1"),
            ("transitive-tag-keys", "Repository, Workflow\nActor\n,\n"),
            ("role-external-id", "ext-123"),
            ("inline-session-policy", policy),
        ],
        0,
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(
        values_of(&run.args, "--session-name"),
        ["{workflow}_{run_number}_{job}"]
    );
    assert_eq!(values_of(&run.args, "--duration"), ["900"]);
    assert_eq!(values_of(&run.args, "--region"), ["eu-central-1"]);
    assert_eq!(
        values_of(&run.args, "--transitive-tag-key"),
        ["Repository", "Workflow", "Actor"],
        "commas and lines both separate; blanks dropped"
    );
    assert_eq!(values_of(&run.args, "--external-id"), ["ext-123"]);
    assert_eq!(
        values_of(&run.args, "--policy"),
        [policy],
        "the multi-line policy is one argument, unchanged"
    );
    assert!(run.args.windows(2).any(|w| w == ["--output", "github-env"]));
}

#[test]
fn output_credentials_adds_the_credentials_to_the_step_outputs() {
    let identity = ["aws-account-id", "authenticated-arn"];
    let credentials = [
        "aws-access-key-id",
        "aws-secret-access-key",
        "aws-session-token",
        "aws-expiration",
    ];

    let run = run_action(&[("role-to-assume", ROLE)], 0);
    assert!(
        run.args
            .windows(2)
            .any(|w| w == ["--step-outputs", "identity"])
    );
    assert_eq!(run.outputs["aws-account-id"], "222233334444");
    assert_eq!(
        run.outputs["authenticated-arn"],
        "arn:aws:sts::222233334444:assumed-role/deploy/s"
    );
    for name in credentials {
        assert_eq!(run.outputs[name], "", "{name} without output-credentials");
    }

    let run = run_action(
        &[("role-to-assume", ROLE), ("output-credentials", "true")],
        0,
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(
        run.args
            .windows(2)
            .any(|w| w == ["--step-outputs", "credentials"])
    );
    assert_eq!(run.outputs["aws-access-key-id"], "ASIAFAKEKEY");
    assert_eq!(run.outputs["aws-secret-access-key"], "fake-secret");
    assert_eq!(run.outputs["aws-session-token"], "fake-token");
    assert_eq!(run.outputs["aws-expiration"], "2026-11-21T21:00:00Z");
    let all: BTreeSet<&str> = identity.into_iter().chain(credentials).collect();
    assert_eq!(
        run.outputs
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        all,
        "the action declares exactly the outputs the CLI writes"
    );
}

#[test]
fn inputs_with_shell_syntax_are_literal_arguments_never_commands() {
    let scratch = actions::ScratchDir::new("aws-role-action");
    let marker = scratch.path().join("pwned");
    let m = marker.display();
    let session = format!("x$(touch {m}); rm -rf {m}-dir `touch {m}` && touch {m} | cat");
    let external = format!("'\"; touch {m} #\n$((1+1)) ${{HOME}} *");
    let region = format!("eu-west-1;touch {m}");
    let role = format!("arn:aws:iam::1:role/$(touch${{IFS}}{m})");
    let transitive = format!("Repo$(touch {m}),`touch {m}`");
    let duration = format!("900 $(touch {m})");
    let policy = format!("{{\"Statement\": \"$(touch {m})\"}}");
    let tagging = format!("auto; touch {m}");
    let run = run_action(
        &[
            ("role-to-assume", &role),
            ("role-session-name", &session),
            ("role-external-id", &external),
            ("aws-region", &region),
            ("transitive-tag-keys", &transitive),
            ("role-duration-seconds", &duration),
            ("inline-session-policy", &policy),
            ("session-tagging", &tagging),
        ],
        0,
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert!(!marker.exists(), "an input ran as a command");
    assert_eq!(values_of(&run.args, "--session-name"), [session.as_str()]);
    assert_eq!(values_of(&run.args, "--external-id"), [external.as_str()]);
    assert_eq!(values_of(&run.args, "--region"), [region.as_str()]);
    assert_eq!(values_of(&run.args, "--duration"), [duration.as_str()]);
    assert_eq!(values_of(&run.args, "--policy"), [policy.as_str()]);
    assert_eq!(
        values_of(&run.args, "--session-tagging"),
        [tagging.as_str()]
    );
    // Roles and tag keys lose whitespace (an ARN or key has none), nothing else.
    assert_eq!(values_of(&run.args, "--role"), [role.as_str()]);
    assert_eq!(
        values_of(&run.args, "--transitive-tag-key"),
        [
            format!("Repo$(touch{m})").as_str(),
            format!("`touch{m}`").as_str()
        ]
    );
}

#[test]
fn the_step_exits_with_the_clis_code() {
    for rc in [4, 3, 1] {
        let run = run_action(
            &[("role-to-assume", ROLE), ("session-tagging", "always")],
            rc,
        );
        assert_eq!(run.code, rc, "stderr: {}", run.stderr);
        assert!(!run.args.is_empty(), "the CLI ran");
        assert!(run.stderr.contains("::error::"), "{}", run.stderr);
        assert!(
            run.outputs.values().all(String::is_empty),
            "no outputs from a failed call: {:?}",
            run.outputs
        );
        assert_eq!(run.github_env, "", "no credentials from a failed call");
    }
}

#[test]
fn booleans_read_like_configure_aws_credentials_and_dash_values_stay_values() {
    let run = run_action(
        &[
            ("role-to-assume", ROLE),
            ("role-chaining", "True"),
            ("role-skip-session-tagging", "TRUE"),
            ("role-external-id", "-abc"),
        ],
        0,
    );
    assert_eq!(run.code, 0, "stderr: {}", run.stderr);
    assert_eq!(values_of(&run.args, "--session-tagging"), ["never"]);
    assert_eq!(values_of(&run.args, "--external-id"), ["-abc"]);
    // Chaining keeps the earlier step's keys.
    assert!(!run.keys.iter().all(|k| k == "<unset>"), "{:?}", run.keys);
}
