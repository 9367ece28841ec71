//! HTTPS for `runway serve`: `--tls-cert PATH --tls-key PATH` (PEM, both or
//! neither), served with rustls (ring).
//!
//! The files are read at start (a problem exits 2 naming the flag: a file
//! unreadable, no certificate or key in it, a key that does not match the
//! certificate) and again when a connection arrives after either file
//! changed (modification time, size or inode: a Secret update swaps the
//! `..data` symlink), so a rotated Secret needs no restart. A rotation that
//! does not load (say, a key that no longer matches) is logged and the
//! previous certificate kept, and loading is tried again on the next
//! connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::credentials::{Stamp, stat};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: cannot read it: {source}")]
    CertRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-cert {path}: no PEM certificate in it ({reason})")]
    CertPem { path: String, reason: String },
    #[error("--tls-key {path}: cannot read it: {source}")]
    KeyRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--tls-key {path}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it ({reason})")]
    KeyPem { path: String, reason: String },
    #[error("--tls-key {key} does not match the certificate of --tls-cert {cert}")]
    Mismatch { cert: String, key: String },
    #[error("--tls-cert {cert} / --tls-key {key}: {reason}")]
    Rejected {
        cert: String,
        key: String,
        reason: String,
    },
}

/// The certificate and key files, and the acceptor built from them.
pub struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    stamps: (Stamp, Stamp),
    acceptor: TlsAcceptor,
}

impl TlsFiles {
    /// Reads both files; any problem names its flag.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsFiles, TlsError> {
        let (stamps, acceptor) = read(cert, key)?;
        Ok(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded: Mutex::new(Loaded { stamps, acceptor }),
        })
    }

    /// The acceptor for a connection arriving now: rebuilt first if either
    /// file changed since it was read.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let now = (stat(&self.cert).ok(), stat(&self.key).ok());
        if now == (Some(loaded.stamps.0), Some(loaded.stamps.1)) {
            return loaded.acceptor.clone();
        }
        match read(&self.cert, &self.key) {
            Ok((stamps, acceptor)) => {
                tracing::info!(cert = %self.cert.display(), "serve: (re)loaded the TLS certificate");
                *loaded = Loaded { stamps, acceptor };
            }
            Err(error) => {
                tracing::warn!(%error, "serve: keeping the previous TLS certificate");
            }
        }
        loaded.acceptor.clone()
    }
}

fn read(cert: &Path, key: &Path) -> Result<((Stamp, Stamp), TlsAcceptor), TlsError> {
    let cert_shown = || cert.display().to_string();
    let key_shown = || key.display().to_string();
    let cert_read = |source| TlsError::CertRead {
        path: cert_shown(),
        source,
    };
    let key_read = |source| TlsError::KeyRead {
        path: key_shown(),
        source,
    };
    // Stat first: a change between the two is caught on the next connection.
    let stamps = (stat(cert).map_err(cert_read)?, stat(key).map_err(key_read)?);
    let cert_pem = std::fs::read(cert).map_err(cert_read)?;
    let key_pem = std::fs::read(key).map_err(key_read)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::CertPem {
            path: cert_shown(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::CertPem {
            path: cert_shown(),
            reason: "no CERTIFICATE section".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::KeyPem {
        path: key_shown(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private)
        })
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: cert_shown(),
                key: key_shown(),
            },
            other => TlsError::Rejected {
                cert: cert_shown(),
                key: key_shown(),
                reason: other.to_string(),
            },
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((stamps, TlsAcceptor::from(Arc::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("runway-serve-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn bad_files_name_their_flag() {
        let dir = temp_dir("bad");
        let (cert_a, key_a) = pair("a");
        let (_, key_b) = pair("b");
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        let load = || TlsFiles::load(&cert, &key).err().map(|e| e.to_string());
        assert!(load().unwrap().starts_with("--tls-cert"));
        std::fs::write(&cert, &cert_a).unwrap();
        assert!(load().unwrap().starts_with("--tls-key"));
        std::fs::write(&key, "not a key").unwrap();
        assert!(load().unwrap().contains("no PEM private key"));
        std::fs::write(&key, &key_b).unwrap();
        let mismatch = load().unwrap();
        assert!(
            mismatch.contains("--tls-key") && mismatch.contains("does not match"),
            "{mismatch}"
        );
        std::fs::write(&cert, "nothing").unwrap();
        assert!(load().unwrap().contains("no PEM certificate"));
        std::fs::write(&cert, &cert_a).unwrap();
        std::fs::write(&key, &key_a).unwrap();
        assert_eq!(load(), None);
    }
}
