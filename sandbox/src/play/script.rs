//! The player's memory and decisions, without I/O: from plain facts about
//! the pods and the scale set's Assigned jobs, [`Script::plan`] says what to
//! do now, and [`Script::record`] takes in how it went. A runner starts at
//! most one job in its life, and a job is started at most once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;

use super::{PlayOptions, is_live, phase};

/// What the player knows about one pod when it plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    pub first_seen: Instant,
    /// The pod's phase is Running.
    pub running: bool,
    /// Neither finished nor being deleted.
    pub live: bool,
}

impl PodFacts {
    /// The facts of the pods of a [`PodWatch`].
    pub fn from_pods(
        pods: &BTreeMap<String, Pod>,
        first_seen: &BTreeMap<String, Instant>,
    ) -> Vec<PodFacts> {
        pods.iter()
            .map(|(name, pod)| PodFacts {
                name: name.clone(),
                first_seen: first_seen.get(name).copied().unwrap_or_else(Instant::now),
                running: phase(pod) == "Running",
                live: is_live(pod),
            })
            .collect()
    }
}

/// One thing the player does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Report the pod's runner container started.
    SetRunning { pod: String },
    /// The pod's runner starts the job.
    StartJob { pod: String, job: i64 },
    /// The job completes and the pod's runner container exits 0.
    FinishJob { pod: String, job: i64 },
    /// The pod running the job vanished: the job fails.
    AbandonJob { pod: String, job: i64 },
}

#[derive(Debug, Clone, Default)]
struct RunnerPlay {
    running_reported: bool,
    job: Option<(i64, Instant)>,
    finished: bool,
}

/// The player's memory and decisions, without I/O.
#[derive(Debug, Clone, Default)]
pub struct Script {
    runners: BTreeMap<String, RunnerPlay>,
    /// Every job ever handed to a runner.
    taken: BTreeSet<i64>,
}

impl Script {
    /// What to do now, given the pods and the scale set's Assigned jobs.
    /// Jobs go to Running runners without a job, oldest pod first; a job
    /// already handed out is never handed out again.
    pub fn plan(
        &mut self,
        pods: &[PodFacts],
        assigned_jobs: &[i64],
        now: Instant,
        options: &PlayOptions,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let present: BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        let vanished: Vec<String> = self
            .runners
            .keys()
            .filter(|name| !present.contains(name.as_str()))
            .cloned()
            .collect();
        for name in vanished {
            if let Some(runner) = self.runners.remove(&name)
                && let (Some((job, _)), false) = (runner.job, runner.finished)
            {
                actions.push(Action::AbandonJob { pod: name, job });
            }
        }

        let mut idle: Vec<&PodFacts> = Vec::new();
        for pod in pods {
            let runner = self.runners.entry(pod.name.clone()).or_default();
            if runner.finished {
                continue;
            }
            match runner.job {
                Some((job, started)) => {
                    if now.saturating_duration_since(started) >= options.job_duration {
                        actions.push(Action::FinishJob {
                            pod: pod.name.clone(),
                            job,
                        });
                    }
                }
                None if !pod.live => {}
                None if pod.running => idle.push(pod),
                None => {
                    if !runner.running_reported
                        && now.saturating_duration_since(pod.first_seen) >= options.start_delay
                    {
                        actions.push(Action::SetRunning {
                            pod: pod.name.clone(),
                        });
                    }
                }
            }
        }
        idle.sort_by_key(|p| (p.first_seen, p.name.clone()));
        let mut jobs: Vec<i64> = assigned_jobs
            .iter()
            .copied()
            .filter(|j| !self.taken.contains(j))
            .collect();
        jobs.sort_unstable();
        jobs.dedup();
        for (pod, job) in idle.into_iter().zip(jobs) {
            // Taken now, not when the start succeeds, so that one plan never
            // hands a job to two runners; a refused start frees it again.
            self.taken.insert(job);
            actions.push(Action::StartJob {
                pod: pod.name.clone(),
                job,
            });
        }
        actions
    }

    /// Takes in how an action went.
    pub fn record(&mut self, action: &Action, ok: bool, now: Instant) {
        match action {
            Action::SetRunning { pod } => {
                if let Some(runner) = self.runners.get_mut(pod) {
                    runner.running_reported = ok;
                }
            }
            Action::StartJob { pod, job } => {
                if ok {
                    if let Some(runner) = self.runners.get_mut(pod) {
                        runner.job = Some((*job, now));
                    }
                } else {
                    // The fake refused (the runner is not registered yet,
                    // the job was requeued): nobody runs it, so it may go
                    // to a runner later.
                    self.taken.remove(job);
                }
            }
            Action::FinishJob { pod, .. } => {
                if let Some(runner) = self.runners.get_mut(pod) {
                    runner.finished = ok;
                }
            }
            Action::AbandonJob { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options() -> PlayOptions {
        PlayOptions {
            start_delay: Duration::from_secs(1),
            job_duration: Duration::from_secs(5),
            ..PlayOptions::default()
        }
    }

    fn pod(name: &str, at: Instant, running: bool) -> PodFacts {
        PodFacts {
            name: name.into(),
            first_seen: at,
            running,
            live: true,
        }
    }

    fn apply(script: &mut Script, actions: &[Action], now: Instant) {
        for action in actions {
            script.record(action, true, now);
        }
    }

    #[test]
    fn a_new_pod_is_set_running_after_the_start_delay_and_only_once() {
        let t0 = Instant::now();
        let mut script = Script::default();
        let pods = [pod("a", t0, false)];
        assert!(script.plan(&pods, &[], t0, &options()).is_empty());
        let later = t0 + Duration::from_secs(1);
        let actions = script.plan(&pods, &[], later, &options());
        assert_eq!(actions, vec![Action::SetRunning { pod: "a".into() }]);
        apply(&mut script, &actions, later);
        assert!(script.plan(&pods, &[], later, &options()).is_empty());
    }

    #[test]
    fn a_failed_set_running_is_retried() {
        let t0 = Instant::now();
        let mut script = Script::default();
        let pods = [pod("a", t0, false)];
        let later = t0 + Duration::from_secs(2);
        let actions = script.plan(&pods, &[], later, &options());
        script.record(&actions[0], false, later);
        assert_eq!(script.plan(&pods, &[], later, &options()), actions);
    }

    #[test]
    fn each_job_goes_to_one_running_runner_oldest_first_and_never_twice() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        let mut script = Script::default();
        let pods = [
            pod("young", t1, true),
            pod("old", t0, true),
            pod("pending", t0, false),
        ];
        let actions = script.plan(&pods, &[7, 3, 3], t1, &options());
        assert_eq!(
            actions,
            vec![
                Action::StartJob {
                    pod: "old".into(),
                    job: 3
                },
                Action::StartJob {
                    pod: "young".into(),
                    job: 7
                },
            ]
        );
        apply(&mut script, &actions, t1);
        // The fake still says Assigned (a stale snapshot): nothing new.
        assert!(script.plan(&pods, &[3, 7], t1, &options()).is_empty());
        // A new runner and a new job: the busy runners get nothing.
        let more = [pods[0].clone(), pods[1].clone(), pod("new", t1, true)];
        assert_eq!(
            script.plan(&more, &[3, 7, 9], t1, &options()),
            vec![Action::StartJob {
                pod: "new".into(),
                job: 9
            }]
        );
    }

    #[test]
    fn a_refused_start_frees_the_job_for_a_later_try() {
        let t0 = Instant::now();
        let mut script = Script::default();
        let pods = [pod("a", t0, true)];
        let actions = script.plan(&pods, &[1], t0, &options());
        script.record(&actions[0], false, t0);
        assert_eq!(script.plan(&pods, &[1], t0, &options()), actions);
    }

    /// A script in which runner `a`, Running since `t0`, has started job 1.
    fn a_started_job_1(t0: Instant) -> (Script, [PodFacts; 1]) {
        let mut script = Script::default();
        let pods = [pod("a", t0, true)];
        let start = script.plan(&pods, &[1], t0, &options());
        apply(&mut script, &start, t0);
        (script, pods)
    }

    #[test]
    fn a_job_finishes_after_its_duration_and_the_runner_gets_no_second_job() {
        let t0 = Instant::now();
        let (mut script, pods) = a_started_job_1(t0);
        assert!(
            script
                .plan(&pods, &[2], t0 + Duration::from_secs(4), &options())
                .is_empty()
        );
        let done_at = t0 + Duration::from_secs(5);
        let finish = script.plan(&pods, &[2], done_at, &options());
        assert_eq!(
            finish,
            vec![Action::FinishJob {
                pod: "a".into(),
                job: 1
            }]
        );
        apply(&mut script, &finish, done_at);
        // Still Running in the watch for a moment: no job 2 for it.
        assert!(script.plan(&pods, &[2], done_at, &options()).is_empty());
    }

    #[test]
    fn a_pod_that_vanishes_mid_job_fails_the_job_and_pods_being_deleted_get_nothing() {
        let t0 = Instant::now();
        let (mut script, _) = a_started_job_1(t0);
        assert_eq!(
            script.plan(&[], &[], t0, &options()),
            vec![Action::AbandonJob {
                pod: "a".into(),
                job: 1
            }]
        );
        let deleting = PodFacts {
            live: false,
            ..pod("b", t0, true)
        };
        assert!(script.plan(&[deleting], &[2], t0, &options()).is_empty());
    }
}
