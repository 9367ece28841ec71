//! Runway's GitHub client: the REST side (credentials, registration token,
//! Actions service connection; on octocrab) and the runner scale-set service
//! (scale sets, JIT configs, sessions, the message queue).
//!
//! Build one [`ActionsClient`] per `githubConfigUrl` + credentials:
//!
//! ```no_run
//! # async fn demo(data: std::collections::BTreeMap<String, Vec<u8>>) -> Result<(), runway_controller::github::Error> {
//! use runway_controller::github::{ActionsClient, ClientOptions, Credentials, GitHubConfig};
//! let config = GitHubConfig::parse("https://github.com/my-org")?;
//! let credentials = Credentials::from_secret_data(&data)?;
//! let client = ActionsClient::new(config, credentials, ClientOptions::default())?;
//! let group = client.resolve_runner_group_id("default").await?;
//! let scale_set = client.scale_set_by_name(group, "arm-builders").await?;
//! # Ok(()) }
//! ```
//!
//! Every request goes through one [`transport::Transport`] (rustls with ring,
//! webpki roots plus `githubServerTLS`, proxies), one shared
//! [`ratelimit::HostRateLimiter`], and the [`retry::RetryPolicy`]. Tokens are
//! [`secret::Secret`]s and never reach logs, `Debug` output or errors.

pub mod actions;
pub mod auth;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod queue;
pub mod ratelimit;
mod request;
pub mod retry;
pub mod secret;
pub mod service;
pub mod transport;
pub mod wire;

#[cfg(test)]
mod testing;

pub use actions::{ActionsClient, ClientOptions, DEFAULT_RUNNER_GROUP_ID};
pub use auth::{
    ActionsConnection, AppIdentifier, Credentials, CredentialsError, GitHubApp, GitHubAuth,
};
pub use config::{ConfigError, GitHubConfig, Scope};
pub use error::Error;
pub use queue::ScaleSetMessage;
pub use ratelimit::{HostRateLimiter, RateLimit, RateLimits};
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use service::ScaleSetService;
pub use transport::{ProxyConfig, ProxySettings, Transport, TransportError, TransportOptions};
