//! Accounts, users, and verification records.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chat_proto::devices::device_login_message;
use chat_proto::rest::{
    AuthResponse, DeviceProof, ErrorCode, LoginRequest, RegisterRequest, User, UsersResponse,
    VerifyKeyRequest, VerifyKeyStatus,
};
use chat_proto::validate;
use e2ee_core::IdentityPublic;
use serde::Deserialize;

use super::{Json, Path, Query};
use crate::auth::{self, AuthUser, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::storage::Account;

/// How a login's token stands beside the device's others.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Login {
    /// One more token (registration, a device's first login).
    Added,
    /// The device's only one: its other tokens are revoked and their
    /// connections closed (a device logging in again is that device).
    Only,
}

/// A token for `device` (0: a login replacing every device, which may
/// only upload its new identity until it has).
async fn issue_token(
    state: &AppState,
    user: User,
    device: u32,
    login: Login,
) -> ApiResult<axum::Json<AuthResponse>> {
    let token = auth::new_token();
    let hash = auth::token_hash(&token);
    if login == Login::Only {
        let old = state
            .store
            .replace_device_token(hash, &user.id, device, now_ms())
            .await?;
        for t in &old {
            state.close_token_everywhere(&user.id, t);
        }
        if !old.is_empty() {
            tracing::info!(user = %user.id, device, "device logged in again elsewhere");
        }
    } else {
        state
            .store
            .insert_token(hash, &user.id, device, now_ms())
            .await?;
    }
    Ok(axum::Json(AuthResponse {
        user,
        token,
        device_id: (device != 0).then_some(device),
    }))
}

/// How far a device's login proof may be from the server's clock.
const PROOF_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Whether `proof` is a device of `user` signing with the account's
/// identity, within [`PROOF_WINDOW_MS`].
fn proof_holds(user: &User, identity: &str, devices: &[u32], proof: &DeviceProof) -> bool {
    if !devices.contains(&proof.device_id) || (now_ms() - proof.signed_at).abs() > PROOF_WINDOW_MS {
        return false;
    }
    let Some(identity) = STANDARD
        .decode(identity)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .and_then(|b| IdentityPublic::from_bytes(&b).ok())
    else {
        return false;
    };
    let Some(signature) = STANDARD
        .decode(&proof.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    let message = device_login_message(&user.id, proof.device_id, proof.signed_at);
    identity.verify(&message, &signature).is_ok()
}

pub(super) async fn register(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, axum::Json<AuthResponse>)> {
    state
        .limit(&state.limits.register, &peer.ip())
        .map_err(|e| e.limiting("too many registrations from this address"))?;
    validate::username(&req.username)?;
    validate::password(&req.password)?;
    if let Some(url) = &req.avatar_url {
        validate::name(url, "avatarUrl", 2048)?;
    }
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: req.username,
        avatar_url: req.avatar_url,
    };
    let hash = auth::hash_password(req.password, state.config.argon2.clone()).await?;
    state
        .store
        .create_user(
            Account {
                user: user.clone(),
                password_hash: hash,
            },
            req.registration_id.unwrap_or(0),
        )
        .await?;
    tracing::info!(user = %user.id, "registered");
    Ok((
        StatusCode::CREATED,
        issue_token(&state, user, 1, Login::Added).await?,
    ))
}

pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<axum::Json<AuthResponse>> {
    state
        .limit(&state.limits.login, &peer.ip())
        .map_err(|e| e.limiting("too many logins from this address"))?;
    if req.password.len() > validate::PASSWORD_MAX_BYTES {
        return Err(validate::ValidationError::PasswordTooLong.into());
    }
    // Per account too, whatever the address: many addresses guessing one
    // password go no faster than one. Keyed by the name as the uniqueness
    // check sees it, known account or not.
    state.limit(
        &state.limits.login_per_account,
        &validate::canonical_username(&req.username),
    )?;
    let account = state.store.account_by_name(&req.username).await?;
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    let ok = auth::verify_password(req.password, hash, state.config.argon2.clone()).await;
    let Some(user) = account.filter(|_| ok).map(|a| a.user) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "wrong username or password",
        ));
    };
    // A password alone never takes an existing device (DESIGN section 8):
    // the caller proves it is one, or asks to replace them all.
    let identity = state.store.prekey_status(&user.id, 1).await?.identity_key;
    let devices: Vec<u32> = state
        .store
        .devices(&user.id)
        .await?
        .iter()
        .map(|d| d.device_id)
        .collect();
    let (device, login) = match (&identity, &req.device) {
        // No keys yet (registered, never uploaded): nothing to take.
        (None, _) => (1, Login::Added),
        (Some(identity), Some(proof)) => {
            if !proof_holds(&user, identity, &devices, proof) {
                // The password was right: 403, not 401.
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "the device proof does not hold: no such device, a signature the \
                     account's identity did not make, or a clock more than 5 minutes off",
                ));
            }
            // This store is the device now: the device's other logins
            // stop (a restored copy and its original never share one).
            (proof.device_id, Login::Only)
        }
        // Asked for, or nothing left to take (every device removed): the
        // login replaces the keys before it may do anything else.
        (Some(_), None) if req.replace_devices || devices.is_empty() => (0, Login::Added),
        (Some(_), None) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "this account is in use on {} device(s): log in from one of them, link \
                     this one from one of them, or set replaceDevices to replace every device \
                     (its contacts see a new identity)",
                    devices.len()
                ),
            ));
        }
    };
    issue_token(&state, user, device, login).await
}

pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
) -> ApiResult<StatusCode> {
    state.store.delete_token(me.token_hash.clone()).await?;
    tracing::info!(user = %me.user.id, device = me.device_id, "logged out");
    // Only this login's connections: the user's other devices stay on.
    state.close_token_everywhere(&me.user.id, &me.token_hash);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub(super) struct UserQuery {
    username: Option<String>,
}

pub(super) async fn list_users(
    State(state): State<Arc<AppState>>,
    _me: AuthUser,
    Query(q): Query<UserQuery>,
) -> ApiResult<axum::Json<UsersResponse>> {
    Ok(axum::Json(UsersResponse {
        users: state.store.users(q.username.as_deref()).await?,
    }))
}

pub(super) async fn get_user(
    State(state): State<Arc<AppState>>,
    _me: AuthUser,
    Path(user_id): Path<String>,
) -> ApiResult<axum::Json<User>> {
    validate::id(&user_id, "userId")?;
    state
        .store
        .user(&user_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("user"))
}

pub(super) async fn verify_key(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Json(req): Json<VerifyKeyRequest>,
) -> ApiResult<axum::Json<VerifyKeyStatus>> {
    validate::id(&req.user_id, "userId")?;
    validate::name(&req.fingerprint, "fingerprint", 256)?;
    if state.store.user(&req.user_id).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    let now = now_ms();
    state
        .store
        .set_verification(&me.user.id, &req.user_id, &req.fingerprint, now)
        .await?;
    Ok(axum::Json(VerifyKeyStatus {
        user_id: req.user_id,
        verified: true,
        fingerprint: Some(req.fingerprint),
        verified_at: Some(now),
    }))
}

pub(super) async fn get_verification(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(user_id): Path<String>,
) -> ApiResult<axum::Json<VerifyKeyStatus>> {
    validate::id(&user_id, "userId")?;
    let rec = state.store.verification(&me.user.id, &user_id).await?;
    Ok(axum::Json(VerifyKeyStatus {
        user_id,
        verified: rec.is_some(),
        verified_at: rec.as_ref().map(|r| r.1),
        fingerprint: rec.map(|r| r.0),
    }))
}

pub(super) async fn delete_verification(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(user_id): Path<String>,
) -> ApiResult<StatusCode> {
    validate::id(&user_id, "userId")?;
    if state
        .store
        .delete_verification(&me.user.id, &user_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("verification"))
    }
}
