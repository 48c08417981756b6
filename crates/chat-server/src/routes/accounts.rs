//! Accounts, users, and verification records.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use chat_proto::rest::{
    AuthResponse, ErrorCode, LoginRequest, RegisterRequest, User, UsersResponse, VerifyKeyRequest,
    VerifyKeyStatus,
};
use chat_proto::validate;
use serde::Deserialize;

use super::{Json, Path};
use crate::auth::{self, AuthUser, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::storage::Account;

async fn issue_token(state: &AppState, user: User) -> ApiResult<axum::Json<AuthResponse>> {
    let token = auth::new_token();
    state
        .store
        .insert_token(auth::token_hash(&token), &user.id, now_ms())
        .await?;
    Ok(axum::Json(AuthResponse { user, token }))
}

pub(super) async fn register(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, axum::Json<AuthResponse>)> {
    state.limit(&state.limits.register, &peer.ip())?;
    validate::username(&req.username)?;
    validate::password(&req.password)?;
    if let Some(url) = &req.avatar_url {
        validate::text(url, "avatarUrl", 2048)?;
    }
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: req.username,
        avatar_url: req.avatar_url,
    };
    let hash = auth::hash_password(req.password, state.config.argon2.clone()).await?;
    state
        .store
        .create_user(Account {
            user: user.clone(),
            password_hash: hash,
        })
        .await?;
    tracing::info!(user = %user.id, "registered");
    Ok((StatusCode::CREATED, issue_token(&state, user).await?))
}

pub(super) async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<axum::Json<AuthResponse>> {
    state.limit(&state.limits.login, &peer.ip())?;
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
    match account {
        Some(a) if ok => issue_token(&state, a.user).await,
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "wrong username or password",
        )),
    }
}

pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
) -> ApiResult<StatusCode> {
    state.store.delete_token(me.token_hash.clone()).await?;
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
    validate::text(&req.fingerprint, "fingerprint", 256)?;
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
