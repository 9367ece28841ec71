//! The Actions service's runner scale-set API (PROTOCOL.md sections 3 and 4).
//!
//! Each tenant (one per githubConfigUrl scope) is served under
//! `/_services/pipelines/{tenant}/`, the URL `actions/runner-registration`
//! hands out. Every call needs `Authorization: Bearer <admin token>` of that
//! tenant, except the message queue and `acquirejobs`, which need the
//! session's message queue token. Handlers only parse, authenticate, call the
//! state and serialize; failures are `{"typeName","message"}` bodies.
//!
//! The message queue URL of a session is
//! `<actions url>_apis/runtime/runnerscalesets/{id}/messages`; a message is
//! acknowledged with `DELETE <that>/{messageId}`.

mod extract;
mod sessions;

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use self::extract::{ActionsError, Admin, Reply, parse_body};
use super::auth::random_string;
use super::faults::{Endpoint, tagged};
use super::messages;
use super::server::{ACTIONS_PREFIX, App};
use super::state::{
    NewScaleSet, RunnerSettings, RunnerSettingsPatch, RunnerView, ScaleSetPatch, ScaleSetView,
    SessionView, StateError, Statistics,
};
use super::wire;

pub const MESSAGE_TYPE: &str = "RunnerScaleSetJobMessages";

pub fn statistics(s: &Statistics) -> wire::Statistics {
    wire::Statistics {
        total_available_jobs: s.total_available_jobs,
        total_acquired_jobs: s.total_acquired_jobs,
        total_assigned_jobs: s.total_assigned_jobs,
        total_running_jobs: s.total_running_jobs,
        total_registered_runners: s.total_registered_runners,
        total_busy_runners: s.total_busy_runners,
        total_idle_runners: s.total_idle_runners,
    }
}

fn scale_set(view: &ScaleSetView, actions_url: &str) -> wire::RunnerScaleSet {
    wire::RunnerScaleSet {
        id: view.id,
        name: view.name.clone(),
        runner_group_id: view.runner_group_id,
        runner_group_name: view.runner_group_name.clone(),
        labels: view.labels.iter().map(|l| wire::Label::system(l)).collect(),
        runner_setting: wire::RunnerSetting {
            ephemeral: view.settings.ephemeral,
            is_elastic: view.settings.is_elastic,
            disable_update: view.settings.disable_update,
        },
        created_on: messages::wire_time(Some(view.created_on)),
        runner_jit_config_url: format!(
            "{actions_url}_apis/runtime/runnerscalesets/{}/generatejitconfig",
            view.id
        ),
        statistics: statistics(&view.statistics),
    }
}

fn runner(view: &RunnerView) -> wire::RunnerReference {
    wire::RunnerReference {
        id: view.id,
        name: view.name.clone(),
        runner_scale_set_id: view.scale_set_id,
    }
}

fn session(view: &SessionView, queue_token: String, actions_url: &str) -> wire::Session {
    wire::Session {
        session_id: view.session_id.clone(),
        owner_name: view.owner_name.clone(),
        runner_scale_set: scale_set(&view.scale_set, actions_url),
        message_queue_url: queue_url(actions_url, view.scale_set.id),
        message_queue_access_token: queue_token,
        statistics: statistics(&view.scale_set.statistics),
    }
}

fn queue_url(actions_url: &str, scale_set_id: i64) -> String {
    format!("{actions_url}_apis/runtime/runnerscalesets/{scale_set_id}/messages")
}

pub fn routes(app: &App) -> Router<App> {
    let sets = format!("{ACTIONS_PREFIX}/{{tenant}}/_apis/runtime/runnerscalesets");
    let agents = format!("{ACTIONS_PREFIX}/{{tenant}}/_apis/distributedtask/pools/{{pool}}/agents");
    Router::new()
        .route(
            &format!("{ACTIONS_PREFIX}/{{tenant}}/_apis/runtime/runnergroups"),
            tagged(app, Endpoint::RunnerGroups, get(runner_groups)),
        )
        .route(
            &sets,
            tagged(app, Endpoint::ScaleSetByName, get(scale_sets_by_name)).merge(tagged(
                app,
                Endpoint::CreateScaleSet,
                post(create_scale_set),
            )),
        )
        .route(
            &format!("{sets}/{{id}}"),
            tagged(app, Endpoint::ScaleSetById, get(get_scale_set))
                .merge(tagged(
                    app,
                    Endpoint::UpdateScaleSet,
                    patch(update_scale_set),
                ))
                .merge(tagged(
                    app,
                    Endpoint::DeleteScaleSet,
                    delete(delete_scale_set),
                )),
        )
        .route(
            &format!("{sets}/{{id}}/generatejitconfig"),
            tagged(app, Endpoint::GenerateJitConfig, post(generate_jit_config)),
        )
        .route(
            &agents,
            tagged(app, Endpoint::GetRunnerByName, get(runners_by_name)),
        )
        .route(
            &format!("{agents}/{{runner_id}}"),
            tagged(app, Endpoint::GetRunner, get(get_runner)).merge(tagged(
                app,
                Endpoint::RemoveRunner,
                delete(remove_runner),
            )),
        )
        .merge(sessions::routes(app, &sets))
}

#[derive(Deserialize)]
struct IdPath {
    id: i64,
}

#[derive(Deserialize)]
struct RunnerPath {
    runner_id: i64,
}

#[derive(Deserialize)]
struct GroupQuery {
    #[serde(rename = "groupName")]
    group_name: Option<String>,
}

#[derive(Deserialize)]
struct ScaleSetQuery {
    #[serde(rename = "runnerGroupId")]
    runner_group_id: Option<i64>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct AgentQuery {
    #[serde(rename = "agentName")]
    agent_name: Option<String>,
}

async fn runner_groups(
    _admin: Admin,
    State(app): State<App>,
    Query(q): Query<GroupQuery>,
) -> Json<wire::List<wire::RunnerGroup>> {
    let groups = app.state(|s, _| s.runner_groups(q.group_name.as_deref()));
    Json(wire::List::new(
        groups
            .into_iter()
            .map(|g| wire::RunnerGroup {
                id: g.id,
                name: g.name,
                size: g.size,
                is_default_group: g.is_default,
            })
            .collect(),
    ))
}

async fn scale_sets_by_name(
    admin: Admin,
    State(app): State<App>,
    Query(q): Query<ScaleSetQuery>,
) -> Json<wire::List<wire::RunnerScaleSet>> {
    let found =
        app.state(|s, _| s.find_scale_sets(admin.tenant, q.runner_group_id, q.name.as_deref()));
    Json(wire::List::new(
        found
            .iter()
            .map(|v| scale_set(v, &admin.actions_url))
            .collect(),
    ))
}

/// Labels of a request: their names (all labels of a scale set are System labels).
fn label_names(labels: Option<Vec<wire::Label>>) -> Option<Vec<String>> {
    labels.map(|l| {
        l.into_iter()
            .map(|l| l.name)
            .filter(|n| !n.trim().is_empty())
            .collect()
    })
}

/// The group a request names: by id, or by name when the id is missing or 0.
fn requested_group(app: &App, request: &wire::RunnerScaleSetRequest) -> Reply<Option<i64>> {
    match (
        request.runner_group_id,
        request.runner_group_name.as_deref(),
    ) {
        (Some(id), _) if id != 0 => Ok(Some(id)),
        (_, Some(name)) if !name.trim().is_empty() => {
            let groups = app.state(|s, _| s.runner_groups(Some(name)));
            groups
                .first()
                .map(|g| Some(g.id))
                .ok_or_else(|| StateError::RunnerGroupNotFound(0).into())
        }
        _ => Ok(None),
    }
}

async fn create_scale_set(
    admin: Admin,
    State(app): State<App>,
    body: Bytes,
) -> Reply<Json<wire::RunnerScaleSet>> {
    let request: wire::RunnerScaleSetRequest = parse_body(&body)?;
    let runner_group_id = requested_group(&app, &request)?;
    let settings = request.runner_setting.unwrap_or_default();
    let new = NewScaleSet {
        name: request.name.unwrap_or_default(),
        runner_group_id,
        labels: label_names(request.labels).unwrap_or_default(),
        settings: RunnerSettings {
            ephemeral: settings.ephemeral.unwrap_or(false),
            is_elastic: settings.is_elastic.unwrap_or(false),
            disable_update: settings.disable_update.unwrap_or(false),
        },
    };
    let created = app.state(|s, now| s.create_scale_set(admin.tenant, new, now))?;
    Ok(Json(scale_set(&created, &admin.actions_url)))
}

async fn get_scale_set(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<IdPath>,
) -> Reply<Json<wire::RunnerScaleSet>> {
    let found = app.state(|s, _| s.scale_set(Some(admin.tenant), p.id))?;
    Ok(Json(scale_set(&found, &admin.actions_url)))
}

async fn update_scale_set(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<IdPath>,
    body: Bytes,
) -> Reply<Json<wire::RunnerScaleSet>> {
    let request: wire::RunnerScaleSetRequest = parse_body(&body)?;
    let runner_group_id = requested_group(&app, &request)?;
    let settings = request.runner_setting.unwrap_or_default();
    let patch = ScaleSetPatch {
        name: request.name.filter(|n| !n.trim().is_empty()),
        runner_group_id,
        labels: label_names(request.labels),
        settings: RunnerSettingsPatch {
            ephemeral: settings.ephemeral,
            is_elastic: settings.is_elastic,
            disable_update: settings.disable_update,
        },
    };
    let updated = app.state(|s, _| s.update_scale_set(admin.tenant, p.id, patch))?;
    Ok(Json(scale_set(&updated, &admin.actions_url)))
}

async fn delete_scale_set(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<IdPath>,
) -> Reply<StatusCode> {
    app.state(|s, _| s.delete_scale_set(Some(admin.tenant), p.id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The JIT config: base64 of a JSON map from runner file name to the
/// file's base64, as the runner's `--jitconfig` expects.
fn encoded_jit_config(
    admin: &Admin,
    runner: &RunnerView,
    set: &ScaleSetView,
    work_folder: &str,
    client_id: &str,
) -> Reply<String> {
    let runner_file = wire::JitRunnerFile {
        agent_id: runner.id,
        agent_name: runner.name.clone(),
        pool_id: 0,
        runner_scale_set_id: set.id,
        server_url: admin.actions_url.clone(),
        git_hub_url: format!("{}/{}", admin.origin, set.scope),
        work_folder: if work_folder.is_empty() {
            "_work".to_string()
        } else {
            work_folder.to_string()
        },
        ephemeral: true,
        disable_update: set.settings.disable_update,
    };
    let credentials = wire::JitCredentialsFile {
        scheme: "OAuth",
        data: wire::JitCredentialsData {
            client_id: client_id.to_string(),
            authorization_url: format!("{}_apis/oauth2/token", admin.actions_url),
        },
    };
    let encode = |value: Result<Vec<u8>, serde_json::Error>| {
        value
            .map(|v| STANDARD.encode(v))
            .map_err(ActionsError::internal)
    };
    let files = BTreeMap::from([
        (".runner", encode(serde_json::to_vec(&runner_file))?),
        (".credentials", encode(serde_json::to_vec(&credentials))?),
    ]);
    encode(serde_json::to_vec(&files))
}

async fn generate_jit_config(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<IdPath>,
    body: Bytes,
) -> Reply<Json<wire::JitConfigResponse>> {
    let request: wire::JitConfigRequest = parse_body(&body)?;
    // The credential a runner comes online with (see `runner_api`).
    let client_id = random_string(32);
    let (registered, set) = app.state(|s, _| {
        let registered = s.register_runner(admin.tenant, p.id, &request.name)?;
        s.issue_jit_config(registered.id, &client_id);
        Ok::<_, StateError>((registered, s.scale_set(Some(admin.tenant), p.id)?))
    })?;
    let encoded = encoded_jit_config(&admin, &registered, &set, &request.work_folder, &client_id)?;
    Ok(Json(wire::JitConfigResponse {
        runner: runner(&registered),
        encoded_jit_config: encoded,
    }))
}

async fn runners_by_name(
    admin: Admin,
    State(app): State<App>,
    Query(q): Query<AgentQuery>,
) -> Json<wire::List<wire::RunnerReference>> {
    let name = q.agent_name.unwrap_or_default();
    let found = app.state(|s, _| s.runners_named(admin.tenant, &name));
    Json(wire::List::new(found.iter().map(runner).collect()))
}

async fn get_runner(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<RunnerPath>,
) -> Reply<Json<wire::RunnerReference>> {
    let found = app.state(|s, _| s.runner(admin.tenant, p.runner_id))?;
    Ok(Json(runner(&found)))
}

async fn remove_runner(
    admin: Admin,
    State(app): State<App>,
    Path(p): Path<RunnerPath>,
) -> Reply<StatusCode> {
    app.state(|s, _| s.remove_runner(admin.tenant, p.runner_id))?;
    Ok(StatusCode::NO_CONTENT)
}
