//! `runway`: the tool in every runner pod.
//!
//! - [`kube`]: allowlisted Kubernetes actions for job steps and dispatched
//!   payloads (KUBE-ACTIONS.md): the catalog and its RBAC table, the
//!   allowlist, the executor, payloads and the exactly-once state.
//! - [`serve`]: `runway serve`, the authenticated HTTP front of the executor.
//! - [`aws`]: IRSA role chaining with controlled session tags (AWS.md).
#![forbid(unsafe_code)]

pub mod aws;
pub mod cli;
pub mod kube;
mod logging;
pub mod serve;
