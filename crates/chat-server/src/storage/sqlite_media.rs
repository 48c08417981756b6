//! The media jobs of [`super::sqlite::SqliteStorage`]: the records of
//! uploaded files (sizes, per-owner usage for quotas, purging). The files
//! themselves live in the media folder (`routes/media.rs`).

use rusqlite::{Connection, OptionalExtension, params};

use super::{MediaUsage, StoreResult};

/// Records an uploaded media file.
pub(super) fn insert(
    c: &Connection,
    id: &str,
    owner: &str,
    size: u64,
    now: i64,
) -> StoreResult<()> {
    c.execute(
        "INSERT INTO media (id, owner, size, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id, owner, size as i64, now],
    )?;
    Ok(())
}

/// A media file's size, if it exists.
pub(super) fn size(c: &Connection, id: &str) -> StoreResult<Option<u64>> {
    Ok(
        c.query_row("SELECT size FROM media WHERE id = ?1", [id], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .map(|s| s as u64),
    )
}

/// What `owner` uploaded at or after `since`.
pub(super) fn usage(c: &Connection, owner: &str, since: i64) -> StoreResult<MediaUsage> {
    Ok(c.query_row(
        "SELECT COALESCE(SUM(size), 0), COUNT(*), MIN(created_at) FROM media
         WHERE owner = ?1 AND created_at >= ?2",
        params![owner, since],
        |r| {
            Ok(MediaUsage {
                bytes: r.get::<_, i64>(0)?.max(0) as u64,
                files: r.get::<_, i64>(1)?.max(0) as u64,
                oldest: r.get(2)?,
            })
        },
    )?)
}

/// Forgets media uploaded before `cutoff`; their ids.
pub(super) fn purge(c: &Connection, cutoff: i64) -> StoreResult<Vec<String>> {
    let ids: Vec<String> = c
        .prepare("SELECT id FROM media WHERE created_at < ?1")?
        .query_map([cutoff], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    c.execute("DELETE FROM media WHERE created_at < ?1", [cutoff])?;
    Ok(ids)
}
