//! The group jobs of [`super::sqlite::SqliteStorage`]: groups with their
//! members and roles. Each function runs inside the writer's or a reader's
//! job.

use chat_proto::Role;
use chat_proto::rest::{Group, GroupMember};
use rusqlite::{Connection, OptionalExtension, params};

use super::{GroupOp, MemberChange, NewChange, StoreError, StoreResult};

/// A group with its members (joined first, then by name).
pub(super) fn load(c: &Connection, id: &str) -> StoreResult<Option<Group>> {
    let head = c
        .query_row(
            "SELECT id, name, description, owner_id, created_at FROM groups WHERE id = ?1",
            [id],
            |r| {
                Ok(Group {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    description: r.get(2)?,
                    owner_id: r.get(3)?,
                    created_at: r.get(4)?,
                    members: Vec::new(),
                    epoch: None,
                })
            },
        )
        .optional()?;
    let Some(mut g) = head else { return Ok(None) };
    g.epoch = head_epoch(c, id)?;
    let mut stmt = c.prepare_cached(
        "SELECT m.user_id, u.username, m.role, m.joined_at FROM group_members m
         JOIN users u ON u.id = m.user_id WHERE m.group_id = ?1 ORDER BY m.joined_at, u.username",
    )?;
    g.members = stmt
        .query_map([id], |r| {
            let role: String = r.get(2)?;
            Ok(GroupMember {
                user_id: r.get(0)?,
                username: r.get(1)?,
                role: Role::parse(&role).unwrap_or(Role::Member),
                joined_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(g))
}

/// What [`create`] needs.
pub(super) struct NewGroup {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) owner: String,
    pub(super) members: Vec<String>,
    pub(super) now: i64,
}

/// Creates a group owned by `g.owner` with the members that exist.
pub(super) fn create(c: &Connection, g: &NewGroup) -> StoreResult<Group> {
    c.execute(
        "INSERT INTO groups (id, name, description, owner_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![g.id, g.name, g.description, g.owner, g.now],
    )?;
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO group_members (group_id, user_id, role, joined_at)
         SELECT ?1, id, ?3, ?4 FROM users WHERE id = ?2",
    )?;
    ins.execute(params![g.id, g.owner, Role::Owner.as_str(), g.now])?;
    for m in &g.members {
        ins.execute(params![g.id, m, Role::Member.as_str(), g.now])?;
    }
    load(c, &g.id)?.ok_or(StoreError::Database("group vanished".into()))
}

/// The groups `user` is in, by name.
pub(super) fn of(c: &Connection, user: &str) -> StoreResult<Vec<Group>> {
    let ids: Vec<String> = c
        .prepare_cached("SELECT group_id FROM group_members WHERE user_id = ?1")?
        .query_map([user], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(g) = load(c, &id)? {
            out.push(g);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `user`'s role in the group, if a member.
pub(super) fn role(c: &Connection, group: &str, user: &str) -> StoreResult<Option<Role>> {
    let role: Option<String> = c
        .query_row(
            "SELECT role FROM group_members WHERE group_id = ?1 AND user_id = ?2",
            [group, user],
            |r| r.get(0),
        )
        .optional()?;
    Ok(role.as_deref().and_then(Role::parse))
}

/// Renames and/or redescribes.
pub(super) fn update(
    c: &Connection,
    id: &str,
    name: Option<&str>,
    desc: Option<&str>,
) -> StoreResult<()> {
    c.execute(
        "UPDATE groups SET name = COALESCE(?2, name), description = COALESCE(?3, description) WHERE id = ?1",
        params![id, name, desc],
    )?;
    Ok(())
}

/// Deletes the group, its members and its queued messages.
pub(super) fn delete(c: &Connection, id: &str) -> StoreResult<()> {
    c.execute(
        "DELETE FROM deliveries WHERE message_id IN (SELECT id FROM messages WHERE group_id = ?1)",
        [id],
    )?;
    c.execute("DELETE FROM messages WHERE group_id = ?1", [id])?;
    c.execute("DELETE FROM group_members WHERE group_id = ?1", [id])?;
    c.execute("DELETE FROM group_changes WHERE group_id = ?1", [id])?;
    c.execute("DELETE FROM groups WHERE id = ?1", [id])?;
    Ok(())
}

/// Changes a member's role.
pub(super) fn set_role(
    c: &Connection,
    group: &str,
    user: &str,
    role: Role,
) -> StoreResult<MemberChange> {
    let n = c.execute(
        "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND user_id = ?2",
        params![group, user, role.as_str()],
    )?;
    Ok(if n > 0 {
        MemberChange::Done
    } else {
        MemberChange::NoUser
    })
}

/// Adds a member (a no-op for one already in).
pub(super) fn add_member(
    c: &Connection,
    group: &str,
    user: &str,
    role: Role,
    now: i64,
) -> StoreResult<MemberChange> {
    let exists: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM groups WHERE id = ?1)",
        [group],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(MemberChange::NoGroup);
    }
    let n = c.execute(
        "INSERT INTO group_members (group_id, user_id, role, joined_at)
         SELECT ?1, id, ?3, ?4 FROM users WHERE id = ?2
         ON CONFLICT (group_id, user_id) DO NOTHING",
        params![group, user, role.as_str(), now],
    )?;
    let user_exists: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)",
        [user],
        |r| r.get(0),
    )?;
    Ok(if n > 0 || user_exists {
        MemberChange::Done
    } else {
        MemberChange::NoUser
    })
}

/// Removes a member and what was still queued for it in the group.
pub(super) fn remove_member(c: &Connection, group: &str, user: &str) -> StoreResult<MemberChange> {
    let n = c.execute(
        "DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2",
        [group, user],
    )?;
    if n == 0 {
        return Ok(MemberChange::NoUser);
    }
    c.execute(
        "DELETE FROM deliveries WHERE recipient = ?2 AND state = 0 AND message_id IN
         (SELECT id FROM messages WHERE group_id = ?1)",
        [group, user],
    )?;
    Ok(MemberChange::Done)
}

/// The members' ids.
pub(super) fn member_ids(c: &Connection, group: &str) -> StoreResult<Vec<String>> {
    Ok(
        c.prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1")?
            .query_map([group], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?,
    )
}

/// The epoch of the group's latest change record.
pub(super) fn head_epoch(c: &Connection, group: &str) -> StoreResult<Option<u64>> {
    let e: Option<i64> = c.query_row(
        "SELECT MAX(epoch) FROM group_changes WHERE group_id = ?1",
        [group],
        |r| r.get(0),
    )?;
    Ok(e.map(|e| e as u64))
}

/// The group's change records after `after` (all without), oldest first.
pub(super) fn changes(
    c: &Connection,
    group: &str,
    after: Option<u64>,
) -> StoreResult<Vec<(u64, Vec<u8>)>> {
    let after = after.map_or(-1, |a| a as i64);
    Ok(c.prepare_cached(
        "SELECT epoch, record FROM group_changes WHERE group_id = ?1 AND epoch > ?2
             ORDER BY epoch",
    )?
    .query_map(params![group, after], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
    })?
    .collect::<rusqlite::Result<_>>()?)
}

/// Appends a change record on top of the head and applies what it does.
/// `Conflict("change")` when the head is not `epoch - 1` (another change
/// won the race); nothing is written then.
pub(super) fn append_change(c: &Connection, ch: &NewChange) -> StoreResult<MemberChange> {
    let head = head_epoch(c, &ch.group_id)?;
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
            // Signing a group as it is: as it is now, under the write
            // (a version-1 change may have landed since the route looked).
            if *exists && !super::common::signs_as_is(load(c, &ch.group_id)?, name, owner, members)
            {
                return Err(StoreError::Conflict("change"));
            }
            if !exists {
                create(
                    c,
                    &NewGroup {
                        id: ch.group_id.clone(),
                        name: name.clone(),
                        description: None,
                        owner: owner.clone(),
                        members: Vec::new(),
                        now: ch.now,
                    },
                )?;
                for (user, role) in members {
                    add_member(c, &ch.group_id, user, *role, ch.now)?;
                }
            }
            MemberChange::Done
        }
        GroupOp::Add { user, role } => add_member(c, &ch.group_id, user, *role, ch.now)?,
        GroupOp::Remove { user } => remove_member(c, &ch.group_id, user)?,
        GroupOp::SetRole { user, role } => set_role(c, &ch.group_id, user, *role)?,
        GroupOp::TransferOwnership { from, to } => {
            match set_role(c, &ch.group_id, to, Role::Owner)? {
                MemberChange::Done => {
                    set_role(c, &ch.group_id, from, Role::Admin)?;
                    c.execute(
                        "UPDATE groups SET owner_id = ?2 WHERE id = ?1",
                        params![ch.group_id, to],
                    )?;
                    MemberChange::Done
                }
                other => other,
            }
        }
        GroupOp::Rename { name } => {
            update(c, &ch.group_id, Some(name), None)?;
            MemberChange::Done
        }
    };
    if outcome != MemberChange::Done {
        return Ok(outcome);
    }
    c.execute(
        "INSERT INTO group_changes (group_id, epoch, record, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![ch.group_id, ch.epoch as i64, ch.record, ch.now],
    )?;
    Ok(MemberChange::Done)
}
