//! The WebSocket connection: authenticate, keep alive, reconnect.

use std::time::Duration;

use chat_proto::rest::ErrorCode;
use chat_proto::ws::{Auth, ClientFrame, Ready, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zeroize::Zeroizing;

use crate::backoff::{Backoff, BackoffConfig};
use crate::error::TransportError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// How often to ping the server.
    pub keepalive: Duration,
    /// The link counts as dead when nothing (frame, ping or pong) arrived
    /// for this long; the connection is then dropped and re-established.
    pub dead_after: Duration,
    /// Limit for the TCP + TLS + WebSocket handshake and the auth reply.
    pub connect_timeout: Duration,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// A connection must stay up this long before the reconnect delay goes
    /// back to its first step: a server that accepts and then closes every
    /// connection (a frame it refuses, an overload) sees the retries slow
    /// down to the cap instead of a storm.
    pub stable_after: Duration,
    /// Largest frame accepted from the server.
    pub max_frame_bytes: usize,
    /// Events buffered for the application before reading pauses.
    pub event_buffer: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(20),
            dead_after: Duration::from_secs(50),
            connect_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            stable_after: Duration::from_secs(10),
            max_frame_bytes: 4 << 20,
            event_buffer: 1024,
        }
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Connecting or authenticating.
    Connecting,
    /// Authenticated: frames can be sent.
    Connected,
    /// Lost; waiting to reconnect.
    Disconnected,
    /// Stopped for good (closed, or the token was refused).
    Closed,
}

/// What the connection reports, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnEvent {
    /// Authenticated (the first time or after a reconnect). Resend the
    /// outbox now.
    Connected(Ready),
    /// A frame from the server.
    Frame(ServerFrame),
    /// The link is down; the next attempt follows after `retry_in`.
    Disconnected {
        /// Why.
        error: String,
        /// Delay before the next attempt.
        retry_in: Duration,
        /// Attempts since the last successful connection.
        attempt: u32,
    },
    /// The server refused the token. The connection has stopped; log in
    /// again and start a new one.
    Rejected {
        /// The server's message.
        message: String,
    },
}

enum Cmd {
    Send(ClientFrame),
    Reconnect,
    Close,
}

/// A handle to the background connection task. Dropping it closes the
/// connection.
#[derive(Debug)]
pub struct Connection {
    cmd: mpsc::Sender<Cmd>,
    state: watch::Receiver<ConnState>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Send(_) => "Send",
            Cmd::Reconnect => "Reconnect",
            Cmd::Close => "Close",
        })
    }
}

impl Connection {
    /// Starts connecting to `url` with `token` in the background. Events
    /// arrive on the returned receiver; the task stops when it is dropped.
    pub fn spawn(
        url: Url,
        token: impl Into<String>,
        config: ConnectionConfig,
    ) -> (Connection, mpsc::Receiver<ConnEvent>) {
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (ev_tx, ev_rx) = mpsc::channel(config.event_buffer.max(1));
        let (state_tx, state_rx) = watch::channel(ConnState::Connecting);
        let token = Zeroizing::new(token.into());
        let task = tokio::spawn(run(url, token, config, cmd_rx, ev_tx, state_tx));
        (
            Connection {
                cmd: cmd_tx,
                state: state_rx,
                task,
            },
            ev_rx,
        )
    }

    /// The current state.
    pub fn state(&self) -> ConnState {
        *self.state.borrow()
    }

    /// Waits until the state is `want` (or the task stops).
    pub async fn wait_for(&self, want: ConnState) -> Result<(), TransportError> {
        let mut s = self.state.clone();
        s.wait_for(|st| *st == want || *st == ConnState::Closed)
            .await
            .map_err(|_| TransportError::Closed)?;
        if *s.borrow() == want {
            Ok(())
        } else {
            Err(TransportError::Closed)
        }
    }

    /// Queues a frame for the server. Refused with
    /// [`TransportError::NotConnected`] while the link is down: durable
    /// frames belong in the caller's outbox, which is resent on
    /// [`ConnEvent::Connected`].
    pub async fn send(&self, frame: ClientFrame) -> Result<(), TransportError> {
        match self.state() {
            ConnState::Connected => {}
            ConnState::Closed => return Err(TransportError::Closed),
            _ => return Err(TransportError::NotConnected),
        }
        self.cmd
            .send(Cmd::Send(frame))
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Drops the current link and reconnects at once.
    pub async fn reconnect(&self) -> Result<(), TransportError> {
        self.cmd
            .send(Cmd::Reconnect)
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Closes the WebSocket and stops the task.
    pub async fn close(self) {
        let _ = self.cmd.send(Cmd::Close).await;
        let _ = self.task.await;
    }

    /// Stops the task at once without a close handshake (as if the process
    /// died). For tests of crash recovery.
    #[doc(hidden)]
    pub fn abort(self) {
        self.task.abort();
    }
}

enum Failure {
    /// Try again later.
    Retry(String),
    /// The token was refused.
    Rejected(String),
    /// The owner closed the connection or dropped the event receiver.
    Stop,
}

async fn run(
    url: Url,
    token: Zeroizing<String>,
    config: ConnectionConfig,
    mut cmd: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<ConnEvent>,
    state: watch::Sender<ConnState>,
) {
    let mut backoff = Backoff::new(config.backoff);
    loop {
        state.send_replace(ConnState::Connecting);
        let failure = match connect(&url, &token, &config).await {
            Ok((ws, ready)) => {
                let since = Instant::now();
                state.send_replace(ConnState::Connected);
                tracing::debug!(user = %ready.user_id, "connected");
                let f = if events.send(ConnEvent::Connected(ready)).await.is_err() {
                    Failure::Stop
                } else {
                    session(ws, &config, &mut cmd, &events).await
                };
                if since.elapsed() >= config.stable_after {
                    backoff.reset();
                }
                f
            }
            Err(f) => f,
        };
        let error = match failure {
            Failure::Stop => break,
            Failure::Rejected(message) => {
                tracing::warn!(%message, "token refused; connection stopped");
                let _ = events.send(ConnEvent::Rejected { message }).await;
                break;
            }
            Failure::Retry(e) => e,
        };
        state.send_replace(ConnState::Disconnected);
        let retry_in = backoff.next_delay();
        tracing::debug!(%error, ?retry_in, "disconnected");
        let ev = ConnEvent::Disconnected {
            error,
            retry_in,
            attempt: backoff.attempt(),
        };
        if events.send(ev).await.is_err() {
            break;
        }
        // Wait out the delay; frames sent meanwhile are refused by `send`,
        // a close stops us, a reconnect request cuts the wait short.
        let deadline = Instant::now() + retry_in;
        let stop = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break false,
                c = cmd.recv() => match c {
                    None | Some(Cmd::Close) => break true,
                    Some(Cmd::Reconnect) => break false,
                    Some(Cmd::Send(_)) => {}
                },
            }
        };
        if stop {
            break;
        }
    }
    state.send_replace(ConnState::Closed);
}

/// Connects, sends the auth frame and waits for `ready`.
async fn connect(
    url: &Url,
    token: &str,
    config: &ConnectionConfig,
) -> Result<(Socket, Ready), Failure> {
    let mut ws_config = WebSocketConfig::default();
    ws_config.max_message_size = Some(config.max_frame_bytes);
    ws_config.max_frame_size = Some(config.max_frame_bytes);
    let handshake =
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true);
    let (mut ws, _) = match timeout(config.connect_timeout, handshake).await {
        Err(_) => return Err(Failure::Retry("connect timed out".into())),
        Ok(Err(e)) => return Err(Failure::Retry(format!("connect: {e}"))),
        Ok(Ok(x)) => x,
    };
    let auth = ClientFrame::Auth(Auth {
        token: token.to_owned(),
    });
    let text =
        Zeroizing::new(serde_json::to_string(&auth).map_err(|e| Failure::Retry(e.to_string()))?);
    ws.send(Message::text(text.as_str()))
        .await
        .map_err(|e| Failure::Retry(format!("auth: {e}")))?;
    let reply = timeout(config.connect_timeout, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return match serde_json::from_str::<ServerFrame>(t.as_str()) {
                        Ok(ServerFrame::Ready(r)) => Ok(r),
                        Ok(ServerFrame::Error(e)) if e.code == ErrorCode::Unauthorized => {
                            Err(Failure::Rejected(e.message))
                        }
                        Ok(other) => Err(Failure::Retry(format!("expected ready, got {other:?}"))),
                        Err(e) => Err(Failure::Retry(format!("bad frame: {e}"))),
                    };
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(Failure::Retry("closed during auth".into()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Failure::Retry(format!("auth: {e}"))),
            }
        }
    })
    .await;
    match reply {
        Err(_) => Err(Failure::Retry("auth timed out".into())),
        Ok(Err(f)) => Err(f),
        Ok(Ok(ready)) => Ok((ws, ready)),
    }
}

fn encode(frame: &ClientFrame) -> Option<Message> {
    match serde_json::to_string(frame) {
        Ok(s) => Some(Message::text(s)),
        Err(e) => {
            tracing::error!(error = %e, "frame did not serialise");
            None
        }
    }
}

/// One authenticated session: until the link dies or we are told to stop.
async fn session(
    mut ws: Socket,
    config: &ConnectionConfig,
    cmd: &mut mpsc::Receiver<Cmd>,
    events: &mpsc::Sender<ConnEvent>,
) -> Failure {
    let mut ping = tokio::time::interval(config.keepalive);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            msg = ws.next() => {
                last_seen = Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerFrame>(t.as_str()) {
                        Ok(frame) => {
                            if let Some(f) = deliver(&mut ws, ConnEvent::Frame(frame), cmd, events).await {
                                return f;
                            }
                        }
                        // A frame type from a newer server: skip it.
                        Err(e) => tracing::warn!(error = %e, "unreadable frame from the server"),
                    },
                    // This login was logged out (docs/API.md, close codes):
                    // the same token fails again, so no retry.
                    Some(Ok(Message::Close(Some(c)))) if u16::from(c.code) == 4003 => {
                        return Failure::Rejected(
                            "this login was logged out (chat logout, a removed device, or the \
                             same device logging in from another copy of its store): log in again"
                                .into(),
                        );
                    }
                    Some(Ok(Message::Close(c))) => {
                        let said = c.map_or_else(String::new, |c| format!(" {} {}", c.code, c.reason));
                        return Failure::Retry(format!("closed by the server{said}"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Failure::Retry(format!("read: {e}")),
                    None => return Failure::Retry("connection ended".into()),
                }
            }
            c = cmd.recv() => {
                if let Some(f) = command(&mut ws, c, cmd).await {
                    return f;
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= config.dead_after {
                    return Failure::Retry(format!(
                        "nothing heard for {:?}",
                        last_seen.elapsed()
                    ));
                }
                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                    return Failure::Retry(format!("ping: {e}"));
                }
            }
        }
    }
}

/// Hands an event to the owner. While the owner's queue is full, commands
/// keep being served: the owner may itself be waiting to queue a frame
/// (an acknowledgement, say), and waiting on each other would deadlock.
async fn deliver(
    ws: &mut Socket,
    event: ConnEvent,
    cmd: &mut mpsc::Receiver<Cmd>,
    events: &mpsc::Sender<ConnEvent>,
) -> Option<Failure> {
    loop {
        tokio::select! {
            permit = events.reserve() => {
                return match permit {
                    Ok(p) => {
                        p.send(event);
                        None
                    }
                    Err(_) => {
                        let _ = ws.close(None).await;
                        Some(Failure::Stop)
                    }
                };
            }
            c = cmd.recv() => {
                if let Some(f) = command(ws, c, cmd).await {
                    return Some(f);
                }
            }
        }
    }
}

/// Serves one command (and any sends queued behind it). `Some` ends the
/// session.
async fn command(
    ws: &mut Socket,
    c: Option<Cmd>,
    cmd: &mut mpsc::Receiver<Cmd>,
) -> Option<Failure> {
    let mut c = c;
    loop {
        match c.take() {
            None | Some(Cmd::Close) => {
                let _ = ws.close(None).await;
                return Some(Failure::Stop);
            }
            Some(Cmd::Reconnect) => {
                let _ = ws.close(None).await;
                return Some(Failure::Retry("reconnect requested".into()));
            }
            Some(Cmd::Send(frame)) => {
                // Feed everything queued, then flush once.
                let mut next = Some(frame);
                while let Some(f) = next.take() {
                    if let Some(m) = encode(&f)
                        && let Err(e) = ws.feed(m).await
                    {
                        return Some(Failure::Retry(format!("write: {e}")));
                    }
                    match cmd.try_recv() {
                        Ok(Cmd::Send(f)) => next = Some(f),
                        Ok(other) => c = Some(other),
                        Err(_) => {}
                    }
                }
                if let Err(e) = ws.flush().await {
                    return Some(Failure::Retry(format!("write: {e}")));
                }
                // Done unless a close or reconnect was queued behind.
                c.as_ref()?;
            }
        }
    }
}
