//! What the manager does next for one `RunnerScaleSet`: a pure function of
//! the object (and whether its spec decoded), its worker and its retry time.

use std::time::Instant;

use kube::ResourceExt;

use crate::crd::RunnerScaleSet;

/// The two jobs a worker can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`run_scale_set`](crate::scale_set::run_scale_set): the live object.
    Supervise,
    /// [`cleanup::run`](super::cleanup::run): the deleted object.
    Cleanup,
}

/// A running worker: its job and the object version it was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub kind: Kind,
    pub uid: String,
    pub generation: Option<i64>,
}

/// Whether the object's spec decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    Valid,
    /// It did not (a `template` the API server accepts but that is no pod
    /// template): no supervisor, but a deletion is cleaned up as usual (the
    /// cleanup needs no template).
    Invalid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Ask the running worker to stop; its exit brings the next step.
    Stop,
    AddFinalizer,
    Start(Kind),
    /// Say on the object why it does not run (`Ready=False`, an Event).
    ReportInvalid,
}

/// The next step for an object (`None`: gone from the API), given whether
/// its spec decoded, its running worker (and whether it was asked to stop)
/// and when a failed worker may be started again.
pub fn plan(
    object: Option<&RunnerScaleSet>,
    spec: Spec,
    running: Option<(&Worker, bool)>,
    retry_at: Option<Instant>,
    now: Instant,
    finalizer: &str,
) -> Step {
    let stop_unless_stopping = |running: Option<(&Worker, bool)>| match running {
        Some((_, false)) => Step::Stop,
        _ => Step::Nothing,
    };
    let Some(object) = object else {
        return stop_unless_stopping(running);
    };
    let held = object.finalizers().iter().any(|f| f == finalizer);
    let waiting = retry_at.is_some_and(|at| at > now);
    if object.metadata.deletion_timestamp.is_some() {
        if !held {
            return stop_unless_stopping(running);
        }
        return match running {
            Some((worker, _)) if worker.kind == Kind::Cleanup => Step::Nothing,
            Some(_) => stop_unless_stopping(running),
            None if waiting => Step::Nothing,
            None => Step::Start(Kind::Cleanup),
        };
    }
    if spec == Spec::Invalid {
        return match running {
            Some(_) => stop_unless_stopping(running),
            None => Step::ReportInvalid,
        };
    }
    match running {
        Some((worker, _))
            if worker.kind == Kind::Supervise
                && Some(worker.uid.as_str()) == object.metadata.uid.as_deref()
                && worker.generation == object.metadata.generation =>
        {
            Step::Nothing
        }
        Some(_) => stop_unless_stopping(running),
        None if !held => Step::AddFinalizer,
        None if waiting => Step::Nothing,
        None => Step::Start(Kind::Supervise),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    const F: &str = "actions.runway.dev/cleanup";

    /// Name, object, running worker, retry time, expected step.
    type Case<'a, O> = (
        &'a str,
        O,
        Option<(&'a Worker, bool)>,
        Option<Instant>,
        Step,
    );

    fn object(generation: i64, finalizer: bool, deleting: bool) -> RunnerScaleSet {
        let spec = serde_json::from_value(serde_json::json!({
            "githubConfigUrl": "https://github.com/my-org",
            "githubConfigSecret": "github",
            "template": {},
        }))
        .unwrap();
        let mut rss = RunnerScaleSet::new("arm", spec);
        rss.metadata.uid = Some("u1".into());
        rss.metadata.generation = Some(generation);
        if finalizer {
            rss.metadata.finalizers = Some(vec![F.into()]);
        }
        if deleting {
            rss.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        rss
    }

    fn worker(kind: Kind, generation: i64) -> Worker {
        Worker {
            kind,
            uid: "u1".into(),
            generation: Some(generation),
        }
    }

    #[test]
    fn a_live_object_gets_its_finalizer_then_one_supervisor() {
        let now = Instant::now();
        let sup = worker(Kind::Supervise, 1);
        let cases: Vec<Case<Option<RunnerScaleSet>>> = vec![
            (
                "new",
                Some(object(1, false, false)),
                None,
                None,
                Step::AddFinalizer,
            ),
            (
                "held",
                Some(object(1, true, false)),
                None,
                None,
                Step::Start(Kind::Supervise),
            ),
            (
                "running",
                Some(object(1, true, false)),
                Some((&sup, false)),
                None,
                Step::Nothing,
            ),
            (
                "spec changed",
                Some(object(2, true, false)),
                Some((&sup, false)),
                None,
                Step::Stop,
            ),
            (
                "stopping",
                Some(object(2, true, false)),
                Some((&sup, true)),
                None,
                Step::Nothing,
            ),
            (
                "backing off",
                Some(object(1, true, false)),
                None,
                Some(now + Duration::from_secs(5)),
                Step::Nothing,
            ),
            (
                "retry due",
                Some(object(1, true, false)),
                None,
                Some(now),
                Step::Start(Kind::Supervise),
            ),
            ("gone", None, Some((&sup, false)), None, Step::Stop),
            (
                "gone, stopping",
                None,
                Some((&sup, true)),
                None,
                Step::Nothing,
            ),
            ("gone, idle", None, None, None, Step::Nothing),
        ];
        for (name, obj, running, retry_at, want) in cases {
            assert_eq!(
                plan(obj.as_ref(), Spec::Valid, running, retry_at, now, F),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn a_deleted_object_stops_its_supervisor_then_cleans_up_once() {
        let now = Instant::now();
        let sup = worker(Kind::Supervise, 1);
        let clean = worker(Kind::Cleanup, 2);
        let deleting = Some(object(2, true, true));
        let released = Some(object(2, false, true));
        let cases: Vec<Case<&Option<RunnerScaleSet>>> = vec![
            (
                "supervised",
                &deleting,
                Some((&sup, false)),
                None,
                Step::Stop,
            ),
            (
                "supervisor stopping",
                &deleting,
                Some((&sup, true)),
                None,
                Step::Nothing,
            ),
            ("free", &deleting, None, None, Step::Start(Kind::Cleanup)),
            (
                "cleaning",
                &deleting,
                Some((&clean, false)),
                None,
                Step::Nothing,
            ),
            (
                "cleanup retry later",
                &deleting,
                None,
                Some(now + Duration::from_secs(1)),
                Step::Nothing,
            ),
            ("finalizer gone", &released, None, None, Step::Nothing),
            (
                "finalizer gone, supervised",
                &released,
                Some((&sup, false)),
                None,
                Step::Stop,
            ),
        ];
        for (name, obj, running, retry_at, want) in cases {
            assert_eq!(
                plan(obj.as_ref(), Spec::Valid, running, retry_at, now, F),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn an_invalid_spec_runs_no_supervisor_but_is_still_cleaned_up() {
        let now = Instant::now();
        let later = Some(now + Duration::from_secs(5));
        let sup = worker(Kind::Supervise, 1);
        let clean = worker(Kind::Cleanup, 2);
        let cases: Vec<Case<Option<RunnerScaleSet>>> = vec![
            // Never valid: no finalizer (nothing to clean up), only a report.
            (
                "new",
                Some(object(1, false, false)),
                None,
                None,
                Step::ReportInvalid,
            ),
            (
                "held",
                Some(object(2, true, false)),
                None,
                None,
                Step::ReportInvalid,
            ),
            // A retry time left by a failed supervisor changes nothing.
            (
                "backing off",
                Some(object(2, true, false)),
                None,
                later,
                Step::ReportInvalid,
            ),
            // Edited from a valid spec: the old supervisor stops first.
            (
                "supervised",
                Some(object(2, true, false)),
                Some((&sup, false)),
                None,
                Step::Stop,
            ),
            (
                "supervisor stopping",
                Some(object(2, true, false)),
                Some((&sup, true)),
                None,
                Step::Nothing,
            ),
            // Deleted: the finalizer is never left stuck.
            (
                "deleting, held",
                Some(object(2, true, true)),
                None,
                None,
                Step::Start(Kind::Cleanup),
            ),
            (
                "deleting, supervised",
                Some(object(2, true, true)),
                Some((&sup, false)),
                None,
                Step::Stop,
            ),
            (
                "deleting, cleaning",
                Some(object(2, true, true)),
                Some((&clean, false)),
                None,
                Step::Nothing,
            ),
            (
                "deleting, cleanup retry later",
                Some(object(2, true, true)),
                None,
                later,
                Step::Nothing,
            ),
            (
                "deleting, not held",
                Some(object(2, false, true)),
                None,
                None,
                Step::Nothing,
            ),
        ];
        for (name, obj, running, retry_at, want) in cases {
            assert_eq!(
                plan(obj.as_ref(), Spec::Invalid, running, retry_at, now, F),
                want,
                "{name}"
            );
        }
    }
}
