//! ARC's `proxy` setting of a `RunnerScaleSet` as the settings of its GitHub
//! transport: `http.url` and `https.url` with the `username` and `password`
//! of their `credentialSecretRef` Secret put in the URL's user-info
//! (percent-encoded), `noProxy` as it is.
//!
//! As in ARC, `http.url` carries the `http://` GitHub URLs and `https.url`
//! the `https://` ones, and a scheme without a proxy goes direct. Unlike
//! ARC (Go's `httpproxy`), loopback and `localhost` are not exempt: only
//! `noProxy` is, so a proxy that is set is used. With `proxy` set, the
//! controller's own `https_proxy`/`no_proxy` environment is not consulted.
//!
//! The Secrets are read by the caller (`client`); this decides only. No
//! error quotes a URL or a Secret's value: either may hold the password.

use std::collections::BTreeMap;

use crate::crd::{ProxyConfig, ProxyServer};
use crate::github::ProxySettings;

pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";

/// The Secret of one `credentialSecretRef`, as read: `None` if it does not
/// exist, else its data.
pub type SecretData = Option<BTreeMap<String, Vec<u8>>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error(
        "{field}: Secret {namespace}/{secret} does not exist; create it with `username` and `password` keys"
    )]
    SecretMissing {
        field: &'static str,
        namespace: String,
        secret: String,
    },
    #[error("{field}: Secret {namespace}/{secret} has no `{key}` key")]
    KeyMissing {
        field: &'static str,
        namespace: String,
        secret: String,
        key: &'static str,
    },
    #[error("{field}: Secret {namespace}/{secret}: the `{key}` key is not UTF-8 text")]
    NotText {
        field: &'static str,
        namespace: String,
        secret: String,
        key: &'static str,
    },
    #[error("{field}: reading Secret {namespace}/{secret}: {reason}")]
    ReadSecret {
        field: &'static str,
        namespace: String,
        secret: String,
        reason: String,
    },
    /// The URL is not quoted: it may hold credentials.
    #[error("{field} is not a usable proxy URL; expected http://host:port")]
    BadUrl { field: &'static str },
}

/// `spec.proxy.http` or `spec.proxy.https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    Http,
    Https,
}

impl ProxyScheme {
    pub fn url_field(self) -> &'static str {
        match self {
            ProxyScheme::Http => "spec.proxy.http.url",
            ProxyScheme::Https => "spec.proxy.https.url",
        }
    }

    pub fn credentials_field(self) -> &'static str {
        match self {
            ProxyScheme::Http => "spec.proxy.http.credentialSecretRef",
            ProxyScheme::Https => "spec.proxy.https.credentialSecretRef",
        }
    }
}

fn servers(proxy: &ProxyConfig) -> impl Iterator<Item = (ProxyScheme, &ProxyServer)> {
    [
        (ProxyScheme::Http, proxy.http.as_ref()),
        (ProxyScheme::Https, proxy.https.as_ref()),
    ]
    .into_iter()
    .filter_map(|(scheme, server)| Some((scheme, server?)))
}

/// The Secrets to read: each `credentialSecretRef` that is set, with the
/// field that names it.
pub fn credential_refs(proxy: &ProxyConfig) -> Vec<(ProxyScheme, &str)> {
    servers(proxy)
        .filter_map(|(scheme, server)| {
            let name = server.credential_secret_ref.as_deref()?;
            (!name.is_empty()).then_some((scheme, name))
        })
        .collect()
}

/// The transport's proxy settings for `proxy`, given the Secrets
/// [`credential_refs`] named (by name) in `namespace`.
pub fn proxy_settings(
    proxy: &ProxyConfig,
    namespace: &str,
    secrets: &BTreeMap<String, SecretData>,
) -> Result<ProxySettings, ProxyError> {
    let mut settings = ProxySettings {
        no_proxy: proxy.no_proxy.clone(),
        ..ProxySettings::default()
    };
    for (scheme, server) in servers(proxy) {
        let url = server_url(scheme, server, namespace, secrets)?;
        match scheme {
            ProxyScheme::Http => settings.http_url = Some(url),
            ProxyScheme::Https => settings.https_url = Some(url),
        }
    }
    Ok(settings)
}

fn server_url(
    scheme: ProxyScheme,
    server: &ProxyServer,
    namespace: &str,
    secrets: &BTreeMap<String, SecretData>,
) -> Result<String, ProxyError> {
    let bad_url = || ProxyError::BadUrl {
        field: scheme.url_field(),
    };
    let mut url = url::Url::parse(server.url.trim()).map_err(|_| bad_url())?;
    let Some(name) = server
        .credential_secret_ref
        .as_deref()
        .filter(|n| !n.is_empty())
    else {
        return Ok(url.into());
    };
    let field = scheme.credentials_field();
    let data =
        secrets
            .get(name)
            .and_then(Option::as_ref)
            .ok_or_else(|| ProxyError::SecretMissing {
                field,
                namespace: namespace.to_owned(),
                secret: name.to_owned(),
            })?;
    let value = |key: &'static str| {
        secret_text(data, key).map_err(|missing| {
            let (namespace, secret) = (namespace.to_owned(), name.to_owned());
            if missing {
                ProxyError::KeyMissing {
                    field,
                    namespace,
                    secret,
                    key,
                }
            } else {
                ProxyError::NotText {
                    field,
                    namespace,
                    secret,
                    key,
                }
            }
        })
    };
    let (username, password) = (value(USERNAME_KEY)?, value(PASSWORD_KEY)?);
    url.set_username(username).map_err(|()| bad_url())?;
    url.set_password(Some(password)).map_err(|()| bad_url())?;
    Ok(url.into())
}

/// The text under `key`; `Err(true)` if it is missing, `Err(false)` if it is
/// not UTF-8.
fn secret_text<'a>(data: &'a BTreeMap<String, Vec<u8>>, key: &str) -> Result<&'a str, bool> {
    let bytes = data.get(key).ok_or(true)?;
    std::str::from_utf8(bytes).map_err(|_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str, secret: Option<&str>) -> Option<ProxyServer> {
        Some(ProxyServer {
            url: url.into(),
            credential_secret_ref: secret.map(Into::into),
        })
    }

    fn secret(pairs: &[(&str, &[u8])]) -> SecretData {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
                .collect(),
        )
    }

    #[test]
    fn urls_take_the_secret_credentials_percent_encoded() {
        let proxy = ProxyConfig {
            http: server("http://proxy.corp:3128", Some("auth")),
            https: server("http://proxy.corp:3129", None),
            no_proxy: vec!["example.com".into(), "10.0.0.0/8".into()],
        };
        let secrets = BTreeMap::from([(
            "auth".to_owned(),
            secret(&[("username", b"run:way"), ("password", b"p@ss/w:rd")]),
        )]);
        let settings = proxy_settings(&proxy, "ci", &secrets).unwrap();
        assert_eq!(
            settings.http_url.as_deref(),
            Some("http://run%3Away:p%40ss%2Fw%3Ard@proxy.corp:3128/")
        );
        assert_eq!(
            settings.https_url.as_deref(),
            Some("http://proxy.corp:3129/")
        );
        assert_eq!(settings.no_proxy, ["example.com", "10.0.0.0/8"]);
        // The settings' Debug (ClientOptions is Debug) hides the password.
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("p%40ss") && !debug.contains("run%3Away"),
            "{debug}"
        );
    }

    #[test]
    fn the_secret_wins_over_credentials_in_the_url() {
        let proxy = ProxyConfig {
            https: server("http://old:stale@proxy.corp:3128", Some("auth")),
            ..ProxyConfig::default()
        };
        let secrets = BTreeMap::from([(
            "auth".to_owned(),
            secret(&[("username", b"u"), ("password", b"p")]),
        )]);
        let settings = proxy_settings(&proxy, "ci", &secrets).unwrap();
        assert_eq!(settings.http_url, None);
        assert_eq!(
            settings.https_url.as_deref(),
            Some("http://u:p@proxy.corp:3128/")
        );
    }

    #[test]
    fn missing_secrets_and_keys_name_the_field_and_never_the_value() {
        let https_only = ProxyConfig {
            https: server("http://proxy.corp:3128", Some("auth")),
            ..ProxyConfig::default()
        };
        let http_only = ProxyConfig {
            http: server("http://proxy.corp:3128", Some("auth")),
            ..ProxyConfig::default()
        };
        let cases: Vec<(&ProxyConfig, SecretData, &str)> = vec![
            (
                &https_only,
                None,
                "spec.proxy.https.credentialSecretRef: Secret ci/auth does not exist",
            ),
            (
                &http_only,
                None,
                "spec.proxy.http.credentialSecretRef: Secret ci/auth does not exist",
            ),
            (
                &https_only,
                secret(&[("password", b"hunter2")]),
                "spec.proxy.https.credentialSecretRef: Secret ci/auth has no `username` key",
            ),
            (
                &https_only,
                secret(&[("username", b"u")]),
                "spec.proxy.https.credentialSecretRef: Secret ci/auth has no `password` key",
            ),
            (
                &https_only,
                secret(&[("username", b"u"), ("password", b"\xffhunter2")]),
                "spec.proxy.https.credentialSecretRef: Secret ci/auth: the `password` key is not UTF-8",
            ),
        ];
        for (proxy, data, expected) in cases {
            let secrets = BTreeMap::from([("auth".to_owned(), data)]);
            let error = proxy_settings(proxy, "ci", &secrets)
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(expected), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
        // A Secret the caller never read counts as missing.
        let error = proxy_settings(&https_only, "ci", &BTreeMap::new()).unwrap_err();
        assert!(matches!(error, ProxyError::SecretMissing { .. }), "{error}");
    }

    #[test]
    fn urls_that_cannot_hold_credentials_are_refused_unquoted() {
        let proxy = ProxyConfig {
            http: server("mailto:hunter2@proxy", Some("auth")),
            ..ProxyConfig::default()
        };
        let secrets = BTreeMap::from([(
            "auth".to_owned(),
            secret(&[("username", b"u"), ("password", b"p")]),
        )]);
        let error = proxy_settings(&proxy, "ci", &secrets).unwrap_err();
        assert_eq!(
            error,
            ProxyError::BadUrl {
                field: "spec.proxy.http.url"
            }
        );
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn only_set_references_are_read() {
        let proxy = ProxyConfig {
            http: server("http://p:1", Some("a")),
            https: server("http://p:2", Some("")),
            no_proxy: vec![],
        };
        assert_eq!(credential_refs(&proxy), [(ProxyScheme::Http, "a")]);
        assert!(credential_refs(&ProxyConfig::default()).is_empty());
    }
}
