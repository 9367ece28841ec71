//! The GitHub client of one `RunnerScaleSet`: credentials from its
//! `githubConfigSecret`, the URL from `githubConfigUrl`, the CA bundle
//! `githubServerTLS` names, and the `proxy` with its credential Secrets,
//! each error naming the setting to fix.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::Owner;
use super::proxy::{self, ProxyError};
use super::supervisor::{SupervisorError, SupervisorOptions};
use crate::crd::RunnerScaleSet;
use crate::github::{ActionsClient, Credentials, GitHubConfig, ProxyConfig, ProxySettings};

pub(crate) async fn github_client(
    kube: &Client,
    rss: &RunnerScaleSet,
    owner: &Owner,
    opts: &SupervisorOptions,
) -> Result<ActionsClient, SupervisorError> {
    let secret_name = &rss.spec.github_config_secret;
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &owner.namespace);
    let secret = secrets
        .get_opt(secret_name)
        .await
        .map_err(|source| SupervisorError::ReadSecret {
            namespace: owner.namespace.clone(),
            secret: secret_name.clone(),
            source,
        })?
        .ok_or_else(|| SupervisorError::SecretMissing {
            namespace: owner.namespace.clone(),
            secret: secret_name.clone(),
        })?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let credentials =
        Credentials::from_secret_data(&data).map_err(|source| SupervisorError::Credentials {
            namespace: owner.namespace.clone(),
            secret: secret_name.clone(),
            source,
        })?;
    let config = GitHubConfig::parse(&rss.spec.github_config_url)?;
    let mut options = opts.github.clone();
    if let Some(pem) = server_ca(kube, rss, owner).await? {
        options.transport.extra_root_ca_pem = Some(pem);
    }
    // With `proxy` set, it alone decides: the controller's environment
    // (https_proxy, no_proxy) is not consulted.
    if let Some(settings) = proxy_settings(kube, rss, owner).await? {
        options.transport.proxy = ProxyConfig::Explicit(settings);
    }
    ActionsClient::new(config, credentials, options).map_err(|source| SupervisorError::Client {
        url: rss.spec.github_config_url.clone(),
        source,
    })
}

/// The CA bundle `githubServerTLS.certificateFrom.configMapKeyRef` names
/// (ARC's setting for GitHub Enterprise Server behind a private CA).
async fn server_ca(
    kube: &Client,
    rss: &RunnerScaleSet,
    owner: &Owner,
) -> Result<Option<Vec<u8>>, SupervisorError> {
    let Some(selector) = rss
        .spec
        .github_server_tls
        .as_ref()
        .and_then(|tls| tls.certificate_from.as_ref())
        .and_then(|from| from.config_map_key_ref.as_ref())
    else {
        return Ok(None);
    };
    let error = |reason: String| SupervisorError::ServerTls {
        namespace: owner.namespace.clone(),
        config_map: selector.name.clone(),
        key: selector.key.clone(),
        reason,
    };
    let maps: Api<ConfigMap> = Api::namespaced(kube.clone(), &owner.namespace);
    let map = maps
        .get_opt(&selector.name)
        .await
        .map_err(|e| error(format!("reading it failed: {e}")))?
        .ok_or_else(|| error("it does not exist".into()))?;
    let pem = map
        .data
        .as_ref()
        .and_then(|d| d.get(&selector.key))
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| {
            map.binary_data
                .as_ref()
                .and_then(|d| d.get(&selector.key))
                .map(|v| v.0.clone())
        })
        .ok_or_else(|| error("the key is missing".into()))?;
    Ok(Some(pem))
}

/// `spec.proxy` with the credentials of its `credentialSecretRef` Secrets,
/// read now: a changed Secret applies when the supervisor next starts.
async fn proxy_settings(
    kube: &Client,
    rss: &RunnerScaleSet,
    owner: &Owner,
) -> Result<Option<ProxySettings>, SupervisorError> {
    let Some(spec) = &rss.spec.proxy else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &owner.namespace);
    let mut read = BTreeMap::new();
    for (scheme, name) in proxy::credential_refs(spec) {
        if read.contains_key(name) {
            continue;
        }
        let secret = secrets
            .get_opt(name)
            .await
            .map_err(|e| ProxyError::ReadSecret {
                field: scheme.credentials_field(),
                namespace: owner.namespace.clone(),
                secret: name.to_owned(),
                reason: e.to_string(),
            })?;
        let data = secret.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        });
        read.insert(name.to_owned(), data);
    }
    Ok(Some(proxy::proxy_settings(spec, &owner.namespace, &read)?))
}
