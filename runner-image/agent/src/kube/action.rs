//! One Kubernetes action, as the CLI and payloads both describe it, and what
//! running it gave.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::catalog::{Resource, Verb};

/// A custom object's type, given at call time (`customObjects`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomKind {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The plural; discovered from the API server when not given.
    pub plural: Option<String>,
}

/// How a `patch` body is applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PatchKind {
    #[default]
    Merge,
    Strategic,
    Json,
}

/// Default bound of `deleteMultiple`.
pub const DEFAULT_MAX: usize = 50;
/// Default timeout of an action (`rolloutStatus`, `drain`, the calls).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest timeout an action may ask for (a day: longer than any job
/// step should wait, and far from where deadline arithmetic overflows).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub verb: Verb,
    pub resource: Resource,
    /// Set exactly when `resource` is `customObjects`.
    pub custom: Option<CustomKind>,
    /// The namespace of a namespaced resource; ignored for cluster-scoped.
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Label selector (`list`, `deleteMultiple`).
    pub selector: Option<String>,
    /// The object for `create`/`update`, the patch for `patch`.
    pub body: Option<serde_json::Value>,
    pub patch_kind: PatchKind,
    /// `scale`.
    pub replicas: Option<i32>,
    /// `logs`.
    pub container: Option<String>,
    pub tail_lines: Option<i64>,
    /// Server-side dry run: the API server checks everything, changes nothing.
    pub dry_run: bool,
    pub timeout: Duration,
    /// `deleteMultiple` refuses a selector matching more.
    pub max: usize,
}

impl Action {
    pub fn new(verb: Verb, resource: Resource) -> Action {
        Action {
            verb,
            resource,
            custom: None,
            namespace: None,
            name: None,
            selector: None,
            body: None,
            patch_kind: PatchKind::Merge,
            replicas: None,
            container: None,
            tail_lines: None,
            dry_run: false,
            timeout: DEFAULT_TIMEOUT,
            max: DEFAULT_MAX,
        }
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    pub fn selector(mut self, selector: impl Into<String>) -> Self {
        self.selector = Some(selector.into());
        self
    }

    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// `verb resource/name -n namespace`, for messages and logs.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.verb, self.resource);
        if let Some(c) = &self.custom {
            s = format!("{} {}.{}/{}", self.verb, c.kind, c.group, c.version);
        }
        if let Some(name) = &self.name {
            s.push('/');
            s.push_str(name);
        }
        if let Some(sel) = &self.selector {
            s.push_str(&format!(" -l {sel}"));
        }
        if let Some(ns) = &self.namespace {
            s.push_str(&format!(" -n {ns}"));
        }
        s
    }
}

/// What an action did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// A short human line: `deployment app/api restarted`.
    pub summary: String,
    /// Whether anything changed (false for reads and dry runs).
    pub changed: bool,
    /// The result as JSON: the object(s), with Secret values hidden unless
    /// allowed; for `logs`, `{"log": "..."}`.
    pub result: serde_json::Value,
}
