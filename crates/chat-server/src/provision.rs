//! The provisioning socket `/ws/provision` (protocol version 2, DESIGN.md
//! section 8, "Linking"): a device that is not linked yet opens it without
//! a token and is given a random address; a linked device of the account
//! hands a sealed message to that address (`PUT /api/provisioning/{addr}`),
//! and the server forwards it, once, without reading it (it cannot: it is
//! sealed to a key only the new device holds).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_proto::devices::ProvisionFrame;
use chat_proto::rest::ErrorCode;
use futures_util::StreamExt;
use rand_core::{OsRng, RngCore};
use tokio::sync::oneshot;

use crate::auth::now_ms;
use crate::error::ApiError;
use crate::state::AppState;

/// What a device told "no room" sees (HTTP 503 before the upgrade, close
/// 1013 after it).
pub const TOO_MANY: &str = "too many devices are linking right now; try again in a minute";

/// The open provisioning addresses, and how many each client address holds.
#[derive(Debug, Default)]
pub struct Provisioning {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    by_address: HashMap<String, oneshot::Sender<String>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open provisioning address: frees its place (and its client
/// address's) when dropped, however the socket ends.
#[derive(Debug)]
pub struct Slot<'a> {
    owner: &'a Provisioning,
    address: String,
    ip: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.owner.slots.lock() {
            s.by_address.remove(&self.address);
            if let Some(n) = s.per_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.per_ip.remove(&self.ip);
                }
            }
        }
    }
}

impl Provisioning {
    /// Whether `ip` could open one more now (checked before the upgrade,
    /// so the refusal is a readable 503; [`Provisioning::open`] decides).
    fn has_room(&self, ip: IpAddr, max: usize, per_ip: usize) -> bool {
        self.slots.lock().is_ok_and(|s| {
            s.by_address.len() < max && s.per_ip.get(&ip).copied().unwrap_or(0) < per_ip
        })
    }

    /// A fresh address for `ip` and where its message will arrive; `None`
    /// when `max` are open, or `per_ip` from this client address.
    fn open(
        &self,
        ip: IpAddr,
        max: usize,
        per_ip: usize,
    ) -> Option<(Slot<'_>, oneshot::Receiver<String>)> {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        let address = URL_SAFE_NO_PAD.encode(bytes);
        let (tx, rx) = oneshot::channel();
        let mut slots = self.slots.lock().ok()?;
        let held = slots.per_ip.get(&ip).copied().unwrap_or(0);
        if slots.by_address.len() >= max || held >= per_ip {
            return None;
        }
        slots.by_address.insert(address.clone(), tx);
        *slots.per_ip.entry(ip).or_default() += 1;
        Some((
            Slot {
                owner: self,
                address,
                ip,
            },
            rx,
        ))
    }

    /// Hands `sealed` to the socket at `address`; false when there is none
    /// (never opened, already used, closed or expired).
    pub fn deliver(&self, address: &str, sealed: String) -> bool {
        let tx = self
            .slots
            .lock()
            .ok()
            .and_then(|mut s| s.by_address.remove(address));
        tx.is_some_and(|tx| tx.send(sealed).is_ok())
    }

    /// How many provisioning sockets are open.
    pub fn open_count(&self) -> usize {
        self.slots.lock().map_or(0, |s| s.by_address.len())
    }
}

/// `GET /ws/provision`: no token; the first frame is the address. The
/// place is taken only once the upgrade completed (a client that resets the
/// connection mid-upgrade holds nothing), and freed however the socket
/// ends.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<axum::Extension<crate::serve::ConnectionSlot>>,
    ws: WebSocketUpgrade,
) -> Response {
    let (max, per_ip) = (
        state.config.max_provisioning,
        state.config.provisioning_per_address,
    );
    if !state.provisioning.has_room(peer.ip(), max, per_ip) {
        return ApiError::new(ErrorCode::Unavailable, TOO_MANY).into_response();
    }
    ws.read_buffer_size(512)
        .max_message_size(1024)
        .max_frame_size(1024)
        .on_upgrade(move |mut socket| async move {
            let _permit = slot;
            let Some((place, rx)) = state.provisioning.open(peer.ip(), max, per_ip) else {
                let frame = CloseFrame {
                    code: 1013,
                    reason: TOO_MANY.into(),
                };
                let _ = socket.send(Message::Close(Some(frame))).await;
                return;
            };
            run(&state, socket, &place.address, rx).await;
        })
}

async fn send(socket: &mut WebSocket, frame: &ProvisionFrame) -> bool {
    match serde_json::to_string(frame) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn run(
    state: &AppState,
    mut socket: WebSocket,
    address: &str,
    rx: oneshot::Receiver<String>,
) {
    let wait = Duration::from_secs(state.config.provision_wait_secs);
    let expires_at = now_ms() + wait.as_millis() as i64;
    let first = ProvisionFrame::Address {
        address: address.to_owned(),
        expires_at,
    };
    if !send(&mut socket, &first).await {
        return;
    }
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline, rx);
    let mut shutdown = state.shutdown.clone();
    let (code, reason) = loop {
        tokio::select! {
            sealed = &mut rx => {
                let Ok(sealed) = sealed else { break (1011, "closed") };
                if !send(&mut socket, &ProvisionFrame::Message { sealed }).await {
                    return;
                }
                break (1000, "provisioned");
            }
            () = &mut deadline => break (4008, "provisioning timed out"),
            _ = shutdown.changed() => break (1001, "server shutting down"),
            incoming = socket.next() => match incoming {
                // The new device has nothing to say here; it may ping.
                Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                // Over 1 KiB: said with a code, as on /ws (docs/API.md).
                Some(Err(e)) => {
                    let inner = e.into_inner();
                    match inner.downcast_ref::<tungstenite::Error>() {
                        Some(tungstenite::Error::Capacity(_)) => break (1009, "frame too large"),
                        _ => return,
                    }
                }
                _ => return,
            },
        }
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
