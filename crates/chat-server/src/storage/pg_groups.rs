//! Groups, members and signed change records on PostgreSQL (the twin of
//! `sqlite_groups.rs`). A change record is appended under the group row's
//! lock, so two nodes appending at one epoch cannot both win.

use chat_proto::Role;
use chat_proto::rest::{Group, GroupMember};
use deadpool_postgres::GenericClient;

use super::pg::{col, exec, one, opt, rows};
use super::{GroupOp, MemberChange, NewChange, StoreError, StoreResult};

/// A group with its members (joined first, then by name).
pub(super) async fn load(c: &impl GenericClient, id: &str) -> StoreResult<Option<Group>> {
    let head = opt(
        c,
        "SELECT id, name, description, owner_id, created_at FROM groups WHERE id = $1",
        &[&id],
    )
    .await?;
    let Some(h) = head else { return Ok(None) };
    let members = rows(
        c,
        "SELECT m.user_id, u.username, m.role, m.joined_at FROM group_members m
         JOIN users u ON u.id = m.user_id WHERE m.group_id = $1
         ORDER BY m.joined_at, lower(u.username), u.username",
        &[&id],
    )
    .await?
    .iter()
    .map(|r| {
        let role: String = col(r, 2)?;
        Ok(GroupMember {
            user_id: col(r, 0)?,
            username: col(r, 1)?,
            role: Role::parse(&role).unwrap_or(Role::Member),
            joined_at: col(r, 3)?,
        })
    })
    .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(Group {
        id: col(&h, 0)?,
        name: col(&h, 1)?,
        description: col(&h, 2)?,
        owner_id: col(&h, 3)?,
        created_at: col(&h, 4)?,
        members,
        epoch: head_epoch(c, id).await?,
    }))
}

/// What [`create`] needs.
pub(super) struct NewGroup<'a> {
    pub(super) id: &'a str,
    pub(super) name: &'a str,
    pub(super) description: Option<&'a str>,
    pub(super) owner: &'a str,
    pub(super) members: &'a [String],
    pub(super) now: i64,
}

const ADD_MEMBER: &str = "INSERT INTO group_members (group_id, user_id, role, joined_at)
     SELECT $1, id, $3, $4 FROM users WHERE id = $2
     ON CONFLICT (group_id, user_id) DO NOTHING";

/// Creates a group owned by `g.owner` with the members that exist.
pub(super) async fn create(c: &impl GenericClient, g: &NewGroup<'_>) -> StoreResult<Group> {
    exec(
        c,
        "INSERT INTO groups (id, name, description, owner_id, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[&g.id, &g.name, &g.description, &g.owner, &g.now],
    )
    .await?;
    exec(
        c,
        ADD_MEMBER,
        &[&g.id, &g.owner, &Role::Owner.as_str(), &g.now],
    )
    .await?;
    for m in g.members {
        exec(c, ADD_MEMBER, &[&g.id, m, &Role::Member.as_str(), &g.now]).await?;
    }
    load(c, g.id)
        .await?
        .ok_or(StoreError::Database("group vanished".into()))
}

/// The groups `user` is in, by name.
pub(super) async fn of(c: &impl GenericClient, user: &str) -> StoreResult<Vec<Group>> {
    let ids = rows(
        c,
        "SELECT group_id FROM group_members WHERE user_id = $1",
        &[&user],
    )
    .await?;
    let mut out = Vec::new();
    for r in &ids {
        let id: String = col(r, 0)?;
        if let Some(g) = load(c, &id).await? {
            out.push(g);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `user`'s role in the group, if a member.
pub(super) async fn role(
    c: &impl GenericClient,
    group: &str,
    user: &str,
) -> StoreResult<Option<Role>> {
    let r = opt(
        c,
        "SELECT role FROM group_members WHERE group_id = $1 AND user_id = $2",
        &[&group, &user],
    )
    .await?;
    Ok(match r {
        Some(r) => Role::parse(&col::<String>(&r, 0)?),
        None => None,
    })
}

/// Renames and/or redescribes.
pub(super) async fn update(
    c: &impl GenericClient,
    id: &str,
    name: Option<&str>,
    desc: Option<&str>,
) -> StoreResult<()> {
    exec(
        c,
        "UPDATE groups SET name = COALESCE($2, name), description = COALESCE($3, description)
         WHERE id = $1",
        &[&id, &name, &desc],
    )
    .await?;
    Ok(())
}

/// Deletes the group, its members, records and queued messages.
pub(super) async fn delete(c: &impl GenericClient, id: &str) -> StoreResult<()> {
    for sql in [
        "DELETE FROM deliveries WHERE message_id IN (SELECT id FROM messages WHERE group_id = $1)",
        "DELETE FROM messages WHERE group_id = $1",
        "DELETE FROM group_members WHERE group_id = $1",
        "DELETE FROM group_changes WHERE group_id = $1",
        "DELETE FROM groups WHERE id = $1",
    ] {
        exec(c, sql, &[&id]).await?;
    }
    Ok(())
}

/// Changes a member's role.
pub(super) async fn set_role(
    c: &impl GenericClient,
    group: &str,
    user: &str,
    role: Role,
) -> StoreResult<MemberChange> {
    let n = exec(
        c,
        "UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2",
        &[&group, &user, &role.as_str()],
    )
    .await?;
    Ok(if n > 0 {
        MemberChange::Done
    } else {
        MemberChange::NoUser
    })
}

async fn exists(c: &impl GenericClient, sql: &str, id: &str) -> StoreResult<bool> {
    col(&one(c, sql, &[&id]).await?, 0)
}

/// Adds a member (a no-op for one already in).
pub(super) async fn add_member(
    c: &impl GenericClient,
    group: &str,
    user: &str,
    role: Role,
    now: i64,
) -> StoreResult<MemberChange> {
    if !exists(
        c,
        "SELECT EXISTS (SELECT 1 FROM groups WHERE id = $1)",
        group,
    )
    .await?
    {
        return Ok(MemberChange::NoGroup);
    }
    let n = exec(c, ADD_MEMBER, &[&group, &user, &role.as_str(), &now]).await?;
    let user_exists = exists(c, "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user).await?;
    Ok(if n > 0 || user_exists {
        MemberChange::Done
    } else {
        MemberChange::NoUser
    })
}

/// Removes a member and what was still queued for it in the group.
pub(super) async fn remove_member(
    c: &impl GenericClient,
    group: &str,
    user: &str,
) -> StoreResult<MemberChange> {
    let n = exec(
        c,
        "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
        &[&group, &user],
    )
    .await?;
    if n == 0 {
        return Ok(MemberChange::NoUser);
    }
    exec(
        c,
        "DELETE FROM deliveries WHERE recipient = $2 AND state = 0 AND message_id IN
         (SELECT id FROM messages WHERE group_id = $1)",
        &[&group, &user],
    )
    .await?;
    Ok(MemberChange::Done)
}

/// Locks the group's row (as [`append_change`] does) and says whether it
/// has signed changes: a version-1 change applies only when not, and no
/// first record can slip in between.
pub(super) async fn lock_signed(c: &impl GenericClient, group: &str) -> StoreResult<bool> {
    exec(
        c,
        "SELECT 1 FROM groups WHERE id = $1 FOR UPDATE",
        &[&group],
    )
    .await?;
    Ok(head_epoch(c, group).await?.is_some())
}

/// The epoch of the group's latest change record.
async fn head_epoch(c: &impl GenericClient, group: &str) -> StoreResult<Option<u64>> {
    let e: Option<i64> = col(
        &one(
            c,
            "SELECT MAX(epoch) FROM group_changes WHERE group_id = $1",
            &[&group],
        )
        .await?,
        0,
    )?;
    Ok(e.map(|e| e.max(0) as u64))
}

/// The group's change records after `after` (all without), oldest first.
pub(super) async fn changes(
    c: &impl GenericClient,
    group: &str,
    after: Option<u64>,
) -> StoreResult<Vec<(u64, Vec<u8>)>> {
    let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
    rows(
        c,
        "SELECT epoch, record FROM group_changes WHERE group_id = $1 AND epoch > $2
         ORDER BY epoch",
        &[&group, &after],
    )
    .await?
    .iter()
    .map(|r| Ok((col::<i64>(r, 0)?.max(0) as u64, col(r, 1)?)))
    .collect()
}

/// Appends a change record on top of the head and applies it;
/// `Conflict("change")` when another change got there first.
pub(super) async fn append_change(
    c: &impl GenericClient,
    ch: &NewChange,
) -> StoreResult<MemberChange> {
    // Appends to one group queue up here, across nodes; the first record
    // of a new group has no row to lock, and its epoch-0 key settles it.
    exec(
        c,
        "SELECT 1 FROM groups WHERE id = $1 FOR UPDATE",
        &[&ch.group_id],
    )
    .await?;
    let head = head_epoch(c, &ch.group_id).await?;
    let fits = match head {
        None => ch.epoch == 0,
        Some(h) => ch.epoch == h + 1,
    };
    if !fits {
        return Err(StoreError::Conflict("change"));
    }
    let outcome = match &ch.op {
        GroupOp::Create {
            name,
            owner,
            members,
            exists,
        } => {
            // Signing a group as it is: as it is now, under the lock (a
            // version-1 change may have landed since the route looked).
            if *exists
                && !super::common::signs_as_is(load(c, &ch.group_id).await?, name, owner, members)
            {
                return Err(StoreError::Conflict("change"));
            }
            if !exists {
                let made = create(
                    c,
                    &NewGroup {
                        id: &ch.group_id,
                        name,
                        description: None,
                        owner,
                        members: &[],
                        now: ch.now,
                    },
                )
                .await;
                match made {
                    Err(StoreError::Conflict(_)) => return Err(StoreError::Conflict("change")),
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
                for (user, role) in members {
                    add_member(c, &ch.group_id, user, *role, ch.now).await?;
                }
            }
            MemberChange::Done
        }
        GroupOp::Add { user, role } => add_member(c, &ch.group_id, user, *role, ch.now).await?,
        GroupOp::Remove { user } => remove_member(c, &ch.group_id, user).await?,
        GroupOp::SetRole { user, role } => set_role(c, &ch.group_id, user, *role).await?,
        GroupOp::TransferOwnership { from, to } => {
            match set_role(c, &ch.group_id, to, Role::Owner).await? {
                MemberChange::Done => {
                    set_role(c, &ch.group_id, from, Role::Admin).await?;
                    exec(
                        c,
                        "UPDATE groups SET owner_id = $2 WHERE id = $1",
                        &[&ch.group_id, &to],
                    )
                    .await?;
                    MemberChange::Done
                }
                other => other,
            }
        }
        GroupOp::Rename { name } => {
            update(c, &ch.group_id, Some(name), None).await?;
            MemberChange::Done
        }
    };
    if outcome != MemberChange::Done {
        return Ok(outcome);
    }
    let epoch = i64::try_from(ch.epoch).map_err(|_| StoreError::Conflict("change"))?;
    let r = exec(
        c,
        "INSERT INTO group_changes (group_id, epoch, record, created_at) VALUES ($1, $2, $3, $4)",
        &[&ch.group_id, &epoch, &ch.record, &ch.now],
    )
    .await;
    match r {
        Err(StoreError::Conflict(_)) => Err(StoreError::Conflict("change")),
        Err(e) => Err(e),
        Ok(_) => Ok(MemberChange::Done),
    }
}
