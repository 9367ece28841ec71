//! The creating half of a reconcile pass: new runners (JIT config, Pod,
//! then its Secret), the ServiceAccount and IRSA checks, the quota backoff.
//!
//! A runner is made of a GitHub registration, a Pod and a Secret; whatever
//! fails half-way takes the made parts apart again before returning.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use rand::Rng;

use super::jit_secret;
use super::outcome::{
    CONDITION_IRSA_MISSING, CONDITION_QUOTA_EXCEEDED, Outcome, ReconcileError, RunnerCondition,
};
use super::pod::{RunnerPod, has_irsa};
use super::reconcile::Pass;
use super::registry::RunnerRegistry;
use super::state::pod_name;
use crate::crd::RunnerScaleSetSpec;
use crate::github::Error as GitHubError;
use crate::github::wire::JitConfig;

/// The runner's work folder, as ARC passes it.
const WORK_FOLDER: &str = "_work";
/// The ServiceAccount annotation that asks the pod identity webhook for IRSA.
const IRSA_ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// Random characters after the scale set's name in a runner name, as ARC.
const SUFFIX_LEN: usize = 5;

/// How one creation ended, short of an error.
enum Created {
    Runner(String),
    /// A ResourceQuota refused the pod (the API server's message); the
    /// registration was removed again.
    QuotaRefused(String),
}

impl<R: RunnerRegistry> Pass<'_, R> {
    /// Creates `count` runners, unless the quota backoff holds them back.
    /// `existing` are the scale set's pod names (never unregistered as
    /// stale when a name is taken).
    pub(super) async fn create_runners(
        &self,
        count: u32,
        existing: &[&str],
        now: DateTime<Utc>,
        out: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        let backoff = {
            let memory = self.ctx.memory();
            memory
                .quota
                .active_until(now)
                .map(|until| (until, memory.quota_message.clone().unwrap_or_default()))
        };
        if let Some((until, message)) = backoff {
            out.conditions.push(quota_condition(message));
            out.requeue_at(until, now);
            return Ok(());
        }
        // Template problems surface before anything is registered.
        RunnerPod::new(self.rss, format!("{}-check", self.prefix())).build()?;
        let irsa_expected = self.check_service_account().await?;
        // In waves of concurrent creations: a burst of jobs should not wait
        // for one round trip per runner, and a wave that hits a quota or an
        // error ends the pass without starting the next.
        let wave_size = self.ctx.settings.create_concurrency.max(1);
        let mut remaining = count as usize;
        while remaining > 0 {
            let wave = remaining.min(wave_size);
            remaining -= wave;
            let results = futures::future::join_all((0..wave).map(|_| async {
                let mut tally = Outcome::default();
                let result = self
                    .create_runner(irsa_expected, existing, &mut tally)
                    .await;
                (result, tally)
            }))
            .await;
            let mut stop = false;
            let mut refused = None;
            for (result, tally) in results {
                out.absorb(tally);
                match result {
                    Ok(Created::Runner(name)) => {
                        self.ctx.memory().quota.record_success();
                        out.created.push(name);
                    }
                    Ok(Created::QuotaRefused(message)) => {
                        refused = Some(message);
                        stop = true;
                    }
                    Err(error) => {
                        // Whatever failed will likely fail for the next runner too.
                        self.note(Err(error), out);
                        stop = true;
                    }
                }
            }
            if let Some(message) = refused {
                self.record_quota_refusal(message, now, out);
            }
            if stop {
                break;
            }
        }
        Ok(())
    }

    fn record_quota_refusal(&self, message: String, now: DateTime<Utc>, out: &mut Outcome) {
        let settings = &self.ctx.settings;
        let until = {
            let mut memory = self.ctx.memory();
            memory.quota.record_refusal(
                now,
                delta(settings.quota_backoff_base),
                delta(settings.quota_backoff_max),
            );
            memory.quota_message = Some(message.clone());
            memory.quota.until
        };
        out.conditions.push(quota_condition(message));
        if let Some(until) = until {
            out.requeue_at(until, now);
        }
    }

    /// The runner pods' ServiceAccount must exist before them: the pod
    /// identity webhook only injects IRSA for accounts it has seen. Whether
    /// it asks for IRSA.
    async fn check_service_account(&self) -> Result<bool, ReconcileError> {
        let (account, field) = service_account(&self.rss.spec);
        let accounts: Api<ServiceAccount> = Api::namespaced(self.ctx.kube.clone(), self.namespace);
        let found = accounts.get_opt(&account).await.map_err(|e| {
            ReconcileError::kube(
                format!("get ServiceAccount {account} in {}", self.namespace),
                e,
            )
        })?;
        let sa = found.ok_or_else(|| ReconcileError::ServiceAccountMissing {
            namespace: self.namespace.into(),
            account: account.clone(),
            field,
        })?;
        Ok(sa
            .metadata
            .annotations
            .is_some_and(|a| a.get(IRSA_ROLE_ANNOTATION).is_some_and(|v| !v.is_empty())))
    }

    async fn create_runner(
        &self,
        irsa_expected: bool,
        existing: &[&str],
        out: &mut Outcome,
    ) -> Result<Created, ReconcileError> {
        let mut replaced = false;
        loop {
            let jit = self.register(existing, out).await?;
            let name = jit.runner.name.clone();
            let pod = match RunnerPod::new(self.rss, &name)
                .with_runner_id(jit.runner.id)
                .with_sidecar_support(self.ctx.settings.sidecars)
                .build()
            {
                Ok(pod) => pod,
                Err(e) => {
                    self.unregister(jit.runner.id, out).await?;
                    return Err(e.into());
                }
            };
            out.kube.pod_creates += 1;
            let created = match self.pods.create(&PostParams::default(), &pod).await {
                Ok(created) => created,
                Err(e) => {
                    self.unregister(jit.runner.id, out).await?;
                    if let Some(message) = quota_refusal(&e) {
                        return Ok(Created::QuotaRefused(message));
                    }
                    return Err(ReconcileError::kube(format!("create runner pod {name}"), e));
                }
            };
            if irsa_expected && !has_irsa(&created) {
                if !replaced {
                    replaced = true;
                    self.discard(&created, jit.runner.id, out).await?;
                    out.replaced_without_irsa.push(name.clone());
                    self.event(
                        EventType::Warning,
                        "RunnerPodWithoutIrsa",
                        format!(
                            "runner pod {name} was admitted without IRSA (no AWS_ROLE_ARN, no aws-iam-token volume): the pod identity webhook had not seen its ServiceAccount yet; replaced it with a new runner"
                        ),
                        out,
                    )
                    .await;
                    continue;
                }
                out.conditions.push(RunnerCondition {
                    type_: CONDITION_IRSA_MISSING,
                    reason: "RunnerPodWithoutIrsa",
                    message: format!(
                        "runner pod {name} has no IRSA credentials even after one replacement; check that the pod identity webhook runs and serves this namespace"
                    ),
                });
            }
            return self.add_secret(&created, &jit, out).await;
        }
    }

    /// The JIT Secret, owned by the created pod; without it the runner is
    /// taken apart again.
    async fn add_secret(
        &self,
        pod: &Pod,
        jit: &JitConfig,
        out: &mut Outcome,
    ) -> Result<Created, ReconcileError> {
        let name = pod_name(pod).to_string();
        let made = match jit_secret(pod, jit.encoded_jit_config.expose()) {
            Ok(secret) => {
                out.kube.secret_creates += 1;
                let secrets: Api<Secret> = Api::namespaced(self.ctx.kube.clone(), self.namespace);
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        ReconcileError::kube(format!("create the JIT Secret of {name}"), e)
                    })
            }
            Err(e) => Err(e.into()),
        };
        match made {
            Ok(()) => Ok(Created::Runner(name)),
            Err(error) => {
                if let Err(cleanup) = self.discard(pod, jit.runner.id, out).await {
                    self.note(Err(cleanup), out);
                }
                Err(error)
            }
        }
    }

    /// Takes apart a runner this pass created: registration, pod, finalizer.
    async fn discard(
        &self,
        pod: &Pod,
        runner_id: i64,
        out: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        self.unregister(runner_id, out).await?;
        match self.delete(pod, out).await? {
            Some(deleting) => self.remove_finalizer(&deleting, out).await,
            None => Ok(()),
        }
    }

    /// A JIT config for a fresh runner name. A taken name is looked up: a
    /// stale runner of this scale set (no pod of ours) is removed; then one
    /// more try with a new name. (A runner a concurrent creation of this very
    /// wave registered has no pod yet either; with 36^5 suffixes that clash
    /// is left to chance.)
    async fn register(
        &self,
        existing: &[&str],
        out: &mut Outcome,
    ) -> Result<JitConfig, ReconcileError> {
        let mut name = self.new_runner_name();
        let mut retried = false;
        loop {
            out.github.jit_configs += 1;
            let result = self
                .ctx
                .github
                .generate_jit_config(self.scale_set_id, &name, WORK_FOLDER)
                .await;
            match result {
                Ok(jit) => return Ok(jit),
                Err(GitHubError::AgentExists { .. }) if !retried => {
                    retried = true;
                    out.github.runner_lookups += 1;
                    let taken =
                        self.ctx.github.runner_by_name(&name).await.map_err(|e| {
                            ReconcileError::github(format!("look up runner {name}"), e)
                        })?;
                    if let Some(runner) = taken
                        && runner.runner_scale_set_id == self.scale_set_id
                        && !existing.contains(&name.as_str())
                    {
                        self.unregister(runner.id, out).await?;
                    }
                    name = self.new_runner_name();
                }
                Err(e) => {
                    return Err(ReconcileError::github(
                        format!("generate a JIT config for runner {name}"),
                        e,
                    ));
                }
            }
        }
    }

    /// The scale set's name as a pod-name prefix (leaving room for the
    /// random suffix).
    fn prefix(&self) -> String {
        let cleaned: String = self
            .name
            .chars()
            .map(|c| if c == '.' { '-' } else { c })
            .take(63 - 1 - SUFFIX_LEN)
            .collect();
        cleaned.trim_end_matches('-').to_string()
    }

    fn new_runner_name(&self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let suffix: String = (0..SUFFIX_LEN)
            .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
            .collect();
        format!("{}-{suffix}", self.prefix())
    }

    /// An Event on the scale set; failing to record it fails nothing.
    async fn event(&self, type_: EventType, reason: &str, note: String, out: &mut Outcome) {
        out.kube.events += 1;
        self.ctx
            .event(self.rss, type_, reason, "CreateRunner", note)
            .await;
    }
}

/// The runner pods' ServiceAccount and the setting it comes from.
fn service_account(spec: &RunnerScaleSetSpec) -> (String, &'static str) {
    let non_empty = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(String::from);
    if let Some(account) = non_empty(&spec.service_account_name) {
        return (account, "serviceAccountName");
    }
    if let Some(account) = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| non_empty(&s.service_account_name))
    {
        return (account, "template.spec.serviceAccountName");
    }
    (
        "default".into(),
        "serviceAccountName (unset: the namespace's default)",
    )
}

/// The API server's message when a ResourceQuota refused the pod.
fn quota_refusal(error: &kube::Error) -> Option<String> {
    match error {
        kube::Error::Api(status)
            if status.code == 403 && status.message.contains("exceeded quota") =>
        {
            Some(status.message.clone())
        }
        _ => None,
    }
}

fn quota_condition(message: String) -> RunnerCondition {
    RunnerCondition {
        type_: CONDITION_QUOTA_EXCEEDED,
        reason: "PodQuotaExceeded",
        message: format!(
            "{message}; runner pods are retried with backoff; raise the namespace's ResourceQuota or lower maxRunners"
        ),
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_names_its_setting() {
        let mut spec: RunnerScaleSetSpec = serde_json::from_value(serde_json::json!({
            "githubConfigUrl": "https://github.com/o",
            "githubConfigSecret": "s",
            "template": {"spec": {"containers": [{"name": "runner", "image": "r"}]}}
        }))
        .unwrap();
        assert_eq!(service_account(&spec).0, "default");
        spec.template.spec.as_mut().unwrap().service_account_name = Some("from-template".into());
        assert_eq!(
            service_account(&spec),
            ("from-template".into(), "template.spec.serviceAccountName")
        );
        spec.service_account_name = Some("runners".into());
        assert_eq!(
            service_account(&spec),
            ("runners".into(), "serviceAccountName")
        );
    }

    mod twin {
        use std::collections::VecDeque;
        use std::sync::Mutex;

        use crate::github::Error as GitHubError;
        use crate::github::Secret;
        use crate::github::wire::{JitConfig, RunnerReference};
        use crate::runner::registry::RunnerRegistry;

        /// A scripted registry: answers in order, records every call.
        #[derive(Default)]
        pub struct Twin {
            pub jit: Mutex<VecDeque<Result<(), GitHubError>>>,
            pub lookups: Mutex<VecDeque<Option<RunnerReference>>>,
            pub calls: Mutex<Vec<String>>,
        }

        impl Twin {
            pub fn calls(&self) -> Vec<String> {
                self.calls.lock().unwrap().clone()
            }
        }

        pub fn exists() -> GitHubError {
            GitHubError::AgentExists {
                operation: "generate".into(),
                message: "taken".into(),
            }
        }

        impl RunnerRegistry for Twin {
            async fn generate_jit_config(
                &self,
                scale_set_id: i64,
                runner_name: &str,
                _work_folder: &str,
            ) -> Result<JitConfig, GitHubError> {
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("jit {runner_name}"));
                let next = self.jit.lock().unwrap().pop_front().unwrap_or(Ok(()));
                next.map(|()| JitConfig {
                    runner: RunnerReference {
                        id: 1,
                        name: runner_name.into(),
                        runner_scale_set_id: scale_set_id,
                    },
                    encoded_jit_config: Secret::new("jit"),
                })
            }

            async fn runner_by_name(
                &self,
                name: &str,
            ) -> Result<Option<RunnerReference>, GitHubError> {
                self.calls.lock().unwrap().push(format!("lookup {name}"));
                Ok(self.lookups.lock().unwrap().pop_front().flatten())
            }

            async fn remove_runner(&self, runner_id: i64) -> Result<(), GitHubError> {
                self.calls
                    .lock()
                    .unwrap()
                    .push(format!("remove {runner_id}"));
                Ok(())
            }
        }
    }

    use crate::crd::RunnerScaleSet;
    use crate::runner::reconcile::{Context, Settings};
    use twin::{Twin, exists};

    /// A pass whose Kubernetes client points nowhere: `register` makes no
    /// Kubernetes call.
    async fn register_with(twin: Twin) -> (Result<String, ReconcileError>, Outcome, Vec<String>) {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let spec = serde_json::from_value(serde_json::json!({
            "githubConfigUrl": "https://github.com/o",
            "githubConfigSecret": "s",
            "template": {"spec": {"containers": [{"name": "runner", "image": "r"}]}}
        }))
        .unwrap();
        let rss = RunnerScaleSet::new("my.set", spec);
        let ctx = Context::new(client.clone(), twin, Settings::default());
        let pass = Pass {
            ctx: &ctx,
            rss: &rss,
            name: "my.set",
            namespace: "ns",
            scale_set_id: 7,
            pods: Api::namespaced(client, "ns"),
        };
        let mut out = Outcome::default();
        let result = pass.register(&[], &mut out).await.map(|j| j.runner.name);
        (result, out, ctx.github.calls())
    }

    fn taken_by(scale_set_id: i64) -> Option<crate::github::wire::RunnerReference> {
        Some(crate::github::wire::RunnerReference {
            id: 99,
            name: "whatever".into(),
            runner_scale_set_id: scale_set_id,
        })
    }

    #[tokio::test]
    async fn fresh_names_are_pod_names() {
        let (name, out, _) = register_with(Twin::default()).await;
        let name = name.unwrap();
        assert!(name.starts_with("my-set-"), "{name}");
        assert_eq!(name.len(), "my-set-".len() + SUFFIX_LEN);
        assert_eq!(out.github.jit_configs, 1);
    }

    #[tokio::test]
    async fn a_stale_runner_of_this_scale_set_is_removed_and_a_new_name_tried() {
        let twin = Twin::default();
        twin.jit.lock().unwrap().push_back(Err(exists()));
        twin.lookups.lock().unwrap().push_back(taken_by(7));
        let (name, out, calls) = register_with(twin).await;
        let name = name.unwrap();
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert!(calls[0].starts_with("jit "));
        assert_eq!(calls[1], calls[0].replace("jit", "lookup"));
        assert_eq!(calls[2], "remove 99");
        assert_eq!(calls[3], format!("jit {name}"));
        assert_ne!(calls[0], calls[3]);
        assert_eq!(
            (
                out.github.jit_configs,
                out.github.runner_lookups,
                out.github.runner_removals
            ),
            (2, 1, 1)
        );
    }

    #[tokio::test]
    async fn another_scale_sets_runner_is_left_alone() {
        let twin = Twin::default();
        twin.jit.lock().unwrap().push_back(Err(exists()));
        twin.lookups.lock().unwrap().push_back(taken_by(8));
        let (name, _, calls) = register_with(twin).await;
        assert!(name.is_ok());
        assert!(!calls.iter().any(|c| c.starts_with("remove")), "{calls:?}");
        assert_eq!(calls.len(), 3);
    }

    #[tokio::test]
    async fn the_name_is_retried_once_only() {
        let twin = Twin::default();
        twin.jit
            .lock()
            .unwrap()
            .extend([Err(exists()), Err(exists())]);
        let (name, out, _) = register_with(twin).await;
        let error = name.unwrap_err();
        assert_eq!(error.metric_label(), "github");
        assert!(
            error.to_string().contains("AgentExistsException"),
            "{error}"
        );
        assert_eq!(out.github.jit_configs, 2);
    }
}
