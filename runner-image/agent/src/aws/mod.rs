//! `runway aws`: AWS credentials for job steps (AWS.md). The pod's identity
//! (IRSA web identity, EKS Pod Identity, or ambient credentials), then role
//! chaining with AssumeRole, with session tags that are a setting, errors that
//! say which trust-policy line or setting to change, and no retry loops.
//!
//! - [`config`]: the scale set's mounted config + `RUNWAY_AWS_*` env + flags.
//! - [`session_name`], [`tags`]: what each call sends, from `GITHUB_*` env.
//! - [`allowed`]: `aws.allowedRoles`, checked before any STS call.
//! - [`chain`]: the hop loop and the pure retry/tagging decision.
//! - [`identity`], [`sts`]: the SDK side.
//! - [`output`], [`whoami`], [`cli`]: what the user gets; [`error`]: exit
//!   codes and the messages that name what to change.

pub mod allowed;
pub mod chain;
pub mod cli;
pub mod config;
pub mod error;
pub mod identity;
pub mod output;
pub mod session_name;
pub mod sts;
pub mod tags;
pub mod whoami;
