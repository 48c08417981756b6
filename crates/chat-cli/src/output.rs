//! How things look: one line for a person, or one JSON object a line for a
//! script. The JSON field names are documented in `docs/CLI.md`.

use std::path::Path;
use std::time::Duration;

use chat_client::{Conversation, Message, PayloadKind, Status};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// `pending`, `sent`, `delivered`, `read`.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Sent => "sent",
        Status::Delivered => "delivered",
        Status::Read => "read",
        Status::Failed => "failed",
    }
}

/// The ticks a messenger shows for an outgoing message.
fn ticks(s: Status) -> &'static str {
    match s {
        Status::Pending => "…",
        Status::Sent => "✓",
        Status::Delivered => "✓✓",
        Status::Read => "✓✓ read",
        Status::Failed => "✗ failed",
    }
}

/// `text`, `image`, `file`, ...
pub fn kind_name(k: PayloadKind) -> &'static str {
    match k {
        PayloadKind::Text => "text",
        PayloadKind::Image => "image",
        PayloadKind::File => "file",
        PayloadKind::Reply => "reply",
        PayloadKind::Reaction => "reaction",
        PayloadKind::Edit => "edit",
        PayloadKind::Delete => "delete",
        PayloadKind::Timer => "timer",
        _ => "other",
    }
}

/// `HH:MM:SS` (UTC) of a time in ms since the epoch.
pub fn clock(ms: i64) -> String {
    clock_at(ms, jiff::Timestamp::now(), zone())
}

/// The time zone times are shown in: the system's (`TZ`, else
/// `/etc/localtime`); UTC in this crate's unit tests, so they do not depend
/// on the machine.
fn zone() -> &'static jiff::tz::TimeZone {
    static ZONE: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| {
        if cfg!(test) {
            jiff::tz::TimeZone::UTC
        } else {
            jiff::tz::TimeZone::system()
        }
    })
}

/// [`clock`] as of `now` in `tz`: `14:03:07` on the same day as `now`,
/// `2026-12-01 14:03` on another.
pub fn clock_at(ms: i64, now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    let Ok(t) = jiff::Timestamp::from_millisecond(ms) else {
        return format!("@{ms}");
    };
    let t = t.to_zoned(tz.clone());
    if t.date() == now.to_zoned(tz.clone()).date() {
        t.strftime("%H:%M:%S").to_string()
    } else {
        t.strftime("%Y-%m-%d %H:%M").to_string()
    }
}

/// The first words of a text for a status line, quoted and sanitized:
/// `"dinner at eight, or…"` (at most `max` characters before the `…`).
pub fn excerpt(text: &str, max: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = one_line.chars().take(max).collect();
    if cut.len() < one_line.len() {
        cut.push('…');
    }
    format!("\"{}\"", sanitize(&cut))
}

/// A size for people: `512 B`, `12.3 KiB`, `4.0 MiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// Makes text from a peer safe to print for a person: control characters
/// (ANSI escapes, carriage returns, backspaces), direction overrides and
/// invisible characters are shown as `\u{..}` escapes, so nothing a sender
/// writes can move the cursor, erase a warning or reorder a line; a newline
/// starts an indented continuation line, so a body cannot fake a sender line
/// of its own. For JSON output, serde escapes everything already.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push(' '),
            c if c.is_control() || is_invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Direction controls, zero-width characters and the BOM.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

/// Who and where a message is, resolved to names by the caller.
pub struct Names<'a> {
    /// The sender's username ("you" for ours).
    pub sender: &'a str,
    /// "bob" or "#team".
    pub conversation: &'a str,
    /// On a reply: the quoted sender's username.
    pub quoted: Option<&'a str>,
}

/// A stored message as one line.
pub fn message_line(m: &Message, names: &Names<'_>, saved: Option<&Path>) -> String {
    let when = clock(m.server_at_ms.unwrap_or(m.sent_at_ms));
    let who = match m.conversation {
        Conversation::Group(_) => format!(
            "{} {}",
            sanitize(names.conversation),
            sanitize(names.sender)
        ),
        Conversation::Direct(_) if m.outgoing => {
            format!(
                "{} → {}",
                sanitize(names.sender),
                sanitize(names.conversation)
            )
        }
        Conversation::Direct(_) => sanitize(names.sender),
    };
    if let Some(secs) = m.timer_secs.filter(|_| !m.deleted && m.quote.is_none()) {
        return format!("[{when}] {who} {}", timer_text(secs));
    }
    let mut line = format!("[{when}] {who}: ");
    if let Some(q) = &m.quote {
        let excerpt = if q.excerpt.is_empty() {
            "(original message not available)".to_owned()
        } else {
            format!("\"{}\"", sanitize(&short(&q.excerpt, 40)))
        };
        // A quote of a message this device never had is only the
        // sender's word for who said what.
        let unverified = if m.quote_verified || q.excerpt.is_empty() {
            ""
        } else {
            " (unverified quote)"
        };
        line.push_str(&format!(
            "↪ {}{unverified}: {excerpt} │ ",
            sanitize(names.quoted.unwrap_or("?"))
        ));
    }
    if m.deleted {
        line.push_str("(this message was deleted)");
    } else if let Some(secs) = m.timer_secs {
        line.push_str(&timer_text(secs));
    } else if let Some(a) = &m.attachment {
        line.push_str(&format!(
            "[{} {} ({}, {})]",
            kind_name(m.kind),
            sanitize(&a.file_name),
            sanitize(&a.mime_type),
            size(a.size)
        ));
        if let Some(p) = saved {
            line.push_str(&format!(" saved to {}", p.display()));
        }
        if let Some(b) = m.body.as_deref().filter(|b| !b.is_empty()) {
            line.push(' ');
            line.push_str(&sanitize(b));
        }
    } else {
        line.push_str(&sanitize(m.body.as_deref().unwrap_or("")));
    }
    if m.edited_at_ms.is_some() && !m.deleted {
        line.push_str(" (edited)");
    }
    let counts = m.reaction_counts();
    if !counts.is_empty() {
        let shown: Vec<String> = counts
            .iter()
            .map(|(e, n)| format!("{} {n}", sanitize(e)))
            .collect();
        line.push_str(&format!("  [{}]", shown.join(" ")));
    }
    if let Some(secs) = m.expire_secs {
        line.push_str(&format!(
            "  ⏱ {}",
            humantime::format_duration(Duration::from_secs(u64::from(secs)))
        ));
    }
    if m.outgoing {
        line.push_str(&format!("  {}", ticks(m.status)));
    }
    line
}

/// What a timer change says.
pub fn timer_text(secs: u32) -> String {
    if secs == 0 {
        "turned disappearing messages off".into()
    } else {
        format!("set disappearing messages to {}", duration_words(secs))
    }
}

/// A timer's length in words: "1 hour", "7 days", "1 day 12 hours".
pub fn duration_words(secs: u32) -> String {
    use jiff::fmt::friendly::{Designator, Spacing, SpanPrinter};
    let span = jiff::Span::new()
        .seconds(i64::from(secs))
        .round(
            jiff::SpanRound::new()
                .largest(jiff::Unit::Day)
                .days_are_24_hours(),
        )
        .unwrap_or_else(|_| jiff::Span::new().seconds(i64::from(secs)));
    SpanPrinter::new()
        .designator(Designator::Verbose)
        .spacing(Spacing::BetweenUnitsAndDesignators)
        .span_to_string(&span)
}

/// A message's short id, as `listen`, `history` and `search` show it: its
/// last 8 characters (ours start with the time, so messages of the same
/// minute share their first ones). Any unique start or end of an id is
/// taken wherever an id is.
pub fn short_id(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// At most `n` characters of `s`, with "…" when cut.
pub(crate) fn short(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A stored message as a JSON object.
pub fn message_json(m: &Message, names: &Names<'_>, saved: Option<&Path>) -> Value {
    let (conv_kind, conv_id) = match &m.conversation {
        Conversation::Direct(u) => ("direct", u),
        Conversation::Group(g) => ("group", g),
    };
    let attachment = m.attachment.as_ref().map(|a| {
        json!({
            "fileName": a.file_name,
            "mimeType": a.mime_type,
            "size": a.size,
            "savedTo": saved.map(|p| p.display().to_string()),
        })
    });
    json!({
        "event": "message",
        "id": m.id,
        "conversation": { "type": conv_kind, "id": conv_id, "name": names.conversation },
        "from": m.sender,
        "fromName": names.sender,
        "outgoing": m.outgoing,
        "kind": kind_name(m.kind),
        "body": m.body,
        "attachment": attachment,
        "reference": m.reference,
        "quote": m.quote.as_ref().map(|q| json!({
            "sender": q.sender,
            "senderName": names.quoted,
            "excerpt": q.excerpt,
            "verified": m.quote_verified,
        })),
        "reactions": m.reactions.iter().map(|r| json!({
            "by": r.user_id, "emoji": r.emoji, "at": r.at_ms,
        })).collect::<Vec<_>>(),
        "edited": m.edited_at_ms.is_some(),
        "editedAt": m.edited_at_ms,
        "deleted": m.deleted,
        "expireSecs": m.expire_secs,
        "expiresAt": m.expires_at_ms,
        "timerSecs": m.timer_secs,
        "status": status_name(m.status),
        "sentAt": m.sent_at_ms,
        "serverAt": m.server_at_ms,
    })
}

/// Prints one JSON object on its own line.
pub fn print_json(v: &Value) {
    crate::sink::emit(crate::sink::Line::Json(v.clone()));
}

/// A spinner on stderr for work of unknown length (hidden when stderr is
/// not a terminal, or with `--json`).
pub fn spinner(json: bool, message: impl Into<String>) -> ProgressBar {
    if json || crate::sink::captured() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        pb.set_style(style);
    }
    pb.set_message(message.into());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// A byte-count progress bar on stderr (hidden as [`spinner`] is).
pub fn bytes_bar(json: bool, len: u64, message: impl Into<String>) -> ProgressBar {
    if json || crate::sink::captured() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(message.into());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(outgoing: bool, status: Status) -> Message {
        Message {
            seq: 1,
            id: "m1".into(),
            conversation: Conversation::Direct("u-bob".into()),
            sender: if outgoing { "u-me" } else { "u-bob" }.into(),
            outgoing,
            kind: PayloadKind::Text,
            body: Some("hi there".into()),
            attachment: None,
            reference: None,
            status,
            sent_at_ms: 3_723_000,
            server_at_ms: None,
            received_at_ms: None,
            read_at_ms: None,
            quote: None,
            reactions: Vec::new(),
            edited_at_ms: None,
            deleted: false,
            expire_secs: None,
            expires_at_ms: None,
            timer_secs: None,
            quote_verified: true,
        }
    }

    #[test]
    fn lines_show_quotes_reactions_edits_deletes_and_timers() {
        let n = Names {
            sender: "bob",
            conversation: "bob",
            quoted: Some("alice"),
        };
        let mut m = msg(false, Status::Delivered);
        m.quote = Some(chat_client::Quote::new(
            "u-alice",
            "what time is dinner tonight, do you know?",
        ));
        m.edited_at_ms = Some(1);
        m.expire_secs = Some(3600);
        for (who, e) in [("u-a", "👍"), ("u-b", "👍"), ("u-c", "🎉")] {
            m.reactions.push(chat_client::Reaction {
                user_id: who.into(),
                emoji: e.into(),
                at_ms: 1,
            });
        }
        assert_eq!(
            message_line(&m, &n, None),
            "[1970-01-01 01:02] bob: ↪ alice: \"what time is dinner tonight, do you know…\" │ hi there (edited)  [👍 2 🎉 1]  ⏱ 1h"
        );
        let v = message_json(&m, &n, None);
        assert_eq!(v["quote"]["senderName"], "alice");
        assert_eq!(v["quote"]["verified"], true);
        m.quote_verified = false;
        assert!(message_line(&m, &n, None).contains("↪ alice (unverified quote): \"what time"));
        m.quote_verified = true;
        assert_eq!(v["reactions"][1]["emoji"], "👍");
        assert_eq!(v["edited"], true);
        assert_eq!(v["expireSecs"], 3600);
        m.deleted = true;
        m.quote = None;
        m.reactions.clear();
        m.expire_secs = None;
        assert_eq!(
            message_line(&m, &n, None),
            "[1970-01-01 01:02] bob: (this message was deleted)"
        );
        let mut t = msg(true, Status::Sent);
        t.kind = PayloadKind::Timer;
        t.body = None;
        t.timer_secs = Some(0);
        assert!(message_line(&t, &n, None).contains("turned disappearing messages off"));
    }

    #[test]
    fn lines_show_time_sender_text_and_ticks() {
        let n = Names {
            sender: "bob",
            conversation: "bob",
            quoted: None,
        };
        assert_eq!(
            message_line(&msg(false, Status::Delivered), &n, None),
            "[1970-01-01 01:02] bob: hi there"
        );
        let n = Names {
            sender: "you",
            conversation: "bob",
            quoted: None,
        };
        assert_eq!(
            message_line(&msg(true, Status::Read), &n, None),
            "[1970-01-01 01:02] you → bob: hi there  ✓✓ read"
        );
    }

    #[test]
    fn a_peer_cannot_fake_a_line_or_erase_a_warning() {
        let mut m = msg(false, Status::Delivered);
        m.body =
            Some("ok\n[01:02:04] alice: send me the code\x1b[2K\r\u{202e}gnp.exe\u{200b}".into());
        let n = Names {
            sender: "bob\x1b[1A",
            conversation: "bob",
            quoted: None,
        };
        let line = message_line(&m, &n, None);
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\n'),
            "{line:?}"
        );
        assert!(
            !line.contains('\u{202e}') && !line.contains('\u{200b}'),
            "{line:?}"
        );
        // Every line after the first is indented: none starts like a sender line.
        assert!(
            line.lines().skip(1).all(|l| l.starts_with("    ")),
            "{line:?}"
        );
        assert!(
            line.starts_with("[1970-01-01 01:02] bob\\u{1b}[1A: ok"),
            "{line:?}"
        );
    }

    #[test]
    fn json_has_the_documented_fields() {
        let n = Names {
            sender: "bob",
            conversation: "bob",
            quoted: None,
        };
        let v = message_json(&msg(false, Status::Delivered), &n, None);
        assert_eq!(v["event"], "message");
        assert_eq!(v["fromName"], "bob");
        assert_eq!(v["body"], "hi there");
        assert_eq!(v["conversation"]["type"], "direct");
        assert_eq!(v["status"], "delivered");
        assert_eq!(v.to_string().lines().count(), 1);
    }

    #[test]
    fn sizes_and_clocks_read_well() {
        assert_eq!(size(10), "10 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(5 << 20), "5.0 MiB");
        assert_eq!(excerpt("dinner\n at  eight", 30), "\"dinner at eight\"");
        assert_eq!(excerpt("abcdef", 3), "\"abc…\"");
        assert_eq!(excerpt("né\u{202e}x", 10), "\"né\\u{202e}x\"");
        assert_eq!(clock(86_399_000), "1970-01-01 23:59");
        let tz = jiff::tz::TimeZone::fixed(jiff::tz::offset(2));
        let now = jiff::Timestamp::from_second(1_796_400_000).unwrap(); // 2026-12-04 16:00 UTC
        let ms = |s: i64| s * 1000;
        assert_eq!(clock_at(ms(1_796_400_000 - 60), now, &tz), "17:59:00");
        // 23:30 UTC on the 4th is already the 5th at UTC+2.
        assert_eq!(clock_at(ms(1_796_427_000), now, &tz), "2026-12-05 01:30");
        assert_eq!(clock_at(ms(1_796_313_600), now, &tz), "2026-12-03 18:00");
        assert_eq!(clock_at(i64::MAX, now, &tz), format!("@{}", i64::MAX));
    }
}
