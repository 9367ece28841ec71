//! The runner operations of the scale-set service, as a trait: what the
//! runner reconciler needs from GitHub, so that it can run against the real
//! client (and through it the sandbox's fake) or a scripted twin.
//! [`ActionsClient`] is the real implementation.

use std::future::Future;
use std::sync::Arc;

use crate::github::wire::{JitConfig, RunnerReference};
use crate::github::{ActionsClient, Error};

pub trait RunnerRegistry: Send + Sync {
    /// Registers a runner named `runner_name` and returns its one-time JIT
    /// config; [`Error::AgentExists`] if the name is taken.
    fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
        work_folder: &str,
    ) -> impl Future<Output = Result<JitConfig, Error>> + Send;

    /// `None` if no runner has this name.
    fn runner_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<RunnerReference>, Error>> + Send;

    /// [`Error::JobStillRunning`] while the runner is busy,
    /// [`Error::AgentNotFound`] once it is gone.
    fn remove_runner(&self, runner_id: i64) -> impl Future<Output = Result<(), Error>> + Send;
}

// Inherent methods win over trait methods in `self.x(...)`, so each of these
// calls the real client, not itself.
impl RunnerRegistry for ActionsClient {
    async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
        work_folder: &str,
    ) -> Result<JitConfig, Error> {
        ActionsClient::generate_jit_config(self, scale_set_id, runner_name, work_folder).await
    }

    async fn runner_by_name(&self, name: &str) -> Result<Option<RunnerReference>, Error> {
        ActionsClient::runner_by_name(self, name).await
    }

    async fn remove_runner(&self, runner_id: i64) -> Result<(), Error> {
        ActionsClient::remove_runner(self, runner_id).await
    }
}

impl<T: RunnerRegistry> RunnerRegistry for Arc<T> {
    async fn generate_jit_config(
        &self,
        scale_set_id: i64,
        runner_name: &str,
        work_folder: &str,
    ) -> Result<JitConfig, Error> {
        T::generate_jit_config(self, scale_set_id, runner_name, work_folder).await
    }

    async fn runner_by_name(&self, name: &str) -> Result<Option<RunnerReference>, Error> {
        T::runner_by_name(self, name).await
    }

    async fn remove_runner(&self, runner_id: i64) -> Result<(), Error> {
        T::remove_runner(self, runner_id).await
    }
}
