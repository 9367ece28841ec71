//! The demo's invariants, decided from what the run saw ([`RunRecord`])
//! without any I/O: no more live runner pods than `maxRunners`, no job
//! started twice, no runner with two jobs, no JIT Secret or registration
//! without its pod, back to `minRunners` in time, the controller alive.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::table::Observation;
use crate::play::JobStart;
use crate::stage::Leftovers;

/// Everything [`check`] looks at.
#[derive(Debug, Clone, Default)]
pub struct RunRecord {
    pub min_runners: usize,
    pub max_runners: usize,
    pub observations: Vec<Observation>,
    /// The most live runner pods the pod watch saw at once.
    pub peak_live_pods: usize,
    pub starts: Vec<JobStart>,
    pub leftovers: Leftovers,
    /// When the pods and the status came back to `minRunners` (None: not in time).
    pub back_to_min_after: Option<Duration>,
    /// How the controller ended if it did (None: still running).
    pub controller_exit: Option<String>,
}

/// An invariant that broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    TooManyPods {
        live: usize,
        max: usize,
    },
    JobStartedTwice {
        job: i64,
        runners: Vec<String>,
    },
    RunnerRanTwoJobs {
        runner: String,
        jobs: Vec<i64>,
    },
    OrphanJitSecret {
        secret: String,
        owner: Option<String>,
    },
    OrphanRegistration {
        runner: String,
    },
    NotBackToMin {
        min: usize,
    },
    ControllerDied {
        how: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::TooManyPods { live, max } => {
                write!(
                    f,
                    "{live} live runner pods at once, more than maxRunners {max}"
                )
            }
            Violation::JobStartedTwice { job, runners } => {
                write!(
                    f,
                    "job {job} started more than once, on {}",
                    runners.join(", ")
                )
            }
            Violation::RunnerRanTwoJobs { runner, jobs } => {
                write!(f, "runner {runner} ran more than one job: {jobs:?}")
            }
            Violation::OrphanJitSecret { secret, owner } => match owner {
                Some(pod) => write!(f, "JIT Secret {secret} outlived its pod {pod}"),
                None => write!(f, "JIT Secret {secret} has no pod owner"),
            },
            Violation::OrphanRegistration { runner } => {
                write!(
                    f,
                    "runner {runner} is still registered on GitHub without a pod"
                )
            }
            Violation::NotBackToMin { min } => {
                write!(
                    f,
                    "the scale set did not come back to minRunners ({min}) in time"
                )
            }
            Violation::ControllerDied { how } => write!(f, "the controller died: {how}"),
        }
    }
}

/// Every invariant the run broke (empty: all held).
pub fn check(run: &RunRecord) -> Vec<Violation> {
    let mut violations = Vec::new();
    let peak = run
        .observations
        .iter()
        .map(|o| o.pods.live())
        .chain([run.peak_live_pods])
        .max()
        .unwrap_or(0);
    if peak > run.max_runners {
        violations.push(Violation::TooManyPods {
            live: peak,
            max: run.max_runners,
        });
    }
    let mut by_job: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut by_runner: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for start in &run.starts {
        by_job
            .entry(start.runner_request_id)
            .or_default()
            .push(start.runner_name.clone());
        by_runner
            .entry(&start.runner_name)
            .or_default()
            .push(start.runner_request_id);
    }
    for (job, runners) in by_job {
        if runners.len() > 1 {
            violations.push(Violation::JobStartedTwice { job, runners });
        }
    }
    for (runner, jobs) in by_runner {
        if jobs.len() > 1 {
            violations.push(Violation::RunnerRanTwoJobs {
                runner: runner.to_string(),
                jobs,
            });
        }
    }
    violations.extend(orphans(&run.leftovers));
    if run.back_to_min_after.is_none() {
        violations.push(Violation::NotBackToMin {
            min: run.min_runners,
        });
    }
    if let Some(how) = &run.controller_exit {
        violations.push(Violation::ControllerDied { how: how.clone() });
    }
    violations
}

/// JIT Secrets and registrations whose pod does not exist.
pub fn orphans(left: &Leftovers) -> Vec<Violation> {
    let secrets = left.jit_secrets.iter().filter_map(|(secret, owner)| {
        let owned = owner.as_ref().is_some_and(|pod| left.pods.contains(pod));
        (!owned).then(|| Violation::OrphanJitSecret {
            secret: secret.clone(),
            owner: owner.clone(),
        })
    });
    let registrations = left
        .registrations
        .iter()
        .filter(|r| !left.pods.iter().any(|p| p.eq_ignore_ascii_case(r)))
        .map(|r| Violation::OrphanRegistration { runner: r.clone() });
    secrets.chain(registrations).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::table::tests::observation;

    fn clean_run() -> RunRecord {
        RunRecord {
            min_runners: 1,
            max_runners: 10,
            observations: vec![observation(10)],
            peak_live_pods: 10,
            starts: vec![
                JobStart {
                    runner_request_id: 1,
                    runner_name: "a".into(),
                },
                JobStart {
                    runner_request_id: 2,
                    runner_name: "b".into(),
                },
            ],
            leftovers: Leftovers {
                pods: ["idle-1".to_string()].into(),
                jit_secrets: [("idle-1-jit".to_string(), Some("idle-1".to_string()))].into(),
                registrations: ["IDLE-1".to_string()].into(),
            },
            back_to_min_after: Some(Duration::from_secs(3)),
            controller_exit: None,
        }
    }

    #[test]
    fn a_clean_run_breaks_nothing() {
        assert_eq!(check(&clean_run()), vec![]);
    }

    #[test]
    fn more_live_pods_than_max_at_any_time_breaks_the_cap() {
        let mut run = clean_run();
        run.peak_live_pods = 11;
        assert_eq!(
            check(&run),
            vec![Violation::TooManyPods { live: 11, max: 10 }]
        );
        let mut run = clean_run();
        run.observations.push(observation(12));
        assert_eq!(
            check(&run),
            vec![Violation::TooManyPods { live: 12, max: 10 }]
        );
    }

    #[test]
    fn a_job_started_twice_or_a_runner_with_two_jobs_is_caught() {
        let mut run = clean_run();
        run.starts.push(JobStart {
            runner_request_id: 1,
            runner_name: "c".into(),
        });
        run.starts.push(JobStart {
            runner_request_id: 3,
            runner_name: "b".into(),
        });
        assert_eq!(
            check(&run),
            vec![
                Violation::JobStartedTwice {
                    job: 1,
                    runners: vec!["a".into(), "c".into()]
                },
                Violation::RunnerRanTwoJobs {
                    runner: "b".into(),
                    jobs: vec![2, 3]
                },
            ]
        );
    }

    #[test]
    fn leftovers_without_their_pod_are_orphans() {
        let mut run = clean_run();
        run.leftovers
            .jit_secrets
            .insert("gone-jit".into(), Some("gone".into()));
        run.leftovers.jit_secrets.insert("loose".into(), None);
        run.leftovers.registrations.insert("gone".into());
        assert_eq!(
            check(&run),
            vec![
                Violation::OrphanJitSecret {
                    secret: "gone-jit".into(),
                    owner: Some("gone".into())
                },
                Violation::OrphanJitSecret {
                    secret: "loose".into(),
                    owner: None
                },
                Violation::OrphanRegistration {
                    runner: "gone".into()
                },
            ]
        );
    }

    #[test]
    fn not_settling_and_a_dead_controller_are_failures() {
        let mut run = clean_run();
        run.back_to_min_after = None;
        run.controller_exit = Some("exit status: 1".into());
        let violations = check(&run);
        assert_eq!(
            violations,
            vec![
                Violation::NotBackToMin { min: 1 },
                Violation::ControllerDied {
                    how: "exit status: 1".into()
                }
            ]
        );
        assert_eq!(
            violations[0].to_string(),
            "the scale set did not come back to minRunners (1) in time"
        );
    }
}
