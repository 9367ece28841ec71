//! Exactly-once for payload actions: one record per (id, version) in the
//! ConfigMap `runway-kubeactions-state` of the executor's own namespace
//! (KUBE-ACTIONS.md "Exactly once"); the executors beside jobs keep theirs in
//! `runway-kubeactions-state-jobs`, so that the runners' ServiceAccount never
//! writes the standalone server's claims.
//!
//! Every change is read-decide-write: read the ConfigMap, let [`decide`]
//! choose from its data, then `replace` it carrying the `resourceVersion`
//! read (or `create` it when it does not exist yet). The API server refuses a
//! write based on a stale read with 409, and we read and decide again; so of
//! two processes claiming the same key at once exactly one writes it, and the
//! other then finds the key and skips. Each write also drops records older
//! than 24 h ([`decide::RETENTION`]).
//!
//! The ServiceAccount needs `get`, `create` and `update` on this ConfigMap.

pub mod decide;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

pub use decide::{Existing, Intent, Record, Status};

/// The ConfigMap holding the records.
pub const STATE_CONFIGMAP: &str = "runway-kubeactions-state";
/// The ConfigMap of the executors beside jobs (`runway serve --local`): the
/// runners' ServiceAccount may write this one, never [`STATE_CONFIGMAP`],
/// which only the standalone server's own ServiceAccount writes.
pub const JOBS_STATE_CONFIGMAP: &str = "runway-kubeactions-state-jobs";
/// Overrides the namespace the ConfigMap lives in.
pub const NAMESPACE_ENV: &str = "RUNWAY_NAMESPACE";
/// Names this process in claims (`claimedBy`); defaults to pod name and pid.
pub const HOLDER_ENV: &str = "RUNWAY_HOLDER_IDENTITY";
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// Each conflict means another writer succeeded, so contention resolves; the
/// bound only stops a pathological loop (say, something rewriting the
/// ConfigMap continuously).
const MAX_ATTEMPTS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot {op} the ConfigMap {namespace}/{name}: {source} (the ServiceAccount needs get, create and update on configmaps there; set {NAMESPACE_ENV} to use another namespace)"
    )]
    Api {
        op: &'static str,
        namespace: String,
        name: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(
        "gave up writing the ConfigMap {namespace}/{name} after {attempts} conflicting writes; is something else rewriting it?"
    )]
    Contended {
        namespace: String,
        name: &'static str,
        attempts: usize,
    },
    #[error(
        "the ConfigMap {namespace}/{name} would hold {bytes} bytes of records after dropping those older than 24 h, over the {limit}-byte limit; too many actions in a day, nothing more can be recorded (so nothing runs) until records age out"
    )]
    Full {
        namespace: String,
        name: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error("cannot record the result of {key}: {refusal}")]
    Finish {
        key: String,
        refusal: decide::FinishRefusal,
    },
}

/// What claiming gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key was free and this record is now written under it.
    Won(Record),
    /// The key was already there (maybe written by a racing claim just now).
    Skipped(Existing),
}

/// One read-decide-write step's choice.
enum Change<T> {
    Keep(T),
    Put { key: String, value: Record, then: T },
}

#[derive(Clone)]
pub struct StateStore {
    api: Api<ConfigMap>,
    namespace: String,
    /// The ConfigMap's name: [`STATE_CONFIGMAP`] unless set otherwise.
    name: &'static str,
    holder: String,
    /// One read-decide-write at a time in this process (shared by clones):
    /// a process racing itself only burns conflicts. Other processes still
    /// race, and the resourceVersion settles that.
    writes: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl StateStore {
    pub fn new(client: Client, namespace: impl Into<String>, holder: impl Into<String>) -> Self {
        let namespace = namespace.into();
        StateStore {
            api: Api::namespaced(client, &namespace),
            namespace,
            name: STATE_CONFIGMAP,
            holder: holder.into(),
            writes: Default::default(),
        }
    }

    /// The store for this process: the namespace from `RUNWAY_NAMESPACE`,
    /// else the pod's own (the ServiceAccount's namespace file), else the
    /// kubeconfig's; the identity from `RUNWAY_HOLDER_IDENTITY`, else pod
    /// name and pid.
    pub fn from_env(client: Client) -> Self {
        let namespace = choose_namespace(
            std::env::var(NAMESPACE_ENV).ok(),
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok(),
            client.default_namespace(),
        );
        StateStore::new(client, namespace, default_holder())
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The same store in the ConfigMap `name` (e.g. [`JOBS_STATE_CONFIGMAP`]).
    pub fn in_configmap(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    pub fn configmap(&self) -> &'static str {
        self.name
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Claims `key` (or settles it without running, per `intent`) unless it
    /// is already recorded.
    pub async fn claim(
        &self,
        key: &str,
        intent: &Intent,
        now: DateTime<Utc>,
    ) -> Result<Claim, StateError> {
        self.update(now, |data| {
            Ok(
                match decide::decide_claim(
                    data.get(key).map(String::as_str),
                    intent,
                    &self.holder,
                    now,
                ) {
                    decide::ClaimDecision::Skip(existing) => Change::Keep(Claim::Skipped(existing)),
                    decide::ClaimDecision::Write(record) => Change::Put {
                        key: key.to_string(),
                        then: Claim::Won(record.clone()),
                        value: record,
                    },
                },
            )
        })
        .await
    }

    /// Records the result of an action this store claimed.
    pub async fn finish(
        &self,
        key: &str,
        status: Status,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Record, StateError> {
        self.update(now, |data| {
            let record = decide::decide_finish(
                data.get(key).map(String::as_str),
                &self.holder,
                status,
                message,
                now,
            )
            .map_err(|refusal| StateError::Finish {
                key: key.to_string(),
                refusal,
            })?;
            Ok(Change::Put {
                key: key.to_string(),
                then: record.clone(),
                value: record,
            })
        })
        .await
    }

    /// Every record, by key (for `runway kube` inspection and tests).
    pub async fn records(&self) -> Result<BTreeMap<String, Existing>, StateError> {
        let cm = self.read().await?;
        Ok(cm
            .and_then(|cm| cm.data)
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| (k.clone(), Existing::parse(v)))
            .collect())
    }

    async fn read(&self) -> Result<Option<ConfigMap>, StateError> {
        self.api
            .get_opt(self.name)
            .await
            .map_err(|source| self.api_error("read", source))
    }

    /// Read, decide, write with the resourceVersion read; again on conflict.
    async fn update<T>(
        &self,
        now: DateTime<Utc>,
        mut decide: impl FnMut(&BTreeMap<String, String>) -> Result<Change<T>, StateError>,
    ) -> Result<T, StateError> {
        let _one_at_a_time = self.writes.lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(conflict_backoff(attempt)).await;
            }
            let current = self.read().await?;
            let mut data = current
                .as_ref()
                .and_then(|cm| cm.data.clone())
                .unwrap_or_default();
            let (key, record, then) = match decide(&data)? {
                Change::Keep(then) => return Ok(then),
                Change::Put { key, value, then } => (key, value, then),
            };
            for old in decide::expired_keys(&data, now) {
                data.remove(&old);
            }
            let value = serde_json::to_string(&record).expect("a record serializes");
            data.insert(key, value);
            let bytes = decide::data_bytes(&data);
            if bytes > decide::MAX_DATA_BYTES {
                return Err(StateError::Full {
                    namespace: self.namespace.clone(),
                    name: self.name,
                    bytes,
                    limit: decide::MAX_DATA_BYTES,
                });
            }
            let written = match current {
                Some(mut cm) => {
                    // metadata.resourceVersion stays as read: the API server
                    // refuses this replace if anyone wrote in between.
                    cm.data = Some(data);
                    self.api
                        .replace(self.name, &PostParams::default(), &cm)
                        .await
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.to_string()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/managed-by".to_string(),
                                "runway".to_string(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        data: Some(data),
                        ..ConfigMap::default()
                    };
                    self.api.create(&PostParams::default(), &cm).await
                }
            };
            match written {
                Ok(_) => return Ok(then),
                Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => continue,
                Err(source) => return Err(self.api_error("write", source)),
            }
        }
        Err(StateError::Contended {
            namespace: self.namespace.clone(),
            name: self.name,
            attempts: MAX_ATTEMPTS,
        })
    }

    fn api_error(&self, op: &'static str, source: kube::Error) -> StateError {
        StateError::Api {
            op,
            namespace: self.namespace.clone(),
            name: self.name,
            source,
        }
    }
}

/// The state's namespace: the explicit setting, else the pod's own, else the
/// client's default (the kubeconfig context's).
pub fn choose_namespace(
    env: Option<String>,
    service_account_file: Option<String>,
    client_default: &str,
) -> String {
    [env, service_account_file]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| client_default.to_string())
}

/// `RUNWAY_HOLDER_IDENTITY`, else `<pod name>/<pid>`: enough to find the
/// process behind a claim that never finished.
pub fn default_holder() -> String {
    if let Ok(id) = std::env::var(HOLDER_ENV)
        && !id.trim().is_empty()
    {
        return id.trim().to_string();
    }
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    format!("{host}/{}", std::process::id())
}

/// The pause before retry `attempt` after a conflict: random (so that
/// writers that collided do not collide again), growing, at most 320 ms.
fn conflict_backoff(attempt: usize) -> std::time::Duration {
    let cap_ms = 10u64 << attempt.min(5);
    std::time::Duration::from_millis(rand::random_range(1..=cap_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_comes_from_the_setting_then_the_pod_then_the_kubeconfig() {
        let s = |v: &str| Some(v.to_string());
        let cases = [
            (s("ops"), s("runners\n"), "default", "ops"),
            (None, s("runners\n"), "default", "runners"),
            (s("  "), s("runners"), "default", "runners"),
            (None, None, "dev", "dev"),
            (None, s(""), "dev", "dev"),
        ];
        for (env, file, default, want) in cases {
            assert_eq!(
                choose_namespace(env.clone(), file.clone(), default),
                want,
                "{env:?} {file:?}"
            );
        }
    }
}
