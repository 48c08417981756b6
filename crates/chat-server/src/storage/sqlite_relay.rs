//! The message-queue jobs of [`super::sqlite::SqliteStorage`]: storing a
//! message for every device it is for (checking a version-2 message's copies
//! against the current devices in the same write), and reading and updating
//! one device's queue.

use std::collections::BTreeMap;

use chat_proto::MessageStatus;
use chat_proto::rest::RelayedMessage;
use chat_proto::ws::{DeviceCopy, DeviceMismatch, DeviceRef};
use rusqlite::{Connection, OptionalExtension, params};

use super::common::Known;
use super::common::check_copies;
use super::{NewMessage, Queued, QueuedFor, StatusEvent, StoreError, StoreResult, Stored, Targets};

/// The devices a sender must address: those that uploaded a signed prekey
/// (the ones `GET /api/users/{id}/devices/prekeys` hands out), with their
/// `registrationId`s, by id.
pub(super) fn device_set(c: &Connection, user: &str) -> StoreResult<BTreeMap<u32, u32>> {
    let mut st = c.prepare_cached(
        "SELECT d.device_id, d.registration_id FROM devices d
         JOIN device_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id
         WHERE d.user_id = ?1",
    )?;
    let rows = st.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The devices a group message or a version-1 message is queued for: the
/// keyed ones, or device 1 for an account that never uploaded keys (as
/// before version 2).
fn queue_devices(c: &Connection, user: &str) -> StoreResult<Vec<u32>> {
    let set = device_set(c, user)?;
    Ok(if set.is_empty() {
        vec![1]
    } else {
        set.into_keys().collect()
    })
}

/// Which devices a 1:1 message from `(from, from_device)` to `to` must be
/// copied to: every keyed device of `to` and of the sender but the sending
/// one (`to` = the sender: its other devices).
fn required(
    c: &Connection,
    from: &str,
    from_device: u32,
    to: &str,
) -> StoreResult<BTreeMap<DeviceRef, u32>> {
    let mut out = BTreeMap::new();
    for user in [to, from] {
        for (device, reg) in device_set(c, user)? {
            if user == from && device == from_device {
                continue;
            }
            let key = DeviceRef {
                user_id: user.to_owned(),
                device_id: device,
                registration_id: None,
            };
            out.insert(key, reg);
        }
    }
    Ok(out)
}

/// Where each copy of a direct message goes: `(user, device, content)`.
type Route = Vec<(String, u32, Option<String>)>;

fn direct_route(
    c: &Connection,
    m: &NewMessage,
    to: &str,
    copies: Option<Vec<DeviceCopy>>,
) -> StoreResult<Route> {
    let need = required(c, &m.from, m.from_device, to)?;
    match copies {
        Some(copies) => {
            let mismatch = check_copies(&need, &copies)?;
            if !mismatch.is_empty() {
                return Err(StoreError::Devices(mismatch));
            }
            Ok(copies
                .into_iter()
                .map(|k| (k.user_id, k.device_id, Some(k.content)))
                .collect())
        }
        None => {
            // Version 1: one ciphertext, readable by one device. Fine while
            // the recipient has at most one device and the sender no other.
            // (A version-1 note to self goes back to the one device, as
            // it did before.)
            let to_devices = queue_devices(c, to)?;
            let own_others = need.keys().any(|k| k.user_id == m.from && to != m.from);
            if to_devices.len() > 1 || own_others {
                return Err(StoreError::Devices(DeviceMismatch {
                    missing: need
                        .into_iter()
                        .map(|(k, reg)| DeviceRef {
                            registration_id: Some(reg),
                            ..k
                        })
                        .collect(),
                    ..DeviceMismatch::default()
                }));
            }
            Ok(to_devices
                .into_iter()
                .map(|d| (to.to_owned(), d, None))
                .collect())
        }
    }
}

fn group_route(c: &Connection, m: &NewMessage, members: &[String]) -> StoreResult<Route> {
    let mut route = Vec::new();
    for user in members.iter().filter(|u| **u != m.from) {
        for d in queue_devices(c, user)? {
            route.push((user.clone(), d, None));
        }
    }
    for d in device_set(c, &m.from)?.into_keys() {
        if d != m.from_device {
            route.push((m.from.clone(), d, None));
        }
    }
    Ok(route)
}

/// `a` wrote to `b`: `a`'s presence goes to `b`.
fn add_contact(conn: &Connection, a: &str, b: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO contacts (a, b) VALUES (?1, ?2)")?
        .execute([a, b])?;
    Ok(())
}

/// `user` posted in `group`: their presence goes to its members.
fn add_poster(conn: &Connection, group: &str, user: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO group_posters (group_id, user_id) VALUES (?1, ?2)")?
        .execute([group, user])?;
    Ok(())
}

/// The store job: the message and one delivery per device, or nothing.
pub(super) fn store(
    c: &Connection,
    known: &mut Known,
    m: NewMessage,
    targets: Targets,
) -> StoreResult<Stored> {
    if let Targets::Direct { to, .. } = &targets
        && !known.users.contains(to)
    {
        let exists: bool = c
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)")?
            .query_row([to], |row| row.get(0))?;
        if !exists {
            return Err(StoreError::NotFound("recipient"));
        }
        known.users.insert(to.clone());
    }
    // A resend of a stored message is answered before its copies are
    // checked: the devices may have changed since it was stored.
    let first: Option<(String, i64)> = c
        .prepare_cached("SELECT sender, created_at FROM messages WHERE id = ?1")?
        .query_row([&m.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((sender, ts)) = first {
        return if sender == m.from {
            Ok(Stored::Duplicate { timestamp: ts })
        } else {
            Err(StoreError::Conflict("message id already used"))
        };
    }
    let (route, to) = match targets {
        Targets::Direct { to, copies } => (direct_route(c, &m, &to, copies)?, Some(to)),
        Targets::Group { members } => (group_route(c, &m, &members)?, None),
    };
    c.prepare_cached(
        "INSERT INTO messages (id, sender, sender_device, group_id, content, message_type, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        m.id,
        m.from,
        m.from_device,
        m.group_id,
        (!m.content.is_empty()).then_some(&m.content),
        m.message_type,
        m.timestamp
    ])?;
    if let Some(g) = &m.group_id {
        let pair = (g.clone(), m.from.clone());
        if !known.posters.contains(&pair) {
            add_poster(c, g, &m.from)?;
            known.posters.insert(pair);
        }
    }
    if let Some(to) = to.filter(|t| *t != m.from) {
        let pair = (m.from.clone(), to);
        if !known.contacts.contains(&pair) {
            add_contact(c, &pair.0, &pair.1)?;
            known.contacts.insert(pair);
        }
    }
    let mut ins = c.prepare_cached(
        "INSERT INTO deliveries (message_id, recipient, device_id, sender, content)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut queued = Vec::with_capacity(route.len());
    for (user, device, content) in route {
        ins.execute(params![m.id, user, device, m.from, content])?;
        queued.push(QueuedFor {
            user,
            device,
            seq: c.last_insert_rowid(),
            content,
        });
    }
    Ok(Stored::New {
        timestamp: m.timestamp,
        queued,
    })
}

/// The columns [`relayed`] reads, for a delivery `d` joined to its message
/// `m`.
const RELAYED_COLUMNS: &str = "m.id, m.sender, m.sender_device, m.group_id,
    COALESCE(d.content, m.content) AS content, m.message_type, m.created_at";

fn relayed(row: &rusqlite::Row<'_>, recipient: &str) -> rusqlite::Result<RelayedMessage> {
    Ok(RelayedMessage {
        id: row.get("id")?,
        from: row.get("sender")?,
        to: recipient.to_owned(),
        content: row.get::<_, Option<String>>("content")?.unwrap_or_default(),
        timestamp: row.get("created_at")?,
        status: MessageStatus::Sent,
        message_type: row.get("message_type")?,
        group_id: row.get("group_id")?,
        from_device: Some(row.get("sender_device")?),
    })
}

/// One device's queue after `after`, oldest first.
pub(super) fn pending(
    c: &Connection,
    rcpt: &str,
    device: u32,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<Queued>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT d.seq, {RELAYED_COLUMNS}
         FROM deliveries d JOIN messages m ON m.id = d.message_id
         WHERE d.recipient = ?1 AND d.device_id = ?2 AND d.state = 0 AND d.seq > ?3
         ORDER BY d.seq LIMIT ?4"
    ))?;
    let rows = stmt.query_map(params![rcpt, device, after, limit as i64], |r| {
        Ok(Queued {
            seq: r.get("seq")?,
            message: relayed(r, rcpt)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One device's pending 1:1 messages from `peer`, or (`group`) in a group.
pub(super) fn pending_filtered(
    c: &Connection,
    rcpt: &str,
    device: u32,
    peer: Option<&str>,
    group: Option<&str>,
) -> StoreResult<Vec<RelayedMessage>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {RELAYED_COLUMNS}
         FROM deliveries d JOIN messages m ON m.id = d.message_id
         WHERE d.recipient = ?1 AND d.device_id = ?2 AND d.state = 0
         AND (?3 IS NULL OR (d.sender = ?3 AND m.group_id IS NULL))
         AND (?4 IS NULL OR m.group_id = ?4)
         ORDER BY d.seq"
    ))?;
    let rows = stmt.query_map(params![rcpt, device, peer, group], |r| relayed(r, rcpt))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Marks one device's copies; the events to report (see
/// [`super::Storage::set_status`]).
pub(super) fn set_status(
    c: &Connection,
    rcpt: &str,
    device: u32,
    ids: Vec<String>,
    status: MessageStatus,
    code: i64,
    from: Option<String>,
) -> StoreResult<Vec<StatusEvent>> {
    let mut events = Vec::new();
    // Whether another of the recipient's devices already reached this
    // status: then the sender heard already.
    let mut upd = c.prepare_cached(
        "UPDATE deliveries SET state = ?4, content = NULL
         WHERE message_id = ?1 AND recipient = ?2 AND device_id = ?3
         AND state < ?4 AND (?5 IS NULL OR sender = ?5)
         RETURNING sender, (SELECT COUNT(*) FROM deliveries o WHERE o.message_id = ?1
            AND o.recipient = ?2 AND o.device_id != ?3 AND o.state >= ?4)",
    )?;
    let mut clear = c.prepare_cached(
        "UPDATE messages SET content = NULL WHERE id = ?1 AND content IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = ?1 AND state = 0)",
    )?;
    for id in ids {
        let changed: Option<(String, i64)> = upd
            .query_row(params![id, rcpt, device, code, from], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((sender, earlier)) = changed else {
            continue;
        };
        // The server's copy of the ciphertext goes as soon as every
        // recipient device has stored it.
        clear.execute([&id])?;
        if earlier == 0 && sender != rcpt {
            events.push(StatusEvent {
                sender,
                message_id: id,
                status,
                by: rcpt.to_owned(),
            });
        }
    }
    Ok(events)
}
