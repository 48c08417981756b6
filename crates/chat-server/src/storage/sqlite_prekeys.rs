//! The prekey half of [`super::sqlite::SqliteStorage`]: uploads, the
//! atomic claim of a bundle (X25519 and post-quantum one-time prekeys in one
//! write job), the status, deletion. Each function runs inside the writer's
//! or a reader's job.

use chat_proto::rest::{
    OneTimePreKey, PqPreKey, PreKeyBundle, PreKeyStatus, PreKeyUpload, SignedPreKey,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite::PREKEYS_LOW;
use super::{Claimed, StoreError, StoreResult};

/// Stores an upload for one device; whether it replaced the identity (and so
/// revoked every token but `keep`). Only device 1 replaces an identity; a
/// linked device uploading another one gets `Conflict("identity")`.
pub(super) fn upload(
    c: &Connection,
    user: &str,
    device: u32,
    u: &PreKeyUpload,
    keep: &[u8],
    now: i64,
) -> StoreResult<bool> {
    let current: Option<String> = c
        .query_row(
            "SELECT identity_key FROM identities WHERE user_id = ?1",
            [user],
            |r| r.get(0),
        )
        .optional()?;
    let replaced = current
        .as_deref()
        .is_some_and(|k| k != u.identity_key.as_str());
    if replaced && (!u.replace_devices || device > 1) {
        return Err(StoreError::Conflict("identity"));
    }
    // A login replacing every device (device 0) uploads a new identity
    // before anything else.
    if device == 0 && !replaced {
        return Err(StoreError::Conflict("same identity"));
    }
    let device = device.max(1);
    if replaced {
        // Every other device goes with its tokens; the uploader is device 1.
        c.execute(
            "DELETE FROM tokens WHERE user_id = ?1 AND hash != ?2",
            params![user, keep],
        )?;
        c.execute("UPDATE tokens SET device_id = 1 WHERE user_id = ?1", [user])?;
        c.execute(
            "DELETE FROM devices WHERE user_id = ?1 AND device_id != 1",
            [user],
        )?;
        c.execute(
            "DELETE FROM deliveries WHERE recipient = ?1 AND device_id != 1",
            [user],
        )?;
        c.execute("DELETE FROM link_tokens WHERE user_id = ?1", [user])?;
        c.execute(
            "INSERT OR IGNORE INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
             VALUES (?1, 1, 'first device', 0, ?2, ?2)",
            params![user, now],
        )?;
        // New keys on the same device id: a new registrationId, so every
        // sender still holding a session with the old keys gets `stale`
        // and learns of the new identity before it encrypts (API.md).
        // The one the upload names, unless it is the old one.
        c.execute(
            "UPDATE devices SET registration_id = CASE WHEN ?2 IS NOT NULL
                 AND ?2 <> registration_id THEN ?2
                 ELSE (registration_id + 1) % 4294967296 END
             WHERE user_id = ?1 AND device_id = 1",
            params![user, u.registration_id],
        )?;
    } else if let Some(r) = u.registration_id {
        c.execute(
            "UPDATE devices SET registration_id = ?3 WHERE user_id = ?1 AND device_id = ?2",
            params![user, device, r],
        )?;
    }
    if current.as_deref() != Some(u.identity_key.as_str()) {
        // A new identity (reinstall): old prekeys belong to the old one,
        // on every device.
        c.execute("DELETE FROM one_time_prekeys WHERE user_id = ?1", [user])?;
        c.execute("DELETE FROM pq_prekeys WHERE user_id = ?1", [user])?;
        c.execute("DELETE FROM device_keys WHERE user_id = ?1", [user])?;
        c.execute(
            "INSERT INTO identities (user_id, identity_key, identity_signature) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET identity_key = ?2, identity_signature = ?3,
                 spk_id = NULL, spk_key = NULL, spk_signature = NULL, spk_uploaded_at = NULL",
            params![user, u.identity_key, u.identity_signature],
        )?;
    }
    if let Some(spk) = &u.signed_prekey {
        c.execute(
            "INSERT INTO device_keys (user_id, device_id, spk_id, spk_key, spk_signature, spk_uploaded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (user_id, device_id) DO UPDATE SET spk_id = ?3, spk_key = ?4,
             spk_signature = ?5, spk_uploaded_at = ?6",
            params![user, device, spk.key_id, spk.public_key, spk.signature, now],
        )?;
    }
    let mut ins = c.prepare_cached(
        "INSERT OR REPLACE INTO one_time_prekeys (user_id, device_id, key_id, public_key)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for k in &u.one_time_prekeys {
        ins.execute(params![user, device, k.key_id, k.public_key])?;
    }
    drop(ins);
    if u.pq_replace_one_time {
        c.execute(
            "DELETE FROM pq_prekeys WHERE user_id = ?1 AND device_id = ?2 AND last_resort = 0",
            params![user, device],
        )?;
    }
    if let Some(k) = &u.pq_last_resort_prekey {
        c.execute(
            "DELETE FROM pq_prekeys WHERE user_id = ?1 AND device_id = ?2 AND last_resort = 1",
            params![user, device],
        )?;
        c.execute(
            "INSERT OR REPLACE INTO pq_prekeys
             (user_id, device_id, key_id, public_key, signature, last_resort, uploaded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
            params![user, device, k.key_id, k.public_key, k.signature, now],
        )?;
    }
    let mut ins = c.prepare_cached(
        "INSERT OR REPLACE INTO pq_prekeys
         (user_id, device_id, key_id, public_key, signature, last_resort, uploaded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
    )?;
    for k in &u.pq_one_time_prekeys {
        ins.execute(params![
            user,
            device,
            k.key_id,
            k.public_key,
            k.signature,
            now
        ])?;
    }
    Ok(replaced)
}

/// Hands out one device's bundle, claiming one one-time prekey of each kind.
pub(super) fn claim(c: &Connection, user: &str, device: u32) -> StoreResult<Option<Claimed>> {
    let id = c
        .query_row(
            "SELECT i.identity_key, i.identity_signature, k.spk_id, k.spk_key, k.spk_signature
                 FROM identities i JOIN device_keys k ON k.user_id = i.user_id
                 WHERE i.user_id = ?1 AND k.device_id = ?2",
            params![user, device],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((ik, isig, spk_id, spk_key, spk_sig)) = id else {
        return Ok(None);
    };
    let opk = c
        .query_row(
            "DELETE FROM one_time_prekeys WHERE rowid = (
                    SELECT rowid FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2
                    ORDER BY key_id LIMIT 1)
                 RETURNING key_id, public_key",
            params![user, device],
            |r| {
                Ok(OneTimePreKey {
                    key_id: r.get(0)?,
                    public_key: r.get(1)?,
                })
            },
        )
        .optional()?;
    let left: u32 = c.query_row(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2",
        params![user, device],
        |r| r.get(0),
    )?;
    let pq_row = |r: &rusqlite::Row<'_>| {
        Ok(PqPreKey {
            key_id: r.get(0)?,
            public_key: r.get(1)?,
            signature: r.get(2)?,
        })
    };
    // A one-time PQ prekey, taken in this same job (never twice);
    // else the last-resort one, which stays.
    let one_time_pq = c
        .query_row(
            "DELETE FROM pq_prekeys WHERE rowid = (
                    SELECT rowid FROM pq_prekeys WHERE user_id = ?1 AND device_id = ?2
                    AND last_resort = 0 ORDER BY key_id LIMIT 1)
                 RETURNING key_id, public_key, signature",
            params![user, device],
            pq_row,
        )
        .optional()?;
    let pq = match one_time_pq {
        Some(k) => Some(k),
        None => c
            .query_row(
                "SELECT key_id, public_key, signature FROM pq_prekeys
                     WHERE user_id = ?1 AND device_id = ?2 AND last_resort = 1
                     ORDER BY uploaded_at DESC, key_id DESC LIMIT 1",
                params![user, device],
                pq_row,
            )
            .optional()?,
    };
    let pq_left: u32 = c.query_row(
        "SELECT COUNT(*) FROM pq_prekeys WHERE user_id = ?1 AND device_id = ?2 AND last_resort = 0",
        params![user, device],
        |r| r.get(0),
    )?;
    Ok(Some(Claimed {
        bundle: PreKeyBundle {
            user_id: user.to_owned(),
            identity_key: ik,
            identity_signature: isig,
            signed_prekey: SignedPreKey {
                key_id: spk_id,
                public_key: spk_key,
                signature: spk_sig,
            },
            one_time_prekey: opk,
            pq_prekey: pq,
        },
        one_time_left: left,
        pq_one_time_left: pq_left,
    }))
}

/// One device's stock (and the account's identity).
pub(super) fn status(c: &Connection, user: &str, device: u32) -> StoreResult<PreKeyStatus> {
    let n: u32 = c.query_row(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2",
        params![user, device],
        |r| r.get(0),
    )?;
    let spk = c
        .query_row(
            "SELECT k.spk_id, k.spk_uploaded_at, i.identity_key FROM identities i
             LEFT JOIN device_keys k ON k.user_id = i.user_id AND k.device_id = ?2
             WHERE i.user_id = ?1",
            params![user, device],
            |r| {
                Ok((
                    r.get::<_, Option<u32>>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            },
        )
        .optional()?
        .unwrap_or((None, None, None));
    let pq_n: u32 = c.query_row(
        "SELECT COUNT(*) FROM pq_prekeys WHERE user_id = ?1 AND device_id = ?2 AND last_resort = 0",
        params![user, device],
        |r| r.get(0),
    )?;
    let last_resort: Option<(u32, i64)> = c
        .query_row(
            "SELECT key_id, uploaded_at FROM pq_prekeys
             WHERE user_id = ?1 AND device_id = ?2 AND last_resort = 1
             ORDER BY uploaded_at DESC, key_id DESC LIMIT 1",
            params![user, device],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(PreKeyStatus {
        one_time_prekeys: n,
        signed_prekey_id: spk.0,
        signed_prekey_uploaded_at: spk.1,
        low: n < PREKEYS_LOW,
        identity_key: spk.2,
        pq_one_time_prekeys: pq_n,
        pq_last_resort_prekey_id: last_resort.map(|l| l.0),
        pq_last_resort_uploaded_at: last_resort.map(|l| l.1),
        pq_low: pq_n < PREKEYS_LOW,
    })
}

/// Deletes one of a device's one-time X25519 prekeys; whether it existed.
pub(super) fn delete(c: &Connection, user: &str, device: u32, key_id: u32) -> StoreResult<bool> {
    Ok(c.execute(
        "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND device_id = ?2 AND key_id = ?3",
        params![user, device, key_id],
    )? > 0)
}

/// Every device's bundle that has a signed prekey, by device id, each with
/// its one-time prekeys claimed: `(device id, registration id, claim)`.
pub(super) fn claim_all(c: &Connection, user: &str) -> StoreResult<Vec<(u32, u32, Claimed)>> {
    let devices: Vec<(u32, u32)> = {
        let mut st = c.prepare_cached(
            "SELECT d.device_id, d.registration_id FROM devices d
             JOIN device_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id
             WHERE d.user_id = ?1 ORDER BY d.device_id",
        )?;
        st.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::with_capacity(devices.len());
    for (device, registration) in devices {
        if let Some(claimed) = claim(c, user, device)? {
            out.push((device, registration, claimed));
        }
    }
    Ok(out)
}

/// A removed device's keys and queue go with it.
pub(super) fn drop_device(c: &Connection, user: &str, device: u32) -> StoreResult<()> {
    c.execute(
        "DELETE FROM deliveries WHERE recipient = ?1 AND device_id = ?2",
        params![user, device],
    )?;
    c.execute(
        "DELETE FROM status_queue WHERE user_id = ?1 AND device_id = ?2",
        params![user, device],
    )?;
    for table in ["device_keys", "one_time_prekeys", "pq_prekeys"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"),
            params![user, device],
        )?;
    }
    Ok(())
}
