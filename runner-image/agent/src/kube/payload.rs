//! Payloads: the Datadog cluster agent's action format (KUBE-ACTIONS.md
//! "Entry points" 3), as wire types that mirror the JSON, and their
//! conversion to an [`Action`].
//!
//! Two kinds of wrong, treated differently:
//! - A payload whose JSON does not have the shape (a missing `metadata.id`, a
//!   version that is not a number) is refused whole by
//!   [`Payload::from_json`], naming the field: the sender is broken, and
//!   without an id nothing could be recorded anyway.
//! - An action that has the shape but does not make sense (an unknown
//!   `action_type`, a kind that does not match it, a missing name) fails
//!   alone in [`PayloadAction::to_action`]; the others still run.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::action::{Action, CustomKind, PatchKind};
use super::catalog::{Resource, Verb};
use super::error::ActionError;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Payload {
    pub actions: Vec<PayloadAction>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PayloadAction {
    pub metadata: Metadata,
    /// `<verb>_<kind>` in snake case: `delete_pod`, `delete_multiple_pods`.
    pub action_type: String,
    pub resource: ResourceRef,
    pub timestamp: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Params>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Metadata {
    pub id: String,
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Protobuf-style time: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Params {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// `merge` (default), `strategic` or `json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail_lines: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

const PARAMS: [&str; 10] = [
    "body",
    "patch",
    "patch_type",
    "replicas",
    "label_selector",
    "max",
    "dry_run",
    "container",
    "tail_lines",
    "timeout_seconds",
];

/// A payload that does not have the format's shape.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the payload is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// `field` is the path to fix: `actions[2].metadata.version`.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

impl PayloadError {
    /// The field to fix, when one is to blame.
    pub fn field(&self) -> Option<&str> {
        match self {
            PayloadError::Field { field, .. } => Some(field),
            PayloadError::NotJson(_) => None,
        }
    }
}

impl Payload {
    /// Parses a payload; the error names the field to fix.
    pub fn from_json(bytes: &[u8]) -> Result<Payload, PayloadError> {
        let value: Value = serde_json::from_slice(bytes).map_err(PayloadError::NotJson)?;
        let Value::Object(top) = value else {
            return Err(field_error(
                "(payload)",
                "must be an object {\"actions\": [...]}",
            ));
        };
        let actions: Vec<Value> = required(&top, "", "actions")?;
        let actions = actions
            .iter()
            .enumerate()
            .map(|(i, v)| PayloadAction::from_value(v, &format!("actions[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Payload { actions })
    }
}

impl PayloadAction {
    fn from_value(value: &Value, path: &str) -> Result<PayloadAction, PayloadError> {
        let obj = object(value, path)?;
        // Unknown keys at this level are ignored: the sender's format may
        // grow. Inside `params` (ours) they are refused, to catch typos.
        let metadata = {
            let p = format!("{path}.metadata");
            let o = object(obj.get("metadata").unwrap_or(&Value::Null), &p)?;
            Metadata {
                id: required(o, &p, "id")?,
                version: required(o, &p, "version")?,
            }
        };
        let resource = {
            let p = format!("{path}.resource");
            let o = object(obj.get("resource").unwrap_or(&Value::Null), &p)?;
            ResourceRef {
                api_version: required(o, &p, "api_version")?,
                kind: required(o, &p, "kind")?,
                namespace: optional::<String>(o, &p, "namespace")?.filter(|s| !s.is_empty()),
                name: optional::<String>(o, &p, "name")?.filter(|s| !s.is_empty()),
            }
        };
        let timestamp = {
            let p = format!("{path}.timestamp");
            let o = object(obj.get("timestamp").unwrap_or(&Value::Null), &p)?;
            let ts = Timestamp {
                seconds: required(o, &p, "seconds")?,
                nanos: optional(o, &p, "nanos")?.unwrap_or(0),
            };
            if ts.to_utc().is_none() {
                return Err(field_error(&p, "not a time (nanos must be below 1e9)"));
            }
            ts
        };
        let params = match obj.get("params") {
            None | Some(Value::Null) => None,
            Some(v) => Some(Params::from_value(v, &format!("{path}.params"))?),
        };
        Ok(PayloadAction {
            metadata,
            action_type: required(obj, path, "action_type")?,
            resource,
            timestamp,
            params,
        })
    }

    /// The action to run. Errors are `BadInput` (exit 2) for a call that is
    /// incomplete and `Policy` (exit 3) for one that contradicts itself,
    /// such as `delete_pod` on a Deployment.
    pub fn to_action(&self) -> Result<Action, ActionError> {
        let (verb, resource, plural) = parse_action_type(&self.action_type)?;
        let bad = |m: String| ActionError::BadInput(format!("{}: {m}", self.action_type));
        let policy = |m: String| ActionError::Policy(format!("{}: {m}", self.action_type));
        if plural && !matches!(verb, Verb::List | Verb::DeleteMultiple) {
            return Err(bad(format!(
                "the plural form is for list and delete_multiple; use the singular kind for {}",
                verb.snake()
            )));
        }
        if !resource.supports(verb) {
            return Err(policy(format!(
                "{resource} have no `{verb}` action; they support {}",
                resource
                    .verbs()
                    .map(|v| v.snake())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let r = &self.resource;
        let (group, version) = match r.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", r.api_version.as_str()),
        };
        let mut action = Action::new(verb, resource);
        let namespaced = match resource.location() {
            Some(loc) => {
                if Resource::from_kind(&r.kind) != Some(resource) {
                    return Err(policy(format!(
                        "the action is for kind {} but resource.kind is `{}`",
                        loc.kind, r.kind
                    )));
                }
                if group != loc.group || !loc.versions.contains(&version) {
                    let want: Vec<String> = loc
                        .versions
                        .iter()
                        .map(|v| match loc.group {
                            "" => v.to_string(),
                            g => format!("{g}/{v}"),
                        })
                        .collect();
                    return Err(policy(format!(
                        "resource.api_version `{}` does not serve {}; use {}",
                        r.api_version,
                        loc.kind,
                        want.join(" or ")
                    )));
                }
                Some(loc.namespaced)
            }
            None => {
                if let Some(builtin) = Resource::from_kind(&r.kind) {
                    return Err(policy(format!(
                        "resource.kind `{}` is built in; use action_type {}_{} instead of a custom object",
                        r.kind,
                        verb.snake(),
                        snake_kind(builtin)
                    )));
                }
                if group.is_empty() || version.is_empty() || r.kind.is_empty() {
                    return Err(bad(format!(
                        "custom objects need resource.api_version `group/version` and resource.kind; got `{}` and `{}`",
                        r.api_version, r.kind
                    )));
                }
                action.custom = Some(CustomKind {
                    group: group.to_string(),
                    version: version.to_string(),
                    kind: r.kind.clone(),
                    plural: None,
                });
                None // custom kinds may be either; the executor finds out
            }
        };
        match (namespaced, &r.namespace) {
            (Some(true), None) => {
                return Err(bad(format!(
                    "resource.namespace is required for {resource}"
                )));
            }
            (Some(false), Some(ns)) => {
                return Err(bad(format!(
                    "resource.namespace `{ns}` given, but {resource} are cluster-scoped; leave it out"
                )));
            }
            _ => action.namespace = r.namespace.clone(),
        }
        let by_selector = matches!(verb, Verb::List | Verb::DeleteMultiple);
        match (&r.name, by_selector) {
            (Some(_), true) => {
                return Err(bad(format!(
                    "resource.name is not used by {}; select with params.label_selector",
                    verb.snake()
                )));
            }
            (None, false) if verb != Verb::Create => {
                return Err(bad("resource.name is required".to_string()));
            }
            _ => action.name = r.name.clone(),
        }
        let p = self.params.clone().unwrap_or_default();
        match verb {
            Verb::Create | Verb::Update => {
                let body = p
                    .body
                    .ok_or_else(|| bad("params.body is required".into()))?;
                action.body = Some(body);
            }
            Verb::Patch => {
                if p.body.is_some() {
                    return Err(bad(
                        "params.body is not used by patch; use params.patch".into()
                    ));
                }
                action.body = Some(
                    p.patch
                        .ok_or_else(|| bad("params.patch is required".into()))?,
                );
                action.patch_kind = match p.patch_type.as_deref() {
                    None | Some("merge") => PatchKind::Merge,
                    Some("strategic") => PatchKind::Strategic,
                    Some("json") => PatchKind::Json,
                    Some(other) => {
                        return Err(bad(format!(
                            "params.patch_type `{other}` is not merge, strategic or json"
                        )));
                    }
                };
            }
            Verb::Scale => match p.replicas {
                Some(n) if n >= 0 => action.replicas = Some(n),
                Some(n) => {
                    return Err(bad(format!("params.replicas is {n}; it must be 0 or more")));
                }
                None => return Err(bad("params.replicas is required".into())),
            },
            // Also refused by the executor; said here with the field name.
            Verb::DeleteMultiple
                if p.label_selector
                    .as_deref()
                    .is_none_or(|s| s.trim().is_empty()) =>
            {
                return Err(policy(
                    "params.label_selector is required and must not be empty (delete_multiple never means everything)".into(),
                ));
            }
            _ => {}
        }
        action.selector = p.label_selector;
        if let Some(max) = p.max {
            action.max = max;
        }
        action.dry_run = p.dry_run.unwrap_or(false);
        action.container = p.container;
        action.tail_lines = p.tail_lines;
        if let Some(secs) = p.timeout_seconds {
            let max = super::action::MAX_TIMEOUT.as_secs();
            if secs == 0 || secs > max {
                return Err(bad(format!(
                    "params.timeout_seconds is {secs}; it must be between 1 and {max}"
                )));
            }
            action.timeout = Duration::from_secs(secs);
        }
        Ok(action)
    }
}

impl Params {
    fn from_value(value: &Value, path: &str) -> Result<Params, PayloadError> {
        let o = object(value, path)?;
        if let Some(unknown) = o.keys().find(|k| !PARAMS.contains(&k.as_str())) {
            return Err(field_error(
                &format!("{path}.{unknown}"),
                &format!("unknown parameter; known: {}", PARAMS.join(", ")),
            ));
        }
        Ok(Params {
            body: optional(o, path, "body")?,
            patch: optional(o, path, "patch")?,
            patch_type: optional(o, path, "patch_type")?,
            replicas: optional(o, path, "replicas")?,
            label_selector: optional(o, path, "label_selector")?,
            max: optional(o, path, "max")?,
            dry_run: optional(o, path, "dry_run")?,
            container: optional(o, path, "container")?,
            tail_lines: optional(o, path, "tail_lines")?,
            timeout_seconds: optional(o, path, "timeout_seconds")?,
        })
    }
}

impl Timestamp {
    pub fn to_utc(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.seconds, self.nanos)
    }
}

/// `(verb, resource, plural?)` of an `action_type`.
pub fn parse_action_type(action_type: &str) -> Result<(Verb, Resource, bool), ActionError> {
    let bad = |m: String| ActionError::BadInput(format!("action_type `{action_type}`: {m}"));
    // Longest verb first: `delete_multiple_pods` is not `delete` of
    // `multiple_pods`, `get_data_secret` not `get` of `data_secret`.
    let mut verbs = Verb::ALL.to_vec();
    verbs.sort_by_key(|v| std::cmp::Reverse(v.snake().len()));
    let (verb, kind) = verbs
        .iter()
        .find_map(|v| {
            action_type
                .strip_prefix(&v.snake())
                .and_then(|rest| rest.strip_prefix('_'))
                .map(|rest| (*v, rest))
        })
        .ok_or_else(|| {
            bad(format!(
                "expected <verb>_<kind> with verb one of {}",
                Verb::ALL.map(|v| v.snake()).join(", ")
            ))
        })?;
    let squashed = kind.replace('_', "");
    if squashed == "customobject" {
        return Ok((verb, Resource::CustomObjects, false));
    }
    if squashed == "customobjects" {
        return Ok((verb, Resource::CustomObjects, true));
    }
    if let Some(r) = Resource::from_kind(kind) {
        return Ok((verb, r, false));
    }
    if let Some(r) = Resource::ALL
        .into_iter()
        .find(|r| r.location().is_some_and(|l| l.plural == squashed))
    {
        return Ok((verb, r, true));
    }
    Err(bad(format!(
        "unknown kind `{kind}`; known: {}, custom_object",
        Resource::ALL
            .into_iter()
            .filter(|r| r.location().is_some())
            .map(snake_kind)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// `ConfigMap` -> `config_map`.
pub fn snake_kind(resource: Resource) -> String {
    let kind = resource.location().map_or("CustomObject", |l| l.kind);
    let mut out = String::new();
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, PayloadError> {
    match value {
        Value::Object(o) => Ok(o),
        Value::Null => Err(field_error(path, "missing")),
        other => Err(field_error(
            path,
            &format!("must be an object, not {}", kind_of(other)),
        )),
    }
}

fn required<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<T, PayloadError> {
    optional(obj, path, name)?.ok_or_else(|| field_error(&join(path, name), "missing"))
}

fn optional<T: DeserializeOwned>(
    obj: &Map<String, Value>,
    path: &str,
    name: &str,
) -> Result<Option<T>, PayloadError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| field_error(&join(path, name), &e.to_string())),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field_error(field: &str, message: &str) -> PayloadError {
    PayloadError::Field {
        field: field.to_string(),
        message: message.to_string(),
    }
}
