//! Showing what arrives: a message (and its file), and every other event,
//! as a line for a person or a JSON object for a script.

use std::path::{Path, PathBuf};

use chat_client::{Conversation, Message};
use serde_json::json;

use crate::error::{CliError, Result};
use crate::output::{self, Names, print_json};
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
        } else {
            line.push_str(&format!("  ({})", output::short_id(&m.id)));
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
pub(crate) async fn message_json_of(s: &mut Session, m: &Message) -> serde_json::Value {
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

/// What a reaction, edit or deletion is about, for a person: the start of
/// the message's text in quotes (“Lunch on Friday?”), its file ("the photo
/// cat.png"), or its short id when this device does not hold it.
pub(crate) async fn about(s: &mut Session, id: &str) -> String {
    let m = s.client.message(id).await.ok().flatten();
    match m {
        Some(m) if m.deleted => format!("a deleted message ({})", output::short_id(id)),
        Some(m) => match (&m.attachment, m.body.as_deref().filter(|b| !b.is_empty())) {
            (_, Some(text)) => format!("“{}”", output::sanitize(&output::short(text, 40))),
            (Some(a), None) => format!(
                "the {} {}",
                output::kind_name(m.kind),
                output::sanitize(&a.file_name)
            ),
            (None, None) => format!("a message ({})", output::short_id(id)),
        },
        None => format!(
            "a message this device does not hold ({})",
            output::short_id(id)
        ),
    }
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
