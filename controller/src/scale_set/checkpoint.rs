//! The listener's [`Checkpoint`] stored where a restarted or newly elected
//! controller looks first: `status.sessionId` and `status.lastMessageId` of
//! the `RunnerScaleSet`, written through the status subresource.
//!
//! A JSON merge patch touches only those two fields, so the counts and
//! conditions other writers keep in the status survive. `None` is sent as
//! `null`, which removes `sessionId` (the session is gone).

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;

use crate::crd::RunnerScaleSet;
use crate::listener::{BoxError, Checkpoint};

/// Saves the resume point into the status of the `RunnerScaleSet` `name`.
#[derive(Clone)]
pub struct StatusCheckpoint {
    pub api: Api<RunnerScaleSet>,
    pub name: String,
}

impl StatusCheckpoint {
    pub fn new(api: Api<RunnerScaleSet>, name: impl Into<String>) -> Self {
        Self {
            api,
            name: name.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "saving the listener checkpoint (sessionId, lastMessageId) to the status of RunnerScaleSet {name:?}: {source}"
)]
pub struct CheckpointError {
    pub name: String,
    #[source]
    pub source: kube::Error,
}

#[derive(Debug, Serialize)]
struct StatusPatch<'a> {
    status: ResumeStatus<'a>,
}

/// No `skip_serializing_if`: a `None` session must reach the server as
/// `null` to clear the field.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResumeStatus<'a> {
    session_id: Option<&'a str>,
    last_message_id: i64,
}

impl Checkpoint for StatusCheckpoint {
    async fn save(&self, session_id: Option<&str>, last_message_id: i64) -> Result<(), BoxError> {
        let patch = StatusPatch {
            status: ResumeStatus {
                session_id,
                last_message_id,
            },
        };
        self.api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| CheckpointError {
                name: self.name.clone(),
                source,
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_sends_null_for_no_session() {
        let patch = StatusPatch {
            status: ResumeStatus {
                session_id: None,
                last_message_id: 9,
            },
        };
        assert_eq!(
            serde_json::to_value(&patch).expect("serializes"),
            serde_json::json!({ "status": { "sessionId": null, "lastMessageId": 9 } })
        );
    }
}
