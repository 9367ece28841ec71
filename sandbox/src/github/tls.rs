//! The fake's own certificate authority and serving certificate (valid for
//! 127.0.0.1 and localhost), made by [`crate::pki::ServingCert`], and the
//! rustls configuration that serves them. ring is the only crypto provider.

use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::pki::ServingCert;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the fake GitHub's certificates failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("configuring TLS for the fake GitHub failed: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct Tls {
    pub ca_cert_pem: String,
    pub acceptor: TlsAcceptor,
}

pub fn generate() -> Result<Tls, TlsError> {
    let serving = ServingCert::generate(
        "runway fake GitHub CA",
        "fake-github",
        &["127.0.0.1", "localhost"],
    )?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![serving.cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(serving.key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_cert_pem: serving.ca_cert.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}
