//! What `runway kube` in a job step and the executor beside the job
//! (`runway serve --local`) say to each other over the executor's Unix
//! socket: one [`Request`] per CLI action, answered with the
//! [`Outcome`] or a [`Failure`] that carries the CLI's exit code.
//!
//! The executor trusts nothing in a request: the action is rebuilt from
//! plain strings and numbers and goes through the same validation,
//! allowlist and safety rules as any other; the job fields only label the
//! audit line (the runner name comes from the executor's own environment).
//! Conversions are pure and table-tested; no input reaches a panic.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::action::{Action, CustomKind, MAX_TIMEOUT, Outcome, PatchKind};
use super::audit::AuditContext;
use super::catalog::{Resource, Verb};
use super::error::ActionError;

/// The largest request or answer either side reads.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The header that labels a payload sent to the executor with its job
/// (base64url of [`Job`]'s JSON: GITHUB_* values need not be ASCII).
pub const JOB_HEADER: &str = "x-runway-job";

/// One action from a job step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub action: WireAction,
    /// Who asked, from the job's `GITHUB_*` environment (audit only).
    #[serde(default)]
    pub job: Option<Job>,
}

/// The job's `GITHUB_*` values, for the audit line and Events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub job: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub actor: Option<String>,
}

/// [`Action`] in plain fields: resource and verb as their
/// `kubernetesActions` names, the timeout in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireAction {
    pub verb: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<WireCustom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// `merge`, `strategic` or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_lines: Option<i64>,
    #[serde(default)]
    pub dry_run: bool,
    pub timeout_seconds: u64,
    pub max: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireCustom {
    pub group: String,
    pub version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plural: Option<String>,
}

/// The executor's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reply {
    Outcome(Outcome),
    Failure(Failure),
}

/// An action that did not run or did not finish, as the CLI prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The error's text (what `runway kube: ...` prints).
    pub error: String,
    /// [`ActionError::kind`].
    pub reason: String,
    /// [`ActionError::exit_code`].
    pub exit_code: u8,
}

impl Failure {
    pub fn of(error: &ActionError) -> Failure {
        Failure {
            error: error.to_string(),
            reason: error.kind().to_string(),
            exit_code: error.exit_code(),
        }
    }
}

impl WireAction {
    pub fn of(action: &Action) -> WireAction {
        WireAction {
            verb: action.verb.key().to_string(),
            resource: action.resource.key().to_string(),
            custom: action.custom.as_ref().map(|c| WireCustom {
                group: c.group.clone(),
                version: c.version.clone(),
                kind: c.kind.clone(),
                plural: c.plural.clone(),
            }),
            namespace: action.namespace.clone(),
            name: action.name.clone(),
            selector: action.selector.clone(),
            body: action.body.clone(),
            patch_type: Some(
                match action.patch_kind {
                    PatchKind::Merge => "merge",
                    PatchKind::Strategic => "strategic",
                    PatchKind::Json => "json",
                }
                .to_string(),
            ),
            replicas: action.replicas,
            container: action.container.clone(),
            tail_lines: action.tail_lines,
            dry_run: action.dry_run,
            timeout_seconds: action.timeout.as_secs(),
            max: action.max,
        }
    }

    /// The action, or bad input naming the field. The executor validates it
    /// further exactly as it validates any action.
    pub fn to_action(&self) -> Result<Action, ActionError> {
        let bad = |field: &str, why: String| ActionError::BadInput(format!("{field}: {why}"));
        let verb: Verb = self
            .verb
            .parse()
            .map_err(|e: super::catalog::UnknownName| bad("verb", e.to_string()))?;
        let resource: Resource = self
            .resource
            .parse()
            .map_err(|e: super::catalog::UnknownName| bad("resource", e.to_string()))?;
        let timeout = Duration::from_secs(self.timeout_seconds);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(bad(
                "timeoutSeconds",
                format!(
                    "{} is not within 1..={}",
                    self.timeout_seconds,
                    MAX_TIMEOUT.as_secs()
                ),
            ));
        }
        let patch_kind = match self.patch_type.as_deref() {
            None | Some("merge") => PatchKind::Merge,
            Some("strategic") => PatchKind::Strategic,
            Some("json") => PatchKind::Json,
            Some(other) => {
                return Err(bad(
                    "patchType",
                    format!("`{other}` is not merge, strategic or json"),
                ));
            }
        };
        let mut action = Action::new(verb, resource);
        action.custom = self.custom.as_ref().map(|c| CustomKind {
            group: c.group.clone(),
            version: c.version.clone(),
            kind: c.kind.clone(),
            plural: c.plural.clone(),
        });
        action.namespace = self.namespace.clone();
        action.name = self.name.clone();
        action.selector = self.selector.clone();
        action.body = self.body.clone();
        action.patch_kind = patch_kind;
        action.replicas = self.replicas;
        action.container = self.container.clone();
        action.tail_lines = self.tail_lines;
        action.dry_run = self.dry_run;
        action.timeout = timeout;
        action.max = self.max;
        Ok(action)
    }
}

impl Job {
    /// The [`JOB_HEADER`] value for this job.
    pub fn to_header(&self) -> String {
        use base64::Engine as _;
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// The job a [`JOB_HEADER`] value names; None for anything else (an
    /// audit label is never worth refusing a request over).
    pub fn from_header(value: &str) -> Option<Job> {
        use base64::Engine as _;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim())
            .ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The job fields of the caller's environment.
    pub fn from_context(context: &AuditContext) -> Job {
        Job {
            repository: context.repository.clone(),
            run_id: context.run_id.clone(),
            job: context.job.clone(),
            workflow: context.workflow.clone(),
            actor: context.actor.clone(),
        }
    }

    /// `base` (the executor's own: runner name, source) labelled with this
    /// job.
    pub fn audit(&self, base: &AuditContext) -> AuditContext {
        let clean = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                // An audit label, not a document: bounded.
                .map(|v| v.chars().take(256).collect::<String>())
        };
        AuditContext {
            repository: clean(&self.repository),
            run_id: clean(&self.run_id),
            job: clean(&self.job),
            workflow: clean(&self.workflow),
            actor: clean(&self.actor),
            runner: base.runner.clone(),
            source: base.source.clone(),
        }
    }
}

/// The exit code of a failure read from the executor: its own when it is
/// one the CLI documents (2..=5), else 4 (something between us and
/// Kubernetes failed).
pub fn exit_code_of(failure: &Failure) -> u8 {
    if (2..=5).contains(&failure.exit_code) {
        failure.exit_code
    } else {
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_action() -> Action {
        let mut a = Action::new(Verb::Patch, Resource::CustomObjects)
            .named("canary")
            .in_namespace("prod")
            .selector("app=x")
            .body(json!({"spec": {"paused": true}}));
        a.custom = Some(CustomKind {
            group: "argoproj.io".into(),
            version: "v1alpha1".into(),
            kind: "Rollout".into(),
            plural: None,
        });
        a.patch_kind = PatchKind::Json;
        a.replicas = Some(3);
        a.container = Some("app".into());
        a.tail_lines = Some(10);
        a.dry_run = true;
        a.timeout = Duration::from_secs(30);
        a.max = 7;
        a
    }

    #[test]
    fn every_field_survives_the_trip() {
        for action in [
            full_action(),
            Action::new(Verb::Get, Resource::Pods).named("p"),
            Action::new(Verb::DeleteMultiple, Resource::Pods).selector("a=b"),
            Action::new(Verb::Drain, Resource::Nodes).named("n1"),
        ] {
            let text = serde_json::to_string(&Request {
                action: WireAction::of(&action),
                job: Some(Job::default()),
            })
            .unwrap();
            let back: Request = serde_json::from_str(&text).unwrap();
            assert_eq!(back.action.to_action().unwrap(), action, "{text}");
        }
    }

    #[test]
    fn bad_fields_are_bad_input_naming_the_field() {
        let good = WireAction::of(&Action::new(Verb::Get, Resource::Pods));
        let cases: Vec<(WireAction, &str)> = vec![
            (
                WireAction {
                    verb: "explode".into(),
                    ..good.clone()
                },
                "verb: unknown verb `explode`",
            ),
            (
                WireAction {
                    resource: "widgets".into(),
                    ..good.clone()
                },
                "resource: unknown resource `widgets`",
            ),
            (
                WireAction {
                    timeout_seconds: 0,
                    ..good.clone()
                },
                "timeoutSeconds: 0 is not within",
            ),
            (
                WireAction {
                    timeout_seconds: u64::MAX,
                    ..good.clone()
                },
                "timeoutSeconds:",
            ),
            (
                WireAction {
                    patch_type: Some("yaml".into()),
                    ..good.clone()
                },
                "patchType: `yaml`",
            ),
        ];
        for (wire, expected) in cases {
            let err = wire.to_action().unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().starts_with(expected), "{err}");
        }
    }

    #[test]
    fn requests_that_are_not_the_shape_do_not_decode() {
        for text in [
            "null",
            "{}",
            r#"{"action": null}"#,
            r#"{"action": {"verb": "get"}}"#,
            r#"{"action": {"verb": "get", "resource": "pods", "timeoutSeconds": -1, "max": 1}}"#,
            "\u{feff}{}",
        ] {
            assert!(serde_json::from_str::<Request>(text).is_err(), "{text}");
        }
        // Nulls where values may be absent, and extra fields, are fine.
        for text in [
            r#"{"action": {"verb": "get", "resource": "pods", "name": null, "timeoutSeconds": 5, "max": 1, "extra": 1}, "job": null}"#,
            r#"{"action": {"verb": "get", "resource": "pods", "timeoutSeconds": 5, "max": 1}}"#,
        ] {
            let ok: Request = serde_json::from_str(text).unwrap();
            assert_eq!(ok.action.to_action().unwrap().verb, Verb::Get);
            assert_eq!(ok.job, None);
        }
    }

    #[test]
    fn the_audit_takes_the_job_from_the_request_and_the_runner_from_the_executor() {
        let base = AuditContext {
            runner: Some("rs-abc".into()),
            source: "executor".into(),
            ..AuditContext::default()
        };
        let job = Job {
            repository: Some(" acme/app ".into()),
            run_id: Some("42".into()),
            job: Some("".into()),
            workflow: Some("x".repeat(1000)),
            actor: None,
        };
        let audit = job.audit(&base);
        assert_eq!(audit.repository.as_deref(), Some("acme/app"));
        assert_eq!(audit.job, None);
        assert_eq!(audit.workflow.map(|w| w.len()), Some(256));
        assert_eq!(audit.runner.as_deref(), Some("rs-abc"));
        assert_eq!(audit.source, "executor");
    }

    #[test]
    fn the_job_header_round_trips_and_nonsense_is_no_job() {
        let job = Job {
            repository: Some("acme/app".into()),
            run_id: Some("42".into()),
            job: Some("déploiement".into()),
            workflow: None,
            actor: Some("octo".into()),
        };
        let header = job.to_header();
        assert!(header.bytes().all(|b| b.is_ascii_graphic()), "{header}");
        assert_eq!(Job::from_header(&header), Some(job));
        // "" and "!!!" are not base64; e30 is `{}` and W10 `[]` (both a job
        // with nothing), bnVsbA `null`, the last `{"repository": 7}`.
        for nonsense in ["", "!!!", "e30", "bnVsbA", "W10", "eyJyZXBvc2l0b3J5IjogN30"] {
            let got = Job::from_header(nonsense);
            assert!(
                got.is_none() || got == Some(Job::default()),
                "{nonsense}: {got:?}"
            );
        }
        assert_eq!(Job::from_header("e30"), Some(Job::default()));
        assert_eq!(Job::from_header("!!!"), None);
        assert_eq!(Job::from_header("eyJyZXBvc2l0b3J5IjogN30"), None);
    }

    #[test]
    fn only_documented_exit_codes_pass_through() {
        for (code, expected) in [
            (0, 4),
            (1, 4),
            (2, 2),
            (3, 3),
            (4, 4),
            (5, 5),
            (6, 4),
            (255, 4),
        ] {
            let failure = Failure {
                error: "x".into(),
                reason: "x".into(),
                exit_code: code,
            };
            assert_eq!(exit_code_of(&failure), expected, "{code}");
        }
    }
}
