//! The creating half of a reconcile pass: new runners (JIT config, Pod,
//! then its Secret), the ServiceAccount and IRSA checks, the quota backoff.
//!
//! A runner is made of a GitHub registration, a Pod and a Secret; whatever
//! fails half-way takes the made parts apart again before returning.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::events::EventType;
use rand::Rng;

use super::jit_secret;
use super::outcome::{CONDITION_QUOTA_EXCEEDED, Outcome, ReconcileError, RunnerCondition};
use super::pod::{RunnerPod, has_irsa};
use super::reconcile::Pass;
use super::reconcile::irsa_condition;
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
        self.ctx.memory().irsa_expected = Some(irsa_expected);
        // Up to `create_concurrency` creations in flight, a new one started
        // as soon as one ends (a burst of jobs should not wait for one round
        // trip per runner, nor for the slowest of a wave); a quota refusal or
        // an error stops starting new ones.
        let concurrency = self.ctx.settings.create_concurrency.max(1);
        let one = || async {
            let mut tally = Outcome::default();
            let result = self
                .create_runner(irsa_expected, existing, &mut tally)
                .await;
            (result, tally)
        };
        let mut in_flight = FuturesUnordered::new();
        let mut to_start = count as usize;
        let mut stop = false;
        let mut refused = None;
        loop {
            while !stop && to_start > 0 && in_flight.len() < concurrency {
                in_flight.push(one());
                to_start -= 1;
            }
            let Some((result, tally)) = in_flight.next().await else {
                break;
            };
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

    /// One runner: Pod, then its registration (JIT config), then the JIT
    /// Secret owned by the Pod. The Pod comes first so that whatever stops
    /// this half-way (an error, a crash) leaves something a later pass
    /// finds by listing pods: a Pod without its Secret is taken apart,
    /// registration (looked up by the pod's name) included. A registration
    /// made first would be invisible to a new process: an orphan on GitHub.
    async fn create_runner(
        &self,
        irsa_expected: bool,
        existing: &[&str],
        out: &mut Outcome,
    ) -> Result<Created, ReconcileError> {
        let mut replaced = false;
        let mut taken: Option<String> = None;
        loop {
            let name = self.new_runner_name();
            let pod = RunnerPod::new(self.rss, &name)
                .with_sidecar_support(self.ctx.settings.sidecars)
                .build()?;
            out.kube.pod_creates += 1;
            let created = match self.pods.create(&PostParams::default(), &pod).await {
                Ok(created) => created,
                Err(e) => {
                    if let Some(message) = quota_refusal(&e) {
                        return Ok(Created::QuotaRefused(message));
                    }
                    return Err(ReconcileError::kube(format!("create runner pod {name}"), e));
                }
            };
            if irsa_expected && !has_irsa(&created) {
                if !replaced {
                    replaced = true;
                    self.discard(&created, None, out).await?;
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
                out.conditions
                    .extend(irsa_condition(std::slice::from_ref(&created), Some(true)));
            }
            let jit = match self.register(&name, existing, out).await {
                Ok(Some(jit)) => jit,
                // The name belongs to another scale set's runner: this pod
                // cannot become a runner; try again under a new name.
                Ok(None) => {
                    self.discard(&created, None, out).await?;
                    match taken.replace(name.clone()) {
                        None => continue,
                        Some(first) => {
                            return Err(ReconcileError::NameTaken {
                                first,
                                second: name,
                            });
                        }
                    }
                }
                Err(error) => {
                    if let Err(cleanup) = self.discard(&created, None, out).await {
                        self.note(Err(cleanup), out);
                    }
                    return Err(error);
                }
            };
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
                if let Err(cleanup) = self.discard(pod, Some(jit.runner.id), out).await {
                    self.note(Err(cleanup), out);
                }
                Err(error)
            }
        }
    }

    /// Takes apart a runner this pass created: its registration if it has
    /// one, the pod, the finalizer.
    async fn discard(
        &self,
        pod: &Pod,
        runner_id: Option<i64>,
        out: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        if let Some(id) = runner_id {
            self.unregister(id, out).await?;
        }
        self.delete_released(pod, out).await
    }

    /// A JIT config for runner `name` (its pod exists). A taken name is
    /// looked up: a stale runner of this scale set (no pod of ours) is
    /// removed and the name tried once more; `None` if the name belongs to
    /// another scale set's runner (the caller starts over with a new pod).
    async fn register(
        &self,
        name: &str,
        existing: &[&str],
        out: &mut Outcome,
    ) -> Result<Option<JitConfig>, ReconcileError> {
        let mut retried = false;
        loop {
            out.github.jit_configs += 1;
            let result = self
                .ctx
                .github
                .generate_jit_config(self.scale_set_id, name, WORK_FOLDER)
                .await;
            match result {
                Ok(jit) => return Ok(Some(jit)),
                Err(GitHubError::AgentExists { .. }) if !retried => {
                    retried = true;
                    out.github.runner_lookups += 1;
                    let taken =
                        self.ctx.github.runner_by_name(name).await.map_err(|e| {
                            ReconcileError::github(format!("look up runner {name}"), e)
                        })?;
                    match taken {
                        // Gone meanwhile: just try again.
                        None => {}
                        Some(runner)
                            if runner.runner_scale_set_id == self.scale_set_id
                                && !existing.contains(&name) =>
                        {
                            self.unregister(runner.id, out).await?;
                        }
                        Some(_) => return Ok(None),
                    }
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
    async fn register_with(
        twin: Twin,
    ) -> (Result<Option<String>, ReconcileError>, Outcome, Vec<String>) {
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
            uid: "uid-1",
            scale_set_id: 7,
            pods: Api::namespaced(client, "ns"),
        };
        let mut out = Outcome::default();
        let name = pass.new_runner_name();
        let result = pass
            .register(&name, &[], &mut out)
            .await
            .map(|j| j.map(|j| j.runner.name));
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
        let name = name.unwrap().expect("registered");
        assert!(name.starts_with("my-set-"), "{name}");
        assert_eq!(name.len(), "my-set-".len() + SUFFIX_LEN);
        assert_eq!(out.github.jit_configs, 1);
    }

    #[tokio::test]
    async fn a_stale_runner_of_this_scale_set_is_removed_and_the_name_tried_again() {
        let twin = Twin::default();
        twin.jit.lock().unwrap().push_back(Err(exists()));
        twin.lookups.lock().unwrap().push_back(taken_by(7));
        let (name, out, calls) = register_with(twin).await;
        let name = name.unwrap().expect("registered");
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert_eq!(calls[0], format!("jit {name}"));
        assert_eq!(calls[1], format!("lookup {name}"));
        assert_eq!(calls[2], "remove 99");
        assert_eq!(calls[3], format!("jit {name}"), "the pod's name again");
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
        assert_eq!(name.unwrap(), None, "the caller tries another pod and name");
        assert!(!calls.iter().any(|c| c.starts_with("remove")), "{calls:?}");
        assert_eq!(calls.len(), 2);
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
