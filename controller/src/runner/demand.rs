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

/// The runner reconciler needs only the names and the count from the
/// listener's richer view (statistics and job details are for status and
/// metrics).
impl From<&crate::listener::Demand> for Demand {
    fn from(view: &crate::listener::Demand) -> Self {
        Demand {
            desired: view.desired,
            busy: view.busy.keys().cloned().collect(),
            completed: view.completed.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener;

    #[test]
    fn keeps_the_count_and_the_runner_names_of_the_listeners_view() {
        let mut view = listener::Demand {
            desired: 3,
            generation: 7,
            ..listener::Demand::default()
        };
        view.busy
            .insert("rss-abc".into(), listener::JobInfo::default());
        view.busy
            .insert("rss-def".into(), listener::JobInfo::default());
        view.completed.insert("rss-old".into());

        let demand = Demand::from(&view);
        assert_eq!(demand.desired, 3);
        assert_eq!(
            demand.busy,
            BTreeSet::from(["rss-abc".to_string(), "rss-def".to_string()])
        );
        assert_eq!(demand.completed, BTreeSet::from(["rss-old".to_string()]));
    }
}
