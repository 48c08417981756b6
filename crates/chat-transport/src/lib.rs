//! The client side of the e2ee-chat network (DESIGN.md section 3).
//!
//! - [`RestClient`]: every REST endpoint, typed, over reqwest (hyper +
//!   rustls for `https`).
//! - [`Connection`]: one WebSocket (tokio-tungstenite, rustls for `wss`)
//!   kept alive by a background task. It authenticates with the first frame,
//!   pings, notices a dead link, and reconnects with exponential backoff and
//!   jitter ([`Backoff`]), reporting every step as a [`ConnEvent`].
//!
//! This crate knows nothing of encryption or storage. The layer above
//! (`chat-client`) keeps the outbox: it resends unacknowledged frames on
//! every [`ConnEvent::Connected`] and acknowledges incoming messages
//! (`delivered`) only after it has stored them. Frames handed to
//! [`Connection::send`] while the link is down are refused with
//! [`TransportError::NotConnected`], never silently queued.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chat_transport::TransportError> {
//! use chat_transport::{ConnEvent, Connection, ConnectionConfig, RestClient};
//!
//! let rest = RestClient::new("http://127.0.0.1:8080")?;
//! let auth = rest.login("alice", "correct horse").await?;
//! let (conn, mut events) = Connection::spawn(rest.ws_url()?, auth.token, ConnectionConfig::default());
//! while let Some(ev) = events.recv().await {
//!     if let ConnEvent::Frame(frame) = ev {
//!         println!("{frame:?}");
//!     }
//! }
//! # drop(conn);
//! # Ok(())
//! # }
//! ```

mod backoff;
mod error;
mod provision;
mod rest;
mod ws;

pub use backoff::{Backoff, BackoffConfig};
pub use error::TransportError;
pub use provision::ProvisioningSocket;
pub use rest::RestClient;
pub use ws::{ConnEvent, ConnState, Connection, ConnectionConfig};

/// The wire types, re-exported for convenience.
pub use chat_proto;
