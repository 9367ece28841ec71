//! ARC's per-scale-set metrics (`gha_*`), fed from the listener's demand:
//! the job statistics as gauges, and each runner's job start and completion
//! counted once however often the listener reports it.

use std::collections::BTreeSet;

use crate::listener;
use crate::metrics::{ScaleSetMetrics, ScaleSetStatistics};

/// ARC's per-scale-set series, fed from the listener's demand.
pub(super) struct Gauges {
    series: ScaleSetMetrics,
    /// Runners whose JobStarted / JobCompleted were counted already.
    started: BTreeSet<String>,
    completed: BTreeSet<String>,
}

impl Gauges {
    pub(super) fn new(series: ScaleSetMetrics) -> Self {
        Self {
            series,
            started: BTreeSet::new(),
            completed: BTreeSet::new(),
        }
    }

    pub(super) fn update(&mut self, demand: &listener::Demand) {
        let stats = &demand.statistics;
        self.series.set_statistics(&ScaleSetStatistics {
            assigned_jobs: stats.assigned_jobs.into(),
            running_jobs: stats.running_jobs.into(),
            registered_runners: stats.registered_runners.into(),
            busy_runners: stats.busy_runners.into(),
            idle_runners: stats.idle_runners.into(),
        });
        self.series.set_desired_runners(u64::from(demand.desired));
        let now = chrono::Utc::now();
        for (runner, job) in &demand.busy {
            if self.started.insert(runner.clone()) {
                self.series.job_started();
                if let Some(waited) = job.started.and_then(|at| (now - at).to_std().ok()) {
                    self.series.observe_startup(waited);
                }
            }
        }
        for runner in &demand.completed {
            if self.completed.insert(runner.clone()) {
                self.series.job_completed();
            }
        }
        // Forget what the listener forgot, so the sets stay bounded.
        self.started
            .retain(|r| demand.busy.contains_key(r) || demand.completed.contains(r));
        self.completed.retain(|r| demand.completed.contains(r));
    }
}
