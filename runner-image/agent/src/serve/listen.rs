//! `runway serve`'s accept loop (instead of `axum::serve`), so that a slow
//! or idle client cannot hold the server:
//!
//! - at most [`Limits::max_connections`] connections at once (a semaphore):
//!   the next one is not accepted until one closes, it waits in the
//!   kernel's backlog;
//! - each request's headers (and, with TLS, the handshake) must arrive
//!   within [`Limits::header_timeout`], else the connection is closed; this
//!   also closes a keep-alive connection idle that long. The body's own
//!   timeout is the handler's (`--body-timeout`, [`super::http`]).
//! - Graceful shutdown: when `shutdown` resolves, no new connection is
//!   accepted, idle ones close, requests in flight finish; [`serve`] returns
//!   once every connection is closed.
//!
//! Generic over [`axum::serve::Listener`], so the same loop serves TCP and
//! a Unix socket.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};

use super::tls::TlsFiles;

/// `--max-connections`' default.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 64;
/// `--header-timeout`'s default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client may take of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (at least 1).
    pub max_connections: u32,
    /// How long a request's headers (and a TLS handshake) may take.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// Serves `router` over plain HTTP/1 on `listener` until `shutdown`, then
/// waits for the connections to finish.
pub async fn serve<L>(
    listener: L,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener,
{
    serve_with(listener, router, limits, Plain, shutdown).await;
}

/// [`serve`] over TLS, with the certificate of `tls` as it is when each
/// connection arrives (re-read when its files change).
pub async fn serve_tls<L>(
    listener: L,
    router: Router,
    limits: Limits,
    tls: Arc<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener,
{
    serve_with(listener, router, limits, tls, shutdown).await;
}

/// What turns an accepted stream into the one HTTP is spoken on.
trait Handshake<I>: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn handshake(&self, io: I) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

#[derive(Clone, Copy)]
struct Plain;

impl<I> Handshake<I> for Plain
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = I;
    async fn handshake(&self, io: I) -> std::io::Result<I> {
        Ok(io)
    }
}

impl<I> Handshake<I> for Arc<TlsFiles>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = tokio_rustls::server::TlsStream<I>;
    fn handshake(&self, io: I) -> impl Future<Output = std::io::Result<Self::Io>> + Send {
        self.acceptor().accept(io)
    }
}

async fn serve_with<L, H>(
    mut listener: L,
    router: Router,
    limits: Limits,
    handshake: H,
    shutdown: impl Future<Output = ()> + Send,
) where
    L: Listener,
    H: Handshake<L::Io>,
{
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max as usize));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A permit first: past the limit, connections wait unaccepted.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            () = &mut shutdown => break,
        };
        tokio::spawn(connection(
            io,
            handshake.clone(),
            router.clone(),
            limits.header_timeout,
            stopped.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    // Every permit back: every connection closed.
    let _ = permits.acquire_many(max).await;
}

async fn connection<I, H: Handshake<I>>(
    io: I,
    handshake: H,
    router: Router,
    header_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let io = match tokio::time::timeout(header_timeout, handshake.handshake(io)).await {
        Ok(Ok(io)) => io,
        Ok(Err(error)) => {
            tracing::debug!(%error, "serve: handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("serve: handshake timed out");
            return;
        }
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    let mut conn = std::pin::pin!(conn);
    // The watch's guard must not live across the await below.
    let finished = tokio::select! {
        served = conn.as_mut() => Some(served),
        _ = stopped.wait_for(|stop| *stop) => None,
    };
    let served = match finished {
        Some(served) => served,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, "serve: connection closed");
    }
}
