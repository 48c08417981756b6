//! The account jobs of [`super::sqlite::SqliteStorage`]: creating a user
//! (with its first device) and looking users up.

use chat_proto::rest::User;
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite_devices as devices;
use super::{Account, StoreError, StoreResult};

pub(super) fn user_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        avatar_url: row.get(2)?,
    })
}

/// Creates a user and its device 1; `Conflict` when the name is taken.
pub(super) fn create(c: &Connection, a: &Account, registration_id: u32) -> StoreResult<()> {
    let r = c.execute(
        "INSERT INTO users (id, username, password_hash, avatar_url, created_at, canonical)
         VALUES (?1, ?2, ?3, ?4, strftime('%s','now') * 1000, ?5)",
        params![
            a.user.id,
            a.user.username,
            a.password_hash,
            a.user.avatar_url,
            chat_proto::validate::canonical_username(&a.user.username)
        ],
    );
    match r {
        Ok(_) => devices::add_first(c, &a.user.id, registration_id, crate::auth::now_ms()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict("username is taken"))
        }
        Err(e) => Err(e.into()),
    }
}

/// A user with its password hash, by name (canonical form first).
pub(super) fn by_name(c: &Connection, name: &str) -> StoreResult<Option<Account>> {
    let canonical = chat_proto::validate::canonical_username(name);
    Ok(c.query_row(
        "SELECT id, username, avatar_url, password_hash FROM users
         WHERE canonical = ?2 OR username = ?1
         ORDER BY canonical = ?2 DESC LIMIT 1",
        params![name, canonical],
        |r| {
            Ok(Account {
                user: user_from(r)?,
                password_hash: r.get(3)?,
            })
        },
    )
    .optional()?)
}

/// A user by id.
pub(super) fn get(c: &Connection, id: &str) -> StoreResult<Option<User>> {
    Ok(c.query_row(
        "SELECT id, username, avatar_url FROM users WHERE id = ?1",
        [id],
        user_from,
    )
    .optional()?)
}

/// Every user, or those with this name.
pub(super) fn list(c: &Connection, name: Option<&str>) -> StoreResult<Vec<User>> {
    let canonical = name.map(chat_proto::validate::canonical_username);
    let mut stmt = c.prepare_cached(
        "SELECT id, username, avatar_url FROM users
         WHERE ?1 IS NULL OR username = ?1 OR canonical = ?2 ORDER BY username",
    )?;
    Ok(stmt
        .query_map(params![name, canonical], user_from)?
        .collect::<rusqlite::Result<_>>()?)
}
