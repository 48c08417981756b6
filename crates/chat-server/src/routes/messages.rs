//! REST views of the relay: undelivered messages from a peer, and batch
//! status updates.

use std::sync::Arc;

use axum::extract::State;
use chat_proto::MessageStatus;
use chat_proto::rest::{MessagesResponse, StatusBatch, StatusBatchResult};
use chat_proto::validate::{self, IDS_PER_BATCH_MAX, ValidationError};

use super::{Json, Path};
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::relay;
use crate::state::AppState;

pub(super) async fn pending_from(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(peer_id): Path<String>,
) -> ApiResult<axum::Json<MessagesResponse>> {
    validate::id(&peer_id, "peerId")?;
    Ok(axum::Json(MessagesResponse {
        messages: state
            .store
            .pending_from(&me.user.id, me.device_id, &peer_id)
            .await?,
    }))
}

pub(super) async fn update_status(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Json(req): Json<StatusBatch>,
) -> ApiResult<axum::Json<StatusBatchResult>> {
    if req.updates.len() > IDS_PER_BATCH_MAX {
        return Err(ValidationError::TooMany {
            field: "updates",
            max: IDS_PER_BATCH_MAX,
        }
        .into());
    }
    if req.updates.iter().any(|u| u.status == MessageStatus::Sent) {
        return Err(crate::error::ApiError::bad_request(
            "status must be delivered or read",
        ));
    }
    let mut updated = 0;
    for status in [MessageStatus::Delivered, MessageStatus::Read] {
        let ids: Vec<String> = req
            .updates
            .iter()
            .filter(|u| u.status == status)
            .map(|u| u.message_id.clone())
            .collect();
        if !ids.is_empty() {
            updated +=
                relay::set_status(&state, &me.user.id, me.device_id, ids, status, None).await?;
        }
    }
    Ok(axum::Json(StatusBatchResult {
        updated: updated as u32,
    }))
}
