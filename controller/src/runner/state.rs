//! From runner pods to what the scaler decides on: a pure reading of pods
//! and the listener's [`Demand`], plus the little a reconciler remembers
//! between passes (startup failures, the quota backoff). No client here.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::demand::Demand;
use super::ended::EndedRunners;
use super::pod::{is_busy, is_outdated};
use super::{REGISTRATION_FINALIZER, RUNNER_CONTAINER, RUNNER_ID_ANNOTATION};
use crate::crd::RunnerScaleSetSpec;
use crate::scaler::{FailureHistory, FailureKind, Runner, RunnerState};

/// The runner (pod) name; pods listed from the API server always have one.
pub fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// What a pod says about its runner, with the listener's news on top:
/// a completed job or a deletion in progress wins over everything (the
/// runner is leaving), then a dead pod (its JIT config is spent), then a
/// started job.
pub fn runner_state(pod: &Pod, demand: &Demand) -> RunnerState {
    let name = pod_name(pod);
    if pod.metadata.deletion_timestamp.is_some() || demand.completed.contains(name) {
        return RunnerState::Finishing;
    }
    match phase(pod) {
        // The runner exited: an ephemeral runner exits after its one job,
        // so the pod is done either way and is replaced if still wanted.
        Some("Succeeded") => RunnerState::Failed(FailureKind::AfterRegistration),
        Some("Failed") => RunnerState::Failed(failure_kind(pod)),
        _ if is_busy(pod) || demand.busy.contains(name) => RunnerState::Busy,
        Some("Running") => RunnerState::Idle,
        _ => RunnerState::Pending,
    }
}

/// A pod whose runner container ran (OOM-killed by a job, a node lost under
/// it, evicted after start) says nothing about the next pod; one that never
/// got its runner started does.
fn failure_kind(pod: &Pod) -> FailureKind {
    let runner_started = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|c| c.name == RUNNER_CONTAINER)
        .any(|c| {
            let state = c.state.as_ref();
            c.restart_count > 0
                || state.is_some_and(|s| s.running.is_some())
                || state.and_then(|s| s.terminated.as_ref()).is_some_and(|t| {
                    t.started_at.is_some() || t.reason.as_deref() == Some("OOMKilled")
                })
        });
    if runner_started {
        FailureKind::AfterRegistration
    } else {
        FailureKind::Startup
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// The scaler's view of one pod.
pub fn runner_of(pod: &Pod, spec: &RunnerScaleSetSpec, demand: &Demand) -> Runner {
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or_else(Utc::now, to_chrono);
    let runner = Runner::new(pod_name(pod), runner_state(pod, demand), created);
    if is_outdated(pod, spec) {
        runner.outdated()
    } else {
        runner
    }
}

pub fn to_chrono(time: &Time) -> DateTime<Utc> {
    let ts = time.0;
    DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond().unsigned_abs())
        .unwrap_or_else(Utc::now)
}

/// The pod still holds the finalizer that guards its registration.
pub fn has_registration_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == REGISTRATION_FINALIZER)
}

/// The runner id the pod was created with (from its JIT config).
pub fn runner_id(pod: &Pod) -> Option<i64> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(RUNNER_ID_ANNOTATION)?
        .parse()
        .ok()
}

/// Backoff after the API server refused pods for quota: doubling from
/// `base` up to `max`, reset by the next pod it accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaBackoff {
    pub refusals: u32,
    pub until: Option<DateTime<Utc>>,
}

impl QuotaBackoff {
    pub fn record_refusal(&mut self, now: DateTime<Utc>, base: TimeDelta, max: TimeDelta) {
        self.refusals = self.refusals.saturating_add(1);
        let delay = crate::backoff::exponential_delta(base, max, self.refusals);
        self.until = Some(now + delay);
    }

    pub fn record_success(&mut self) {
        *self = QuotaBackoff::default();
    }

    /// When creations may be tried again, if not now.
    pub fn active_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.until.filter(|until| *until > now)
    }
}

/// What one scale set's reconciler remembers between passes. Losing it (a
/// restart) only makes the next creation early.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    pub failures: FailureHistory,
    pub quota: QuotaBackoff,
    /// The last quota refusal's message, repeated in the condition while the
    /// backoff lasts.
    pub quota_message: Option<String>,
    /// The first pass looked for pods without their JIT Secret (left by a
    /// crash); later passes make and remove runners whole.
    pub secrets_checked: bool,
    /// Runners done with their job that the statistics still count.
    pub ended: EndedRunners,
    /// Whether the runners' ServiceAccount asks for IRSA, as the last
    /// creation found it.
    pub irsa_expected: Option<bool>,
    /// Pods with the scale set's label that it does not control, as the
    /// last pass found them (each is logged once, when first seen).
    pub foreign_pods: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, phase: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: phase.map(|p| PodStatus {
                phase: Some(p.into()),
                ..PodStatus::default()
            }),
        }
    }

    fn with_runner_status(mut pod: Pod, state: ContainerState) -> Pod {
        pod.status
            .get_or_insert_with(PodStatus::default)
            .container_statuses = Some(vec![ContainerStatus {
            name: RUNNER_CONTAINER.into(),
            state: Some(state),
            ..ContainerStatus::default()
        }]);
        pod
    }

    fn terminated(reason: &str, started: bool) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                reason: Some(reason.into()),
                exit_code: 137,
                started_at: started.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }
    }

    #[test]
    fn phases_map_to_states() {
        let demand = Demand::default();
        assert_eq!(runner_state(&pod("a", None), &demand), RunnerState::Pending);
        assert_eq!(
            runner_state(&pod("a", Some("Pending")), &demand),
            RunnerState::Pending
        );
        assert_eq!(
            runner_state(&pod("a", Some("Running")), &demand),
            RunnerState::Idle
        );
        assert_eq!(
            runner_state(&pod("a", Some("Succeeded")), &demand),
            RunnerState::Failed(FailureKind::AfterRegistration)
        );
        assert_eq!(
            runner_state(&pod("a", Some("Failed")), &demand),
            RunnerState::Failed(FailureKind::Startup)
        );
    }

    #[test]
    fn oom_killed_and_started_runners_failed_after_registration() {
        let demand = Demand::default();
        let oom = with_runner_status(pod("a", Some("Failed")), terminated("OOMKilled", false));
        assert_eq!(
            runner_state(&oom, &demand),
            RunnerState::Failed(FailureKind::AfterRegistration)
        );
        let evicted = with_runner_status(pod("a", Some("Failed")), terminated("Error", true));
        assert_eq!(
            runner_state(&evicted, &demand),
            RunnerState::Failed(FailureKind::AfterRegistration)
        );
        let never_ran = with_runner_status(pod("a", Some("Failed")), terminated("Error", false));
        assert_eq!(
            runner_state(&never_ran, &demand),
            RunnerState::Failed(FailureKind::Startup)
        );
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        };
        let lost = with_runner_status(pod("a", Some("Failed")), running);
        assert_eq!(
            runner_state(&lost, &demand),
            RunnerState::Failed(FailureKind::AfterRegistration)
        );
    }

    #[test]
    fn demand_marks_busy_and_completed() {
        let demand = Demand {
            desired: 1,
            busy: ["b".to_string()].into(),
            completed: ["c".to_string()].into(),
        };
        assert_eq!(
            runner_state(&pod("b", Some("Running")), &demand),
            RunnerState::Busy
        );
        assert_eq!(
            runner_state(&pod("b", Some("Pending")), &demand),
            RunnerState::Busy
        );
        assert_eq!(
            runner_state(&pod("c", Some("Running")), &demand),
            RunnerState::Finishing
        );
        // A busy runner that died is failed: its job is lost either way.
        assert_eq!(
            runner_state(&pod("b", Some("Failed")), &demand),
            RunnerState::Failed(FailureKind::Startup)
        );
    }

    #[test]
    fn busy_annotation_and_deletion() {
        let demand = Demand::default();
        let mut busy = pod("a", Some("Running"));
        super::super::mark_busy(&mut busy.metadata);
        assert_eq!(runner_state(&busy, &demand), RunnerState::Busy);
        busy.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(runner_state(&busy, &demand), RunnerState::Finishing);
    }

    #[test]
    fn runner_id_and_finalizer_are_read_back() {
        let mut p = pod("a", None);
        assert_eq!(runner_id(&p), None);
        assert!(!has_registration_finalizer(&p));
        p.metadata.annotations = Some([(RUNNER_ID_ANNOTATION.to_string(), "42".into())].into());
        p.metadata.finalizers = Some(vec!["other".into(), REGISTRATION_FINALIZER.into()]);
        assert_eq!(runner_id(&p), Some(42));
        assert!(has_registration_finalizer(&p));
    }

    #[test]
    fn quota_backoff_doubles_to_its_cap_and_resets() {
        let now = Utc::now();
        let (base, max) = (TimeDelta::seconds(1), TimeDelta::seconds(5));
        let mut backoff = QuotaBackoff::default();
        assert_eq!(backoff.active_until(now), None);
        let delays: Vec<i64> = (0..5)
            .map(|_| {
                backoff.record_refusal(now, base, max);
                (backoff.until.unwrap() - now).num_seconds()
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert!(backoff.active_until(now).is_some());
        assert_eq!(backoff.active_until(now + TimeDelta::seconds(6)), None);
        backoff.record_success();
        assert_eq!(backoff, QuotaBackoff::default());
    }
}
