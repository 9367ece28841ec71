//! What the listener tells the runner reconciler, through a
//! `tokio::sync::watch` channel: the latest value replaces the previous one,
//! so every field is the listener's whole current view, not a delta.

use std::collections::BTreeSet;

/// The listener's current view of one scale set's jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// `min(maxRunners, minRunners + totalAssignedJobs)`.
    pub desired: u32,
    /// Runners (by name) whose job started (JobStarted) and has not completed.
    pub busy: BTreeSet<String>,
    /// Runners (by name) whose job completed (JobCompleted): their pods are
    /// removed even if the runner process has not exited yet.
    pub completed: BTreeSet<String>,
}

impl Demand {
    /// Just a count, no job seen yet (a session's first statistics).
    pub fn desired(desired: u32) -> Self {
        Demand {
            desired,
            ..Demand::default()
        }
    }
}
