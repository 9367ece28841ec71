//! A forward HTTP proxy on 127.0.0.1 for tests that must prove a client's
//! traffic goes through a proxy (ARC's `proxy` setting) and nowhere else.
//!
//! It speaks what real proxies speak: `CONNECT host:port` tunnels (counted
//! in [`HttpProxy::tunnels`]) and absolute-form requests
//! (`GET http://host/path`). When a tunnel carries plain HTTP (the first
//! byte is not a TLS handshake), the proxy serves the tunnel itself and
//! forwards request by request, so that [`HttpProxy::requests`] counts every
//! HTTP request it carried, however many a kept-alive connection holds; TLS
//! inside a tunnel is copied byte for byte and only the tunnel is counted.
//!
//! With credentials, every CONNECT and request must carry
//! `Proxy-Authorization: Basic base64(user:pass)`; anything else is answered
//! 407 and counted in [`HttpProxy::refused`]. The header's value is never
//! stored or logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use base64::Engine;
use http::{Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};

/// The first byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

#[derive(Default)]
struct Counts {
    tunnels: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct HttpProxy {
    addr: SocketAddr,
    counts: Arc<Counts>,
    _stop: watch::Sender<()>,
}

impl HttpProxy {
    /// Starts a proxy on a free port of 127.0.0.1 that demands `username`
    /// and `password` when given.
    pub async fn start(credentials: Option<(&str, &str)>) -> std::io::Result<HttpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let expected = credentials.map(|(user, pass)| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            format!("Basic {encoded}")
        });
        let counts = Arc::new(Counts::default());
        let (stop, mut stopped) = watch::channel(());
        let shared = Arc::new((expected, counts.clone()));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |request| {
                                let shared = shared.clone();
                                async move { Ok::<_, hyper::Error>(handle(request, &shared.0, &shared.1).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        });
                    }
                    _ = stopped.changed() => return,
                }
            }
        });
        Ok(HttpProxy {
            addr,
            counts,
            _stop: stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without credentials.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// CONNECT tunnels opened (after the credentials were checked).
    pub fn tunnels(&self) -> u64 {
        self.counts.tunnels.load(Ordering::SeqCst)
    }

    /// HTTP requests forwarded: absolute-form ones and those inside tunnels
    /// that carry plain HTTP.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::SeqCst)
    }

    /// CONNECTs and requests answered 407 for missing or wrong credentials.
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::SeqCst)
    }
}

async fn handle(
    request: Request<Incoming>,
    expected: &Option<String>,
    counts: &Arc<Counts>,
) -> Response<Body> {
    let given = request.headers().get(header::PROXY_AUTHORIZATION);
    if let Some(expected) = expected
        && given.is_none_or(|v| v.as_bytes() != expected.as_bytes())
    {
        counts.refused.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::PROXY_AUTHENTICATION_REQUIRED)
            .header(header::PROXY_AUTHENTICATE, "Basic realm=\"runway-test\"")
            .body(Body::empty())
            .unwrap_or_default();
    }
    if request.method() == Method::CONNECT {
        return connect(request, counts).await;
    }
    // Absolute form: `GET http://host:port/path`.
    let Some(authority) = request.uri().authority().map(|a| a.to_string()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(upstream) = TcpStream::connect(&authority).await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return status(StatusCode::BAD_GATEWAY);
    };
    tokio::spawn(connection);
    let mut request = request;
    request.headers_mut().remove(header::PROXY_AUTHORIZATION);
    let origin_form = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<Uri>();
    if let Ok(uri) = origin_form {
        *request.uri_mut() = uri;
    }
    counts.requests.fetch_add(1, Ordering::SeqCst);
    match sender.send_request(request).await {
        Ok(response) => response.map(Body::new),
        Err(_) => status(StatusCode::BAD_GATEWAY),
    }
}

async fn connect(request: Request<Incoming>, counts: &Arc<Counts>) -> Response<Body> {
    let Some(authority) = request.uri().authority().map(|a| a.to_string()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(upstream) = TcpStream::connect(&authority).await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    counts.tunnels.fetch_add(1, Ordering::SeqCst);
    let counts = counts.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else {
            return;
        };
        tunnel(TokioIo::new(upgraded), upstream, counts).await;
    });
    status(StatusCode::OK)
}

/// Copies TLS through untouched; serves plain HTTP request by request.
async fn tunnel<C>(mut client: C, mut upstream: TcpStream, counts: Arc<Counts>)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut first = [0u8; 1];
    if client.read_exact(&mut first).await.is_err() {
        return;
    }
    if first[0] == TLS_HANDSHAKE {
        if upstream.write_all(&first).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        return;
    }
    let Ok((sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return;
    };
    tokio::spawn(connection);
    let sender = Arc::new(Mutex::new(sender));
    let (read, write) = tokio::io::split(client);
    let client = tokio::io::join(std::io::Cursor::new(first).chain(read), write);
    let service = service_fn(move |request: Request<Incoming>| {
        let sender = sender.clone();
        let counts = counts.clone();
        async move {
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let response = sender.lock().await.send_request(request).await;
            Ok::<_, hyper::Error>(match response {
                Ok(response) => response.map(Body::new),
                Err(_) => status(StatusCode::BAD_GATEWAY),
            })
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await;
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers one request per connection with 200 `ok`.
    async fn origin() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).await.is_ok()
                    {
                        head.push(byte[0]);
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        addr
    }

    async fn exchange(proxy: &HttpProxy, request: String) -> String {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn requires_the_credentials_and_forwards_absolute_form_requests() {
        let origin = origin().await;
        let proxy = HttpProxy::start(Some(("u", "p"))).await.unwrap();

        let refused = exchange(
            &proxy,
            format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(refused.starts_with("HTTP/1.1 407"), "{refused}");
        assert_eq!((proxy.refused(), proxy.tunnels()), (1, 0));

        // base64("u:p")
        let forwarded = exchange(
            &proxy,
            format!(
                "GET http://{origin}/x HTTP/1.1\r\nHost: {origin}\r\n\
                 Proxy-Authorization: Basic dTpw\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(forwarded.starts_with("HTTP/1.1 200"), "{forwarded}");
        assert!(forwarded.ends_with("ok"), "{forwarded}");
        assert_eq!(proxy.requests(), 1);
    }
}
