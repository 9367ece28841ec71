//! Scale sets: create, find, update, delete, and their statistics (always
//! counted from jobs and runners, never stored).

use std::time::Instant;

use super::{
    DEFAULT_RUNNER_GROUP_ID, NewScaleSet, Phase, ScaleSet, ScaleSetPatch, ScaleSetView, Scope,
    State, StateError, Statistics,
};
use crate::github::messages::MessageQueue;

impl State {
    pub(super) fn scale_set_in(
        &self,
        tenant: Option<u32>,
        id: i64,
    ) -> Result<&ScaleSet, StateError> {
        self.scale_sets
            .get(&id)
            .filter(|s| tenant.is_none_or(|t| s.tenant == t))
            .ok_or(StateError::ScaleSetNotFound(id))
    }

    pub(super) fn scale_set_in_mut(
        &mut self,
        tenant: Option<u32>,
        id: i64,
    ) -> Result<&mut ScaleSet, StateError> {
        self.scale_sets
            .get_mut(&id)
            .filter(|s| tenant.is_none_or(|t| s.tenant == t))
            .ok_or(StateError::ScaleSetNotFound(id))
    }

    pub(super) fn name_taken(&self, tenant: u32, name: &str, except: Option<i64>) -> bool {
        self.scale_sets.values().any(|s| {
            s.tenant == tenant && Some(s.id) != except && s.name.eq_ignore_ascii_case(name)
        })
    }

    pub(super) fn group_id(&self, requested: Option<i64>) -> Result<i64, StateError> {
        let id = match requested {
            None | Some(0) => DEFAULT_RUNNER_GROUP_ID,
            Some(id) => id,
        };
        if self.groups.contains_key(&id) {
            Ok(id)
        } else {
            Err(StateError::RunnerGroupNotFound(id))
        }
    }

    pub fn create_scale_set(
        &mut self,
        tenant: u32,
        new: NewScaleSet,
        now: Instant,
    ) -> Result<ScaleSetView, StateError> {
        let name = new.name.trim().to_string();
        if name.is_empty() {
            return Err(StateError::Invalid(
                "a runner scale set needs a name".into(),
            ));
        }
        if self.name_taken(tenant, &name, None) {
            return Err(StateError::ScaleSetExists(name));
        }
        let runner_group_id = self.group_id(new.runner_group_id)?;
        let labels = if new.labels.is_empty() {
            vec![name.clone()]
        } else {
            new.labels
        };
        let id = self.next_scale_set_id;
        self.next_scale_set_id += 1;
        let created_on = self.wall(now);
        self.scale_sets.insert(
            id,
            ScaleSet {
                id,
                tenant,
                name,
                runner_group_id,
                labels,
                settings: new.settings,
                created_on,
                session: None,
                queue: MessageQueue::default(),
            },
        );
        self.changed();
        self.scale_set(Some(tenant), id)
    }

    /// Scale sets of a tenant, filtered by group and name (without case).
    pub fn find_scale_sets(
        &self,
        tenant: u32,
        runner_group_id: Option<i64>,
        name: Option<&str>,
    ) -> Vec<ScaleSetView> {
        self.scale_sets
            .values()
            .filter(|s| s.tenant == tenant)
            .filter(|s| runner_group_id.is_none_or(|g| s.runner_group_id == g))
            .filter(|s| name.is_none_or(|n| s.name.eq_ignore_ascii_case(n)))
            .map(|s| self.view(s))
            .collect()
    }

    /// `tenant` None: any tenant (the handle's view).
    pub fn scale_set(&self, tenant: Option<u32>, id: i64) -> Result<ScaleSetView, StateError> {
        Ok(self.view(self.scale_set_in(tenant, id)?))
    }

    pub(super) fn view(&self, s: &ScaleSet) -> ScaleSetView {
        ScaleSetView {
            id: s.id,
            tenant: s.tenant,
            scope: self.scope(s.tenant).map(Scope::path).unwrap_or_default(),
            name: s.name.clone(),
            runner_group_id: s.runner_group_id,
            runner_group_name: self
                .groups
                .get(&s.runner_group_id)
                .cloned()
                .unwrap_or_default(),
            labels: s.labels.clone(),
            settings: s.settings,
            created_on: s.created_on,
            statistics: self.statistics(s.id),
        }
    }

    pub fn update_scale_set(
        &mut self,
        tenant: u32,
        id: i64,
        patch: ScaleSetPatch,
    ) -> Result<ScaleSetView, StateError> {
        self.scale_set_in(Some(tenant), id)?;
        let name = match patch.name.map(|n| n.trim().to_string()) {
            Some(n) if n.is_empty() => {
                return Err(StateError::Invalid(
                    "a runner scale set needs a name".into(),
                ));
            }
            Some(n) if self.name_taken(tenant, &n, Some(id)) => {
                return Err(StateError::ScaleSetExists(n));
            }
            other => other,
        };
        let group = match patch.runner_group_id {
            Some(g) => Some(self.group_id(Some(g))?),
            None => None,
        };
        let set = self.scale_set_in_mut(Some(tenant), id)?;
        if let Some(name) = name {
            set.name = name;
        }
        if let Some(group) = group {
            set.runner_group_id = group;
        }
        if let Some(labels) = patch.labels.filter(|l| !l.is_empty()) {
            set.labels = labels;
        }
        let s = patch.settings;
        set.settings.ephemeral = s.ephemeral.unwrap_or(set.settings.ephemeral);
        set.settings.is_elastic = s.is_elastic.unwrap_or(set.settings.is_elastic);
        set.settings.disable_update = s.disable_update.unwrap_or(set.settings.disable_update);
        self.changed();
        self.scale_set(Some(tenant), id)
    }

    /// Deletes a scale set with its session, runners and jobs.
    pub fn delete_scale_set(&mut self, tenant: Option<u32>, id: i64) -> Result<(), StateError> {
        self.scale_set_in(tenant, id)?;
        self.scale_sets.remove(&id);
        self.runners.retain(|_, r| r.scale_set_id != id);
        self.jobs.retain(|_, j| j.scale_set_id != id);
        self.changed();
        Ok(())
    }

    pub fn statistics(&self, scale_set_id: i64) -> Statistics {
        let mut stats = Statistics::default();
        for job in self
            .jobs
            .values()
            .filter(|j| j.scale_set_id == scale_set_id)
        {
            match job.phase {
                Phase::Available => stats.total_available_jobs += 1,
                Phase::Assigned { .. } => {
                    stats.total_acquired_jobs += 1;
                    stats.total_assigned_jobs += 1;
                }
                Phase::Running { .. } => {
                    stats.total_assigned_jobs += 1;
                    stats.total_running_jobs += 1;
                }
                Phase::Completed { .. } => {}
            }
        }
        for runner in self
            .runners
            .values()
            .filter(|r| r.scale_set_id == scale_set_id)
        {
            stats.total_registered_runners += 1;
            if runner.job.is_some() {
                stats.total_busy_runners += 1;
            } else {
                stats.total_idle_runners += 1;
            }
        }
        stats
    }
}
