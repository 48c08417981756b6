//! `chat devices`: the account's devices (protocol version 2). Listing and
//! removing work; `chat link` (adding one) is not built yet.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use crate::cli::DevicesCommand;
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
                    println!(
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
        Some(DevicesCommand::Remove { device_id }) => {
            s.client.remove_device(device_id).await?;
            if ctx.json {
                print_json(&json!({"event": "deviceRemoved", "deviceId": device_id}));
            } else {
                println!("removed device {device_id}: its logins stopped working");
            }
        }
    }
    s.finish().await
}
