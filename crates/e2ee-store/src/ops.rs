//! The client's atomic operations: decrypt-and-store and encrypt-and-enqueue.
//! Each runs in one transaction, so the ratchet state and the message it
//! produced or consumed are committed together or not at all.

use e2ee_core::{
    Envelope, Payload, PayloadKind, PreKeyBundle, SenderKeyDistribution, SenderKeyEnvelope,
    SenderKeyError, SenderKeyReceiver, SenderKeySender,
};
use rand_core::CryptoRngCore;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::features::{Action, Context, Filed, file};
use crate::parked::{ParkedMessage, ParkedOutcome, Unparked};
use crate::peers::IdentityCheck;
use crate::store::{Conversation, Message, NewMessage, OutboxEntry, Status, Store, Tx, now_ms};

/// A message as the server relayed it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The frame's message id (the sender's UUID).
    pub id: &'a str,
    /// The authenticated sender.
    pub from: &'a str,
    /// The sender's device (`fromDevice`; 1 from servers before version 2).
    pub from_device: u32,
    /// For a group message: the group.
    pub group_id: Option<&'a str>,
    /// The `E2EE:` envelope text.
    pub content: &'a str,
    /// The server's timestamp (ms).
    pub server_at_ms: i64,
}

/// What [`Store::receive`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// Already processed earlier: nothing was decrypted; acknowledge again.
    Duplicate,
    /// A message for the application, now stored.
    Message {
        /// The stored message.
        message: Box<Message>,
        /// Whether this message started a new session (X3DH as responder).
        new_session: bool,
        /// For direct messages: what the sender's identity key was.
        identity: Option<IdentityCheck>,
    },
    /// A member's sender key for a group, now stored, and what it
    /// unlocked of the messages parked for it.
    SenderKey {
        /// The group.
        group_id: String,
        /// The member.
        sender: String,
        /// For the 1:1 session it came on.
        identity: IdentityCheck,
        /// Parked messages of this sender in this group, tried again.
        unparked: ParkedOutcome,
        /// The group's chain head the sender verified when it sent the
        /// key (epoch, record hash), if it said: compare it with ours.
        head: Option<(u64, [u8; 32])>,
    },
    /// A group message on a chain we do not hold yet: parked in the store
    /// until the sender's key arrives (see [`crate::ParkedMessage`]).
    /// Acknowledge it.
    Parked,
    /// Another of our devices read these messages here too: how many were
    /// marked read (their receipts were sent by that device).
    ReadSync {
        /// Messages marked.
        marked: usize,
    },
    /// Another of our devices sent the keys it pinned for its contacts
    /// and what the user decided about them: what that changed here.
    ContactSync(crate::ContactSyncOutcome),
    /// A reaction, edit, delete or timer change (or one refused, or kept
    /// for a message that has not arrived): see [`crate::Action`].
    Action {
        /// What it did.
        action: Action,
        /// For direct messages from a peer: what the sender's identity key was.
        identity: Option<IdentityCheck>,
    },
}

pub(crate) fn uuid_string(id: &[u8; 16]) -> String {
    Uuid::from_bytes(*id).hyphenated().to_string()
}

fn parse_uuid(s: &str) -> Result<[u8; 16]> {
    Uuid::parse_str(s)
        .map(Uuid::into_bytes)
        .map_err(|_| StoreError::Invalid("not a UUID"))
}

/// One incoming message, inside the caller's transaction.
fn receive_in(tx: &Tx<'_>, rng: &mut impl CryptoRngCore, m: &Incoming<'_>) -> Result<Received> {
    let outer_id = parse_uuid(m.id)?;
    let envelope = Envelope::from_text(m.content)?;
    if tx.seen(m.id)? {
        return Ok(Received::Duplicate);
    }
    // A device that left speaks no more, 1:1 or in a group (DESIGN.md
    // section 10), even with a server that still relays for it.
    if tx.device_removed(m.from, m.from_device)? {
        return Err(StoreError::Invalid(
            "a message from a device that was removed",
        ));
    }
    let out = match m.group_id {
        None => receive_direct(tx, rng, m, &outer_id, &envelope)?,
        Some(group) => match receive_group(tx, m.from, group, m.id, &envelope, m.server_at_ms) {
            Err(e) if awaiting_key(&e) => {
                if !tx.parking_room(group, m.from)? {
                    return Err(StoreError::Invalid(
                        "too many messages waiting for this sender's key",
                    ));
                }
                tx.park(&ParkedMessage {
                    message_id: m.id.to_owned(),
                    group_id: group.to_owned(),
                    sender: m.from.to_owned(),
                    content: m.content.to_owned(),
                    server_at_ms: m.server_at_ms,
                    parked_at_ms: now_ms(),
                })?;
                Received::Parked
            }
            other => other?,
        },
    };
    tx.mark_seen(m.id, m.from)?;
    Ok(out)
}

pub(crate) fn new_message(
    payload: &Payload,
    conversation: Conversation,
    sender: &str,
    outgoing: bool,
    recipients: u32,
    server_at_ms: Option<i64>,
) -> NewMessage {
    NewMessage {
        id: uuid_string(&payload.message_id),
        conversation,
        sender: sender.to_owned(),
        outgoing,
        kind: payload.kind,
        body: (!payload.body.is_empty())
            .then(|| String::from_utf8_lossy(&payload.body).into_owned()),
        attachment: payload.attachment.clone(),
        reference: payload.reference.as_ref().map(uuid_string),
        status: if outgoing {
            Status::Pending
        } else {
            Status::Delivered
        },
        recipients,
        sent_at_ms: payload.timestamp_ms as i64,
        server_at_ms,
        quote: payload.quote.clone(),
        expire_secs: payload.expire_secs,
    }
}

impl Store {
    /// Decrypts an incoming message and stores the result with the new
    /// session (or sender-key) state in one transaction.
    ///
    /// A message id processed before is [`Received::Duplicate`] and is not
    /// decrypted again. Any error (a tampered envelope, an unknown prekey,
    /// a malformed payload) leaves the store exactly as it was.
    pub fn receive(&mut self, rng: &mut impl CryptoRngCore, m: &Incoming<'_>) -> Result<Received> {
        let out = self.write(|tx| receive_in(tx, rng, m))?;
        if let Received::Action { action, .. } = &out
            && crate::features::removes_text(action)
        {
            self.scrub()?;
        }
        Ok(out)
    }

    /// [`Store::receive`] for several messages in one transaction (one
    /// commit, one fsync), in order, each in a savepoint of its own: a
    /// message that fails leaves the store as it was and does not undo
    /// the others. The outer `Err` means the transaction failed and
    /// nothing was stored (acknowledge none of them).
    pub fn receive_batch(
        &mut self,
        rng: &mut impl CryptoRngCore,
        ms: &[Incoming<'_>],
    ) -> Result<Vec<Result<Received>>> {
        let out = self.write_each(ms, |tx, m| receive_in(tx, rng, m))?;
        if out.iter().any(|r| {
            matches!(r, Ok(Received::Action { action, .. }) if crate::features::removes_text(action))
        }) {
            self.scrub()?;
        }
        Ok(out)
    }

    /// Verifies a peer's bundle and starts a new session with them (it
    /// becomes current; older ones are kept for late messages).
    pub fn start_session(
        &mut self,
        rng: &mut impl CryptoRngCore,
        peer: &str,
        bundle: &PreKeyBundle,
    ) -> Result<IdentityCheck> {
        // `initiate` verifies the bundle (binding and prekey signatures)
        // before any DH; verifying here as well cost three more signature
        // checks per session start (issue 19).
        self.write(|tx| {
            let identity = tx.require_identity()?;
            let mut sessions = tx.sessions(peer)?;
            sessions.initiate(rng, &identity, bundle)?;
            tx.save_sessions(peer, &sessions)?;
            tx.remember_identity(peer, &bundle.identity)
        })
    }

    /// Encrypts a payload for a peer on the current session and, in one
    /// transaction, saves the advanced session, stores the message (unless
    /// it is a control payload such as a sender key) and adds the frame to
    /// the outbox. Hand the returned entry to the transport.
    pub fn send_direct(&mut self, to: &str, payload: &Payload) -> Result<OutboxEntry> {
        let me = self
            .read(|tx| tx.account())?
            .ok_or(StoreError::Missing("account"))?;
        let padded = payload.to_padded()?;
        let entry = self.write(|tx| {
            let mut sessions = tx.sessions(to)?;
            let envelope = sessions.encrypt(&padded)?;
            tx.save_sessions(to, &sessions)?;
            enqueue_direct(tx, &me.user_id, to, payload, envelope.to_text(), Vec::new())
        })?;
        self.scrub_after(payload)?;
        Ok(entry)
    }

    /// After sending an edit or delete (it removed text here first).
    pub(crate) fn scrub_after(&mut self, payload: &Payload) -> Result<()> {
        if matches!(payload.kind, PayloadKind::Edit | PayloadKind::Delete) {
            self.scrub()?;
        }
        Ok(())
    }

    /// Our sender key for a group, made on first use. Returns the
    /// distribution message to send (1:1) to every member in `members` who
    /// does not have this chain yet, and those members.
    pub fn group_sender_key(
        &mut self,
        rng: &mut impl CryptoRngCore,
        group_id: &str,
        members: &[String],
    ) -> Result<(SenderKeyDistribution, Vec<String>)> {
        let gid = parse_uuid(group_id)?;
        self.write(|tx| {
            let sender = match tx.sender_key_out(group_id)? {
                Some(s) => s,
                None => {
                    let s = SenderKeySender::generate(rng, gid);
                    tx.save_sender_key_out(group_id, &s)?;
                    s
                }
            };
            let missing = tx.sender_key_missing(group_id, sender.chain_id(), members)?;
            Ok((sender.distribution(), missing))
        })
    }

    /// Encrypts a group payload with our sender key and, in one transaction,
    /// saves the advanced chain, stores the message and adds the frame to
    /// the outbox. `recipients` is the number of other members (for the
    /// delivered / read status). Call [`Store::group_sender_key`] first.
    pub fn send_group(
        &mut self,
        group_id: &str,
        payload: &Payload,
        recipients: u32,
    ) -> Result<OutboxEntry> {
        let me = self
            .read(|tx| tx.account())?
            .ok_or(StoreError::Missing("account"))?;
        let padded = payload.to_padded()?;
        let entry = self.write(|tx| {
            let mut sender = tx
                .sender_key_out(group_id)?
                .ok_or(StoreError::Missing("sender key"))?;
            let envelope = Envelope::SenderKey(sender.encrypt(&padded)?);
            tx.save_sender_key_out(group_id, &sender)?;
            file_outgoing(
                tx,
                payload,
                Conversation::Group(group_id.to_owned()),
                &me.user_id,
                recipients,
            )?;
            let entry = OutboxEntry {
                message_id: uuid_string(&payload.message_id),
                recipient: None,
                group_id: Some(group_id.to_owned()),
                content: envelope.to_text(),
                copies: Vec::new(),
                created_at_ms: now_ms(),
                attempts: 0,
                held_for: None,
            };
            tx.enqueue(&entry)?;
            Ok(entry)
        })?;
        self.scrub_after(payload)?;
        Ok(entry)
    }
}

/// Files a payload we send in its conversation (a message stored as
/// pending, or a reaction, edit, delete or timer applied here first). A
/// refused one fails the send: nothing is encrypted or queued.
pub(crate) fn file_outgoing(
    tx: &Tx<'_>,
    payload: &Payload,
    conversation: Conversation,
    me: &str,
    recipients: u32,
) -> Result<()> {
    let ctx = Context {
        conversation,
        sender: me,
        outgoing: true,
        recipients,
        status: Status::Pending,
        server_at_ms: None,
    };
    match file(tx, payload, &ctx)? {
        Filed::Action(Action::Refused { reason }) => Err(StoreError::NotAllowed(reason)),
        Filed::Action(Action::Pending { .. }) => Err(StoreError::NotAllowed(
            "no such message in this conversation",
        )),
        _ => Ok(()),
    }
}

impl Filed {
    fn received(self, new_session: bool, identity: Option<IdentityCheck>) -> Received {
        match self {
            Filed::Message(message) => Received::Message {
                message,
                new_session,
                identity,
            },
            Filed::Action(action) => Received::Action { action, identity },
        }
    }
}

/// Stores an outgoing direct message (unless it is a control payload, or a
/// sync message to our own devices) and adds its frame to the outbox.
pub(crate) fn enqueue_direct(
    tx: &Tx<'_>,
    me: &str,
    to: &str,
    payload: &Payload,
    content: String,
    copies: Vec<crate::store::DeviceCopy>,
) -> Result<OutboxEntry> {
    let control = matches!(
        payload.kind,
        PayloadKind::SenderKey
            | PayloadKind::ReadSync
            | PayloadKind::LocalDelete
            | PayloadKind::ContactSync
    );
    if !control && to != me {
        file_outgoing(tx, payload, Conversation::Direct(to.to_owned()), me, 1)?;
    }
    let entry = OutboxEntry {
        message_id: uuid_string(&payload.message_id),
        recipient: Some(to.to_owned()),
        group_id: None,
        content,
        copies,
        created_at_ms: now_ms(),
        attempts: 0,
        held_for: None,
    };
    tx.enqueue(&entry)?;
    Ok(entry)
}

fn receive_direct(
    tx: &Tx<'_>,
    rng: &mut impl CryptoRngCore,
    m: &Incoming<'_>,
    outer_id: &[u8; 16],
    envelope: &Envelope,
) -> Result<Received> {
    let identity = tx.require_identity()?;
    let me = tx.account()?.ok_or(StoreError::Missing("account"))?;
    let own = m.from == me.user_id;
    let mut sessions = tx.device_sessions(m.from, m.from_device)?;
    let prekeys = match envelope {
        Envelope::PreKey(p) => tx.prekeys_for(
            p.signed_prekey_id,
            p.one_time_prekey_id,
            p.pq.as_ref().map(|q| q.prekey_id),
        )?,
        _ => tx.prekeys_for(u32::MAX, None, None)?,
    };
    let d = sessions.decrypt(rng, &identity, &prekeys, envelope)?;
    let payload = Payload::decode_checked(&d.plaintext, outer_id)?;
    // A copy from "our own device" under another identity is a forgery (a
    // server adding a device of its own); and only our own devices may
    // send us sent transcripts and read marks.
    if own && d.remote_identity != identity.public() {
        return Err(StoreError::Invalid(
            "a copy from our account under another identity",
        ));
    }
    if !own
        && (payload.sync.is_some()
            || matches!(
                payload.kind,
                PayloadKind::ReadSync | PayloadKind::LocalDelete | PayloadKind::ContactSync
            ))
    {
        return Err(StoreError::Invalid("a sync payload from another account"));
    }
    // Only now, with the message known good, does any state change.
    tx.save_device_sessions(m.from, m.from_device, None, &sessions)?;
    if let Some(id) = d.consumed_one_time_prekey {
        tx.consume_one_time_prekey(id)?;
    }
    if let Some(id) = d.used_pq_prekey {
        tx.consume_pq_prekey(id)?;
    }
    let check = if own {
        IdentityCheck::Same
    } else {
        tx.remember_identity(m.from, &d.remote_identity)?
    };
    if own && payload.kind != PayloadKind::SenderKey {
        return Ok(
            match crate::devices::receive_own(tx, m.from, &payload, m.server_at_ms)? {
                crate::devices::OwnCopy::Filed(f) => f.received(d.new_session, None),
                crate::devices::OwnCopy::Read(marked) => Received::ReadSync { marked },
                crate::devices::OwnCopy::Contacts(c) => Received::ContactSync(c),
            },
        );
    }
    if payload.kind == PayloadKind::SenderKey {
        // Version 2.2: the group's chain head the sender verified may
        // follow the distribution (epoch, u64 big-endian, and the hash of
        // the record at that epoch).
        let body = payload.body.as_slice();
        let (dist, head) = match body.len() {
            SenderKeyDistribution::LENGTH => (body, None),
            n if n == SenderKeyDistribution::LENGTH + 40 => {
                let (d, h) = body.split_at(SenderKeyDistribution::LENGTH);
                let mut epoch = [0u8; 8];
                epoch.copy_from_slice(&h[..8]);
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&h[8..]);
                (d, Some((u64::from_be_bytes(epoch), hash)))
            }
            _ => return Err(StoreError::Invalid("a sender key payload's length")),
        };
        let dist = SenderKeyDistribution::from_bytes(dist)?;
        let group_id = uuid_string(&dist.group_id);
        let mut r = tx
            .sender_key_in(&group_id, m.from)?
            .unwrap_or_else(|| SenderKeyReceiver::new(dist.group_id));
        r.add(&dist)?;
        tx.save_sender_key_in(&group_id, m.from, &r)?;
        let unparked = retry_parked(tx, &group_id, m.from)?;
        return Ok(Received::SenderKey {
            group_id,
            sender: m.from.to_owned(),
            identity: check,
            unparked,
            head,
        });
    }
    let ctx = Context {
        conversation: Conversation::Direct(m.from.to_owned()),
        sender: m.from,
        outgoing: false,
        recipients: 1,
        status: Status::Delivered,
        server_at_ms: Some(m.server_at_ms),
    };
    Ok(file(tx, &payload, &ctx)?.received(d.new_session, Some(check)))
}

/// A group message on a chain we do not hold (yet).
fn awaiting_key(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Missing(_) | StoreError::SenderKey(SenderKeyError::UnknownChain(_))
    )
}

/// Tries the parked messages of `sender` in `group` again, after their key
/// arrived. Runs in the caller's transaction.
fn retry_parked(tx: &Tx<'_>, group: &str, sender: &str) -> Result<ParkedOutcome> {
    let mut out = ParkedOutcome::default();
    for p in tx.parked_from(group, sender)? {
        let result = Envelope::from_text(&p.content)
            .map_err(StoreError::from)
            .and_then(|env| receive_group(tx, sender, group, &p.message_id, &env, p.server_at_ms));
        match result {
            Err(e) if awaiting_key(&e) => continue,
            Ok(Received::Message { message, .. }) => {
                tx.unpark(&p.message_id)?;
                out.delivered.push(*message);
            }
            Ok(_) => tx.unpark(&p.message_id)?,
            Err(StoreError::Sqlite(e)) => return Err(StoreError::Sqlite(e)),
            Err(e) => {
                tx.unpark(&p.message_id)?;
                out.dropped.push(Unparked {
                    message_id: p.message_id,
                    sender: p.sender,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

fn receive_group(
    tx: &Tx<'_>,
    from: &str,
    group: &str,
    id: &str,
    envelope: &Envelope,
    server_at_ms: i64,
) -> Result<Received> {
    let Envelope::SenderKey(env) = envelope else {
        return Err(StoreError::Decrypt(
            e2ee_core::DecryptError::WrongEnvelopeKind,
        ));
    };
    let outer_id = parse_uuid(id)?;
    receive_sender_key_message(tx, from, group, &outer_id, env, server_at_ms)
}

fn receive_sender_key_message(
    tx: &Tx<'_>,
    from: &str,
    group: &str,
    outer_id: &[u8; 16],
    env: &SenderKeyEnvelope,
    server_at_ms: i64,
) -> Result<Received> {
    if uuid_string(&env.group_id) != group {
        return Err(StoreError::Invalid("sender-key message for another group"));
    }
    let mut r = tx
        .sender_key_in(group, from)?
        .ok_or(StoreError::Missing("the sender's key for this group"))?;
    let plaintext = r.decrypt(env)?;
    let payload = Payload::decode_checked(&plaintext, outer_id)?;
    if payload.kind == PayloadKind::SenderKey {
        return Err(StoreError::Invalid("sender key sent to the group"));
    }
    tx.save_sender_key_in(group, from, &r)?;
    // Sent from another of our devices: ours, as sent.
    let own = tx.account()?.is_some_and(|a| a.user_id == from);
    if matches!(
        payload.kind,
        PayloadKind::ReadSync | PayloadKind::LocalDelete | PayloadKind::ContactSync
    ) {
        return Err(StoreError::Invalid("a sync payload sent to a group"));
    }
    let ctx = Context {
        conversation: Conversation::Group(group.to_owned()),
        sender: from,
        outgoing: own,
        recipients: 1,
        status: if own { Status::Sent } else { Status::Delivered },
        server_at_ms: Some(server_at_ms),
    };
    Ok(file(tx, &payload, &ctx)?.received(false, None))
}
