//! The accept loop: HTTP/1.1 connections with a bound on how many are open, how long a
//! request head may take to arrive and how long a connection may sit idle.
//!
//! `axum::serve` has none of these, so a client that trickles its headers a byte at a
//! time, or opens connections and sends nothing, holds a task and a file descriptor for
//! as long as it likes. Here:
//!
//! - at most `server.max_connections` connections are served at once; the next one is
//!   accepted when one closes (until then it waits in the kernel's backlog);
//! - hyper's header read timeout (`server.header_read_timeout_ms`) closes a connection
//!   whose request head is not complete in time, however slowly its bytes arrive; hyper
//!   arms it whenever it waits for a head, so it also closes a connection that sends
//!   nothing, before its first request or between requests;
//! - a connection stalled mid-request, no byte read or written for
//!   `server.idle_timeout_s`, is closed ([`IdleIo`]): a body trickling in, an answer
//!   nobody reads. The configuration keeps it longer than a request may take.
//!
//! On shutdown the loop stops accepting, idle keep-alive connections close at once, and
//! requests in flight get `request_timeout_ms` and a little more to be answered.
//!
//! On SIGHUP the API keys are read again ([`reload_keys_on_hangup`]): no connection is
//! dropped, and a request in flight finishes with the keys it was checked against.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};

#[cfg(unix)]
use crate::AppState;

/// The connection limits (from `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a request head may take to arrive in full.
    pub header_read_timeout: Duration,
    /// Time a connection may go without reading or writing a byte.
    pub idle_timeout: Duration,
    /// Time requests in flight get to finish at shutdown before their connections are
    /// dropped.
    pub drain: Duration,
}

impl ConnLimits {
    /// The limits a configuration sets.
    pub fn from_config(s: &crate::config::ServerConfig) -> Self {
        Self {
            max_connections: s.max_connections,
            header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
            idle_timeout: Duration::from_secs(s.idle_timeout_s),
            // A request may take request_timeout_ms; a little more to write its answer.
            drain: Duration::from_millis(s.request_timeout_ms) + Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the requests
/// in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment and go on
                    // (what axum::serve does too).
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleIo::new(stream, limits.idle_timeout));
        // The peer's address, for what is limited per client (console sign-ins).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let conn = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    // A client that reads its answer a byte at a time must not hold the shutdown.
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; closing them");
    }
    Ok(())
}

/// Reloads the API keys ([`AppState::reload_keys`], which logs the outcome) on every
/// SIGHUP, for as long as the future runs: `kill -HUP <pid>` after editing
/// `server.api_keys_file`. A file that does not parse leaves the keys in force as they
/// were. Installing it also keeps SIGHUP from ending the process.
#[cfg(unix)]
pub async fn reload_keys_on_hangup(state: AppState) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: the API keys will not reload");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the API keys");
        let state = state.clone();
        // The file is read on the blocking pool; the result is logged by reload_keys.
        if let Err(e) = tokio::task::spawn_blocking(move || state.reload_keys()).await {
            tracing::error!(error = %e, "reloading the API keys failed");
        }
    }
}

/// A stream that fails with [`std::io::ErrorKind::TimedOut`] once it has gone `idle`
/// without a byte read or written while someone waits on it.
pub struct IdleIo<T> {
    io: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> IdleIo<T> {
    /// Wraps `io`; the clock starts now.
    pub fn new(io: T, idle: Duration) -> Self {
        Self {
            io,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// `Pending` unless the deadline passed, then the time-out error.
    fn expired<R>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection idle past server.idle_timeout_s",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.expired(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, data) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.expired(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.expired(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
