//! The stand-in's HTTP client: one HTTP/1.1 request per connection, plain
//! or TLS (trusting only the CA file it is given), bounded in time and in
//! the size of the reply. Only to the origin of the JIT config's server URL,
//! which `jit` has checked is a loopback address.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, header};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::jit::Origin;

/// Replies larger than this are refused.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("TLS with {authority}: {source}")]
    Tls {
        authority: String,
        source: std::io::Error,
    },
    #[error("HTTP with {authority}: {source}")]
    Http {
        authority: String,
        source: hyper::Error,
    },
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
    #[error("the reply from {authority} is unreadable or larger than {MAX_REPLY_BYTES} bytes")]
    Body { authority: String },
    #[error("no reply from {authority} within {0:?}", .timeout)]
    Timeout {
        authority: String,
        timeout: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(
        "the server URL is https: set RUNWAY_RUNNER_CA_FILE to the PEM file of the CA to trust"
    )]
    NoCaFile,
    #[error("reading the CA file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no usable PEM certificate")]
    NoCertificate { path: String },
    #[error("configuring TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

pub struct Client {
    origin: Origin,
    credential: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// A TLS client config that trusts the certificates of one PEM file only.
pub fn tls_connector(ca_file: Option<&str>) -> Result<TlsConnector, TlsSetupError> {
    let path = ca_file.ok_or(TlsSetupError::NoCaFile)?;
    let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_string(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        // A certificate the store rejects is skipped like a bad PEM block.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_string(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Client {
    /// `ca_file` is read only when the origin is https.
    pub fn new(
        origin: Origin,
        credential: String,
        ca_file: Option<&str>,
    ) -> Result<Client, TlsSetupError> {
        let tls = if origin.tls {
            let name = ServerName::try_from(origin.host.clone())
                .map_err(|_| TlsSetupError::ServerName(origin.host.clone()))?;
            Some((tls_connector(ca_file)?, name))
        } else {
            None
        };
        Ok(Client {
            origin,
            credential,
            tls,
        })
    }

    /// Sends one request to `path_and_query` on the origin and returns the
    /// status and body, within `timeout` for the whole exchange.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), HttpError> {
        let authority = self.origin.authority();
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, &authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.credential))
            .header(header::USER_AGENT, "runway-runner-standin");
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(body.map_or_else(Body::empty, Body::from))?;
        let exchange = self.exchange(request, &authority);
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                authority: authority.clone(),
                timeout,
            })?
    }

    async fn exchange(
        &self,
        request: Request<Body>,
        authority: &str,
    ) -> Result<(u16, Bytes), HttpError> {
        let stream = TcpStream::connect((self.origin.host.as_str(), self.origin.port))
            .await
            .map_err(|source| HttpError::Connect {
                authority: authority.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => over(stream, request, authority).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|source| HttpError::Tls {
                        authority: authority.to_string(),
                        source,
                    })?;
                over(stream, request, authority).await
            }
        }
    }
}

async fn over<I>(io: I, request: Request<Body>, authority: &str) -> Result<(u16, Bytes), HttpError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source| HttpError::Http {
        authority: authority.to_string(),
        source,
    };
    let (mut sender, connection) = http1::handshake(TokioIo::new(io)).await.map_err(http)?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_REPLY_BYTES)
        .await
        .map_err(|_| HttpError::Body {
            authority: authority.to_string(),
        })?;
    driver.abort();
    Ok((status, body))
}
