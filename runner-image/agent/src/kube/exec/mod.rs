//! The executor: runs one [`Action`] against the API server.
//!
//! Order, for every entry point (CLI, payloads, `serve`):
//! 1. the request is checked on its own ([`validate`]: pure) — bad input is
//!    exit 2, a safety rule (empty selector) exit 3;
//! 2. the allowlist decides (pure) — nothing reaches Kubernetes when it
//!    refuses;
//! 3. the target's API location is resolved (static for built-ins, one
//!    discovery call for CronJobs and custom objects);
//! 4. the verb runs under the action's timeout;
//! 5. the result is audited: one JSON line, and an Event on every object a
//!    mutation touched (not for dry runs).

use std::sync::Arc;

use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;

use super::action::{Action, Outcome};
use super::allowlist::Allowlist;
use super::audit::{self, AuditContext, Touched};
use super::catalog::{Resource, Verb};
use super::error::ActionError;

mod crud;
mod nodes;
mod redact;
mod resolve;
mod workloads;

pub use resolve::Target;

#[derive(Clone)]
pub struct Executor {
    client: Client,
    allowlist: Arc<Allowlist>,
    audit: Arc<AuditContext>,
}

/// What a verb did: the outcome, and the objects it touched (for audit).
pub(crate) struct Done {
    outcome: Outcome,
    touched: Vec<Touched>,
}

impl Executor {
    pub fn new(client: Client, allowlist: Allowlist, audit: AuditContext) -> Executor {
        Executor {
            client,
            allowlist: Arc::new(allowlist),
            audit: Arc::new(audit),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn allowlist(&self) -> &Allowlist {
        &self.allowlist
    }

    /// The same executor, audited as coming from `source` (e.g.
    /// `payload a1b2/3`).
    pub fn with_source(&self, source: impl Into<String>) -> Executor {
        let mut audit = (*self.audit).clone();
        audit.source = source.into();
        Executor {
            client: self.client.clone(),
            allowlist: self.allowlist.clone(),
            audit: Arc::new(audit),
        }
    }

    /// The same executor, audited with `audit` (the executor beside a job
    /// labels each request with the job that sent it).
    pub fn with_audit(&self, audit: AuditContext) -> Executor {
        Executor {
            client: self.client.clone(),
            allowlist: self.allowlist.clone(),
            audit: Arc::new(audit),
        }
    }

    /// The audit context actions are labelled with.
    pub fn audit(&self) -> &AuditContext {
        &self.audit
    }

    /// Whether `action` may run at all (validation and allowlist, both
    /// pure): what [`Executor::execute`] checks first. Payloads ask before
    /// claiming, so a refused action leaves no record.
    pub fn admit(&self, action: &Action) -> Result<(), ActionError> {
        validate(action)?;
        let namespace = self.namespace_of(action);
        self.allowlist
            .check(action.resource, action.verb, namespace.as_deref())?;
        Ok(())
    }

    /// Runs `action`: validation, allowlist, Kubernetes, audit.
    pub async fn execute(&self, action: &Action) -> Result<Outcome, ActionError> {
        self.admit(action)?;
        let namespace = self.namespace_of(action);
        let described = action.describe();
        let run = async {
            let target = resolve::target(&self.client, action, namespace.as_deref()).await?;
            self.dispatch(action, &target).await
        };
        // Drain bounds itself, to report which pods a budget blocked; the
        // grace keeps this outer bound from cutting that report off.
        let bound = match action.verb {
            Verb::Drain => action
                .timeout
                .saturating_add(std::time::Duration::from_secs(5)),
            _ => action.timeout,
        };
        let result = match tokio::time::timeout(bound, run).await {
            Ok(result) => result,
            Err(_) => Err(ActionError::Timeout {
                seconds: action.timeout.as_secs(),
                what: described.clone(),
            }),
        };
        match result {
            Ok(done) => {
                audit::log_line(&self.audit, &described, action.dry_run, &done.touched, None);
                if action.verb.mutates() && !action.dry_run {
                    audit::record_events(
                        &self.client,
                        &self.audit,
                        action.verb.key(),
                        &done.touched,
                    )
                    .await;
                }
                Ok(self.shown(done.outcome))
            }
            Err(e) => {
                audit::log_line(
                    &self.audit,
                    &described,
                    action.dry_run,
                    &[],
                    Some(&e.to_string()),
                );
                Err(e)
            }
        }
    }

    /// The namespace an action runs in: None for cluster-scoped resources,
    /// else the one given or the client's default (in a pod: its own).
    fn namespace_of(&self, action: &Action) -> Option<String> {
        let cluster_scoped = action.resource.location().is_some_and(|l| !l.namespaced);
        if cluster_scoped {
            return None;
        }
        Some(
            action
                .namespace
                .clone()
                .unwrap_or_else(|| self.client.default_namespace().to_string()),
        )
    }

    async fn dispatch(&self, action: &Action, target: &Target) -> Result<Done, ActionError> {
        let c = &self.client;
        match action.verb {
            Verb::Get | Verb::GetData => crud::get(c, action, target).await,
            Verb::List => crud::list(c, action, target).await,
            Verb::Create => crud::create(c, action, target).await,
            Verb::Update => crud::update(c, action, target).await,
            Verb::Patch => crud::patch(c, action, target).await,
            Verb::Delete => crud::delete(c, action, target).await,
            Verb::DeleteMultiple => crud::delete_multiple(c, action, target).await,
            Verb::Logs => crud::logs(c, action, target).await,
            Verb::Restart => workloads::restart(c, action, target).await,
            Verb::Scale => workloads::scale(c, action, target).await,
            Verb::Rollback => workloads::rollback(c, action, target).await,
            Verb::RolloutStatus => workloads::rollout_status(c, action, target).await,
            Verb::Trigger => workloads::trigger(c, action, target).await,
            Verb::Cordon => nodes::cordon(c, action, target, true).await,
            Verb::Uncordon => nodes::cordon(c, action, target, false).await,
            Verb::Drain => nodes::drain(c, action, target).await,
        }
    }

    /// Secret values hidden unless `getData` is allowed.
    fn shown(&self, mut outcome: Outcome) -> Outcome {
        if !self.allowlist.shows_secret_data() {
            redact::hide_secret_values(&mut outcome.result);
        }
        outcome
    }
}

/// Checks an action on its own, before anything else.
pub fn validate(action: &Action) -> Result<(), ActionError> {
    let needs_name = !matches!(
        action.verb,
        Verb::List | Verb::DeleteMultiple | Verb::Create
    );
    if needs_name && action.name.as_deref().is_none_or(str::is_empty) {
        return Err(ActionError::BadInput(format!(
            "`{}` needs a name: {}/<name>",
            action.verb, action.resource
        )));
    }
    if (action.resource == Resource::CustomObjects) != action.custom.is_some() {
        return Err(ActionError::BadInput(
            "customObjects need their group, version and kind (e.g. `--api-version argoproj.io/v1alpha1 --kind Rollout`); other resources take none".into(),
        ));
    }
    if action.verb == Verb::DeleteMultiple
        && action
            .selector
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
    {
        return Err(ActionError::Policy(
            "deleteMultiple needs a non-empty label selector (-l key=value); it never deletes everything".into(),
        ));
    }
    if action.verb == Verb::DeleteMultiple && action.max == 0 {
        return Err(ActionError::BadInput("--max must be at least 1".into()));
    }
    let needs_body = matches!(action.verb, Verb::Create | Verb::Update | Verb::Patch);
    match (&action.body, needs_body) {
        (None, true) => {
            return Err(ActionError::BadInput(format!(
                "`{}` needs a body (-f FILE or --body JSON)",
                action.verb
            )));
        }
        (Some(body), true) => {
            let ok = body.is_object()
                || (action.verb == Verb::Patch
                    && action.patch_kind == super::action::PatchKind::Json
                    && body.is_array());
            if !ok {
                return Err(ActionError::BadInput(
                    "the body must be a JSON object (a JSON patch: an array of operations)".into(),
                ));
            }
        }
        _ => {}
    }
    if action.timeout.is_zero() || action.timeout > super::action::MAX_TIMEOUT {
        return Err(ActionError::BadInput(format!(
            "the timeout must be more than 0 and at most {}s; got {}s",
            super::action::MAX_TIMEOUT.as_secs(),
            action.timeout.as_secs()
        )));
    }
    if action.verb == Verb::Scale && action.replicas.is_none_or(|r| r < 0) {
        return Err(ActionError::BadInput(
            "`scale` needs --replicas N (0 or more)".into(),
        ));
    }
    Ok(())
}

/// The object a dynamic API call returned, as a touched object.
pub(crate) fn touched(ar: &ApiResource, obj: &DynamicObject) -> Touched {
    Touched {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone().unwrap_or_default(),
        uid: obj.metadata.uid.clone(),
    }
}

/// The dynamic API for a target, in its namespace when it has one.
pub(crate) fn api(client: &Client, target: &Target) -> Api<DynamicObject> {
    match &target.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &target.ar),
        None => Api::all_with(client.clone(), &target.ar),
    }
}

/// The action's object name ("" when it has none; [`validate`] has made
/// sure the verbs that need one have one).
pub(crate) fn name(action: &Action) -> &str {
    action.name.as_deref().unwrap_or_default()
}

/// Patches made by `runway`, server-side dry run when asked.
pub(crate) fn patch_params(action: &Action) -> kube::api::PatchParams {
    kube::api::PatchParams {
        dry_run: action.dry_run,
        field_manager: Some("runway".into()),
        ..kube::api::PatchParams::default()
    }
}

pub(crate) fn kube_err(action: &Action) -> impl Fn(kube::Error) -> ActionError + '_ {
    move |e| ActionError::from_kube(&action.describe(), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::action::PatchKind;

    fn err(action: Action) -> ActionError {
        validate(&action).unwrap_err()
    }

    #[test]
    fn names_bodies_and_selectors_are_checked_first() {
        assert_eq!(err(Action::new(Verb::Get, Resource::Pods)).exit_code(), 2);
        assert_eq!(
            err(Action::new(Verb::Create, Resource::Pods)).to_string(),
            "`create` needs a body (-f FILE or --body JSON)"
        );
        let empty = Action::new(Verb::DeleteMultiple, Resource::Pods).selector(" ");
        assert_eq!(err(empty).exit_code(), 3);
        assert_eq!(
            err(Action::new(Verb::DeleteMultiple, Resource::Pods)).exit_code(),
            3
        );
        assert_eq!(
            err(Action::new(Verb::Scale, Resource::Deployments).named("api")).exit_code(),
            2
        );
        let array = Action::new(Verb::Patch, Resource::Pods)
            .named("p")
            .body(serde_json::json!([{"op": "remove", "path": "/x"}]));
        assert_eq!(err(array.clone()).exit_code(), 2);
        let mut json_patch = array;
        json_patch.patch_kind = PatchKind::Json;
        assert!(validate(&json_patch).is_ok());
        assert_eq!(
            err(Action::new(Verb::Get, Resource::CustomObjects).named("x")).exit_code(),
            2
        );
        assert!(validate(&Action::new(Verb::List, Resource::Pods)).is_ok());
    }

    #[test]
    fn timeouts_are_bounded() {
        use std::time::Duration;
        let drain = |timeout| {
            let mut action = Action::new(Verb::Drain, Resource::Nodes).named("n");
            action.timeout = timeout;
            action
        };
        for bad in [
            Duration::ZERO,
            crate::kube::action::MAX_TIMEOUT + Duration::from_secs(1),
            Duration::from_secs(1 << 63),
            Duration::MAX,
        ] {
            let e = err(drain(bad));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            assert!(e.to_string().contains("timeout"), "{e}");
        }
        assert!(validate(&drain(crate::kube::action::MAX_TIMEOUT)).is_ok());
        assert!(validate(&drain(Duration::from_secs(1))).is_ok());
    }
}
