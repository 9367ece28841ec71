//! Runner pods: one ephemeral pod per runner, built from the scale set's
//! template, plus the Secret that carries its one-time JIT config.
//!
//! A runner is a Pod, not a custom resource: everything the controller needs
//! to know about it lives in the pod's labels and annotations (names below).

pub mod cleanup;
mod create;
pub mod demand;
mod dind;
pub mod ended;
mod executor;
pub mod outcome;
mod parts;
pub mod pod;
pub mod reconcile;
pub mod registry;
pub mod start;
pub mod state;

pub use demand::Demand;
pub(crate) use executor::check_template as check_kube_actions_template;
pub use pod::{
    PodError, RunnerPod, SidecarSupport, busy_annotations, has_irsa, is_busy, is_controlled_by,
    is_outdated, jit_secret, jit_secret_name, mark_busy, template_hash,
};
pub use reconcile::{Context, Outcome, ReconcileError, Settings, reconcile_runners};
pub use registry::RunnerRegistry;

/// Label on everything Runway creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "runway";
/// Label: the `RunnerScaleSet` object's name.
pub const SCALE_SET_LABEL: &str = "actions.runway.dev/scale-set";
/// The longest label value Kubernetes accepts (and so the longest
/// `RunnerScaleSet` name, see [`SCALE_SET_LABEL`]).
pub const MAX_LABEL_VALUE_LEN: usize = 63;
/// Label: the runner's name on GitHub (also the pod's name).
pub const RUNNER_NAME_LABEL: &str = "actions.runway.dev/runner-name";
/// Annotation: the runner's id on GitHub, once known.
pub const RUNNER_ID_ANNOTATION: &str = "actions.runway.dev/runner-id";
/// Annotation: hash of the scale set's pod template the pod was built from.
pub const TEMPLATE_HASH_ANNOTATION: &str = "actions.runway.dev/template-hash";
/// Annotation: the runner is running a job.
pub const BUSY_ANNOTATION: &str = "actions.runway.dev/busy";
/// Annotation Karpenter honours: do not consolidate or drain this pod's node.
pub const DO_NOT_DISRUPT_ANNOTATION: &str = "karpenter.sh/do-not-disrupt";
/// Finalizer: the runner's registration on GitHub is removed before the pod
/// goes away, so that no offline runner is left behind.
pub const REGISTRATION_FINALIZER: &str = "actions.runway.dev/runner-registration";
/// The template's container that runs the GitHub runner.
pub const RUNNER_CONTAINER: &str = "runner";
/// The runner reads its JIT config from this variable.
pub const JIT_CONFIG_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";
/// Key of the JIT config in its Secret.
pub const JIT_CONFIG_KEY: &str = "jitConfig";
