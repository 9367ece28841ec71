//! The verbs every resource has: get, list, create, update, patch, delete,
//! deleteMultiple; and logs (pods).

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PostParams};
use serde_json::{Value, json};

use super::resolve::Target;
use super::{Done, api, kube_err, name, patch_params, touched};
use crate::kube::action::{Action, Outcome, PatchKind};
use crate::kube::error::ActionError;

/// The object as users see it: apiVersion and kind set, managedFields gone.
pub(crate) fn shown(target: &Target, obj: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), json!(target.ar.api_version));
        map.insert("kind".into(), json!(target.ar.kind));
    }
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    value
}

fn post_params(action: &Action) -> PostParams {
    PostParams {
        dry_run: action.dry_run,
        field_manager: Some("runway".into()),
    }
}

fn delete_params(action: &Action) -> DeleteParams {
    DeleteParams {
        dry_run: action.dry_run,
        ..DeleteParams::default()
    }
}

/// `kind namespace/name` for summaries.
pub(crate) fn label(target: &Target, name: &str) -> String {
    match &target.namespace {
        Some(ns) => format!("{} {ns}/{name}", target.ar.kind.to_lowercase()),
        None => format!("{} {name}", target.ar.kind.to_lowercase()),
    }
}

pub(crate) fn dry(action: &Action) -> &'static str {
    if action.dry_run { " (dry run)" } else { "" }
}

/// An object the action changed (or would have: dry run), as `what` says.
pub(crate) fn changed(
    target: &Target,
    obj: &DynamicObject,
    action: &Action,
    what: impl std::fmt::Display,
) -> Done {
    let name = obj.metadata.name.clone().unwrap_or_default();
    Done {
        outcome: Outcome {
            summary: format!("{} {what}{}", label(target, &name), dry(action)),
            changed: !action.dry_run,
            result: shown(target, obj),
        },
        touched: vec![touched(&target.ar, obj)],
    }
}

pub async fn get(client: &Client, action: &Action, target: &Target) -> Result<Done, ActionError> {
    let name = name(action);
    let obj = api(client, target)
        .get(name)
        .await
        .map_err(kube_err(action))?;
    Ok(Done {
        outcome: Outcome {
            summary: label(target, name),
            changed: false,
            result: shown(target, &obj),
        },
        touched: vec![touched(&target.ar, &obj)],
    })
}

pub async fn list(client: &Client, action: &Action, target: &Target) -> Result<Done, ActionError> {
    let mut lp = ListParams::default();
    if let Some(sel) = action.selector.as_deref().filter(|s| !s.is_empty()) {
        lp = lp.labels(sel);
    }
    let list = api(client, target)
        .list(&lp)
        .await
        .map_err(kube_err(action))?;
    let items: Vec<Value> = list.items.iter().map(|o| shown(target, o)).collect();
    let where_ = target
        .namespace
        .as_deref()
        .map(|ns| format!(" in {ns}"))
        .unwrap_or_default();
    Ok(Done {
        outcome: Outcome {
            summary: format!("{} {}{where_}", items.len(), target.ar.plural),
            changed: false,
            result: json!({"apiVersion": "v1", "kind": "List", "items": items}),
        },
        touched: Vec::new(),
    })
}

/// The body as an object of the target's kind, in the target's namespace.
fn object_from_body(action: &Action, target: &Target) -> Result<DynamicObject, ActionError> {
    let mut body = action.body.clone().unwrap_or(Value::Null);
    let map = body
        .as_object_mut()
        .ok_or_else(|| ActionError::BadInput("the body must be a JSON object".into()))?;
    match map.get("kind").and_then(Value::as_str) {
        Some(kind) if kind != target.ar.kind => {
            return Err(ActionError::Policy(format!(
                "the body is a {kind}, but the action is on {} ({}); kind and action must match",
                action.resource, target.ar.kind
            )));
        }
        _ => {}
    }
    map.insert("kind".into(), json!(target.ar.kind));
    map.insert("apiVersion".into(), json!(target.ar.api_version));
    let meta = map
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ActionError::BadInput("the body's metadata must be an object".into()))?;
    if let Some(name) = &action.name {
        match meta.get("name").and_then(Value::as_str) {
            Some(n) if n != name => {
                return Err(ActionError::BadInput(format!(
                    "the body names {n}, but the action is on {name}"
                )));
            }
            _ => {
                meta.insert("name".into(), json!(name));
            }
        }
    }
    if let Some(ns) = &target.namespace {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if n != ns => {
                return Err(ActionError::BadInput(format!(
                    "the body's metadata.namespace is {n}, but the action runs in {ns}; use -n {n} or fix the body"
                )));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    }
    serde_json::from_value(body).map_err(|e| ActionError::BadInput(format!("the body: {e}")))
}

pub async fn create(
    client: &Client,
    action: &Action,
    target: &Target,
) -> Result<Done, ActionError> {
    let obj = object_from_body(action, target)?;
    let made = api(client, target)
        .create(&post_params(action), &obj)
        .await
        .map_err(kube_err(action))?;
    Ok(changed(target, &made, action, "created"))
}

pub async fn update(
    client: &Client,
    action: &Action,
    target: &Target,
) -> Result<Done, ActionError> {
    let obj = object_from_body(action, target)?;
    let name = name(action);
    let made = api(client, target)
        .replace(name, &post_params(action), &obj)
        .await
        .map_err(kube_err(action))?;
    Ok(changed(target, &made, action, "updated"))
}

pub async fn patch(client: &Client, action: &Action, target: &Target) -> Result<Done, ActionError> {
    let name = name(action);
    let body = action.body.clone().unwrap_or(Value::Null);
    let patch = match action.patch_kind {
        PatchKind::Merge => Patch::Merge(body),
        PatchKind::Strategic => Patch::Strategic(body),
        PatchKind::Json => Patch::Json(
            serde_json::from_value(body)
                .map_err(|e| ActionError::BadInput(format!("the body is not a JSON patch: {e}")))?,
        ),
    };
    let made = api(client, target)
        .patch(name, &patch_params(action), &patch)
        .await
        .map_err(kube_err(action))?;
    Ok(changed(target, &made, action, "patched"))
}

pub async fn delete(
    client: &Client,
    action: &Action,
    target: &Target,
) -> Result<Done, ActionError> {
    let name = name(action);
    let api = api(client, target);
    let gone = api
        .delete(name, &delete_params(action))
        .await
        .map_err(kube_err(action))?;
    let (result, touched_obj) = match gone {
        either::Either::Left(obj) => (shown(target, &obj), Some(touched(&target.ar, &obj))),
        either::Either::Right(status) => {
            (serde_json::to_value(status).unwrap_or(Value::Null), None)
        }
    };
    Ok(Done {
        outcome: Outcome {
            summary: format!("{} deleted{}", label(target, name), dry(action)),
            changed: !action.dry_run,
            result,
        },
        touched: touched_obj.into_iter().collect(),
    })
}

/// Counts what the selector matches with a server-side dry run of the same
/// delete (so it needs no more RBAC than the delete), refuses more than
/// `max`, then deletes.
pub async fn delete_multiple(
    client: &Client,
    action: &Action,
    target: &Target,
) -> Result<Done, ActionError> {
    let selector = action.selector.as_deref().unwrap_or_default();
    let lp = ListParams::default().labels(selector);
    let api = api(client, target);
    let count_only = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    let would = match api
        .delete_collection(&count_only, &lp)
        .await
        .map_err(kube_err(action))?
    {
        either::Either::Left(list) => list.items,
        either::Either::Right(_) => Vec::new(),
    };
    if would.len() > action.max {
        return Err(ActionError::Policy(format!(
            "the selector `{selector}` matches {} {}, more than --max {}; nothing was deleted (narrow the selector or raise --max)",
            would.len(),
            target.ar.plural,
            action.max
        )));
    }
    let deleted = if action.dry_run {
        would
    } else {
        match api
            .delete_collection(&delete_params(action), &lp)
            .await
            .map_err(kube_err(action))?
        {
            either::Either::Left(list) => list.items,
            either::Either::Right(_) => Vec::new(),
        }
    };
    let where_ = target
        .namespace
        .as_deref()
        .map(|ns| format!(" in {ns}"))
        .unwrap_or_default();
    Ok(Done {
        outcome: Outcome {
            summary: format!(
                "{} {} deleted{where_} (-l {selector}){}",
                deleted.len(),
                target.ar.plural,
                dry(action)
            ),
            changed: !action.dry_run && !deleted.is_empty(),
            result: json!({
                "deleted": deleted.iter().filter_map(|o| o.metadata.name.clone()).collect::<Vec<_>>(),
            }),
        },
        touched: deleted.iter().map(|o| touched(&target.ar, o)).collect(),
    })
}

pub async fn logs(client: &Client, action: &Action, target: &Target) -> Result<Done, ActionError> {
    let name = name(action);
    let ns = target.namespace.as_deref().unwrap_or("default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = LogParams {
        container: action.container.clone(),
        tail_lines: action.tail_lines,
        ..LogParams::default()
    };
    let log = pods.logs(name, &params).await.map_err(kube_err(action))?;
    Ok(Done {
        outcome: Outcome {
            summary: format!("{} lines of logs of pod {ns}/{name}", log.lines().count()),
            changed: false,
            result: json!({ "log": log }),
        },
        touched: Vec::new(),
    })
}
