//! Prekey bundles: upload, atomic claim, status, delete.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chat_proto::devices::{DeviceBundle, DeviceBundles};
use chat_proto::rest::{ErrorCode, PreKeyBundle, PreKeyStatus, PreKeyUpload};
use chat_proto::validate::{
    self, KEM_PUBLIC_LENGTH, PQ_PREKEYS_PER_UPLOAD_MAX, PREKEYS_PER_UPLOAD_MAX, ValidationError,
};
use chat_proto::ws::{PrekeysLow, ServerFrame};
use e2ee_core::{IdentityPublic, KemPublicKey, PqPreKeyPublic, PublicKey};

use super::{Json, Path};
use crate::auth::{AuthUser, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::storage::sqlite::PREKEYS_LOW;

fn key(b64: &str, len: usize, field: &'static str) -> Result<(), ValidationError> {
    match STANDARD.decode(b64) {
        Ok(bytes) if bytes.len() == len => Ok(()),
        _ => Err(ValidationError::InvalidKey(field)),
    }
}

fn check(u: &PreKeyUpload) -> Result<(), ValidationError> {
    key(&u.identity_key, 64, "identityKey")?;
    key(&u.identity_signature, 64, "identitySignature")?;
    if let Some(s) = &u.signed_prekey {
        key(&s.public_key, 32, "signedPrekey.publicKey")?;
        key(&s.signature, 64, "signedPrekey.signature")?;
    }
    if u.one_time_prekeys.len() > PREKEYS_PER_UPLOAD_MAX {
        return Err(ValidationError::TooMany {
            field: "oneTimePrekeys",
            max: PREKEYS_PER_UPLOAD_MAX,
        });
    }
    for k in &u.one_time_prekeys {
        key(&k.public_key, 32, "oneTimePrekeys.publicKey")?;
    }
    if u.pq_one_time_prekeys.len() > PQ_PREKEYS_PER_UPLOAD_MAX {
        return Err(ValidationError::TooMany {
            field: "pqOneTimePrekeys",
            max: PQ_PREKEYS_PER_UPLOAD_MAX,
        });
    }
    for k in u.pq_one_time_prekeys.iter().chain(&u.pq_last_resort_prekey) {
        key(&k.public_key, KEM_PUBLIC_LENGTH, "pqPrekey.publicKey")?;
        key(&k.signature, 64, "pqPrekey.signature")?;
    }
    Ok(())
}

fn bytes<const N: usize>(b64: &str) -> Option<[u8; N]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// Every signature in an upload is the uploaded identity's, over what it
/// claims to sign (the binding, the signed prekey, each PQ prekey). The
/// identity itself must be the account's (or replace it, when asked): so a
/// device the user did not link cannot publish a bundle that makes every
/// send to the account fail, whoever holds a leaked link token.
fn signatures_hold(u: &PreKeyUpload) -> Result<(), ApiError> {
    let bad = |what: &str| {
        ApiError::bad_request(format!(
            "{what}: the signature is not the uploaded identity's"
        ))
    };
    let identity = bytes::<64>(&u.identity_key)
        .and_then(|b| IdentityPublic::from_bytes(&b).ok())
        .ok_or_else(|| bad("identityKey"))?;
    let binding = bytes::<64>(&u.identity_signature).ok_or_else(|| bad("identitySignature"))?;
    identity
        .verify_binding(&binding)
        .map_err(|_| bad("identitySignature"))?;
    if let Some(s) = &u.signed_prekey {
        let key = bytes::<32>(&s.public_key).map(PublicKey::from_bytes);
        let sig = bytes::<64>(&s.signature);
        match (key, sig) {
            (Some(key), Some(sig))
                if identity.verify_signed_prekey(s.key_id, &key, &sig).is_ok() => {}
            _ => return Err(bad("signedPrekey")),
        }
    }
    for k in u.pq_one_time_prekeys.iter().chain(&u.pq_last_resort_prekey) {
        let public = STANDARD
            .decode(&k.public_key)
            .ok()
            .and_then(|b| KemPublicKey::from_bytes(&b).ok());
        let holds = match (public, bytes::<64>(&k.signature)) {
            (Some(key), Some(signature)) => PqPreKeyPublic {
                id: k.key_id,
                key,
                signature,
            }
            .verify(&identity)
            .is_ok(),
            _ => false,
        };
        if !holds {
            return Err(bad("pqPrekey"));
        }
    }
    Ok(())
}

pub(super) async fn upload(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Json(req): Json<PreKeyUpload>,
) -> ApiResult<axum::Json<PreKeyStatus>> {
    check(&req)?;
    // Ed25519 checks (up to 102 of them): off the async threads.
    let req = tokio::task::spawn_blocking(move || signatures_hold(&req).map(|()| req))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "signature check failed"))??;
    let replaced = match state
        .store
        .upload_prekeys(
            &me.user.id,
            me.device_id,
            req,
            me.token_hash.clone(),
            now_ms(),
        )
        .await
    {
        Err(crate::storage::StoreError::Conflict("identity")) if me.device_id > 1 => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "a linked device uploads the account's identity, not another one",
            ));
        }
        Err(crate::storage::StoreError::Conflict("same identity")) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "these are the account's current keys: replacing every device takes a new \
                 identity (to use this one, log in from a device that holds it)",
            ));
        }
        Err(crate::storage::StoreError::Conflict("identity")) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this account is in use with another identity: link this device from one of \
                 its devices, or set replaceDevices to replace every device",
            ));
        }
        other => other?,
    };
    if replaced {
        // The old device's connections go with its tokens.
        state.close_others_everywhere(&me.user.id, &me.token_hash);
    }
    // A replacing login (device 0) is device 1 once its upload is in.
    let status = state
        .store
        .prekey_status(&me.user.id, me.device_id.max(1))
        .await?;
    if status.signed_prekey_id.is_none() {
        return Err(ApiError::bad_request(
            "the first upload must include a signed prekey",
        ));
    }
    Ok(axum::Json(status))
}

pub(super) async fn claim(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(user_id): Path<String>,
) -> ApiResult<axum::Json<PreKeyBundle>> {
    validate::id(&user_id, "userId")?;
    state.limit(&state.limits.prekey_claims, &me.user.id)?;
    let claimed = state
        .store
        .claim_bundle(&user_id, 1)
        .await?
        .ok_or_else(|| ApiError::not_found("prekey bundle"))?;
    tell_if_low(&state, &user_id, &claimed);
    Ok(axum::Json(claimed.bundle))
}

/// Device 1 (the only one with a connection so far) hears when its stock
/// runs low.
fn tell_if_low(state: &AppState, user_id: &str, claimed: &crate::storage::Claimed) {
    let low = claimed.one_time_left < PREKEYS_LOW && claimed.bundle.one_time_prekey.is_some();
    // A stock of PQ prekeys running low (or gone, the last-resort one
    // serving): only for owners who publish them at all.
    let pq_low = claimed.pq_one_time_left < PREKEYS_LOW && claimed.bundle.pq_prekey.is_some();
    if low || pq_low {
        state.send_everywhere(
            user_id,
            &ServerFrame::PrekeysLow(PrekeysLow {
                remaining: claimed.one_time_left,
                pq_remaining: claimed
                    .bundle
                    .pq_prekey
                    .is_some()
                    .then_some(claimed.pq_one_time_left),
            }),
        );
    }
}

/// `GET /api/users/{userId}/devices/prekeys` (version 2): one bundle per
/// device, each with its own one-time prekeys claimed.
pub(super) async fn claim_devices(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(user_id): Path<String>,
) -> ApiResult<axum::Json<DeviceBundles>> {
    validate::id(&user_id, "userId")?;
    state.limit(&state.limits.prekey_claims, &me.user.id)?;
    let claimed = state.store.claim_device_bundles(&user_id).await?;
    if claimed.is_empty() {
        return Err(ApiError::not_found("prekey bundle"));
    }
    let mut bundles = Vec::with_capacity(claimed.len());
    for (device_id, registration_id, c) in claimed {
        if device_id == 1 {
            tell_if_low(&state, &user_id, &c);
        }
        bundles.push(DeviceBundle {
            device_id,
            registration_id,
            bundle: c.bundle,
        });
    }
    Ok(axum::Json(DeviceBundles { bundles }))
}

/// One device's bundle (a sender learned of a device it had no session
/// with): the same shape as [`claim_devices`], with one entry.
pub(super) async fn claim_device(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path((user_id, device_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<DeviceBundles>> {
    validate::id(&user_id, "userId")?;
    let device_id: u32 = device_id
        .parse()
        .map_err(|_| ApiError::bad_request("deviceId must be a number"))?;
    state.limit(&state.limits.prekey_claims, &me.user.id)?;
    let registration_id = state
        .store
        .devices(&user_id)
        .await?
        .into_iter()
        .find(|d| d.device_id == device_id)
        .map(|d| d.registration_id)
        .ok_or_else(|| ApiError::not_found("device"))?;
    let c = state
        .store
        .claim_bundle(&user_id, device_id)
        .await?
        .ok_or_else(|| ApiError::not_found("prekey bundle"))?;
    if device_id == 1 {
        tell_if_low(&state, &user_id, &c);
    }
    Ok(axum::Json(DeviceBundles {
        bundles: vec![DeviceBundle {
            device_id,
            registration_id,
            bundle: c.bundle,
        }],
    }))
}

pub(super) async fn status(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
) -> ApiResult<axum::Json<PreKeyStatus>> {
    Ok(axum::Json(
        state.store.prekey_status(&me.user.id, me.device_id).await?,
    ))
}

pub(super) async fn delete_one(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(key_id): Path<String>,
) -> ApiResult<StatusCode> {
    let key_id: u32 = key_id
        .parse()
        .map_err(|_| ApiError::bad_request("keyId must be a number"))?;
    if state
        .store
        .delete_prekey(&me.user.id, me.device_id, key_id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("prekey"))
    }
}
