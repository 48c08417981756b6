//! Passwords (Argon2id, on a blocking thread), tokens (256 random bits,
//! stored as SHA-256), and the `AuthUser` extractor.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chat_proto::rest::User;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::config::Argon2Params;
use crate::error::ApiError;
use crate::state::AppState;

fn argon(p: &Argon2Params) -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None).map_err(|_| {
        ApiError::new(
            chat_proto::rest::ErrorCode::Internal,
            "bad Argon2 parameters",
        )
    })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// At most this many Argon2 computations at once. Each takes
/// `memory_kib` of RAM and a core for tens of milliseconds: the bound keeps a
/// login flood from exhausting memory or starving message relay.
const CONCURRENT_HASHES: usize = 2;
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_HASHES);

fn internal(_: impl std::fmt::Debug) -> ApiError {
    ApiError::new(chat_proto::rest::ErrorCode::Internal, "hashing failed")
}

/// Hashes a password on a blocking thread (PHC string).
pub async fn hash_password(password: String, p: Argon2Params) -> Result<String, ApiError> {
    let _permit = HASHING.acquire().await.map_err(internal)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon(&p)?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| ApiError::new(chat_proto::rest::ErrorCode::Internal, "hashing failed"))
    })
    .await
    .map_err(|_| ApiError::new(chat_proto::rest::ErrorCode::Internal, "hashing failed"))?
}

/// Checks a password against a PHC hash on a blocking thread. With no hash
/// (unknown user) it still spends the time of one verification, so response
/// time does not reveal which usernames exist.
pub async fn verify_password(password: String, hash: Option<String>, p: Argon2Params) -> bool {
    let Ok(_permit) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let Ok(a) = argon(&p) else { return false };
        match hash.as_deref().map(PasswordHash::new) {
            Some(Ok(parsed)) => a.verify_password(password.as_bytes(), &parsed).is_ok(),
            _ => {
                let salt = SaltString::generate(&mut OsRng);
                let _ = a.hash_password(password.as_bytes(), &salt);
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// A fresh token: 32 random bytes, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Resolves a token to its user and device, if valid and not idle too long.
pub async fn user_for_token(
    state: &AppState,
    token: &str,
) -> Result<Option<(User, u32)>, ApiError> {
    let idle = i64::from(state.config.token_idle_days) * 86_400_000;
    Ok(state
        .store
        .token_user(token_hash(token), now_ms(), idle)
        .await?)
}

/// The 401 for a token that names no login: said as a removed device's
/// when it was one ([`ApiError::device_removed`]).
pub async fn refusal(state: &AppState, token: &str) -> ApiError {
    match state.store.revoked_reason(token_hash(token)).await {
        Ok(Some((r, username))) if r == crate::storage::REVOKED_DEVICE_REMOVED => {
            ApiError::device_removed(&username)
        }
        _ => ApiError::unauthorized(),
    }
}

/// [`user_for_token`] for a socket: a login replacing every device (device
/// 0) has no queue to read, so no socket.
pub async fn device_for_token(
    state: &AppState,
    token: &str,
) -> Result<Option<(User, u32)>, ApiError> {
    Ok(user_for_token(state, token)
        .await?
        .filter(|(_, device)| *device != 0))
}

/// The authenticated caller; rejects with 401 otherwise.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user.
    pub user: User,
    /// Their token's hash (for logout).
    pub token_hash: Vec<u8>,
    /// The device the token belongs to (1 for the account's first; 0 for
    /// a login replacing every device that has not uploaded its identity).
    pub device_id: u32,
}

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let Some((user, device_id)) = user_for_token(state, token).await? else {
            return Err(refusal(state, token).await);
        };
        // A login replacing every device (device 0) holds no device yet:
        // it uploads its new identity, reads its key status, or logs out.
        let allowed = matches!(
            parts.uri.path(),
            "/api/users/prekeys" | "/api/users/prekeys/status" | "/api/auth/logout"
        );
        if device_id == 0 && !allowed {
            return Err(ApiError::new(
                chat_proto::rest::ErrorCode::Forbidden,
                "this login is replacing every device: upload the new identity with \
                 replaceDevices first",
            ));
        }
        Ok(AuthUser {
            user,
            token_hash: token_hash(token),
            device_id,
        })
    }
}
