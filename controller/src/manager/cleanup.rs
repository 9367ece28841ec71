//! The finalizer's work when a `RunnerScaleSet` is deleted (its supervisor,
//! and with it the listener and its session, stopped already):
//!
//! ```text
//! until no runner pod is left, or the deletion timeout:
//!     take apart every runner not running a job; wait for busy ones
//! delete the scale set on GitHub (only if it carries our owner label)
//! release the finalizer
//! ```
//!
//! `kubectl delete rss x` never hangs forever: after `deletion_timeout`
//! (counted from the deletion) the finalizer is released anyway and a
//! Warning Event names what is left (busy runners, the scale set).

use std::time::Duration;

use chrono::Utc;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::{FINALIZER, ManagerOptions};
use crate::crd::RunnerScaleSet;
use crate::github::ActionsClient;
use crate::patch;
use crate::runner::Context;
use crate::runner::cleanup::retire_runners;
use crate::scale_set::client::github_client;
use crate::scale_set::{Deleted, Owner, delete_scale_set_if_ours};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("RunnerScaleSet has no namespace, name or uid")]
    NotStored,
    #[error("releasing the finalizer {FINALIZER} of RunnerScaleSet {namespace}/{name}: {source}")]
    Release {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Runs the cleanup of the deleted `rss` to its end (the finalizer is
/// released), or until `stop` (another controller continues it).
pub async fn run(
    kube: Client,
    recorder: Recorder,
    rss: RunnerScaleSet,
    opts: &ManagerOptions,
    cached: Option<ActionsClient>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), CleanupError> {
    let owner = Owner::of(&rss).ok_or(CleanupError::NotStored)?;
    let cleanup = Cleanup {
        kube: kube.clone(),
        recorder,
        rss: &rss,
        owner: &owner,
    };
    let deleted_at = rss
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or_else(Utc::now, crate::runner::state::to_chrono);
    let timeout =
        chrono::TimeDelta::from_std(opts.deletion_timeout).unwrap_or(chrono::TimeDelta::MAX);
    let deadline = deleted_at + timeout;
    let timed_out = || Utc::now() >= deadline;
    let pause = |stop: &mut watch::Receiver<bool>| {
        let mut stop = stop.clone();
        async move {
            tokio::select! {
                () = tokio::time::sleep(opts.cleanup_interval) => true,
                _ = stop.wait_for(|s| *s) => false,
            }
        }
    };

    let Some(scale_set_id) = rss.status.as_ref().and_then(|s| s.scale_set_id) else {
        // Never made on GitHub: no runner can exist.
        return cleanup.release().await;
    };

    // GitHub credentials: without them neither runners nor the scale set
    // can be removed. The Secret first (it may have been rotated); if it is
    // gone (`helm uninstall` deletes it with the object), the client the
    // supervisor used; else wait for the Secret, up to the deadline.
    let mut warned = false;
    let client = loop {
        match github_client(&kube, &rss, &owner, &opts.supervisor).await {
            Ok(client) => break client,
            Err(error) if cached.is_some() => {
                tracing::info!(namespace = %owner.namespace, name = %owner.name, %error, "cleanup goes on with the supervisor's GitHub client");
                break cached.clone().expect("checked");
            }
            Err(error) if timed_out() => {
                let note = format!(
                    "gave up after {}: {error}; scale set {scale_set_id} and its runners may remain on GitHub",
                    human(opts.deletion_timeout)
                );
                cleanup
                    .event(EventType::Warning, "CleanupTimedOut", note)
                    .await;
                return cleanup.release().await;
            }
            Err(error) => {
                if !warned {
                    let note =
                        format!("cannot reach GitHub to remove the runners: {error}; retrying");
                    cleanup
                        .event(EventType::Warning, "CleanupBlocked", note)
                        .await;
                    warned = true;
                }
                if !pause(&mut stop).await {
                    return Ok(());
                }
            }
        }
    };

    let ctx = Context::new(
        kube.clone(),
        client.clone(),
        opts.supervisor.runners.clone(),
    );
    let mut announced = false;
    loop {
        let left = match retire_runners(&ctx, &rss).await {
            Ok(left) if left.is_done() => break,
            Ok(left) => left,
            Err(error) => {
                tracing::warn!(namespace = %owner.namespace, name = %owner.name, %error, "cleanup pass failed");
                Default::default()
            }
        };
        if timed_out() {
            let note = format!(
                "gave up waiting after {}: runner pods left: busy {:?}, other {:?}; scale set {scale_set_id} left on GitHub",
                human(opts.deletion_timeout),
                left.busy,
                left.other
            );
            cleanup
                .event(EventType::Warning, "CleanupTimedOut", note)
                .await;
            return cleanup.release().await;
        }
        if !announced && !left.busy.is_empty() {
            let note = format!(
                "waiting for {} busy runner(s) to finish their jobs before deleting the scale set: {:?}",
                left.busy.len(),
                left.busy
            );
            cleanup
                .event(EventType::Normal, "WaitingForRunners", note)
                .await;
            announced = true;
        }
        if !pause(&mut stop).await {
            return Ok(());
        }
    }

    loop {
        match delete_scale_set_if_ours(&client, scale_set_id, &owner).await {
            Ok(Deleted::Deleted | Deleted::AlreadyGone) => {
                tracing::info!(namespace = %owner.namespace, name = %owner.name, scale_set_id, "scale set deleted on GitHub");
                break;
            }
            Ok(Deleted::NotOurs { owner: other }) => {
                let note = format!(
                    "scale set {scale_set_id} carries another owner label ({}); left in place",
                    other.as_deref().unwrap_or("none")
                );
                cleanup
                    .event(EventType::Warning, "ScaleSetNotOurs", note)
                    .await;
                break;
            }
            Err(error) if timed_out() => {
                let note = format!("gave up deleting scale set {scale_set_id} on GitHub: {error}");
                cleanup
                    .event(EventType::Warning, "CleanupTimedOut", note)
                    .await;
                break;
            }
            Err(error) => {
                tracing::warn!(namespace = %owner.namespace, name = %owner.name, %error, "deleting the scale set failed; retrying");
                if !pause(&mut stop).await {
                    return Ok(());
                }
            }
        }
    }
    cleanup.release().await
}

struct Cleanup<'a> {
    kube: Client,
    recorder: Recorder,
    rss: &'a RunnerScaleSet,
    owner: &'a Owner,
}

impl Cleanup<'_> {
    async fn release(&self) -> Result<(), CleanupError> {
        let ops = patch::remove_finalizer(&self.rss.metadata, FINALIZER);
        if ops.is_empty() {
            return Ok(());
        }
        let err = |source| CleanupError::Release {
            namespace: self.owner.namespace.clone(),
            name: self.owner.name.clone(),
            source,
        };
        // Untyped: the object may be one whose spec does not decode.
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.kube.clone(),
            &self.owner.namespace,
            &super::decode::api_resource(),
        );
        match api
            .patch(
                &self.rss.name_any(),
                &PatchParams::default(),
                &Patch::<()>::Json(patch::json_patch(ops).map_err(err)?),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        tracing::info!(namespace = %self.owner.namespace, name = %self.owner.name, reason, %note, "cleanup");
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Delete".into(),
            secondary: None,
        };
        if let Err(error) = self
            .recorder
            .publish(&event, &self.rss.object_ref(&()))
            .await
        {
            tracing::warn!(namespace = %self.owner.namespace, name = %self.owner.name, %error, "could not record an event");
        }
    }
}

fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}
