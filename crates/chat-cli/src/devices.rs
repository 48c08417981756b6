//! `chat devices` and `chat link`: the account's devices (protocol version
//! 2). `chat link` on a new profile shows a code (QR and text);
//! `chat devices link CODE` on a linked device approves it.

use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use crate::cli::DevicesCommand;
use crate::error::CliError;
use crate::error::Result;
use crate::output::{print_json, sanitize};
use crate::session::Ctx;

/// A time in ms since the epoch as `2026-12-02T14:06:15Z`.
fn when(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Runs `chat devices [remove ID]`.
pub async fn devices(ctx: &Ctx, cmd: Option<DevicesCommand>) -> Result<()> {
    let s = ctx.open(false).await?;
    match cmd {
        None | Some(DevicesCommand::List) => {
            let list = s.client.devices().await?;
            for d in &list.devices {
                let this = d.device_id == list.current;
                if ctx.json {
                    print_json(&json!({"event": "device", "deviceId": d.device_id,
                        "name": d.name, "createdAt": d.created_at, "lastSeen": d.last_seen,
                        "current": this}));
                } else {
                    crate::outln!(
                        "{:>3}  {:<24} linked {}  last seen {}{}",
                        d.device_id,
                        sanitize(&d.name),
                        when(d.created_at),
                        when(d.last_seen),
                        if this { "  (this device)" } else { "" }
                    );
                }
            }
        }
        Some(DevicesCommand::Link { code }) => {
            s.client.approve_link(&code).await?;
            if ctx.json {
                print_json(&json!({"event": "linkApproved"}));
            } else {
                crate::outln!(
                    "approved: the new device is linking now (see `{} devices`)",
                    ctx.chat()
                );
            }
        }
        Some(DevicesCommand::Remove { device_id, yes }) => {
            let this = s.client.device_id().await?;
            if device_id == this && !yes {
                let asked = crate::sink::interactive()
                    && ask(&format!(
                        "Device {device_id} is this one: removing it logs this profile out. \
                         Remove it? [y/N] "
                    ))?;
                if !asked {
                    s.close().await;
                    return Err(CliError::Usage(format!(
                        "device {device_id} is the one this profile runs on: not removed \
                         (pass --yes to remove it all the same)"
                    )));
                }
            }
            s.client.remove_device(device_id).await?;
            if ctx.json {
                print_json(&json!({"event": "deviceRemoved", "deviceId": device_id}));
            } else {
                crate::outln!("removed device {device_id}: its logins stopped working");
            }
        }
    }
    s.finish().await
}

fn already_linked(ctx: &Ctx) -> CliError {
    CliError::Usage(format!(
        "profile {:?} already has an account: link from a new profile (`chat -P NAME link`)",
        ctx.profile.name
    ))
}

/// Asks a yes/no question on the terminal; true only for yes.
pub(crate) fn ask(question: &str) -> Result<bool> {
    print!("{question}");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::io("stdin", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The code as a QR code for a terminal (two rows of modules per line).
/// A scanner wants dark modules on a light ground with a light quiet zone
/// around: the light modules are drawn (block characters, in the
/// terminal's text colour) and the dark ones left as background. At a
/// terminal with colour on, each line also sets white text on a black
/// ground, so the code reads the same on light and dark themes; without
/// colour (NO_COLOR, a pipe) it is right on a dark terminal, the common
/// case, and inverted on a light one.
pub(crate) fn qr(code: &str) -> Option<String> {
    let plain = qr_plain(code)?;
    let colour = crate::sink::interactive()
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if !colour {
        return Some(plain);
    }
    Some(
        plain
            .lines()
            .map(|l| format!("\x1b[97;40m{l}\x1b[0m"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn qr_plain(code: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let q = qrcode::QrCode::new(code.as_bytes()).ok()?;
    Some(
        q.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// `chat link [--name NAME]`: makes this (new) profile a device of an
/// account that is already on another device.
pub async fn link(ctx: &Ctx, name: Option<String>, yes: bool) -> Result<()> {
    if !yes && !crate::sink::interactive() {
        return Err(CliError::Usage(
            "chat link asks you to confirm the account that answers; with no terminal, pass \
             --yes (only when the code was shown to no one but your own device)"
                .into(),
        ));
    }
    if ctx.profile.has_store() {
        // A profile that saved its server has an account: said before the
        // passphrase is asked (link_in checks the store itself too).
        if ctx.profile.load()?.server_url.is_some() {
            return Err(already_linked(ctx));
        }
        return link_in(ctx, name, yes).await;
    }
    let staged = ctx.staged();
    staged.profile.discard();
    match link_in(&staged, name, yes).await {
        Ok(()) => ctx.profile.adopt(&staged.profile),
        Err(e) => {
            staged.profile.discard();
            Err(e)
        }
    }
}

async fn link_in(ctx: &Ctx, name: Option<String>, yes: bool) -> Result<()> {
    let s = ctx.open(true).await?;
    if s.client.account().is_some() {
        return Err(already_linked(ctx));
    }
    let name = name.unwrap_or_else(|| format!("chat ({})", ctx.profile.name));
    let pending = s.client.start_link(&name).await?;
    let code = pending.code();
    if ctx.json {
        print_json(&json!({"event": "linkCode", "code": code,
            "expiresAt": pending.expires_at()}));
    } else {
        if let Some(q) = qr(&code) {
            crate::outln!("{q}");
        }
        crate::outln!("{code}");
        crate::outln!(
            "\nOn a device of the account, scan this or run:\n  chat devices link '{code}'\n\
             Waiting (until {})...",
            when(pending.expires_at())
        );
    }
    let arrived = pending.arrive().await?;
    let (username, fingerprint) = (arrived.username().to_owned(), arrived.fingerprint());
    if ctx.json {
        print_json(&json!({"event": "linkAnswered", "username": username,
            "fingerprint": fingerprint}));
    }
    if !yes {
        crate::outln!(
            "\nThe account {} answered, fingerprint\n  {fingerprint}\n\
             Check it on one of its devices (`chat whoami` there).",
            sanitize(&username)
        );
        if !ask(&format!(
            "Link this device to {}? [y/N] ",
            sanitize(&username)
        ))? {
            s.close().await;
            return Err(CliError::Usage(format!(
                "not linked: {} was not confirmed (nothing was registered)",
                sanitize(&username)
            )));
        }
    }
    let linked = arrived.accept().await?;
    s.save_server()?;
    let fp = s.client.fingerprint().await?;
    if ctx.json {
        print_json(&json!({"event": "linked", "userId": linked.account.user_id,
            "username": linked.account.username, "deviceId": linked.device_id,
            "fingerprint": fp, "profile": ctx.profile.name, "tookMs": linked.took_ms}));
    } else {
        crate::outln!(
            "linked as device {} of {} (profile {}); fingerprint {fp}",
            linked.device_id,
            linked.account.username,
            ctx.profile.name
        );
    }
    s.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// The terminal rendering as a dark terminal shows it: a drawn half
    /// block is light, background is dark. Each module becomes 4x4 pixels.
    fn pixels(text: &str) -> (usize, usize, Vec<u8>) {
        let rows: Vec<Vec<(bool, bool)>> = text
            .lines()
            .map(|l| {
                l.chars()
                    .map(|c| match c {
                        '█' => (true, true),
                        '▀' => (true, false),
                        '▄' => (false, true),
                        _ => (false, false),
                    })
                    .collect()
            })
            .collect();
        let w = rows.iter().map(Vec::len).max().unwrap_or(0);
        let h = rows.len() * 2;
        let mut modules = vec![0u8; w * h];
        for (y, row) in rows.iter().enumerate() {
            for (x, (top, bottom)) in row.iter().enumerate() {
                modules[2 * y * w + x] = if *top { 255 } else { 0 };
                modules[(2 * y + 1) * w + x] = if *bottom { 255 } else { 0 };
            }
        }
        (w, h, modules)
    }

    /// The link code and a safety number, rendered as `chat link` and
    /// `safety-number --qr` print them, decode with a QR reader (rqrr) as a
    /// dark terminal shows them, with a light quiet zone all around.
    #[test]
    fn terminal_qr_codes_decode_on_a_dark_terminal() {
        for code in [
            "e2ee-link:2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEy",
            "123456789012345678901234567890123456789012345678901234567890",
        ] {
            let text = super::qr_plain(code).unwrap();
            let (w, h, m) = pixels(&text);
            // The quiet zone: the outer ring of modules is light.
            assert!(m[..w].iter().all(|p| *p == 255), "top edge dark");
            // (The last line's lower half is past the code when its rows
            // are odd: terminal ground, as below any text.)
            assert!((0..h - 1).all(|y| m[y * w] == 255), "left edge dark");
            let scale = 4;
            let mut img =
                rqrr::PreparedImage::prepare_from_greyscale(w * scale, h * scale, |x, y| {
                    m[(y / scale) * w + x / scale]
                });
            let grids = img.detect_grids();
            assert_eq!(grids.len(), 1, "{text}");
            let (_, content) = grids[0].decode().expect("decodes");
            assert_eq!(content, code);
        }
    }
}
