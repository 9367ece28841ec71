//! When to try a GitHub request again, and after how long.
//!
//! Connection failures, 429 and 5xx except 501 are retried with exponential
//! backoff and jitter; a `Retry-After` the server sends wins over our own
//! backoff. GitHub's REST API also signals its secondary rate limits as 403
//! with `Retry-After` (or `x-ratelimit-remaining: 0`), so such a 403 counts as
//! rate limited too. Every other 4xx is final. A server wait longer than the
//! policy's cap is not slept through: the caller gets a rate-limit error
//! carrying the wait and decides.
//!
//! [`decide`] is pure (the jitter is an argument) so the policy is
//! table-tested; [`run`] is the loop that sleeps.

use std::future::Future;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use super::error::Error;
use super::transport::HttpResponse;

/// How often and how patiently to retry. Tests use milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Backoff before the first retry.
    pub base: Duration,
    /// No single wait is longer than this.
    pub cap: Duration,
    /// Tries in total, the first one included.
    pub attempts: u32,
}

impl Default for RetryPolicy {
    /// PROTOCOL.md section 4: 1 s to 30 s, 4 tries.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            attempts: 4,
        }
    }
}

impl RetryPolicy {
    /// The policy for 401/403 from `actions/runner-registration`, which GitHub
    /// returns transiently right after a registration token is issued:
    /// PROTOCOL.md section 2, "a few times, capped at 20 s".
    pub fn registration() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(20),
            attempts: 5,
        }
    }

    /// Exponential backoff after `failures` failed tries (1 for the first),
    /// spread by `jitter` in `[0, 1]` over 75%..125% so that many clients
    /// that failed together do not retry together, clamped to `[base, cap]`.
    pub fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let exponential = crate::backoff::exponential(self.base, self.cap, failures);
        let spread = exponential.mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0);
        spread.clamp(self.base.min(self.cap), self.cap)
    }
}

/// What happened to one try, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No response: connection refused or reset, TLS failure, timeout.
    ConnectionFailed,
    /// A response, with the wait the server asked for, if any.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    pub fn of_response(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Self {
        Outcome::Status {
            status: status.as_u16(),
            retry_after: server_wait(headers, now),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep this result: success, a final error, or no tries left.
    Stop,
    /// Wait this long, then try again.
    Retry(Duration),
}

/// The retry decision after try number `attempt` (1-based) ended in `outcome`.
pub fn decide(policy: &RetryPolicy, attempt: u32, outcome: Outcome, jitter: f64) -> Decision {
    let retry_after = match outcome {
        Outcome::ConnectionFailed => None,
        Outcome::Status {
            status,
            retry_after,
        } => {
            let retryable = status == 429
                || ((500..600).contains(&status) && status != 501)
                || (status == 403 && retry_after.is_some());
            if !retryable {
                return Decision::Stop;
            }
            retry_after
        }
    };
    if attempt >= policy.attempts {
        return Decision::Stop;
    }
    match retry_after {
        Some(wait) if wait > policy.cap => Decision::Stop,
        Some(wait) => Decision::Retry(wait),
        None => Decision::Retry(policy.backoff(attempt, jitter)),
    }
}

/// Whether a response says "rate limited": 429, or 403 with a server wait.
pub fn is_rate_limited(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN && server_wait(headers, now).is_some())
}

/// The wait the server asked for: `Retry-After`, or GitHub's primary rate
/// limit reset time once `x-ratelimit-remaining` reached 0.
pub fn server_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(wait) = header("retry-after").and_then(|v| parse_retry_after(v, now)) {
        return Some(wait);
    }
    if header("x-ratelimit-remaining").map(str::trim) == Some("0") {
        let reset: u64 = header("x-ratelimit-reset")?.trim().parse().ok()?;
        // A reset past what the clock can hold is "very far": the longest
        // wait, which callers cap (the listener) or refuse to sleep (decide).
        let Some(reset) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(reset)) else {
            return Some(Duration::MAX);
        };
        return Some(reset.duration_since(now).unwrap_or(Duration::ZERO));
    }
    None
}

/// `Retry-After` is either whole seconds or an HTTP date (RFC 9110 10.2.3).
/// A date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Runs `attempt` until [`decide`] says stop, sleeping in between. Returns the
/// last response (whatever its status) or the last connection error.
pub(crate) async fn run<F, Fut>(
    policy: &RetryPolicy,
    operation: &str,
    mut attempt: F,
) -> Result<HttpResponse, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<HttpResponse, Error>>,
{
    let mut tries = 1;
    loop {
        let result = attempt().await;
        let outcome = match &result {
            Ok(response) => {
                Outcome::of_response(response.status, &response.headers, SystemTime::now())
            }
            Err(error) if error.is_connection_failure() => Outcome::ConnectionFailed,
            Err(_) => return result,
        };
        match decide(policy, tries, outcome, rand::random::<f64>()) {
            Decision::Stop => return result,
            Decision::Retry(wait) => {
                let status = match outcome {
                    Outcome::Status { status, .. } => status.to_string(),
                    Outcome::ConnectionFailed => "connection failed".to_owned(),
                };
                tracing::warn!(
                    operation,
                    attempt = tries,
                    %status,
                    wait_ms = wait.as_millis() as u64,
                    "GitHub request failed, retrying"
                );
                tokio::time::sleep(wait).await;
                tries += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: MS(10),
            cap: MS(300),
            attempts: 4,
        }
    }

    fn status(status: u16) -> Outcome {
        Outcome::Status {
            status,
            retry_after: None,
        }
    }

    fn status_after(status: u16, wait: Duration) -> Outcome {
        Outcome::Status {
            status,
            retry_after: Some(wait),
        }
    }

    #[test]
    fn decisions() {
        use Decision::*;
        // (attempt that just ended, outcome, jitter, decision)
        let cases = [
            (1, status(200), 0.5, Stop),
            (1, status(201), 0.5, Stop),
            (1, status(202), 0.5, Stop),
            (1, status(400), 0.5, Stop),
            (1, status(401), 0.5, Stop),
            (1, status(403), 0.5, Stop),
            (1, status(404), 0.5, Stop),
            (1, status(409), 0.5, Stop),
            (1, status(422), 0.5, Stop),
            (1, status(501), 0.5, Stop),
            (1, status(500), 0.5, Retry(MS(10))),
            (1, status(502), 0.5, Retry(MS(10))),
            (1, status(503), 0.5, Retry(MS(10))),
            (1, status(504), 0.5, Retry(MS(10))),
            (1, status(599), 0.5, Retry(MS(10))),
            (1, status(429), 0.5, Retry(MS(10))),
            (1, Outcome::ConnectionFailed, 0.5, Retry(MS(10))),
            // Exponential: 10, 20, 40 ms at the middle of the jitter range.
            (2, status(503), 0.5, Retry(MS(20))),
            (3, Outcome::ConnectionFailed, 0.5, Retry(MS(40))),
            // Jitter spreads 75%..125%, never below base.
            (3, status(503), 0.0, Retry(MS(30))),
            (3, status(503), 1.0, Retry(MS(50))),
            (1, status(503), 0.0, Retry(MS(10))),
            // Four tries in total.
            (4, status(503), 0.5, Stop),
            (4, Outcome::ConnectionFailed, 0.5, Stop),
            // Retry-After wins over backoff, for 429, 5xx and GitHub's 403.
            (1, status_after(429, MS(250)), 0.5, Retry(MS(250))),
            (2, status_after(503, MS(0)), 0.5, Retry(MS(0))),
            (1, status_after(403, MS(100)), 0.5, Retry(MS(100))),
            // A wait beyond the cap is the caller's decision, not a sleep.
            (1, status_after(429, MS(301)), 0.5, Stop),
            // Retry-After does not make a final status retryable.
            (1, status_after(404, MS(5)), 0.5, Stop),
            (1, status_after(501, MS(5)), 0.5, Stop),
        ];
        for (attempt, outcome, jitter, expected) in cases {
            assert_eq!(
                decide(&policy(), attempt, outcome, jitter),
                expected,
                "attempt {attempt}, {outcome:?}, jitter {jitter}"
            );
        }
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(policy.backoff(5, 0.5), Duration::from_secs(16));
        assert_eq!(policy.backoff(6, 0.5), Duration::from_secs(30));
        assert_eq!(policy.backoff(6, 1.0), Duration::from_secs(30));
        assert_eq!(
            policy.backoff(40, 0.0),
            Duration::from_secs(30).mul_f64(0.75)
        );
        assert_eq!(
            RetryPolicy::registration().backoff(9, 1.0),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn retry_after_parsing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        let cases = [
            ("0", Some(Duration::ZERO)),
            ("7", Some(Duration::from_secs(7))),
            (" 120 ", Some(Duration::from_secs(120))),
            (
                "Wed, 21 Oct 2015 07:28:30 GMT",
                Some(Duration::from_secs(30)),
            ),
            ("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO)),
            ("-1", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }

    #[test]
    fn server_wait_reads_retry_after_then_rate_limit_reset() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, v.parse().unwrap());
            }
            map
        };
        assert_eq!(server_wait(&headers(&[]), now), None);
        assert_eq!(
            server_wait(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            server_wait(
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1060")
                ]),
                now
            ),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            server_wait(
                &headers(&[
                    ("x-ratelimit-remaining", "12"),
                    ("x-ratelimit-reset", "1060")
                ]),
                now
            ),
            None
        );
        assert!(is_rate_limited(
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "3")]),
            now
        ));
        assert!(!is_rate_limited(StatusCode::FORBIDDEN, &headers(&[]), now));
        assert!(is_rate_limited(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[]),
            now
        ));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_reset_the_clock_cannot_hold_is_the_longest_wait() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        for reset in ["18446744073709551615", "9223372036854775808"] {
            let wait = server_wait(
                &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", reset)]),
                now,
            );
            assert_eq!(wait, Some(Duration::MAX), "{reset}");
        }
    }

    /// Any `Retry-After`, `x-ratelimit-remaining` and `x-ratelimit-reset`,
    /// at any time: a wait or none, never a panic, and the retry decision
    /// never sleeps past the cap.
    #[test]
    fn any_rate_limit_headers_give_a_wait_or_none() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let number = || {
            prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                (0u64..4_000_000_000).prop_map(|n| n.to_string()),
                Just(u64::MAX.to_string()),
                "[0-9]{15,25}",
            ]
        };
        let date = || {
            (
                prop::sample::select(vec!["Mon", "Wed", "Sun", "Xyz"]),
                0u32..40,
                prop::sample::select(vec!["Jan", "Oct", "Dec", "Foo"]),
                prop_oneof![0i64..10_000, any::<i64>()],
                0u32..30,
                0u32..70,
                prop::sample::select(vec!["GMT", "UTC", "+0000", "-2359", "+9999", "Z"]),
            )
                .prop_map(|(day, d, month, year, h, m, zone)| {
                    format!("{day}, {d:02} {month} {year} {h:02}:{m:02}:00 {zone}")
                })
        };
        let header = || {
            proptest::option::of(prop_oneof![
                3 => number(),
                2 => date(),
                1 => "[ -~]{0,40}",
            ])
        };
        let headers = (
            header(),
            proptest::option::of(prop_oneof![Just("0".to_owned()), "[ 0-9]{0,3}"]),
            header(),
            any::<u64>(),
            any::<u16>(),
        );
        let mut runner = TestRunner::new(Config {
            cases: 10_000,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(
            &headers,
            |(retry_after, remaining, reset, now_secs, status)| {
                let mut map = HeaderMap::new();
                for (name, value) in [
                    ("retry-after", retry_after),
                    ("x-ratelimit-remaining", remaining),
                    ("x-ratelimit-reset", reset),
                ] {
                    if let Some(value) = value.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
                        map.insert(name, value);
                    }
                }
                // Any representable "now", up to the year ~2554.
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs >> 30);
                let status = StatusCode::from_u16(100 + status % 500).unwrap();
                let wait = server_wait(&map, now);
                prop_assert_eq!(
                    is_rate_limited(status, &map, now),
                    status == StatusCode::TOO_MANY_REQUESTS
                        || (status == StatusCode::FORBIDDEN && wait.is_some())
                );
                let outcome = Outcome::of_response(status, &map, now);
                if let Decision::Retry(sleep) = decide(&RetryPolicy::default(), 1, outcome, 0.5) {
                    prop_assert!(sleep <= RetryPolicy::default().cap);
                }
                Ok(())
            },
        );
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
}
