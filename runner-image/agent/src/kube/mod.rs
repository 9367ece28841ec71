//! `runway kube`: allowlisted Kubernetes actions (KUBE-ACTIONS.md).
//!
//! - [`catalog`]: resources and verbs; [`rbac`]: the RBAC each needs.
//! - [`allowlist`]: the scale set's `kubernetesActions` and the pure check.
//! - [`action`]: one action and its outcome; [`error`]: why one failed and
//!   its exit code.
//! - [`exec`]: runs an action against the API server.
//! - [`payload`]: the Datadog cluster agent's payload format.
//! - [`state`]: exactly-once for payload actions, in a ConfigMap.
//! - [`cli`]: `runway kube ...`; [`via_executor`]: the same sent to the
//!   executor beside the job, in runner pods that have one; [`wire`]: what
//!   the two say to each other.

pub mod action;
pub mod allowlist;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod error;
pub mod exec;
pub mod payload;
pub mod rbac;
pub mod run_payload;
pub mod state;
pub mod via_executor;
pub mod wire;
