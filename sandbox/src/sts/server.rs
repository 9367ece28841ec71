//! The HTTP side: every path and method (STS answers on `/`, SDKs POST a
//! form, people may GET a query) goes to one handler that logs the request,
//! applies injected faults, authenticates the caller, asks `rules`, issues
//! credentials and answers in STS's XML.
//!
//! All of one request's state changes happen under one lock, so the log
//! order is the order in which requests were decided.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::fault::Fault;
use super::rules::{self, Caller, Grant};
use super::sessions::{Session, role_id, unique_id};
use super::sigv4::Authorization;
use super::wire::{self, CredentialsResult, Params, Request, WebIdentityExtra};
use super::{LoggedRequest, Shared, State};

pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: oneshot::Receiver<()>,
) {
    let router = Router::new().fallback(handle).with_state(shared);
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async {
            // Resolves when the FakeSts handle (the sender) is dropped.
            let _ = stopped.await;
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("fake STS server stopped: {e}");
    }
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = request_id();
    let body: &[u8] = if method == Method::POST { &body } else { b"" };
    let params = Params::parse(uri.query(), body);
    let http = HttpParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
        body,
    };
    let mut entry = logged(&params);
    let result = {
        let mut state = shared.state();
        let result = decide(&shared, &mut state, &params, &http, &mut entry);
        entry.outcome = match &result {
            Ok(_) => "ok".into(),
            Err(fault) => fault.code.into(),
        };
        state.log.push(entry);
        result
    };
    let (status, xml) = match result {
        Ok(render) => (StatusCode::OK, render(&request_id)),
        Err(fault) => (
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            wire::error_response(&fault, &request_id),
        ),
    };
    let mut response = (status, xml).into_response();
    let out = response.headers_mut();
    out.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml"),
    );
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        out.insert("x-amzn-requestid", id);
    }
    response
}

struct HttpParts<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

type Render = Box<dyn FnOnce(&str) -> String + Send>;

fn logged(params: &Params) -> LoggedRequest {
    let get = |name: &str| params.get(name).map(str::to_owned);
    let (tags, transitive_tag_keys) = match Request::parse(params) {
        Ok(Request::AssumeRole(p)) => (p.tags, p.transitive_tag_keys),
        _ => (Vec::new(), Vec::new()),
    };
    LoggedRequest {
        action: get("Action").unwrap_or_default(),
        caller: None,
        role_arn: get("RoleArn"),
        role_session_name: get("RoleSessionName"),
        tags,
        transitive_tag_keys,
        duration_seconds: params.get("DurationSeconds").and_then(|d| d.parse().ok()),
        source_identity: get("SourceIdentity"),
        external_id: get("ExternalId"),
        policy: get("Policy"),
        outcome: String::new(),
    }
}

fn decide(
    shared: &Shared,
    state: &mut State,
    params: &Params,
    http: &HttpParts<'_>,
    entry: &mut LoggedRequest,
) -> Result<Render, Fault> {
    if take(&mut state.throttle_next) {
        return Err(Fault::throttling());
    }
    if take(&mut state.fail_next) {
        return Err(Fault::internal_failure());
    }
    if take(&mut state.unavailable_next) {
        return Err(Fault::service_unavailable());
    }
    let config = &shared.config;
    let now = state.now();
    match Request::parse(params)? {
        Request::GetCallerIdentity => {
            let caller = authenticate(shared, state, http, now)?;
            entry.caller = Some(caller.arn.clone());
            let account = config.account_id.clone();
            Ok(Box::new(move |id: &str| {
                wire::caller_identity_response(&caller.user_id, &account, &caller.arn, id)
            }))
        }
        Request::AssumeRole(p) => {
            let caller = authenticate(shared, state, http, now)?;
            entry.caller = Some(caller.arn.clone());
            let grant = rules::decide_assume_role(config, &caller.rules, &p)?;
            let session = issue(shared, state, &grant, now);
            let result = credentials_result(&session, &grant);
            Ok(Box::new(move |id: &str| {
                wire::assume_role_response(&result, id)
            }))
        }
        Request::AssumeRoleWithWebIdentity(p) => {
            rules::validate_web_identity(&p)?;
            let token = shared.issuer.verify(
                &p.web_identity_token,
                &config.issuer,
                &config.audience,
                now.timestamp(),
            )?;
            let grant = rules::decide_web_identity(config, &p)?;
            let session = issue(shared, state, &grant, now);
            let result = credentials_result(&session, &grant);
            let extra = WebIdentityExtra {
                subject: token.subject,
                audience: token.audience,
                provider: format!(
                    "arn:aws:iam::{}:oidc-provider/{}",
                    config.account_id,
                    token.issuer.trim_start_matches("https://")
                ),
            };
            Ok(Box::new(move |id: &str| {
                wire::web_identity_response(&result, &extra, id)
            }))
        }
    }
}

/// Consumes one injected fault, if any are left.
fn take(counter: &mut usize) -> bool {
    if *counter == 0 {
        return false;
    }
    *counter -= 1;
    true
}

fn issue(shared: &Shared, state: &mut State, grant: &Grant, now: DateTime<Utc>) -> Session {
    let lifetime = state
        .credential_lifetime
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .unwrap_or_else(|| chrono::Duration::seconds(i64::from(grant.duration_seconds)));
    state
        .sessions
        .issue(&shared.config.account_id, grant, now + lifetime)
}

fn credentials_result(session: &Session, grant: &Grant) -> CredentialsResult {
    CredentialsResult {
        access_key_id: session.access_key_id.clone(),
        secret_access_key: session.secret_access_key.clone(),
        session_token: session.session_token.clone(),
        expiration: session.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        assumed_role_id: session.assumed_role_id(),
        arn: session.arn(),
        packed_policy_size: grant.packed_policy_size,
        source_identity: session.source_identity.clone(),
    }
}

/// The signer of a request, as `rules` and GetCallerIdentity see it.
struct Authenticated {
    arn: String,
    user_id: String,
    rules: Caller,
}

fn authenticate(
    shared: &Shared,
    state: &State,
    http: &HttpParts<'_>,
    now: DateTime<Utc>,
) -> Result<Authenticated, Fault> {
    let auth =
        Authorization::from_headers(http.headers)?.ok_or_else(Fault::missing_authentication)?;
    let key = auth.access_key_id.as_str();
    let (secret, who) = if let Some(fixed) = shared
        .config
        .static_credentials
        .iter()
        .find(|c| c.access_key_id == key)
    {
        let arn = fixed.principal_arn.clone();
        let who = Authenticated {
            user_id: unique_id("AIDA", &arn),
            rules: Caller {
                arn: arn.clone(),
                principal: rules::role_of_assumed_role_arn(&arn).unwrap_or_else(|| arn.clone()),
                is_role_session: false,
                transitive_tags: Vec::new(),
                source_identity: None,
            },
            arn,
        };
        (fixed.secret_access_key.as_str(), who)
    } else {
        let session = state
            .sessions
            .get(key)
            .ok_or_else(Fault::invalid_client_token)?;
        let token = http
            .headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok());
        if token != Some(session.session_token.as_str()) {
            return Err(Fault::invalid_client_token());
        }
        if session.expired(now) {
            return Err(Fault::expired_token());
        }
        let who = Authenticated {
            arn: session.arn(),
            user_id: format!("{}:{}", role_id(&session.role_arn), session.session_name),
            rules: Caller {
                arn: session.arn(),
                principal: session.role_arn.clone(),
                is_role_session: true,
                transitive_tags: session.transitive_tags.clone(),
                source_identity: session.source_identity.clone(),
            },
        };
        (session.secret_access_key.as_str(), who)
    };
    if shared.config.verify_signatures
        && !auth.verify(
            secret,
            http.method,
            http.path,
            http.query,
            http.headers,
            http.body,
        )
    {
        return Err(Fault::signature_mismatch());
    }
    Ok(who)
}

/// A request id shaped like AWS's (a UUID v4 string).
fn request_id() -> String {
    let n: u128 = rand::random();
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}
