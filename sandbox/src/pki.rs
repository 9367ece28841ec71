//! Key material made in-process so that nothing depends on the openssl
//! command line: a CA with one serving certificate (shared by the control
//! plane's API server and the fake GitHub's TLS), plus, for a control plane,
//! the ServiceAccount token signing key.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// PEM-encoded material for one control plane, ready to be written to files.
pub struct Pki {
    pub ca_cert: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub sa_private_key: String,
    pub sa_public_key: String,
}

#[derive(Debug, thiserror::Error)]
#[error("generating the sandbox's certificates failed: {0}")]
pub struct PkiError(#[from] rcgen::Error);

impl Pki {
    /// The API server's serving certificate is valid for 127.0.0.1,
    /// localhost and the in-cluster `kubernetes` names.
    pub fn generate() -> Result<Self, PkiError> {
        let serving = ServingCert::generate(
            "runway-sandbox-ca",
            "kube-apiserver",
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default.svc",
            ],
        )?;
        let sa_key = KeyPair::generate()?;
        Ok(Self {
            ca_cert: serving.ca_cert.pem(),
            serving_cert: serving.cert.pem(),
            serving_key: serving.key.serialize_pem(),
            sa_private_key: sa_key.serialize_pem(),
            sa_public_key: sa_key.public_key_pem(),
        })
    }
}

/// A fresh self-signed CA and a server certificate it signed. Callers take
/// PEM (files for kube-apiserver) or DER (an in-process rustls config).
pub struct ServingCert {
    pub ca_cert: Certificate,
    pub cert: Certificate,
    pub key: KeyPair,
}

impl ServingCert {
    /// `ca_name` and `server_name` are the certificates' common names;
    /// `hosts` are the serving certificate's subject alternative names.
    pub fn generate(
        ca_name: &str,
        server_name: &str,
        hosts: &[&str],
    ) -> Result<Self, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let names = hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        let mut serving = CertificateParams::new(names)?;
        serving
            .distinguished_name
            .push(DnType::CommonName, server_name);
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = serving.signed_by(&key, &issuer)?;
        Ok(Self { ca_cert, cert, key })
    }
}
