//! The background task: turns connection events into store updates,
//! acknowledgements and application events.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chat_proto::MessageStatus;
use chat_proto::rest::{ErrorCode, RelayedMessage};
use chat_proto::ws::{ClientFrame, Delivered, ServerFrame};
use chat_transport::ConnEvent;
use e2ee_store::{Action, Conversation, Incoming, Received, Status, StoreError};
use rand_core::OsRng;
use tokio::sync::mpsc;

use crate::client::Inner;
use crate::event::{ConnectionState, Event};
use crate::keys;

/// Events handled before acknowledgements and status updates are flushed.
const BATCH: usize = 256;

fn status(s: MessageStatus) -> Status {
    match s {
        MessageStatus::Sent => Status::Sent,
        MessageStatus::Delivered => Status::Delivered,
        MessageStatus::Read => Status::Read,
    }
}

/// Whether a failed receive will fail again however often it is retried
/// (bad envelope, wrong key…), as opposed to local trouble (disk, lock)
/// that a redelivery may get past.
fn permanent(e: &StoreError) -> bool {
    !matches!(e, StoreError::Sqlite(_) | StoreError::Io(_))
}

enum Update {
    Ack {
        id: String,
        at: i64,
    },
    Receipt {
        id: String,
        by: String,
        status: Status,
    },
}

/// How often parked group messages are checked for expiry.
const EXPIRE_PARKED_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn run(inner: Weak<Inner>, mut rx: mpsc::Receiver<ConnEvent>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut expiry = tokio::time::interval(EXPIRE_PARKED_EVERY);
    expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                let mut batch = vec![ev];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                let Some(inner) = inner.upgrade() else { break };
                handle(&inner, batch).await;
            }
            _ = tick.tick() => {
                let Some(inner) = inner.upgrade() else { break };
                resend_stale(&inner).await;
                expire_messages(&inner).await;
            }
            _ = expiry.tick() => {
                let Some(inner) = inner.upgrade() else { break };
                expire_parked(&inner).await;
            }
        }
    }
    tracing::debug!("client runtime stopped");
}

async fn handle(inner: &Arc<Inner>, batch: Vec<ConnEvent>) {
    let mut acks: Vec<String> = Vec::new();
    let mut updates: Vec<Update> = Vec::new();
    let mut read_convs: HashSet<Conversation> = HashSet::new();
    let mut connected = false;
    // Messages in a row are stored in one transaction (one fsync); any
    // other event first flushes those before it, so order is kept.
    let mut messages: Vec<RelayedMessage> = Vec::new();
    for ev in batch {
        if let ConnEvent::Frame(ServerFrame::Message(m) | ServerFrame::GroupMessage(m)) = ev {
            if inner.receive {
                messages.push(m);
            }
            continue;
        }
        if !messages.is_empty() {
            receive(
                inner,
                std::mem::take(&mut messages),
                &mut acks,
                &mut read_convs,
            )
            .await;
        }
        match ev {
            ConnEvent::Connected(ready) => {
                connected = true;
                if let Ok(mut f) = inner.in_flight.lock() {
                    f.clear();
                }
                // Notices may have been missed while away (older servers
                // send none): every group is reloaded before its next send.
                inner
                    .group_push
                    .store(ready.group_events, Ordering::Relaxed);
                if let Ok(mut f) = inner.fresh_groups.lock() {
                    f.clear();
                }
                inner.emit(Event::Connection(ConnectionState::Connected));
            }
            ConnEvent::Disconnected {
                error, retry_in, ..
            } => {
                if let Ok(mut o) = inner.online.lock() {
                    o.clear();
                }
                inner.emit(Event::Connection(ConnectionState::Disconnected {
                    error,
                    retry_in,
                }));
            }
            ConnEvent::Rejected { .. } => {
                inner.emit(Event::Connection(ConnectionState::LoggedOut));
            }
            ConnEvent::Frame(frame) => match frame {
                // Taken above.
                ServerFrame::Message(_) | ServerFrame::GroupMessage(_) => {}
                ServerFrame::Ack(a) => updates.push(Update::Ack {
                    id: a.id,
                    at: a.timestamp,
                }),
                ServerFrame::Status(s) => {
                    if let Some(by) = s.user_id {
                        updates.push(Update::Receipt {
                            id: s.message_id,
                            by,
                            status: status(s.status),
                        });
                    }
                }
                ServerFrame::Online(o) => {
                    if let Ok(mut map) = inner.online.lock() {
                        if o.online {
                            map.insert(o.user_id.clone(), o.username.clone());
                        } else {
                            map.remove(&o.user_id);
                        }
                    }
                    inner.emit(Event::Presence {
                        user_id: o.user_id,
                        username: o.username,
                        online: o.online,
                    });
                }
                ServerFrame::Typing(t) => inner.emit(Event::Typing {
                    from: t.from,
                    group_id: t.group_id,
                    typing: t.typing,
                }),
                ServerFrame::PrekeysLow(p) => {
                    tracing::debug!(remaining = p.remaining, "server asks for prekeys");
                    let i = inner.clone();
                    tokio::spawn(async move {
                        if let Err(e) = keys::maintain(&i, false).await {
                            tracing::warn!(error = %e, "prekey refill failed");
                        }
                    });
                }
                ServerFrame::GroupChanged(g) => {
                    let i = inner.clone();
                    tokio::spawn(async move { i.on_group_changed(&g).await });
                }
                ServerFrame::DevicesChanged(d) => {
                    let i = inner.clone();
                    tokio::spawn(async move {
                        if let Err(e) = i.discover_own_devices().await {
                            tracing::debug!(error = %e, "could not look up our devices");
                        }
                    });
                    let (device_id, name) = (d.device_id, d.name);
                    inner.emit(match d.change {
                        chat_proto::ws::DeviceChange::Linked => {
                            Event::DeviceLinked { device_id, name }
                        }
                        chat_proto::ws::DeviceChange::Removed => {
                            Event::DeviceRemoved { device_id, name }
                        }
                    });
                }
                ServerFrame::Error(e) => server_error(inner, e).await,
                ServerFrame::Ready(_) => {}
            },
            other => tracing::debug!(?other, "connection event ignored"),
        }
    }
    if !messages.is_empty() {
        receive(inner, messages, &mut acks, &mut read_convs).await;
    }
    if !updates.is_empty() {
        apply_updates(inner, updates).await;
    }
    finish(inner, acks, read_convs).await;
    if connected {
        on_connected(inner).await;
    }
}

/// Sends the acknowledgements of a batch and the automatic read receipts.
async fn finish(inner: &Arc<Inner>, acks: Vec<String>, read_convs: HashSet<Conversation>) {
    if !acks.is_empty() && !inner.hold_acks {
        for chunk in acks.chunks(500) {
            inner
                .send_frame(ClientFrame::Delivered(Delivered {
                    message_ids: chunk.to_vec(),
                }))
                .await;
        }
    }
    for conv in read_convs {
        if let Err(e) = inner.mark_read(conv).await {
            tracing::warn!(error = %e, "auto-read failed");
        }
    }
}

/// Raises the parked group messages whose key never came as
/// undecryptable (they were acknowledged when parked).
async fn expire_parked(inner: &Arc<Inner>) {
    let before = crate::client::now_ms() - e2ee_store::PARKED_MAX_AGE_MS;
    match inner
        .db(move |s| {
            s.write(|tx| {
                tx.prune_pending_actions(crate::client::now_ms())?;
                tx.expire_parked(before)
            })
        })
        .await
    {
        Ok(expired) => {
            for p in expired {
                tracing::warn!(id = %p.message_id, from = %p.sender, "parked group message expired");
                inner.emit(Event::Undecryptable {
                    message_id: p.message_id,
                    from: p.sender,
                    error: "the sender's key for this group never arrived".into(),
                });
            }
        }
        Err(e) => tracing::error!(error = %e, "could not expire parked messages"),
    }
}

/// Signed membership does not admit the sender: whatever the server relays
/// from them to the group is not shown (DESIGN.md section 8).
fn refuse_unverified(inner: &Arc<Inner>, m: RelayedMessage, acks: &mut Vec<String>) {
    tracing::warn!(id = %m.id, from = %m.from, "group message from an unverified member dropped");
    acks.push(m.id.clone());
    inner.emit(Event::Undecryptable {
        message_id: m.id,
        from: m.from,
        error: "the sender is not a verified member of the group".into(),
    });
}

/// Stores a run of relayed messages in one transaction and acknowledges
/// each one that is now stored (or can never be).
async fn receive(
    inner: &Arc<Inner>,
    messages: Vec<RelayedMessage>,
    acks: &mut Vec<String>,
    read_convs: &mut HashSet<Conversation>,
) {
    let mut admitted = Vec::with_capacity(messages.len());
    for m in messages {
        if let Some(group) = m.group_id.as_deref() {
            match inner.sender_admitted(group, &m.from).await {
                Some(true) => {}
                // Not acknowledged: delivered again after a reconnect, when
                // we may be able to reload the group.
                None => continue,
                Some(false) => {
                    refuse_unverified(inner, m, acks);
                    continue;
                }
            }
        }
        admitted.push(m);
    }
    if admitted.is_empty() {
        return;
    }
    tracing::trace!(count = admitted.len(), "messages stored together");
    let frames = admitted.clone();
    let results = inner
        .db(move |s| {
            let incoming: Vec<Incoming<'_>> = frames
                .iter()
                .map(|f| Incoming {
                    id: &f.id,
                    from: &f.from,
                    from_device: f.from_device.unwrap_or(1),
                    group_id: f.group_id.as_deref(),
                    content: &f.content,
                    server_at_ms: f.timestamp,
                })
                .collect();
            s.receive_batch(&mut OsRng, &incoming)
        })
        .await;
    match results {
        Ok(results) => {
            for (m, result) in admitted.into_iter().zip(results) {
                received(inner, m, result, acks, read_convs);
            }
        }
        Err(e) => {
            // Not acknowledged: the server redelivers them after a reconnect.
            tracing::error!(count = admitted.len(), error = %e, "could not store incoming messages");
        }
    }
}

/// What one stored (or refused) message means for the application.
fn received(
    inner: &Arc<Inner>,
    m: RelayedMessage,
    result: Result<Received, StoreError>,
    acks: &mut Vec<String>,
    read_convs: &mut HashSet<Conversation>,
) {
    match result {
        Ok(Received::Duplicate) => acks.push(m.id),
        Ok(Received::Message {
            message, identity, ..
        }) => {
            acks.push(m.id);
            if let Some(check) = identity {
                inner.identity_event(&m.from, check);
            }
            if inner.config.auto_read {
                read_convs.insert(message.conversation.clone());
            }
            inner.emit(Event::Message(message));
        }
        Ok(Received::SenderKey {
            group_id,
            sender,
            identity,
            unparked,
            head,
            ..
        }) => {
            acks.push(m.id);
            inner.identity_event(&sender, identity);
            if let Some(head) = head {
                let (i, from) = (inner.clone(), sender.clone());
                tokio::spawn(async move { i.check_group_head(&group_id, &from, head).await });
            }
            for message in unparked.delivered {
                if inner.config.auto_read {
                    read_convs.insert(message.conversation.clone());
                }
                inner.emit(Event::Message(Box::new(message)));
            }
            for d in unparked.dropped {
                tracing::warn!(id = %d.message_id, from = %d.sender, error = %d.reason, "parked message dropped");
                inner.emit(Event::Undecryptable {
                    message_id: d.message_id,
                    from: d.sender,
                    error: d.reason,
                });
            }
        }
        Ok(Received::Action { action, identity }) => {
            acks.push(m.id.clone());
            if let Some(check) = identity {
                inner.identity_event(&m.from, check);
            }
            if let Some(e) = action_event(action, &m) {
                inner.emit(e);
            }
        }
        Ok(Received::ContactSync(c)) => {
            acks.push(m.id);
            for user_id in c.conflicts {
                tracing::warn!(peer = %user_id, "our devices pinned different keys for a contact");
                inner.emit(Event::ContactKeyMismatch { user_id });
            }
            if c.request {
                let i = inner.clone();
                tokio::spawn(async move {
                    if let Err(e) = i.send_contact_sync().await {
                        tracing::warn!(error = %e, "could not send our contacts to a new device");
                    }
                });
            }
        }
        Ok(Received::Parked) => {
            // Stored until its key arrives: acknowledged now, so it cannot
            // hold the server's delivery window.
            tracing::debug!(id = %m.id, from = %m.from, "group message parked until its key arrives");
            acks.push(m.id);
        }
        Err(e) if permanent(&e) => {
            tracing::warn!(id = %m.id, from = %m.from, error = %e, "undecryptable message dropped");
            acks.push(m.id.clone());
            inner.emit(Event::Undecryptable {
                message_id: m.id,
                from: m.from,
                error: e.to_string(),
            });
        }
        Ok(other) => {
            acks.push(m.id);
            tracing::debug!(?other, "received");
        }
        Err(e) => {
            // Not acknowledged: the server redelivers it after a reconnect.
            tracing::error!(id = %m.id, error = %e, "could not store an incoming message");
        }
    }
}

/// The event for what a reaction, edit, delete or timer did.
fn action_event(action: Action, m: &RelayedMessage) -> Option<Event> {
    Some(match action {
        Action::Reaction {
            message_id,
            conversation,
            by,
            emoji,
        } => Event::Reaction {
            message_id,
            conversation,
            by,
            emoji,
        },
        Action::Edited { message } => Event::Edited(message),
        Action::Deleted {
            message_id,
            conversation,
            by,
        } => Event::Deleted {
            message_id,
            conversation,
            by,
        },
        Action::DeletedForMe { message_ids } => Event::DeletedForMe { message_ids },
        Action::Timer {
            conversation,
            secs,
            by,
            message,
        } => Event::DisappearingChanged {
            conversation,
            after: (secs > 0).then(|| Duration::from_secs(u64::from(secs))),
            by,
            message,
        },
        Action::Refused { reason } => {
            tracing::warn!(id = %m.id, from = %m.from, %reason, "refused a message action");
            Event::Refused {
                message_id: m.id.clone(),
                from: m.from.clone(),
                reason: reason.to_owned(),
            }
        }
        Action::Pending { target } => {
            tracing::debug!(id = %m.id, %target, "an action waits for its message");
            return None;
        }
        _ => return None,
    })
}

/// Removes the disappearing messages whose time ran out.
pub(crate) async fn expire_messages(inner: &Arc<Inner>) {
    match inner.db(|s| s.expire()).await {
        Ok(ids) if !ids.is_empty() => {
            tracing::debug!(n = ids.len(), "disappearing messages removed");
            inner.emit(Event::Expired { message_ids: ids });
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "could not remove expired messages"),
    }
}

async fn apply_updates(inner: &Arc<Inner>, updates: Vec<Update>) {
    if let Ok(mut f) = inner.in_flight.lock() {
        for u in &updates {
            if let Update::Ack { id, .. } = u {
                f.remove(id);
                inner.forget_mismatches(id);
            }
        }
    }
    let result = inner
        .db(move |s| {
            s.write(|tx| {
                let mut out = Vec::new();
                for u in updates {
                    match u {
                        Update::Ack { id, at } => {
                            if tx.mark_sent(&id, at)? {
                                out.push(Event::Status {
                                    message_id: id,
                                    status: Status::Sent,
                                });
                            }
                        }
                        Update::Receipt { id, by, status } => {
                            let changed = tx.apply_receipt(&id, &by, status)?;
                            out.push(Event::Receipt {
                                message_id: id.clone(),
                                by,
                                status,
                            });
                            if let Some(s) = changed {
                                out.push(Event::Status {
                                    message_id: id,
                                    status: s,
                                });
                            }
                        }
                    }
                }
                Ok(out)
            })
        })
        .await;
    match result {
        Ok(events) => {
            for e in events {
                inner.emit(e);
            }
        }
        Err(e) => tracing::error!(error = %e, "could not record acks and receipts"),
    }
}

async fn server_error(inner: &Arc<Inner>, e: chat_proto::ws::ErrorFrame) {
    let Some(id) = e.id else {
        tracing::warn!(code = ?e.code, message = %e.message, "server error");
        return;
    };
    if let Ok(mut f) = inner.in_flight.lock() {
        f.remove(&id);
    }
    if let (ErrorCode::Conflict, Some(devices)) = (e.code, e.devices) {
        // The recipient's (or our own) devices changed: fix the sessions
        // and send again under the same id, off this loop (it fetches
        // bundles).
        tracing::debug!(%id, ?devices, "device set changed; sending again");
        let inner = inner.clone();
        tokio::spawn(async move { inner.fix_devices(id, devices).await });
        return;
    }
    if matches!(
        e.code,
        ErrorCode::RateLimited | ErrorCode::Timeout | ErrorCode::Unavailable | ErrorCode::Internal
    ) {
        // Stays in the outbox: resent by the timer.
        inner.deferred.store(true, Ordering::Relaxed);
        tracing::debug!(%id, code = ?e.code, "send deferred");
        return;
    }
    inner.fail_send(&id, e.code, e.message).await;
}

/// After (re)connecting: resend the outbox and unsent read receipts, and
/// bring our keys up to date.
async fn on_connected(inner: &Arc<Inner>) {
    if let Err(e) = inner.discover_own_devices().await {
        tracing::warn!(error = %e, "could not look up our other devices");
    }
    match inner.db(|s| s.read(|tx| tx.outbox())).await {
        Ok(outbox) => {
            if !outbox.is_empty() {
                tracing::debug!(n = outbox.len(), "resending outbox");
            }
            for e in outbox.iter().filter(|e| e.held_for.is_none()) {
                inner.transmit(e).await;
            }
        }
        Err(e) => tracing::error!(error = %e, "could not read the outbox"),
    }
    match inner.db(|s| s.read(|tx| tx.unsent_read_receipts())).await {
        Ok(r) if !r.is_empty() => {
            if let Err(e) = inner.send_read_receipts(r).await {
                tracing::warn!(error = %e, "could not resend read receipts");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "could not read pending receipts"),
    }
}

/// Resends outbox entries the server has not acknowledged in time, and
/// those it deferred (rate limits). The server treats a repeated id as the
/// same message.
async fn resend_stale(inner: &Arc<Inner>) {
    let after = Duration::from_secs(inner.config.resend_after_secs);
    let (stale, in_flight): (HashSet<String>, HashSet<String>) = match inner.in_flight.lock() {
        Ok(f) => (
            f.iter()
                .filter(|(_, t)| t.elapsed() >= after)
                .map(|(id, _)| id.clone())
                .collect(),
            f.keys().cloned().collect(),
        ),
        Err(_) => return,
    };
    let deferred = inner.deferred.swap(false, Ordering::Relaxed);
    if stale.is_empty() && !deferred {
        return;
    }
    let Ok(outbox) = inner.db(|s| s.read(|tx| tx.outbox())).await else {
        return;
    };
    for e in outbox.into_iter().filter(|e| e.held_for.is_none()) {
        if stale.contains(&e.message_id) || (deferred && !in_flight.contains(&e.message_id)) {
            inner.transmit(&e).await;
        }
    }
}
