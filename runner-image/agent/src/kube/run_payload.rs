//! Running a payload exactly once: for each action in order, check its
//! timestamp, convert it, ask the executor whether it may run (validation,
//! allowlist), claim it in the state ConfigMap, run it, record the result.
//! `runway kube run-payload FILE` and `POST /v1/actions` of `runway serve`
//! both answer with the [`PayloadReport`] this returns.
//!
//! Invariants:
//! - Nothing runs without a claim written first; if the state cannot be read
//!   or written, the action is reported `failed` and not run.
//! - An action refused before running (expired, too far ahead, malformed,
//!   bad kind, denied by the allowlist) is answered (`expired`, `rejected`)
//!   but not recorded: the state ConfigMap is not even read, so bad payloads
//!   cannot fill its 1 MiB. It never ran, so nothing is lost: the same
//!   (id, version) sent again fresh and allowed runs, once.
//! - One action's failure never stops the others.
//! - At most once, then: a `failed` action (even a transient error) is not
//!   retried under the same (id, version); the sender retries with a newer
//!   version.

use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::action::{Action, Outcome};
use super::error::ActionError;
use super::exec::Executor;
use super::payload::{Payload, PayloadAction};
use super::state::decide::{self, Admission};
use super::state::{Claim, Intent, StateStore, Status};

/// What a payload run did, action by action, in payload order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PayloadReport {
    pub results: Vec<ActionReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionReport {
    pub id: String,
    pub version: u64,
    pub action_type: String,
    /// `succeeded`, `failed`, `expired`, `skipped` or `rejected`.
    pub status: Status,
    pub message: String,
    /// The outcome's JSON when the action ran and succeeded; else null.
    pub result: Option<serde_json::Value>,
    /// What `runway kube` would exit with for this action alone.
    pub exit_code: u8,
}

impl PayloadReport {
    /// 0 when every action succeeded or was already done; else the highest
    /// action exit code (the CLI's exit code for the whole payload).
    pub fn exit_code(&self) -> u8 {
        self.results.iter().map(|r| r.exit_code).max().unwrap_or(0)
    }
}

/// Runs actions; the [`Executor`] in production, a counting fake in tests.
pub trait Execute {
    fn execute(&self, action: &Action)
    -> impl Future<Output = Result<Outcome, ActionError>> + Send;

    /// Runs `action` audited as `source` (`payload a1b2/3`); executors
    /// without a notion of source just run it.
    fn execute_as(
        &self,
        action: &Action,
        source: &str,
    ) -> impl Future<Output = Result<Outcome, ActionError>> + Send {
        let _ = source;
        self.execute(action)
    }

    /// Whether `action` may run at all (pure checks only); an action
    /// refused here is answered and never claimed. Executors without such
    /// checks admit everything.
    fn admit(&self, action: &Action) -> Result<(), ActionError> {
        let _ = action;
        Ok(())
    }
}

impl Execute for Executor {
    fn execute(
        &self,
        action: &Action,
    ) -> impl Future<Output = Result<Outcome, ActionError>> + Send {
        Executor::execute(self, action)
    }

    fn execute_as(
        &self,
        action: &Action,
        source: &str,
    ) -> impl Future<Output = Result<Outcome, ActionError>> + Send {
        let exec = self.with_source(source);
        let action = action.clone();
        async move { exec.execute(&action).await }
    }

    fn admit(&self, action: &Action) -> Result<(), ActionError> {
        Executor::admit(self, action)
    }
}

/// Runs `payload` received at `now`: the clock the expiry check and the
/// records use is `now` plus the time elapsed since this call, so tests pin
/// it and a slow action earlier in the payload still counts against a later
/// one's age.
pub async fn run_payload(
    exec: &Executor,
    store: &StateStore,
    payload: &Payload,
    now: DateTime<Utc>,
) -> PayloadReport {
    run_payload_with(exec, store, payload, now).await
}

/// [`run_payload`] with any [`Execute`].
pub async fn run_payload_with<E: Execute + Sync>(
    exec: &E,
    store: &StateStore,
    payload: &Payload,
    now: DateTime<Utc>,
) -> PayloadReport {
    let started = Instant::now();
    let clock = || now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let mut results = Vec::with_capacity(payload.actions.len());
    for action in &payload.actions {
        let report = run_one(exec, store, action, &clock).await;
        tracing::info!(
            target: "runway::payload",
            id = %report.id,
            version = report.version,
            action_type = %report.action_type,
            status = %report.status,
            exit_code = report.exit_code,
            message = %report.message,
            "payload action"
        );
        results.push(report);
    }
    PayloadReport { results }
}

async fn run_one<E: Execute + Sync>(
    exec: &E,
    store: &StateStore,
    wire: &PayloadAction,
    clock: &(impl Fn() -> DateTime<Utc> + Sync),
) -> ActionReport {
    let mut report = ActionReport {
        id: wire.metadata.id.clone(),
        version: wire.metadata.version,
        action_type: wire.action_type.clone(),
        status: Status::Rejected,
        message: String::new(),
        result: None,
        exit_code: 2,
    };
    let key = match decide::record_key(&wire.metadata.id, wire.metadata.version) {
        Ok(key) => key,
        Err(bad) => {
            // Nothing can be recorded under an id that is not a key.
            report.message = bad.to_string();
            return report;
        }
    };
    let now = clock();
    let action = match plan(wire, now) {
        Plan::Run(action) => match exec.admit(&action) {
            Ok(()) => action,
            Err(e) => {
                report.message = e.to_string();
                report.exit_code = e.exit_code();
                return report;
            }
        },
        // Answered, not recorded: it never runs.
        Plan::Settle {
            status,
            message,
            exit_code,
        } => {
            report.status = status;
            report.message = message;
            report.exit_code = exit_code;
            return report;
        }
    };
    let claimed = match store.claim(&key, &Intent::Run, now).await {
        Ok(claim) => claim,
        Err(e) => {
            report.status = Status::Failed;
            report.message = format!("not run: {e}");
            report.exit_code = 4;
            return report;
        }
    };
    if let Claim::Skipped(existing) = claimed {
        report.status = Status::Skipped;
        report.message = existing.skip_message();
        report.exit_code = 0;
        return report;
    }
    let source = format!("payload {}/{}", report.id, report.version);
    match exec.execute_as(&action, &source).await {
        Ok(outcome) => {
            report.status = Status::Succeeded;
            report.message = outcome.summary;
            report.result = Some(outcome.result);
            report.exit_code = 0;
        }
        Err(e) => {
            report.status = Status::Failed;
            report.message = e.to_string();
            report.exit_code = e.exit_code();
        }
    }
    if let Err(e) = store
        .finish(&key, report.status, &report.message, clock())
        .await
    {
        // The claim stays, so the action is still never run again; only the
        // record of how it went is missing.
        report.message = format!(
            "{}; the result could not be recorded ({e}); the claim stays, so it will not run again",
            report.message
        );
    }
    report
}

/// What to do with an action, from the payload alone.
#[derive(Debug, PartialEq)]
enum Plan {
    Run(Box<Action>),
    /// Answer this final status without running (or recording) it.
    Settle {
        status: Status,
        message: String,
        exit_code: u8,
    },
}

fn plan(wire: &PayloadAction, now: DateTime<Utc>) -> Plan {
    let settle = |status, message: String, exit_code| Plan::Settle {
        status,
        message,
        exit_code,
    };
    // Parsing checked the timestamp is a time.
    let Some(timestamp) = wire.timestamp.to_utc() else {
        return settle(Status::Rejected, "timestamp: not a time".into(), 2);
    };
    match decide::admit(timestamp, now) {
        Admission::Expired { age } => settle(
            Status::Expired,
            format!(
                "expired: the action is {}s old (timestamp {}), over the {}s limit; not run",
                age.num_seconds(),
                timestamp.to_rfc3339(),
                decide::MAX_AGE.num_seconds()
            ),
            3,
        ),
        Admission::Future { ahead } => settle(
            Status::Rejected,
            format!(
                "rejected: the timestamp {} is {}s ahead of this clock (over {}s); a clock is wrong; not run",
                timestamp.to_rfc3339(),
                ahead.num_seconds(),
                decide::MAX_SKEW.num_seconds()
            ),
            3,
        ),
        Admission::Fresh => match wire.to_action() {
            Ok(action) => Plan::Run(Box::new(action)),
            Err(e) => settle(Status::Rejected, e.to_string(), e.exit_code()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::catalog::{Resource, Verb};
    use chrono::TimeZone;

    fn wire(action_type: &str, kind: &str, seconds: i64) -> PayloadAction {
        let json = serde_json::json!({"actions": [{
            "metadata": {"id": "x", "version": 1},
            "action_type": action_type,
            "resource": {"api_version": "v1", "kind": kind, "namespace": "ci", "name": "p"},
            "timestamp": {"seconds": seconds},
        }]});
        Payload::from_json(json.to_string().as_bytes())
            .unwrap()
            .actions
            .remove(0)
    }

    #[test]
    fn plans_by_age_then_by_consistency() {
        let now = Utc.timestamp_opt(1_000_000, 0).unwrap();
        let fresh = wire("delete_pod", "Pod", 1_000_000 - 30);
        assert_eq!(
            plan(&fresh, now),
            Plan::Run(Box::new(
                Action::new(Verb::Delete, Resource::Pods)
                    .named("p")
                    .in_namespace("ci")
            ))
        );
        // (action, status, exit code, words the message must hold)
        let cases = [
            (
                wire("delete_pod", "Pod", 1_000_000 - 61),
                Status::Expired,
                3,
                "61s old",
            ),
            (
                wire("delete_pod", "Pod", 1_000_000 + 11),
                Status::Rejected,
                3,
                "11s ahead",
            ),
            // Too old wins over malformed: it would never run either way.
            (
                wire("delete_pod", "Node", 1_000_000 - 61),
                Status::Expired,
                3,
                "expired",
            ),
            (
                wire("delete_pod", "Node", 1_000_000),
                Status::Rejected,
                3,
                "resource.kind is `Node`",
            ),
            (
                wire("smash_pod", "Pod", 1_000_000),
                Status::Rejected,
                2,
                "action_type `smash_pod`",
            ),
        ];
        for (action, want_status, want_code, words) in cases {
            match plan(&action, now) {
                Plan::Settle {
                    status,
                    message,
                    exit_code,
                } => {
                    assert_eq!((status, exit_code), (want_status, want_code), "{message}");
                    assert!(message.contains(words), "{message}");
                }
                other => panic!("{}: {other:?}", action.action_type),
            }
        }
    }

    #[test]
    fn the_payload_exit_code_is_the_worst_action_code() {
        let r = |exit_code| ActionReport {
            id: "x".into(),
            version: 1,
            action_type: "get_pod".into(),
            status: Status::Succeeded,
            message: String::new(),
            result: None,
            exit_code,
        };
        assert_eq!(PayloadReport { results: vec![] }.exit_code(), 0);
        assert_eq!(
            PayloadReport {
                results: vec![r(0), r(0)]
            }
            .exit_code(),
            0
        );
        assert_eq!(
            PayloadReport {
                results: vec![r(0), r(4), r(2)]
            }
            .exit_code(),
            4
        );
    }
}
