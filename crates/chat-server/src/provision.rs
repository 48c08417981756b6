//! The provisioning socket `/ws/provision` (protocol version 2, DESIGN.md
//! section 8, "Linking"): a device that is not linked yet opens it without
//! a token and is given a random address; a linked device of the account
//! hands a sealed message to that address (`PUT /api/provisioning/{addr}`),
//! and the server forwards it, once, without reading it (it cannot: it is
//! sealed to a key only the new device holds).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
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

/// Most provisioning sockets open at once (each also holds a connection
/// slot under `max_connections`).
pub const MAX_PROVISIONING: usize = 1024;

/// The open provisioning addresses.
#[derive(Debug, Default)]
pub struct Provisioning {
    slots: Mutex<HashMap<String, oneshot::Sender<String>>>,
}

impl Provisioning {
    /// A fresh address and where its message will arrive; `None` when
    /// [`MAX_PROVISIONING`] are open.
    fn open(&self) -> Option<(String, oneshot::Receiver<String>)> {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        let address = URL_SAFE_NO_PAD.encode(bytes);
        let (tx, rx) = oneshot::channel();
        let mut slots = self.slots.lock().ok()?;
        if slots.len() >= MAX_PROVISIONING {
            return None;
        }
        slots.insert(address.clone(), tx);
        Some((address, rx))
    }

    /// Hands `sealed` to the socket at `address`; false when there is none
    /// (never opened, already used, closed or expired).
    pub fn deliver(&self, address: &str, sealed: String) -> bool {
        let tx = self.slots.lock().ok().and_then(|mut s| s.remove(address));
        tx.is_some_and(|tx| tx.send(sealed).is_ok())
    }

    fn close(&self, address: &str) {
        if let Ok(mut s) = self.slots.lock() {
            s.remove(address);
        }
    }
}

/// `GET /ws/provision`: no token; the first frame is the address.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    slot: Option<axum::Extension<crate::serve::ConnectionSlot>>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some((address, rx)) = state.provisioning.open() else {
        return ApiError::new(ErrorCode::Unavailable, "too many devices are being linked")
            .into_response();
    };
    ws.read_buffer_size(512)
        .max_message_size(1024)
        .max_frame_size(1024)
        .on_upgrade(move |socket| async move {
            let _permit = slot;
            run(&state, socket, &address, rx).await;
            state.provisioning.close(&address);
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
