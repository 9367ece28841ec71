//! The demo's live table: one [`Observation`] a second (the fake's jobs by
//! state, the runner pods by state, `status.desiredRunners`), printed as it
//! is made and kept for [`super::check`].

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::play::{Census, PodWatch, RUNNER_CONTAINER, container_running};
use crate::stage::{JobCounts, Stage, StageError};
use crate::wait;

/// One line of the live table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub at: Duration,
    pub jobs: JobCounts,
    pub pods: Census,
    /// Runner containers running (on the real node; 0 when played).
    pub containers: usize,
    /// `status.desiredRunners`.
    pub desired: Option<i64>,
    pub note: String,
}

/// The live table's header.
pub fn table_header() -> String {
    format!(
        "{:>6} | {:>6} {:>8} {:>7} {:>5} | {:>7} {:>4} {:>4} {:>5} | {:>4} | {:>7} | note",
        "t(s)",
        "queued",
        "assigned",
        "running",
        "done",
        "pending",
        "idle",
        "busy",
        "gone",
        "ctrs",
        "desired"
    )
}

/// One line of the live table (`gone`: finished or being deleted).
pub fn table_row(o: &Observation) -> String {
    let desired = o.desired.map_or_else(|| "-".to_string(), |d| d.to_string());
    format!(
        "{:>6.1} | {:>6} {:>8} {:>7} {:>5} | {:>7} {:>4} {:>4} {:>5} | {:>4} | {:>7} | {}",
        o.at.as_secs_f64(),
        o.jobs.queued,
        o.jobs.assigned,
        o.jobs.running,
        o.jobs.done,
        o.pods.pending,
        o.pods.idle,
        o.pods.busy,
        o.pods.finished + o.pods.terminating,
        o.containers,
        desired,
        o.note
    )
    .trim_end()
    .to_string()
}

/// The live table: one observation per second, printed as it is made.
/// Runner containers in state running, as the kubelet reports them.
pub fn runner_containers_running<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> usize {
    pods.into_iter()
        .filter(|pod| container_running(pod, RUNNER_CONTAINER))
        .count()
}

pub(super) struct Table<'a> {
    stage: &'a Stage,
    watch: &'a PodWatch,
    pub(super) started: Instant,
    pub(super) rows: Vec<Observation>,
    next_note: String,
}

impl<'a> Table<'a> {
    /// An empty table; its clock starts now.
    pub(super) fn new(stage: &'a Stage, watch: &'a PodWatch) -> Self {
        Self {
            stage,
            watch,
            started: Instant::now(),
            rows: Vec::new(),
            next_note: String::new(),
        }
    }

    async fn observe(&mut self, note: String) -> Result<Observation, StageError> {
        let observation = Observation {
            at: self.started.elapsed(),
            jobs: self.stage.job_counts(),
            pods: self.watch.census(),
            containers: if self.stage.on_node() {
                runner_containers_running(self.watch.pods().values())
            } else {
                0
            },
            desired: self.stage.desired().await,
            note,
        };
        println!("{}", table_row(&observation));
        self.rows.push(observation.clone());
        if !self.stage.controller().is_running() {
            return Err(self.stage.died("the demo to finish"));
        }
        Ok(observation)
    }

    /// A note printed with the next row.
    pub(super) fn note(&mut self, note: String) {
        self.next_note = note;
    }

    /// Observes every second until `done` holds for an observation.
    pub(super) async fn until(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&Observation) -> bool,
    ) -> Result<(), StageError> {
        let deadline = Instant::now() + within;
        loop {
            let note = std::mem::take(&mut self.next_note);
            let observation = self.observe(note).await?;
            if done(&observation) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StageError::Timeout(wait::Timeout {
                    what: what.to_string(),
                    secs: within.as_secs_f64(),
                }));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub(super) async fn pause(&mut self, pause: Duration) -> Result<(), StageError> {
        let end = Instant::now() + pause;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let note = std::mem::take(&mut self.next_note);
            self.observe(note).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An observation with `live` live runner pods.
    pub(in crate::demo) fn observation(live: usize) -> Observation {
        Observation {
            at: Duration::from_millis(1500),
            jobs: JobCounts {
                queued: 2,
                assigned: 10,
                running: 3,
                done: 4,
            },
            pods: Census {
                pending: live.saturating_sub(3),
                idle: 1,
                busy: 2,
                finished: 1,
                terminating: 1,
            },
            containers: 2,
            desired: Some(10),
            note: String::new(),
        }
    }

    #[test]
    fn only_running_runner_containers_are_counted() {
        let pod = |runner: &str, state: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "status": { "containerStatuses": [
                    { "name": runner, "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                      "state": { state: {} } },
                    { "name": "dind", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                      "state": { "running": {} } }
                ]}
            }))
            .expect("a pod")
        };
        let pods = [
            pod("runner", "running"),
            pod("runner", "terminated"),
            pod("runner", "waiting"),
            pod("other", "running"),
            Pod::default(),
        ];
        assert_eq!(runner_containers_running(&pods), 1);
    }

    #[test]
    fn table_rows_line_up_with_the_header() {
        let header = table_header();
        let mut o = observation(10);
        o.note = "wave 2: 12 jobs queued".into();
        let row = table_row(&o);
        assert_eq!(
            row,
            "   1.5 |      2       10       3     4 |       7    1    2     2 |    2 |      10 | wave 2: 12 jobs queued"
        );
        let bars = |s: &str| s.match_indices('|').map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(bars(&header), bars(&row));
        o.desired = None;
        o.note.clear();
        assert!(table_row(&o).ends_with("|       - |"));
    }
}
