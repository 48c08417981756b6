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

/// Stores an upload; whether it replaced the identity (and so revoked every
/// token but `keep`).
pub(super) fn upload(
    c: &Connection,
    user: &str,
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
    if replaced && !u.replace_devices {
        return Err(StoreError::Conflict("identity"));
    }
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
        c.execute("DELETE FROM link_tokens WHERE user_id = ?1", [user])?;
        c.execute(
            "INSERT OR IGNORE INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
             VALUES (?1, 1, 'first device', 0, ?2, ?2)",
            params![user, now],
        )?;
    }
    if current.as_deref() != Some(u.identity_key.as_str()) {
        // A new identity (reinstall): old prekeys belong to the old one.
        c.execute("DELETE FROM one_time_prekeys WHERE user_id = ?1", [user])?;
        c.execute("DELETE FROM pq_prekeys WHERE user_id = ?1", [user])?;
        c.execute(
            "INSERT INTO identities (user_id, identity_key, identity_signature) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET identity_key = ?2, identity_signature = ?3,
                 spk_id = NULL, spk_key = NULL, spk_signature = NULL, spk_uploaded_at = NULL",
            params![user, u.identity_key, u.identity_signature],
        )?;
    }
    if let Some(spk) = &u.signed_prekey {
        c.execute(
                "UPDATE identities SET spk_id = ?2, spk_key = ?3, spk_signature = ?4, spk_uploaded_at = ?5
                 WHERE user_id = ?1",
                params![user, spk.key_id, spk.public_key, spk.signature, now],
            )?;
    }
    let mut ins = c.prepare_cached(
        "INSERT OR REPLACE INTO one_time_prekeys (user_id, key_id, public_key) VALUES (?1, ?2, ?3)",
    )?;
    for k in &u.one_time_prekeys {
        ins.execute(params![user, k.key_id, k.public_key])?;
    }
    drop(ins);
    if u.pq_replace_one_time {
        c.execute(
            "DELETE FROM pq_prekeys WHERE user_id = ?1 AND last_resort = 0",
            [user],
        )?;
    }
    if let Some(k) = &u.pq_last_resort_prekey {
        c.execute(
            "DELETE FROM pq_prekeys WHERE user_id = ?1 AND last_resort = 1",
            [user],
        )?;
        c.execute(
                "INSERT OR REPLACE INTO pq_prekeys (user_id, key_id, public_key, signature, last_resort, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5)",
                params![user, k.key_id, k.public_key, k.signature, now],
            )?;
    }
    let mut ins = c.prepare_cached(
            "INSERT OR REPLACE INTO pq_prekeys (user_id, key_id, public_key, signature, last_resort, uploaded_at)
             VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        )?;
    for k in &u.pq_one_time_prekeys {
        ins.execute(params![user, k.key_id, k.public_key, k.signature, now])?;
    }
    Ok(replaced)
}

/// Hands out a bundle, claiming one one-time prekey of each kind.
pub(super) fn claim(c: &Connection, user: &str) -> StoreResult<Option<Claimed>> {
    let id = c
        .query_row(
            "SELECT identity_key, identity_signature, spk_id, spk_key, spk_signature
                 FROM identities WHERE user_id = ?1 AND spk_id IS NOT NULL",
            [user],
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
                    SELECT rowid FROM one_time_prekeys WHERE user_id = ?1 ORDER BY key_id LIMIT 1)
                 RETURNING key_id, public_key",
            [user],
            |r| {
                Ok(OneTimePreKey {
                    key_id: r.get(0)?,
                    public_key: r.get(1)?,
                })
            },
        )
        .optional()?;
    let left: u32 = c.query_row(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1",
        [user],
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
                    SELECT rowid FROM pq_prekeys WHERE user_id = ?1 AND last_resort = 0
                    ORDER BY key_id LIMIT 1)
                 RETURNING key_id, public_key, signature",
            [user],
            pq_row,
        )
        .optional()?;
    let pq = match one_time_pq {
            Some(k) => Some(k),
            None => c
                .query_row(
                    "SELECT key_id, public_key, signature FROM pq_prekeys
                     WHERE user_id = ?1 AND last_resort = 1 ORDER BY uploaded_at DESC, key_id DESC LIMIT 1",
                    [user],
                    pq_row,
                )
                .optional()?,
        };
    let pq_left: u32 = c.query_row(
        "SELECT COUNT(*) FROM pq_prekeys WHERE user_id = ?1 AND last_resort = 0",
        [user],
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

/// The owner's stock.
pub(super) fn status(c: &Connection, user: &str) -> StoreResult<PreKeyStatus> {
    let n: u32 = c.query_row(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = ?1",
        [user],
        |r| r.get(0),
    )?;
    let spk = c
        .query_row(
            "SELECT spk_id, spk_uploaded_at, identity_key FROM identities WHERE user_id = ?1",
            [user],
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
        "SELECT COUNT(*) FROM pq_prekeys WHERE user_id = ?1 AND last_resort = 0",
        [user],
        |r| r.get(0),
    )?;
    let last_resort: Option<(u32, i64)> = c
        .query_row(
            "SELECT key_id, uploaded_at FROM pq_prekeys WHERE user_id = ?1 AND last_resort = 1
                 ORDER BY uploaded_at DESC, key_id DESC LIMIT 1",
            [user],
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

/// Deletes one one-time X25519 prekey; whether it existed.
pub(super) fn delete(c: &Connection, user: &str, key_id: u32) -> StoreResult<bool> {
    Ok(c.execute(
        "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND key_id = ?2",
        params![user, key_id],
    )? > 0)
}
