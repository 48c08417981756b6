//! The accept loop: every TCP connection counts against `max_connections`
//! from the moment it is accepted (not only once it becomes a WebSocket),
//! and every connection has deadlines, so a client that trickles bytes or
//! goes quiet cannot hold a socket, a task and a permit for ever.
//!
//! - `header_timeout_secs`: the whole request head must arrive within this
//!   (hyper's header read timeout, with a timer; it also bounds how long an
//!   idle keep-alive connection waits for its next request).
//! - `request_timeout_secs`: a REST request (body included) must be
//!   answered within this; otherwise `408` `timeout`.
//! - `body_idle_timeout_secs`: a request body that sends nothing for this
//!   long fails (`408` `timeout`).
//! - `upload_timeout_secs`: a whole media upload (see `routes/media.rs`).
//!
//! Beyond `max_connections`, a new connection gets a canned `503`
//! `unavailable` and is closed without reading anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;

use crate::state::AppState;

/// The connection's place under `max_connections`, held by the HTTP
/// connection and, after an upgrade, by the WebSocket (it is in every
/// request's extensions).
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// What a connection over the limit is told before it is closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 69\r\n\r\n\
{\"error\":{\"code\":\"unavailable\",\"message\":\"connection limit reached\"}}";

/// Accepts until `stop` flips, then lets open requests finish (bounded by
/// the request deadline) and returns.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let header_timeout = Duration::from_secs(state.config.header_timeout_secs.max(1));
    let drain = Duration::from_secs(state.config.request_timeout_secs.max(1) + 1);
    let mut conns = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a
                    // little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        // Frames are small and latency matters: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = state.connections.clone().try_acquire_owned() else {
            state.metrics.connection_closed("limit");
            // A fresh socket has room for this in its send buffer; if not,
            // the client just sees the close.
            let _ = tcp.try_write(FULL);
            drop(tcp);
            continue;
        };
        let slot = ConnectionSlot(Arc::new(permit));
        let app = app.clone();
        let mut stop = stop.clone();
        let metrics = state.metrics.clone();
        // Whether a request was served: the header timer also ends an idle
        // keep-alive connection between requests, which is no attack.
        let served = Arc::new(AtomicBool::new(false));
        let seen = served.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            seen.store(true, Ordering::Relaxed);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(slot.clone());
            // A router is always ready; its future owns what it needs.
            tower_service::Service::call(&mut app.clone(), req)
        });
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Some(header_timeout));
            let conn = builder
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        if e.is_timeout() {
                            metrics.connection_closed(if served.load(Ordering::Relaxed) {
                                "keepalive_idle"
                            } else {
                                "header_timeout"
                            });
                        }
                        tracing::debug!(error = %e, %peer, "connection ended");
                    }
                    return;
                }
                _ = stopped(&mut stop) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    // In-flight requests finish (each is bounded by its own deadline);
    // what is still open after that is dropped.
    let _ = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    conns.abort_all();
}

/// Resolves once `stop` is true (without holding its lock across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
