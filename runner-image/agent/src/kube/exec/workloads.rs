//! The workload verbs: restart, scale, rollback and rolloutStatus
//! (deployments, statefulSets, daemonSets, replicaSets) and trigger
//! (cronJobs), done the way kubectl does them.

use std::time::Duration;

use chrono::Utc;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::crud::{changed, dry, label, shown};
use super::resolve::Target;
use super::{Done, api, kube_err, name, patch_params, touched};
use crate::kube::action::{Action, Outcome};
use crate::kube::error::ActionError;

/// The annotation kubectl's `rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The revision the deployment controller writes on Deployments and their
/// ReplicaSets.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// The merge patch of a restart at `at` (RFC 3339).
pub fn restart_patch(at: &str) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}})
}

pub async fn restart(
    client: &Client,
    action: &Action,
    target: &Target,
) -> Result<Done, ActionError> {
    let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let obj = api(client, target)
        .patch(
            name(action),
            &patch_params(action),
            &Patch::Merge(restart_patch(&at)),
        )
        .await
        .map_err(kube_err(action))?;
    Ok(changed(
        target,
        &obj,
        action,
        format!("restarted ({RESTARTED_AT}={at})"),
    ))
}

pub async fn scale(client: &Client, action: &Action, target: &Target) -> Result<Done, ActionError> {
    let replicas = action.replicas.unwrap_or_default();
    let api = api(client, target);
    api.patch_scale(
        name(action),
        &patch_params(action),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .map_err(kube_err(action))?;
    let obj = api.get(name(action)).await.map_err(kube_err(action))?;
    Ok(changed(
        target,
        &obj,
        action,
        format!("scaled to {replicas}"),
    ))
}

fn revision(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/annotations")?
        .get(REVISION)?
        .as_str()?
        .parse()
        .ok()
}

/// Of a deployment's ReplicaSets, the template of the newest one older than
/// the current revision, without the controller's `pod-template-hash` label:
/// what `kubectl rollout undo` restores.
pub fn previous_template(deployment: &Value, replica_sets: &[Value]) -> Option<Value> {
    let current = revision(deployment)?;
    let uid = deployment.pointer("/metadata/uid")?.as_str()?;
    let owned = replica_sets.iter().filter(|rs| {
        rs.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
            })
    });
    let previous = owned
        .filter_map(|rs| revision(rs).map(|r| (r, rs)))
        .filter(|(r, _)| *r < current)
        .max_by_key(|(r, _)| *r)?
        .1;
    let mut template = previous.pointer("/spec/template")?.clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    Some(template)
}

pub async fn rollback(
    client: &Client,
    action: &Action,
    target: &Target,
) -> Result<Done, ActionError> {
    let api = api(client, target);
    let deployment = api.get(name(action)).await.map_err(kube_err(action))?;
    let deployment_json = serde_json::to_value(&deployment).unwrap_or(Value::Null);
    let ns = target.namespace.as_deref().unwrap_or("default");
    let rs_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apps", "v1", "ReplicaSet"),
        "replicasets",
    );
    let selector = deployment_json
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let sets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &rs_ar);
    let list = sets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err(action))?;
    let list: Vec<Value> = list
        .items
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    let template =
        previous_template(&deployment_json, &list).ok_or_else(|| ActionError::Refused {
            action: action.describe(),
            code: 409,
            reason: "NoPreviousRevision".into(),
            message: format!(
                "deployment {ns}/{} has no previous revision to roll back to",
                name(action)
            ),
        })?;
    // Replace the whole template (a merge patch would keep keys the old
    // template did not have), guarded by the generation we decided on: the
    // spec must be the one read, while status writes (the deployment
    // controller's, several a second after a restart) may come and go. A
    // resourceVersion guard failed on those (422) whenever the rollback
    // followed a restart closely.
    let ops = json!([
        {"op": "test", "path": "/metadata/generation", "value": deployment.metadata.generation},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]);
    let patch = Patch::<Value>::Json(
        serde_json::from_value(ops)
            .map_err(|e| ActionError::BadInput(format!("building the rollback patch: {e}")))?,
    );
    let obj = api
        .patch(name(action), &patch_params(action), &patch)
        .await
        .map_err(kube_err(action))?;
    Ok(changed(
        target,
        &obj,
        action,
        "rolled back to the previous revision",
    ))
}

/// Whether a workload's rollout is complete, and if not, what it waits for
/// (kubectl's `rollout status` conditions).
pub fn rollout_progress(kind: &str, obj: &Value) -> Result<(), String> {
    let int = |path: &str| obj.pointer(path).and_then(Value::as_i64).unwrap_or(0);
    let generation = int("/metadata/generation");
    let observed = int("/status/observedGeneration");
    if observed < generation {
        return Err(format!(
            "waiting for the controller to see generation {generation}"
        ));
    }
    match kind {
        "Deployment" => {
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let updated = int("/status/updatedReplicas");
            let total = int("/status/replicas");
            let available = int("/status/availableReplicas");
            if updated < want {
                Err(format!("{updated} of {want} updated replicas"))
            } else if total > updated {
                Err(format!(
                    "{} old replicas pending termination",
                    total.saturating_sub(updated)
                ))
            } else if available < updated {
                Err(format!(
                    "{available} of {updated} updated replicas available"
                ))
            } else {
                Ok(())
            }
        }
        "StatefulSet" => {
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let ready = int("/status/readyReplicas");
            let updated = int("/status/updatedReplicas");
            let same_revision =
                obj.pointer("/status/currentRevision") == obj.pointer("/status/updateRevision");
            if ready < want {
                Err(format!("{ready} of {want} replicas ready"))
            } else if updated < want || !same_revision {
                Err(format!("{updated} of {want} replicas updated"))
            } else {
                Ok(())
            }
        }
        "DaemonSet" => {
            let want = int("/status/desiredNumberScheduled");
            let updated = int("/status/updatedNumberScheduled");
            let available = int("/status/numberAvailable");
            if updated < want {
                Err(format!("{updated} of {want} updated pods scheduled"))
            } else if available < want {
                Err(format!("{available} of {want} updated pods available"))
            } else {
                Ok(())
            }
        }
        other => Err(format!("{other} has no rollout")),
    }
}

pub async fn rollout_status(
    client: &Client,
    action: &Action,
    target: &Target,
) -> Result<Done, ActionError> {
    let api = api(client, target);
    // The executor bounds the whole call by the action's timeout; this only
    // polls. A watch would save a few requests; a poll survives reconnects.
    loop {
        let obj = api.get(name(action)).await.map_err(kube_err(action))?;
        let value = serde_json::to_value(&obj).unwrap_or(Value::Null);
        match rollout_progress(&target.ar.kind, &value) {
            Ok(()) => {
                return Ok(Done {
                    outcome: Outcome {
                        summary: format!("{} successfully rolled out", label(target, name(action))),
                        changed: false,
                        result: shown(target, &obj),
                    },
                    touched: Vec::new(),
                });
            }
            Err(waiting) => tracing::info!(%waiting, "rollout in progress"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The Job `kubectl create job --from=cronjob/NAME` makes.
pub fn job_from_cron_job(cron_job: &Value, cron_ar: &ApiResource, job_name: &str) -> Value {
    let template = cron_job
        .pointer("/spec/jobTemplate")
        .cloned()
        .unwrap_or(json!({}));
    let mut annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .unwrap_or(json!({}));
    annotations["cronjob.kubernetes.io/instantiate"] = json!("manual");
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": cron_job.pointer("/metadata/namespace"),
            "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": cron_ar.api_version,
                "kind": "CronJob",
                "name": cron_job.pointer("/metadata/name"),
                "uid": cron_job.pointer("/metadata/uid"),
                "controller": true,
            }],
        },
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

/// `<cronjob>-manual-<unix seconds>`, cut to fit a name (63 characters).
pub fn manual_job_name(cron_job: &str, unix: i64) -> String {
    let suffix = format!("-manual-{unix}");
    let keep = 63usize.saturating_sub(suffix.len());
    let base: String = cron_job.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

pub async fn trigger(
    client: &Client,
    action: &Action,
    target: &Target,
) -> Result<Done, ActionError> {
    let cron = api(client, target)
        .get(name(action))
        .await
        .map_err(kube_err(action))?;
    let cron_json = serde_json::to_value(&cron).unwrap_or(Value::Null);
    let job_name = manual_job_name(name(action), Utc::now().timestamp());
    let job: DynamicObject =
        serde_json::from_value(job_from_cron_job(&cron_json, &target.ar, &job_name))
            .map_err(|e| ActionError::BadInput(format!("building the Job: {e}")))?;
    let jobs_ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("batch", "v1", "Job"), "jobs");
    let ns = target.namespace.as_deref().unwrap_or("default");
    let jobs: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &jobs_ar);
    let pp = PostParams {
        dry_run: action.dry_run,
        field_manager: Some("runway".into()),
    };
    let made = jobs.create(&pp, &job).await.map_err(kube_err(action))?;
    let jobs_target = Target {
        ar: jobs_ar.clone(),
        namespace: target.namespace.clone(),
    };
    Ok(Done {
        outcome: Outcome {
            summary: format!(
                "{} triggered: job {ns}/{job_name} created{}",
                label(target, name(action)),
                dry(action)
            ),
            changed: !action.dry_run,
            result: shown(&jobs_target, &made),
        },
        touched: vec![touched(&target.ar, &cron), touched(&jobs_ar, &made)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_template_is_the_newest_older_owned_revision() {
        let deployment = json!({"metadata": {"uid": "d1", "annotations": {REVISION: "3"}}});
        let rs = |rev: &str, owner: &str, image: &str| {
            json!({
                "metadata": {"annotations": {REVISION: rev}, "ownerReferences": [{"uid": owner}]},
                "spec": {"template": {"metadata": {"labels": {"app": "a", "pod-template-hash": "h"}},
                                       "spec": {"containers": [{"image": image}]}}}
            })
        };
        let sets = [
            rs("1", "d1", "v1"),
            rs("2", "d1", "v2"),
            rs("3", "d1", "v3"),
            rs("2", "other", "x"),
        ];
        let t = previous_template(&deployment, &sets).unwrap();
        assert_eq!(t["spec"]["containers"][0]["image"], "v2");
        assert_eq!(t["metadata"]["labels"], json!({"app": "a"}));
        assert!(previous_template(&deployment, &sets[2..3]).is_none());
    }

    #[test]
    fn rollout_progress_follows_kubectl() {
        let d = |generation: i64, obs: i64, upd: i64, total: i64, avail: i64| {
            json!({"metadata": {"generation": generation}, "spec": {"replicas": 2},
                   "status": {"observedGeneration": obs, "updatedReplicas": upd, "replicas": total, "availableReplicas": avail}})
        };
        assert!(
            rollout_progress("Deployment", &d(2, 1, 2, 2, 2))
                .unwrap_err()
                .contains("generation 2")
        );
        assert_eq!(
            rollout_progress("Deployment", &d(2, 2, 1, 2, 1)).unwrap_err(),
            "1 of 2 updated replicas"
        );
        assert_eq!(
            rollout_progress("Deployment", &d(2, 2, 2, 3, 2)).unwrap_err(),
            "1 old replicas pending termination"
        );
        assert_eq!(
            rollout_progress("Deployment", &d(2, 2, 2, 2, 1)).unwrap_err(),
            "1 of 2 updated replicas available"
        );
        assert!(rollout_progress("Deployment", &d(2, 2, 2, 2, 2)).is_ok());
        let ds = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}});
        assert!(rollout_progress("DaemonSet", &ds).is_ok());
    }

    #[test]
    fn rollout_progress_survives_absurd_counts() {
        let d = json!({"metadata": {"generation": 1}, "spec": {"replicas": i64::MIN},
                       "status": {"observedGeneration": 1, "updatedReplicas": i64::MIN, "replicas": i64::MAX}});
        assert_eq!(
            rollout_progress("Deployment", &d).unwrap_err(),
            format!("{} old replicas pending termination", i64::MAX)
        );
    }

    #[test]
    fn manual_jobs_are_named_and_owned_like_kubectls() {
        assert_eq!(
            manual_job_name("nightly", 1700000000),
            "nightly-manual-1700000000"
        );
        assert_eq!(manual_job_name(&"x".repeat(80), 1).len(), 63);
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("batch", "v1beta1", "CronJob"),
            "cronjobs",
        );
        let cron = json!({"metadata": {"name": "nightly", "namespace": "ci", "uid": "u1"},
                          "spec": {"jobTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {"template": {"spec": {}}}}}});
        let job = job_from_cron_job(&cron, &ar, "nightly-manual-1");
        assert_eq!(
            job["metadata"]["ownerReferences"][0]["apiVersion"],
            "batch/v1beta1"
        );
        assert_eq!(
            job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
            "manual"
        );
        assert_eq!(job["metadata"]["labels"]["a"], "b");
        assert_eq!(job["spec"], json!({"template": {"spec": {}}}));
    }
}
