//! Fault injection and request accounting, per endpoint.
//!
//! Every route of the fake is tagged with its [`Endpoint`]; the `observe`
//! middleware counts the request, stamps its arrival time, and applies the
//! next queued [`Fault`] for that endpoint, if any, before the request
//! reaches authentication or the handler (as a failing load balancer would).
//! Faults for one endpoint are used in the order they were injected; each
//! applies to `times` requests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use super::server::{App, ConnectionControl};
use super::wire;

/// Timestamps kept per endpoint: enough for any test's rate, bounded for a
/// fake that runs for days.
const MAX_TIMES_PER_ENDPOINT: usize = 100_000;

/// Every endpoint of the fake that a client can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    InstallationToken,
    RegistrationToken,
    RunnerRegistration,
    RunnerGroups,
    ScaleSetByName,
    ScaleSetById,
    CreateScaleSet,
    UpdateScaleSet,
    DeleteScaleSet,
    GenerateJitConfig,
    CreateSession,
    RefreshSession,
    DeleteSession,
    GetMessage,
    DeleteMessage,
    AcquireJobs,
    GetRunner,
    GetRunnerByName,
    RemoveRunner,
}

impl Endpoint {
    pub const ALL: [Endpoint; 19] = [
        Endpoint::InstallationToken,
        Endpoint::RegistrationToken,
        Endpoint::RunnerRegistration,
        Endpoint::RunnerGroups,
        Endpoint::ScaleSetByName,
        Endpoint::ScaleSetById,
        Endpoint::CreateScaleSet,
        Endpoint::UpdateScaleSet,
        Endpoint::DeleteScaleSet,
        Endpoint::GenerateJitConfig,
        Endpoint::CreateSession,
        Endpoint::RefreshSession,
        Endpoint::DeleteSession,
        Endpoint::GetMessage,
        Endpoint::DeleteMessage,
        Endpoint::AcquireJobs,
        Endpoint::GetRunner,
        Endpoint::GetRunnerByName,
        Endpoint::RemoveRunner,
    ];

    /// The variant's name, as used in counters and by the control API.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::InstallationToken => "InstallationToken",
            Endpoint::RegistrationToken => "RegistrationToken",
            Endpoint::RunnerRegistration => "RunnerRegistration",
            Endpoint::RunnerGroups => "RunnerGroups",
            Endpoint::ScaleSetByName => "ScaleSetByName",
            Endpoint::ScaleSetById => "ScaleSetById",
            Endpoint::CreateScaleSet => "CreateScaleSet",
            Endpoint::UpdateScaleSet => "UpdateScaleSet",
            Endpoint::DeleteScaleSet => "DeleteScaleSet",
            Endpoint::GenerateJitConfig => "GenerateJitConfig",
            Endpoint::CreateSession => "CreateSession",
            Endpoint::RefreshSession => "RefreshSession",
            Endpoint::DeleteSession => "DeleteSession",
            Endpoint::GetMessage => "GetMessage",
            Endpoint::DeleteMessage => "DeleteMessage",
            Endpoint::AcquireJobs => "AcquireJobs",
            Endpoint::GetRunner => "GetRunner",
            Endpoint::GetRunnerByName => "GetRunnerByName",
            Endpoint::RemoveRunner => "RemoveRunner",
        }
    }

    /// The inverse of [`Endpoint::name`] (ASCII case ignored).
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(name))
    }
}

/// What goes wrong with the next `times` requests to an endpoint.
///
/// After `delay`, the request either loses its connection
/// (`drop_connection`: the TCP connection is closed with no response), or is
/// answered with `status` (an error status gets a `{"typeName","message"}`
/// body when `type_name` is set, `{"message"}` otherwise, plus `Retry-After`
/// when `retry_after` is set). A `status` below 400 means no error: the
/// request goes on to the real handler after the delay (a slow endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub status: u16,
    pub type_name: Option<String>,
    pub delay: Duration,
    /// Seconds, sent as the `Retry-After` header.
    pub retry_after: Option<u64>,
    pub drop_connection: bool,
    pub times: u32,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            status: 500,
            type_name: None,
            delay: Duration::ZERO,
            retry_after: None,
            drop_connection: false,
            times: 1,
        }
    }
}

impl Fault {
    fn passes_through(&self) -> bool {
        !self.drop_connection && self.status < 400
    }

    /// The response an error fault gives.
    fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = format!("injected fault: {status}");
        let mut response = match &self.type_name {
            Some(type_name) => (
                status,
                axum::Json(wire::ExceptionBody {
                    type_name,
                    message: &message,
                }),
            )
                .into_response(),
            None => (
                status,
                axum::Json(wire::RestErrorBody {
                    message: &message,
                    documentation_url: "https://docs.github.com/rest",
                }),
            )
                .into_response(),
        };
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Counters, timestamps and queued faults. Pure bookkeeping.
#[derive(Debug, Default)]
pub struct FaultBook {
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    counts: HashMap<Endpoint, u64>,
    times: HashMap<Endpoint, VecDeque<Instant>>,
    unmatched: u64,
}

impl FaultBook {
    /// Queues a fault; one with `times == 0` is ignored.
    pub fn inject(&mut self, endpoint: Endpoint, fault: Fault) {
        if fault.times > 0 {
            self.faults.entry(endpoint).or_default().push_back(fault);
        }
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Counts a request and returns the fault it must suffer, if any.
    pub fn record(&mut self, endpoint: Endpoint, now: Instant) -> Option<Fault> {
        *self.counts.entry(endpoint).or_default() += 1;
        let times = self.times.entry(endpoint).or_default();
        if times.len() == MAX_TIMES_PER_ENDPOINT {
            times.pop_front();
        }
        times.push_back(now);

        let queue = self.faults.get_mut(&endpoint)?;
        let fault = queue.front_mut()?;
        fault.times -= 1;
        let applied = fault.clone();
        if fault.times == 0 {
            queue.pop_front();
        }
        Some(applied)
    }

    pub fn record_unmatched(&mut self) {
        self.unmatched += 1;
    }

    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.counts.get(&endpoint).copied().unwrap_or(0)
    }

    pub fn times(&self, endpoint: Endpoint) -> Vec<Instant> {
        self.times
            .get(&endpoint)
            .map(|t| t.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every endpoint's count (zeros included) plus `Unmatched` (requests
    /// that matched no route).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut all: BTreeMap<String, u64> = Endpoint::ALL
            .iter()
            .map(|e| (e.name().to_string(), self.count(*e)))
            .collect();
        all.insert("Unmatched".to_string(), self.unmatched);
        all
    }
}

/// Tags a route with its endpoint: requests to it are counted and suffer the
/// endpoint's faults.
pub fn tagged(app: &App, endpoint: Endpoint, route: MethodRouter<App>) -> MethodRouter<App> {
    route.route_layer(axum::middleware::from_fn_with_state(
        (app.clone(), endpoint),
        observe,
    ))
}

/// The middleware on every GitHub route: count, then maybe misbehave.
pub async fn observe(
    State((app, endpoint)): State<(App, Endpoint)>,
    request: Request,
    next: Next,
) -> Response {
    let Some(fault) = app.record_request(endpoint) else {
        return next.run(request).await;
    };
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    if fault.drop_connection {
        match request.extensions().get::<ConnectionControl>() {
            Some(connection) => {
                connection.drop_now();
                // The connection task drops this future with the connection.
                std::future::pending::<()>().await;
            }
            None => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the fault could not drop this connection",
                )
                    .into_response();
            }
        }
    }
    if fault.passes_through() {
        return next.run(request).await;
    }
    fault.response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for endpoint in Endpoint::ALL {
            assert_eq!(Endpoint::from_name(endpoint.name()), Some(endpoint));
        }
        assert_eq!(
            Endpoint::from_name("getmessage"),
            Some(Endpoint::GetMessage)
        );
        assert_eq!(Endpoint::from_name("nope"), None);
    }

    #[test]
    fn a_fault_applies_the_given_number_of_times_in_order() {
        let mut book = FaultBook::default();
        let now = Instant::now();
        book.inject(
            Endpoint::GetMessage,
            Fault {
                status: 503,
                times: 2,
                ..Default::default()
            },
        );
        book.inject(
            Endpoint::GetMessage,
            Fault {
                status: 429,
                retry_after: Some(3),
                ..Default::default()
            },
        );
        book.inject(
            Endpoint::GetMessage,
            Fault {
                times: 0,
                ..Default::default()
            },
        );
        let statuses: Vec<Option<u16>> = (0..5)
            .map(|_| book.record(Endpoint::GetMessage, now).map(|f| f.status))
            .collect();
        assert_eq!(statuses, vec![Some(503), Some(503), Some(429), None, None]);
        assert_eq!(book.count(Endpoint::GetMessage), 5);
        assert_eq!(
            book.record(Endpoint::AcquireJobs, now),
            None,
            "faults are per endpoint"
        );
    }

    #[test]
    fn counters_list_every_endpoint_and_times_are_kept() {
        let mut book = FaultBook::default();
        let t0 = Instant::now();
        book.record(Endpoint::CreateSession, t0);
        book.record(Endpoint::CreateSession, t0 + Duration::from_millis(5));
        book.record_unmatched();
        let counters = book.counters();
        assert_eq!(counters.len(), Endpoint::ALL.len() + 1);
        assert_eq!(counters["CreateSession"], 2);
        assert_eq!(counters["GetMessage"], 0);
        assert_eq!(counters["Unmatched"], 1);
        assert_eq!(
            book.times(Endpoint::CreateSession),
            vec![t0, t0 + Duration::from_millis(5)]
        );
    }

    #[test]
    fn error_and_pass_through_faults() {
        assert!(!Fault::default().passes_through());
        assert!(
            Fault {
                status: 200,
                delay: Duration::from_millis(5),
                ..Default::default()
            }
            .passes_through()
        );
        assert!(
            !Fault {
                status: 200,
                drop_connection: true,
                ..Default::default()
            }
            .passes_through()
        );
        let response = Fault {
            status: 429,
            retry_after: Some(7),
            ..Default::default()
        }
        .response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
    }
}
