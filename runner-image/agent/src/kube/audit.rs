//! Audit: every executed action leaves one JSON line on stderr naming the
//! job, and every object a mutation touched gets a Kubernetes Event (reason
//! `RunwayAction`). Auditing never fails an action that already happened: a
//! refused Event is a warning.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use serde::Serialize;

/// Who asked: the job (from the runner's `GITHUB_*` environment) and how.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditContext {
    pub repository: Option<String>,
    pub run_id: Option<String>,
    pub job: Option<String>,
    pub workflow: Option<String>,
    pub actor: Option<String>,
    pub runner: Option<String>,
    /// `cli`, `payload`, or `serve`.
    pub source: String,
}

impl AuditContext {
    /// From the job's environment: `GITHUB_REPOSITORY`, `GITHUB_RUN_ID`,
    /// `GITHUB_JOB`, `GITHUB_WORKFLOW`, `GITHUB_ACTOR`, and the runner's
    /// name (`RUNWAY_RUNNER_NAME`, set by the chart, else `RUNNER_NAME`).
    pub fn from_env(source: &str) -> AuditContext {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        AuditContext {
            repository: var("GITHUB_REPOSITORY"),
            run_id: var("GITHUB_RUN_ID"),
            job: var("GITHUB_JOB"),
            workflow: var("GITHUB_WORKFLOW"),
            actor: var("GITHUB_ACTOR"),
            runner: var("RUNWAY_RUNNER_NAME").or_else(|| var("RUNNER_NAME")),
            source: source.to_string(),
        }
    }

    /// `by octo/app run 42 job deploy (runner rs-abc)`.
    pub fn who(&self) -> String {
        let mut parts = vec![format!("by {}", self.repository.as_deref().unwrap_or("?"))];
        if let Some(run) = &self.run_id {
            parts.push(format!("run {run}"));
        }
        if let Some(job) = &self.job {
            parts.push(format!("job {job}"));
        }
        if let Some(runner) = &self.runner {
            parts.push(format!("(runner {runner})"));
        }
        parts.join(" ")
    }
}

/// An object an action touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Touched {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

/// The JSON audit line.
#[derive(Serialize)]
struct Line<'a> {
    audit: &'static str,
    time: DateTime<Utc>,
    action: &'a str,
    status: &'a str,
    dry_run: bool,
    objects: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(flatten)]
    context: &'a AuditContext,
}

/// Writes the audit line for one action to stderr.
pub fn log_line(
    context: &AuditContext,
    action: &str,
    dry_run: bool,
    touched: &[Touched],
    error: Option<&str>,
) {
    let line = Line {
        audit: "runway.kube",
        time: Utc::now(),
        action,
        status: if error.is_some() { "failed" } else { "done" },
        dry_run,
        objects: touched
            .iter()
            .map(|t| match &t.namespace {
                Some(ns) => format!("{}/{ns}/{}", t.kind, t.name),
                None => format!("{}/{}", t.kind, t.name),
            })
            .collect(),
        error,
        context,
    };
    if let Ok(text) = serde_json::to_string(&line) {
        eprintln!("{text}");
    }
}

/// The Event recording that `verb` acted on `object`.
pub fn event(context: &AuditContext, verb: &str, object: &Touched, now: DateTime<Utc>) -> Event {
    // Cluster-scoped objects' Events go to `default`, as kubectl's do.
    let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
    let stamp = now.timestamp_nanos_opt().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", object.name, stamp)),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(object.api_version.clone()),
            kind: Some(object.kind.clone()),
            name: Some(object.name.clone()),
            namespace: object.namespace.clone(),
            uid: object.uid.clone(),
            ..ObjectReference::default()
        },
        reason: Some("RunwayAction".into()),
        message: Some(format!("runway kube {verb} {}", context.who())),
        type_: Some("Normal".into()),
        count: Some(1),
        first_timestamp: Some(Time(to_jiff(now))),
        last_timestamp: Some(Time(to_jiff(now))),
        // The legacy (core/v1) shape, as the kubelet writes for Nodes: the
        // newer one (eventTime, reportingController) refuses cluster-scoped
        // objects' Events in `default`.
        source: Some(EventSource {
            component: Some("runway".into()),
            host: context.runner.clone(),
        }),
        ..Event::default()
    }
}

fn to_jiff(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default()
}

/// Records an Event on each touched object; failures are warnings.
pub async fn record_events(
    client: &Client,
    context: &AuditContext,
    verb: &str,
    touched: &[Touched],
) {
    let now = Utc::now();
    for object in touched {
        let ev = event(context, verb, object, now);
        let ns = ev.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::warn!(object = %object.name, error = %e, "could not record the audit Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_names_the_job_and_the_object() {
        let ctx = AuditContext {
            repository: Some("octo/app".into()),
            run_id: Some("42".into()),
            job: Some("deploy".into()),
            runner: Some("rs-abc".into()),
            source: "cli".into(),
            ..AuditContext::default()
        };
        let node = Touched {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: None,
            name: "n1".into(),
            uid: Some("u-1".into()),
        };
        let ev = event(&ctx, "cordon", &node, Utc::now());
        assert_eq!(ev.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(ev.reason.as_deref(), Some("RunwayAction"));
        assert_eq!(
            ev.message.as_deref(),
            Some("runway kube cordon by octo/app run 42 job deploy (runner rs-abc)")
        );
        assert_eq!(ev.involved_object.uid.as_deref(), Some("u-1"));
    }
}
