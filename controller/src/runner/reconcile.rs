//! The runner reconciler of one scale set: one pass gathers the scale set's
//! runner pods, asks [`scaler::plan`] what to do, and applies it.
//!
//! Invariants:
//! - a runner is a Pod named after the runner, created before its JIT Secret
//!   (owned by the pod, so garbage collection removes it with the pod); a
//!   runner whose Secret cannot be made is taken apart again at once (pod
//!   and registration), so no half-made runner is left;
//! - a JIT config is used once: failed pods are replaced by new runners
//!   (new name, new JIT config), never restarted;
//! - a busy runner is never deleted by this reconciler, and an idle pod's
//!   finalizer stays until GitHub has removed its registration; a runner
//!   still running a job keeps it (requeue), nothing is forced;
//! - the Kubernetes writes per job are four: Pod create, Secret create, one
//!   patch when the job starts (busy annotation and, in the same write, the
//!   finalizer's removal: see [`Pass::mark_busy`]) and Pod delete; a runner
//!   that ends without a job pays the finalizer removal instead of the busy
//!   mark. Every write and GitHub call is counted in the [`Outcome`].
//!
//! This file gathers, decides and removes runners; `create` makes new ones;
//! `outcome` holds what a pass reports.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};

use super::demand::Demand;
use super::ended;
pub use super::outcome::{
    CONDITION_FAILING_TO_START, CONDITION_IRSA_MISSING, CONDITION_QUOTA_EXCEEDED, GitHubCalls,
    KubeWrites, Outcome, ReconcileError, RunnerCondition,
};
use super::pod::{SidecarSupport, busy_annotations, is_busy, is_controlled_by};
use super::pod::{has_irsa, jit_secret_name};
use super::registry::RunnerRegistry;
use super::start::{failed_to_start, start_failure_shown};
use super::state::{Memory, has_registration_finalizer, pod_name, runner_id, runner_of, to_chrono};
use super::{REGISTRATION_FINALIZER, SCALE_SET_LABEL};
use crate::crd::RunnerScaleSet;
use crate::github::Error as GitHubError;
use crate::patch;
use crate::scaler::{self, DeleteReason, RunnerState, ScaleInput, ScalePolicy};

/// Tunables of the reconciler; the defaults suit a real cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: ScalePolicy,
    pub sidecars: SidecarSupport,
    /// First delay after a quota refusal; doubles per refusal up to the max.
    pub quota_backoff_base: Duration,
    pub quota_backoff_max: Duration,
    /// How soon to look again at a runner whose deletion waits for its job.
    pub busy_requeue: Duration,
    /// How soon to try again after a per-runner error.
    pub error_requeue: Duration,
    /// Runners created at the same time (each is a JIT config, a Pod and a
    /// Secret).
    pub create_concurrency: usize,
    /// How long a container may wait for a start error the kubelet retries
    /// (an image pull, see `runner::start`) before its pod counts as failed
    /// to start. The kubelet retries a pull 10 s after it failed, then 20 s,
    /// 40 s...: within a minute it has tried again at least twice, enough
    /// for a registry blip; a missing image or credentials do not heal, and
    /// waiting longer only holds the runner slot.
    pub start_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: ScalePolicy::default(),
            sidecars: SidecarSupport::Plain,
            quota_backoff_base: Duration::from_secs(5),
            quota_backoff_max: Duration::from_secs(5 * 60),
            busy_requeue: Duration::from_secs(15),
            error_requeue: Duration::from_secs(5),
            create_concurrency: 10,
            start_grace: Duration::from_secs(60),
        }
    }
}

/// What one scale set's reconciler works with, and what it remembers
/// between passes.
pub struct Context<R> {
    pub kube: Client,
    pub github: R,
    pub settings: Settings,
    pub(super) recorder: Recorder,
    memory: Mutex<Memory>,
}

impl<R: RunnerRegistry> Context<R> {
    pub fn new(kube: Client, github: R, settings: Settings) -> Self {
        let reporter = Reporter {
            controller: "runway-controller".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(kube.clone(), reporter),
            kube,
            github,
            settings,
            memory: Mutex::new(Memory::default()),
        }
    }

    /// Never held across an await.
    pub(super) fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn remembered(&self) -> Memory {
        self.memory().clone()
    }

    /// Records an Event on `rss`; failing to record it fails nothing.
    pub async fn event(
        &self,
        rss: &RunnerScaleSet,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &rss.object_ref(&())).await {
            tracing::warn!(scale_set = %rss.name_any(), %error, "could not record an event");
        }
    }
}

/// One pass for one scale set. See the module comment.
pub async fn reconcile_runners<R: RunnerRegistry>(
    ctx: &Context<R>,
    rss: &RunnerScaleSet,
    demand: &Demand,
) -> Result<Outcome, ReconcileError> {
    let pass = Pass::new(ctx, rss)?;
    // Gather.
    let mut pods = pass.list().await?;
    let mut out = Outcome::default();
    if !ctx.memory().secrets_checked {
        let half_made = pass.half_made(&pods).await?;
        for pod in pods.iter().filter(|p| half_made.contains(pod_name(p))) {
            tracing::info!(scale_set = %pass.name, pod = pod_name(pod), "runner pod without its JIT Secret (a crash between the two creates): taking it apart");
            let result = pass.retire(pod, &mut out).await;
            pass.note(result, &mut out);
        }
        pods.retain(|p| !half_made.contains(pod_name(p)));
        ctx.memory().secrets_checked = true;
    }
    let now = Utc::now();
    let blocked = {
        let grace = TimeDelta::from_std(ctx.settings.start_grace).unwrap_or(TimeDelta::MAX);
        ctx.memory().blocked_starts.failed(&pods, now, grace)
    };
    let runners: Vec<_> = pods
        .iter()
        .map(|p| failed_to_start(runner_of(p, &rss.spec, demand), &blocked.failed))
        .collect();

    // Decide.
    let failures = {
        let mut memory = ctx.memory();
        let since = memory.failures.last_failure;
        if pods.iter().any(|p| started_since(p, since)) {
            memory.failures.record_success();
            memory.start_failure = None;
        }
        memory.failures
    };
    let min_runners = rss.spec.min_runners();
    let done_unreported = ctx
        .memory()
        .ended
        .unreported(&pods, demand, now, ended::GRACE);
    let input = ScaleInput {
        min_runners,
        max_runners: rss.spec.max_runners(),
        // The listener sends `min(max, min + assigned)`; the scaler wants the
        // assigned jobs back, without those whose runner is done already.
        assigned_jobs: demand
            .desired
            .saturating_sub(min_runners)
            .saturating_sub(done_unreported),
        runners,
        failures,
        now,
    };
    let plan = scaler::plan(&input, &ctx.settings.policy);
    ctx.memory()
        .failures
        .record_failures(plan.startup_failures, now);

    // Apply: leaving runners first (they free quota and `maxRunners`), then
    // busy marks, then new runners.
    for (pod, runner) in pods.iter().zip(&input.runners) {
        if runner.state != RunnerState::Finishing {
            continue;
        }
        let result = if demand.completed.contains(pod_name(pod)) {
            // The listener saw its job complete: the service removed the
            // ephemeral registration with it, nothing to unregister.
            pass.delete_released(pod, &mut out).await
        } else if pod.metadata.deletion_timestamp.is_some() {
            pass.release(pod, &mut out).await
        } else {
            pass.delete_and_release(pod, &mut out).await
        };
        pass.note(result, &mut out);
    }
    for deletion in &plan.delete {
        let Some(pod) = pods.iter().find(|p| pod_name(p) == deletion.name) else {
            continue;
        };
        let result = match deletion.reason {
            // Dead: nothing can take a job any more.
            DeleteReason::Failed => {
                let result = pass.delete_and_release(pod, &mut out).await;
                if let Some(failure) = blocked.failed.iter().find(|f| f.pod == deletion.name)
                    && out.deleted.contains(&deletion.name)
                {
                    tracing::warn!(scale_set = %pass.name, namespace = %pass.namespace, "{}", failure.describe());
                    out.failed_to_start.push(failure.clone());
                    ctx.memory().start_failure = Some(failure.clone());
                }
                result
            }
            // Alive and maybe taking a job right now: unregister first, and
            // keep the pod if GitHub says it is busy after all.
            DeleteReason::ScaleDown | DeleteReason::Outdated | DeleteReason::StuckPending => {
                pass.retire(pod, &mut out).await
            }
        };
        pass.note(result, &mut out);
    }
    for (pod, runner) in pods.iter().zip(&input.runners) {
        if runner.state == RunnerState::Busy && !is_busy(pod) {
            let result = pass.mark_busy(pod, &mut out).await;
            pass.note(result, &mut out);
        }
    }
    if plan.create > 0 {
        let existing: Vec<&str> = pods.iter().map(pod_name).collect();
        pass.create_runners(plan.create, &existing, now, &mut out)
            .await?;
    }

    if let Some(condition) = irsa_condition(&pods, ctx.memory().irsa_expected) {
        out.conditions.push(condition);
    }
    if let Some(failure) = start_failure_shown(&mut ctx.memory(), &ctx.settings.policy, now) {
        out.conditions.push(failure.condition());
    }
    if let Some(at) = plan.requeue_at {
        out.requeue_at(at, now);
    }
    if let Some(at) = blocked.next {
        out.requeue_at(at, now);
    }
    out.plan = plan;
    Ok(out)
}

/// `IrsaMissing` while any live runner pod lacks the IRSA credentials its
/// ServiceAccount asks for (the pod identity webhook did not serve it): a
/// state, raised on every pass it holds, not only by the pass that made the
/// pod.
pub(super) fn irsa_condition(pods: &[Pod], irsa_expected: Option<bool>) -> Option<RunnerCondition> {
    if irsa_expected != Some(true) {
        return None;
    }
    let missing: Vec<&str> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !has_irsa(p))
        .map(pod_name)
        .collect();
    (!missing.is_empty()).then(|| RunnerCondition {
        type_: CONDITION_IRSA_MISSING,
        reason: "RunnerPodWithoutIrsa",
        message: format!(
            "runner pod(s) {} have no IRSA credentials (no AWS_ROLE_ARN, no aws-iam-token volume) although their ServiceAccount has eks.amazonaws.com/role-arn; check that the pod identity webhook runs and serves this namespace",
            missing.join(", ")
        ),
    })
}

/// Whether any container of the pod has run: the kubelet found its Secret.
fn has_started(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Running" | "Succeeded" | "Failed")
    ) || status
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.state.as_ref().is_some_and(|s| s.waiting.is_none()))
        })
}

/// A pod that reached Running after the last startup failure shows that
/// runners start again.
fn started_since(pod: &Pod, since: Option<DateTime<Utc>>) -> bool {
    let Some(since) = since else {
        return false;
    };
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.start_time.as_ref())
            .is_some_and(|t| to_chrono(t) > since)
}

pub(super) enum Unregistered {
    Gone,
    StillRunning,
}

/// One pass over one scale set.
pub(super) struct Pass<'a, R> {
    pub(super) ctx: &'a Context<R>,
    pub(super) rss: &'a RunnerScaleSet,
    pub(super) name: &'a str,
    pub(super) namespace: &'a str,
    /// The scale set's uid: its runner pods' controlling owner.
    pub(super) uid: &'a str,
    pub(super) scale_set_id: i64,
    pub(super) pods: Api<Pod>,
}

/// A field the API server sets on every stored object, or the error naming it.
fn stored<'a>(value: Option<&'a str>, field: &'static str) -> Result<&'a str, ReconcileError> {
    value.ok_or(ReconcileError::NotStored { field })
}

impl<'a, R: RunnerRegistry> Pass<'a, R> {
    /// A pass over a stored `RunnerScaleSet` whose scale set exists.
    pub(super) fn new(
        ctx: &'a Context<R>,
        rss: &'a RunnerScaleSet,
    ) -> Result<Self, ReconcileError> {
        let name = stored(rss.metadata.name.as_deref(), "metadata.name")?;
        let namespace = stored(rss.metadata.namespace.as_deref(), "metadata.namespace")?;
        let uid = stored(rss.metadata.uid.as_deref(), "metadata.uid")?;
        let scale_set_id = rss
            .status
            .as_ref()
            .and_then(|s| s.scale_set_id)
            .ok_or_else(|| ReconcileError::NoScaleSetId {
                namespace: namespace.into(),
                name: name.into(),
            })?;
        Ok(Pass {
            ctx,
            rss,
            name,
            namespace,
            uid,
            scale_set_id,
            pods: Api::namespaced(ctx.kube.clone(), namespace),
        })
    }

    /// Runner pods not yet started whose JIT Secret does not exist: a
    /// previous process stopped between creating the pod and its Secret.
    /// Such a pod never starts (its env comes from the Secret), so it would
    /// hold a runner slot until the stuck-pending timeout. Each candidate's
    /// own Secret is read by name: the controller needs no `list` on
    /// Secrets, which would show it every Secret of the namespace.
    pub(super) async fn half_made(&self, pods: &[Pod]) -> Result<BTreeSet<String>, ReconcileError> {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.kube.clone(), self.namespace);
        let mut half_made = BTreeSet::new();
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && !has_started(p))
        {
            let name = pod_name(pod);
            let secret = jit_secret_name(name);
            let found = secrets.get_metadata_opt(&secret).await.map_err(|e| {
                ReconcileError::kube(format!("get Secret {secret} in {}", self.namespace), e)
            })?;
            if found.is_none() {
                half_made.insert(name.to_owned());
            }
        }
        Ok(half_made)
    }

    /// The scale set's runner pods: those with its label that it controls
    /// (ownerReference with its uid). A pod someone else labelled alike is
    /// not a runner of ours: never counted, retired or deleted.
    pub(super) async fn list(&self) -> Result<Vec<Pod>, ReconcileError> {
        let selector = format!("{SCALE_SET_LABEL}={}", self.name);
        let (ours, foreign): (Vec<Pod>, Vec<Pod>) = self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| {
                ReconcileError::kube(format!("list pods {selector} in {}", self.namespace), e)
            })?
            .items
            .into_iter()
            .partition(|p| is_controlled_by(p, self.uid));
        let foreign: BTreeSet<String> = foreign.iter().map(|p| pod_name(p).to_owned()).collect();
        let mut memory = self.ctx.memory();
        for pod in foreign.difference(&memory.foreign_pods) {
            tracing::info!(
                scale_set = %self.name, namespace = %self.namespace, pod = %pod,
                "ignoring a pod labelled {selector} that this RunnerScaleSet does not own (no controller ownerReference with its uid)"
            );
        }
        memory.foreign_pods = foreign;
        Ok(ours)
    }

    pub(super) fn note(&self, result: Result<(), ReconcileError>, out: &mut Outcome) {
        if let Err(error) = result {
            tracing::warn!(scale_set = %self.name, namespace = %self.namespace, %error, "runner reconcile step failed");
            out.errors.push(error);
            out.requeue_in(self.ctx.settings.error_requeue);
        }
    }

    /// The registration-removal half of a deletion: for a pod being deleted
    /// that still holds our finalizer.
    pub(super) async fn release(&self, pod: &Pod, out: &mut Outcome) -> Result<(), ReconcileError> {
        if !has_registration_finalizer(pod) {
            return Ok(());
        }
        match self.unregister_pod(pod, out).await? {
            Unregistered::StillRunning => {
                out.waiting_for_job.push(pod_name(pod).into());
                out.requeue_in(self.ctx.settings.busy_requeue);
                Ok(())
            }
            Unregistered::Gone => self.remove_finalizer(pod, out).await,
        }
    }

    pub(super) async fn delete_and_release(
        &self,
        pod: &Pod,
        out: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        match self.delete(pod, out).await? {
            Some(deleting) => self.release(&deleting, out).await,
            None => Ok(()),
        }
    }

    /// Deletes a pod whose registration is gone and releases its finalizer.
    pub(super) async fn delete_released(
        &self,
        pod: &Pod,
        out: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        let pod = if pod.metadata.deletion_timestamp.is_some() {
            Some(pod.clone())
        } else {
            self.delete(pod, out).await?
        };
        match pod {
            Some(deleting) => self.remove_finalizer(&deleting, out).await,
            None => Ok(()),
        }
    }

    /// Scale-down of a live runner: unregister, then delete; the finalizer
    /// is released at once since the registration is already gone.
    pub(super) async fn retire(&self, pod: &Pod, out: &mut Outcome) -> Result<(), ReconcileError> {
        if let Unregistered::StillRunning = self.unregister_pod(pod, out).await? {
            out.spared.push(pod_name(pod).into());
            return Ok(());
        }
        self.delete_released(pod, out).await
    }

    /// Deletes a pod; the pod as it is now if it still exists (held by a
    /// finalizer).
    pub(super) async fn delete(
        &self,
        pod: &Pod,
        out: &mut Outcome,
    ) -> Result<Option<Pod>, ReconcileError> {
        let name = pod_name(pod);
        out.kube.pod_deletes += 1;
        match self.pods.delete(name, &DeleteParams::default()).await {
            Ok(deleted) => {
                out.deleted.push(name.into());
                Ok(deleted.left())
            }
            Err(e) if api_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(ReconcileError::kube(format!("delete runner pod {name}"), e)),
        }
    }

    pub(super) async fn unregister_pod(
        &self,
        pod: &Pod,
        out: &mut Outcome,
    ) -> Result<Unregistered, ReconcileError> {
        let id = match runner_id(pod) {
            Some(id) => id,
            None => {
                let name = pod_name(pod);
                out.github.runner_lookups += 1;
                let found = self
                    .ctx
                    .github
                    .runner_by_name(name)
                    .await
                    .map_err(|e| ReconcileError::github(format!("look up runner {name}"), e))?;
                match found {
                    Some(runner) if runner.runner_scale_set_id == self.scale_set_id => runner.id,
                    _ => return Ok(Unregistered::Gone),
                }
            }
        };
        self.unregister(id, out).await
    }

    pub(super) async fn unregister(
        &self,
        id: i64,
        out: &mut Outcome,
    ) -> Result<Unregistered, ReconcileError> {
        out.github.runner_removals += 1;
        match self.ctx.github.remove_runner(id).await {
            // Ephemeral runners are removed by the service when their job
            // completes: already gone is the usual answer after a job.
            Ok(())
            | Err(GitHubError::AgentNotFound { .. } | GitHubError::Status { status: 404, .. }) => {
                Ok(Unregistered::Gone)
            }
            Err(GitHubError::JobStillRunning { .. }) => Ok(Unregistered::StillRunning),
            Err(e) => Err(ReconcileError::github(format!("remove runner {id}"), e)),
        }
    }

    /// Removes our finalizer (see [`patch::remove_finalizer`]); nothing to
    /// do if the pod does not hold it.
    pub(super) async fn remove_finalizer(
        &self,
        pod: &Pod,
        out: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        let name = pod_name(pod);
        let ops = patch::remove_finalizer(&pod.metadata, REGISTRATION_FINALIZER);
        if ops.is_empty() {
            return Ok(());
        }
        let patch = patch::json_patch(ops)
            .map_err(|e| ReconcileError::kube(format!("build the finalizer patch of {name}"), e))?;
        out.kube.finalizer_removals += 1;
        match self
            .pods
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => {
                out.released.push(name.into());
                Ok(())
            }
            Err(e) if api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(ReconcileError::kube(
                format!("remove finalizer {REGISTRATION_FINALIZER} from pod {name}"),
                e,
            )),
        }
    }

    /// Marks a runner busy (its job started) and, in the same write, lets
    /// go of the registration finalizer: from now on GitHub removes the
    /// ephemeral registration itself when the job ends, and a busy runner
    /// cannot be unregistered anyway (`JobStillRunning`), so the finalizer
    /// could only hold the pod, never do its job. This keeps a job's writes
    /// at four (Secret create, Pod create, this patch, Pod delete).
    pub(super) async fn mark_busy(
        &self,
        pod: &Pod,
        out: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        let name = pod_name(pod);
        let patch = patch::json_patch(busy_ops(pod))
            .map_err(|e| ReconcileError::kube(format!("build the busy patch of {name}"), e))?;
        out.kube.busy_patches += 1;
        match self
            .pods
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => {
                out.marked_busy.push(name.into());
                Ok(())
            }
            Err(e) if api_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(ReconcileError::kube(format!("mark pod {name} busy"), e)),
        }
    }
}

/// The busy annotations, then the finalizer removal.
fn busy_ops(pod: &Pod) -> Vec<patch::Op> {
    let annotations = busy_annotations();
    let mut ops = patch::set_annotations(
        &pod.metadata,
        annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    ops.extend(patch::remove_finalizer(
        &pod.metadata,
        REGISTRATION_FINALIZER,
    ));
    ops
}

fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use serde_json::json;

    #[test]
    fn the_busy_mark_removes_only_our_finalizer_in_the_same_patch() {
        let pod = Pod {
            metadata: ObjectMeta {
                annotations: Some([("a".to_string(), "b".to_string())].into()),
                finalizers: Some(vec![
                    "example.com/other".into(),
                    REGISTRATION_FINALIZER.into(),
                ]),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        assert_eq!(
            serde_json::to_value(busy_ops(&pod)).unwrap(),
            json!([
                {"op": "add", "path": "/metadata/annotations/actions.runway.dev~1busy", "value": "true"},
                {"op": "add", "path": "/metadata/annotations/karpenter.sh~1do-not-disrupt", "value": "true"},
                {"op": "test", "path": "/metadata/finalizers/1", "value": REGISTRATION_FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ])
        );
    }
}
