//! `chat daemon --http ADDR`: the same JSON-RPC over HTTP on a loopback
//! address, for clients that cannot open a Unix socket (a browser
//! extension, a language without one). Every request carries
//! `Authorization: Bearer <token>`, the token the daemon wrote to
//! `daemon.token` (mode 0600) in the profile folder when it started.
//!
//! - `POST /api/v1/rpc`: one JSON-RPC request as the body (at most
//!   [`rpc::MAX_REQUEST`] bytes), its response as the answer (a
//!   notification: `204`). `output` notifications are not sent over HTTP.
//! - `GET /api/v1/events`: Server-Sent Events, one `data:` line per event
//!   object (what `subscribe` sends), until the client goes;
//!   `?noBacklog=true&noRead=true` as for `subscribe`.

use std::convert::Infallible;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zeroize::Zeroizing;

use crate::daemon::{Request, Subscriptions, handle, parse, response};
use crate::error::{CliError, Result};
use crate::rpc::{self, RpcError, code};
use crate::session::Ctx;

/// Writes a new random token to `path` (mode 0600) and returns it.
pub fn new_token(path: &Path) -> Result<Zeroizing<String>> {
    use rand_core::{OsRng, RngCore};
    let mut raw = Zeroizing::new([0u8; 32]);
    OsRng
        .try_fill_bytes(raw.as_mut())
        .map_err(|e| CliError::Usage(format!("no randomness for the token: {e}")))?;
    let token = Zeroizing::new(hex::encode(raw.as_ref()));
    let _ = std::fs::remove_file(path);
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| CliError::io(path, e))?
    };
    writeln!(f, "{}", token.as_str()).map_err(|e| CliError::io(path, e))?;
    Ok(token)
}

/// The HTTP side of a daemon.
pub struct Http {
    /// The options requests run with (the daemon's client in `shared`).
    pub base: Ctx,
    /// The bearer token.
    pub token: Zeroizing<String>,
    /// The daemon's tasks (SIGTERM waits for them).
    pub tracker: TaskTracker,
    /// Cancelled at SIGTERM: the listener stops and event streams end.
    pub stop: CancellationToken,
}

impl Http {
    /// Serves until `stop`.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let stop = self.stop.clone();
        let app = Router::new()
            .route("/api/v1/rpc", post(call))
            .route("/api/v1/events", get(events))
            .layer(DefaultBodyLimit::max(rpc::MAX_REQUEST))
            .with_state(Arc::new(self));
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            crate::errln!("warning: the HTTP listener stopped: {e}");
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        bool::from(given.trim().as_bytes().ct_eq(self.token.as_bytes()))
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is needed: the one in daemon.token in the profile folder\n",
    )
        .into_response()
}

fn json_response(line: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], line).into_response()
}

async fn call(State(h): State<Arc<Http>>, headers: HeaderMap, body: Bytes) -> Response {
    if !h.authorized(&headers) {
        return unauthorized();
    }
    let text = String::from_utf8_lossy(&body);
    let req = match parse(&text) {
        Ok(r) => r,
        Err((id, e)) => return json_response(response(&id, Err(e))),
    };
    if matches!(req.method.as_str(), "subscribe" | "listen" | "unsubscribe") {
        let e = RpcError::new(
            code::METHOD_NOT_FOUND,
            "over HTTP, events come from GET /api/v1/events (Server-Sent Events)",
        );
        return json_response(response(&req.id, Err(e)));
    }
    let id = req.id.clone();
    let notification = req.notification;
    let (out, mut rx) = mpsc::channel::<String>(1024);
    let base = h.base.clone();
    let subs = Subscriptions::default();
    // Tracked, so SIGTERM lets it finish even if this client leaves.
    let running = h
        .tracker
        .spawn(async move { handle(base, req, &out, &subs).await });
    let mut answer = None;
    while let Some(line) = rx.recv().await {
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v.get("method").is_none()
            && v.get("id") == Some(&id)
        {
            answer = Some(line);
        }
    }
    let _ = running.await;
    match answer {
        Some(line) => json_response(line),
        None if notification => StatusCode::NO_CONTENT.into_response(),
        None => json_response(response(
            &id,
            Err(RpcError::new(
                code::INTERNAL,
                "the request ended without an answer",
            )),
        )),
    }
}

/// `?noBacklog=true&noRead=true`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventParams {
    #[serde(default)]
    no_backlog: bool,
    #[serde(default)]
    no_read: bool,
}

/// Aborts the subscription when the event stream is dropped (the client
/// went away).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn events(
    State(h): State<Arc<Http>>,
    headers: HeaderMap,
    Query(q): Query<EventParams>,
) -> Response {
    if !h.authorized(&headers) {
        return unauthorized();
    }
    let mut params = serde_json::Map::new();
    params.insert("noBacklog".into(), q.no_backlog.into());
    params.insert("noRead".into(), q.no_read.into());
    let req = Request {
        id: json!("events"),
        notification: true,
        method: "subscribe".into(),
        params,
    };
    let (out, rx) = mpsc::channel::<String>(1024);
    let base = h.base.clone();
    let running = tokio::spawn(async move {
        let subs = Subscriptions::default();
        handle(base, req, &out, &subs).await;
    });
    let guard = AbortOnDrop(running.abort_handle());
    let stream = event_stream(rx, guard).take_until(h.stop.clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn event_stream(
    rx: mpsc::Receiver<String>,
    guard: AbortOnDrop,
) -> impl Stream<Item = std::result::Result<Event, Infallible>> {
    futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        loop {
            let line = rx.recv().await?;
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if v["method"] == "event" {
                let e = Event::default().data(v["params"]["event"].to_string());
                return Some((Ok(e), (rx, guard)));
            }
        }
    })
}
