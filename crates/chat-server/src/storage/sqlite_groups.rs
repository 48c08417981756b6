//! The group jobs of [`super::sqlite::SqliteStorage`]: groups with their
//! members and roles. Each function runs inside the writer's or a reader's
//! job.

use chat_proto::Role;
use chat_proto::rest::{Group, GroupMember};
use rusqlite::{Connection, OptionalExtension, params};

use super::{MemberChange, StoreError, StoreResult};

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
                })
            },
        )
        .optional()?;
    let Some(mut g) = head else { return Ok(None) };
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
