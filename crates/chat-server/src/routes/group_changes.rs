//! Signed group membership (protocol version 2): `POST
//! /api/groups/{id}/changes` applies a change record on top of the head,
//! `GET` lists them. The server checks each record as every client will
//! (its chain, its signature by the caller's identity on this server, the
//! caller's role) so an honest server never relays a change clients would
//! refuse; clients verify again and trust only their own check.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chat_proto::Role;
use chat_proto::rest::{ChangesResponse, ErrorCode, Group, PostChangeRequest, SignedChange};
use chat_proto::validate::{self, GROUP_NAME_MAX};
use chat_proto::ws::GroupChange;
use e2ee_core::membership::{ChangeAction, ChangeRecord, MemberRole, Membership};
use e2ee_core::{IdentityPublic, MembershipError};
use serde::Deserialize;

use super::{Json, Path, Query};
use crate::auth::{AuthUser, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::relay::member_role;
use crate::state::AppState;
use crate::storage::{GroupOp, MemberChange, NewChange};

/// The longest record accepted, in bytes (a `Create` listing 1,024
/// members is about 18 KB).
pub(super) const CHANGE_RECORD_MAX: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct After {
    after: Option<u64>,
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(group_id): Path<String>,
    Query(q): Query<After>,
) -> ApiResult<axum::Json<ChangesResponse>> {
    validate::id(&group_id, "groupId")?;
    member_role(&state, &group_id, &me.user.id).await?;
    let changes = state
        .store
        .group_changes(&group_id, q.after)
        .await?
        .into_iter()
        .map(|(epoch, record)| SignedChange {
            epoch,
            record: BASE64.encode(record),
        })
        .collect();
    Ok(axum::Json(ChangesResponse { changes }))
}

fn role(r: MemberRole) -> Role {
    match r {
        MemberRole::Owner => Role::Owner,
        MemberRole::Admin => Role::Admin,
        MemberRole::Member => Role::Member,
    }
}

fn user_id(bytes: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*bytes).to_string()
}

fn refused(e: MembershipError) -> ApiError {
    match e {
        MembershipError::EpochGap { .. } | MembershipError::BrokenLink { .. } => ApiError::new(
            ErrorCode::Conflict,
            "the group changed meanwhile: reload its changes and sign again",
        ),
        MembershipError::NotAllowed { .. } | MembershipError::NotAMember { .. } => {
            ApiError::forbidden(format!("the change is not allowed: {e}"))
        }
        // Well formed, but not signed by who it names (docs/API.md: 403).
        MembershipError::BadSignature { .. } | MembershipError::UntrustedSigner { .. } => {
            ApiError::forbidden(format!("the change is not validly signed: {e}"))
        }
        other => ApiError::bad_request(format!("invalid change record: {other}")),
    }
}

pub(super) async fn post(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(group_id): Path<String>,
    Json(req): Json<PostChangeRequest>,
) -> ApiResult<(StatusCode, axum::Json<Group>)> {
    let gid = validate::id(&group_id, "groupId")?;
    let bytes = BASE64
        .decode(&req.record)
        .map_err(|_| ApiError::bad_request("record is not base64"))?;
    if bytes.len() > CHANGE_RECORD_MAX {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            "change record too large",
        ));
    }
    let record = ChangeRecord::from_bytes(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed change record: {e}")))?;
    let my_id = validate::id(&me.user.id, "userId")?;
    if record.group_id != *gid.as_bytes() {
        return Err(ApiError::bad_request("the record is for another group"));
    }
    if record.signer != *my_id.as_bytes() {
        return Err(ApiError::forbidden("a change is signed by its author"));
    }
    let mine = state
        .store
        .prekey_status(&me.user.id, me.device_id)
        .await?
        .identity_key;
    let mine = mine
        .and_then(|k| BASE64.decode(k).ok())
        .and_then(|k| IdentityPublic::from_slice(&k).ok())
        .ok_or_else(|| ApiError::bad_request("upload your identity before signing changes"))?;
    let is_mine = |u: &[u8; 16], k: &IdentityPublic| *u != record.signer || *k == mine;
    if !is_mine(&record.signer, &record.signer_identity) {
        return Err(ApiError::forbidden(
            "the record is signed by an identity that is not this account's",
        ));
    }
    let chain: Vec<ChangeRecord> = state
        .store
        .group_changes(&group_id, None)
        .await?
        .iter()
        .filter_map(|(_, b)| ChangeRecord::from_bytes(b).ok())
        .collect();
    let existing = state.store.group(&group_id).await?;
    let (op, change, target) = if chain.is_empty() {
        let m = Membership::from_chain([&record], &is_mine).map_err(refused)?;
        let ChangeAction::Create { name, members } = &record.action else {
            return Err(refused(MembershipError::NotGenesis));
        };
        validate::name(name, "name", GROUP_NAME_MAX)?;
        let members: Vec<(String, Role)> = members
            .iter()
            .map(|(u, r)| (user_id(u), role(*r)))
            .collect();
        if members.len() + 1 > state.config.max_group_members {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "a group has at most {} members",
                    state.config.max_group_members
                ),
            ));
        }
        let exists = match &existing {
            None => {
                state.limit(&state.limits.groups, &me.user.id)?;
                for (u, _) in &members {
                    if state.store.user(u).await?.is_none() {
                        return Err(ApiError::not_found("user"));
                    }
                }
                false
            }
            // A group from before version 2: its owner signs it as it is.
            Some(g) => {
                let mut listed: Vec<(String, Role)> = g
                    .members
                    .iter()
                    .filter(|x| x.user_id != me.user.id)
                    .map(|x| (x.user_id.clone(), x.role))
                    .collect();
                let mut signed = members.clone();
                listed.sort_by(|a, b| a.0.cmp(&b.0));
                signed.sort_by(|a, b| a.0.cmp(&b.0));
                if g.owner_id != me.user.id || listed != signed || *name != g.name || m.epoch() != 0
                {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        "the first signed change of an existing group is its owner's, listing its members and name as they are",
                    ));
                }
                true
            }
        };
        let op = GroupOp::Create {
            name: name.clone(),
            owner: me.user.id.clone(),
            members,
            exists,
        };
        (op, GroupChange::Created, None)
    } else {
        let Some(g) = &existing else {
            return Err(ApiError::not_found("group"));
        };
        member_role(&state, &group_id, &me.user.id).await?;
        let mut m = Membership::from_chain(&chain, &|_, _| true).map_err(refused)?;
        // Adding a member who is one already: 409 (docs/API.md), not the
        // 403 of a change the signer may not make.
        if let ChangeAction::Add { user, .. } = &record.action
            && m.members().contains_key(user)
            && record.verify_signature().is_ok()
        {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "already a member: change roles with a setRole record",
            ));
        }
        m.apply(&record, &is_mine).map_err(refused)?;
        if !matches!(record.action, ChangeAction::Leave) {
            state.limit(&state.limits.membership, &me.user.id)?;
        }
        match &record.action {
            ChangeAction::Create { .. } => return Err(refused(MembershipError::NotGenesis)),
            ChangeAction::Add { user, role: r } => {
                if g.members.len() >= state.config.max_group_members {
                    return Err(ApiError::new(
                        ErrorCode::TooLarge,
                        format!(
                            "a group has at most {} members",
                            state.config.max_group_members
                        ),
                    ));
                }
                let user = user_id(user);
                let op = GroupOp::Add {
                    user: user.clone(),
                    role: role(*r),
                };
                (op, GroupChange::MemberAdded, Some(user))
            }
            ChangeAction::Remove { user } => {
                let user = user_id(user);
                let op = GroupOp::Remove { user: user.clone() };
                (op, GroupChange::MemberRemoved, Some(user))
            }
            ChangeAction::SetRole { user, role: r } => {
                let user = user_id(user);
                let op = GroupOp::SetRole {
                    user: user.clone(),
                    role: role(*r),
                };
                (op, GroupChange::RoleChanged, Some(user))
            }
            ChangeAction::Leave => {
                let op = GroupOp::Remove {
                    user: me.user.id.clone(),
                };
                (op, GroupChange::MemberRemoved, Some(me.user.id.clone()))
            }
            ChangeAction::TransferOwnership { user } => {
                let user = user_id(user);
                let op = GroupOp::TransferOwnership {
                    from: me.user.id.clone(),
                    to: user.clone(),
                };
                (op, GroupChange::RoleChanged, Some(user))
            }
            ChangeAction::Rename { name } => {
                validate::name(name, "name", GROUP_NAME_MAX)?;
                (
                    GroupOp::Rename { name: name.clone() },
                    GroupChange::Updated,
                    None,
                )
            }
        }
    };
    // Those before the change hear of it (a member removed too), and those
    // after (a member added).
    let mut told = state.store.member_ids(&group_id).await.unwrap_or_default();
    let outcome = state
        .store
        .append_change(NewChange {
            group_id: group_id.clone(),
            epoch: record.epoch,
            record: bytes,
            op,
            now: now_ms(),
        })
        .await
        .map_err(|e| match e {
            crate::storage::StoreError::Conflict(_) => refused(MembershipError::BrokenLink {
                epoch: record.epoch,
            }),
            other => other.into(),
        })?;
    match outcome {
        MemberChange::Done => {}
        MemberChange::NoUser => return Err(ApiError::not_found("user")),
        MemberChange::NoGroup => return Err(ApiError::not_found("group")),
        // Never for a change record; said plainly if it were.
        MemberChange::Signed => return Err(super::groups::signed_refusal(&group_id)),
    }
    let group = state
        .store
        .group(&group_id)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    for m in &group.members {
        if !told.contains(&m.user_id) {
            told.push(m.user_id.clone());
        }
    }
    super::groups::notify(&state, &told, &group_id, change, target, &me).await?;
    let status = if existing.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(group)))
}
