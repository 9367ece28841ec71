//! Installing CustomResourceDefinitions into a control plane and waiting
//! until the API server serves them.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::wait;

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("the CRD has no metadata.name")]
    Unnamed,
    #[error("applying CRD {name}: {source}")]
    Apply { name: String, source: kube::Error },
    #[error("CRD {name} was not Established: {source}")]
    NotEstablished { name: String, source: wait::Timeout },
}

/// Applies `crd` (server-side apply, so applying again is harmless, also
/// from tests running at once) and waits until it is Established.
pub async fn apply_crd(client: &Client, crd: &CustomResourceDefinition) -> Result<(), CrdError> {
    let name = crd.metadata.name.clone().ok_or(CrdError::Unnamed)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply("runway-sandbox").force(),
        &Patch::Apply(crd),
    )
    .await
    .map_err(|source| CrdError::Apply {
        name: name.clone(),
        source,
    })?;
    wait::until(
        &format!("CRD {name} to be Established"),
        Duration::from_secs(60),
        || async {
            let crd = crds.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await
    .map_err(|source| CrdError::NotEstablished {
        name: name.clone(),
        source,
    })
}
