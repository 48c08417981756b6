//! The delivery rules (DESIGN.md section 4) shared by the WebSocket and REST
//! paths: store durably, then acknowledge, then push; report `delivered` and
//! `read` back to senders, queued when they are offline.

use std::collections::HashMap;
use std::sync::Arc;

use chat_proto::rest::{ErrorCode, RelayedMessage};
use chat_proto::validate::{self, MESSAGE_TYPE_MAX};
use chat_proto::ws::{Ack, SendGroupMessage, SendMessage, ServerFrame, StatusFrame};
use chat_proto::{MessageStatus, Role};

use crate::auth::now_ms;
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{NewMessage, OnCommit, StatusEvent, Stored, Targets};

/// Checks a message's fields and returns its id in canonical form
/// (lowercase hyphenated): one id in two spellings (upper case, braces,
/// `urn:uuid:`) is one message, stored and relayed once.
fn check_common(id: &str, content: &str, message_type: &str) -> Result<String, ApiError> {
    validate::id(id, "id")?;
    validate::content(content)?;
    validate::name(message_type, "messageType", MESSAGE_TYPE_MAX)?;
    let canonical = uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request("id is not a valid id"))?
        .hyphenated()
        .to_string();
    Ok(canonical)
}

async fn store_and_push(
    state: &Arc<AppState>,
    message: NewMessage,
    targets: Targets,
) -> Result<Ack, ApiError> {
    let id = message.id.clone();
    let template = RelayedMessage {
        id: message.id.clone(),
        from: message.from.clone(),
        to: String::new(),
        content: message.content.clone(),
        timestamp: message.timestamp,
        status: MessageStatus::Sent,
        message_type: message.message_type.clone(),
        group_id: message.group_id.clone(),
        from_device: Some(message.from_device),
    };
    // Pushed from the commit hook, not after `store_message` returns: the
    // hooks run in commit order, so every recipient's mailbox gets its
    // messages in queue order. Pushed from here, two senders' tasks could
    // push seq 6 before seq 5, and a connection that had sent 6 would take
    // 5 for already sent (a message a live recipient never got until it
    // reconnected).
    let st = state.clone();
    let on_commit: OnCommit = Box::new(move |stored: &Stored| {
        if let Stored::New { queued, .. } = stored {
            st.metrics.messages_relayed.inc();
            for q in queued {
                let mut m = template.clone();
                m.to = q.user.clone();
                if let Some(content) = &q.content {
                    m.content = content.clone();
                }
                st.hub.push_queued(&q.user, q.device, q.seq, &m);
                if st.cluster.is_some() {
                    st.hint(
                        &q.user,
                        crate::cluster::Hint::Queued {
                            device: q.device,
                            seq: q.seq,
                            message: Box::new(m),
                        },
                    );
                }
            }
        }
    });
    let timestamp = match state
        .store
        .store_message(message, targets, on_commit)
        .await?
    {
        Stored::Duplicate { timestamp } | Stored::New { timestamp, .. } => timestamp,
    };
    Ok(Ack {
        id,
        status: MessageStatus::Sent,
        timestamp,
    })
}

/// Most copies one version-2 message may carry: every device of two
/// accounts at the largest `max_devices` there is any point in.
pub const COPIES_MAX: usize = 32;

/// A 1:1 message from `from` (the authenticated user, on `from_device`).
pub async fn send_message(
    state: &Arc<AppState>,
    from: &str,
    from_device: u32,
    m: SendMessage,
    stream: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<Ack, ApiError> {
    let copies = if m.copies.is_empty() {
        None
    } else {
        if !m.content.is_empty() {
            return Err(ApiError::bad_request(
                "a message with copies has no content of its own",
            ));
        }
        if m.copies.len() > COPIES_MAX {
            return Err(ApiError::bad_request(format!(
                "at most {COPIES_MAX} copies in one message"
            )));
        }
        for c in &m.copies {
            validate::id(&c.user_id, "copies.userId")?;
            validate::content(&c.content)?;
        }
        if m.copies
            .iter()
            .any(|c| c.user_id != m.to && c.user_id != from)
        {
            return Err(ApiError::bad_request(
                "a copy is for the recipient or the sender",
            ));
        }
        Some(m.copies)
    };
    let first = copies
        .as_ref()
        .map_or(m.content.as_str(), |c| c[0].content.as_str());
    let id = check_common(&m.id, first, &m.message_type)?;
    validate::id(&m.to, "to")?;
    // Every copy is stored and relayed: each counts.
    state.limit_messages(from, copies.as_ref().map_or(1, Vec::len))?;
    // The recipient's existence and the devices are checked inside the
    // write job (one round trip to storage per message, and atomic with
    // links and removals).
    let message = NewMessage {
        id,
        from: from.to_owned(),
        from_device,
        group_id: None,
        content: m.content,
        message_type: m.message_type,
        timestamp: now_ms(),
        stream,
    };
    let targets = Targets::Direct { to: m.to, copies };
    store_and_push(state, message, targets).await
}

/// A group message: only members may send; every other member gets a copy.
pub async fn send_group_message(
    state: &Arc<AppState>,
    from: &str,
    from_device: u32,
    m: SendGroupMessage,
) -> Result<Ack, ApiError> {
    let id = check_common(&m.id, &m.content, &m.message_type)?;
    validate::id(&m.group_id, "groupId")?;
    state.limit_messages(from, 1)?;
    member_role(state, &m.group_id, from).await?;
    let recipients: Vec<String> = state
        .store
        .member_ids(&m.group_id)
        .await?
        .into_iter()
        .filter(|u| u != from)
        .collect();
    // Fan-out is what costs: one per recipient (the first was counted).
    if recipients.len() > 1 {
        state.limit_messages(from, recipients.len() - 1)?;
    }
    let message = NewMessage {
        id,
        from: from.to_owned(),
        from_device,
        group_id: Some(m.group_id),
        content: m.content,
        message_type: m.message_type,
        timestamp: now_ms(),
        stream: None,
    };
    let targets = Targets::Group {
        members: recipients,
    };
    store_and_push(state, message, targets).await
}

/// The caller's role in a group; 404 if the group does not exist or the
/// caller is not a member (a non-member learns nothing about it).
pub async fn member_role(state: &AppState, group: &str, user: &str) -> Result<Role, ApiError> {
    state
        .store
        .role(group, user)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))
}

/// Applies `delivered` or `read` from one device of `recipient` and tells
/// the senders.
pub async fn set_status(
    state: &AppState,
    recipient: &str,
    device: u32,
    ids: Vec<String>,
    status: MessageStatus,
    from: Option<String>,
) -> Result<usize, ApiError> {
    validate::id_batch(&ids, "messageIds")?;
    if status == MessageStatus::Sent {
        return Err(ApiError::bad_request("status must be delivered or read"));
    }
    let events = state
        .store
        .set_status(recipient, device, ids, status, from)
        .await?;
    let n = events.len();
    report(state, events).await?;
    Ok(n)
}

/// Pushes status events to online senders and queues the rest.
pub async fn report(state: &AppState, events: Vec<StatusEvent>) -> Result<(), ApiError> {
    // Every push first, with no await between the commit and them: the
    // caller (a connection's pipelined `delivered`) may be dropped at any
    // await, and a status pushed late is a status lost.
    let pushed: Vec<(StatusEvent, Vec<u32>)> = events
        .into_iter()
        .map(|e| {
            let online = state.hub.send_to_devices(&e.sender, &status_frame(&e));
            (e, online)
        })
        .collect();
    // Then the sender's devices that were offline get it queued. How many
    // devices a sender has is read once per sender of the batch, and only
    // for senders with a device online (the usual case, one device online,
    // writes nothing).
    let mut offline = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (e, online) in pushed {
        let all = if online.is_empty() {
            usize::MAX
        } else if let Some(n) = counts.get(&e.sender) {
            *n
        } else {
            let n = state.store.devices(&e.sender).await?.len();
            counts.insert(e.sender.clone(), n);
            n
        };
        if online.len() < all {
            offline.push((e, online));
        }
    }
    if !offline.is_empty() {
        let mut senders: Vec<String> = offline.iter().map(|(e, _)| e.sender.clone()).collect();
        state.store.queue_status(offline).await?;
        // Stored first: the node that holds a sender's other connection
        // takes them from the database when hinted.
        senders.sort_unstable();
        senders.dedup();
        for s in senders {
            state.hint(&s, crate::cluster::Hint::Statuses);
        }
    }
    Ok(())
}

/// Tells `recipients` that a group changed: pushed to those online,
/// queued (one per user and group) for the others (and, with other nodes,
/// relayed to their connections there too). Called after the change
/// is committed and before it is answered, so a change the caller saw
/// succeed has its notices stored.
pub async fn group_changed(
    state: &AppState,
    recipients: &[String],
    change: chat_proto::ws::GroupChanged,
) -> Result<(), ApiError> {
    let group_id = change.group_id.clone();
    let frame = ServerFrame::GroupChanged(change);
    let offline: Vec<&String> = recipients
        .iter()
        .filter(|r| !state.hub.send(r, &frame))
        .collect();
    if offline.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(&frame)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let rows = offline
        .iter()
        .map(|r| ((*r).clone(), group_id.clone(), json.clone()))
        .collect();
    state.store.queue_group_events(rows).await?;
    // On other nodes: the frame for every connection there now, and the
    // stored copy for when they next connect (a notice is idempotent; a
    // second one costs a group reload).
    if state.cluster.is_some() {
        for r in offline {
            state.hint(
                r,
                crate::cluster::Hint::Frame {
                    frame: Box::new(frame.clone()),
                },
            );
        }
    }
    Ok(())
}

/// The `status` frame for an event.
pub fn status_frame(e: &StatusEvent) -> ServerFrame {
    ServerFrame::Status(StatusFrame {
        message_id: e.message_id.clone(),
        status: e.status,
        user_id: Some(e.by.clone()),
    })
}

/// Turns an error into an `error` frame answering frame `id`.
pub fn error_frame(e: ApiError, id: Option<String>) -> ServerFrame {
    ServerFrame::Error(chat_proto::ws::ErrorFrame {
        code: e.code,
        message: e.message,
        id,
        devices: e.devices,
    })
}

/// A frame that could not be parsed.
pub fn bad_frame(detail: impl Into<String>) -> ServerFrame {
    error_frame(ApiError::new(ErrorCode::BadRequest, detail), None)
}
