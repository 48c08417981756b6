//! The one error type handlers return; it renders as
//! `{"error": {"code": ..., "message": ...}}` with the matching HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chat_proto::rest::{ErrorBody, ErrorCode, ErrorInfo};
use chat_proto::validate::ValidationError;

use crate::storage::StoreError;

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    /// Class.
    pub code: ErrorCode,
    /// For people; never contains secrets.
    pub message: String,
    /// For `rate_limited`: when to try again (the `Retry-After` header).
    pub retry_after: Option<std::time::Duration>,
    /// For a `conflict` over a version-2 message's copies: which devices.
    pub devices: Option<chat_proto::ws::DeviceMismatch>,
    /// Why, where a client acts on it (`ErrorInfo::reason`).
    pub reason: Option<chat_proto::rest::ErrorReason>,
}

impl ApiError {
    /// Builds one.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            devices: None,
            reason: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing, invalid or expired token")
    }

    /// 401 for a login of a device removed from `username`'s account.
    pub fn device_removed(username: &str) -> Self {
        Self {
            reason: Some(chat_proto::rest::ErrorReason::DeviceRemoved),
            ..Self::new(
                ErrorCode::Unauthorized,
                format!("this device was removed from {username}'s account"),
            )
        }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 429, to be tried again after `wait` (rounded up to whole seconds,
    /// at least one, in `Retry-After`).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("too many requests; try again in {} s", whole_seconds(wait)),
            )
        }
    }

    /// A 429 said for what it limits ("too many registrations from this
    /// address; try again in 12 s"); any other error as it is.
    #[must_use]
    pub fn limiting(self, what: &str) -> Self {
        match self.retry_after {
            Some(wait) if self.code == ErrorCode::RateLimited => Self {
                message: format!("{what}; try again in {} s", whole_seconds(wait)),
                ..self
            },
            _ => self,
        }
    }

    /// 408: the request or its body was too slow.
    pub fn timeout(what: &str) -> Self {
        Self::new(ErrorCode::Timeout, format!("{what} took too long"))
    }

    /// The HTTP status for the code.
    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::new(ErrorCode::Conflict, what),
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Devices(mismatch) => Self {
                devices: Some(mismatch),
                ..Self::new(
                    ErrorCode::Conflict,
                    "the message's copies are not for the current devices",
                )
            },
            StoreError::Closed => Self::new(ErrorCode::Unavailable, "the server is shutting down"),
            StoreError::Unwritable(detail) => {
                tracing::error!(%detail, "storage cannot be written");
                Self::new(
                    ErrorCode::Unavailable,
                    "the server cannot write to its storage (disk full?); try again later",
                )
            }
            StoreError::Unavailable(detail) | StoreError::Contention(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                Self::new(
                    ErrorCode::Unavailable,
                    "the server's database is unavailable; try again later",
                )
            }
            StoreError::Database(detail) => {
                tracing::error!(%detail, "storage failure");
                Self::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.retry_after.map(whole_seconds);
        let body = ErrorBody {
            error: ErrorInfo {
                code: self.code,
                message: self.message,
                reason: self.reason,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry
            && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// A wait as `Retry-After` gives it: whole seconds, rounded up, at least 1.
fn whole_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}
