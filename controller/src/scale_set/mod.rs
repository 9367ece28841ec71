//! The scale set on GitHub that a `RunnerScaleSet` object stands for: create
//! it, adopt it after a restart, bring its name, group and labels in line with
//! the spec, and delete it when the object goes.
//!
//! Invariant: Runway only ever changes or deletes a scale set that carries this
//! object's owner label. A scale set of the same name without it belongs to
//! another installation (another cluster, another namespace, ARC) and is a
//! [`EnsureError::Conflict`], never silently shared (ARC issues #2905, #3382).
//!
//! [`decide`] makes every choice from plain data; [`github`] does the calls.
//! [`checkpoint`] keeps the listener's resume point in the object's status.

pub mod checkpoint;
pub mod client;
mod events;
mod gauges;
pub mod github;
pub mod proxy;
mod summary;
pub mod supervisor;

use std::collections::BTreeSet;

use crate::crd::RunnerScaleSet;
use crate::github::wire::{self, Label, RunnerScaleSetRequest};

pub use checkpoint::{CheckpointError, SharedConditions, StatusCheckpoint};
pub use github::{Deleted, delete_scale_set_if_ours, ensure_scale_set};
pub use supervisor::{ClientSlot, SupervisorError, SupervisorOptions, Totals, run_scale_set};

/// Prefix of the owner label.
pub const OWNER_LABEL_PREFIX: &str = "runway-owner:";

/// This installation's mark on a scale set: the namespace, name and uid of the
/// `RunnerScaleSet` object.
///
/// It is stored as one extra System label because a label is the only
/// free-form, per-scale-set field the scale-set service keeps (there is no
/// description or annotation), and an extra label is harmless: `runs-on`
/// matches when the job's labels are a subset of the runner's, so a label no
/// workflow asks for never stops a match. The uid (first 8 characters) tells
/// a re-created object of the same name, or another cluster with the same
/// namespace and name, apart from this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    /// `None` until the object has been stored (no namespace or uid yet).
    pub fn of(object: &RunnerScaleSet) -> Option<Self> {
        let meta = &object.metadata;
        Some(Self::new(
            meta.namespace.as_deref().filter(|s| !s.is_empty())?,
            meta.name.as_deref().filter(|s| !s.is_empty())?,
            meta.uid.as_deref().filter(|s| !s.is_empty())?,
        ))
    }

    /// `runway-owner:<namespace>.<name>.<uid8>`.
    pub fn label(&self) -> String {
        let uid8: String = self.uid.chars().take(8).collect();
        format!(
            "{OWNER_LABEL_PREFIX}{}.{}.{uid8}",
            self.namespace, self.name
        )
    }

    /// Whether `scale_set` carries this owner's label.
    pub fn owns(&self, scale_set: &wire::RunnerScaleSet) -> bool {
        let label = self.label();
        scale_set.labels.iter().any(|l| l.name == label)
    }
}

/// The Runway owner label on a scale set, if any (whoever's it is).
pub fn owner_label_of(scale_set: &wire::RunnerScaleSet) -> Option<String> {
    scale_set
        .labels
        .iter()
        .find(|l| l.name.starts_with(OWNER_LABEL_PREFIX))
        .map(|l| l.name.clone())
}

/// What the spec asks for, with the runner group already resolved to an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredScaleSet {
    pub name: String,
    pub runner_group_id: i64,
    /// `runnerScaleSetLabels`: the labels besides the name (and the owner).
    pub extra_labels: Vec<String>,
}

impl DesiredScaleSet {
    /// Every label the scale set should carry: its name, the extra labels and
    /// the owner label, without duplicates (order is not significant).
    pub fn labels(&self, owner: &Owner) -> BTreeSet<String> {
        std::iter::once(self.name.clone())
            .chain(self.extra_labels.iter().cloned())
            .chain(std::iter::once(owner.label()))
            .collect()
    }

    /// The extra labels `create_scale_set` adds after the name.
    pub fn create_labels(&self, owner: &Owner) -> Vec<String> {
        let mut labels = self.labels(owner);
        labels.remove(&self.name);
        labels.into_iter().collect()
    }
}

/// What [`decide`] wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing of ours exists: create it.
    Create,
    /// Ours and as specified.
    Adopt { id: i64 },
    /// Ours, but these fields differ from the spec.
    Patch {
        id: i64,
        request: RunnerScaleSetRequest,
    },
    /// Another installation's scale set has the name we want.
    Conflict {
        id: i64,
        name: String,
        owner: Option<String>,
    },
}

/// `found` is the scale set looked up by the desired name, or failing that
/// the one at the id in `status.scaleSetId` (a renamed or regrouped scale set).
pub fn decide(
    found: Option<&wire::RunnerScaleSet>,
    desired: &DesiredScaleSet,
    owner: &Owner,
) -> Action {
    let Some(found) = found else {
        return Action::Create;
    };
    if !owner.owns(found) {
        return if found.name == desired.name {
            Action::Conflict {
                id: found.id,
                name: found.name.clone(),
                owner: owner_label_of(found),
            }
        } else {
            // Only reachable through a stale status id that now points at
            // someone else's scale set: leave it alone, make our own.
            Action::Create
        };
    }
    let mut request = RunnerScaleSetRequest::default();
    if found.name != desired.name {
        request.name = Some(desired.name.clone());
    }
    if found.runner_group_id != desired.runner_group_id {
        request.runner_group_id = Some(desired.runner_group_id);
    }
    let have: BTreeSet<&str> = found.labels.iter().map(|l| l.name.as_str()).collect();
    let want = desired.labels(owner);
    if have != want.iter().map(String::as_str).collect() {
        request.labels = Some(want.into_iter().map(Label::system).collect());
    }
    if request == RunnerScaleSetRequest::default() {
        Action::Adopt { id: found.id }
    } else {
        Action::Patch {
            id: found.id,
            request,
        }
    }
}

/// How [`ensure_scale_set`] got to a scale set that matches the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Adopted,
    Patched,
}

#[derive(Debug, Clone)]
pub struct Ensured {
    pub scale_set: wire::RunnerScaleSet,
    pub outcome: Outcome,
}

#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    #[error(
        "runner scale set {name:?} (id {id}) already exists on GitHub and another installation \
         uses it ({}); set a different runnerScaleSetName, or delete that scale set on GitHub \
         if nothing uses it any more",
        describe_owner(owner.as_deref())
    )]
    Conflict {
        name: String,
        id: i64,
        owner: Option<String>,
    },

    #[error(transparent)]
    GitHub(#[from] crate::github::Error),
}

fn describe_owner(owner: Option<&str>) -> String {
    match owner {
        Some(label) => format!("its owner label is {label:?}"),
        None => "it has no Runway owner label: ARC or another tool made it".to_owned(),
    }
}

impl EnsureError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            EnsureError::Conflict { .. } => "scale_set_conflict",
            EnsureError::GitHub(e) => e.metric_label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner::new("team-a", "arm", "0123456789abcdef")
    }

    fn other() -> Owner {
        Owner::new("team-b", "arm", "fedcba9876543210")
    }

    fn desired() -> DesiredScaleSet {
        DesiredScaleSet {
            name: "arm".into(),
            runner_group_id: 1,
            extra_labels: vec!["linux".into(), "arm64".into()],
        }
    }

    fn found(name: &str, group: i64, labels: &[&str]) -> wire::RunnerScaleSet {
        wire::RunnerScaleSet {
            id: 7,
            name: name.into(),
            runner_group_id: group,
            runner_group_name: String::new(),
            labels: labels.iter().map(|l| Label::system(*l)).collect(),
            runner_setting: wire::RunnerSetting::default(),
            created_on: None,
            runner_jit_config_url: None,
            statistics: None,
        }
    }

    fn ours() -> String {
        owner().label()
    }

    fn theirs() -> String {
        other().label()
    }

    fn patch(
        name: Option<&str>,
        group: Option<i64>,
        labels: Option<&[&str]>,
    ) -> RunnerScaleSetRequest {
        RunnerScaleSetRequest {
            name: name.map(str::to_owned),
            runner_group_id: group,
            labels: labels.map(|l| l.iter().map(|n| Label::system(*n)).collect()),
            runner_setting: None,
        }
    }

    #[test]
    fn owner_label_is_namespace_name_and_uid8() {
        assert_eq!(owner().label(), "runway-owner:team-a.arm.01234567");
    }

    #[test]
    fn decide_table() {
        let ours = ours();
        let theirs = theirs();
        // Sorted, as decide() sends them.
        let want_labels = ["arm", "arm64", "linux", ours.as_str()];
        let cases: Vec<(&str, Option<wire::RunnerScaleSet>, Action)> = vec![
            ("nothing found: create", None, Action::Create),
            (
                "ours and as specified: adopt",
                Some(found("arm", 1, &["arm", "linux", "arm64", &ours])),
                Action::Adopt { id: 7 },
            ),
            (
                "ours, label order does not matter",
                Some(found("arm", 1, &[&ours, "arm64", "linux", "arm"])),
                Action::Adopt { id: 7 },
            ),
            (
                "ours, a label missing: patch labels only",
                Some(found("arm", 1, &["arm", "linux", &ours])),
                Action::Patch {
                    id: 7,
                    request: patch(None, None, Some(&want_labels)),
                },
            ),
            (
                "ours, an extra label: patch labels only",
                Some(found("arm", 1, &["arm", "linux", "arm64", "gpu", &ours])),
                Action::Patch {
                    id: 7,
                    request: patch(None, None, Some(&want_labels)),
                },
            ),
            (
                "ours, other group: patch the group only",
                Some(found("arm", 3, &["arm", "linux", "arm64", &ours])),
                Action::Patch {
                    id: 7,
                    request: patch(None, Some(1), None),
                },
            ),
            (
                "ours under the old name (status id): patch name and labels",
                Some(found("old", 1, &["old", "linux", "arm64", &ours])),
                Action::Patch {
                    id: 7,
                    request: patch(Some("arm"), None, Some(&want_labels)),
                },
            ),
            (
                "ours, everything differs",
                Some(found("old", 2, &["old", &ours])),
                Action::Patch {
                    id: 7,
                    request: patch(Some("arm"), Some(1), Some(&want_labels)),
                },
            ),
            (
                "same name, no owner label (ARC): conflict",
                Some(found("arm", 1, &["arm", "linux", "arm64"])),
                Action::Conflict {
                    id: 7,
                    name: "arm".into(),
                    owner: None,
                },
            ),
            (
                "same name, another Runway install: conflict naming it",
                Some(found("arm", 1, &["arm", &theirs])),
                Action::Conflict {
                    id: 7,
                    name: "arm".into(),
                    owner: Some(theirs.clone()),
                },
            ),
            (
                "same object name and namespace, other uid: conflict",
                Some(found(
                    "arm",
                    1,
                    &["arm", "runway-owner:team-a.arm.99999999"],
                )),
                Action::Conflict {
                    id: 7,
                    name: "arm".into(),
                    owner: Some("runway-owner:team-a.arm.99999999".into()),
                },
            ),
            (
                "stale status id now someone else's, other name: create ours",
                Some(found("other", 1, &["other"])),
                Action::Create,
            ),
        ];
        for (case, found, want) in cases {
            assert_eq!(decide(found.as_ref(), &desired(), &owner()), want, "{case}");
        }
    }

    #[test]
    fn create_labels_hold_extras_and_owner_but_not_the_name() {
        let mut d = desired();
        d.extra_labels.push("arm".into());
        assert_eq!(
            d.create_labels(&owner()),
            vec!["arm64".to_owned(), "linux".to_owned(), ours()]
        );
    }

    #[test]
    fn conflict_message_names_the_setting_and_the_other_owner() {
        let e = EnsureError::Conflict {
            name: "arm".into(),
            id: 7,
            owner: Some(theirs()),
        };
        let text = e.to_string();
        assert!(text.contains("runnerScaleSetName"), "{text}");
        assert!(text.contains("another installation"), "{text}");
        assert!(text.contains(&theirs()), "{text}");
        let arc = EnsureError::Conflict {
            name: "arm".into(),
            id: 7,
            owner: None,
        };
        assert!(arc.to_string().contains("ARC"), "{arc}");
    }

    #[test]
    fn owner_of_needs_a_stored_object() {
        use crate::crd::RunnerScaleSetSpec;
        let spec: RunnerScaleSetSpec = serde_json::from_value(serde_json::json!({
            "githubConfigUrl": "https://github.com/o",
            "githubConfigSecret": "s",
            "template": {},
        }))
        .expect("spec");
        let mut object = RunnerScaleSet::new("arm", spec);
        assert_eq!(Owner::of(&object), None);
        object.metadata.namespace = Some("team-a".into());
        object.metadata.uid = Some("0123456789abcdef".into());
        assert_eq!(Owner::of(&object), Some(owner()));
    }
}
