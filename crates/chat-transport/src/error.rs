//! Typed transport errors.

use chat_proto::rest::ErrorCode;
use thiserror::Error;

/// Everything that can go wrong talking to the server.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The server answered with an error body (`{"error": {code, message}}`).
    #[error("server refused ({status}, {code:?}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's error code.
        code: ErrorCode,
        /// The server's message, for people.
        message: String,
        /// Why, where a client acts on it (`ErrorInfo::reason`).
        reason: Option<chat_proto::rest::ErrorReason>,
    },
    /// The server answered with a status and a body that is not an error body.
    #[error("unexpected HTTP status {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The request never got an answer (refused, reset, timed out, TLS).
    #[error("network error: {0}")]
    Network(String),
    /// An answer did not parse as the expected type.
    #[error("malformed answer from the server: {0}")]
    Decode(String),
    /// A URL could not be parsed or has the wrong scheme.
    #[error("invalid URL: {0}")]
    Url(String),
    /// The WebSocket is not connected right now (it reconnects by itself).
    #[error("not connected")]
    NotConnected,
    /// The connection task has stopped ([`crate::Connection::close`] or a
    /// rejected token).
    #[error("connection closed")]
    Closed,
    /// The request needs a token and none is set.
    #[error("not logged in")]
    NoToken,
    /// The server sent more than the caller allowed (a download longer
    /// than its pointer says): the rest was not read.
    #[error("the server sent more than the {limit} bytes expected")]
    TooLong {
        /// The most the caller accepted.
        limit: u64,
    },
}

impl TransportError {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            TransportError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the server refused a login because its device was removed
    /// from the account.
    pub fn device_removed(&self) -> bool {
        matches!(
            self,
            TransportError::Api {
                reason: Some(chat_proto::rest::ErrorReason::DeviceRemoved),
                ..
            }
        )
    }

    /// Whether trying again later may succeed (network trouble, rate limits,
    /// an unavailable or failing server).
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Network(_) | TransportError::NotConnected => true,
            TransportError::Api { code, .. } => matches!(
                code,
                ErrorCode::RateLimited
                    | ErrorCode::Timeout
                    | ErrorCode::Unavailable
                    | ErrorCode::Internal
            ),
            TransportError::Status { status } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_decode() {
            TransportError::Decode(e.to_string())
        } else {
            // reqwest's Display never includes headers (no token leaks).
            TransportError::Network(e.to_string())
        }
    }
}
