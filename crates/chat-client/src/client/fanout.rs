//! Direct messages to every device (protocol version 2, DESIGN.md section
//! 8): which devices a message goes to, starting sessions with devices we
//! have none with, and answering the server's device-set refusal by fixing
//! the sessions and sending again under the same id.

use std::sync::Arc;

use chat_proto::devices::DeviceBundle;
use chat_proto::rest;
use chat_proto::ws::DeviceMismatch;
use e2ee_core::{Payload, PayloadKind};
use e2ee_store::{DeviceTarget, OutboxEntry, StoreError};
use rand_core::OsRng;
use zeroize::Zeroizing;

use super::Inner;
use crate::Result;
use crate::convert;
use crate::error::ClientError;

/// Refusals of one message's device set answered before it fails for good
/// (each answer fixes every device the server named, so a second is rare:
/// a device linked between the two sends).
pub(crate) const MISMATCH_RETRIES: u32 = 4;

impl Inner {
    /// Starts a session with one device from its bundle.
    async fn start_device(&self, user: &str, b: DeviceBundle) -> Result<()> {
        let bundle = convert::bundle(&b.bundle)?;
        let (u, device) = (user.to_owned(), b.device_id);
        let own = self.me()?.user_id == user;
        let check = self
            .db(move |s| {
                s.start_device_session(&mut OsRng, &u, b.device_id, b.registration_id, &bundle)
            })
            .await
            .map_err(|e| match e {
                // A "device of ours" under another identity: the server
                // added a device of its own (CLI exit 9, like any bundle
                // that does not verify).
                ClientError::Store(StoreError::Invalid(why)) if own => {
                    ClientError::BadKeys(format!(
                        "the server lists our device {device} with keys that are not ours: {why}"
                    ))
                }
                e => e,
            })?;
        tracing::debug!(user, device = b.device_id, "device session started");
        self.identity_event(user, check);
        Ok(())
    }

    /// Starts sessions with every device of `user` that has keys.
    async fn start_all_devices(&self, user: &str) -> Result<()> {
        let wire = self
            .rest
            .device_bundles(user)
            .await
            .map_err(|e| match e.code() {
                Some(rest::ErrorCode::NotFound) => ClientError::UnknownUser(user.to_owned()),
                _ => e.into(),
            })?;
        for b in wire.bundles {
            self.start_device(user, b).await?;
        }
        Ok(())
    }

    /// The devices a direct message to `to` goes to: every device of `to`
    /// we hold a session with (all of its devices' bundles are fetched when
    /// we hold none) and our own other devices. The server corrects the set
    /// when it is out of date ([`Inner::fix_devices`]).
    pub(crate) async fn device_targets(&self, to: &str) -> Result<Vec<DeviceTarget>> {
        let me = self.me()?.user_id;
        let read = |to: String, me: String| {
            move |s: &mut e2ee_store::Store| {
                s.read(|tx| {
                    Ok((
                        tx.session_devices(&to)?,
                        tx.session_devices(&me)?,
                        tx.device_id()?,
                    ))
                })
            }
        };
        let (mut peer, mut mine, device) = self.db_read(read(to.to_owned(), me.clone())).await?;
        if peer.is_empty() && to != me {
            let _guard = self.session_lock.lock().await;
            (peer, mine, _) = self.db(read(to.to_owned(), me.clone())).await?;
            if peer.is_empty() {
                self.start_all_devices(to).await?;
                (peer, mine, _) = self.db(read(to.to_owned(), me.clone())).await?;
            }
        }
        let mut targets = if to == me { Vec::new() } else { peer };
        targets.extend(mine.into_iter().filter(|t| t.device_id != device));
        Ok(targets)
    }

    /// Makes sure some session with `peer` exists (any device).
    pub(crate) async fn ensure_session(&self, peer: &str) -> Result<()> {
        self.device_targets(peer).await.map(drop)
    }

    /// The server refused message `id` for its device set: drop sessions
    /// with devices that are gone, start sessions with new ones, learn the
    /// registration ids of sessions peers started, then encrypt the message
    /// again for the corrected set and send it under the same id. Gives up
    /// (the message fails) after [`MISMATCH_RETRIES`].
    pub(crate) async fn fix_devices(self: &Arc<Self>, id: String, m: DeviceMismatch) {
        let tries = {
            let Ok(mut t) = self.mismatches.lock() else {
                return;
            };
            let n = t.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if tries > MISMATCH_RETRIES {
            self.forget_mismatches(&id);
            self.fail_send(
                &id,
                rest::ErrorCode::Conflict,
                "the recipient's devices kept changing".into(),
            )
            .await;
            return;
        }
        if let Err(e) = self.apply_mismatch(&m).await {
            tracing::warn!(%id, error = %e, "could not update device sessions");
            self.fail_send(&id, rest::ErrorCode::Conflict, e.to_string())
                .await;
            return;
        }
        let mid = id.clone();
        let entry = self.db(move |s| s.read(|tx| tx.outbox_entry(&mid))).await;
        let Some(to) = entry.ok().flatten().and_then(|e| e.recipient) else {
            return;
        };
        let entry = self.encrypt_again(&id, &to).await;
        match entry {
            Ok(Some(entry)) => self.transmit(&entry).await,
            Ok(None) => {}
            Err(ClientError::Store(StoreError::Untrusted(user))) => {
                self.forget_mismatches(&id);
                self.hold(&id, &user).await;
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "could not encrypt again");
                self.fail_send(&id, rest::ErrorCode::Conflict, e.to_string())
                    .await;
            }
        }
    }

    /// Outbox entry `id` encrypted again, under the same id, for the
    /// devices `to` (and we) have now; `None` when it left the outbox.
    async fn encrypt_again(&self, id: &str, to: &str) -> Result<Option<OutboxEntry>> {
        let targets = self.device_targets(to).await?;
        let id = id.to_owned();
        self.db(move |s| s.reencrypt(&id, &targets)).await
    }

    /// Holds outbox entry `id` instead of sending it: `user`'s key is not
    /// trusted (DESIGN.md section 10). It goes out again from
    /// [`Inner::release_held`].
    pub(crate) async fn hold(&self, id: &str, user: &str) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.remove(id);
        }
        let (mid, u) = (id.to_owned(), user.to_owned());
        match self
            .db(move |s| s.write(|tx| tx.hold_outbox(&mid, &u)))
            .await
        {
            Ok(true) => {
                tracing::warn!(%id, user, "message held: the peer's key is not trusted");
                self.emit(crate::Event::SendHeld {
                    message_id: id.to_owned(),
                    user_id: user.to_owned(),
                });
            }
            Ok(false) => {}
            Err(e) => tracing::error!(%id, error = %e, "could not hold a message"),
        }
    }

    /// Sends the messages held for `user` (the user now trusts their key):
    /// each is encrypted again for the devices `user` has now, or held
    /// again if the key is still not the trusted one.
    pub(crate) async fn release_held(&self, user: &str) -> Result<()> {
        let u = user.to_owned();
        let ids = self.db(move |s| s.write(|tx| tx.release_held(&u))).await?;
        for id in ids {
            match self.encrypt_again(&id, user).await {
                Ok(Some(entry)) => self.transmit(&entry).await,
                Ok(None) => {}
                Err(ClientError::Store(StoreError::Untrusted(who))) => self.hold(&id, &who).await,
                Err(e) => {
                    // Held again: a later trust or verify tries once more.
                    self.hold(&id, user).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Forgets how often a message's device set was refused (it was
    /// acknowledged, or failed).
    pub(crate) fn forget_mismatches(&self, id: &str) {
        if let Ok(mut t) = self.mismatches.lock() {
            t.remove(id);
        }
    }

    async fn apply_mismatch(&self, m: &DeviceMismatch) -> Result<()> {
        let _guard = self.session_lock.lock().await;
        for d in &m.extra {
            // Gone (device ids are never reused): it speaks no more and
            // reads nothing we send from now on (DESIGN.md section 10).
            let (u, dev) = (d.user_id.clone(), d.device_id);
            self.db(move |s| s.write(|tx| tx.device_gone(&u, dev)))
                .await?;
        }
        for d in &m.stale {
            let (u, dev) = (d.user_id.clone(), d.device_id);
            let known = self
                .db(move |s| s.read(|tx| tx.session_devices(&u)))
                .await?
                .into_iter()
                .find(|t| t.device_id == dev)
                .map(|t| t.registration_id);
            match (known, d.registration_id) {
                // Already brought up to date (the same frame refused twice:
                // sent, and sent again on reconnecting): nothing to fix, and
                // dropping the session now would pull it from under the
                // other answer's encryption.
                (Some(k), Some(reg)) if k == reg && k != 0 => {}
                // A registration id we never had (the peer's device started
                // the session, or it is device 1, whose id is 0 until its
                // account replaces its keys): the same device id, but
                // maybe not the same keys. Its bundle says: under the
                // session's key, record the id and keep the session;
                // under another, the identity-change path.
                (Some(0), Some(reg)) => {
                    let wire = self.rest.device_bundle(&d.user_id, dev).await?;
                    let Some(b) = wire.bundles.into_iter().find(|b| b.device_id == dev) else {
                        continue;
                    };
                    let offered = convert::bundle(&b.bundle)?.identity;
                    let u = d.user_id.clone();
                    let had = self
                        .db(move |s| s.read(|tx| tx.session_identity(&u, dev)))
                        .await?;
                    let u = d.user_id.clone();
                    if had == Some(offered) {
                        self.db(move |s| s.write(|tx| tx.set_session_registration(&u, dev, reg)))
                            .await?;
                    } else {
                        self.db(move |s| s.write(|tx| tx.drop_device_session(&u, dev)))
                            .await?;
                        self.start_device(&d.user_id, b).await?;
                    }
                }
                _ => {
                    let u = d.user_id.clone();
                    self.db(move |s| s.write(|tx| tx.drop_device_session(&u, dev)))
                        .await?;
                    self.start_one(&d.user_id, dev).await?;
                }
            }
        }
        for d in &m.missing {
            self.start_one(&d.user_id, d.device_id).await?;
            // A device new to us has none of our group sender keys: the
            // next group send hands them out again to that member.
            let u = d.user_id.clone();
            self.db(move |s| s.write(|tx| tx.forget_sender_key_shares(&u)))
                .await?;
        }
        Ok(())
    }

    async fn start_one(&self, user: &str, device: u32) -> Result<()> {
        let wire = self.rest.device_bundle(user, device).await?;
        for b in wire.bundles.into_iter().filter(|b| b.device_id == device) {
            self.start_device(user, b).await?;
        }
        Ok(())
    }

    /// Starts sessions with our own other devices we hold none with, and
    /// drops sessions with devices no longer listed (after connecting, and
    /// when a device is linked or removed): sent transcripts and read marks
    /// then reach them from the first message, without a refusal first.
    pub(crate) async fn discover_own_devices(&self) -> Result<()> {
        let me = self.me()?.user_id;
        let list = self.rest.devices().await?;
        let m = me.clone();
        let known = self
            .db(move |s| s.read(|tx| tx.session_devices(&m)))
            .await?;
        for d in &list.devices {
            if d.device_id == list.current || known.iter().any(|k| k.device_id == d.device_id) {
                continue;
            }
            // A device that has not uploaded keys yet has no bundle.
            if let Err(e) = self.start_one(&me, d.device_id).await {
                tracing::debug!(device = d.device_id, error = %e, "own device not reachable yet");
            }
        }
        for k in known {
            if !list.devices.iter().any(|d| d.device_id == k.device_id) {
                // One of our devices was removed: it held our chains in
                // every group, so each is replaced.
                let (m, dev) = (me.clone(), k.device_id);
                self.db(move |s| s.write(|tx| tx.device_gone(&m, dev)))
                    .await?;
            }
        }
        Ok(())
    }

    /// Tells our other devices that these messages were read here (a
    /// `ReadSync` payload, 100 ids per message).
    pub(crate) async fn sync_read(&self, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(100) {
            self.sync_own(PayloadKind::ReadSync, e2ee_store::read_sync_body(chunk)?)
                .await?;
        }
        Ok(())
    }

    /// Sends our other devices the keys we pinned for our contacts and
    /// what the user decided about them (DESIGN.md section 10: a new device
    /// inherits them), in `ContactSync` payloads.
    pub(crate) async fn send_contact_sync(&self) -> Result<()> {
        let bodies = self
            .db_read(|s| s.read(|tx| tx.contact_sync_bodies()))
            .await?;
        for body in bodies {
            self.sync_own(PayloadKind::ContactSync, body).await?;
        }
        Ok(())
    }

    /// Asks our other devices for their contacts' keys and decisions (an
    /// empty `ContactSync`), right after this device was linked.
    pub(crate) async fn request_contact_sync(&self) -> Result<()> {
        self.send_own(PayloadKind::ContactSync, Vec::new()).await
    }

    /// Sends a payload only our own other devices read (read marks, a
    /// delete for me); nothing when we have no other device.
    pub(crate) async fn sync_own(&self, kind: PayloadKind, body: Vec<u8>) -> Result<()> {
        if body.is_empty() {
            return Ok(());
        }
        self.send_own(kind, body).await
    }

    /// Sends `body` as a payload of `kind` to our own other devices only;
    /// nothing when we have none.
    async fn send_own(&self, kind: PayloadKind, body: Vec<u8>) -> Result<()> {
        let me = self.me()?.user_id;
        if self.device_targets(&me).await?.is_empty() {
            return Ok(());
        }
        let payload = Payload {
            message_id: crate::client::new_message_id(),
            kind,
            timestamp_ms: crate::client::now_ms() as u64,
            body: Zeroizing::new(body),
            attachment: None,
            reference: None,
            sync: None,
            quote: None,
            expire_secs: None,
        };
        self.send_direct(&me, payload).await?;
        Ok(())
    }
}
