//! The message queue on PostgreSQL (the twin of `sqlite_relay.rs`): where a
//! message's copies go, reading one device's queue, and status changes.
//! Storing is in `pg_writer.rs` (group commit).

use std::collections::BTreeMap;

use chat_proto::MessageStatus;
use chat_proto::rest::RelayedMessage;
use chat_proto::ws::{DeviceCopy, DeviceMismatch, DeviceRef};
use deadpool_postgres::GenericClient;

use super::common::{check_copies, status_code, status_from};
use super::pg::{Row, col, col_u32, exec, opt, rows};
use super::{NewMessage, Queued, StatusEvent, StoreError, StoreResult};

/// The user ids one query with the user id as `$1` selects.
pub(super) async fn user_ids(
    c: &impl GenericClient,
    sql: &str,
    user: &str,
) -> StoreResult<Vec<String>> {
    rows(c, sql, &[&user])
        .await?
        .iter()
        .map(|r| col(r, 0))
        .collect()
}

/// The devices a sender must address (those with a signed prekey), with
/// their `registrationId`s.
async fn device_set(c: &impl GenericClient, user: &str) -> StoreResult<BTreeMap<u32, u32>> {
    rows(
        c,
        "SELECT d.device_id, d.registration_id FROM devices d
         JOIN device_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id
         WHERE d.user_id = $1",
        &[&user],
    )
    .await?
    .iter()
    .map(|r| Ok((col_u32(r, 0)?, col_u32(r, 1)?)))
    .collect()
}

/// The keyed devices, or device 1 for an account that never uploaded keys.
async fn queue_devices(c: &impl GenericClient, user: &str) -> StoreResult<Vec<u32>> {
    let set = device_set(c, user).await?;
    Ok(if set.is_empty() {
        vec![1]
    } else {
        set.into_keys().collect()
    })
}

/// Where each copy of a message goes: `(user, device, content)`.
pub(super) type Route = Vec<(String, u32, Option<String>)>;

/// A direct message's copies, checked against the current devices of the
/// recipient and of the sender's others.
pub(super) async fn direct_route(
    c: &impl GenericClient,
    m: &NewMessage,
    to: &str,
    copies: Option<&[DeviceCopy]>,
) -> StoreResult<Route> {
    let mut need = BTreeMap::new();
    for user in [to, m.from.as_str()] {
        for (device, reg) in device_set(c, user).await? {
            if user == m.from && device == m.from_device {
                continue;
            }
            let key = DeviceRef {
                user_id: user.to_owned(),
                device_id: device,
                registration_id: None,
            };
            need.insert(key, reg);
        }
    }
    match copies {
        Some(copies) => {
            let mismatch = check_copies(&need, copies)?;
            if !mismatch.is_empty() {
                return Err(StoreError::Devices(mismatch));
            }
            Ok(copies
                .iter()
                .map(|k| (k.user_id.clone(), k.device_id, Some(k.content.clone())))
                .collect())
        }
        None => {
            let to_devices = queue_devices(c, to).await?;
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

/// A group message's copies: every device of the other members and the
/// sender's other devices.
pub(super) async fn group_route(
    c: &impl GenericClient,
    m: &NewMessage,
    members: &[String],
) -> StoreResult<Route> {
    let mut route = Vec::new();
    for user in members.iter().filter(|u| **u != m.from) {
        for d in queue_devices(c, user).await? {
            route.push((user.clone(), d, None));
        }
    }
    for d in device_set(c, &m.from).await?.into_keys() {
        if d != m.from_device {
            route.push((m.from.clone(), d, None));
        }
    }
    Ok(route)
}

const RELAYED_COLUMNS: &str = "m.id, m.sender, m.sender_device, m.group_id,
    COALESCE(d.content, m.content), m.message_type, m.created_at";

/// A row of [`RELAYED_COLUMNS`] from column `at` on.
fn relayed(r: &Row, at: usize, recipient: &str) -> StoreResult<RelayedMessage> {
    Ok(RelayedMessage {
        id: col(r, at)?,
        from: col(r, at + 1)?,
        to: recipient.to_owned(),
        from_device: Some(col_u32(r, at + 2)?),
        group_id: col(r, at + 3)?,
        content: col::<Option<String>>(r, at + 4)?.unwrap_or_default(),
        message_type: col(r, at + 5)?,
        timestamp: col(r, at + 6)?,
        status: MessageStatus::Sent,
    })
}

/// One device's queue after `after`, oldest first.
pub(super) async fn pending(
    c: &impl GenericClient,
    rcpt: &str,
    device: u32,
    after: i64,
    limit: usize,
) -> StoreResult<Vec<Queued>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    rows(
        c,
        &format!(
            "SELECT d.seq, {RELAYED_COLUMNS}
             FROM deliveries d JOIN messages m ON m.id = d.message_id
             WHERE d.recipient = $1 AND d.device_id = $2 AND d.state = 0 AND d.seq > $3
             ORDER BY d.seq LIMIT $4"
        ),
        &[&rcpt, &i64::from(device), &after, &limit],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Queued {
            seq: col(r, 0)?,
            message: relayed(r, 1, rcpt)?,
        })
    })
    .collect()
}

/// One device's pending 1:1 messages from `peer`, or (`group`) in a group.
pub(super) async fn pending_filtered(
    c: &impl GenericClient,
    rcpt: &str,
    device: u32,
    peer: Option<&str>,
    group: Option<&str>,
) -> StoreResult<Vec<RelayedMessage>> {
    rows(
        c,
        &format!(
            "SELECT {RELAYED_COLUMNS}
             FROM deliveries d JOIN messages m ON m.id = d.message_id
             WHERE d.recipient = $1 AND d.device_id = $2 AND d.state = 0
             AND ($3::TEXT IS NULL OR (d.sender = $3 AND m.group_id IS NULL))
             AND ($4::TEXT IS NULL OR m.group_id = $4)
             ORDER BY d.seq"
        ),
        &[&rcpt, &i64::from(device), &peer, &group],
    )
    .await?
    .iter()
    .map(|r| relayed(r, 0, rcpt))
    .collect()
}

/// Marks one device's copies; the events to report (see
/// [`super::Storage::set_status`]). Each message's row is locked first, so
/// two devices (on two nodes) marking one message report it once, and the
/// last one to store it clears the server's copy.
pub(super) async fn set_status(
    c: &impl GenericClient,
    rcpt: &str,
    device: u32,
    ids: Vec<String>,
    status: MessageStatus,
    code: i64,
    from: Option<&str>,
) -> StoreResult<Vec<StatusEvent>> {
    // One lock order for every caller: by id. The ids' statements are
    // pipelined on the one connection; each id's first statement (its
    // lock) is sent in id order.
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|a, b| ids[*a].cmp(&ids[*b]));
    let d = i64::from(device);
    let (d, code, from) = (&d, &code, &from);
    let one_id = |id: String| async move {
        let locked = opt(c, "SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", &[&id]).await?;
        if locked.is_none() {
            return Ok(None);
        }
        let changed = opt(
            c,
            "UPDATE deliveries SET state = $4, content = NULL
             WHERE message_id = $1 AND recipient = $2 AND device_id = $3
             AND state < $4 AND ($5::TEXT IS NULL OR sender = $5)
             RETURNING sender, (SELECT COUNT(*) FROM deliveries o WHERE o.message_id = $1
                AND o.recipient = $2 AND o.device_id <> $3 AND o.state >= $4)",
            &[&id, &rcpt, d, code, from],
        )
        .await?;
        let Some(changed) = changed else {
            return Ok(None);
        };
        let (sender, earlier): (String, i64) = (col(&changed, 0)?, col(&changed, 1)?);
        exec(
            c,
            "UPDATE messages SET content = NULL WHERE id = $1 AND content IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = $1 AND state = 0)",
            &[&id],
        )
        .await?;
        Ok::<_, StoreError>((earlier == 0 && sender != rcpt).then(|| StatusEvent {
            sender,
            message_id: id,
            status,
            by: rcpt.to_owned(),
        }))
    };
    let results =
        futures_util::future::join_all(order.iter().map(|&i| one_id(ids[i].clone()))).await;
    let mut found: Vec<Option<StatusEvent>> = vec![None; ids.len()];
    for (i, r) in order.into_iter().zip(results) {
        found[i] = r?;
    }
    // Reported in the order asked.
    Ok(found.into_iter().flatten().collect())
}

/// Queues status events for the sender's devices that were offline.
pub(super) async fn queue_status(
    c: &impl GenericClient,
    events: Vec<(StatusEvent, Vec<u32>)>,
) -> StoreResult<()> {
    for (e, online) in events {
        let all = rows(
            c,
            "SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id",
            &[&e.sender],
        )
        .await?;
        for r in &all {
            let device = col_u32(r, 0)?;
            if online.contains(&device) {
                continue;
            }
            exec(
                c,
                "INSERT INTO status_queue (user_id, device_id, message_id, status, by_user)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &e.sender,
                    &i64::from(device),
                    &e.message_id,
                    &status_code(e.status),
                    &e.by,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Takes (and deletes) the queued status events for one device.
pub(super) async fn take_statuses(
    c: &impl GenericClient,
    user: &str,
    device: u32,
) -> StoreResult<Vec<StatusEvent>> {
    let mut out = rows(
        c,
        "DELETE FROM status_queue WHERE user_id = $1 AND (device_id = $2 OR device_id IS NULL)
         RETURNING seq, message_id, status, by_user",
        &[&user, &i64::from(device)],
    )
    .await?
    .iter()
    .map(|r| {
        Ok((
            col::<i64>(r, 0)?,
            StatusEvent {
                sender: user.to_owned(),
                message_id: col(r, 1)?,
                status: status_from(col(r, 2)?),
                by: col(r, 3)?,
            },
        ))
    })
    .collect::<StoreResult<Vec<_>>>()?;
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out.into_iter().map(|(_, e)| e).collect())
}
