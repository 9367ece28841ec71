//! The HTTP stack against local servers: an HTTPS server whose certificate
//! only the extra CA vouches for, and an HTTP CONNECT proxy that records what
//! it tunnels, for both the Actions requests and octocrab's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::*;

fn limiter() -> Arc<HostRateLimiter> {
    Arc::new(HostRateLimiter::default())
}

fn options(proxy: ProxyConfig, extra_root_ca_pem: Option<Vec<u8>>) -> TransportOptions {
    TransportOptions {
        proxy,
        extra_root_ca_pem,
        timeout: Duration::from_secs(10),
        ..TransportOptions::default()
    }
}

fn get(url: &str) -> Request<OctoBody> {
    Request::builder()
        .method(Method::GET)
        .uri(url)
        .body(OctoBody::empty())
        .unwrap()
}

/// A CA and a `localhost` certificate it signed.
struct Pki {
    ca_pem: String,
    acceptor: TlsAcceptor,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server.der().clone()], key)
    .unwrap();
    Pki {
        ca_pem,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    }
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    read_head(&mut stream).await;
    let body = r#"{"ok":true}"#;
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Answers every request with 200 `{"ok":true}`, over TLS if given.
async fn server(tls: Option<TlsAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream).await;
                        }
                    }
                    None => answer(stream).await,
                }
            });
        }
    });
    addr
}

/// An HTTP CONNECT proxy; records each request head it receives.
async fn proxy() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let head = read_head(&mut client).await;
                log.lock().unwrap().push(head.clone());
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let target = target.replace("localhost", "127.0.0.1");
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, heads)
}

#[tokio::test]
async fn the_extra_ca_is_trusted_and_only_it() {
    let pki = pki();
    let addr = server(Some(pki.acceptor.clone())).await;
    let url = format!("https://localhost:{}/api/v3/x", addr.port());

    let trusting = Transport::new(
        options(ProxyConfig::None, Some(pki.ca_pem.into_bytes())),
        limiter(),
    )
    .unwrap();
    let response = trusting.send("get x", get(&url)).await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(&response.body[..], br#"{"ok":true}"#);

    let default = Transport::new(options(ProxyConfig::None, None), limiter()).unwrap();
    let error = default.send("get x", get(&url)).await.unwrap_err();
    assert!(error.is_connection_failure(), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("get x: request failed") && text.contains("certificate"),
        "{text}"
    );
}

#[test]
fn bad_ca_bundles_are_refused() {
    let cases: [(&[u8], &str); 3] = [
        (b"", "holds no certificate"),
        (b"not a certificate", "holds no certificate"),
        (
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            "githubServerTLS",
        ),
    ];
    for (pem, expected) in cases {
        let error = tls_config(Some(pem)).unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
    }
}

#[tokio::test]
async fn an_explicit_proxy_carries_actions_and_octocrab_traffic() {
    let pki = pki();
    let tls_addr = server(Some(pki.acceptor.clone())).await;
    let plain_addr = server(None).await;
    let (proxy_addr, heads) = proxy().await;
    let proxy_url = format!("http://runway:s3cret@{proxy_addr}");
    let settings = ProxySettings {
        http_url: Some(proxy_url.clone()),
        https_url: Some(proxy_url),
        no_proxy: vec![],
    };
    let transport = Transport::new(
        options(
            ProxyConfig::Explicit(settings),
            Some(pki.ca_pem.into_bytes()),
        ),
        limiter(),
    )
    .unwrap();

    // TLS inside the tunnel, trusting the extra CA.
    let https = format!("https://localhost:{}/svc/x", tls_addr.port());
    assert_eq!(
        transport.send("get", get(&https)).await.unwrap().status,
        StatusCode::OK
    );
    // Plain http through the tunnel too.
    let http = format!("http://127.0.0.1:{}/svc/x", plain_addr.port());
    assert_eq!(
        transport.send("get", get(&http)).await.unwrap().status,
        StatusCode::OK
    );
    // octocrab is built on the same clients, so it goes through the proxy.
    let base = url::Url::parse(&format!("https://localhost:{}/api/v3", tls_addr.port())).unwrap();
    let crab = transport.octocrab(&base).unwrap();
    let response = crab._get("/app").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let heads = heads.lock().unwrap().clone();
    let targets: Vec<&str> = heads
        .iter()
        .filter_map(|h| h.split_whitespace().nth(1))
        .collect();
    let tls_target = format!("localhost:{}", tls_addr.port());
    let plain_target = format!("127.0.0.1:{}", plain_addr.port());
    assert!(heads.iter().all(|h| h.starts_with("CONNECT ")), "{heads:?}");
    assert!(
        targets.contains(&tls_target.as_str()) && targets.contains(&plain_target.as_str()),
        "{targets:?}"
    );
    assert!(
        heads.iter().all(|h| h
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic cnvud2f5onmzy3jlda==")),
        "{heads:?}"
    );
}

#[tokio::test]
async fn no_proxy_hosts_are_reached_directly() {
    let plain_addr = server(None).await;
    let (proxy_addr, heads) = proxy().await;
    let settings = ProxySettings {
        http_url: Some(format!("http://{proxy_addr}")),
        https_url: None,
        no_proxy: vec!["example.com".to_owned(), "127.0.0.1".to_owned()],
    };
    let transport =
        Transport::new(options(ProxyConfig::Explicit(settings), None), limiter()).unwrap();
    let url = format!("http://127.0.0.1:{}/x", plain_addr.port());
    assert_eq!(
        transport.send("get", get(&url)).await.unwrap().status,
        StatusCode::OK
    );
    assert!(heads.lock().unwrap().is_empty());
}

#[test]
fn unsupported_proxies_are_refused_up_front() {
    for proxy in ["socks5://127.0.0.1:1080", "https://proxy.example:443"] {
        let settings = ProxySettings {
            https_url: Some(proxy.to_owned()),
            ..ProxySettings::default()
        };
        let error =
            Transport::new(options(ProxyConfig::Explicit(settings), None), limiter()).unwrap_err();
        assert!(
            matches!(error, TransportError::UnsupportedProxy { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("proxy.https.url"), "{error}");
    }
}

#[test]
fn unparseable_proxy_urls_are_refused_without_quoting_them() {
    let settings = ProxySettings {
        http_url: Some("ftp://user:hunter2@proxy.example".to_owned()),
        ..ProxySettings::default()
    };
    let error =
        Transport::new(options(ProxyConfig::Explicit(settings), None), limiter()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("proxy.http.url") && !text.contains("hunter2"),
        "{text}"
    );
}

#[tokio::test]
async fn silence_times_out_and_refusal_is_a_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut quick = options(ProxyConfig::None, None);
    quick.timeout = Duration::from_millis(200);
    let transport = Transport::new(quick, limiter()).unwrap();
    let error = transport
        .send("poll", get(&format!("http://{addr}/q")))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(error.is_connection_failure());

    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = transport
        .send("poll", get(&format!("http://{closed}/q")))
        .await
        .unwrap_err();
    assert_eq!(error.metric_label(), "transport", "{error:?}");
}

#[test]
fn tunnelled_plain_http_names_port_80() {
    let cases = [
        (
            "http://ghes.internal/api/v3",
            "http://ghes.internal:80/api/v3",
        ),
        (
            "http://ghes.internal:8080/x?y=1",
            "http://ghes.internal:8080/x?y=1",
        ),
        ("https://ghes.internal/x", "https://ghes.internal/x"),
        ("http://[::1]/x", "http://[::1]:80/x"),
    ];
    for (input, expected) in cases {
        let uri: Uri = input.parse().unwrap();
        assert_eq!(with_explicit_http_port(&uri).to_string(), expected);
    }
}

#[tokio::test]
async fn octocrab_refuses_a_base_the_http_stack_cannot_parse() {
    let transport = Transport::new(options(ProxyConfig::None, None), limiter()).unwrap();
    for base in [
        "https://ghes{.example.com/api/v3",
        "https://ghes`.example.com/api/v3",
    ] {
        let base = url::Url::parse(base).expect("url accepts this host");
        let Err(error) = transport.octocrab(&base) else {
            panic!("{base} was accepted");
        };
        assert!(
            matches!(error, TransportError::BadBaseUrl { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("githubConfigUrl"), "{error}");
    }
}

/// Any `githubConfigUrl` either gives a client or a typed error naming the
/// setting; never a panic.
#[test]
fn any_github_config_url_builds_a_client_or_is_refused() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    // octocrab spawns its worker when built.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let transport = Transport::new(options(ProxyConfig::None, None), limiter()).unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 10_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&super::super::config::mutated_config_urls(), |input| {
        match super::super::config::GitHubConfig::parse(&input) {
            Ok(config) => {
                transport
                    .octocrab(config.rest_base())
                    .map_err(|e| TestCaseError::fail(format!("{input:?}: {e}")))?;
            }
            Err(error) => {
                let text = error.to_string();
                proptest::prop_assert!(text.contains("githubConfigUrl"), "{input:?}: {text}");
            }
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
