//! `chat react`, `chat edit`, `chat delete` and `chat disappearing`: each
//! sends one payload in the message's conversation and waits for the
//! server's acknowledgement, like `chat send`.

use std::time::Duration;

use serde_json::json;

use crate::cli::{DeleteArgs, DisappearingArgs, EditArgs, ReactArgs};
use crate::error::{CliError, Result};
use crate::output::{self, print_json, status_name};
use crate::send::wait_acked;
use crate::session::{Ctx, Session};

/// How long each waits for the server's acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(30);

async fn acked(ctx: &Ctx, mut s: Session, event: &str, id: &str, target: &str) -> Result<()> {
    let status = wait_acked(&mut s, id, ACK_WAIT).await?;
    s.finish().await?;
    if ctx.json {
        print_json(&json!({"event": event, "id": id, "messageId": target,
            "status": status_name(status)}));
    }
    Ok(())
}

/// `chat react ID EMOJI`.
pub async fn react(ctx: &Ctx, a: &ReactArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let target = s.client.find_message_id(&a.id).await?;
    let about = crate::show::about(&mut s, &target).await;
    s.connect().await?;
    let id = s.client.react(&target, &a.emoji).await?;
    if !ctx.json {
        if a.emoji.is_empty() {
            crate::outln!("removed your reaction to {about}");
        } else {
            crate::outln!("reacted {} to {about}", output::sanitize(&a.emoji));
        }
    }
    acked(ctx, s, "reacted", &id, &target).await
}

/// `chat edit ID TEXT`.
pub async fn edit(ctx: &Ctx, a: &EditArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let target = s.client.find_message_id(&a.id).await?;
    let about = crate::show::about(&mut s, &target).await;
    s.connect().await?;
    let text = a.text.join(" ");
    let id = s.client.edit(&target, &text).await?;
    if !ctx.json {
        crate::outln!("edited {about} to “{}”", output::sanitize(&text));
    }
    acked(ctx, s, "edited", &id, &target).await
}

/// `chat delete ID [--for-me]`.
pub async fn delete(ctx: &Ctx, a: &DeleteArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let target = s.client.find_message_id(&a.id).await?;
    let about = crate::show::about(&mut s, &target).await;
    s.connect().await?;
    if a.for_me {
        s.client.delete_for_me(&target).await?;
        s.finish().await?;
        if ctx.json {
            print_json(&json!({"event": "deletedForMe", "messageId": target}));
        } else {
            crate::outln!("deleted {about} here and on your other devices");
        }
        return Ok(());
    }
    let id = s.client.delete(&target).await?;
    if !ctx.json {
        crate::outln!("deleted {about} for everyone");
    }
    acked(ctx, s, "deleted", &id, &target).await
}

/// Parses `off` or a duration such as `30s`, `1h`, `7d`, `2weeks`.
pub fn parse_timer(text: &str) -> Result<Option<Duration>> {
    if matches!(text, "off" | "0") {
        return Ok(None);
    }
    let d = humantime::parse_duration(text).map_err(|e| {
        CliError::Usage(format!(
            "`{text}` is not a timer ({e}): use `off` or a duration such as 30s, 1h, 7d"
        ))
    })?;
    let max = u64::from(chat_client::TIMER_MAX_SECS);
    // `1y` is humantime's 365.25 days: a year, so the longest timer.
    let year = humantime::parse_duration("1y").map_or(max, |y| y.as_secs());
    let secs = match d.as_secs() {
        s if s > max && s <= year => max,
        s => s,
    };
    if secs == 0 || secs > max {
        return Err(CliError::Usage(format!(
            "a timer runs from 1 second to {} days (`1y`)",
            max / 86_400
        )));
    }
    Ok(Some(Duration::from_secs(secs)))
}

#[cfg(test)]
mod timer_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_year_is_the_longest_timer_and_the_limit_is_named() {
        let max = u64::from(chat_client::TIMER_MAX_SECS);
        assert_eq!(parse_timer("1y").unwrap(), Some(Duration::from_secs(max)));
        assert_eq!(parse_timer("365d").unwrap(), Some(Duration::from_secs(max)));
        assert_eq!(parse_timer("1h").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timer("off").unwrap(), None);
        let e = parse_timer("400d").unwrap_err().to_string();
        assert!(e.contains("365 days"), "{e}");
    }
}

/// `chat disappearing USER|--group G [DURATION|off]`.
pub async fn disappearing(ctx: &Ctx, a: &DisappearingArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let mut words = a.words.iter();
    let user = match &a.group {
        Some(_) => None,
        None => Some(words.next().ok_or_else(|| {
            CliError::Usage(format!(
                "which chat? `{} disappearing USER 1h` or `--group G 1h`",
                ctx.chat()
            ))
        })?),
    };
    let conv = s
        .conversation(user.map(String::as_str), a.group.as_deref())
        .await?;
    let label = s.conversation_label(&conv).await;
    let Some(timer) = words.next() else {
        let t = s.client.disappearing(&conv).await?;
        s.close().await;
        if ctx.json {
            print_json(&json!({"event": "disappearing", "conversation": label,
                "secs": t.map_or(0, |d| d.as_secs())}));
        } else {
            match t {
                Some(d) => crate::outln!(
                    "disappearing messages in {label}: {} after reading",
                    output::duration_words(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
                ),
                None => crate::outln!("disappearing messages in {label}: off"),
            }
        }
        return Ok(());
    };
    let after = parse_timer(timer)?;
    s.connect().await?;
    let id = s.client.set_disappearing(&conv, after).await?;
    if !ctx.json {
        crate::outln!(
            "{} in {label}",
            output::timer_text(after.map_or(0, |d| d.as_secs() as u32))
        );
    }
    acked(ctx, s, "disappearingSet", &id, &id).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn timers_parse_from_words_and_bad_ones_are_usage_errors() {
        assert_eq!(parse_timer("off").unwrap(), None);
        assert_eq!(parse_timer("1h").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_timer("7d").unwrap(),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert!(matches!(parse_timer("soon"), Err(CliError::Usage(_))));
        assert!(matches!(parse_timer("400d"), Err(CliError::Usage(_))));
    }
}
