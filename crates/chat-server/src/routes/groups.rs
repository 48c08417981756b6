//! Groups: create, list, get, rename, delete, membership, pending messages.
//! Only members see a group; only owner and admins change membership; a
//! member may remove itself (leave).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use chat_proto::Role;
use chat_proto::rest::{
    AddMemberRequest, CreateGroupRequest, ErrorCode, Group, GroupsResponse, MessagesResponse,
    SetRoleRequest, UpdateGroupRequest,
};
use chat_proto::validate::{self, GROUP_DESCRIPTION_MAX, GROUP_NAME_MAX, IDS_PER_BATCH_MAX};
use chat_proto::ws::{GroupChange, GroupChanged};

use super::{Json, Path};
use crate::auth::{AuthUser, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::relay::member_role;
use crate::state::AppState;
use crate::storage::MemberChange;

pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Json(req): Json<CreateGroupRequest>,
) -> ApiResult<(StatusCode, axum::Json<Group>)> {
    validate::name(&req.name, "name", GROUP_NAME_MAX)?;
    if let Some(d) = &req.description {
        validate::text(d, "description", GROUP_DESCRIPTION_MAX)?;
    }
    validate::id_batch(&req.member_ids, "memberIds")?;
    if req.member_ids.len() > IDS_PER_BATCH_MAX {
        return Err(ApiError::bad_request("too many members"));
    }
    state.limit(&state.limits.groups, &me.user.id)?;
    let mut distinct: Vec<&String> = req
        .member_ids
        .iter()
        .filter(|u| **u != me.user.id)
        .collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() + 1 > state.config.max_group_members {
        return Err(too_many(&state));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let group = state
        .store
        .create_group(
            &id,
            &req.name,
            req.description.as_deref(),
            &me.user.id,
            req.member_ids,
            now_ms(),
        )
        .await?;
    let members: Vec<String> = group.members.iter().map(|m| m.user_id.clone()).collect();
    notify(&state, &members, &group.id, GroupChange::Created, None, &me).await?;
    Ok((StatusCode::CREATED, axum::Json(group)))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
) -> ApiResult<axum::Json<GroupsResponse>> {
    Ok(axum::Json(GroupsResponse {
        groups: state.store.groups_of(&me.user.id).await?,
    }))
}

pub(super) async fn get_one(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(group_id): Path<String>,
) -> ApiResult<axum::Json<Group>> {
    validate::id(&group_id, "groupId")?;
    member_role(&state, &group_id, &me.user.id).await?;
    state
        .store
        .group(&group_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("group"))
}

pub(super) async fn update(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(group_id): Path<String>,
    Json(req): Json<UpdateGroupRequest>,
) -> ApiResult<axum::Json<Group>> {
    validate::id(&group_id, "groupId")?;
    if !member_role(&state, &group_id, &me.user.id)
        .await?
        .can_manage()
    {
        return Err(ApiError::forbidden(
            "only the owner and admins may change the group",
        ));
    }
    if let Some(n) = &req.name {
        validate::name(n, "name", GROUP_NAME_MAX)?;
        unsigned_allowed(&state, &group_id).await?;
    }
    if let Some(d) = &req.description {
        validate::text(d, "description", GROUP_DESCRIPTION_MAX)?;
    }
    if state
        .store
        .update_group(&group_id, req.name, req.description)
        .await?
        == MemberChange::Signed
    {
        return Err(signed_refusal(&group_id));
    }
    changed(state, me, group_id, GroupChange::Updated, None).await
}

pub(super) async fn delete_group(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(group_id): Path<String>,
) -> ApiResult<StatusCode> {
    validate::id(&group_id, "groupId")?;
    if member_role(&state, &group_id, &me.user.id).await? != Role::Owner {
        return Err(ApiError::forbidden("only the owner may delete the group"));
    }
    let members = state.store.member_ids(&group_id).await?;
    state.store.delete_group(&group_id).await?;
    notify(&state, &members, &group_id, GroupChange::Deleted, None, &me).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn add_member(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(group_id): Path<String>,
    Json(req): Json<AddMemberRequest>,
) -> ApiResult<axum::Json<Group>> {
    validate::id(&group_id, "groupId")?;
    validate::id(&req.user_id, "userId")?;
    let my_role = member_role(&state, &group_id, &me.user.id).await?;
    if !my_role.can_manage() {
        return Err(ApiError::forbidden(
            "only the owner and admins may add members",
        ));
    }
    unsigned_allowed(&state, &group_id).await?;
    let role = req.role.unwrap_or(Role::Member);
    match role {
        Role::Owner => return Err(ApiError::bad_request("a group has one owner")),
        Role::Admin if my_role != Role::Owner => {
            return Err(ApiError::forbidden("only the owner may add admins"));
        }
        _ => {}
    }
    state.limit(&state.limits.membership, &me.user.id)?;
    match state.store.role(&group_id, &req.user_id).await? {
        // Adding again is idempotent; a different role is not a silent no-op.
        Some(r) if r == role => return get_one(State(state), me, Path(group_id)).await,
        Some(r) => {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "already a member ({}); change roles with PUT /api/groups/{group_id}/members/{{userId}}",
                    r.as_str()
                ),
            ));
        }
        None => {}
    }
    if state.store.member_ids(&group_id).await?.len() >= state.config.max_group_members {
        return Err(too_many(&state));
    }
    match state
        .store
        .add_member(&group_id, &req.user_id, role, now_ms())
        .await?
    {
        MemberChange::Done => {
            let who = Some(req.user_id.clone());
            changed(state, me, group_id, GroupChange::MemberAdded, who).await
        }
        MemberChange::NoUser => Err(ApiError::not_found("user")),
        MemberChange::NoGroup => Err(ApiError::not_found("group")),
        MemberChange::Signed => Err(signed_refusal(&group_id)),
    }
}

pub(super) async fn remove_member(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path((group_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    validate::id(&group_id, "groupId")?;
    validate::id(&user_id, "userId")?;
    let my_role = member_role(&state, &group_id, &me.user.id).await?;
    let leaving = user_id == me.user.id;
    if !leaving && !my_role.can_manage() {
        return Err(ApiError::forbidden(
            "only the owner and admins may remove members",
        ));
    }
    unsigned_allowed(&state, &group_id).await?;
    if !leaving {
        state.limit(&state.limits.membership, &me.user.id)?;
    }
    let target = state.store.role(&group_id, &user_id).await?;
    match target {
        None => return Err(ApiError::not_found("member")),
        Some(Role::Owner) => {
            return Err(ApiError::forbidden(
                "the owner cannot be removed; delete the group instead",
            ));
        }
        Some(Role::Admin) if !leaving && my_role != Role::Owner => {
            return Err(ApiError::forbidden("only the owner may remove admins"));
        }
        _ => {}
    }
    // Those before the change: the member removed learns of it too.
    let members = state.store.member_ids(&group_id).await?;
    match state.store.remove_member(&group_id, &user_id).await? {
        MemberChange::Done => {
            let change = GroupChange::MemberRemoved;
            notify(&state, &members, &group_id, change, Some(user_id), &me).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        MemberChange::Signed => Err(signed_refusal(&group_id)),
        _ => Err(ApiError::not_found("member")),
    }
}

/// `PUT /api/groups/{id}/members/{userId}` `{"role": "admin" | "member"}`:
/// the owner promotes or demotes a member; answers the group as it is now.
pub(super) async fn set_role(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path((group_id, user_id)): Path<(String, String)>,
    Json(req): Json<SetRoleRequest>,
) -> ApiResult<axum::Json<Group>> {
    validate::id(&group_id, "groupId")?;
    validate::id(&user_id, "userId")?;
    if member_role(&state, &group_id, &me.user.id).await? != Role::Owner {
        return Err(ApiError::forbidden("only the owner may change roles"));
    }
    if req.role == Role::Owner {
        return Err(ApiError::bad_request("a group has one owner"));
    }
    unsigned_allowed(&state, &group_id).await?;
    if user_id == me.user.id {
        return Err(ApiError::bad_request("the owner stays the owner"));
    }
    state.limit(&state.limits.membership, &me.user.id)?;
    match state.store.set_role(&group_id, &user_id, req.role).await? {
        MemberChange::Done => {
            changed(state, me, group_id, GroupChange::RoleChanged, Some(user_id)).await
        }
        MemberChange::Signed => Err(signed_refusal(&group_id)),
        _ => Err(ApiError::not_found("member")),
    }
}

/// Tells `members` what `me` changed in the group.
pub(super) async fn notify(
    state: &AppState,
    members: &[String],
    group_id: &str,
    change: GroupChange,
    user_id: Option<String>,
    me: &AuthUser,
) -> ApiResult<()> {
    let frame = GroupChanged {
        group_id: group_id.to_owned(),
        change,
        user_id,
        by: me.user.id.clone(),
    };
    crate::relay::group_changed(state, members, frame).await
}

/// After a change that keeps the group: tells its members, answers it.
async fn changed(
    state: Arc<AppState>,
    me: AuthUser,
    group_id: String,
    change: GroupChange,
    user_id: Option<String>,
) -> ApiResult<axum::Json<Group>> {
    let group = state
        .store
        .group(&group_id)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    let members: Vec<String> = group.members.iter().map(|m| m.user_id.clone()).collect();
    notify(&state, &members, &group_id, change, user_id, &me).await?;
    Ok(axum::Json(group))
}

/// Membership and the name of a group with signed changes change only by a
/// change record (`POST /api/groups/{id}/changes`).
/// Checked early for a clear answer; the store checks again in the write
/// that applies the change ([`MemberChange::Signed`]), so a first record
/// landing in between changes nothing unsigned.
async fn unsigned_allowed(state: &AppState, group_id: &str) -> ApiResult<()> {
    let signed = !state.store.group_changes(group_id, None).await?.is_empty();
    if signed {
        return Err(signed_refusal(group_id));
    }
    Ok(())
}

/// A version-1 change to a group whose membership is signed.
pub(super) fn signed_refusal(group_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "this group's membership is signed: post a change record to /api/groups/{group_id}/changes"
        ),
    )
}

fn too_many(state: &AppState) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!(
            "a group has at most {} members",
            state.config.max_group_members
        ),
    )
}

pub(super) async fn pending(
    State(state): State<Arc<AppState>>,
    me: AuthUser,
    Path(group_id): Path<String>,
) -> ApiResult<axum::Json<MessagesResponse>> {
    validate::id(&group_id, "groupId")?;
    member_role(&state, &group_id, &me.user.id).await?;
    Ok(axum::Json(MessagesResponse {
        messages: state
            .store
            .pending_in_group(&me.user.id, me.device_id, &group_id)
            .await?,
    }))
}
