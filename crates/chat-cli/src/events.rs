//! Showing every event but a message, as a line for a person or a JSON
//! object for a script: receipts, typing, presence, group changes in words
//! ("bob removed carol in #trio"), reactions and edits with what they are
//! about ("bob reacted 👍 to “Lunch on Friday?”"), never a bare id.

use chat_client::{ConnectionState, Event};
use serde_json::json;

use crate::error::Result;
use crate::output::{self, print_json, status_name};
use crate::session::Session;
use crate::show::{about, message_json_of, print_message};

/// Prints anything but a message. Returns an error for a revoked login.
pub(crate) async fn print_event(s: &mut Session, e: Event) -> Result<()> {
    let json = s.ctx.json;
    match e {
        Event::Message(_) => {}
        Event::Status { message_id, status } => {
            if json {
                print_json(&json!({"event": "status", "messageId": message_id,
                    "status": status_name(status)}));
            } else {
                let what = match s.client.message(&message_id).await {
                    Ok(Some(m)) => {
                        let to = s.conversation_label(&m.conversation).await;
                        let text = m.body.as_deref().filter(|b| !b.is_empty());
                        let what = match (&m.attachment, text, m.timer_secs) {
                            (_, _, Some(secs)) => {
                                format!("timer change ({})", output::duration_words(secs))
                            }
                            (_, Some(t), _) => format!("message {}", output::excerpt(t, 30)),
                            (Some(a), None, _) => format!(
                                "{} {}",
                                output::kind_name(m.kind),
                                output::sanitize(&a.file_name)
                            ),
                            (None, None, None) => {
                                format!("message {}", output::short_id(&m.id))
                            }
                        };
                        format!("{what} to {}", output::sanitize(&to))
                    }
                    _ => format!("message {}", output::short_id(&message_id)),
                };
                crate::outln!("  your {what} is {}", status_name(status));
            }
        }
        // Per-member receipts are for scripts; people see `Status`.
        Event::Receipt {
            message_id,
            by,
            status,
        } if json => {
            let name = s.name_of(&by).await;
            print_json(
                &json!({"event": "receipt", "messageId": message_id, "by": by,
                "byName": name, "status": status_name(status)}),
            );
        }
        Event::Typing {
            from,
            group_id,
            typing,
        } => {
            let who = s.name_of(&from).await;
            let place = match &group_id {
                Some(g) => format!(" in #{}", s.group_name(g).await),
                None => String::new(),
            };
            if json {
                print_json(&json!({"event": "typing", "from": from, "fromName": who,
                    "groupId": group_id, "typing": typing}));
            } else if typing {
                crate::outln!(
                    "  {} is typing{}…",
                    output::sanitize(&who),
                    output::sanitize(&place)
                );
            } else {
                crate::outln!(
                    "  {} stopped typing{}",
                    output::sanitize(&who),
                    output::sanitize(&place)
                );
            }
        }
        Event::Presence {
            user_id,
            username,
            online,
        } => {
            // Your own presence (another device, a short-lived command of
            // yours) is not news to you.
            if s.client.account().is_some_and(|me| me.user_id == user_id) {
                return Ok(());
            }
            if json {
                print_json(&json!({"event": "presence", "userId": user_id,
                    "username": username, "online": online}));
            } else {
                crate::outln!(
                    "  {username} is {}",
                    if online { "online" } else { "offline" }
                );
            }
        }
        Event::IdentityChanged {
            user_id,
            was_verified,
        } => {
            let who = s.name_of(&user_id).await;
            if json {
                print_json(&json!({"event": "identityChanged", "userId": user_id,
                    "username": who, "wasVerified": was_verified}));
            } else {
                crate::outln!(
                    "  WARNING: {who}'s identity key changed{}. Compare safety numbers again: {} safety-number {who}",
                    if was_verified {
                        " (it was verified!)"
                    } else {
                        ""
                    },
                    s.ctx.chat()
                );
            }
        }
        Event::GroupChanged { group_id } => {
            let name = s.group_name(&group_id).await;
            // What happened, from the newest verified change: "alice
            // removed carol", not "#trio changed".
            let last = s
                .client
                .group_changes(&group_id)
                .await
                .ok()
                .and_then(|c| c.into_iter().last());
            let me = s.client.account().map(|a| a.user_id).unwrap_or_default();
            let said = match &last {
                Some(c) => {
                    let by = s.name_of(&c.by).await;
                    Some(match &c.action {
                        chat_client::MembershipAction::Removed { user_id } if *user_id == me => {
                            format!("you were removed from #{name} by {by}")
                        }
                        chat_client::MembershipAction::RoleChanged { user_id, role }
                            if *user_id == me =>
                        {
                            format!("{by} made you {role} of #{name}")
                        }
                        chat_client::MembershipAction::OwnershipTransferred { user_id }
                            if *user_id == me =>
                        {
                            format!("{by} handed #{name} to you: you are its owner")
                        }
                        a => {
                            let what = crate::groups::describe(s, a).await;
                            let by = if c.by == me { "you".to_owned() } else { by };
                            format!("{by} {what} in #{name}")
                        }
                    })
                }
                None => None,
            };
            if json {
                print_json(
                    &json!({"event": "groupChanged", "groupId": group_id, "name": name,
                    "change": said, "by": last.as_ref().map(|c| c.by.clone())}),
                );
            } else {
                let said = said.unwrap_or_else(|| format!("#{name} changed"));
                crate::outln!("  {}", output::sanitize(&said));
            }
        }
        Event::RemovedFromGroup {
            group_id,
            by,
            deleted,
        } => {
            let name = s.group_name(&group_id).await;
            let who = s.name_of(&by).await;
            if json {
                print_json(
                    &json!({"event": if deleted { "groupDeleted" } else { "removedFromGroup" },
                    "groupId": group_id, "name": name, "by": by, "byName": who}),
                );
            } else {
                let said = if deleted {
                    format!("{who} deleted #{name}")
                } else {
                    format!("you were removed from #{name} by {who}")
                };
                crate::outln!("  {}", output::sanitize(&said));
            }
        }
        Event::ContactKeyMismatch { user_id } => {
            if json {
                print_json(&json!({"event": "contactKeyMismatch", "userId": user_id}));
            } else {
                let name = output::sanitize(&s.name_of(&user_id).await);
                crate::outln!(
                    "  warning: your other device pinned another key for {name}: compare \
                     safety numbers with them (chat safety-number {name})"
                );
            }
        }
        Event::SendHeld {
            message_id,
            user_id,
        } => {
            if json {
                print_json(&json!({"event": "sendHeld", "messageId": message_id,
                    "userId": user_id}));
            } else {
                crate::outln!(
                    "  your message {message_id} is held: the safety number of {} changed \
                     and the new key is not trusted (compare, then `chat verify` or `chat trust`)",
                    output::sanitize(&user_id)
                );
            }
        }
        Event::SendFailed {
            message_id,
            message,
            ..
        } => {
            if json {
                print_json(&json!({"event": "sendFailed", "messageId": message_id,
                    "message": message}));
            } else {
                crate::outln!(
                    "  the server refused your message {message_id}: {}",
                    output::sanitize(&message)
                );
            }
        }
        Event::Undecryptable {
            message_id,
            from,
            error,
        } => {
            let who = s.name_of(&from).await;
            if json {
                print_json(&json!({"event": "undecryptable", "messageId": message_id,
                    "from": from, "fromName": who, "error": error}));
            } else {
                crate::outln!(
                    "  a message from {who} could not be decrypted: {}",
                    output::sanitize(&error)
                );
            }
        }
        Event::Connection(state) => match state {
            ConnectionState::LoggedOut => {
                return Err(s.login_refused().await);
            }
            ConnectionState::Connected => {
                if json {
                    print_json(&json!({"event": "connection", "state": "connected"}));
                } else if std::mem::take(&mut s.outage) {
                    crate::errln!("  connected again");
                } else {
                    crate::errln!("  connected");
                }
            }
            ConnectionState::Disconnected { error, retry_in } => {
                if json {
                    print_json(&json!({"event": "connection", "state": "disconnected",
                        "error": error, "retryInMs": retry_in.as_millis() as u64}));
                } else if !std::mem::replace(&mut s.outage, true) {
                    // Once per outage: the retries that follow are quiet.
                    crate::errln!(
                        "  lost the connection to the server ({}); reconnecting by itself",
                        output::sanitize(&error)
                    );
                }
            }
            _ => {}
        },
        Event::DeviceLinked { device_id, name } => {
            if json {
                print_json(&json!({"event": "deviceLinked", "deviceId": device_id, "name": name}));
            } else {
                crate::outln!(
                    "  a device was linked to your account: {} (device {device_id}); if it was \
                     not you, remove it: `{} devices remove {device_id}`",
                    output::sanitize(&name),
                    s.ctx.chat()
                );
            }
        }
        Event::DeviceRemoved { device_id, name } => {
            if json {
                print_json(&json!({"event": "deviceRemoved", "deviceId": device_id, "name": name}));
            } else {
                crate::outln!(
                    "  device {device_id} ({}) was removed from your account",
                    output::sanitize(&name)
                );
            }
        }
        Event::MembershipUnverified {
            group_id,
            user_ids,
            reason,
        } => {
            let name = s.group_name(&group_id).await;
            let mut who = Vec::new();
            for u in &user_ids {
                who.push(s.name_of(u).await);
            }
            if json {
                print_json(
                    &json!({"event": "membershipUnverified", "groupId": group_id,
                    "name": name, "userIds": user_ids, "usernames": who, "reason": reason}),
                );
            } else {
                crate::outln!(
                    "  warning: the server lists {} in #{} but no signed change admits them \
                     ({}): they get none of your messages and theirs are not shown",
                    output::sanitize(&who.join(", ")),
                    output::sanitize(&name),
                    output::sanitize(&reason)
                );
            }
        }
        Event::Reaction {
            message_id,
            by,
            emoji,
            ..
        } => {
            let who = s.name_of(&by).await;
            if json {
                print_json(
                    &json!({"event": "reaction", "messageId": message_id, "by": by,
                    "byName": who, "emoji": emoji}),
                );
            } else {
                let what = about(s, &message_id).await;
                match emoji {
                    Some(e) => crate::outln!(
                        "  {} reacted {} to {what}",
                        output::sanitize(&who),
                        output::sanitize(&e)
                    ),
                    None => crate::outln!(
                        "  {} removed their reaction to {what}",
                        output::sanitize(&who)
                    ),
                }
            }
        }
        Event::Edited(m) => {
            if json {
                let mut v = message_json_of(s, &m).await;
                v["event"] = json!("edited");
                print_json(&v);
            } else {
                let who = s.name_of(&m.sender).await;
                crate::outln!(
                    "  {} edited a message to “{}”  ({})",
                    output::sanitize(&who),
                    output::sanitize(m.body.as_deref().unwrap_or("")),
                    output::short_id(&m.id)
                );
            }
        }
        Event::Deleted { message_id, by, .. } => {
            let who = s.name_of(&by).await;
            if json {
                print_json(
                    &json!({"event": "deleted", "messageId": message_id, "by": by,
                    "byName": who}),
                );
            } else {
                crate::outln!(
                    "  {} deleted a message for everyone  ({})",
                    output::sanitize(&who),
                    output::short_id(&message_id)
                );
            }
        }
        Event::DeletedForMe { message_ids } => {
            if json {
                print_json(&json!({"event": "deletedForMe", "messageIds": message_ids}));
            } else {
                let ids: Vec<&str> = message_ids.iter().map(|i| output::short_id(i)).collect();
                crate::outln!(
                    "  {} message(s) deleted on another of your devices ({})",
                    ids.len(),
                    ids.join(", ")
                );
            }
        }
        Event::DisappearingChanged { message, .. } => {
            print_message(s, &message, None).await?;
        }
        Event::Expired { message_ids } => {
            if json {
                print_json(&json!({"event": "expired", "messageIds": message_ids}));
            } else {
                crate::outln!("  {} disappearing message(s) expired", message_ids.len());
            }
        }
        Event::Refused {
            message_id,
            from,
            reason,
        } => {
            let who = s.name_of(&from).await;
            if json {
                print_json(
                    &json!({"event": "refused", "messageId": message_id, "from": from,
                    "fromName": who, "reason": reason}),
                );
            } else {
                let message_id = output::short_id(&message_id);
                crate::outln!(
                    "  refused a change from {} ({message_id}): {}",
                    output::sanitize(&who),
                    output::sanitize(&reason)
                );
            }
        }
        Event::Lagged { missed } => {
            if json {
                print_json(&json!({"event": "lagged", "missed": missed}));
            } else {
                crate::errln!(
                    "  fell behind by {missed} events (everything is stored: see `{} history`)",
                    s.ctx.chat()
                );
            }
        }
        _ => {}
    }
    Ok(())
}
