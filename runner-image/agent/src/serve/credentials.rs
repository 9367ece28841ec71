//! Where `runway serve`'s accepted credentials come from: the bearer token
//! file (a mounted Secret) and the dispatcher's ES256 public key.
//!
//! The token file is re-read whenever its modification time, size or inode
//! changes (a Secret update swaps the `..data` symlink, so the path then
//! names a new file); checking costs one `stat` per request. If the file
//! becomes unreadable or empty, bearer tokens are refused (fail closed)
//! until it is readable again: a deleted Secret must not leave the old
//! token valid. The key and URN are read once, at start.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use jsonwebtoken::DecodingKey;

use super::auth::{AuthConfig, JwtConfig};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no authentication configured: pass --token-file PATH (a bearer token) and/or \
         --jwt-public-key PATH with --runner-urn URN (ES256 JWTs); without one, every request \
         would be refused"
    )]
    NoneConfigured,
    #[error("--token-file {path}: cannot read it: {source}")]
    TokenRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--token-file {path}: the file is empty; it must hold the bearer token")]
    TokenEmpty { path: String },
    #[error("--jwt-public-key {path}: cannot read it: {source}")]
    KeyRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--jwt-public-key {path}: not an EC (P-256) public key in PEM: {reason}")]
    KeyInvalid { path: String, reason: String },
    #[error("--runner-urn is required with --jwt-public-key: it is the `sub` every JWT must carry")]
    UrnMissing,
    #[error("--runner-urn must not be empty")]
    UrnEmpty,
}

/// The token file, or the start-up settings, as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub token_file: Option<PathBuf>,
    pub jwt_public_key: Option<PathBuf>,
    pub runner_urn: Option<String>,
    pub jwt_audience: Option<String>,
}

/// The credentials, with the token file watched.
pub struct Credentials {
    token_file: Option<TokenFile>,
    jwt: Option<JwtConfig>,
    current: Mutex<Arc<AuthConfig>>,
}

struct TokenFile {
    path: PathBuf,
    /// What identified the file when it was last read.
    stamp: Mutex<Option<Stamp>>,
}

/// What tells a mounted file changed: a Secret's update swaps the file
/// (new inode) and may keep its time and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Credentials {
    /// Reads the key and the token; any problem names its flag.
    pub fn load(settings: &Settings) -> Result<Credentials, CredentialsError> {
        let jwt = match (&settings.jwt_public_key, &settings.runner_urn) {
            (None, _) => None,
            (Some(_), None) => return Err(CredentialsError::UrnMissing),
            (Some(_), Some(urn)) if urn.trim().is_empty() => {
                return Err(CredentialsError::UrnEmpty);
            }
            (Some(path), Some(urn)) => Some(JwtConfig {
                key: read_key(path)?,
                runner_urn: urn.trim().to_string(),
                audience: settings.jwt_audience.clone().filter(|a| !a.is_empty()),
            }),
        };
        if settings.token_file.is_none() && jwt.is_none() {
            return Err(CredentialsError::NoneConfigured);
        }
        let mut token = None;
        let token_file = match &settings.token_file {
            None => None,
            Some(path) => {
                let (stamp, value) = read_token(path)?;
                token = Some(value);
                Some(TokenFile {
                    path: path.clone(),
                    stamp: Mutex::new(Some(stamp)),
                })
            }
        };
        let current = Mutex::new(Arc::new(AuthConfig {
            token,
            jwt: jwt.clone(),
        }));
        Ok(Credentials {
            token_file,
            jwt,
            current,
        })
    }

    /// The credentials accepted now, re-reading the token file if it
    /// changed.
    pub fn current(&self) -> Arc<AuthConfig> {
        let Some(file) = &self.token_file else {
            return lock(&self.current).clone();
        };
        let mut stamp = lock(&file.stamp);
        let now = stat(&file.path).ok();
        if now.is_some() && now == *stamp {
            return lock(&self.current).clone();
        }
        let token = match read_token(&file.path) {
            Ok((read_stamp, token)) => {
                *stamp = Some(read_stamp);
                tracing::info!(path = %file.path.display(), "serve: (re)loaded the bearer token file");
                Some(token)
            }
            Err(error) => {
                *stamp = None;
                tracing::warn!(%error, "serve: refusing bearer tokens until the token file is readable");
                None
            }
        };
        let config = Arc::new(AuthConfig {
            token,
            jwt: self.jwt.clone(),
        });
        *lock(&self.current) = config.clone();
        config
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn stat(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

fn read_token(path: &Path) -> Result<(Stamp, String), CredentialsError> {
    let shown = || path.display().to_string();
    let read_error = |source| CredentialsError::TokenRead {
        path: shown(),
        source,
    };
    // Stat first: a change between the two is caught on the next request.
    let stamp = stat(path).map_err(read_error)?;
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    // A trailing newline is how editors and `echo` write files.
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(CredentialsError::TokenEmpty { path: shown() });
    }
    Ok((stamp, token))
}

fn read_key(path: &Path) -> Result<DecodingKey, CredentialsError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| CredentialsError::KeyRead {
        path: shown.clone(),
        source,
    })?;
    DecodingKey::from_ec_pem(&pem).map_err(|e| CredentialsError::KeyInvalid {
        path: shown,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "runway-serve-credentials-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn at_least_one_method_is_required() {
        let err = Credentials::load(&Settings::default()).err().unwrap();
        assert!(matches!(err, CredentialsError::NoneConfigured));
        let message = err.to_string();
        assert!(message.contains("--token-file") && message.contains("--jwt-public-key"));
    }

    #[test]
    fn a_key_needs_a_urn_and_a_valid_pem() {
        let dir = temp_dir("key");
        let key = dir.join("key.pem");
        std::fs::write(&key, "not a key").unwrap();
        let urn_missing = Settings {
            jwt_public_key: Some(key.clone()),
            ..Settings::default()
        };
        assert!(matches!(
            Credentials::load(&urn_missing),
            Err(CredentialsError::UrnMissing)
        ));
        let bad_key = Settings {
            runner_urn: Some("urn:x".into()),
            ..urn_missing
        };
        assert!(matches!(
            Credentials::load(&bad_key),
            Err(CredentialsError::KeyInvalid { .. })
        ));
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(&key, pair.public_key_pem()).unwrap();
        let creds = Credentials::load(&bad_key).unwrap();
        let current = creds.current();
        assert_eq!(current.jwt.as_ref().unwrap().runner_urn, "urn:x");
        assert!(current.token.is_none());
    }

    #[test]
    fn the_token_file_is_reread_when_it_changes_and_fails_closed() {
        let dir = temp_dir("token");
        let path = dir.join("token");
        let empty = Settings {
            token_file: Some(path.clone()),
            ..Settings::default()
        };
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Credentials::load(&empty),
            Err(CredentialsError::TokenEmpty { .. })
        ));
        std::fs::write(&path, "first\n").unwrap();
        let creds = Credentials::load(&empty).unwrap();
        assert_eq!(creds.current().token.as_deref(), Some("first"));
        // A Secret update: a new file renamed over the old path.
        let next = dir.join("token.next");
        std::fs::write(&next, "second-token").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(creds.current().token.as_deref(), Some("second-token"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            creds.current().token,
            None,
            "a deleted token file fails closed"
        );
        std::fs::write(&path, "third").unwrap();
        assert_eq!(creds.current().token.as_deref(), Some("third"));
    }
}
