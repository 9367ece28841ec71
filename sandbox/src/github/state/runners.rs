//! Runners: registered by a JIT config, found by id or name (per tenant,
//! without case), removed unless busy.

use super::{Runner, RunnerView, State, StateError};

impl State {
    pub(super) fn runner_tenant(&self, runner: &Runner) -> Option<u32> {
        self.scale_sets.get(&runner.scale_set_id).map(|s| s.tenant)
    }

    pub(super) fn runner_view(runner: &Runner) -> RunnerView {
        RunnerView {
            id: runner.id,
            name: runner.name.clone(),
            scale_set_id: runner.scale_set_id,
            busy: runner.job.is_some(),
        }
    }

    /// Registers an idle runner (what a JIT config does).
    pub fn register_runner(
        &mut self,
        tenant: u32,
        scale_set_id: i64,
        name: &str,
    ) -> Result<RunnerView, StateError> {
        self.scale_set_in(Some(tenant), scale_set_id)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(StateError::Invalid("a runner needs a name".into()));
        }
        if let Some(taken) = self
            .runners
            .values()
            .find(|r| self.runner_tenant(r) == Some(tenant) && r.name.eq_ignore_ascii_case(name))
        {
            return Err(StateError::RunnerExists {
                id: taken.id,
                name: taken.name.clone(),
                scale_set_id: taken.scale_set_id,
            });
        }
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let runner = Runner {
            id,
            name: name.to_string(),
            scale_set_id,
            job: None,
        };
        let view = Self::runner_view(&runner);
        self.runners.insert(id, runner);
        self.changed();
        Ok(view)
    }

    pub fn runner(&self, tenant: u32, id: i64) -> Result<RunnerView, StateError> {
        self.runners
            .get(&id)
            .filter(|r| self.runner_tenant(r) == Some(tenant))
            .map(Self::runner_view)
            .ok_or(StateError::RunnerNotFound(id))
    }

    pub fn runners_named(&self, tenant: u32, name: &str) -> Vec<RunnerView> {
        self.runners
            .values()
            .filter(|r| self.runner_tenant(r) == Some(tenant) && r.name.eq_ignore_ascii_case(name))
            .map(Self::runner_view)
            .collect()
    }

    pub fn remove_runner(&mut self, tenant: u32, id: i64) -> Result<(), StateError> {
        let runner = self
            .runners
            .get(&id)
            .filter(|r| self.runner_tenant(r) == Some(tenant));
        match runner {
            None => Err(StateError::RunnerNotFound(id)),
            Some(r) if r.job.is_some() => Err(StateError::RunnerBusy {
                id,
                name: r.name.clone(),
                runner_request_id: r.job.unwrap_or_default(),
            }),
            Some(_) => {
                self.runners.remove(&id);
                self.changed();
                Ok(())
            }
        }
    }
}
