//! Jobs: queued by the handle, acquired through a session, started and
//! completed by runners, re-queued when nobody starts them. Every change
//! becomes a job event on the scale set's message queue.

use std::time::Instant;

use super::{CANCELED, Job, JobState, MAX_REQUEUES, NewJob, Phase, State, StateError};
use crate::github::messages::{EventKind, JobEvent, JobFacts};

/// When a job was queued, taken by a runner (JobStarted) and finished, on
/// this machine's monotonic clock: what benchmarks time a job by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTimes {
    pub queued: Instant,
    pub started: Option<Instant>,
    pub finished: Option<Instant>,
}

impl State {
    pub(super) fn emit(&mut self, runner_request_id: i64, kind: EventKind) {
        let Some(job) = self.jobs.get(&runner_request_id) else {
            return;
        };
        let facts = JobFacts {
            runner_request_id,
            scale_set_id: job.scale_set_id,
            repository_name: job.repository_name.clone(),
            owner_name: job.owner_name.clone(),
            job_id: job.job_id.clone(),
            workflow_ref: job.workflow_ref.clone(),
            display_name: job.display_name.clone(),
            workflow_run_id: job.workflow_run_id,
            event_name: "push".to_string(),
            request_labels: job.request_labels.clone(),
            queue_time: self.wall(job.queue_time),
            scale_set_assign_time: job.scale_set_assign_time.map(|t| self.wall(t)),
            runner_assign_time: job.runner_assign_time.map(|t| self.wall(t)),
            finish_time: job.finish_time.map(|t| self.wall(t)),
        };
        if let Some(set) = self.scale_sets.get_mut(&facts.scale_set_id) {
            set.queue.push(JobEvent { kind, job: facts });
        }
        self.changed();
    }

    /// When the job was queued, started and finished (None: no such job).
    pub fn job_times(&self, runner_request_id: i64) -> Option<JobTimes> {
        self.jobs.get(&runner_request_id).map(|j| JobTimes {
            queued: j.queue_time,
            started: j.runner_assign_time,
            finished: j.finish_time,
        })
    }

    /// Queues a job for a scale set (JobAvailable). Returns its runner
    /// request id and job id.
    pub fn queue_job(
        &mut self,
        scale_set_id: i64,
        job: NewJob,
        now: Instant,
    ) -> Result<(i64, String), StateError> {
        let set = self.scale_set_in(None, scale_set_id)?;
        let (owner_name, repository_name) = match job.repository.split_once('/') {
            Some((owner, repo)) => (owner.to_string(), repo.to_string()),
            None => (
                self.scope(set.tenant)
                    .map(|s| s.owner().to_string())
                    .unwrap_or_default(),
                job.repository,
            ),
        };
        let request_labels = if job.labels.is_empty() {
            vec![set.name.clone()]
        } else {
            job.labels
        };
        let runner_request_id = self.next_request_id;
        self.next_request_id += 1;
        let workflow_run_id = self.next_run_id;
        self.next_run_id += 1;
        let job_id = self.uuid();
        self.jobs.insert(
            runner_request_id,
            Job {
                runner_request_id,
                job_id: job_id.clone(),
                scale_set_id,
                repository_name,
                owner_name,
                workflow_ref: job.workflow_ref,
                display_name: job.display_name,
                workflow_run_id,
                request_labels,
                queue_time: now,
                scale_set_assign_time: None,
                runner_assign_time: None,
                finish_time: None,
                phase: Phase::Available,
                requeues: 0,
                steps: job.steps,
                report: None,
            },
        );
        self.emit(runner_request_id, EventKind::Available);
        Ok((runner_request_id, job_id))
    }

    /// A runner of the job's scale set picks up an assigned job (JobStarted).
    pub fn start_job(
        &mut self,
        runner_request_id: i64,
        runner_name: &str,
        now: Instant,
    ) -> Result<(), StateError> {
        let job = self
            .jobs
            .get(&runner_request_id)
            .ok_or(StateError::JobNotFound(runner_request_id))?;
        if !matches!(job.phase, Phase::Assigned { .. }) {
            return Err(StateError::JobWrongState {
                id: runner_request_id,
                state: job.phase.state(),
                expected: "assigned",
            });
        }
        let scale_set_id = job.scale_set_id;
        let runner = self
            .runners
            .values_mut()
            .find(|r| r.scale_set_id == scale_set_id && r.name.eq_ignore_ascii_case(runner_name))
            .ok_or_else(|| StateError::RunnerNameNotFound {
                name: runner_name.to_string(),
                scale_set_id,
            })?;
        if let Some(busy_with) = runner.job {
            return Err(StateError::RunnerBusy {
                id: runner.id,
                name: runner.name.clone(),
                runner_request_id: busy_with,
            });
        }
        runner.job = Some(runner_request_id);
        let (runner_id, runner_name) = (runner.id, runner.name.clone());
        if let Some(job) = self.jobs.get_mut(&runner_request_id) {
            job.phase = Phase::Running {
                runner_id,
                runner_name: runner_name.clone(),
            };
            job.runner_assign_time = Some(now);
        }
        self.emit(
            runner_request_id,
            EventKind::Started {
                runner_id,
                runner_name,
            },
        );
        Ok(())
    }

    /// The job ends with `result` (JobCompleted). A running job's runner is
    /// ephemeral: the service removes it. A job no runner started completes
    /// without one (runner id 0), as a canceled workflow does.
    pub fn complete_job(
        &mut self,
        runner_request_id: i64,
        result: &str,
        now: Instant,
    ) -> Result<(), StateError> {
        let job = self
            .jobs
            .get_mut(&runner_request_id)
            .ok_or(StateError::JobNotFound(runner_request_id))?;
        let runner = match &job.phase {
            Phase::Completed { .. } => {
                return Err(StateError::JobWrongState {
                    id: runner_request_id,
                    state: JobState::Completed,
                    expected: "not completed",
                });
            }
            Phase::Running {
                runner_id,
                runner_name,
            } => Some((*runner_id, runner_name.clone())),
            Phase::Available | Phase::Assigned { .. } => None,
        };
        job.phase = Phase::Completed {
            result: result.to_string(),
            runner: runner.clone(),
        };
        job.finish_time = Some(now);
        if let Some((runner_id, _)) = &runner {
            self.runners.remove(runner_id);
        }
        let (runner_id, runner_name) = runner.unwrap_or((0, String::new()));
        self.emit(
            runner_request_id,
            EventKind::Completed {
                result: result.to_string(),
                runner_id,
                runner_name,
            },
        );
        Ok(())
    }

    /// Re-queues every assigned job whose time ran out by `now`, catching up
    /// on every requeue that fell due since the last call.
    pub(super) fn requeue_due(&mut self, now: Instant) {
        let after = self.settings.requeue_after;
        let due: Vec<i64> = self
            .jobs
            .values()
            .filter(|j| j.requeue_at(after).is_some_and(|d| d <= now))
            .map(|j| j.runner_request_id)
            .collect();
        for id in due {
            while let Some(at) = self
                .jobs
                .get(&id)
                .and_then(|j| j.requeue_at(after))
                .filter(|d| *d <= now)
            {
                self.requeue(id, at);
            }
        }
    }

    fn requeue(&mut self, id: i64, at: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.finish_time = Some(at);
        let again = job.requeues < MAX_REQUEUES;
        if again {
            job.requeues += 1;
            job.phase = Phase::Assigned { since: at };
        } else {
            job.phase = Phase::Completed {
                result: CANCELED.to_string(),
                runner: None,
            };
        }
        self.emit(
            id,
            EventKind::Completed {
                result: CANCELED.to_string(),
                runner_id: 0,
                runner_name: String::new(),
            },
        );
        if again && let Some(job) = self.jobs.get_mut(&id) {
            job.finish_time = None;
            job.scale_set_assign_time = Some(at);
            self.emit(id, EventKind::Assigned);
        }
    }
}
