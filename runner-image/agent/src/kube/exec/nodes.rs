//! Node verbs: cordon, uncordon and drain. Drain cordons, then evicts the
//! node's pods through the Eviction API, so PodDisruptionBudgets are
//! honoured: a blocked eviction (429) is retried until the action's timeout
//! and then reported with the pods it blocked; nothing is ever forced.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams, Patch};
use serde_json::{Value, json};

use super::crud::{changed, dry};
use super::resolve::Target;
use super::{Done, api, kube_err, name, patch_params};
use crate::kube::action::{Action, Outcome};
use crate::kube::audit::Touched;
use crate::kube::error::ActionError;

pub async fn cordon(
    client: &Client,
    action: &Action,
    target: &Target,
    unschedulable: bool,
) -> Result<Done, ActionError> {
    let obj = api(client, target)
        .patch(
            name(action),
            &patch_params(action),
            &Patch::Merge(json!({"spec": {"unschedulable": unschedulable}})),
        )
        .await
        .map_err(kube_err(action))?;
    let what = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    Ok(changed(target, &obj, action, what))
}

/// Which pods of a node drain evicts: not mirror pods (the kubelet owns
/// them), not DaemonSet pods (they would come straight back), not pods
/// already finished or being deleted.
pub fn evictable(pod: &Pod) -> bool {
    let meta = &pod.metadata;
    let mirror = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let daemon = meta
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.kind == "DaemonSet"));
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !(mirror || daemon || finished || meta.deletion_timestamp.is_some())
}

/// The Eviction body; `policy/v1` from Kubernetes 1.22, `v1beta1` before.
pub fn eviction(api_version: &str, namespace: &str, name: &str, dry_run: bool) -> Value {
    let mut body = json!({
        "apiVersion": api_version,
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    });
    if dry_run {
        body["deleteOptions"] = json!({"dryRun": ["All"]});
    }
    body
}

async fn eviction_version(client: &Client) -> &'static str {
    match client.apiserver_version().await {
        Ok(info) => {
            let minor: u32 = info
                .minor
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap_or(0);
            if info.major == "1" && minor < 22 {
                "policy/v1beta1"
            } else {
                "policy/v1"
            }
        }
        Err(_) => "policy/v1",
    }
}

/// What evicting one pod gave.
enum Evicted {
    Done,
    /// A PodDisruptionBudget refused it (429); try again later.
    Blocked(String),
}

async fn evict(
    client: &Client,
    action: &Action,
    version: &str,
    pod: &Pod,
) -> Result<Evicted, ActionError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let body = serde_json::to_vec(&eviction(version, &ns, &pod_name, action.dry_run))
        .map_err(|e| ActionError::BadInput(e.to_string()))?;
    let request = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{pod_name}/eviction"))
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| ActionError::BadInput(e.to_string()))?;
    match client.request::<Value>(request).await {
        Ok(_) => Ok(Evicted::Done),
        Err(kube::Error::Api(status)) if status.code == 429 => Ok(Evicted::Blocked(status.message)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Evicted::Done),
        // Its namespace is being deleted, and the pod with it (kubectl drain
        // counts these as evicted too).
        Err(kube::Error::Api(status)) if namespace_terminating(&status) => Ok(Evicted::Done),
        Err(e) => Err(ActionError::from_kube(
            &format!("evict pod {ns}/{pod_name}"),
            e,
        )),
    }
}

pub async fn drain(client: &Client, action: &Action, target: &Target) -> Result<Done, ActionError> {
    let node = name(action).to_string();
    let cordoned = cordon(client, action, target, true).await?;
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(kube_err(action))?;
    let mut pending: Vec<Pod> = on_node.items.into_iter().filter(evictable).collect();
    let version = eviction_version(client).await;
    // `validate` bounds the timeout; saturate anyway rather than panic.
    let start = tokio::time::Instant::now();
    let deadline = start
        .checked_add(action.timeout)
        .unwrap_or_else(|| start + crate::kube::action::MAX_TIMEOUT);
    let mut evicted: Vec<Touched> = Vec::new();
    let mut blocked: Vec<(String, String)> = Vec::new();
    loop {
        blocked.clear();
        let mut still = Vec::new();
        for pod in pending {
            let id = format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            );
            match evict(client, action, version, &pod).await? {
                Evicted::Done => evicted.push(Touched {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone().unwrap_or_default(),
                    uid: pod.metadata.uid.clone(),
                }),
                Evicted::Blocked(why) => {
                    blocked.push((id, why));
                    still.push(pod);
                }
            }
        }
        pending = still;
        // The executor's timeout would cut us off mid-way without saying
        // which pods were blocked: stop a little before it, and say.
        let next = tokio::time::Instant::now() + Duration::from_secs(2);
        if pending.is_empty() || next + Duration::from_millis(500) >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut touched_all = cordoned.touched;
    touched_all.extend(evicted.iter().cloned());
    if !blocked.is_empty() {
        let list = blocked
            .iter()
            .map(|(pod, why)| format!("{pod} ({why})"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ActionError::Timeout {
            seconds: action.timeout.as_secs(),
            what: format!(
                "drain node {node}: {} pods evicted, {} blocked by a PodDisruptionBudget and not forced: {list}",
                evicted.len(),
                blocked.len()
            ),
        });
    }
    Ok(Done {
        outcome: Outcome {
            summary: format!(
                "node {node} drained: {} pods evicted{}",
                evicted.len(),
                dry(action)
            ),
            changed: !action.dry_run,
            result: json!({
                "node": node,
                "evicted": evicted.iter().map(|t| format!("{}/{}", t.namespace.as_deref().unwrap_or_default(), t.name)).collect::<Vec<_>>(),
            }),
        },
        touched: touched_all,
    })
}

/// A refusal because the pod's namespace is terminating (the API server's
/// `NamespaceTerminating` cause): the namespace controller deletes the pod.
fn namespace_terminating(status: &kube::core::Status) -> bool {
    status.code == 403
        && status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    #[test]
    fn only_a_namespace_terminating_refusal_counts_as_the_pod_leaving() {
        let status = |code: u16, cause: Option<&str>| -> kube::core::Status {
            serde_json::from_value(json!({
                "status": "Failure", "code": code, "reason": "Forbidden",
                "message": "pods \"p\" is forbidden: unable to create new content in namespace ci because it is being terminated",
                "details": { "name": "p", "kind": "pods",
                    "causes": cause.map(|c| vec![json!({ "reason": c, "message": "x", "field": "metadata.namespace" })]).unwrap_or_default() }
            }))
            .expect("a Status")
        };
        for (code, cause, leaving) in [
            (403, Some("NamespaceTerminating"), true),
            (403, None, false),
            (403, Some("FieldValueInvalid"), false),
            (500, Some("NamespaceTerminating"), false),
        ] {
            assert_eq!(
                namespace_terminating(&status(code, cause)),
                leaving,
                "{code} {cause:?}"
            );
        }
    }

    #[test]
    fn drain_skips_daemon_set_and_mirror_pods() {
        let mut pod = Pod::default();
        assert!(evictable(&pod));
        pod.metadata.owner_references = Some(vec![OwnerReference {
            kind: "DaemonSet".into(),
            ..OwnerReference::default()
        }]);
        assert!(!evictable(&pod));
        let mut mirror = Pod::default();
        mirror.metadata.annotations =
            Some([("kubernetes.io/config.mirror".to_string(), "x".to_string())].into());
        assert!(!evictable(&mirror));
    }

    #[test]
    fn eviction_bodies_carry_the_version_and_dry_run() {
        let e = eviction("policy/v1beta1", "ci", "p", true);
        assert_eq!(e["apiVersion"], "policy/v1beta1");
        assert_eq!(e["deleteOptions"]["dryRun"][0], "All");
        assert!(
            eviction("policy/v1", "ci", "p", false)
                .get("deleteOptions")
                .is_none()
        );
    }
}
