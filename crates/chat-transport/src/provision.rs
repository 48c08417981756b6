//! The provisioning socket (`/ws/provision`, protocol version 2): a device
//! that is not linked yet opens it, shows the address it is given, and
//! waits for the sealed message a linked device hands over.

use chat_proto::devices::ProvisionFrame;
use chat_proto::rest::{ErrorBody, ErrorCode};
use futures_util::StreamExt;
use reqwest::Url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::TransportError;

/// An open provisioning socket and the address the server gave it.
pub struct ProvisioningSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    address: String,
    expires_at: i64,
}

impl std::fmt::Debug for ProvisioningSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisioningSocket")
            .field("address", &self.address)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl ProvisioningSocket {
    /// Opens `ws[s]://…/ws/provision` (`ws_base`: any URL on the server
    /// with the WebSocket scheme, such as [`crate::RestClient::ws_url`]) and
    /// reads the address.
    pub async fn open(ws_base: &Url) -> Result<Self, TransportError> {
        let url = ws_base
            .join("/ws/provision")
            .map_err(|e| TransportError::Url(e.to_string()))?;
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(refused)?;
        match next_frame(&mut ws).await? {
            ProvisionFrame::Address {
                address,
                expires_at,
            } => Ok(Self {
                ws,
                address,
                expires_at,
            }),
            ProvisionFrame::Message { .. } => Err(TransportError::Decode(
                "the provisioning socket sent a message before its address".into(),
            )),
        }
    }

    /// Where a linked device sends the sealed message.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// When the server closes the socket if nothing came (ms).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Waits for the sealed message (base64, as the linked device put it).
    /// [`TransportError::Closed`] when the socket closes first (it expired).
    pub async fn sealed(mut self) -> Result<String, TransportError> {
        match next_frame(&mut self.ws).await? {
            ProvisionFrame::Message { sealed } => Ok(sealed),
            ProvisionFrame::Address { .. } => Err(TransportError::Decode(
                "the provisioning socket sent a second address".into(),
            )),
        }
    }
}

/// The server's own error when it answered the upgrade with one (503
/// "too many devices are linking right now"), else a network error.
fn refused(e: tokio_tungstenite::tungstenite::Error) -> TransportError {
    if let tokio_tungstenite::tungstenite::Error::Http(resp) = &e {
        let status = resp.status().as_u16();
        let body = resp.body().as_deref().unwrap_or_default();
        return match serde_json::from_slice::<ErrorBody>(body) {
            Ok(b) => TransportError::Api {
                status,
                code: b.error.code,
                message: b.error.message,
                reason: b.error.reason,
            },
            Err(_) => TransportError::Status { status },
        };
    }
    TransportError::Network(format!("provisioning socket: {e}"))
}

async fn next_frame(
    ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
) -> Result<ProvisionFrame, TransportError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| TransportError::Decode(e.to_string()));
            }
            // No room after all (1013): the server's reason, as a 503.
            Some(Ok(Message::Close(Some(f)))) if u16::from(f.code) == 1013 => {
                return Err(TransportError::Api {
                    status: 503,
                    code: ErrorCode::Unavailable,
                    message: f.reason.to_string(),
                    reason: None,
                });
            }
            Some(Ok(Message::Close(_))) | None => return Err(TransportError::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(TransportError::Network(e.to_string())),
        }
    }
}
