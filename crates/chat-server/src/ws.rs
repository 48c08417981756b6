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
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chat_proto::MessageStatus;
use chat_proto::rest::{ErrorCode, User};
use chat_proto::validate::{self, FRAME_MAX};
use chat_proto::ws::{ClientFrame, CloseReason, Online, Ready, ServerFrame, TypingIn};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, SinkExt, StreamExt};
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
    slot: Option<axum::Extension<crate::serve::ConnectionSlot>>,
    ws: WebSocketUpgrade,
) -> Response {
    // The connection's place under `max_connections` (taken when it was
    // accepted) goes with the WebSocket.
    let permit = slot.map(|axum::Extension(s)| s);
    let pre_auth = match auth::bearer(&headers).map(str::to_owned) {
        Some(token) => match auth::device_for_token(&state, &token).await {
            Ok(Some((user, device))) => Some(Authed {
                user,
                device,
                token: auth::token_hash(&token),
            }),
            Ok(None) => return auth::refusal(&state, &token).await.into_response(),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    // Boxed: the upgrade task keeps what its callback captured for the
    // connection's life (`-Zprint-type-sizes`: 120 bytes unboxed).
    let upgrade = Box::new(Upgrade {
        state,
        pre_auth,
        _permit: permit,
    });
    // tungstenite allocates the read buffer up front and keeps it: 512
    // bytes per idle connection instead of the default 128 KiB (4 KiB
    // before; measured 12.4 -> 4.1 KB per connection together with the
    // smaller connection future). Larger frames are read in more steps.
    ws.read_buffer_size(512)
        .write_buffer_size(4 * 1024)
        .max_message_size(FRAME_MAX)
        .max_frame_size(FRAME_MAX)
        .on_upgrade(move |socket| run(Box::new(Start { socket, upgrade })))
}

async fn send(socket: &mut WebSocket, state: &AppState, frame: &ServerFrame) -> bool {
    let Ok(text) = serde_json::to_string(frame) else {
        return false;
    };
    state.metrics.frames_sent.inc();
    if let ServerFrame::Error(e) = frame {
        state.metrics.frame_refused(e.code);
    }
    // Written to the connection's buffer (and to the socket once the
    // buffer is full); the loop in `run` flushes when no other event is
    // ready, so a burst of frames leaves in one write.
    socket.feed(Message::Text(text.into())).await.is_ok()
}

/// Who a connection serves.
struct Authed {
    user: User,
    /// The account's device the token belongs to.
    device: u32,
    /// The token's hash.
    token: Vec<u8>,
}

/// Reads the `auth` frame: the user, device and token hash, or why not.
async fn authenticate(state: &AppState, socket: &mut WebSocket) -> Result<Authed, CloseReason> {
    let deadline = Duration::from_secs(state.config.auth_timeout_secs);
    let first = tokio::time::timeout(deadline, socket.next()).await;
    let mut given = None;
    let user = match first {
        Err(_) => Err(CloseReason::AuthTimeout),
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ClientFrame>(&text) {
            Ok(ClientFrame::Auth(a)) => {
                let found = auth::device_for_token(state, &a.token).await.ok().flatten();
                let token = auth::token_hash(&a.token);
                given = Some(a.token);
                found
                    .map(|(user, device)| Authed {
                        user,
                        device,
                        token,
                    })
                    .ok_or(CloseReason::AuthFailed)
            }
            _ => Err(CloseReason::AuthFailed),
        },
        Ok(_) => Err(CloseReason::AuthFailed),
    };
    if user.is_err() {
        let refusal = match &given {
            Some(t) => auth::refusal(state, t).await,
            None => ApiError::unauthorized(),
        };
        let _ = send(socket, state, &relay::error_frame(refusal, None)).await;
    }
    user
}

/// Closes with `reason`'s code and text (and counts it).
async fn close_with(socket: &mut WebSocket, state: &AppState, reason: CloseReason) {
    state.metrics.connection_closed(reason.reason());
    let frame = CloseFrame {
        code: reason.code(),
        reason: reason.reason().into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Per-connection delivery state.
struct Delivery {
    /// The device whose queue this is.
    device: u32,
    /// Last queue seq sent on this connection.
    cursor: i64,
    /// Sent, not yet `delivered`.
    in_flight: HashSet<String>,
    /// True when the database holds nothing after `cursor`.
    caught_up: bool,
    /// Set by storage when one of this connection's messages failed to be
    /// stored: later ones are refused and the connection closes (1013), so
    /// the client resends in order and none overtakes the failed one.
    stream: Arc<std::sync::atomic::AtomicBool>,
    window: usize,
}

impl Delivery {
    async fn pull(&mut self, state: &AppState, socket: &mut WebSocket, user: &str) -> bool {
        while self.in_flight.len() < self.window {
            let room = self.window - self.in_flight.len();
            let rows = match state
                .store
                .pending(user, self.device, self.cursor, room)
                .await
            {
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

/// Authenticates, registers with the hub, exchanges presence, hands over
/// queued statuses and sends the first window of queued messages.
async fn open(
    state: &Arc<AppState>,
    socket: &mut WebSocket,
    pre_auth: Option<Authed>,
) -> Result<(User, Registration, Delivery, bool), CloseReason> {
    let Authed {
        user,
        device,
        token,
    } = match pre_auth {
        Some(u) => u,
        None => authenticate(state, socket).await?,
    };
    let reg = state.hub.register(&user.id, device, token);
    state.metrics.connections.inc();
    // A device connecting here closes its connections on other nodes (the
    // newer one wins). Several connections of one device on one node stay
    // allowed, as before clusters (each gets every message).
    if let Some(cluster) = &state.cluster {
        // Subscribed before the first pull: a message committed after the
        // pull is hinted to this node.
        cluster.watch(&user.id).await;
        cluster.publish(
            &user.id,
            crate::cluster::Hint::Connected {
                device,
                at: auth::now_ms(),
            },
        );
    }
    // Shutdown sets the flag, then closes every registered mailbox: a
    // connection registered after that sees the flag here.
    if *state.shutdown.borrow() {
        reg.mailbox.close(CloseReason::GoingAway);
    }
    tracing::debug!(user = %user.id, device, conn = reg.id, "connected");

    let ready = ServerFrame::Ready(Ready {
        user_id: user.id.clone(),
        username: user.username.clone(),
        group_events: true,
    });
    let mut alive = send(socket, state, &ready).await;
    // Tell those who may see this user that they are online, and this
    // client who of those it may see is online.
    // (Not when their offline was still held back: nobody heard it.)
    if reg.first && !crate::presence::cancel_offline(state, &user.id) {
        crate::presence::presence(state, &user, true).await;
    }
    let visible = state
        .store
        .presence_visible(&user.id)
        .await
        .unwrap_or_default();
    for c in crate::presence::online_among(state, &visible).await {
        if let Ok(Some(u)) = state.store.user(&c).await {
            let f = ServerFrame::Online(Online {
                user_id: u.id,
                username: u.username,
                online: true,
            });
            alive &= send(socket, state, &f).await;
        }
    }
    if let Ok(events) = state.store.take_group_events(&user.id).await {
        for json in events {
            state.metrics.frames_sent.inc();
            alive &= socket.feed(Message::Text(json.into())).await.is_ok();
        }
    }
    if let Ok(statuses) = state.store.take_statuses(&user.id, device).await {
        for e in statuses {
            alive &= send(socket, state, &relay::status_frame(&e)).await;
        }
    }
    let mut d = Delivery {
        device,
        cursor: 0,
        in_flight: HashSet::new(),
        caught_up: false,
        stream: Arc::default(),
        window: state.config.delivery_window.max(1),
    };
    alive = alive && d.pull(state, socket, &user.id).await;
    Ok((user, reg, d, alive))
}

/// What a connection task starts with. Passed boxed and unpacked by
/// [`unbox`]: an async fn keeps its arguments in its future for its whole
/// life beside the locals they are moved into (rust-lang/rust#62958: the
/// socket alone is 368 bytes), and a box destructured inside an async fn
/// is freed only when the fn ends (DHAT showed these 488 bytes held by
/// every connection).
struct Start {
    socket: WebSocket,
    upgrade: Box<Upgrade>,
}

/// What the upgrade request brings to its connection.
struct Upgrade {
    state: Arc<AppState>,
    pre_auth: Option<Authed>,
    /// Held for the connection's life: the connection limit.
    _permit: Option<crate::serve::ConnectionSlot>,
}

/// Moves a box's contents out and frees the box now.
#[expect(clippy::boxed_local, reason = "freeing the box is the point")]
fn unbox<T>(b: Box<T>) -> T {
    *b
}

/// Most writes (1:1 messages, `delivered` batches) of one connection being
/// committed at once.
const MAX_PIPELINE: usize = 256;

/// A write being committed; resolves to the frame to answer with, if any
/// (an `ack` or `error` for a message; an `error` for a failed `delivered`).
type Pending = Pin<Box<dyn Future<Output = Option<ServerFrame>> + Send>>;

/// Polls a write once, which validates it and hands its job to the writer
/// thread (so jobs reach the writer in the order frames arrived), then
/// queues it to be answered, in that same order, when its batch commits.
///
/// The rest of the write runs as a task of its own: the connection polls
/// its pipeline only between events, and a write that holds a database
/// connection (PostgreSQL's pool: a `delivered` batch's transaction) must
/// not wait for that, or a pull waiting for a pooled connection would wait
/// on writes that wait on it.
async fn pipeline_push(pipeline: &mut Option<Box<FuturesOrdered<Pending>>>, mut fut: Pending) {
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    let queue = pipeline.get_or_insert_with(|| Box::new(FuturesOrdered::new()));
    match first {
        Poll::Ready(frame) => queue.push_back(Box::pin(std::future::ready(frame))),
        Poll::Pending => {
            let task = tokio::spawn(fut);
            queue.push_back(Box::pin(async move {
                // A panicked write answers nothing (as a dropped one did).
                task.await.ok().flatten()
            }));
        }
    }
}

/// What woke an idle connection.
enum Event {
    Incoming(Option<Result<Message, axum::Error>>),
    Push(Push),
    /// Boxed: a `ServerFrame` is 176 bytes, and the loop holds an event
    /// across its waits.
    Committed(Option<Box<ServerFrame>>),
    Timer,
}

fn pull_every(state: &AppState) -> Duration {
    Duration::from_secs(state.config.cluster.idle_pull_secs.max(1))
}

impl Conn {
    /// The one timer: the next ping, the idle deadline or the next pull.
    fn next_timer(&self) -> Instant {
        let t = self.next_ping.min(self.idle_deadline);
        self.next_pull.map_or(t, |p| p.min(t))
    }
}

/// The loop's state between events.
struct Conn {
    user: User,
    reg: Registration,
    d: Delivery,
    ping_every: Duration,
    idle: Duration,
    next_ping: Instant,
    idle_deadline: Instant,
    /// With other nodes: when to pull from the database next if no hint
    /// came (a lost hint delays a message by at most this period).
    next_pull: Option<Instant>,
    /// 1:1 messages handed to the writer in arrival order, acknowledged
    /// in that order as their batches commit. Created on first use and
    /// dropped when empty: an idle connection pays nothing for it.
    pipeline: Option<Box<FuturesOrdered<Pending>>>,
    /// Why the server ends the connection, when it does (a client that
    /// closes or vanishes leaves this `None`).
    close: Option<CloseReason>,
}

/// Most events handled back to back before their frames are flushed: a
/// bound on how long a busy connection holds a written frame.
const FLUSH_AFTER: usize = 32;

/// The connection's next event.
async fn next_event(socket: &mut WebSocket, c: &mut Conn, room: bool, timer: Instant) -> Event {
    // One timer for every deadline: each timer is 112 bytes of every
    // connection's future.
    tokio::select! {
        m = socket.next(), if room => Event::Incoming(m),
        f = next_committed(&mut c.pipeline) => Event::Committed(f),
        p = c.reg.mailbox.recv() => Event::Push(p),
        _ = sleep_until(timer) => Event::Timer,
    }
}

/// The next committed message's frame; never resolves when none is pending.
/// A `poll_fn`, not an async fn: that one was 200 bytes of every idle
/// connection's future, this is a reference.
fn next_committed(
    p: &mut Option<Box<FuturesOrdered<Pending>>>,
) -> impl Future<Output = Option<Box<ServerFrame>>> + '_ {
    std::future::poll_fn(move |cx| match p {
        Some(q) => match q.poll_next_unpin(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(frame.map(Box::new)),
            // Empty: the loop makes a new wait after the next push.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        },
        None => Poll::Pending,
    })
}

/// One connection's life. Memory matters here: an idle connection is this
/// future plus its buffers, and an async fn is as large as its largest
/// state. So the resident loop only waits for the next [`Event`]; the
/// large, short-lived steps (`open`, handling an event, presence) run in
/// boxed futures that exist only while they run. Shutdown arrives as a
/// [`Push::Close`] through the mailbox, not as another future to wait on.
async fn run(start: Box<Start>) {
    let Start {
        mut socket,
        upgrade,
    } = unbox(start);
    let Upgrade {
        state,
        pre_auth,
        _permit,
    } = unbox(upgrade);
    // Opened or closed in one boxed step: awaiting the close here would
    // keep open's 184-byte result in the future for the connection's life.
    let Some((user, reg, d, mut alive)) = Box::pin(async {
        match open(&state, &mut socket, pre_auth).await {
            Ok(opened) => Some(opened),
            Err(reason) => {
                close_with(&mut socket, &state, reason).await;
                None
            }
        }
    })
    .await
    else {
        return;
    };
    let ping_every = Duration::from_secs(state.config.ping_interval_secs.max(1));
    let idle = Duration::from_secs(state.config.idle_timeout_secs.max(1));
    let mut c = Conn {
        user,
        reg,
        d,
        ping_every,
        idle,
        next_ping: Instant::now() + ping_every,
        idle_deadline: Instant::now() + idle,
        next_pull: state
            .cluster
            .as_ref()
            .map(|_| Instant::now() + pull_every(&state)),
        pipeline: None,
        close: None,
    };
    // Events handled since the frames they wrote were last flushed (`open`
    // wrote some).
    let mut unflushed = 1usize;
    while alive {
        let room = c.pipeline.as_ref().is_none_or(|q| q.len() < MAX_PIPELINE);
        let timer = c.next_timer();
        // Frames written for events handled back to back go out in one
        // socket write: take the next event only if it is ready now, and
        // flush before waiting.
        let ready = if (1..FLUSH_AFTER).contains(&unflushed) {
            next_event(&mut socket, &mut c, room, timer).now_or_never()
        } else {
            None
        };
        let event = match ready {
            Some(e) => e,
            None if unflushed > 0 => {
                unflushed = 0;
                alive = socket.flush().await.is_ok();
                continue;
            }
            None => next_event(&mut socket, &mut c, room, timer).await,
        };
        // A client's frame may wait on the store (`delivered`, `read`):
        // what is written goes out first.
        if unflushed > 0 && matches!(event, Event::Incoming(_) | Event::Timer) {
            unflushed = 0;
            if socket.flush().await.is_err() {
                break;
            }
        }
        alive = Box::pin(on_event(&state, &mut socket, &mut c, event)).await;
        unflushed += 1;
    }
    match c.close {
        Some(reason) => close_with(&mut socket, &state, reason).await,
        None => {
            let _ = socket.close().await;
        }
    }
    state.metrics.connections.dec();
    let last_here = state.hub.unregister(&c.user.id, c.reg.id);
    if let Some(cluster) = &state.cluster {
        cluster.unwatch(&c.user.id);
    }
    if last_here {
        // Boxed: inline, this 1.4 KB future made every connection's task
        // that much larger for its whole life (`-Zprint-type-sizes`).
        let elsewhere = match &state.cluster {
            Some(cluster) => Box::pin(cluster.connected_elsewhere(&c.user.id)).await,
            None => false,
        };
        if !elsewhere && state.config.presence_grace_ms == 0 {
            Box::pin(crate::presence::presence(&state, &c.user, false)).await;
        } else if !elsewhere {
            crate::presence::went_offline(&state, &c.user);
        }
    }
    tracing::debug!(user = %c.user.id, "disconnected");
}

/// Handles one event; false ends the connection.
async fn on_event(
    state: &Arc<AppState>,
    socket: &mut WebSocket,
    c: &mut Conn,
    event: Event,
) -> bool {
    let d = &mut c.d;
    match event {
        Event::Committed(frame) => {
            if c.pipeline.as_ref().is_some_and(|q| q.is_empty()) {
                c.pipeline = None;
            }
            let alive = match frame {
                Some(f) => send(socket, state, &f).await,
                None => true,
            };
            if d.stream.load(std::sync::atomic::Ordering::SeqCst) {
                c.close = Some(CloseReason::TryAgainLater);
                return false;
            }
            alive
        }
        Event::Incoming(incoming) => {
            c.idle_deadline = Instant::now() + c.idle;
            match incoming {
                Some(Ok(Message::Text(text))) => {
                    handle_frame(state, socket, &c.user, d, &mut c.pipeline, &text).await
                }
                Some(Ok(Message::Binary(_))) => {
                    send(socket, state, &relay::bad_frame("frames are JSON text")).await
                }
                Some(Ok(Message::Close(_))) | None => false,
                Some(Ok(_)) => true, // ping / pong
                Some(Err(e)) => {
                    // The variant, not the text: tungstenite's message
                    // says "Message too long", never "size".
                    match e.into_inner().downcast_ref::<tungstenite::Error>() {
                        Some(tungstenite::Error::Capacity(_)) => {
                            let err = ApiError::new(
                                ErrorCode::TooLarge,
                                format!("frame larger than {FRAME_MAX} bytes"),
                            );
                            let _ = send(socket, state, &relay::error_frame(err, None)).await;
                            c.close = Some(CloseReason::TooLarge);
                        }
                        Some(tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_)) => {
                            c.close = Some(CloseReason::ProtocolError);
                        }
                        // The connection itself failed: nobody to tell.
                        _ => {}
                    }
                    false
                }
            }
        }
        Event::Push(push) => {
            let mut alive = match push {
                Push::Queued(seq, m) => {
                    // With numbers contiguous across nodes, only the very
                    // next one may be pushed: a hint from another node may
                    // overtake an earlier message's.
                    let next = !state.store.contiguous_seqs() || seq == d.cursor + 1;
                    if seq <= d.cursor {
                        true // already sent by a pull
                    } else if d.caught_up && next && d.in_flight.len() < d.window {
                        d.cursor = seq;
                        d.in_flight.insert(m.id.clone());
                        send(socket, state, &frame_for(*m)).await
                    } else {
                        d.caught_up = false;
                        true
                    }
                }
                Push::Frame(f) => send(socket, state, &f).await,
                Push::Pull => {
                    d.caught_up = false;
                    true
                }
                Push::Close(reason) => {
                    c.close = Some(reason);
                    false
                }
            };
            if alive && c.reg.mailbox.take_missed() {
                d.caught_up = false;
            }
            if alive && !d.caught_up && d.in_flight.len() < d.window {
                alive = d.pull(state, socket, &c.user.id).await;
            }
            alive
        }
        Event::Timer => {
            if let Some(at) = c.next_pull
                && Instant::now() >= at
            {
                c.next_pull = Some(Instant::now() + pull_every(state));
                let mut alive = true;
                if let Ok(statuses) = state.store.take_statuses(&c.user.id, d.device).await {
                    for e in statuses {
                        alive &= send(socket, state, &relay::status_frame(&e)).await;
                    }
                }
                if alive && d.in_flight.len() < d.window {
                    alive = d.pull(state, socket, &c.user.id).await;
                }
                return alive;
            }
            if Instant::now() >= c.idle_deadline {
                tracing::debug!(user = %c.user.id, "idle timeout");
                c.close = Some(CloseReason::IdleTimeout);
                false
            } else {
                c.next_ping = Instant::now() + c.ping_every;
                socket.send(Message::Ping(Vec::new().into())).await.is_ok()
            }
        }
    }
}

/// `payload.id` of a `message` or `groupMessage` frame that did not parse,
/// if it is a string.
fn readable_id(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if !matches!(v.get("type")?.as_str()?, "message" | "groupMessage") {
        return None;
    }
    let id = v.get("payload")?.get("id")?.as_str()?;
    (id.len() <= 64).then(|| id.to_owned())
}

async fn handle_frame(
    state: &Arc<AppState>,
    socket: &mut WebSocket,
    user: &User,
    d: &mut Delivery,
    pipeline: &mut Option<Box<FuturesOrdered<Pending>>>,
    text: &str,
) -> bool {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(f) => f,
        Err(e) => {
            // A `message` that fails its schema still names the message
            // it was, when its id can be read: the sender's outbox needs it.
            let id = readable_id(text);
            let err = ApiError::bad_request(format!("invalid frame: {e}"));
            return send(socket, state, &relay::error_frame(err, id)).await;
        }
    };
    match frame {
        ClientFrame::Auth(_) => {
            send(socket, state, &relay::bad_frame("already authenticated")).await
        }
        ClientFrame::Message(m) => {
            // Pipelined: the connection reads on while the message commits,
            // so one client's messages share group commits instead of each
            // waiting for the previous ack. The first poll validates and
            // hands the job to the writer, in arrival order; acks go out in
            // that order too.
            let (st, from, id) = (state.clone(), user.id.clone(), m.id.clone());
            let (device, stream) = (d.device, d.stream.clone());
            let fut: Pending = Box::pin(async move {
                Some(
                    match relay::send_message(&st, &from, device, m, Some(stream)).await {
                        Ok(ack) => ServerFrame::Ack(ack),
                        Err(e) => relay::error_frame(e, Some(id)),
                    },
                )
            });
            pipeline_push(pipeline, fut).await;
            true
        }
        ClientFrame::GroupMessage(m) => {
            let id = m.id.clone();
            let reply = match relay::send_group_message(state, &user.id, d.device, m).await {
                Ok(ack) => ServerFrame::Ack(ack),
                Err(e) => relay::error_frame(e, Some(id)),
            };
            send(socket, state, &reply).await
        }
        ClientFrame::Delivered(del) => {
            for id in &del.message_ids {
                d.in_flight.remove(id);
            }
            // Pipelined like messages: the window refills from the cursor
            // at once; the server's copies go when this batch commits.
            let (st, uid, device) = (state.clone(), user.id.clone(), d.device);
            let fut: Pending = Box::pin(async move {
                relay::set_status(
                    &st,
                    &uid,
                    device,
                    del.message_ids,
                    MessageStatus::Delivered,
                    None,
                )
                .await
                .err()
                .map(|e| relay::error_frame(e, None))
            });
            pipeline_push(pipeline, fut).await;
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
                d.device,
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
                        state.send_everywhere(&to, &frame);
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
                            state.send_everywhere(&m, &frame);
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
