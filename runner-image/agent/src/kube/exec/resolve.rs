//! Where an action's target lives in the API. Built-ins with one served
//! version need no call; CronJobs (batch/v1 from Kubernetes 1.21, v1beta1
//! before) and custom objects are discovered.

use kube::Client;
use kube::core::GroupVersionKind;
use kube::discovery::{self, ApiResource, Scope};

use crate::kube::action::Action;
use crate::kube::error::ActionError;

/// The resolved API of a target and the namespace to use (None when
/// cluster-scoped).
#[derive(Clone, Debug)]
pub struct Target {
    pub ar: ApiResource,
    pub namespace: Option<String>,
}

pub async fn target(
    client: &Client,
    action: &Action,
    namespace: Option<&str>,
) -> Result<Target, ActionError> {
    if let Some(custom) = &action.custom {
        let gvk = GroupVersionKind::gvk(&custom.group, &custom.version, &custom.kind);
        let (mut ar, caps) = discovery::pinned_kind(client, &gvk).await.map_err(|e| {
            ActionError::BadInput(format!(
                "the API server serves no kind {} in {}/{}: {e}",
                custom.kind, custom.group, custom.version
            ))
        })?;
        if let Some(plural) = &custom.plural {
            ar.plural = plural.clone();
        }
        let namespace = match caps.scope {
            Scope::Namespaced => namespace.map(str::to_string),
            Scope::Cluster => None,
        };
        return Ok(Target { ar, namespace });
    }
    let Some(loc) = action.resource.location() else {
        return Err(ActionError::BadInput(format!(
            "{} need a group, version and kind",
            action.resource
        )));
    };
    let namespace = if loc.namespaced {
        namespace.map(str::to_string)
    } else {
        None
    };
    if let [version] = loc.versions {
        let gvk = GroupVersionKind::gvk(loc.group, version, loc.kind);
        return Ok(Target {
            ar: ApiResource::from_gvk_with_plural(&gvk, loc.plural),
            namespace,
        });
    }
    let group = discovery::group(client, loc.group)
        .await
        .map_err(|e| ActionError::from_kube(&action.describe(), e))?;
    for version in loc.versions {
        let gvk = GroupVersionKind::gvk(loc.group, version, loc.kind);
        let served = group
            .versioned_resources(version)
            .into_iter()
            .any(|(ar, _)| ar.kind == loc.kind);
        if served {
            return Ok(Target {
                ar: ApiResource::from_gvk_with_plural(&gvk, loc.plural),
                namespace,
            });
        }
    }
    Err(ActionError::Refused {
        action: action.describe(),
        code: 404,
        reason: "NotFound".into(),
        message: format!(
            "the API server serves {} in none of {}",
            loc.kind,
            loc.versions
                .iter()
                .map(|v| format!("{}/{v}", loc.group))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}
