//! The runner's side of a JIT config, for the stand-in runner
//! (`runway-runner-standin`): it comes online with the config the
//! controller put in its pod, takes one job the scale set acquired, and
//! reports how the job's steps went. Taking a job is [`State::start_job`]
//! (JobStarted) and the report is [`State::complete_job`] (JobCompleted):
//! the same path the player uses, so the scale set's queue cannot tell a
//! stand-in from the player.
//!
//! A JIT config is good for one job: once its runner took a job, or the
//! runner is gone (deleted, or its scale set was), the config is spent and
//! refused. The record of every issued config stays, so that the refusal
//! can say which.

use std::time::Instant;

use serde::Serialize;

use super::{Phase, State, StateError};

/// At most this many lines of output are kept per report.
pub const MAX_REPORT_LINES: usize = 50;
/// A kept line is cut after this many characters.
pub const MAX_REPORT_LINE_CHARS: usize = 1000;
/// A failed command in a report is cut after this many characters.
pub const MAX_REPORT_COMMAND_CHARS: usize = 4000;

/// The credential of an issued JIT config and what became of it.
#[derive(Debug)]
pub(super) struct JitRecord {
    credential: String,
    online: bool,
    took_job: Option<i64>,
}

/// What a runner reported about a job it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    /// The runner that ran the job (the fake fills it in, not the runner).
    pub runner_name: String,
    /// `succeeded`, `failed` or `canceled`.
    pub result: String,
    /// 1-based index of the step that failed (or was running when canceled).
    pub failed_step: Option<u32>,
    pub failed_command: Option<String>,
    /// The failed step's exit code (128 + n for a step killed by signal n).
    pub exit_code: Option<i32>,
    /// The last lines of the job's output, at most [`MAX_REPORT_LINES`].
    pub output_tail: Vec<String>,
}

impl JobReport {
    /// The report cut to the fake's bounds: the last lines only, each line
    /// and the command cut at a character boundary.
    pub fn bounded(mut self) -> JobReport {
        let skip = self.output_tail.len().saturating_sub(MAX_REPORT_LINES);
        self.output_tail = self
            .output_tail
            .into_iter()
            .skip(skip)
            .map(|line| cut(line, MAX_REPORT_LINE_CHARS))
            .collect();
        self.failed_command = self
            .failed_command
            .map(|c| cut(c, MAX_REPORT_COMMAND_CHARS));
        self
    }
}

fn cut(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => text.get(..at).unwrap_or_default().to_string(),
        None => text,
    }
}

/// A job handed to a runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TakenJob {
    pub runner_request_id: i64,
    pub job_id: String,
    pub display_name: String,
    pub steps: Vec<String>,
}

/// Why the fake refuses a runner.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RunnerError {
    #[error("no JIT config was issued for runner {0} with this credential")]
    UnknownJitConfig(i64),
    #[error(
        "the JIT config of runner {runner_id} is spent: its runner already took job {runner_request_id}"
    )]
    SpentByJob {
        runner_id: i64,
        runner_request_id: i64,
    },
    #[error("the JIT config of runner {0} is spent: the runner was deleted")]
    SpentByDeletion(i64),
    #[error("runner {0} must come online before it asks for a job")]
    NotOnline(i64),
    #[error("runner {runner_id} did not take job {runner_request_id}")]
    NotItsJob {
        runner_id: i64,
        runner_request_id: i64,
    },
    #[error("invalid report: {0}")]
    InvalidReport(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The results a runner may report.
pub const REPORTABLE_RESULTS: [&str; 3] = ["succeeded", "failed", "canceled"];

impl State {
    /// Remembers the credential of a JIT config issued for `runner_id`.
    pub fn issue_jit_config(&mut self, runner_id: i64, credential: &str) {
        self.jit_configs.insert(
            runner_id,
            JitRecord {
                credential: credential.to_string(),
                online: false,
                took_job: None,
            },
        );
    }

    fn jit_record(&self, runner_id: i64, credential: &str) -> Result<&JitRecord, RunnerError> {
        self.jit_configs
            .get(&runner_id)
            .filter(|r| !credential.is_empty() && r.credential == credential)
            .ok_or(RunnerError::UnknownJitConfig(runner_id))
    }

    /// The runner comes online with its JIT config. A config is refused when
    /// unknown, and when spent: its runner took a job, or is gone. Coming
    /// online again before taking a job (a restarted container) is allowed.
    pub fn runner_online(
        &mut self,
        runner_id: i64,
        credential: &str,
    ) -> Result<super::RunnerView, RunnerError> {
        let record = self.jit_record(runner_id, credential)?;
        if let Some(runner_request_id) = record.took_job {
            return Err(RunnerError::SpentByJob {
                runner_id,
                runner_request_id,
            });
        }
        let runner = self
            .runners
            .get(&runner_id)
            .ok_or(RunnerError::SpentByDeletion(runner_id))?;
        let view = Self::runner_view(runner);
        if let Some(record) = self.jit_configs.get_mut(&runner_id) {
            record.online = true;
        }
        self.changed();
        Ok(view)
    }

    /// An online runner asks for a job: the oldest job its scale set acquired
    /// (JobAssigned) that no runner started is started by it (JobStarted,
    /// through [`State::start_job`]). None when there is no such job. Asking
    /// again after taking one gives the same job while it runs (a retried
    /// request must not lose it).
    pub fn runner_take_job(
        &mut self,
        runner_id: i64,
        credential: &str,
        now: Instant,
    ) -> Result<Option<TakenJob>, RunnerError> {
        let record = self.jit_record(runner_id, credential)?;
        let (online, took_job) = (record.online, record.took_job);
        if let Some(runner_request_id) = took_job {
            let running_here = self.jobs.get(&runner_request_id).is_some_and(
                |j| matches!(&j.phase, Phase::Running { runner_id: r, .. } if *r == runner_id),
            );
            return if running_here {
                Ok(self.taken_job(runner_request_id))
            } else {
                Err(RunnerError::SpentByJob {
                    runner_id,
                    runner_request_id,
                })
            };
        }
        let runner = self
            .runners
            .get(&runner_id)
            .ok_or(RunnerError::SpentByDeletion(runner_id))?;
        if !online {
            return Err(RunnerError::NotOnline(runner_id));
        }
        let (scale_set_id, name) = (runner.scale_set_id, runner.name.clone());
        let next = self
            .jobs
            .values()
            .filter(|j| j.scale_set_id == scale_set_id)
            .filter_map(|j| match j.phase {
                Phase::Assigned { since } => Some((since, j.runner_request_id)),
                _ => None,
            })
            .min();
        let Some((_, runner_request_id)) = next else {
            return Ok(None);
        };
        self.start_job(runner_request_id, &name, now)?;
        if let Some(record) = self.jit_configs.get_mut(&runner_id) {
            record.took_job = Some(runner_request_id);
        }
        Ok(self.taken_job(runner_request_id))
    }

    fn taken_job(&self, runner_request_id: i64) -> Option<TakenJob> {
        self.jobs.get(&runner_request_id).map(|j| TakenJob {
            runner_request_id,
            job_id: j.job_id.clone(),
            display_name: j.display_name.clone(),
            steps: j.steps.clone(),
        })
    }

    /// The runner reports how the job it took went: the job completes with
    /// the reported result (JobCompleted, through [`State::complete_job`];
    /// the ephemeral runner is removed) and the report is kept. Reporting
    /// the same job again after that succeeds and changes nothing.
    pub fn runner_report(
        &mut self,
        runner_id: i64,
        credential: &str,
        runner_request_id: i64,
        report: JobReport,
        now: Instant,
    ) -> Result<(), RunnerError> {
        let record = self.jit_record(runner_id, credential)?;
        if record.took_job != Some(runner_request_id) {
            return Err(RunnerError::NotItsJob {
                runner_id,
                runner_request_id,
            });
        }
        if !REPORTABLE_RESULTS.contains(&report.result.as_str()) {
            return Err(RunnerError::InvalidReport(format!(
                "result {:?} is not one of {REPORTABLE_RESULTS:?}",
                report.result
            )));
        }
        let job = self
            .jobs
            .get(&runner_request_id)
            .ok_or(StateError::JobNotFound(runner_request_id))?;
        if job.report.is_some() {
            return Ok(());
        }
        let runner_name = match &job.phase {
            Phase::Running { runner_name, .. } => runner_name.clone(),
            _ => String::new(),
        };
        let report = JobReport {
            runner_name,
            ..report.bounded()
        };
        self.complete_job(runner_request_id, &report.result, now)?;
        if let Some(job) = self.jobs.get_mut(&runner_request_id) {
            job.report = Some(report);
        }
        Ok(())
    }

    /// What the runner of this job reported, once it did.
    pub fn job_report(&self, runner_request_id: i64) -> Option<JobReport> {
        self.jobs
            .get(&runner_request_id)
            .and_then(|j| j.report.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::DateTime;

    use super::super::{JobState, NewJob, NewScaleSet, Scope, Settings};
    use super::*;
    use crate::github::messages::EventKind;

    const CREDENTIAL: &str = "client-id-of-the-config";

    /// Scale set `arm` with a session, runner `arm-r1` with an issued JIT
    /// config, and a job with two steps acquired by the scale set.
    fn setup() -> (State, Instant, i64, i64, i64) {
        let now = Instant::now();
        let settings = Settings {
            requeue_after: Duration::from_secs(60),
            session_idle_timeout: Duration::from_secs(3600),
        };
        let mut s = State::new(settings, now, DateTime::UNIX_EPOCH, 7);
        let tenant = s.tenant(&Scope::Organization("my-org".into()));
        let new = NewScaleSet {
            name: "arm".into(),
            ..Default::default()
        };
        let set = s.create_scale_set(tenant, new, now).expect("scale set").id;
        let session = s
            .create_session(tenant, set, "listener", now)
            .expect("session")
            .session_id;
        let runner = s.register_runner(tenant, set, "arm-r1").expect("runner").id;
        s.issue_jit_config(runner, CREDENTIAL);
        let job = NewJob {
            steps: vec!["true".into(), "exit 3".into()],
            ..Default::default()
        };
        let (job, _) = s.queue_job(set, job, now).expect("queued");
        s.acquire(set, &session, &[job], now).expect("acquired");
        (s, now, set, runner, job)
    }

    fn report(result: &str) -> JobReport {
        JobReport {
            runner_name: "whatever the runner says".into(),
            result: result.into(),
            failed_step: Some(2),
            failed_command: Some("exit 3".into()),
            exit_code: Some(3),
            output_tail: vec!["a".into()],
        }
    }

    fn events(s: &mut State, set: i64) -> Vec<&'static str> {
        let session = s.snapshot().sessions[0].session_id.clone();
        let now = Instant::now();
        let mut all = Vec::new();
        while let Some(d) = s.poll(set, &session, 0, now).expect("poll") {
            all.extend(d.events.iter().map(|e| e.kind.message_type()));
            s.acknowledge(set, &session, d.message_id, now)
                .expect("ack");
        }
        all
    }

    #[test]
    fn unknown_credentials_and_runners_are_refused() {
        let (mut s, _, _, runner, _) = setup();
        for (id, credential) in [(runner, "wrong"), (runner, ""), (runner + 1, CREDENTIAL)] {
            assert_eq!(
                s.runner_online(id, credential),
                Err(RunnerError::UnknownJitConfig(id))
            );
        }
    }

    #[test]
    fn a_runner_takes_the_acquired_job_once_and_its_report_completes_it() {
        let (mut s, now, set, runner, job) = setup();
        assert_eq!(
            s.runner_take_job(runner, CREDENTIAL, now),
            Err(RunnerError::NotOnline(runner))
        );
        s.runner_online(runner, CREDENTIAL).expect("online");
        // Restarting before a job is allowed.
        s.runner_online(runner, CREDENTIAL).expect("online again");
        let taken = s
            .runner_take_job(runner, CREDENTIAL, now)
            .expect("take")
            .expect("a job");
        assert_eq!(taken.runner_request_id, job);
        assert_eq!(taken.steps, vec!["true".to_string(), "exit 3".to_string()]);
        // A retried poll gets the same job back.
        assert_eq!(s.runner_take_job(runner, CREDENTIAL, now), Ok(Some(taken)));
        assert_eq!(
            s.runner_online(runner, CREDENTIAL),
            Err(RunnerError::SpentByJob {
                runner_id: runner,
                runner_request_id: job
            })
        );
        s.runner_report(runner, CREDENTIAL, job, report("failed"), now)
            .expect("reported");
        // A retried report changes nothing.
        s.runner_report(runner, CREDENTIAL, job, report("succeeded"), now)
            .expect("reported again");
        let kept = s.job_report(job).expect("a report");
        assert_eq!(kept.result, "failed");
        assert_eq!(kept.runner_name, "arm-r1");
        assert_eq!(kept.exit_code, Some(3));
        let view = s.snapshot().job(job).cloned().expect("job");
        assert_eq!(
            (view.state, view.result.as_deref()),
            (JobState::Completed, Some("failed"))
        );
        assert!(s.snapshot().runners.is_empty(), "the runner is removed");
        assert_eq!(
            events(&mut s, set),
            ["JobAvailable", "JobAssigned", "JobStarted", "JobCompleted"]
        );
        assert!(matches!(
            s.runner_take_job(runner, CREDENTIAL, now),
            Err(RunnerError::SpentByJob { .. })
        ));
    }

    #[test]
    fn no_job_until_the_scale_set_acquires_one() {
        let (mut s, now, set, runner, _) = setup();
        let other = s
            .register_runner(1, set, "arm-r2")
            .expect("second runner")
            .id;
        s.issue_jit_config(other, "other");
        s.runner_online(runner, CREDENTIAL).expect("online");
        s.runner_online(other, "other").expect("online");
        assert!(
            s.runner_take_job(runner, CREDENTIAL, now)
                .expect("take")
                .is_some()
        );
        // The only acquired job is taken; a queued one is not handed out.
        s.queue_job(set, NewJob::default(), now).expect("queued");
        assert_eq!(s.runner_take_job(other, "other", now), Ok(None));
    }

    #[test]
    fn a_deleted_runner_is_spent_and_reports_are_checked() {
        let (mut s, now, _, runner, job) = setup();
        assert_eq!(
            s.runner_report(runner, CREDENTIAL, job, report("failed"), now),
            Err(RunnerError::NotItsJob {
                runner_id: runner,
                runner_request_id: job
            })
        );
        s.remove_runner(1, runner).expect("removed");
        assert_eq!(
            s.runner_online(runner, CREDENTIAL),
            Err(RunnerError::SpentByDeletion(runner))
        );

        let (mut s, now, _, runner, job) = setup();
        s.runner_online(runner, CREDENTIAL).expect("online");
        s.runner_take_job(runner, CREDENTIAL, now).expect("take");
        assert!(matches!(
            s.runner_report(runner, CREDENTIAL, job, report("great"), now),
            Err(RunnerError::InvalidReport(_))
        ));
        assert_eq!(s.job_report(job), None);
    }

    #[test]
    fn reports_are_bounded() {
        let long = "é".repeat(MAX_REPORT_LINE_CHARS + 5);
        let lines: Vec<String> = (0..MAX_REPORT_LINES + 3)
            .map(|i| format!("line {i}"))
            .chain([long])
            .collect();
        let bounded = JobReport {
            output_tail: lines,
            failed_command: Some("x".repeat(MAX_REPORT_COMMAND_CHARS + 1)),
            ..report("failed")
        }
        .bounded();
        assert_eq!(bounded.output_tail.len(), MAX_REPORT_LINES);
        assert_eq!(bounded.output_tail[0], "line 4");
        let last = bounded.output_tail.last().expect("a line");
        assert_eq!(last.chars().count(), MAX_REPORT_LINE_CHARS);
        assert_eq!(
            bounded.failed_command.map(|c| c.len()),
            Some(MAX_REPORT_COMMAND_CHARS)
        );
    }

    #[test]
    fn the_started_event_names_the_runner() {
        let (mut s, now, set, runner, _) = setup();
        s.runner_online(runner, CREDENTIAL).expect("online");
        s.runner_take_job(runner, CREDENTIAL, now).expect("take");
        let session = s.snapshot().sessions[0].session_id.clone();
        let mut started = None;
        while let Some(d) = s.poll(set, &session, 0, now).expect("poll") {
            for e in &d.events {
                if let EventKind::Started { runner_name, .. } = &e.kind {
                    started = Some(runner_name.clone());
                }
            }
            s.acknowledge(set, &session, d.message_id, now)
                .expect("ack");
        }
        assert_eq!(started.as_deref(), Some("arm-r1"));
    }
}
