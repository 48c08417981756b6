//! Linked devices (protocol version 2, DESIGN.md section 8): list, link
//! (a single-use link token, the provisioning hand-off, registering the new
//! device), remove.
//!
//! Every device has its own queue (`deliveries.device_id`): removing one
//! deletes its queue with its tokens and keys.

use std::net::SocketAddr;

use base64::Engine as _;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use chat_proto::devices::{
    DEVICE_NAME_MAX, DevicesResponse, LinkDeviceRequest, LinkToken, LinkedDevice,
    PROVISION_SEALED_MAX, ProvisionRequest,
};
use chat_proto::rest::ErrorCode;
use chat_proto::validate;
use chat_proto::ws::{DeviceChange, DevicesChanged, ServerFrame};

use super::{Json, Path};
use crate::auth::{self, AuthUser, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::storage::{NewLink, StoreError};

/// Every connection of the account hears of it (a device linked without the
/// user's knowledge shows up at once on the others).
fn tell(state: &AppState, user: &str, change: DeviceChange, device_id: u32, name: String) {
    state.send_everywhere(
        user,
        &ServerFrame::DevicesChanged(DevicesChanged {
            change,
            device_id,
            name,
        }),
    );
}

/// `GET /api/devices`.
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
) -> ApiResult<axum::Json<DevicesResponse>> {
    let devices = state.store.devices(&me.user.id).await?;
    Ok(axum::Json(DevicesResponse {
        devices,
        current: me.device_id,
    }))
}

/// `POST /api/devices/link-token`: for the device about to be linked.
pub(super) async fn link_token(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
) -> ApiResult<(StatusCode, axum::Json<LinkToken>)> {
    // The account's login budget (docs/API.md): keyed as a password
    // login to the account is, so the two share it.
    state.limit(
        &state.limits.login_per_account,
        &validate::canonical_username(&me.user.username),
    )?;
    let token = auth::new_token();
    let wait_ms = i64::try_from(state.config.provision_wait_secs)
        .unwrap_or(i64::MAX / 2_000)
        .saturating_mul(1000);
    let expires_at = now_ms().saturating_add(wait_ms);
    state
        .store
        .insert_link_token(
            auth::token_hash(&token),
            &me.user.id,
            me.token_hash.clone(),
            expires_at,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(LinkToken {
            link_token: token,
            expires_at,
        }),
    ))
}

/// `PUT /api/provisioning/{address}`: hands the sealed message over.
pub(super) async fn provision(
    State(state): State<Arc<AppState>>,
    _me: AuthUser,
    Path(address): Path<String>,
    Json(req): Json<ProvisionRequest>,
) -> ApiResult<StatusCode> {
    if req.sealed.len() > PROVISION_SEALED_MAX {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("sealed is at most {PROVISION_SEALED_MAX} characters"),
        ));
    }
    if req.sealed.is_empty() {
        return Err(ApiError::bad_request("sealed is empty"));
    }
    if base64::engine::general_purpose::STANDARD
        .decode(&req.sealed)
        .is_err()
    {
        return Err(ApiError::bad_request("sealed must be standard base64"));
    }
    if state.provisioning.deliver(&address, req.sealed) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("provisioning address"))
    }
}

/// `POST /api/devices`: the new device registers itself with the link
/// token (no bearer token: this is how it gets one).
pub(super) async fn link(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LinkDeviceRequest>,
) -> ApiResult<(StatusCode, axum::Json<LinkedDevice>)> {
    state.limit(&state.limits.register, &peer.ip())?;
    validate::name(&req.name, "name", DEVICE_NAME_MAX)?;
    let name = req.name.clone();
    let token = auth::new_token();
    let linked = state
        .store
        .link_device(NewLink {
            link_hash: auth::token_hash(&req.link_token),
            token_hash: auth::token_hash(&token),
            name: req.name,
            registration_id: req.registration_id,
            now: now_ms(),
            max_devices: state.config.max_devices.min(validate::DEVICES_MAX),
        })
        .await;
    match linked {
        Ok(Some((user, device_id))) => {
            tracing::info!(user = %user.id, device = device_id, "device linked");
            tell(&state, &user.id, DeviceChange::Linked, device_id, name);
            Ok((
                StatusCode::CREATED,
                axum::Json(LinkedDevice {
                    user,
                    device_id,
                    token,
                }),
            ))
        }
        Ok(None) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the link token is unknown, used or expired",
        )),
        Err(StoreError::Conflict(_)) => Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "an account has at most {} devices: remove one first",
                state.config.max_devices.min(validate::DEVICES_MAX)
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /api/devices/{deviceId}`: its tokens stop working and its
/// connections close.
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(device_id): Path<u32>,
) -> ApiResult<StatusCode> {
    let removed = match state.store.remove_device(&me.user.id, device_id).await {
        Err(StoreError::Conflict("last device")) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this is the account's only device: an account without one cannot be \
                 messaged (link another device first)",
            ));
        }
        other => other?,
    };
    let Some((name, tokens)) = removed else {
        return Err(ApiError::not_found("device"));
    };
    for t in &tokens {
        state.close_token_everywhere(&me.user.id, t);
    }
    tracing::info!(user = %me.user.id, device = device_id, "device removed");
    tell(&state, &me.user.id, DeviceChange::Removed, device_id, name);
    Ok(StatusCode::NO_CONTENT)
}
