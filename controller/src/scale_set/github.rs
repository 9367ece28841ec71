//! The calls behind [`decide`](super::decide): look the scale set up, then
//! create, patch or leave it; and the finalizer's delete.

use super::{
    Action, DesiredScaleSet, EnsureError, Ensured, Outcome, Owner, decide, owner_label_of,
};
use crate::crd::RunnerScaleSet;
use crate::github::{ActionsClient, Error};

/// Makes the scale set on GitHub match `object`'s spec, creating it if
/// needed. Never changes a scale set without `owner`'s label.
pub async fn ensure_scale_set(
    client: &ActionsClient,
    object: &RunnerScaleSet,
    owner: &Owner,
) -> Result<Ensured, EnsureError> {
    let group = object.spec.runner_group.as_deref().unwrap_or_default();
    let desired = DesiredScaleSet {
        name: object.scale_set_name().to_owned(),
        runner_group_id: client.resolve_runner_group_id(group).await?,
        extra_labels: object.spec.runner_scale_set_labels.clone(),
    };

    let mut found = client
        .scale_set_by_name(desired.runner_group_id, &desired.name)
        .await?;
    if found.is_none() {
        // Renamed or moved to another group: the name lookup misses, the id
        // Runway recorded still finds it. Gone is the same as never made.
        let previous = object.status.as_ref().and_then(|s| s.scale_set_id);
        if let Some(id) = previous {
            found = match client.scale_set(id).await {
                Ok(set) => Some(set),
                Err(Error::ScaleSetNotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            };
        }
    }

    match decide(found.as_ref(), &desired, owner) {
        Action::Create => {
            let scale_set = client
                .create_scale_set(
                    &desired.name,
                    desired.runner_group_id,
                    &desired.create_labels(owner),
                )
                .await?;
            Ok(Ensured {
                scale_set,
                outcome: Outcome::Created,
            })
        }
        Action::Adopt { .. } => Ok(Ensured {
            scale_set: found.expect("decide adopts only a found scale set"),
            outcome: Outcome::Adopted,
        }),
        Action::Patch { id, request } => {
            let scale_set = client.update_scale_set(id, &request).await?;
            Ok(Ensured {
                scale_set,
                outcome: Outcome::Patched,
            })
        }
        Action::Conflict { id, name, owner } => Err(EnsureError::Conflict { name, id, owner }),
    }
}

/// What [`delete_scale_set_if_ours`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// Deleted already (on GitHub, or by an earlier try).
    AlreadyGone,
    /// Someone else's now; left in place so a finalizer can still finish.
    NotOurs {
        owner: Option<String>,
    },
}

/// The finalizer's cleanup: deletes scale set `id` only if it carries
/// `owner`'s label.
pub async fn delete_scale_set_if_ours(
    client: &ActionsClient,
    id: i64,
    owner: &Owner,
) -> Result<Deleted, EnsureError> {
    let scale_set = match client.scale_set(id).await {
        Ok(set) => set,
        Err(e) if is_gone(&e) => return Ok(Deleted::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    if !owner.owns(&scale_set) {
        return Ok(Deleted::NotOurs {
            owner: owner_label_of(&scale_set),
        });
    }
    match client.delete_scale_set(id).await {
        Ok(()) => Ok(Deleted::Deleted),
        Err(e) if is_gone(&e) => Ok(Deleted::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}

fn is_gone(error: &Error) -> bool {
    matches!(
        error,
        Error::ScaleSetNotFound { .. }
            | Error::AgentNotFound { .. }
            | Error::Status { status: 404, .. }
    )
}
