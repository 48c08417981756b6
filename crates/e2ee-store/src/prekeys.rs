//! Our signed, one-time and post-quantum prekeys: saved, rotated, handed to
//! X3DH / PQXDH, used up, and the ones a restore left stale on the server.

use e2ee_core::record::{OneTimePreKeyRecord, PqPreKeyRecord, SignedPreKeyRecord};
use e2ee_core::{OneTimePreKeyPair, PqPreKeyPair, Record, SignedPreKeyPair};
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

    pub(crate) fn prekeys_for(
        &self,
        spk: u32,
        opk: Option<u32>,
        pq: Option<u32>,
    ) -> Result<LoadedPreKeys> {
        Ok(LoadedPreKeys {
            signed: self.signed_prekey(spk)?,
            one_time: opk
                .map(|id| self.one_time_prekey(id))
                .transpose()?
                .flatten(),
            pq: pq.map(|id| self.pq_prekey(id)).transpose()?.flatten(),
        })
    }

    /// Adds post-quantum prekeys (not yet uploaded): one-time ones, or
    /// with `last_resort` the one the server hands out when those run out.
    pub fn add_pq_prekeys(
        &self,
        keys: &[PqPreKeyPair],
        last_resort: bool,
        now_ms: i64,
    ) -> Result<()> {
        let mut stmt = self.c().prepare_cached(
            "INSERT INTO pq_prekeys (key_id, record, last_resort, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for k in keys {
            stmt.execute(params![
                k.id(),
                k.to_record().to_bytes().as_slice(),
                last_resort,
                now_ms
            ])?;
        }
        Ok(())
    }

    /// The id to give the next PQ prekey (ids are never reused).
    pub fn next_pq_prekey_id(&self) -> Result<u32> {
        let max: Option<u32> =
            self.c()
                .query_row("SELECT max(key_id) FROM pq_prekeys", [], |r| r.get(0))?;
        max.map_or(Ok(1), |m| {
            m.checked_add(1)
                .ok_or(StoreError::Invalid("PQ prekey ids exhausted"))
        })
    }

    /// How many one-time PQ prekeys are still unused.
    pub fn unused_pq_one_time_prekeys(&self) -> Result<u32> {
        Ok(self.c().query_row(
            "SELECT count(*) FROM pq_prekeys WHERE used = 0 AND last_resort = 0",
            [],
            |r| r.get(0),
        )?)
    }

    /// The newest last-resort PQ prekey, with when it was made (ms).
    pub fn current_last_resort_pq_prekey(&self) -> Result<Option<(PqPreKeyPair, i64)>> {
        let row: Option<(Vec<u8>, i64)> = self
            .c()
            .query_row(
                "SELECT record, created_at FROM pq_prekeys WHERE last_resort = 1 AND record IS NOT NULL
                 ORDER BY created_at DESC, key_id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(b, at)| {
            let b = Zeroizing::new(b);
            Ok((
                PqPreKeyPair::from_record(&PqPreKeyRecord::from_bytes(&b)?)?,
                at,
            ))
        })
        .transpose()
    }

    /// PQ prekeys not uploaded yet, each with whether it is last-resort.
    pub fn unuploaded_pq_prekeys(&self) -> Result<Vec<(PqPreKeyPair, bool)>> {
        let mut stmt = self.c().prepare_cached(
            "SELECT record, last_resort FROM pq_prekeys
             WHERE used = 0 AND uploaded = 0 AND record IS NOT NULL ORDER BY key_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                Zeroizing::new(r.get::<_, Vec<u8>>(0)?),
                r.get::<_, bool>(1)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (b, last_resort) = row?;
            out.push((
                PqPreKeyPair::from_record(&PqPreKeyRecord::from_bytes(&b)?)?,
                last_resort,
            ));
        }
        Ok(out)
    }

    /// Marks PQ prekeys as uploaded to the server.
    pub fn mark_pq_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let mut stmt = self
            .c()
            .prepare_cached("UPDATE pq_prekeys SET uploaded = 1 WHERE key_id = ?1")?;
        for id in ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    /// A PQ prekey (unused one-time, or last-resort) by id.
    pub fn pq_prekey(&self, id: u32) -> Result<Option<PqPreKeyPair>> {
        let b = self.record(
            "SELECT record FROM pq_prekeys WHERE key_id = ?1 AND used = 0 AND record IS NOT NULL",
            [id],
        )?;
        b.map(|b| Ok(PqPreKeyPair::from_record(&PqPreKeyRecord::from_bytes(&b)?)?))
            .transpose()
    }

    /// After a session set up with PQ prekey `id` is stored: a one-time one
    /// is marked used and its seed erased; a last-resort one stays.
    pub fn consume_pq_prekey(&self, id: u32) -> Result<()> {
        self.c().execute(
            "UPDATE pq_prekeys SET used = 1, record = NULL WHERE key_id = ?1 AND last_resort = 0",
            [id],
        )?;
        Ok(())
    }

    /// Whether a restore left the server holding one-time PQ prekeys whose
    /// secrets are gone: the next upload must replace them all.
    pub fn pq_prekeys_stale_on_server(&self) -> Result<bool> {
        Ok(self
            .c()
            .query_row("SELECT EXISTS (SELECT 1 FROM pq_stale)", [], |r| r.get(0))?)
    }

    /// After an upload that replaced the server's one-time PQ prekeys.
    pub fn clear_pq_prekeys_stale(&self) -> Result<()> {
        self.c().execute("DELETE FROM pq_stale", [])?;
        Ok(())
    }

    /// Deletes last-resort PQ prekeys made before `before_ms`, never the
    /// newest (PreKey messages to a replaced one still open within the
    /// grace period the caller chose).
    pub fn prune_last_resort_pq_prekeys(&self, before_ms: i64) -> Result<usize> {
        Ok(self.c().execute(
            "DELETE FROM pq_prekeys WHERE last_resort = 1 AND created_at < ?1 AND key_id <>
             (SELECT key_id FROM pq_prekeys WHERE last_resort = 1
              ORDER BY created_at DESC, key_id DESC LIMIT 1)",
            [before_ms],
        )?)
    }
}
