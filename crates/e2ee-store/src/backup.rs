//! Encrypted backup (export) and restore into a fresh store.
//!
//! A backup is one file: `"E2EEBKP1"`, the Argon2id parameters (3 × u32 BE),
//! a 16-byte salt, a 24-byte nonce, then XSalsa20-Poly1305 over a plain
//! SQLite image of the whole store. The image is made in memory with
//! `sqlcipher_export` into an attached in-memory database and never
//! touches the disk unencrypted; restore reverses it into a new SQLCipher
//! file under a new (or the same) passphrase.

use std::path::Path;

use rand_core::{OsRng, RngCore};
use xsalsa20poly1305::aead::{Aead, KeyInit};
use xsalsa20poly1305::{Nonce, XSalsa20Poly1305};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::key::{self, KdfParams, Key, Passphrase};
use crate::schema;
use crate::store::{OpenOptions, Store, creating_path, quiet};

const MAGIC: &[u8; 8] = b"E2EEBKP1";
const HEADER_LEN: usize = 8 + 12 + 16 + 24;

impl Store {
    /// Makes a restored store safe to send from. The backup holds the
    /// ratchet state of the moment it was made; the original device has
    /// since sent with those chain keys, so sending from it again would put
    /// two plaintexts under one key and nonce. In one transaction: every
    /// 1:1 session goes (the next send starts a new one with X3DH, from the
    /// same identity, so peers see no identity change); our own sender-key
    /// chains go, with the record of who has them (the next group send
    /// starts a new chain and distributes it); the signed prekey is replaced
    /// by a fresh one with the next id; every one-time prekey secret is
    /// dropped (ids stay reserved) and the ones that may still be on the
    /// server are listed in `stale_prekeys` for the client to delete there;
    /// every PQ prekey secret goes too (`pq_stale` says the server's
    /// one-time ones must be replaced at the next upload; a fresh
    /// last-resort one is made then);
    /// the outbox (ciphertext of the old sessions) is dropped and those
    /// messages marked failed. Identity, contacts, verification, history,
    /// groups and the peers' sender-key chains (receive-only: nothing is
    /// ever encrypted with them) stay.
    pub(crate) fn forget_ratchet_state(&mut self) -> Result<()> {
        self.write(|tx| {
            let identity = tx.require_identity()?;
            let next_spk = tx
                .c()
                .query_row(
                    "SELECT coalesce(max(key_id), 0) FROM signed_prekeys",
                    [],
                    |r| r.get::<_, u32>(0),
                )?
                .wrapping_add(1)
                .max(1);
            tx.c().execute_batch(
                "DELETE FROM sessions;
                 DELETE FROM sender_keys_out;
                 DELETE FROM sender_keys_shared;
                 DELETE FROM signed_prekeys;
                 INSERT OR IGNORE INTO stale_prekeys (key_id)
                     SELECT key_id FROM one_time_prekeys WHERE used = 0 AND uploaded = 1;
                 UPDATE one_time_prekeys SET record = NULL, used = 1;
                 UPDATE pq_prekeys SET record = NULL, used = 1;
                 INSERT OR IGNORE INTO pq_stale (id) VALUES (1);
                 UPDATE messages SET status = 4
                     WHERE outgoing = 1 AND status = 0
                     AND id IN (SELECT message_id FROM outbox);
                 DELETE FROM outbox;",
            )?;
            let now = crate::store::now_ms();
            let spk = e2ee_core::SignedPreKeyPair::generate(
                &mut OsRng,
                &identity,
                next_spk,
                u64::try_from(now).unwrap_or(0),
            );
            tx.save_signed_prekey(&spk)
        })
    }

    /// Writes an encrypted backup of the whole store to `path` (mode 0600),
    /// under `passphrase` with Argon2id cost `kdf`.
    pub fn export_backup(
        &mut self,
        path: &Path,
        passphrase: &Passphrase,
        kdf: KdfParams,
    ) -> Result<()> {
        let image = {
            self.conn
                .execute_batch("ATTACH DATABASE ':memory:' AS backup_image KEY '';")?;
            let result = (|| -> Result<Zeroizing<Vec<u8>>> {
                self.conn
                    .query_row("SELECT sqlcipher_export('backup_image')", [], |_| Ok(()))?;
                let version = self.schema_version()?;
                self.conn
                    .pragma_update(Some("backup_image"), "user_version", version)?;
                let data = self.conn.serialize("backup_image")?;
                Ok(Zeroizing::new(data.to_vec()))
            })();
            self.conn.execute_batch("DETACH DATABASE backup_image;")?;
            result?
        };
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let k = Key::derive(passphrase, &salt, kdf)?;
        let cipher = XSalsa20Poly1305::new(k.0.as_ref().into());
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), image.as_slice())
            .map_err(|_| StoreError::Invalid("backup too large to encrypt"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&kdf.to_bytes());
        out.extend_from_slice(&salt);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        key::write_private_atomic(path, &out)
    }

    /// Restores a backup into a new store at `store_path` (which must not
    /// exist), keyed by `new_passphrase`. A wrong backup passphrase is
    /// [`StoreError::WrongPassphrase`]; a damaged backup is
    /// [`StoreError::Corrupt`]; either leaves nothing behind.
    pub fn restore_backup(
        backup: &Path,
        backup_passphrase: &Passphrase,
        store_path: &Path,
        new_passphrase: &Passphrase,
        options: OpenOptions,
    ) -> Result<Store> {
        if store_path.exists() {
            return Err(StoreError::Invalid("restore target already exists"));
        }
        let bytes = std::fs::read(backup)?;
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(StoreError::Corrupt("not an e2ee-store backup".into()));
        }
        let mut p = [0u8; 12];
        p.copy_from_slice(&bytes[8..20]);
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&bytes[20..36]);
        let nonce = Nonce::clone_from_slice(&bytes[36..60]);
        let k = Key::derive(backup_passphrase, &salt, KdfParams::from_bytes(&p))?;
        let cipher = XSalsa20Poly1305::new(k.0.as_ref().into());
        // The tag covers the whole image: a wrong passphrase and a damaged
        // file look the same here, so both are reported as the passphrase
        // when the header is intact.
        let image = Zeroizing::new(
            cipher
                .decrypt(&nonce, &bytes[HEADER_LEN..])
                .map_err(|_| StoreError::WrongPassphrase)?,
        );

        let result = (|| -> Result<Store> {
            // The image goes into a plain in-memory database; the new store
            // is attached to it with its key and filled by sqlcipher_export.
            let mut plain = rusqlite::Connection::open_in_memory()?;
            quiet(&plain);
            plain.deserialize_read_exact("main", image.as_slice(), image.len(), true)?;
            let version: i64 = plain.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version > schema::SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    found: version,
                    supported: schema::SCHEMA_VERSION,
                });
            }
            let tmp = creating_path(store_path);
            let _ = std::fs::remove_file(&tmp);
            drop(key::private_file(&tmp)?);
            let new_key = key::create(store_path, new_passphrase, options.kdf)?;
            let path = tmp
                .to_str()
                .ok_or(StoreError::Invalid("store path is not UTF-8"))?
                .replace('\'', "''");
            plain.execute_batch(
                &new_key.sql_with_key(&format!("ATTACH DATABASE '{path}' AS restored KEY "), ";"),
            )?;
            plain.query_row("SELECT sqlcipher_export('restored')", [], |_| Ok(()))?;
            plain.pragma_update(Some("restored"), "user_version", version)?;
            plain.execute_batch("DETACH DATABASE restored;")?;
            drop(plain);
            std::fs::rename(&tmp, store_path)?;
            let mut store = Store::open(
                store_path,
                new_passphrase,
                OpenOptions {
                    create: false,
                    ..options
                },
            )?;
            store.forget_ratchet_state()?;
            Ok(store)
        })();
        if result.is_err() {
            key::remove_with_suffixes(store_path, &["", ".salt", ".new", ".new-wal", ".new-shm"]);
        }
        result
    }
}
