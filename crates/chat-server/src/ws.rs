//! One WebSocket connection: authenticate, register, drain the queue with a
//! window of in-flight messages, then relay frames until the client leaves,
//! goes idle, or the server stops.
//!
//! Delivery order and completeness come from the database queue: the
//! connection keeps a cursor (the last queue `seq` it sent) and pulls rows
//! after it whenever the window has room. Pushes from the hub are a fast path
//! that is taken only when the connection is caught up; a dropped push just
//! means a pull.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chat_proto::MessageStatus;
use chat_proto::rest::{ErrorCode, User};
use chat_proto::validate::{self, FRAME_MAX};
use chat_proto::ws::{ClientFrame, Online, Ready, ServerFrame, TypingIn};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until};

use crate::auth;
use crate::error::ApiError;
use crate::hub::{Push, Registration};
use crate::relay;
use crate::state::AppState;

/// `GET /ws`: a bearer token in the upgrade request authenticates at once;
/// otherwise the first frame must be `auth`.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let permit = match state.connections.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            return ApiError::new(ErrorCode::Unavailable, "connection limit reached")
                .into_response();
        }
    };
    let pre_auth = match auth::bearer(&headers).map(str::to_owned) {
        Some(token) => match auth::user_for_token(&state, &token).await {
            Ok(Some(user)) => Some(user),
            Ok(None) => return ApiError::unauthorized().into_response(),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    // tungstenite allocates the read buffer up front and keeps it: 1 KiB
    // per idle connection instead of the default 128 KiB (or the 4 KiB
    // used before). Larger frames are read in more steps.
    ws.read_buffer_size(1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(FRAME_MAX)
        .max_frame_size(FRAME_MAX)
        .on_upgrade(move |socket| async move {
            run(state, socket, pre_auth).await;
            drop(permit);
        })
}

async fn send(socket: &mut WebSocket, state: &AppState, frame: &ServerFrame) -> bool {
    let Ok(text) = serde_json::to_string(frame) else {
        return false;
    };
    state.metrics.frames_sent.fetch_add(1, Ordering::Relaxed);
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn authenticate(state: &AppState, socket: &mut WebSocket) -> Option<User> {
    let deadline = Duration::from_secs(state.config.auth_timeout_secs);
    let first = tokio::time::timeout(deadline, socket.next()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(_) | Err(_) => {
            let _ = send(
                socket,
                state,
                &relay::error_frame(ApiError::unauthorized(), None),
            )
            .await;
            return None;
        }
    };
    let user = match serde_json::from_str::<ClientFrame>(&text) {
        Ok(ClientFrame::Auth(a)) => auth::user_for_token(state, &a.token).await.ok().flatten(),
        _ => None,
    };
    if user.is_none() {
        let _ = send(
            socket,
            state,
            &relay::error_frame(ApiError::unauthorized(), None),
        )
        .await;
    }
    user
}

/// Per-connection delivery state.
struct Delivery {
    /// Last queue seq sent on this connection.
    cursor: i64,
    /// Sent, not yet `delivered`.
    in_flight: HashSet<String>,
    /// True when the database holds nothing after `cursor`.
    caught_up: bool,
    window: usize,
}

impl Delivery {
    async fn pull(&mut self, state: &AppState, socket: &mut WebSocket, user: &str) -> bool {
        while self.in_flight.len() < self.window {
            let room = self.window - self.in_flight.len();
            let rows = match state.store.pending(user, self.cursor, room).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "queue read failed");
                    return true;
                }
            };
            let got = rows.len();
            for q in rows {
                self.cursor = q.seq;
                self.in_flight.insert(q.message.id.clone());
                if !send(socket, state, &frame_for(q.message)).await {
                    return false;
                }
            }
            if got < room {
                self.caught_up = true;
                return true;
            }
        }
        self.caught_up = false;
        true
    }
}

fn frame_for(m: chat_proto::rest::RelayedMessage) -> ServerFrame {
    if m.group_id.is_some() {
        ServerFrame::GroupMessage(m)
    } else {
        ServerFrame::Message(m)
    }
}

async fn presence(state: &AppState, user: &User, online: bool) -> Vec<String> {
    let contacts = state.store.contacts(&user.id).await.unwrap_or_default();
    let frame = ServerFrame::Online(Online {
        user_id: user.id.clone(),
        username: user.username.clone(),
        online,
    });
    for c in &contacts {
        state.hub.send(c, &frame);
    }
    contacts
}

/// Authenticates, registers with the hub, exchanges presence, hands over
/// queued statuses and sends the first window of queued messages.
async fn open(
    state: &AppState,
    socket: &mut WebSocket,
    pre_auth: Option<User>,
) -> Option<(User, Registration, Delivery, bool)> {
    let user = match pre_auth {
        Some(u) => u,
        None => authenticate(state, socket).await?,
    };
    let reg = state.hub.register(&user.id);
    state.metrics.connections.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(user = %user.id, conn = reg.id, "connected");

    let ready = ServerFrame::Ready(Ready {
        user_id: user.id.clone(),
        username: user.username.clone(),
    });
    let mut alive = send(socket, state, &ready).await;
    // Tell this client who of its contacts is online, and them about it.
    let contacts = if reg.first {
        presence(state, &user, true).await
    } else {
        state.store.contacts(&user.id).await.unwrap_or_default()
    };
    for c in state.hub.online_among(&contacts) {
        if let Ok(Some(u)) = state.store.user(c).await {
            let f = ServerFrame::Online(Online {
                user_id: u.id,
                username: u.username,
                online: true,
            });
            alive &= send(socket, state, &f).await;
        }
    }
    if let Ok(statuses) = state.store.take_statuses(&user.id).await {
        for e in statuses {
            alive &= send(socket, state, &relay::status_frame(&e)).await;
        }
    }
    let mut d = Delivery {
        cursor: 0,
        in_flight: HashSet::new(),
        caught_up: false,
        window: state.config.delivery_window.max(1),
    };
    alive = alive && d.pull(state, socket, &user.id).await;
    Some((user, reg, d, alive))
}

/// One connection's life. Memory matters here (an idle connection is this
/// future plus its buffers), so the large, short-lived steps (`open`, frame
/// handling, queue pulls, presence) run in boxed futures that exist only
/// while they run: the future that stays resident holds just the loop's
/// state.
async fn run(state: Arc<AppState>, mut socket: WebSocket, pre_auth: Option<User>) {
    let Some((user, mut reg, mut d, mut alive)) =
        Box::pin(open(&state, &mut socket, pre_auth)).await
    else {
        let _ = socket.close().await;
        return;
    };

    let ping_every = Duration::from_secs(state.config.ping_interval_secs.max(1));
    let idle = Duration::from_secs(state.config.idle_timeout_secs.max(1));
    let mut next_ping = Instant::now() + ping_every;
    let mut idle_deadline = Instant::now() + idle;
    let mut shutdown = state.shutdown.clone();

    while alive {
        tokio::select! {
            incoming = socket.next() => {
                idle_deadline = Instant::now() + idle;
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        alive = Box::pin(handle_frame(&state, &mut socket, &user, &mut d, &text)).await;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        alive = send(&mut socket, &state, &relay::bad_frame("frames are JSON text")).await;
                    }
                    Some(Ok(Message::Close(_))) | None => alive = false,
                    Some(Ok(_)) => {} // ping / pong
                    Some(Err(e)) => {
                        let too_big = e.to_string().to_lowercase().contains("size");
                        if too_big {
                            let err = ApiError::new(ErrorCode::TooLarge, format!("frame larger than {FRAME_MAX} bytes"));
                            let _ = send(&mut socket, &state, &relay::error_frame(err, None)).await;
                        }
                        alive = false;
                    }
                }
            }
            push = reg.rx.recv() => {
                match push {
                    Some(Push::Queued(seq, m)) => {
                        if seq <= d.cursor {
                            // Already sent by a pull.
                        } else if d.caught_up && d.in_flight.len() < d.window {
                            d.cursor = seq;
                            d.in_flight.insert(m.id.clone());
                            alive = send(&mut socket, &state, &frame_for(*m)).await;
                        } else {
                            d.caught_up = false;
                        }
                    }
                    Some(Push::Frame(f)) => alive = send(&mut socket, &state, &f).await,
                    Some(Push::Close) | None => alive = false,
                }
                if alive && reg.missed.swap(false, Ordering::Relaxed) {
                    d.caught_up = false;
                }
                if alive && !d.caught_up && d.in_flight.len() < d.window {
                    alive = Box::pin(d.pull(&state, &mut socket, &user.id)).await;
                }
            }
            _ = sleep_until(next_ping) => {
                next_ping = Instant::now() + ping_every;
                alive = socket.send(Message::Ping(Vec::new().into())).await.is_ok();
            }
            _ = sleep_until(idle_deadline) => {
                tracing::debug!(user = %user.id, "idle timeout");
                alive = false;
            }
            _ = shutdown.changed() => {
                alive = false;
            }
        }
    }
    let _ = socket.close().await;
    state.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    if state.hub.unregister(&user.id, reg.id) {
        Box::pin(presence(&state, &user, false)).await;
    }
    tracing::debug!(user = %user.id, "disconnected");
}

async fn handle_frame(
    state: &AppState,
    socket: &mut WebSocket,
    user: &User,
    d: &mut Delivery,
    text: &str,
) -> bool {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(f) => f,
        Err(e) => {
            return send(
                socket,
                state,
                &relay::bad_frame(format!("invalid frame: {e}")),
            )
            .await;
        }
    };
    match frame {
        ClientFrame::Auth(_) => {
            send(socket, state, &relay::bad_frame("already authenticated")).await
        }
        ClientFrame::Message(m) => {
            let id = m.id.clone();
            let reply = match relay::send_message(state, &user.id, m).await {
                Ok(ack) => ServerFrame::Ack(ack),
                Err(e) => relay::error_frame(e, Some(id)),
            };
            send(socket, state, &reply).await
        }
        ClientFrame::GroupMessage(m) => {
            let id = m.id.clone();
            let reply = match relay::send_group_message(state, &user.id, m).await {
                Ok(ack) => ServerFrame::Ack(ack),
                Err(e) => relay::error_frame(e, Some(id)),
            };
            send(socket, state, &reply).await
        }
        ClientFrame::Delivered(del) => {
            for id in &del.message_ids {
                d.in_flight.remove(id);
            }
            let result = relay::set_status(
                state,
                &user.id,
                del.message_ids,
                MessageStatus::Delivered,
                None,
            )
            .await;
            if let Err(e) = result {
                if !send(socket, state, &relay::error_frame(e, None)).await {
                    return false;
                }
            }
            if !d.caught_up && d.in_flight.len() < d.window {
                return d.pull(state, socket, &user.id).await;
            }
            true
        }
        ClientFrame::Read(r) => {
            if let Err(e) = validate::id(&r.to, "to") {
                return send(socket, state, &relay::error_frame(e.into(), None)).await;
            }
            match relay::set_status(
                state,
                &user.id,
                r.message_ids,
                MessageStatus::Read,
                Some(r.to),
            )
            .await
            {
                Ok(_) => true,
                Err(e) => send(socket, state, &relay::error_frame(e, None)).await,
            }
        }
        ClientFrame::Typing(t) => {
            let frame = ServerFrame::Typing(TypingIn {
                from: user.id.clone(),
                typing: t.typing,
                group_id: t.group_id.clone(),
            });
            match (t.to, t.group_id) {
                (Some(to), None) => {
                    if validate::id(&to, "to").is_ok() {
                        state.hub.send(&to, &frame);
                    }
                    true
                }
                (None, Some(g)) => {
                    if relay::member_role(state, &g, &user.id).await.is_err() {
                        let e = ApiError::not_found("group");
                        return send(socket, state, &relay::error_frame(e, None)).await;
                    }
                    for m in state.store.member_ids(&g).await.unwrap_or_default() {
                        if m != user.id {
                            state.hub.send(&m, &frame);
                        }
                    }
                    true
                }
                _ => {
                    send(
                        socket,
                        state,
                        &relay::bad_frame("typing needs exactly one of to or groupId"),
                    )
                    .await
                }
            }
        }
    }
}
