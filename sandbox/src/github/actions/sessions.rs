//! Sessions and their message queue: create, refresh (a new queue token),
//! delete; the long poll, acknowledgements and job acquisition.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::extract::{ActionsError, Admin, Queue, Reply, parse_body};
use super::{IdPath, MESSAGE_TYPE, session, statistics};
use crate::github::auth::QueueGrant;
use crate::github::faults::{Endpoint, tagged};
use crate::github::messages;
use crate::github::server::App;
use crate::github::state::{Delivery, SessionView};
use crate::github::wire;

/// The routes under `sets` (`.../_apis/runtime/runnerscalesets`).
pub(super) fn routes(app: &App, sets: &str) -> Router<App> {
    Router::new()
        .route(
            &format!("{sets}/{{id}}/sessions"),
            tagged(app, Endpoint::CreateSession, post(create_session)),
        )
        .route(
            &format!("{sets}/{{id}}/sessions/{{session_id}}"),
            tagged(app, Endpoint::RefreshSession, patch(refresh_session)).merge(tagged(
                app,
                Endpoint::DeleteSession,
                delete(delete_session),
            )),
        )
        .route(
            &format!("{sets}/{{id}}/acquirejobs"),
            tagged(app, Endpoint::AcquireJobs, post(acquire_jobs)),
        )
        .route(
            &format!("{sets}/{{id}}/messages"),
            tagged(app, Endpoint::GetMessage, get(get_message)),
        )
        .route(
            &format!("{sets}/{{id}}/messages/{{message_id}}"),
            tagged(app, Endpoint::DeleteMessage, delete(delete_message)),
        )
}

#[derive(Deserialize)]
struct SessionPath {
    id: i64,
    session_id: String,
}

#[derive(Deserialize)]
struct MessagePath {
    message_id: i64,
}

#[derive(Deserialize)]
struct MessageQuery {
    #[serde(rename = "lastMessageId")]
    last_message_id: Option<i64>,
}

fn issue_queue_token(app: &App, view: &SessionView) -> String {
    let grant = QueueGrant {
        scale_set_id: view.scale_set.id,
        session_id: view.session_id.clone(),
    };
    app.tokens(|t| t.issue_queue_token(grant, Instant::now(), app.opts().queue_token_ttl))
}

async fn create_session(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<IdPath>,
    body: Bytes,
) -> Reply<Json<wire::Session>> {
    let request: wire::SessionRequest = parse_body(&body)?;
    let created =
        app.state(|s, now| s.create_session(admin.tenant, p.id, &request.owner_name, now))?;
    let token = issue_queue_token(&app, &created);
    Ok(Json(session(&created, token, &admin.actions_url)))
}

async fn refresh_session(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<SessionPath>,
) -> Reply<Json<wire::Session>> {
    let refreshed =
        app.state(|s, now| s.refresh_session(admin.tenant, p.id, &p.session_id, now))?;
    let token = issue_queue_token(&app, &refreshed);
    Ok(Json(session(&refreshed, token, &admin.actions_url)))
}

async fn delete_session(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<SessionPath>,
) -> Reply<StatusCode> {
    app.state(|s, _| s.delete_session(admin.tenant, p.id, &p.session_id))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn acquire_jobs(
    queue: Queue,
    State(app): State<App>,
    body: Bytes,
) -> Reply<Json<wire::List<i64>>> {
    let ids: Vec<i64> = parse_body(&body)?;
    let QueueGrant {
        scale_set_id,
        session_id,
    } = &queue.grant;
    let acquired = app
        .state(|s, now| s.acquire(*scale_set_id, session_id, &ids, now))
        .map_err(|_| {
            ActionsError::unauthorized("the session of this message queue token has ended")
        })?;
    Ok(Json(wire::List::new(acquired)))
}

/// Marks a session as being polled for as long as the request lives (a
/// client that hangs up ends it too).
struct PollGuard {
    app: App,
    grant: QueueGrant,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let grant = &self.grant;
        self.app
            .state(|s, now| s.poll_ended(grant.scale_set_id, &grant.session_id, now));
    }
}

/// The long poll: answers as soon as there is a message, or with 202 after
/// `long_poll_timeout`. Waits on the state's revision, and wakes for the
/// state's own deadlines (a requeue falling due produces a message).
async fn get_message(
    queue: Queue,
    State(app): State<App>,
    Query(q): Query<MessageQuery>,
    headers: HeaderMap,
) -> Response {
    let grant = queue.grant.clone();
    let last_message_id = q.last_message_id.unwrap_or(0);
    let max_capacity = headers
        .get("X-ScaleSetMaxCapacity")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    let mut changes = app.subscribe();
    let start = Instant::now();
    let deadline = start
        .checked_add(app.opts().long_poll_timeout)
        .unwrap_or(start);
    app.state(|s, now| s.poll_started(grant.scale_set_id, &grant.session_id, max_capacity, now));
    let _guard = PollGuard {
        app: app.clone(),
        grant: grant.clone(),
    };
    loop {
        changes.borrow_and_update();
        let (outcome, next_deadline) = app.state(|s, now| {
            (
                s.poll(grant.scale_set_id, &grant.session_id, last_message_id, now),
                s.next_deadline(),
            )
        });
        match outcome {
            Err(_) => {
                return ActionsError::unauthorized(
                    "the session of this message queue token has ended",
                )
                .into_response();
            }
            Ok(Some(delivery)) => {
                return message(delivery, &queue.actions_url, grant.scale_set_id).into_response();
            }
            Ok(None) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return StatusCode::ACCEPTED.into_response();
        }
        let wake = next_deadline.map_or(deadline, |d| d.min(deadline));
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

fn message(delivery: Delivery, actions_url: &str, scale_set_id: i64) -> Reply<Json<wire::Message>> {
    let acquire_job_url = format!(
        "{actions_url}_apis/runtime/runnerscalesets/{scale_set_id}/acquirejobs?api-version=6.0-preview"
    );
    let (message_type, body) = match delivery.raw {
        Some(raw) => (raw.message_type, raw.body),
        None => (
            MESSAGE_TYPE.to_string(),
            messages::render_body(&delivery.events, &acquire_job_url)
                .map_err(ActionsError::internal)?,
        ),
    };
    Ok(Json(wire::Message {
        message_id: delivery.message_id,
        message_type,
        body,
        statistics: statistics(&delivery.statistics),
    }))
}

async fn delete_message(
    queue: Queue,
    State(app): State<App>,
    Path(p): Path<MessagePath>,
) -> Reply<StatusCode> {
    let grant = &queue.grant;
    app.state(|s, now| s.acknowledge(grant.scale_set_id, &grant.session_id, p.message_id, now))
        .map_err(|_| {
            ActionsError::unauthorized("the session of this message queue token has ended")
        })?;
    Ok(StatusCode::NO_CONTENT)
}
