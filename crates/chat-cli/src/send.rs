//! `chat send`: a text, a reply, a file or an image, waited for until the
//! server acknowledges it (also used by `react`, `edit`, `delete` and
//! `disappearing`).

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use chat_client::{Attachment, ClientError, ConnectionState, Event, Status};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use crate::cli::SendArgs;
use crate::error::{CliError, Result};
use crate::output::{self, print_json, status_name};
use crate::session::{Ctx, Session};

/// A MIME type from a file name's extension.
fn mime_for(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "md" | "log" => "text/plain",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// Reads a file with a progress bar.
fn read_file(path: &Path, json: bool) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).map_err(|e| CliError::io(path, e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let pb = output::bytes_bar(json, len, "reading");
    let mut data = Vec::with_capacity(len as usize);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| CliError::io(path, e))?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    Ok(data)
}

pub(crate) async fn send(ctx: &Ctx, a: SendArgs) -> Result<()> {
    // JSON requests may name `to` and `text` instead of the words.
    let mut words: Vec<String> = a.to.into_iter().chain(a.words).collect();
    words.extend(a.text);
    let mut words = words.into_iter();
    let user = match &a.group {
        Some(_) => None,
        None => Some(words.next().ok_or_else(|| {
            CliError::Usage(
                "whom to? `chat send USER TEXT` or `chat send --group GROUP TEXT`".into(),
            )
        })?),
    };
    let mut text = words.collect::<Vec<_>>().join(" ");
    if text == "-" && crate::sink::captured() {
        return Err(CliError::Usage(
            "the daemon cannot read your stdin: send the text itself".into(),
        ));
    }
    if text == "-" {
        text.clear();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::io("stdin", e))?;
        text = text.trim_end_matches('\n').to_owned();
    }
    // What is wrong with the words is said before the passphrase is asked.
    let file = a
        .image
        .as_ref()
        .map(|p| (p, true))
        .or(a.file.as_ref().map(|p| (p, false)));
    match file {
        Some((path, true)) if !mime_for(path).starts_with("image/") => {
            return Err(CliError::Usage(format!(
                "{} does not look like an image (png, jpg, gif, webp, heic, svg); send it with --file",
                path.display()
            )));
        }
        None if text.is_empty() => {
            return Err(CliError::Usage(
                "nothing to send: give a text, --file or --image".into(),
            ));
        }
        _ => {}
    }
    let mut s = ctx.open(false).await?;
    let conv = s.conversation(user.as_deref(), a.group.as_deref()).await?;
    let label = s.conversation_label(&conv).await;
    if !a.no_wait {
        s.connect().await?;
    }
    let id = match file {
        Some((path, _)) => {
            let mime = mime_for(path);
            let data = read_file(path, ctx.json)?;
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            let pb = output::spinner(
                ctx.json,
                format!(
                    "encrypting and uploading {file_name} ({})",
                    output::size(data.len() as u64)
                ),
            );
            let r = s
                .client
                .send_attachment(
                    &conv,
                    Attachment {
                        data,
                        mime_type: mime.to_owned(),
                        file_name,
                        caption: (!text.is_empty()).then_some(text),
                    },
                )
                .await;
            pb.finish_and_clear();
            r
        }
        None => match &a.reply_to {
            Some(r) => match s.client.find_message_id(r).await {
                Ok(full) => s.client.reply(&conv, &full, &text).await,
                // A message this device never had is quoted by its full id.
                Err(ClientError::NoSuchMessage(_)) if r.len() == 36 => {
                    s.client.reply(&conv, r, &text).await
                }
                Err(e) => Err(e),
            },
            None => s.client.send_text(&conv, &text).await,
        },
    };
    let id = match id {
        Err(ClientError::UntrustedIdentity { user_id, .. }) => {
            let e = untrusted(&mut s, &user_id).await;
            s.close().await;
            return Err(e);
        }
        other => other?,
    };
    if a.no_wait {
        s.close().await;
        return report_sent(ctx, &id, &label, Status::Pending);
    }
    let status = wait_acked(&mut s, &id, Duration::from_secs(a.timeout)).await?;
    s.finish().await?;
    report_sent(ctx, &id, &label, status)
}

fn report_sent(ctx: &Ctx, id: &str, label: &str, status: Status) -> Result<()> {
    if ctx.json {
        print_json(&json!({"event": "sent", "id": id, "to": label, "status": status_name(status)}));
    } else if status == Status::Pending {
        crate::outln!(
            "queued for {label} ({id}); it goes out with the next `chat` command that connects"
        );
    } else {
        crate::outln!("{} to {label} ({id})", status_name(status));
    }
    Ok(())
}

/// A send to someone whose key is not trusted, said with their name (not
/// their id) and what to do: the message waits in the outbox.
async fn untrusted(s: &mut Session, user_id: &str) -> CliError {
    let name = output::sanitize(&s.name_of(user_id).await);
    let chat = s.ctx.chat();
    CliError::Refused(format!(
        "{name}'s safety number changed and the new key is not trusted: nothing was sent to \
         {name}, and the message waits in the outbox. Compare safety numbers \
         (`{chat} safety-number {name}`), then `{chat} verify {name}` (or `{chat} trust \
         {name}`) sends it"
    ))
}

/// The server's reason for refusing message `id`, if its `SendFailed`
/// comes within 200 ms (it follows the outbox removal closely).
async fn refusal(s: &mut Session, id: &str) -> Option<String> {
    let settle = Instant::now() + Duration::from_millis(200);
    while let Ok(Some(e)) = tokio::time::timeout_at(settle, s.events.next()).await {
        if let Event::SendFailed {
            message_id,
            message,
            ..
        } = e
            && message_id == id
        {
            return Some(message);
        }
    }
    None
}

/// Waits for the server's `ack` (or a later status) of our message.
pub(crate) async fn wait_acked(s: &mut Session, id: &str, limit: Duration) -> Result<Status> {
    let deadline = Instant::now() + limit;
    loop {
        // The store is the truth; events only wake us up.
        match s.client.message(id).await? {
            // Refused for good (too large for the server, an unknown
            // recipient…): exit 7, with the server's reason when it came.
            Some(m) if m.status == Status::Failed => {
                let why = refusal(s, id)
                    .await
                    .unwrap_or_else(|| format!("message {id} was refused for good"));
                s.close().await;
                return Err(CliError::Refused(why));
            }
            Some(m) if m.status != Status::Pending => return Ok(m.status),
            Some(_) => {}
            // A reaction, edit, delete or timer is no message of its own:
            // acknowledged once it left the outbox, unless it left refused
            // (the event follows the removal closely).
            None if !s.client.outbox().await?.iter().any(|e| e.message_id == id) => {
                if let Some(why) = refusal(s, id).await {
                    s.close().await;
                    return Err(CliError::Refused(why));
                }
                return Ok(Status::Sent);
            }
            None => {}
        }
        let wake = (Instant::now() + Duration::from_millis(200)).min(deadline);
        match tokio::time::timeout_at(wake, s.events.next()).await {
            Ok(Some(Event::SendFailed {
                message_id,
                message,
                ..
            })) if message_id == id => {
                s.close().await;
                return Err(CliError::Refused(message));
            }
            // The recipient's key changed on the way (a device-set
            // refusal brought another key): the message waits in the
            // outbox for `chat trust` or `chat verify`.
            Ok(Some(Event::SendHeld {
                message_id,
                user_id,
            })) if message_id == id => {
                let e = untrusted(s, &user_id).await;
                s.close().await;
                return Err(e);
            }
            Ok(Some(Event::Connection(ConnectionState::LoggedOut))) => {
                return Err(s.login_refused().await);
            }
            _ if Instant::now() >= deadline => {
                s.close().await;
                return Err(CliError::Timeout(format!(
                    "the server did not acknowledge {id} within {} s; it stays in the outbox \
                     and goes out with the next `chat` command that connects",
                    limit.as_secs()
                )));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mime_types_follow_the_extension() {
        assert_eq!(mime_for(Path::new("a/b.PNG")), "image/png");
        assert_eq!(mime_for(Path::new("report.pdf")), "application/pdf");
        assert_eq!(mime_for(Path::new("noext")), "application/octet-stream");
    }
}
