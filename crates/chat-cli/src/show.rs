//! Showing what arrives: a message (and its file), and every other event,
//! as a line for a person or a JSON object for a script.

use std::path::{Path, PathBuf};

use chat_client::{ConnectionState, Conversation, Event, Message};
use serde_json::json;

use crate::error::{CliError, Result};
use crate::output::{self, Names, print_json, status_name};
use crate::session::Session;

/// The longest name a saved file gets, in bytes: common file systems
/// allow 255, and a taken name gets the message id's prefix and a counter.
const SAVED_NAME_MAX: usize = 200;

/// A file name from a sender, made safe to write in a folder: no folder
/// part, no control characters, no leading dot, at most
/// [`SAVED_NAME_MAX`] bytes (cut on a character boundary, keeping a short
/// extension).
pub(crate) fn safe_name(file_name: &str) -> String {
    let base: String = Path::new(file_name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let base = match base.trim_start_matches('.') {
        "" => "attachment".to_owned(),
        b => b.to_owned(),
    };
    if base.len() <= SAVED_NAME_MAX {
        return base;
    }
    let ext = match base.rfind('.') {
        Some(i) if i > 0 && base.len() - i <= 16 => &base[i..],
        _ => "",
    };
    let mut end = SAVED_NAME_MAX - ext.len();
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", &base[..end])
}

/// Writes `data` to a new file in `dir` under the sender's name made safe
/// ([`safe_name`]), never replacing a file: `NAME`, else `ID-NAME` (the
/// message id's first 8 characters), else `ID-N-NAME`. Only the file made
/// here is returned (and so recorded to delete with the message).
pub(crate) fn save_new(
    dir: &Path,
    file_name: &str,
    id: &str,
    data: &[u8],
) -> std::io::Result<PathBuf> {
    use std::io::Write as _;
    let base = safe_name(file_name);
    let prefix: String = id
        .chars()
        .take(8)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    for n in 0..1000u32 {
        let name = match n {
            0 => base.clone(),
            1 => format!("{prefix}-{base}"),
            n => format!("{prefix}-{n}-{base}"),
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                if let Err(e) = f.write_all(data).and_then(|()| f.sync_all()) {
                    let _ = std::fs::remove_file(&path);
                    return Err(e);
                }
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "a thousand files of this name already",
    ))
}

pub(crate) async fn print_message(
    s: &mut Session,
    m: &Message,
    download: Option<&Path>,
) -> Result<()> {
    if !m.outgoing && matches!(m.conversation, Conversation::Direct(_)) {
        s.warn_if_untrusted(&m.sender).await;
    }
    let mut saved = None;
    let mut refused = None;
    if let (Some(dir), Some(a)) = (download, &m.attachment) {
        // A file a peer (or the server) spoiled is reported with the
        // message, never the end of `listen`: the message is still shown
        // and marked read, and `chat download ID` can try again.
        match save_attachment(s, &m.id, a, dir).await {
            Ok(path) => saved = Some(path),
            Err(CliError::Client(e)) => refused = Some(e.to_string()),
            // Nor is a file this machine could not write (a full disk, a
            // folder gone): the message is shown with the reason.
            Err(e @ CliError::Io { .. }) => refused = Some(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let sender = s.name_of(&m.sender).await;
    let conversation = s.conversation_label(&m.conversation).await;
    let quoted = match &m.quote {
        Some(q) => Some(s.name_of(&q.sender).await),
        None => None,
    };
    let names = Names {
        sender: &sender,
        conversation: &conversation,
        quoted: quoted.as_deref(),
    };
    if s.ctx.json {
        let mut v = output::message_json(m, &names, saved.as_deref());
        if let Some(r) = &refused {
            v["attachment"]["refused"] = json!(r);
        }
        print_json(&v);
    } else {
        let mut line = output::message_line(m, &names, saved.as_deref());
        if s.show_ids {
            line.push_str(&format!("  ({})", m.id));
        }
        if let Some(r) = &refused {
            line.push_str(&format!(
                "  [file not saved: {}; `{} download {}` tries again]",
                output::sanitize(r),
                s.ctx.chat(),
                m.id
            ));
        }
        crate::outln!("{line}");
    }
    Ok(())
}

/// A message as `--json` prints it, names resolved.
async fn message_json_of(s: &mut Session, m: &Message) -> serde_json::Value {
    let sender = s.name_of(&m.sender).await;
    let conversation = s.conversation_label(&m.conversation).await;
    let quoted = match &m.quote {
        Some(q) => Some(s.name_of(&q.sender).await),
        None => None,
    };
    output::message_json(
        m,
        &Names {
            sender: &sender,
            conversation: &conversation,
            quoted: quoted.as_deref(),
        },
        None,
    )
}

/// Downloads, checks and decrypts an attachment into `dir` under a safe
/// name. A refused file is a [`CliError::Client`]; a local write failure an
/// [`CliError::Io`].
pub(crate) async fn save_attachment(
    s: &mut Session,
    id: &str,
    a: &chat_client::AttachmentPointer,
    dir: &Path,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let pb = output::spinner(
        s.ctx.json,
        format!(
            "downloading {} ({})",
            output::sanitize(&a.file_name),
            output::size(a.size)
        ),
    );
    let r = s.client.download(a).await;
    pb.finish_and_clear();
    let data = r?;
    let path = save_new(dir, &a.file_name, id, &data)
        .map_err(|e| CliError::io(dir.join(safe_name(&a.file_name)), e))?;
    // Removed with the message when it is deleted or disappears.
    let full = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    s.client.record_saved_file(id, &full).await?;
    Ok(path)
}

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
                        format!(
                            "{} to {}",
                            output::excerpt(m.body.as_deref().unwrap_or(""), 30),
                            output::sanitize(&to)
                        )
                    }
                    _ => message_id,
                };
                crate::outln!("  your message {what} is {}", status_name(status));
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
                return Err(CliError::login_revoked());
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
                match emoji {
                    Some(e) => crate::outln!(
                        "  {} reacted {} to {message_id}",
                        output::sanitize(&who),
                        output::sanitize(&e)
                    ),
                    None => crate::outln!(
                        "  {} removed their reaction to {message_id}",
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
                    "  {} edited {}: {}",
                    output::sanitize(&who),
                    m.id,
                    output::sanitize(m.body.as_deref().unwrap_or(""))
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
                    "  {} deleted {message_id} for everyone",
                    output::sanitize(&who)
                );
            }
        }
        Event::DeletedForMe { message_ids } => {
            if json {
                print_json(&json!({"event": "deletedForMe", "messageIds": message_ids}));
            } else {
                crate::outln!(
                    "  deleted on another of your devices: {}",
                    message_ids.join(", ")
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn received_file_names_cannot_escape_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        for evil in [
            "../../etc/passwd",
            "/etc/shadow",
            "..",
            "",
            ".bashrc",
            "a\nb",
        ] {
            let p = save_new(dir.path(), evil, "12345678-abcd", b"x").unwrap();
            assert_eq!(p.parent(), Some(dir.path()), "{evil:?} gave {p:?}");
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(!name.starts_with('.') && !name.contains('\n'), "{name:?}");
        }
        std::fs::write(dir.path().join("x.txt"), b"taken").unwrap();
        let p = save_new(dir.path(), "x.txt", "12345678-abcd", b"new").unwrap();
        assert_eq!(p.file_name().unwrap(), "12345678-x.txt");
    }

    /// A peer's file name at and past the file system's limit (255 bytes)
    /// is saved under a bounded name, cut on a character boundary, keeping
    /// a short extension.
    #[test]
    fn long_file_names_are_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "a".repeat(255),
            "b".repeat(256),
            format!("{}.pdf", "c".repeat(300)),
            "é".repeat(150),
        ];
        for (i, name) in names.iter().enumerate() {
            let id = format!("{i:08}-abcd");
            let p = save_new(dir.path(), name, &id, b"data").unwrap();
            let saved = p.file_name().unwrap().to_str().unwrap().to_owned();
            assert!(saved.len() <= 255, "{} bytes", saved.len());
            assert_eq!(std::fs::read(&p).unwrap(), b"data");
            if name.ends_with(".pdf") {
                assert!(saved.ends_with(".pdf"), "{saved}");
            }
            // Taken twice over: still a new file, still bounded.
            let again = save_new(dir.path(), name, &id, b"more").unwrap();
            let twice = save_new(dir.path(), name, &id, b"most").unwrap();
            assert!(again != p && twice != p && twice != again);
            assert!(twice.file_name().unwrap().len() <= 255);
            assert_eq!(std::fs::read(&p).unwrap(), b"data");
        }
    }

    /// A saved download never overwrites a file: not one the user had, not
    /// one another message saved, not the fallback name's owner.
    #[test]
    fn a_download_never_overwrites_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("x.txt"), b"mine").unwrap();
        std::fs::write(d.join("12345678-x.txt"), b"also mine").unwrap();
        let p = save_new(d, "x.txt", "12345678-abcd", b"theirs").unwrap();
        assert_eq!(std::fs::read(d.join("x.txt")).unwrap(), b"mine");
        assert_eq!(
            std::fs::read(d.join("12345678-x.txt")).unwrap(),
            b"also mine"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"theirs");
    }
}
