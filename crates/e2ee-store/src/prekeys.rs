//! Our signed and one-time prekeys: saved, rotated, handed to X3DH, used up,
//! and the ones a restore left stale on the server.

use e2ee_core::record::{OneTimePreKeyRecord, SignedPreKeyRecord};
use e2ee_core::{OneTimePreKeyPair, Record, SignedPreKeyPair};
use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::store::{LoadedPreKeys, Tx};

impl Tx<'_> {
    /// Keeps a signed prekey (the newest is the current one).
    pub fn save_signed_prekey(&self, k: &SignedPreKeyPair) -> Result<()> {
        self.c().execute(
            "INSERT OR REPLACE INTO signed_prekeys (key_id, record, created_at) VALUES (?1, ?2, ?3)",
            params![k.id(), k.to_record().to_bytes().as_slice(), k.created_at_ms() as i64],
        )?;
        Ok(())
    }

    /// One-time prekey ids whose secrets a restore dropped and that may
    /// still be on the server: delete them there, then
    /// [`Tx::clear_stale_prekeys`].
    pub fn stale_prekeys(&self) -> Result<Vec<u32>> {
        let mut stmt = self
            .c()
            .prepare_cached("SELECT key_id FROM stale_prekeys ORDER BY key_id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets stale prekey ids once the server no longer has them.
    pub fn clear_stale_prekeys(&self, ids: &[u32]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("DELETE FROM stale_prekeys WHERE key_id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    /// A signed prekey by id.
    pub fn signed_prekey(&self, id: u32) -> Result<Option<SignedPreKeyPair>> {
        let b = self.record("SELECT record FROM signed_prekeys WHERE key_id = ?1", [id])?;
        b.map(|b| {
            Ok(SignedPreKeyPair::from_record(
                &SignedPreKeyRecord::from_bytes(&b)?,
            )?)
        })
        .transpose()
    }

    /// The newest signed prekey.
    pub fn current_signed_prekey(&self) -> Result<Option<SignedPreKeyPair>> {
        let id: Option<u32> = self
            .c()
            .query_row(
                "SELECT key_id FROM signed_prekeys ORDER BY created_at DESC, key_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| self.signed_prekey(id))
            .transpose()
            .map(Option::flatten)
    }

    /// Deletes signed prekeys created before `before_ms`, never the newest.
    pub fn prune_signed_prekeys(&self, before_ms: i64) -> Result<usize> {
        Ok(self.c().execute(
            "DELETE FROM signed_prekeys WHERE created_at < ?1 AND key_id <>
             (SELECT key_id FROM signed_prekeys ORDER BY created_at DESC, key_id DESC LIMIT 1)",
            [before_ms],
        )?)
    }

    /// Adds fresh one-time prekeys (not yet uploaded).
    pub fn add_one_time_prekeys(&self, keys: &[OneTimePreKeyPair]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("INSERT INTO one_time_prekeys (key_id, record) VALUES (?1, ?2)")?;
        for k in keys {
            stmt.execute(params![k.id(), k.to_record().to_bytes().as_slice()])?;
        }
        Ok(())
    }

    /// The id to give the next one-time prekey (ids are never reused).
    pub fn next_one_time_prekey_id(&self) -> Result<u32> {
        let max: Option<u32> =
            self.c()
                .query_row("SELECT max(key_id) FROM one_time_prekeys", [], |r| r.get(0))?;
        let next = max.map_or(1, |m| m.saturating_add(1));
        if next == e2ee_core::keys::NO_ONE_TIME_PREKEY {
            return Err(StoreError::Invalid("one-time prekey ids exhausted"));
        }
        Ok(next)
    }

    /// How many one-time prekeys are still unused.
    pub fn unused_one_time_prekeys(&self) -> Result<u32> {
        Ok(self.c().query_row(
            "SELECT count(*) FROM one_time_prekeys WHERE used = 0",
            [],
            |r| r.get(0),
        )?)
    }

    /// Unused one-time prekeys not uploaded yet.
    pub fn unuploaded_one_time_prekeys(&self) -> Result<Vec<OneTimePreKeyPair>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT record FROM one_time_prekeys WHERE used = 0 AND uploaded = 0 ORDER BY key_id",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0).map(Zeroizing::new))?;
        let mut out = Vec::new();
        for b in rows {
            out.push(OneTimePreKeyPair::from_record(
                &OneTimePreKeyRecord::from_bytes(&b?)?,
            ));
        }
        Ok(out)
    }

    /// Marks one-time prekeys as uploaded to the server.
    pub fn mark_one_time_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("UPDATE one_time_prekeys SET uploaded = 1 WHERE key_id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    fn one_time_prekey(&self, id: u32) -> Result<Option<OneTimePreKeyPair>> {
        let b = self.record(
            "SELECT record FROM one_time_prekeys WHERE key_id = ?1 AND used = 0",
            [id],
        )?;
        Ok(b.map(|b| OneTimePreKeyRecord::from_bytes(&b))
            .transpose()?
            .map(|r| OneTimePreKeyPair::from_record(&r)))
    }

    /// Marks a one-time prekey used and erases its secret.
    pub fn consume_one_time_prekey(&self, id: u32) -> Result<()> {
        self.c().execute(
            "UPDATE one_time_prekeys SET used = 1, record = NULL WHERE key_id = ?1",
            [id],
        )?;
        Ok(())
    }

    pub(crate) fn prekeys_for(&self, spk: u32, opk: Option<u32>) -> Result<LoadedPreKeys> {
        Ok(LoadedPreKeys {
            signed: self.signed_prekey(spk)?,
            one_time: opk
                .map(|id| self.one_time_prekey(id))
                .transpose()?
                .flatten(),
        })
    }
}
