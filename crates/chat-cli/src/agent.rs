//! Unlock once, like ssh-agent: a command that asked for the store
//! passphrase at the terminal leaves the unlocked store in a background
//! `chat daemon` for the profile (the agent), which later commands go
//! through without a prompt. It stops by itself after `unlock_ttl`
//! seconds without a client (profile.toml; 600 by default; 0: never
//! start one), at `chat lock`, or with SIGTERM. `--no-agent` or
//! `E2EE_CHAT_NO_AGENT=1` opts out; a passphrase from a file or the
//! environment (scripts, CI) never starts one.

use std::io::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::cli::{Cli, Command};
use crate::error::{CliError, Result};
use crate::session::Ctx;

/// The agent's idle time when the profile does not set `unlock_ttl`.
pub const DEFAULT_TTL_SECS: u64 = 600;

/// The passphrase typed at this process's prompt, once it opened the
/// store: what the agent is started with.
static TYPED: Mutex<Option<Zeroizing<String>>> = Mutex::new(None);

/// Keeps a passphrase that was typed at the prompt and opened the store.
pub fn remember_typed(passphrase: &Zeroizing<String>) {
    if let Ok(mut t) = TYPED.lock() {
        *t = Some(passphrase.clone());
    }
}

/// After a command: starts the profile's agent if this process prompted
/// for the passphrase and the person did not opt out.
pub async fn after(cli: &Cli, ctx: &Ctx) {
    let typed = TYPED.lock().ok().and_then(|mut t| t.take());
    let Some(passphrase) = typed else { return };
    if cli.no_agent
        || matches!(
            cli.command,
            Command::Lock | Command::Logout | Command::Daemon(_)
        )
    {
        return;
    }
    let ttl = ctx
        .profile
        .load()
        .ok()
        .and_then(|f| f.unlock_ttl)
        .unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || !ctx.profile.has_store() {
        return;
    }
    match start(ctx, &passphrase, ttl).await {
        Ok(()) => crate::errln!(
            "profile {} stays unlocked for {} min of quiet (`chat lock` locks it now)",
            ctx.profile.name,
            ttl.div_ceil(60)
        ),
        Err(e) => crate::errln!("note: the store was not kept unlocked: {e}"),
    }
}

/// Spawns `chat --profile P daemon --idle-exit TTL`, the passphrase on its
/// stdin (never in its arguments or environment), in a process group of
/// its own (the terminal's signals are not for it), and waits until its
/// socket answers.
async fn start(ctx: &Ctx, passphrase: &str, ttl: u64) -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().map_err(|e| CliError::io("the chat program", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--profile")
        .arg(&ctx.profile.name)
        .args(["--passphrase-file", "/dev/stdin", "--no-agent", "daemon"])
        .arg("--idle-exit")
        .arg(ttl.to_string())
        .env_remove("E2EE_CHAT_PASSPHRASE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    // The profile's folder is HOME/profiles/NAME.
    if let Some(home) = ctx.profile.dir.parent().and_then(std::path::Path::parent) {
        cmd.arg("--home").arg(home);
    }
    if let Some(server) = &ctx.server_flag {
        cmd.arg("--server").arg(server);
    }
    let mut child = cmd.spawn().map_err(|e| CliError::io("chat daemon", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let line = Zeroizing::new(format!("{passphrase}\n"));
        stdin
            .write_all(line.as_bytes())
            .map_err(|e| CliError::io("chat daemon", e))?;
    }
    let socket = ctx.profile.dir.join(crate::rpc::SOCKET_NAME);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::Usage(format!(
                "the agent ended at once ({status})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(CliError::Timeout(
        "the agent did not answer within 10 s".into(),
    ))
}

/// `chat lock`: asks the profile's agent (or daemon) to stop.
pub async fn lock(ctx: &Ctx) -> Result<()> {
    let socket = ctx.profile.dir.join(crate::rpc::SOCKET_NAME);
    let Ok(stream) = tokio::net::UnixStream::connect(&socket).await else {
        crate::outln!("profile {} is locked (no agent holds it)", ctx.profile.name);
        return Ok(());
    };
    let (rd, mut wr) = stream.into_split();
    let req = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "lock"}).to_string();
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    wr.write_all(format!("{req}\n").as_bytes())
        .await
        .map_err(|e| CliError::io(&socket, e))?;
    let mut line = String::new();
    let _ = tokio::io::BufReader::new(rd).read_line(&mut line).await;
    // Gone once its socket is.
    let deadline = Instant::now() + Duration::from_secs(30);
    while socket.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::outln!("profile {} is locked", ctx.profile.name);
    Ok(())
}
