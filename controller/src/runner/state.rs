//! From runner pods to what the scaler decides on: a pure reading of pods
//! and the listener's [`Demand`], plus the little a reconciler remembers
//! between passes (startup failures, the quota backoff). No client here.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::demand::Demand;
use super::ended::EndedRunners;
use super::pod::{is_busy, is_outdated};
use super::start::{BlockedStarts, StartFailure};
use super::{REGISTRATION_FINALIZER, RUNNER_CONTAINER, RUNNER_ID_ANNOTATION};
use crate::crd::RunnerScaleSetSpec;
use crate::scaler::{FailureHistory, FailureKind, Runner, RunnerState};

/// The runner (pod) name; pods listed from the API server always have one.
pub fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// What a pod says about its runner, with the listener's news on top:
/// a completed job or a deletion in progress wins over everything (the
/// runner is leaving), then an ended runner (its JIT config is spent), then
/// a started job.
pub fn runner_state(pod: &Pod, demand: &Demand) -> RunnerState {
    let name = pod_name(pod);
    if pod.metadata.deletion_timestamp.is_some() || demand.completed.contains(name) {
        return RunnerState::Finishing;
    }
    match runner_end(pod) {
        // An ephemeral runner exits after its one job, so the pod is done
        // either way and is replaced if still wanted.
        Some(RunnerEnd::Exited) => RunnerState::Failed(FailureKind::AfterRegistration),
        Some(RunnerEnd::Failed) => RunnerState::Failed(failure_kind(pod)),
        None if is_busy(pod) || demand.busy.contains(name) => RunnerState::Busy,
        None if phase(pod) == Some("Running") => RunnerState::Idle,
        None => RunnerState::Pending,
    }
}

/// How a runner ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerEnd {
    /// Exited 0, as an ephemeral runner does after its job.
    Exited,
    /// Exited otherwise, was killed, or its pod failed.
    Failed,
}

/// Whether the pod's runner has ended, and how. The runner container's
/// termination decides, whatever the pod phase and the other containers:
/// before Kubernetes 1.29 (no native sidecars) a dind sidecar keeps the pod
/// `Running` after the runner exits. A runner container that was restarted
/// (its `lastState` terminated: only a template's restart policy could do
/// that, Runway's pods use `Never`) has ended too: its JIT config is spent.
/// Without a terminated runner container the phase decides (a pod that
/// ended before its containers were reported, an evicted pod). Init
/// containers do not count.
pub fn runner_end(pod: &Pod) -> Option<RunnerEnd> {
    if let Some(end) = runner_termination(pod) {
        let oom = end.reason.as_deref() == Some("OOMKilled");
        return Some(if end.exit_code == 0 && !oom {
            RunnerEnd::Exited
        } else {
            RunnerEnd::Failed
        });
    }
    match phase(pod) {
        Some("Succeeded") => Some(RunnerEnd::Exited),
        Some("Failed") => Some(RunnerEnd::Failed),
        _ => None,
    }
}

fn runner_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == RUNNER_CONTAINER)
}

/// The runner container's termination: now, or before a restart.
fn runner_termination(pod: &Pod) -> Option<&ContainerStateTerminated> {
    let status = runner_status(pod)?;
    [&status.state, &status.last_state]
        .into_iter()
        .find_map(|s| s.as_ref()?.terminated.as_ref())
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
    /// Pods whose containers wait for a reason that blocks their start.
    pub blocked_starts: BlockedStarts,
    /// The last pod that failed to start, shown in the condition until a
    /// runner starts again.
    pub start_failure: Option<StartFailure>,
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

    fn status(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            ..ContainerStatus::default()
        }
    }

    fn exited(code: i32, reason: &str) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                reason: Some(reason.into()),
                started_at: Some(Time(k8s_openapi::jiff::Timestamp::now())),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }
    }

    fn up() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..ContainerState::default()
        }
    }

    #[test]
    fn the_runner_container_decides_the_end_whatever_the_phase_and_the_sidecars() {
        use RunnerEnd::{Exited, Failed};
        let after = RunnerState::Failed(FailureKind::AfterRegistration);
        let startup = RunnerState::Failed(FailureKind::Startup);
        let restarted = ContainerStatus {
            restart_count: 1,
            last_state: Some(exited(0, "Completed")),
            ..status(RUNNER_CONTAINER, up())
        };
        // What, phase, containers, init containers, the end, the state.
        type Case = (
            &'static str,
            &'static str,
            Vec<ContainerStatus>,
            Vec<ContainerStatus>,
            Option<RunnerEnd>,
            RunnerState,
        );
        let cases: Vec<Case> = vec![
            (
                "runner exited 0, dind runs, phase Running (1.20)",
                "Running",
                vec![
                    status(RUNNER_CONTAINER, exited(0, "Completed")),
                    status("dind", up()),
                ],
                vec![],
                Some(Exited),
                after,
            ),
            (
                "runner OOM-killed, dind runs",
                "Running",
                vec![
                    status(RUNNER_CONTAINER, exited(137, "OOMKilled")),
                    status("dind", up()),
                ],
                vec![],
                Some(Failed),
                after,
            ),
            (
                "runner exited 1 after it started, dind runs",
                "Running",
                vec![
                    status("dind", up()),
                    status(RUNNER_CONTAINER, exited(1, "Error")),
                ],
                vec![],
                Some(Failed),
                after,
            ),
            (
                "runner never started (StartError), dind runs",
                "Running",
                vec![
                    status(RUNNER_CONTAINER, terminated("StartError", false)),
                    status("dind", up()),
                ],
                vec![],
                Some(Failed),
                startup,
            ),
            (
                "runner runs, dind exited 1: the runner is alive",
                "Running",
                vec![
                    status(RUNNER_CONTAINER, up()),
                    status("dind", exited(1, "Error")),
                ],
                vec![],
                None,
                RunnerState::Idle,
            ),
            (
                "runner exited 0, dind failed: phase Failed, the runner's end counts",
                "Failed",
                vec![
                    status(RUNNER_CONTAINER, exited(0, "Completed")),
                    status("dind", exited(1, "Error")),
                ],
                vec![],
                Some(Exited),
                after,
            ),
            (
                "phase Succeeded, no container statuses",
                "Succeeded",
                vec![],
                vec![],
                Some(Exited),
                after,
            ),
            (
                "phase Failed, no container statuses",
                "Failed",
                vec![],
                vec![],
                Some(Failed),
                startup,
            ),
            (
                "an init container named runner that exited is not the runner",
                "Running",
                vec![status(RUNNER_CONTAINER, up())],
                vec![status(RUNNER_CONTAINER, exited(0, "Completed"))],
                None,
                RunnerState::Idle,
            ),
            (
                "runner restarted after exiting: its JIT config is spent",
                "Running",
                vec![restarted],
                vec![],
                Some(Exited),
                after,
            ),
            (
                "pending",
                "Pending",
                vec![],
                vec![],
                None,
                RunnerState::Pending,
            ),
        ];
        let demand = Demand::default();
        for (what, phase, containers, init, end, state) in cases {
            let mut p = pod("a", Some(phase));
            if let Some(s) = p.status.as_mut() {
                s.container_statuses = Some(containers);
                s.init_container_statuses = Some(init);
            }
            assert_eq!(runner_end(&p), end, "{what}");
            assert_eq!(runner_state(&p, &demand), state, "{what}");
        }
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
