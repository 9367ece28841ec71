//! Every decision of the stand-in, as pure functions: what to do with each
//! reply of the fake, how steps' ends make the job's result, how long to
//! back off, which exit code to end with.

use std::time::Duration;

use serde::Deserialize;

/// The fake's error body, read leniently.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

fn error_body(body: &[u8]) -> ErrorBody {
    serde_json::from_slice(body).unwrap_or_default()
}

/// The error message of a reply: the body's `error`, else the body as text.
fn message(status: u16, body: &[u8]) -> String {
    let text = error_body(body)
        .error
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let text: String = text.chars().take(500).collect();
    format!("HTTP {status}: {text}")
}

fn is_spent(status: u16, body: &[u8]) -> bool {
    status == 410 || error_body(body).reason.as_deref() == Some("spent")
}

/// A failure worth retrying: the fake restarting, overloaded or briefly away.
fn transient(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Online {
    Online {
        runner_name: String,
    },
    /// The config is spent (its runner took a job or was deleted).
    Spent(String),
    /// The fake does not know this config.
    Unknown(String),
    Retry(String),
    Fatal(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnlineBody {
    #[serde(default)]
    runner_name: Option<String>,
}

pub fn online(status: u16, body: &[u8]) -> Online {
    match status {
        200 => match serde_json::from_slice::<OnlineBody>(body) {
            Ok(b) => Online::Online {
                runner_name: b.runner_name.unwrap_or_default(),
            },
            Err(e) => Online::Retry(format!("the online reply is not JSON: {e}")),
        },
        s if is_spent(s, body) => Online::Spent(message(s, body)),
        401 | 403 | 404 => Online::Unknown(message(status, body)),
        s if transient(s) => Online::Retry(message(s, body)),
        s => Online::Fatal(message(s, body)),
    }
}

/// A job as the fake hands it out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub runner_request_id: i64,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub steps: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Job(Job),
    /// Nothing yet: ask again.
    NoJob,
    /// The runner is gone or its config spent: an idle runner has nothing
    /// left to wait for.
    Gone(String),
    Retry(String),
    Fatal(String),
}

pub fn poll(status: u16, body: &[u8]) -> Poll {
    match status {
        200 => match serde_json::from_slice::<Job>(body) {
            Ok(job) => Poll::Job(job),
            Err(e) => Poll::Retry(format!("the job is not the JSON expected: {e}")),
        },
        202 | 204 => Poll::NoJob,
        s if is_spent(s, body) => Poll::Gone(message(s, body)),
        401 | 403 | 404 => Poll::Gone(message(status, body)),
        s if transient(s) => Poll::Retry(message(s, body)),
        s => Poll::Fatal(message(s, body)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Done,
    Retry(String),
    /// The fake will not take the report; the job is over for this runner.
    Rejected(String),
}

pub fn report(status: u16, body: &[u8]) -> Report {
    match status {
        200..=299 => Report::Done,
        s if transient(s) => Report::Retry(message(s, body)),
        s => Report::Rejected(message(s, body)),
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEnd {
    Exited(i32),
    /// Killed by this signal (an OOM kill is SIGKILL).
    Signaled(i32),
    /// `sh` could not be started.
    NotStarted(String),
    /// The runner was told to stop (SIGTERM) while the step ran.
    Canceled,
}

/// The job's result as the stand-in reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: &'static str,
    /// 1-based.
    pub failed_step: Option<u32>,
    pub failed_command: Option<String>,
    pub exit_code: Option<i32>,
}

/// The exit code a shell would show for a step's end; None for success and
/// for a canceled step.
pub fn exit_code(end: &StepEnd) -> Option<i32> {
    match end {
        StepEnd::Exited(0) | StepEnd::Canceled => None,
        StepEnd::Exited(code) => Some(*code),
        StepEnd::Signaled(signal) => Some(signal.saturating_add(128)),
        StepEnd::NotStarted(_) => Some(127),
    }
}

/// Whether the runner goes on with the next step.
pub fn goes_on(end: &StepEnd) -> bool {
    *end == StepEnd::Exited(0)
}

/// The job's outcome from the ends of the steps that ran (in order; the run
/// stops at the first that does not go on).
pub fn outcome(steps: &[String], ends: &[StepEnd]) -> Outcome {
    let failed = ends.iter().enumerate().find(|(_, end)| !goes_on(end));
    match failed {
        None if ends.len() >= steps.len() => Outcome {
            result: "succeeded",
            failed_step: None,
            failed_command: None,
            exit_code: None,
        },
        // Fewer ends than steps and none failed: the run was cut short.
        None => at(steps, ends.len(), "canceled", None),
        Some((i, StepEnd::Canceled)) => at(steps, i, "canceled", None),
        Some((i, end)) => at(steps, i, "failed", exit_code(end)),
    }
}

fn at(steps: &[String], index: usize, result: &'static str, exit_code: Option<i32>) -> Outcome {
    Outcome {
        result,
        failed_step: u32::try_from(index).ok().and_then(|i| i.checked_add(1)),
        failed_command: steps.get(index).cloned(),
        exit_code,
    }
}

/// Wait before the attempt after `failures` failed ones: 250 ms doubling up
/// to 5 s.
pub fn backoff(failures: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << failures.min(5));
    Duration::from_millis(ms.min(5_000))
}

/// How the stand-in ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It ran its one job and reported it, whatever the job's result.
    JobDone,
    /// SIGTERM or SIGINT while idle (or during the job, after reporting it
    /// canceled): like the real runner, a clean exit.
    Stopped,
    /// The fake refused it: unknown or spent config, runner gone, report
    /// not taken.
    Refused(String),
    /// Its configuration cannot work (JIT config, CA file).
    Misconfigured(String),
}

impl Exit {
    pub fn code(&self) -> u8 {
        match self {
            Exit::JobDone | Exit::Stopped => 0,
            Exit::Refused(_) => 1,
            Exit::Misconfigured(_) => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_replies() {
        let cases: Vec<(u16, &str, Online)> = vec![
            (
                200,
                r#"{"runnerId":1,"runnerName":"arm-x","scaleSetId":1,"extra":null}"#,
                Online::Online {
                    runner_name: "arm-x".into(),
                },
            ),
            (
                200,
                r#"{"runnerName":null}"#,
                Online::Online {
                    runner_name: "".into(),
                },
            ),
            (
                410,
                r#"{"error":"the JIT config of runner 1 is spent: x","reason":"spent"}"#,
                Online::Spent("HTTP 410: the JIT config of runner 1 is spent: x".into()),
            ),
            (
                409,
                r#"{"error":"gone","reason":"spent"}"#,
                Online::Spent("HTTP 409: gone".into()),
            ),
            (
                401,
                r#"{"error":"no JIT config","reason":"unknown"}"#,
                Online::Unknown("HTTP 401: no JIT config".into()),
            ),
            (
                404,
                "Not Found",
                Online::Unknown("HTTP 404: Not Found".into()),
            ),
            (503, "", Online::Retry("HTTP 503: ".into())),
            (
                429,
                "slow down",
                Online::Retry("HTTP 429: slow down".into()),
            ),
            (400, "{}", Online::Fatal("HTTP 400: {}".into())),
        ];
        for (status, body, want) in cases {
            assert_eq!(online(status, body.as_bytes()), want, "{status} {body}");
        }
        assert!(matches!(online(200, b"<html>"), Online::Retry(_)));
    }

    #[test]
    fn poll_replies() {
        let job = Job {
            runner_request_id: 5001,
            job_id: Some("j".into()),
            display_name: None,
            steps: vec!["echo hi".into()],
        };
        let cases: Vec<(u16, &str, Poll)> = vec![
            (
                200,
                r#"{"runnerRequestId":5001,"jobId":"j","displayName":null,"steps":["echo hi"],"new":1}"#,
                Poll::Job(job),
            ),
            (
                200,
                r#"{"runnerRequestId":7,"steps":null}"#,
                Poll::Job(Job {
                    runner_request_id: 7,
                    job_id: None,
                    display_name: None,
                    steps: vec![],
                }),
            ),
            (204, "", Poll::NoJob),
            (202, "", Poll::NoJob),
            (
                410,
                r#"{"error":"deleted","reason":"spent"}"#,
                Poll::Gone("HTTP 410: deleted".into()),
            ),
            (401, "{}", Poll::Gone("HTTP 401: {}".into())),
            (
                502,
                "bad gateway",
                Poll::Retry("HTTP 502: bad gateway".into()),
            ),
            (
                409,
                r#"{"error":"not online"}"#,
                Poll::Fatal("HTTP 409: not online".into()),
            ),
        ];
        for (status, body, want) in cases {
            assert_eq!(poll(status, body.as_bytes()), want, "{status} {body}");
        }
        for body in ["", "[]", r#"{"runnerRequestId":"x"}"#, r#"{"steps":[1]}"#] {
            assert!(
                matches!(poll(200, body.as_bytes()), Poll::Retry(_)),
                "{body}"
            );
        }
    }

    #[test]
    fn report_replies() {
        assert_eq!(report(204, b""), Report::Done);
        assert_eq!(report(200, b"{}"), Report::Done);
        assert_eq!(report(500, b"x"), Report::Retry("HTTP 500: x".into()));
        assert_eq!(
            report(409, br#"{"error":"not its job"}"#),
            Report::Rejected("HTTP 409: not its job".into())
        );
    }

    #[test]
    fn step_ends_make_the_result() {
        let steps: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        use StepEnd::*;
        // (ends, result, failed step, failed command, exit code)
        type Case = (
            Vec<StepEnd>,
            &'static str,
            Option<u32>,
            Option<&'static str>,
            Option<i32>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![Exited(0), Exited(0), Exited(0)],
                "succeeded",
                None,
                None,
                None,
            ),
            (
                vec![Exited(0), Exited(3)],
                "failed",
                Some(2),
                Some("b"),
                Some(3),
            ),
            (vec![Exited(1)], "failed", Some(1), Some("a"), Some(1)),
            (
                vec![Exited(0), Signaled(9)],
                "failed",
                Some(2),
                Some("b"),
                Some(137),
            ),
            (
                vec![NotStarted("no sh".into())],
                "failed",
                Some(1),
                Some("a"),
                Some(127),
            ),
            (
                vec![Exited(0), Canceled],
                "canceled",
                Some(2),
                Some("b"),
                None,
            ),
            (vec![Exited(0)], "canceled", Some(2), Some("b"), None),
        ];
        for (ends, result, step, command, code) in cases {
            let got = outcome(&steps, &ends);
            assert_eq!(
                (
                    got.result,
                    got.failed_step,
                    got.failed_command.as_deref(),
                    got.exit_code
                ),
                (result, step, command, code),
                "{ends:?}"
            );
        }
        assert_eq!(outcome(&[], &[]).result, "succeeded");
        assert_eq!(exit_code(&Signaled(i32::MAX)), Some(i32::MAX));
    }

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        let got: Vec<u64> = [0, 1, 2, 4, 5, 6, 100, u32::MAX]
            .iter()
            .map(|f| backoff(*f).as_millis() as u64)
            .collect();
        assert_eq!(got, [250, 500, 1000, 4000, 5000, 5000, 5000, 5000]);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Exit::JobDone.code(), 0);
        assert_eq!(Exit::Stopped.code(), 0);
        assert_eq!(Exit::Refused("x".into()).code(), 1);
        assert_eq!(Exit::Misconfigured("x".into()).code(), 2);
    }
}
