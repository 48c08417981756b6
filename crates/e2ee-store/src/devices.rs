//! Linked devices in the store (protocol version 2, DESIGN.md section 8):
//! our own device id, sessions per peer device, and sending a direct
//! message as one copy per device (the recipient's devices, and our own
//! other devices with a "sent" transcript naming the conversation).

use e2ee_core::{IdentityPublic, Payload, PayloadKind, PreKeyBundle, SyncTarget};
use rand_core::CryptoRngCore;
use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::ops::uuid_string;
use crate::peers::IdentityCheck;
use crate::store::{
    Conversation, DeviceCopy, DeviceTarget, OutboxEntry, Status, Store, Tx, now_ms,
};

pub(crate) fn copies_json(copies: &[DeviceCopy]) -> Result<Option<String>> {
    if copies.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(copies)
        .map(Some)
        .map_err(|_| StoreError::Invalid("outbox copies"))
}

pub(crate) fn copies_from_json(json: Option<&str>) -> Result<Vec<DeviceCopy>> {
    match json {
        None => Ok(Vec::new()),
        Some(j) => serde_json::from_str(j).map_err(|_| StoreError::Invalid("outbox copies")),
    }
}

impl Tx<'_> {
    /// This store's device id on the account (1 until linked otherwise).
    pub fn device_id(&self) -> Result<u32> {
        Ok(self
            .c()
            .query_row("SELECT device_id FROM account WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(1))
    }

    /// Records this store's device id.
    pub fn set_device_id(&self, device: u32) -> Result<()> {
        let n = self
            .c()
            .execute("UPDATE account SET device_id = ?1 WHERE id = 1", [device])?;
        if n == 0 {
            return Err(StoreError::Missing("account"));
        }
        Ok(())
    }

    /// The devices of `peer` we hold a session with, and the
    /// `registrationId` each was made for (0 when not known yet).
    pub fn session_devices(&self, peer: &str) -> Result<Vec<DeviceTarget>> {
        let mut st = self.c().prepare_cached(
            "SELECT device, COALESCE(registration_id, 0) FROM sessions WHERE peer = ?1
             ORDER BY device",
        )?;
        let rows = st.query_map([peer], |r| {
            Ok(DeviceTarget {
                user_id: peer.to_owned(),
                device_id: r.get(0)?,
                registration_id: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets the sessions with one device (it was removed, or linked
    /// again with another registration).
    pub fn drop_device_session(&self, peer: &str, device: u32) -> Result<()> {
        self.c().execute(
            "DELETE FROM sessions WHERE peer = ?1 AND device = ?2",
            params![peer, device],
        )?;
        Ok(())
    }

    /// A device of `peer` (or of our own account) is gone: removed, or its
    /// account's keys replaced (DESIGN.md section 10, "a device that
    /// leaves stops reading"). Its session is dropped, copies and group
    /// messages from it are refused from now on (device ids are never
    /// reused), and our sending chain in every group we share with `peer`
    /// (every group, for one of our own devices) is replaced, so what we
    /// send next is on a chain the gone device never had. Returns how many
    /// groups' chains were replaced.
    pub fn device_gone(&self, peer: &str, device: u32) -> Result<usize> {
        self.drop_device_session(peer, device)?;
        if self.before_held() {
            return Ok(0);
        }
        self.c().execute(
            "INSERT OR IGNORE INTO removed_devices (user_id, device_id, removed_at)
             VALUES (?1, ?2, ?3)",
            params![peer, device, now_ms()],
        )?;
        self.rotate_groups_shared_with(peer)
    }

    /// Whether we learnt that this device was removed.
    pub fn device_removed(&self, peer: &str, device: u32) -> Result<bool> {
        if self.before_held() {
            return Ok(false);
        }
        Ok(self
            .c()
            .prepare_cached("SELECT 1 FROM removed_devices WHERE user_id = ?1 AND device_id = ?2")?
            .exists(params![peer, device])?)
    }

    /// Replaces our sending chain in every group `peer` is a member of
    /// (every group we are in, when `peer` is our own account).
    pub(crate) fn rotate_groups_shared_with(&self, peer: &str) -> Result<usize> {
        let own = self.account()?.is_some_and(|a| a.user_id == peer);
        let groups: Vec<String> = if own {
            self.c()
                .prepare("SELECT group_id FROM sender_keys_out")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        } else {
            self.c()
                .prepare(
                    "SELECT o.group_id FROM sender_keys_out o
                     JOIN group_members m ON m.group_id = o.group_id AND m.user_id = ?1",
                )?
                .query_map([peer], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        for g in &groups {
            self.rotate_sender_key(g)?;
        }
        Ok(groups.len())
    }

    /// Drops every session with `peer` that is not under `identity` (the
    /// key pinned for them changed): nothing is encrypted on them again.
    pub(crate) fn drop_sessions_not_under(
        &self,
        peer: &str,
        identity: &IdentityPublic,
    ) -> Result<()> {
        if self.before_device_sessions() {
            return Ok(());
        }
        for t in self.session_devices(peer)? {
            if self.session_identity(peer, t.device_id)?.as_ref() != Some(identity) {
                self.drop_device_session(peer, t.device_id)?;
            }
        }
        Ok(())
    }

    /// The identity key of the current session with one device, if any.
    pub fn session_identity(&self, peer: &str, device: u32) -> Result<Option<IdentityPublic>> {
        Ok(self
            .device_sessions(peer, device)?
            .current()
            .map(|s| *s.remote_identity()))
    }

    /// Records the `registrationId` of a device whose session it started.
    pub fn set_session_registration(&self, peer: &str, device: u32, reg: u32) -> Result<()> {
        self.c().execute(
            "UPDATE sessions SET registration_id = ?3 WHERE peer = ?1 AND device = ?2",
            params![peer, device, reg],
        )?;
        Ok(())
    }

    /// The payload of an outbox entry, kept to encrypt it again.
    fn outbox_payload(&self, message_id: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.record(
            "SELECT payload FROM outbox WHERE message_id = ?1 AND payload IS NOT NULL",
            [message_id],
        )
    }
}

/// Encrypts `payload` for every target: a copy for one of our own devices
/// carries the conversation (`sync`), unless it already names one.
fn encrypt_copies(
    tx: &Tx<'_>,
    me: &str,
    to: &str,
    targets: &[DeviceTarget],
    payload: &Payload,
) -> Result<Vec<DeviceCopy>> {
    let plain = payload.to_padded()?;
    let mut mine = payload.clone();
    if mine.sync.is_none() && to != me {
        mine.sync = Some(SyncTarget::Direct(to.to_owned()));
    }
    let own = mine.to_padded()?;
    let mut copies = Vec::with_capacity(targets.len());
    // Our own key only when a copy goes to one of our devices (it is
    // decoded from the identity record).
    let mut ours: Option<IdentityPublic> = None;
    let mut pinned: Option<(&str, IdentityPublic)> = None;
    for t in targets {
        let mut sessions = tx.device_sessions(&t.user_id, t.device_id)?;
        // The gate of DESIGN.md section 10, in the transaction that
        // encrypts: every copy goes to a session under the user's pinned,
        // trusted key (our own key for our devices), whatever path asked
        // for it (a first send, a device-set conflict, a stale device, a
        // held message, a sender-key distribution).
        let expected = if t.user_id == me {
            match ours {
                Some(k) => k,
                None => *ours.insert(tx.require_identity()?.public()),
            }
        } else {
            match &pinned {
                Some((u, k)) if *u == t.user_id => *k,
                _ => {
                    let p = tx
                        .peer(&t.user_id)?
                        .filter(|p| p.trusted)
                        .ok_or_else(|| StoreError::Untrusted(t.user_id.clone()))?;
                    pinned = Some((&t.user_id, p.identity));
                    p.identity
                }
            }
        };
        if let Some(s) = sessions.current()
            && *s.remote_identity() != expected
        {
            return Err(StoreError::Untrusted(t.user_id.clone()));
        }
        let padded = if t.user_id == me { &own } else { &plain };
        let envelope = sessions.encrypt(padded)?;
        tx.save_device_sessions(&t.user_id, t.device_id, None, &sessions)?;
        copies.push(DeviceCopy {
            user_id: t.user_id.clone(),
            device_id: t.device_id,
            registration_id: t.registration_id,
            content: envelope.to_text(),
        });
    }
    Ok(copies)
}

impl Store {
    /// Verifies a bundle for one device and starts a session with it. A
    /// bundle for one of our own devices must carry our identity: anything
    /// else is refused (a server cannot slip in a device of its own).
    pub fn start_device_session(
        &mut self,
        rng: &mut impl CryptoRngCore,
        peer: &str,
        device: u32,
        registration: u32,
        bundle: &PreKeyBundle,
    ) -> Result<IdentityCheck> {
        // `initiate` below verifies the bundle before any DH or write.
        self.write(|tx| {
            let identity = tx.require_identity()?;
            let own = tx.account()?.is_some_and(|a| a.user_id == peer);
            if own && bundle.identity != identity.public() {
                return Err(StoreError::Invalid(
                    "a bundle for one of our devices under another identity",
                ));
            }
            // Identity is pinned per user, never per device (DESIGN.md
            // section 10): a bundle under another key than the pinned one is
            // the identity-change path, whichever device it is for. The
            // change is recorded below (unverified, trusted only as the
            // policy says, never after a verified key), every session under
            // the old key is dropped, and `encrypt_copies` encrypts nothing
            // to a key that is not trusted.
            let mut sessions = tx.device_sessions(peer, device)?;
            sessions.initiate(rng, &identity, bundle)?;
            tx.save_device_sessions(peer, device, Some(registration), &sessions)?;
            if own {
                Ok(IdentityCheck::Same)
            } else {
                tx.remember_identity(peer, &bundle.identity)
            }
        })
    }

    /// Encrypts a direct payload once per device in `targets` (the
    /// recipient's devices and our other ones) and, in one transaction,
    /// saves the sessions, stores the message (unless it is a control
    /// payload or a sync message to ourselves) and adds the frame to the
    /// outbox with its payload, so [`Store::reencrypt`] can redo it for a
    /// changed device set under the same id.
    pub fn send_to_devices(
        &mut self,
        to: &str,
        targets: &[DeviceTarget],
        payload: &Payload,
    ) -> Result<OutboxEntry> {
        let me = self
            .read(|tx| tx.account())?
            .ok_or(StoreError::Missing("account"))?;
        let entry = self.write(|tx| send_in(tx, &me.user_id, to, targets, payload))?;
        self.scrub_after(payload)?;
        Ok(entry)
    }

    /// [`Store::send_to_devices`] for several sends in one transaction (one
    /// commit, one fsync), in order, each in a savepoint of its own: a send
    /// that fails (no session, an untrusted key…) leaves no trace and does
    /// not undo the others. The outer `Err` means nothing was stored.
    pub fn send_to_devices_batch(
        &mut self,
        sends: &[DirectSend],
    ) -> Result<Vec<Result<OutboxEntry>>> {
        let me = self
            .read(|tx| tx.account())?
            .ok_or(StoreError::Missing("account"))?;
        let out = self.write_each(sends, |tx, send| {
            send_in(tx, &me.user_id, &send.to, &send.targets, &send.payload)
        })?;
        if sends
            .iter()
            .any(|s| matches!(s.payload.kind, PayloadKind::Edit | PayloadKind::Delete))
        {
            self.scrub()?;
        }
        Ok(out)
    }

    /// Encrypts an outbox entry again for `targets` (the server refused its
    /// device set), keeping its id; `None` when it is no longer in the
    /// outbox or has no payload kept (a version-1 entry).
    pub fn reencrypt(
        &mut self,
        message_id: &str,
        targets: &[DeviceTarget],
    ) -> Result<Option<OutboxEntry>> {
        let me = self
            .read(|tx| tx.account())?
            .ok_or(StoreError::Missing("account"))?;
        self.write(|tx| {
            let Some(bytes) = tx.outbox_payload(message_id)? else {
                return Ok(None);
            };
            let Some(mut entry) = tx.outbox_entry(message_id)? else {
                return Ok(None);
            };
            let payload = Payload::decode(&bytes)?;
            let to = entry
                .recipient
                .clone()
                .ok_or(StoreError::Invalid("no recipient"))?;
            entry.copies = encrypt_copies(tx, &me.user_id, &to, targets, &payload)?;
            tx.c().execute(
                "UPDATE outbox SET copies = ?2 WHERE message_id = ?1",
                params![message_id, copies_json(&entry.copies)?],
            )?;
            Ok(Some(entry))
        })
    }
}

/// What a copy from one of our own devices says, once decrypted: stored
/// as our own message in its conversation, or read marks applied.
/// Encrypts for every target and enqueues, inside the caller's transaction.
fn send_in(
    tx: &Tx<'_>,
    me: &str,
    to: &str,
    targets: &[DeviceTarget],
    payload: &Payload,
) -> Result<OutboxEntry> {
    let encoded = payload.encode()?;
    let copies = encrypt_copies(tx, me, to, targets, payload)?;
    let entry = crate::ops::enqueue_direct(tx, me, to, payload, String::new(), copies)?;
    tx.c().execute(
        "UPDATE outbox SET payload = ?2 WHERE message_id = ?1",
        params![entry.message_id, encoded.as_slice()],
    )?;
    Ok(entry)
}

/// One send of [`Store::send_to_devices_batch`].
#[derive(Clone)]
pub struct DirectSend {
    /// The peer.
    pub to: String,
    /// The devices to encrypt for (theirs and our other ones).
    pub targets: Vec<DeviceTarget>,
    /// What to send.
    pub payload: Payload,
}

impl std::fmt::Debug for DirectSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the payload: it is the plaintext.
        f.debug_struct("DirectSend")
            .field("to", &self.to)
            .field("devices", &self.targets.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn receive_own(
    tx: &Tx<'_>,
    me: &str,
    payload: &Payload,
    server_at_ms: i64,
) -> Result<OwnCopy> {
    if payload.kind == PayloadKind::ContactSync {
        return Ok(OwnCopy::Contacts(crate::peers::apply_contact_sync(
            tx,
            me,
            &payload.body,
        )?));
    }
    if payload.kind == PayloadKind::ReadSync {
        if !payload.body.len().is_multiple_of(16) {
            return Err(StoreError::Invalid("read sync body"));
        }
        let mut marked = 0;
        let mut st = tx.c().prepare_cached(
            "UPDATE messages SET read_at = ?2, status = 3, read_sent = 1,
                 expires_at = ?2 + expire_secs * 1000
             WHERE id = ?1 AND outgoing = 0 AND read_at IS NULL",
        )?;
        for id in payload.body.chunks_exact(16) {
            let mut b = [0u8; 16];
            b.copy_from_slice(id);
            marked += st.execute(params![uuid_string(&b), now_ms()])?;
        }
        return Ok(OwnCopy::Read(marked));
    }
    let conversation = match &payload.sync {
        Some(SyncTarget::Direct(u)) => Conversation::Direct(u.clone()),
        Some(SyncTarget::Group(g)) => Conversation::Group(uuid_string(g)),
        None => Conversation::Direct(me.to_owned()),
    };
    let ctx = crate::features::Context {
        conversation,
        sender: me,
        outgoing: true,
        recipients: 1,
        status: Status::Sent,
        server_at_ms: Some(server_at_ms),
    };
    Ok(OwnCopy::Filed(crate::features::file(tx, payload, &ctx)?))
}

/// See [`receive_own`].
pub(crate) enum OwnCopy {
    /// A message sent from another of our devices, now stored, or a
    /// reaction, edit, delete, delete-for-me or timer it sent, applied.
    Filed(crate::features::Filed),
    /// Read on another device: how many messages that marked.
    Read(usize),
    /// Another device's pinned keys and decisions, applied.
    Contacts(crate::ContactSyncOutcome),
}

/// Read marks for another device: the ids as a `ReadSync` body.
pub fn read_sync_body(ids: &[String]) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(ids.len() * 16);
    for id in ids {
        let u = uuid::Uuid::parse_str(id).map_err(|_| StoreError::Invalid("not a UUID"))?;
        body.extend_from_slice(u.as_bytes());
    }
    Ok(body)
}
