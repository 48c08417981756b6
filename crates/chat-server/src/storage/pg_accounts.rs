//! Accounts, tokens, devices and prekeys on PostgreSQL (the twins of
//! `sqlite_accounts.rs`, `sqlite_devices.rs` and `sqlite_prekeys.rs`).
//! Writes that must not interleave with another node's on the same
//! account (linking at the device limit, replacing the identity) lock the
//! account's `users` row first; one-time prekeys are claimed with
//! `SKIP LOCKED`, so two nodes claiming at once get two different keys.

use chat_proto::devices::Device;
use chat_proto::rest::{
    OneTimePreKey, PqPreKey, PreKeyBundle, PreKeyStatus, PreKeyUpload, SignedPreKey, User,
};
use deadpool_postgres::GenericClient;

use super::pg::{Row, col, col_u32, exec, one, opt, rows};
use super::sqlite::PREKEYS_LOW;
use super::{Account, Claimed, NewLink, StoreError, StoreResult};

fn user_from(r: &Row) -> StoreResult<User> {
    Ok(User {
        id: col(r, 0)?,
        username: col(r, 1)?,
        avatar_url: col(r, 2)?,
    })
}

/// Creates a user and its device 1; `Conflict` when the name is taken.
pub(super) async fn create(
    c: &impl GenericClient,
    a: &Account,
    registration_id: u32,
) -> StoreResult<()> {
    let now = crate::auth::now_ms();
    let canonical = chat_proto::validate::canonical_username(&a.user.username);
    let r = exec(
        c,
        "INSERT INTO users (id, username, password_hash, avatar_url, created_at, canonical)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &a.user.id,
            &a.user.username,
            &a.password_hash,
            &a.user.avatar_url,
            &now,
            &canonical,
        ],
    )
    .await;
    match r {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => return Err(StoreError::Conflict("username is taken")),
        Err(e) => return Err(e),
    }
    exec(
        c,
        "INSERT INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
         VALUES ($1, 1, 'first device', $3, $2, $2)",
        &[&a.user.id, &now, &i64::from(registration_id)],
    )
    .await?;
    Ok(())
}

/// A user with its password hash, by name (canonical form first).
pub(super) async fn by_name(c: &impl GenericClient, name: &str) -> StoreResult<Option<Account>> {
    let canonical = chat_proto::validate::canonical_username(name);
    let row = opt(
        c,
        "SELECT id, username, avatar_url, password_hash FROM users
         WHERE canonical = $2 OR username = $1
         ORDER BY (canonical IS NOT DISTINCT FROM $2) DESC LIMIT 1",
        &[&name, &canonical],
    )
    .await?;
    row.map(|r| {
        Ok(Account {
            user: user_from(&r)?,
            password_hash: col(&r, 3)?,
        })
    })
    .transpose()
}

/// A user by id.
pub(super) async fn get(c: &impl GenericClient, id: &str) -> StoreResult<Option<User>> {
    let row = opt(
        c,
        "SELECT id, username, avatar_url FROM users WHERE id = $1",
        &[&id],
    )
    .await?;
    row.map(|r| user_from(&r)).transpose()
}

/// Every user, or those with this name (ordered as SQLite's `NOCASE`).
pub(super) async fn list(c: &impl GenericClient, name: Option<&str>) -> StoreResult<Vec<User>> {
    let canonical = name.map(chat_proto::validate::canonical_username);
    let rows = rows(
        c,
        "SELECT id, username, avatar_url FROM users
         WHERE $1::TEXT IS NULL OR username = $1 OR canonical = $2
         ORDER BY lower(username), username",
        &[&name, &canonical],
    )
    .await?;
    rows.iter().map(user_from).collect()
}

/// The user and device a token belongs to, if used within `idle_ms`; its
/// last use is refreshed at most once a minute.
pub(super) async fn token_user(
    c: &impl GenericClient,
    hash: &[u8],
    now: i64,
    idle_ms: i64,
) -> StoreResult<Option<(User, u32)>> {
    let row = opt(
        c,
        "SELECT u.id, u.username, u.avatar_url, t.last_used, t.device_id FROM tokens t
         JOIN users u ON u.id = t.user_id WHERE t.hash = $1",
        &[&hash],
    )
    .await?;
    let Some(r) = row else { return Ok(None) };
    let (user, last_used, device) = (user_from(&r)?, col::<i64>(&r, 3)?, col_u32(&r, 4)?);
    if now - last_used > idle_ms {
        return Ok(None);
    }
    if now - last_used > 60_000 {
        exec(
            c,
            "UPDATE tokens SET last_used = $2 WHERE hash = $1",
            &[&hash, &now],
        )
        .await?;
        exec(
            c,
            "UPDATE devices SET last_seen = $3 WHERE user_id = $1 AND device_id = $2",
            &[&user.id, &i64::from(device), &now],
        )
        .await?;
    }
    Ok(Some((user, device)))
}

/// The account's devices, by id.
pub(super) async fn devices(c: &impl GenericClient, user: &str) -> StoreResult<Vec<Device>> {
    let rows = rows(
        c,
        "SELECT device_id, name, registration_id, created_at, last_seen FROM devices
         WHERE user_id = $1 ORDER BY device_id",
        &[&user],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Device {
                device_id: col_u32(r, 0)?,
                name: col(r, 1)?,
                registration_id: col_u32(r, 2)?,
                created_at: col(r, 3)?,
                last_seen: col(r, 4)?,
            })
        })
        .collect()
}

/// Spends the link token, then adds the device (see the SQLite twin).
pub(super) async fn link(c: &impl GenericClient, l: &NewLink) -> StoreResult<Option<(User, u32)>> {
    let owner = opt(
        c,
        "DELETE FROM link_tokens WHERE hash = $1 RETURNING user_id, expires_at",
        &[&l.link_hash],
    )
    .await?;
    let Some(owner) = owner else { return Ok(None) };
    let (user_id, expires_at): (String, i64) = (col(&owner, 0)?, col(&owner, 1)?);
    if expires_at < l.now {
        return Ok(None);
    }
    // The account's row lock: two links at once count each other.
    let locked = opt(
        c,
        "SELECT id, username, avatar_url, next_device_id FROM users WHERE id = $1 FOR UPDATE",
        &[&user_id],
    )
    .await?;
    let Some(locked) = locked else {
        return Ok(None);
    };
    let count: i64 = col(
        &one(
            c,
            "SELECT COUNT(*) FROM devices WHERE user_id = $1",
            &[&user_id],
        )
        .await?,
        0,
    )?;
    if count as usize >= l.max_devices {
        return Err(StoreError::Conflict("devices"));
    }
    let user = user_from(&locked)?;
    let device_id = col_u32(&locked, 3)?;
    exec(
        c,
        "UPDATE users SET next_device_id = next_device_id + 1 WHERE id = $1",
        &[&user_id],
    )
    .await?;
    exec(
        c,
        "INSERT INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
         VALUES ($1, $2, $3, $4, $5, $5)",
        &[
            &user.id,
            &i64::from(device_id),
            &l.name,
            &i64::from(l.registration_id),
            &l.now,
        ],
    )
    .await?;
    exec(
        c,
        "INSERT INTO tokens (hash, user_id, created_at, last_used, device_id)
         VALUES ($1, $2, $3, $3, $4)",
        &[&l.token_hash, &user.id, &l.now, &i64::from(device_id)],
    )
    .await?;
    Ok(Some((user, device_id)))
}

/// Removes a device with its tokens, keys and queue; its name and token
/// hashes.
pub(super) async fn remove_device(
    c: &impl GenericClient,
    user: &str,
    device: u32,
) -> StoreResult<Option<(String, Vec<Vec<u8>>)>> {
    let d = i64::from(device);
    // The account's row lock: two removals at once cannot leave none.
    exec(c, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user]).await?;
    let count: i64 = col(
        &one(
            c,
            "SELECT COUNT(*) FROM devices WHERE user_id = $1",
            &[&user],
        )
        .await?,
        0,
    )?;
    let exists = opt(
        c,
        "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2",
        &[&user, &d],
    )
    .await?
    .is_some();
    if exists && count <= 1 {
        return Err(StoreError::Conflict("last device"));
    }
    let name = opt(
        c,
        "DELETE FROM devices WHERE user_id = $1 AND device_id = $2 RETURNING name",
        &[&user, &d],
    )
    .await?;
    let Some(name) = name else { return Ok(None) };
    let hashes = rows(
        c,
        "DELETE FROM tokens WHERE user_id = $1 AND device_id = $2 RETURNING hash",
        &[&user, &d],
    )
    .await?
    .iter()
    .map(|r| col(r, 0))
    .collect::<StoreResult<Vec<Vec<u8>>>>()?;
    exec(
        c,
        "DELETE FROM link_tokens WHERE made_by = ANY($1)",
        &[&hashes],
    )
    .await?;
    exec(
        c,
        "INSERT INTO revoked_tokens (hash, user_id, reason, revoked_at)
         SELECT h, $2, $3, $4 FROM unnest($1::bytea[]) AS h
         ON CONFLICT (hash) DO NOTHING",
        &[
            &hashes,
            &user,
            &super::REVOKED_DEVICE_REMOVED,
            &crate::auth::now_ms(),
        ],
    )
    .await?;
    for table in [
        "deliveries WHERE recipient = $1",
        "status_queue WHERE user_id = $1",
        "device_keys WHERE user_id = $1",
        "one_time_prekeys WHERE user_id = $1",
        "pq_prekeys WHERE user_id = $1",
    ] {
        exec(
            c,
            &format!("DELETE FROM {table} AND device_id = $2"),
            &[&user, &d],
        )
        .await?;
    }
    Ok(Some((col(&name, 0)?, hashes)))
}

/// Stores an upload for one device (see the SQLite twin); whether it
/// replaced the identity.
pub(super) async fn upload(
    c: &impl GenericClient,
    user: &str,
    device: u32,
    u: &PreKeyUpload,
    keep: &[u8],
    now: i64,
) -> StoreResult<bool> {
    // Uploads for one account apply one at a time across nodes.
    exec(c, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user]).await?;
    let current: Option<String> = opt(
        c,
        "SELECT identity_key FROM identities WHERE user_id = $1",
        &[&user],
    )
    .await?
    .map(|r| col(&r, 0))
    .transpose()?;
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
    let d = i64::from(device);
    let new_reg = u.registration_id.map(i64::from);
    if replaced {
        let statements = [
            "DELETE FROM tokens WHERE user_id = $1 AND hash <> $2",
            "UPDATE tokens SET device_id = 1 WHERE user_id = $1 AND hash = $2",
        ];
        for sql in statements {
            exec(c, sql, &[&user, &keep]).await?;
        }
        for sql in [
            "DELETE FROM devices WHERE user_id = $1 AND device_id <> 1",
            "DELETE FROM deliveries WHERE recipient = $1 AND device_id <> 1",
            "DELETE FROM link_tokens WHERE user_id = $1",
        ] {
            exec(c, sql, &[&user]).await?;
        }
        exec(
            c,
            "INSERT INTO devices (user_id, device_id, name, registration_id, created_at, last_seen)
             VALUES ($1, 1, 'first device', 0, $2, $2) ON CONFLICT DO NOTHING",
            &[&user, &now],
        )
        .await?;
        // New keys on the same device id: a new registrationId, so every
        // sender still holding a session with the old keys gets `stale`
        // and learns of the new identity before it encrypts (API.md).
        // The one the upload names, unless it is the old one.
        exec(
            c,
            "UPDATE devices SET registration_id = CASE WHEN $2::BIGINT IS NOT NULL
                 AND $2::BIGINT <> registration_id THEN $2::BIGINT
                 ELSE (registration_id + 1) % 4294967296 END
             WHERE user_id = $1 AND device_id = 1",
            &[&user, &new_reg],
        )
        .await?;
    } else if let Some(r) = new_reg {
        exec(
            c,
            "UPDATE devices SET registration_id = $3 WHERE user_id = $1 AND device_id = $2",
            &[&user, &d, &r],
        )
        .await?;
    }
    if current.as_deref() != Some(u.identity_key.as_str()) {
        for sql in [
            "DELETE FROM one_time_prekeys WHERE user_id = $1",
            "DELETE FROM pq_prekeys WHERE user_id = $1",
            "DELETE FROM device_keys WHERE user_id = $1",
        ] {
            exec(c, sql, &[&user]).await?;
        }
        exec(
            c,
            "INSERT INTO identities (user_id, identity_key, identity_signature) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET identity_key = $2, identity_signature = $3",
            &[&user, &u.identity_key, &u.identity_signature],
        )
        .await?;
    }
    if let Some(spk) = &u.signed_prekey {
        exec(
            c,
            "INSERT INTO device_keys (user_id, device_id, spk_id, spk_key, spk_signature, spk_uploaded_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, device_id) DO UPDATE SET spk_id = $3, spk_key = $4,
             spk_signature = $5, spk_uploaded_at = $6",
            &[&user, &d, &i64::from(spk.key_id), &spk.public_key, &spk.signature, &now],
        )
        .await?;
    }
    for k in &u.one_time_prekeys {
        exec(
            c,
            "INSERT INTO one_time_prekeys (user_id, device_id, key_id, public_key)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, device_id, key_id) DO UPDATE SET public_key = $4",
            &[&user, &d, &i64::from(k.key_id), &k.public_key],
        )
        .await?;
    }
    if u.pq_replace_one_time {
        exec(
            c,
            "DELETE FROM pq_prekeys WHERE user_id = $1 AND device_id = $2 AND NOT last_resort",
            &[&user, &d],
        )
        .await?;
    }
    let put_pq = "INSERT INTO pq_prekeys
         (user_id, device_id, key_id, public_key, signature, last_resort, uploaded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (user_id, device_id, key_id) DO UPDATE SET public_key = $4,
         signature = $5, last_resort = $6, uploaded_at = $7";
    if let Some(k) = &u.pq_last_resort_prekey {
        exec(
            c,
            "DELETE FROM pq_prekeys WHERE user_id = $1 AND device_id = $2 AND last_resort",
            &[&user, &d],
        )
        .await?;
        let key_id = i64::from(k.key_id);
        exec(
            c,
            put_pq,
            &[&user, &d, &key_id, &k.public_key, &k.signature, &true, &now],
        )
        .await?;
    }
    for k in &u.pq_one_time_prekeys {
        let key_id = i64::from(k.key_id);
        exec(
            c,
            put_pq,
            &[
                &user,
                &d,
                &key_id,
                &k.public_key,
                &k.signature,
                &false,
                &now,
            ],
        )
        .await?;
    }
    Ok(replaced)
}

fn pq_from(r: &Row) -> StoreResult<PqPreKey> {
    Ok(PqPreKey {
        key_id: col_u32(r, 0)?,
        public_key: col(r, 1)?,
        signature: col(r, 2)?,
    })
}

async fn count(c: &impl GenericClient, sql: &str, user: &str, d: i64) -> StoreResult<u32> {
    let n: i64 = col(&one(c, sql, &[&user, &d]).await?, 0)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

const ONE_TIME_LEFT: &str =
    "SELECT COUNT(*) FROM one_time_prekeys WHERE user_id = $1 AND device_id = $2";
const PQ_LEFT: &str =
    "SELECT COUNT(*) FROM pq_prekeys WHERE user_id = $1 AND device_id = $2 AND NOT last_resort";
const LAST_RESORT: &str = "SELECT key_id, public_key, signature, uploaded_at FROM pq_prekeys
     WHERE user_id = $1 AND device_id = $2 AND last_resort
     ORDER BY uploaded_at DESC, key_id DESC LIMIT 1";

/// Hands out one device's bundle, claiming one one-time prekey of each
/// kind; a key another claim holds is skipped, never handed out twice.
pub(super) async fn claim(
    c: &impl GenericClient,
    user: &str,
    device: u32,
) -> StoreResult<Option<Claimed>> {
    let d = i64::from(device);
    let id = opt(
        c,
        "SELECT i.identity_key, i.identity_signature, k.spk_id, k.spk_key, k.spk_signature
         FROM identities i JOIN device_keys k ON k.user_id = i.user_id
         WHERE i.user_id = $1 AND k.device_id = $2",
        &[&user, &d],
    )
    .await?;
    let Some(id) = id else { return Ok(None) };
    let opk = opt(
        c,
        "DELETE FROM one_time_prekeys WHERE (user_id, device_id, key_id) = (
             SELECT user_id, device_id, key_id FROM one_time_prekeys
             WHERE user_id = $1 AND device_id = $2
             ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING key_id, public_key",
        &[&user, &d],
    )
    .await?
    .map(|r| {
        Ok::<_, StoreError>(OneTimePreKey {
            key_id: col_u32(&r, 0)?,
            public_key: col(&r, 1)?,
        })
    })
    .transpose()?;
    let left = count(c, ONE_TIME_LEFT, user, d).await?;
    let one_time_pq = opt(
        c,
        "DELETE FROM pq_prekeys WHERE (user_id, device_id, key_id) = (
             SELECT user_id, device_id, key_id FROM pq_prekeys
             WHERE user_id = $1 AND device_id = $2 AND NOT last_resort
             ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING key_id, public_key, signature",
        &[&user, &d],
    )
    .await?
    .map(|r| pq_from(&r))
    .transpose()?;
    let pq = match one_time_pq {
        Some(k) => Some(k),
        None => opt(c, LAST_RESORT, &[&user, &d])
            .await?
            .map(|r| pq_from(&r))
            .transpose()?,
    };
    let pq_left = count(c, PQ_LEFT, user, d).await?;
    Ok(Some(Claimed {
        bundle: PreKeyBundle {
            user_id: user.to_owned(),
            identity_key: col(&id, 0)?,
            identity_signature: col(&id, 1)?,
            signed_prekey: SignedPreKey {
                key_id: col_u32(&id, 2)?,
                public_key: col(&id, 3)?,
                signature: col(&id, 4)?,
            },
            one_time_prekey: opk,
            pq_prekey: pq,
        },
        one_time_left: left,
        pq_one_time_left: pq_left,
    }))
}

/// Every keyed device's bundle, claimed: `(device, registration, claim)`.
pub(super) async fn claim_all(
    c: &impl GenericClient,
    user: &str,
) -> StoreResult<Vec<(u32, u32, Claimed)>> {
    let devices = rows(
        c,
        "SELECT d.device_id, d.registration_id FROM devices d
         JOIN device_keys k ON k.user_id = d.user_id AND k.device_id = d.device_id
         WHERE d.user_id = $1 ORDER BY d.device_id",
        &[&user],
    )
    .await?;
    let mut out = Vec::with_capacity(devices.len());
    for r in &devices {
        let (device, registration) = (col_u32(r, 0)?, col_u32(r, 1)?);
        if let Some(claimed) = claim(c, user, device).await? {
            out.push((device, registration, claimed));
        }
    }
    Ok(out)
}

/// One device's stock (and the account's identity).
pub(super) async fn prekey_status(
    c: &impl GenericClient,
    user: &str,
    device: u32,
) -> StoreResult<PreKeyStatus> {
    let d = i64::from(device);
    let n = count(c, ONE_TIME_LEFT, user, d).await?;
    let spk = opt(
        c,
        "SELECT k.spk_id, k.spk_uploaded_at, i.identity_key FROM identities i
         LEFT JOIN device_keys k ON k.user_id = i.user_id AND k.device_id = $2
         WHERE i.user_id = $1",
        &[&user, &d],
    )
    .await?;
    let (spk_id, spk_at, identity) = match spk {
        Some(r) => (
            col::<Option<i64>>(&r, 0)?.and_then(|v| u32::try_from(v).ok()),
            col::<Option<i64>>(&r, 1)?,
            col::<Option<String>>(&r, 2)?,
        ),
        None => (None, None, None),
    };
    let pq_n = count(c, PQ_LEFT, user, d).await?;
    let last_resort = opt(c, LAST_RESORT, &[&user, &d])
        .await?
        .map(|r| Ok::<_, StoreError>((col_u32(&r, 0)?, col::<i64>(&r, 3)?)))
        .transpose()?;
    Ok(PreKeyStatus {
        one_time_prekeys: n,
        signed_prekey_id: spk_id,
        signed_prekey_uploaded_at: spk_at,
        low: n < PREKEYS_LOW,
        identity_key: identity,
        pq_one_time_prekeys: pq_n,
        pq_last_resort_prekey_id: last_resort.map(|l| l.0),
        pq_last_resort_uploaded_at: last_resort.map(|l| l.1),
        pq_low: pq_n < PREKEYS_LOW,
    })
}
