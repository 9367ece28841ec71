//! GitHub credentials as ARC keeps them in the `githubConfigSecret`, and the
//! GitHub App JWT.
//!
//! ARC's key names are kept so existing Secrets work unchanged:
//! `github_token` (a PAT), or `github_app_id` (numeric app id or client id),
//! `github_app_installation_id` and `github_app_private_key` (PEM).

use std::collections::BTreeMap;
use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::github::secret::Secret;

pub const TOKEN_KEY: &str = "github_token";
pub const APP_ID_KEY: &str = "github_app_id";
pub const INSTALLATION_ID_KEY: &str = "github_app_installation_id";
pub const PRIVATE_KEY_KEY: &str = "github_app_private_key";

/// How Runway authenticates to GitHub's REST API.
#[derive(Debug, Clone)]
pub enum Credentials {
    App(GitHubApp),
    /// A personal access token (classic or fine-grained).
    Token(Secret),
}

/// What a GitHub App JWT names as its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppIdentifier {
    AppId(u64),
    /// GitHub's recommended identifier since 2024 (`Iv23...`).
    ClientId(String),
}

impl fmt::Display for AppIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppIdentifier::AppId(id) => write!(f, "{id}"),
            AppIdentifier::ClientId(id) => f.write_str(id),
        }
    }
}

/// A GitHub App installation, with its private key already parsed so that a
/// bad key is reported when the Secret is read, not at the first request.
#[derive(Clone)]
pub struct GitHubApp {
    pub app: AppIdentifier,
    pub installation_id: u64,
    key: EncodingKey,
}

impl fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubApp")
            .field("app", &self.app)
            .field("installation_id", &self.installation_id)
            .field("private_key", &"***")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "the GitHub credentials Secret has neither `{TOKEN_KEY}` nor `{APP_ID_KEY}`: set a \
         personal access token or a GitHub App"
    )]
    Missing,
    #[error(
        "the GitHub credentials Secret has both `{TOKEN_KEY}` and `{APP_ID_KEY}`: keep only one, \
         so that it is clear which is used"
    )]
    Ambiguous,
    #[error("the GitHub credentials Secret lacks `{key}`, which a GitHub App needs")]
    MissingKey { key: &'static str },
    #[error("the GitHub credentials Secret key `{key}` {problem}")]
    BadKey { key: &'static str, problem: String },
    #[error("signing the GitHub App JWT for app {app} failed: {reason}")]
    Signing { app: String, reason: String },
}

impl GitHubApp {
    pub fn new(
        app: AppIdentifier,
        installation_id: u64,
        private_key_pem: &[u8],
    ) -> Result<Self, CredentialsError> {
        let key =
            EncodingKey::from_rsa_pem(private_key_pem).map_err(|e| CredentialsError::BadKey {
                key: PRIVATE_KEY_KEY,
                // jsonwebtoken's errors describe the format, never the key bytes.
                problem: format!("is not an RSA private key in PEM form ({e})"),
            })?;
        Ok(Self {
            app,
            installation_id,
            key,
        })
    }

    /// An RS256 JWT for `POST /app/installations/{id}/access_tokens`:
    /// issued a minute in the past against clock drift, valid 9 minutes from
    /// then (GitHub refuses more than 10). `now` is Unix seconds.
    pub fn jwt(&self, now: i64) -> Result<Secret, CredentialsError> {
        #[derive(Serialize)]
        struct Claims {
            iat: i64,
            exp: i64,
            iss: String,
        }
        let iat = now - 60;
        let claims = Claims {
            iat,
            exp: iat + 9 * 60,
            iss: self.app.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(Secret::new)
            .map_err(|e| CredentialsError::Signing {
                app: self.app.to_string(),
                reason: e.to_string(),
            })
    }
}

impl Credentials {
    /// Reads ARC's keys from a Kubernetes Secret's `data`. Surrounding
    /// whitespace (a trailing newline from `kubectl create secret
    /// --from-file`) is ignored; an empty value counts as missing.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, CredentialsError> {
        let token = value(data, TOKEN_KEY)?;
        let app_id = value(data, APP_ID_KEY)?;
        match (token, app_id) {
            (Some(_), Some(_)) => Err(CredentialsError::Ambiguous),
            (None, None) => Err(CredentialsError::Missing),
            (Some(token), None) => Ok(Credentials::Token(Secret::new(token))),
            (None, Some(app_id)) => {
                let app = match app_id.parse::<u64>() {
                    Ok(id) if id > 0 => AppIdentifier::AppId(id),
                    Ok(_) => {
                        return Err(CredentialsError::BadKey {
                            key: APP_ID_KEY,
                            problem: "must not be 0".to_owned(),
                        });
                    }
                    Err(_) if app_id.chars().any(char::is_whitespace) => {
                        return Err(CredentialsError::BadKey {
                            key: APP_ID_KEY,
                            problem: "must be an app id or a client id, without spaces".to_owned(),
                        });
                    }
                    Err(_) => AppIdentifier::ClientId(app_id),
                };
                let installation =
                    value(data, INSTALLATION_ID_KEY)?.ok_or(CredentialsError::MissingKey {
                        key: INSTALLATION_ID_KEY,
                    })?;
                let installation_id = installation
                    .parse::<u64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| CredentialsError::BadKey {
                        key: INSTALLATION_ID_KEY,
                        problem: "must be a positive whole number".to_owned(),
                    })?;
                let key = value(data, PRIVATE_KEY_KEY)?.ok_or(CredentialsError::MissingKey {
                    key: PRIVATE_KEY_KEY,
                })?;
                Ok(Credentials::App(GitHubApp::new(
                    app,
                    installation_id,
                    key.as_bytes(),
                )?))
            }
        }
    }
}

fn value(
    data: &BTreeMap<String, Vec<u8>>,
    key: &'static str,
) -> Result<Option<String>, CredentialsError> {
    let Some(bytes) = data.get(key) else {
        return Ok(None);
    };
    // The value is never quoted back: it may be a credential.
    let text = std::str::from_utf8(bytes).map_err(|_| CredentialsError::BadKey {
        key,
        problem: "is not UTF-8 text".to_owned(),
    })?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use serde::Deserialize;

    // An RSA key generated for these tests only; it guards nothing.
    const TEST_KEY: &str = include_str!("testdata/test-app-key.pem");
    const TEST_PUBLIC_KEY: &str = include_str!("testdata/test-app-key.pub.pem");

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn app_data(app_id: &str) -> BTreeMap<String, Vec<u8>> {
        data(&[
            (APP_ID_KEY, app_id),
            (INSTALLATION_ID_KEY, "123\n"),
            (PRIVATE_KEY_KEY, TEST_KEY),
        ])
    }

    #[test]
    fn a_token() {
        let credentials =
            Credentials::from_secret_data(&data(&[(TOKEN_KEY, "ghp_abc\n")])).unwrap();
        let Credentials::Token(token) = &credentials else {
            panic!("{credentials:?}")
        };
        assert_eq!(token.expose(), "ghp_abc");
        assert!(!format!("{credentials:?}").contains("ghp_abc"));
    }

    #[test]
    fn an_app_by_id_or_client_id() {
        let Credentials::App(app) = Credentials::from_secret_data(&app_data("42")).unwrap() else {
            panic!()
        };
        assert_eq!(app.app, AppIdentifier::AppId(42));
        assert_eq!(app.installation_id, 123);
        let printed = format!("{app:?}");
        assert!(
            !printed.contains("PRIVATE KEY") && printed.contains("***"),
            "{printed}"
        );

        let Credentials::App(app) =
            Credentials::from_secret_data(&app_data("Iv23liABCDEF")).unwrap()
        else {
            panic!()
        };
        assert_eq!(app.app, AppIdentifier::ClientId("Iv23liABCDEF".into()));
    }

    #[test]
    fn each_missing_or_bad_key_is_named() {
        let mut without_installation = app_data("42");
        without_installation.remove(INSTALLATION_ID_KEY);
        let mut without_key = app_data("42");
        without_key.remove(PRIVATE_KEY_KEY);
        let mut empty_key = app_data("42");
        empty_key.insert(PRIVATE_KEY_KEY.into(), b"  \n".to_vec());
        let mut bad_installation = app_data("42");
        bad_installation.insert(INSTALLATION_ID_KEY.into(), b"12x".to_vec());
        let mut zero_installation = app_data("42");
        zero_installation.insert(INSTALLATION_ID_KEY.into(), b"0".to_vec());
        let mut bad_pem = app_data("42");
        bad_pem.insert(
            PRIVATE_KEY_KEY.into(),
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n".to_vec(),
        );
        let mut not_utf8 = app_data("42");
        not_utf8.insert(PRIVATE_KEY_KEY.into(), vec![0xff, 0xfe]);

        let cases: Vec<(BTreeMap<String, Vec<u8>>, &str)> = vec![
            (data(&[]), TOKEN_KEY),
            (data(&[(TOKEN_KEY, "")]), APP_ID_KEY),
            (
                data(&[(TOKEN_KEY, "t"), (APP_ID_KEY, "1")]),
                "keep only one",
            ),
            (without_installation, INSTALLATION_ID_KEY),
            (without_key, PRIVATE_KEY_KEY),
            (empty_key, PRIVATE_KEY_KEY),
            (bad_installation, INSTALLATION_ID_KEY),
            (zero_installation, INSTALLATION_ID_KEY),
            (app_data("0"), APP_ID_KEY),
            (app_data("Iv23 li"), APP_ID_KEY),
            (bad_pem, PRIVATE_KEY_KEY),
            (not_utf8, PRIVATE_KEY_KEY),
        ];
        for (data, named) in cases {
            let error = Credentials::from_secret_data(&data)
                .unwrap_err()
                .to_string();
            assert!(error.contains(named), "{error} should name {named}");
            assert!(
                !error.contains("BEGIN") && !error.contains("AAAA"),
                "{error}"
            );
        }
    }

    #[test]
    fn jwt_claims_and_signature() {
        #[derive(Deserialize)]
        struct Claims {
            iat: i64,
            exp: i64,
            iss: String,
        }
        let now = 1_700_000_000;
        let decoding = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();

        for (app, iss) in [
            (AppIdentifier::AppId(42), "42"),
            (
                AppIdentifier::ClientId("Iv23liABCDEF".into()),
                "Iv23liABCDEF",
            ),
        ] {
            let app = GitHubApp::new(app, 1, TEST_KEY.as_bytes()).unwrap();
            let jwt = app.jwt(now).unwrap();
            let decoded =
                jsonwebtoken::decode::<Claims>(jwt.expose(), &decoding, &validation).unwrap();
            assert_eq!(decoded.header.alg, Algorithm::RS256);
            assert_eq!(decoded.claims.iat, now - 60);
            assert_eq!(decoded.claims.exp, now - 60 + 9 * 60);
            assert_eq!(decoded.claims.iss, iss);
        }
    }
}
