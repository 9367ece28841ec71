//! Runner pods the kubelet cannot start: a container left waiting for a
//! reason that will not heal by itself (an image that cannot be pulled, a
//! container that cannot be created). Such a pod stays `Pending` and holds a
//! runner slot until the pending timeout; instead, once the reason has
//! persisted past a grace, it is a startup failure like any other (deleted,
//! counted towards the scaler's backoff), and the scale set says which
//! container and image, with the kubelet's message.
//!
//! Which waiting reasons count, and when:
//! - `InvalidImageName`, at once: the kubelet never retries a reference it
//!   cannot parse, and every pod from the same template fails alike;
//! - `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`,
//!   `CreateContainerConfigError` (a Secret, ConfigMap or key the container
//!   needs is missing), `CreateContainerError` (the runtime refused to
//!   create it), after the grace: the kubelet retries these (a registry
//!   blip, an object created a moment later, and our own JIT Secret is made
//!   just after its pod), so one sighting is not enough. The grace is
//!   measured from the first pass that saw the reason, and ends when the
//!   pod shows no such reason any more (a pull that succeeded).
//!
//! Other start failures need nothing here: with `restartPolicy: Never` a
//! container that cannot run (`StartError`, `ContainerCannotRun`) ends
//! terminated, and [`super::state::runner_end`] sees it.
//!
//! Pure: time is an input, the reconciler applies the result.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::outcome::{CONDITION_FAILING_TO_START, RunnerCondition};
use super::state::{Memory, pod_name};
use crate::scaler::{FailureKind, Runner, RunnerState, ScalePolicy};

/// The kubelet's message is cut to this many characters in conditions and
/// Events.
const MESSAGE_CHARS: usize = 400;

/// Why a container does not start, by the kubelet's waiting reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`: one reason
    /// for all three, which alternate while the kubelet retries.
    ImagePull,
    InvalidImageName,
    CreateContainerConfigError,
    CreateContainerError,
}

impl Blocked {
    /// The waiting reasons that block a start; `None` for the others
    /// (`ContainerCreating`, `PodInitializing`: progress, not failure).
    pub fn of(reason: &str) -> Option<Self> {
        match reason {
            "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" => Some(Blocked::ImagePull),
            "InvalidImageName" => Some(Blocked::InvalidImageName),
            "CreateContainerConfigError" => Some(Blocked::CreateContainerConfigError),
            "CreateContainerError" => Some(Blocked::CreateContainerError),
            _ => None,
        }
    }

    /// The reason shown in the condition and the Event.
    pub fn reason(self) -> &'static str {
        match self {
            Blocked::ImagePull => "ImagePullBackOff",
            Blocked::InvalidImageName => "InvalidImageName",
            Blocked::CreateContainerConfigError => "CreateContainerConfigError",
            Blocked::CreateContainerError => "CreateContainerError",
        }
    }

    /// Whether the kubelet retries it (so a grace applies).
    fn retried(self) -> bool {
        self != Blocked::InvalidImageName
    }
}

/// A container of a runner pod that does not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    pub pod: String,
    pub container: String,
    pub image: String,
    pub blocked: Blocked,
    /// The kubelet's message, cut to [`MESSAGE_CHARS`].
    pub message: String,
}

impl StartFailure {
    /// What the user reads, in the condition and the Event.
    pub fn describe(&self) -> String {
        let StartFailure {
            pod,
            container,
            image,
            message,
            ..
        } = self;
        let (what, fix) = match self.blocked {
            Blocked::ImagePull => (
                format!("{container} container image \"{image}\" cannot be pulled"),
                "the image and imagePullSecrets",
            ),
            Blocked::InvalidImageName => (
                format!("{container} container image \"{image}\" is not a valid image name"),
                "the image",
            ),
            Blocked::CreateContainerConfigError => (
                format!("{container} container (image \"{image}\") cannot be created"),
                "the Secrets and ConfigMaps its env and volumes name",
            ),
            Blocked::CreateContainerError => (
                format!("{container} container (image \"{image}\") cannot be created"),
                "the container's command, mounts and devices",
            ),
        };
        format!(
            "{what}: {message} (runner pod {pod}); runner pods are replaced with backoff until one starts: check {fix} in the RunnerScaleSet's template"
        )
    }

    /// `RunnersFailingToStart`, with the kubelet's reason.
    pub fn condition(&self) -> RunnerCondition {
        RunnerCondition {
            type_: CONDITION_FAILING_TO_START,
            reason: self.blocked.reason(),
            message: self.describe(),
        }
    }
}

/// The first container of the pod (init containers first) that waits for a
/// reason that blocks its start. A pod being deleted has nothing to start.
pub fn blocked_start(pod: &Pod) -> Option<StartFailure> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let spec = pod.spec.as_ref();
    status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten()
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let blocked = Blocked::of(waiting.reason.as_deref()?)?;
            Some(StartFailure {
                pod: pod_name(pod).to_owned(),
                container: c.name.clone(),
                image: spec_image(spec, c).unwrap_or_else(|| c.image.clone()),
                blocked,
                message: waiting
                    .message
                    .as_deref()
                    .unwrap_or("no message from the kubelet")
                    .chars()
                    .take(MESSAGE_CHARS)
                    .collect(),
            })
        })
}

/// The image as the pod spec names it (what the user wrote).
fn spec_image(
    spec: Option<&k8s_openapi::api::core::v1::PodSpec>,
    status: &ContainerStatus,
) -> Option<String> {
    let spec = spec?;
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == status.name)?
        .image
        .clone()
}

/// When each pod was first seen blocked, between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockedStarts {
    since: BTreeMap<String, DateTime<Utc>>,
}

/// What [`BlockedStarts::failed`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Pods that failed to start: blocked for `grace` or more (at once for
    /// a reason the kubelet does not retry).
    pub failed: Vec<StartFailure>,
    /// When the next blocked pod reaches its grace.
    pub next: Option<DateTime<Utc>>,
}

impl BlockedStarts {
    /// Notes the pods blocked now (forgetting those no longer blocked or
    /// gone) and returns those blocked for longer than `grace`.
    pub fn failed(&mut self, pods: &[Pod], now: DateTime<Utc>, grace: TimeDelta) -> Verdict {
        let blocked: Vec<StartFailure> = pods.iter().filter_map(blocked_start).collect();
        self.since
            .retain(|name, _| blocked.iter().any(|b| &b.pod == name));
        let mut verdict = Verdict::default();
        for failure in blocked {
            let since = *self.since.entry(failure.pod.clone()).or_insert(now);
            let deadline = if failure.blocked.retried() {
                since
                    .checked_add_signed(grace)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            } else {
                since
            };
            if now >= deadline {
                verdict.failed.push(failure);
            } else {
                verdict.next = Some(verdict.next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        verdict
    }
}

/// A pending runner whose pod cannot start failed to
/// start: deleted, and counted towards the backoff.
pub(super) fn failed_to_start(mut runner: Runner, failed: &[StartFailure]) -> Runner {
    if runner.state == RunnerState::Pending && failed.iter().any(|f| f.pod == runner.name) {
        runner.state = RunnerState::Failed(FailureKind::Startup);
    }
    runner
}

/// The start failure the `RunnersFailingToStart` condition shows: the last
/// one, until a runner starts again or the failure history is forgotten.
pub(super) fn start_failure_shown(
    memory: &mut Memory,
    policy: &ScalePolicy,
    now: DateTime<Utc>,
) -> Option<StartFailure> {
    let recent = memory
        .failures
        .last_failure
        .is_some_and(|at| now - at < policy.failure_memory);
    if !recent {
        memory.start_failure = None;
    }
    memory.start_failure.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateWaiting, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    const IMAGE: &str = "example.invalid/runner:1";

    fn waiting(name: &str, reason: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image: "status-image".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: Some(format!("kubelet says {reason}")),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn running(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }
    }

    fn pod(name: &str, init: Vec<ContainerStatus>, containers: Vec<ContainerStatus>) -> Pod {
        let container = |name: &str, image: &str| Container {
            name: name.into(),
            image: Some(image.into()),
            ..Container::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(vec![container("setup", "busybox")]),
                containers: vec![container("runner", IMAGE), container("dind", "docker:dind")],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                init_container_statuses: Some(init),
                container_statuses: Some(containers),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn only_a_pending_runner_fails_to_start() {
        let failed = [StartFailure {
            pod: "blocked".into(),
            container: "runner".into(),
            image: "i".into(),
            blocked: Blocked::ImagePull,
            message: "m".into(),
        }];
        let now = Utc::now();
        let cases = [
            (
                "blocked",
                RunnerState::Pending,
                RunnerState::Failed(FailureKind::Startup),
            ),
            ("blocked", RunnerState::Finishing, RunnerState::Finishing),
            ("other", RunnerState::Pending, RunnerState::Pending),
        ];
        for (name, state, expected) in cases {
            let runner = failed_to_start(Runner::new(name, state, now), &failed);
            assert_eq!(runner.state, expected, "{name} {state:?}");
        }

        // The condition shows the last failure while the history holds it.
        let policy = ScalePolicy::default();
        let mut memory = Memory {
            start_failure: Some(failed[0].clone()),
            ..Memory::default()
        };
        memory.failures.record_failures(1, now);
        assert_eq!(
            start_failure_shown(&mut memory, &policy, now),
            Some(failed[0].clone())
        );
        let later = now + policy.failure_memory;
        assert_eq!(start_failure_shown(&mut memory, &policy, later), None);
        assert_eq!(memory.start_failure, None);
    }

    #[test]
    fn waiting_reasons_that_block_a_start() {
        let cases = [
            ("ErrImagePull", Some(Blocked::ImagePull)),
            ("ImagePullBackOff", Some(Blocked::ImagePull)),
            ("ErrImageNeverPull", Some(Blocked::ImagePull)),
            ("InvalidImageName", Some(Blocked::InvalidImageName)),
            (
                "CreateContainerConfigError",
                Some(Blocked::CreateContainerConfigError),
            ),
            ("CreateContainerError", Some(Blocked::CreateContainerError)),
            ("ContainerCreating", None),
            ("PodInitializing", None),
            ("", None),
        ];
        for (reason, blocked) in cases {
            assert_eq!(Blocked::of(reason), blocked, "{reason}");
            let p = pod(
                "p",
                vec![],
                vec![waiting("runner", reason), running("dind")],
            );
            assert_eq!(
                blocked_start(&p).map(|f| f.blocked),
                blocked,
                "{reason} on the runner container"
            );
        }
    }

    #[test]
    fn the_failure_names_the_container_and_the_spec_image() {
        let p = pod(
            "p",
            vec![],
            vec![running("runner"), waiting("dind", "ImagePullBackOff")],
        );
        let failure = blocked_start(&p).unwrap();
        assert_eq!(failure.container, "dind");
        assert_eq!(failure.image, "docker:dind");
        let p = pod(
            "p",
            vec![waiting("setup", "ErrImagePull")],
            vec![waiting("runner", "ImagePullBackOff")],
        );
        assert_eq!(blocked_start(&p).unwrap().container, "setup", "init first");

        let p = pod("p", vec![], vec![waiting("runner", "ImagePullBackOff")]);
        let condition = blocked_start(&p).unwrap().condition();
        assert_eq!(condition.type_, "RunnersFailingToStart");
        assert_eq!(condition.reason, "ImagePullBackOff");
        assert!(
            condition.message.starts_with(&format!(
                "runner container image \"{IMAGE}\" cannot be pulled: kubelet says ImagePullBackOff (runner pod p)"
            )),
            "{}",
            condition.message
        );
    }

    #[test]
    fn odd_statuses_are_not_failures_and_never_panic() {
        let mut p = pod("p", vec![], vec![waiting("runner", "ErrImagePull")]);
        p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(blocked_start(&p), None, "being deleted");
        let mut no_spec = pod("p", vec![], vec![waiting("other", "ErrImagePull")]);
        no_spec.spec = None;
        assert_eq!(blocked_start(&no_spec).unwrap().image, "status-image");
        let mut silent = waiting("runner", "ErrImagePull");
        if let Some(w) = silent.state.as_mut().and_then(|s| s.waiting.as_mut()) {
            w.message = Some("é".repeat(1000));
        }
        let long = blocked_start(&pod("p", vec![], vec![silent])).unwrap();
        assert_eq!(long.message.chars().count(), MESSAGE_CHARS);
        let mut no_reason = waiting("runner", "x");
        if let Some(w) = no_reason.state.as_mut().and_then(|s| s.waiting.as_mut()) {
            w.reason = None;
        }
        assert_eq!(blocked_start(&pod("p", vec![], vec![no_reason])), None);
        let mut no_status = pod("p", vec![], vec![]);
        no_status.status = None;
        assert_eq!(blocked_start(&no_status), None);
    }

    #[test]
    fn a_pull_failure_counts_once_it_persisted_past_the_grace() {
        let t0 = Utc::now();
        let grace = TimeDelta::seconds(60);
        let at = |s: i64| t0 + TimeDelta::seconds(s);
        let pulling = |reason: &str| pod("p", vec![], vec![waiting("runner", reason)]);
        let mut blocked = BlockedStarts::default();

        // Seen once: not enough; look again at the grace's end.
        let v = blocked.failed(&[pulling("ErrImagePull")], t0, grace);
        assert!(v.failed.is_empty());
        assert_eq!(v.next, Some(at(60)));
        // The kubelet backs off and retries: still within the grace.
        let v = blocked.failed(&[pulling("ImagePullBackOff")], at(30), grace);
        assert!(v.failed.is_empty());
        // Past the grace, whichever of the two reasons shows now.
        let v = blocked.failed(&[pulling("ErrImagePull")], at(60), grace);
        assert_eq!(v.failed.len(), 1);
        assert_eq!(v.next, None);

        // A retry that succeeded starts the count over.
        let mut blocked = BlockedStarts::default();
        blocked.failed(&[pulling("ImagePullBackOff")], t0, grace);
        let up = pod("p", vec![], vec![waiting("runner", "ContainerCreating")]);
        assert!(blocked.failed(&[up], at(30), grace).failed.is_empty());
        let v = blocked.failed(&[pulling("ImagePullBackOff")], at(61), grace);
        assert!(v.failed.is_empty(), "blocked again since 61 s only");
        assert_eq!(v.next, Some(at(121)));

        // A name the kubelet cannot parse never heals: at once.
        let mut blocked = BlockedStarts::default();
        let v = blocked.failed(&[pulling("InvalidImageName")], t0, grace);
        assert_eq!(v.failed.len(), 1);

        // Gone pods are forgotten.
        blocked.failed(&[], at(1), grace);
        assert_eq!(blocked, BlockedStarts::default());
    }
}
