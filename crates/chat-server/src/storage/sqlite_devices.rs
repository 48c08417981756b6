//! The device jobs of [`super::sqlite::SqliteStorage`] (protocol version 2,
//! DESIGN.md section 8): an account's devices, single-use link tokens, and
//! linking and removing a device with its tokens in one write.

use chat_proto::devices::Device;
use chat_proto::rest::User;
use rusqlite::{Connection, OptionalExtension, params};

use super::{NewLink, StoreError, StoreResult};

/// The name device 1 gets (at registration, and for accounts from before
/// version 2).
pub(super) const FIRST_DEVICE_NAME: &str = "first device";

/// The account's devices, by id.
pub(super) fn list(c: &Connection, user: &str) -> StoreResult<Vec<Device>> {
    let mut st = c.prepare_cached(
        "SELECT device_id, name, registration_id, created_at, last_seen FROM devices
         WHERE user_id = ?1 ORDER BY device_id",
    )?;
    let rows = st.query_map([user], |r| {
        Ok(Device {
            device_id: r.get(0)?,
            name: r.get(1)?,
            registration_id: r.get(2)?,
            created_at: r.get(3)?,
            last_seen: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Device 1 of a new account.
pub(super) fn add_first(
    c: &Connection,
    user: &str,
    registration_id: u32,
    now: i64,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
         VALUES (?1, 1, ?2, ?3, ?4, ?4)",
        params![user, FIRST_DEVICE_NAME, registration_id, now],
    )?;
    Ok(())
}

pub(super) fn insert_link_token(
    c: &Connection,
    hash: &[u8],
    user: &str,
    made_by: &[u8],
    expires_at: i64,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO link_tokens (hash, user_id, expires_at, made_by) VALUES (?1, ?2, ?3, ?4)",
        params![hash, user, expires_at, made_by],
    )?;
    Ok(())
}

/// Takes the link token (it is gone afterwards, used or expired), then adds
/// the device with the next id and its first token. `None` for an unknown
/// or expired token; `Conflict("devices")` when the account is full (the
/// token is spent all the same).
pub(super) fn link(c: &Connection, l: &NewLink) -> StoreResult<Option<(User, u32)>> {
    let owner: Option<(String, i64)> = c
        .query_row(
            "DELETE FROM link_tokens WHERE hash = ?1 RETURNING user_id, expires_at",
            [&l.link_hash],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((user_id, expires_at)) = owner else {
        return Ok(None);
    };
    if expires_at < l.now {
        return Ok(None);
    }
    let count: i64 = c.query_row(
        "SELECT COUNT(*) FROM devices WHERE user_id = ?1",
        [&user_id],
        |r| r.get(0),
    )?;
    if count as usize >= l.max_devices {
        return Err(StoreError::Conflict("devices"));
    }
    let Some((user, device_id)) = c
        .query_row(
            "UPDATE users SET next_device_id = next_device_id + 1 WHERE id = ?1
             RETURNING id, username, avatar_url, next_device_id - 1",
            [&user_id],
            |r| {
                Ok((
                    User {
                        id: r.get(0)?,
                        username: r.get(1)?,
                        avatar_url: r.get(2)?,
                    },
                    r.get::<_, u32>(3)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    c.execute(
        "INSERT INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![user.id, device_id, l.name, l.registration_id, l.now],
    )?;
    c.execute(
        "INSERT INTO tokens (hash, user_id, created_at, last_used, device_id)
         VALUES (?1, ?2, ?3, ?3, ?4)",
        params![l.token_hash, user.id, l.now, device_id],
    )?;
    Ok(Some((user, device_id)))
}

/// Removes a device, its tokens and the link tokens they made; returns its
/// name and the token hashes (to close its connections), or `None` when the
/// account has no such device. `Conflict("last device")` for the only one.
pub(super) fn remove(
    c: &Connection,
    user: &str,
    device: u32,
) -> StoreResult<Option<(String, Vec<Vec<u8>>)>> {
    let count: i64 = c.query_row(
        "SELECT COUNT(*) FROM devices WHERE user_id = ?1",
        [user],
        |r| r.get(0),
    )?;
    let exists: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2)",
        params![user, device],
        |r| r.get(0),
    )?;
    if exists && count <= 1 {
        return Err(StoreError::Conflict("last device"));
    }
    let name: Option<String> = c
        .query_row(
            "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2 RETURNING name",
            params![user, device],
            |r| r.get(0),
        )
        .optional()?;
    let Some(name) = name else {
        return Ok(None);
    };
    let mut st = c.prepare_cached(
        "DELETE FROM tokens WHERE user_id = ?1 AND device_id = ?2 RETURNING hash",
    )?;
    let hashes: Vec<Vec<u8>> = st
        .query_map(params![user, device], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut revoke = c.prepare_cached("DELETE FROM link_tokens WHERE made_by = ?1")?;
    let mut remember = c.prepare_cached(
        "INSERT OR REPLACE INTO revoked_tokens (hash, user_id, reason, revoked_at) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let now = crate::auth::now_ms();
    for h in &hashes {
        revoke.execute([h])?;
        remember.execute(params![h, user, super::REVOKED_DEVICE_REMOVED, now])?;
    }
    Ok(Some((name, hashes)))
}
