//! Each command, start to finish.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chat_client::{Client, Conversation, Event, Message};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::cli::{
    AccountArgs, BackupArgs, Cli, Command, HistoryArgs, ListenArgs, SearchArgs, ServerArgs,
    VerifyArgs,
};
use crate::error::{CliError, Result};
use crate::events::print_event;
use crate::output::{self, Names, print_json};
use crate::profile::{self, SecretSource};
use crate::session::{Ctx, Session};
use crate::show::print_message;

/// Runs the parsed command.
pub async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Server(a) => return server(a).await,
        Command::Demo => return crate::demo::run().await,
        Command::Profiles | Command::Profile(crate::cli::ProfileCommand::List) => {
            return profiles(&cli);
        }
        Command::Profile(crate::cli::ProfileCommand::Rm { name, yes }) => {
            return profile::remove(&cli, name, *yes);
        }
        _ => {}
    }
    if let Command::Daemon(a) = &cli.command {
        let mut names = cli.profiles.clone();
        names.dedup();
        let ctxs = names
            .iter()
            .map(|n| Ctx::for_profile(&cli, n))
            .collect::<Result<Vec<_>>>()?;
        let idle = a.idle_exit.map(Duration::from_secs);
        return crate::daemon::run(ctxs, a.http, idle).await;
    }
    if cli.profiles.len() > 1 {
        return Err(CliError::Usage(format!(
            "--profile is given {} times; only `chat daemon` serves several",
            cli.profiles.len()
        )));
    }
    let ctx = Ctx::new(&cli)?;
    if matches!(cli.command, Command::Lock) {
        return crate::agent::lock(&ctx).await;
    }
    if crate::rpc::forwardable(&cli.command)
        && std::env::var_os("E2EE_CHAT_NO_DAEMON").is_none()
        && let Some(done) = crate::rpc::forward(&cli, &ctx.profile.dir).await
    {
        return done;
    }
    let result = dispatch(&ctx, cli.command.clone()).await;
    crate::agent::after(&cli, &ctx).await;
    result
}

/// The profile and server a hint names.
pub fn hint_context(ctx: &Ctx) -> (String, String) {
    let server = ctx
        .profile
        .server_url(ctx.server_flag.as_deref())
        .unwrap_or_else(|_| "the configured server".into());
    (ctx.profile.name.clone(), server)
}

/// Reports a failed command on stderr: a sentence and a `hint:` line, or
/// (`--json`) one JSON object `{"event": "error", "exitCode", "message",
/// "hint"}`.
pub fn report(cli: &Cli, e: &CliError) {
    let (profile, server) = match Ctx::new(cli) {
        Ok(ctx) => hint_context(&ctx),
        Err(_) => (cli.profile().to_owned(), "the configured server".into()),
    };
    let hint = e.hint(&profile, &server);
    if cli.json {
        eprintln!(
            "{}",
            json!({"event": "error", "exitCode": e.exit_code(), "message": e.to_string(),
                "hint": hint})
        );
    } else {
        eprintln!("chat: {e}");
        if let Some(hint) = hint {
            eprintln!("hint: {hint}");
        }
    }
}

/// Runs one command with these options (here, or in the daemon for a
/// client on its socket).
pub async fn dispatch(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Register(a) => account(ctx, &a, true).await,
        Command::Login(a) => account(ctx, &a, false).await,
        Command::Logout => logout(ctx).await,
        Command::Whoami => whoami(ctx).await,
        Command::Send(a) => crate::send::send(ctx, a).await,
        Command::React(a) => crate::actions::react(ctx, &a).await,
        Command::Edit(a) => crate::actions::edit(ctx, &a).await,
        Command::Delete(a) => crate::actions::delete(ctx, &a).await,
        Command::Disappearing(a) => crate::actions::disappearing(ctx, &a).await,
        Command::Listen(a) => listen(ctx, &a).await,
        Command::Sync => sync(ctx).await,
        Command::Outbox(a) => crate::manage::outbox(ctx, a).await,
        Command::Download(a) => crate::manage::download(ctx, &a.id, &a.dir).await,
        Command::History(a) => history(ctx, &a).await,
        Command::Search(a) => search(ctx, &a).await,
        Command::Conversations(a) => crate::manage::conversations(ctx, &a).await,
        Command::Group(g) => crate::groups::group(ctx, g).await,
        Command::Link { name, yes } => crate::devices::link(ctx, name, yes).await,
        Command::Devices { cmd } => crate::devices::devices(ctx, cmd).await,
        Command::Contacts => contacts(ctx).await,
        Command::SafetyNumber(a) => safety_number(ctx, &a.user, a.qr).await,
        Command::Verify(a) => verify(ctx, &a).await,
        Command::Typing(a) => typing(ctx, &a).await,
        Command::MarkRead(c) => mark_read(ctx, &c).await,
        Command::Unverify(u) => unverify(ctx, &u.user).await,
        Command::Trust(u) => crate::manage::trust(ctx, &u.user).await,
        Command::Backup(a) => backup(ctx, &a).await,
        Command::Restore(a) => restore(ctx, &a).await,
        Command::Server(_)
        | Command::Demo
        | Command::Profiles
        | Command::Profile(_)
        | Command::Daemon(_)
        | Command::Lock => Ok(()),
    }
}

async fn server(a: &ServerArgs) -> Result<()> {
    let mut config = chat_server::Config::load(a.config.as_deref())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(l) = a.listen {
        config.listen = l;
    }
    if let Some(d) = &a.data_dir {
        config.data_dir = d.clone();
    }
    chat_server::serve_until_signal(config)
        .await
        .map_err(|e| CliError::Server(e.to_string()))
}

fn profiles(cli: &Cli) -> Result<()> {
    let home = profile::home(cli.home.as_deref())?;
    for name in profile::list(&home)? {
        let p = profile::Profile::new(&home, &name)?;
        let server = p.server_url(None)?;
        if cli.json {
            print_json(&json!({"event": "profile", "name": name, "server": server,
                "hasAccount": p.has_store()}));
        } else {
            let mark = if name == cli.profile() { "*" } else { " " };
            crate::outln!("{mark} {name:<20} {server}");
        }
    }
    Ok(())
}

fn password_source(file: Option<&Path>) -> SecretSource<'_> {
    SecretSource {
        what: "account password",
        file,
        env: "E2EE_CHAT_PASSWORD",
        flag: "--password-file",
    }
}

/// `register` / `login`. A profile that has no store yet is built in a
/// staging folder and moved into place only on success.
async fn account(ctx: &Ctx, a: &AccountArgs, new: bool) -> Result<()> {
    if ctx.profile.has_store() {
        return account_in(ctx, a, new).await;
    }
    let staged = ctx.staged();
    staged.profile.discard();
    match account_in(&staged, a, new).await {
        Ok(()) => ctx.profile.adopt(&staged.profile),
        Err(e) => {
            staged.profile.discard();
            Err(e)
        }
    }
}

async fn account_in(ctx: &Ctx, a: &AccountArgs, new: bool) -> Result<()> {
    if new && a.replace_keys {
        return Err(CliError::Usage(
            "--replace-keys is for `chat login`: a new account has no keys to replace".into(),
        ));
    }
    let s = ctx.open(true).await?;
    let password = password_source(a.password_file.as_deref()).read(new)?;
    let pb = output::spinner(
        ctx.json,
        if new {
            "registering and uploading keys"
        } else {
            "logging in"
        },
    );
    let r = if new {
        s.client.register(&a.username, &password).await
    } else {
        if a.replace_keys {
            s.client.login_replacing_keys(&a.username, &password).await
        } else {
            s.client.login(&a.username, &password).await
        }
    };
    pb.finish_and_clear();
    let acct = r?;
    s.save_server()?;
    let fp = s.client.fingerprint().await?;
    if ctx.json {
        print_json(&json!({"event": if new {"registered"} else {"loggedIn"},
            "userId": acct.user_id, "username": acct.username,
            "server": acct.server_url, "fingerprint": fp, "profile": ctx.profile.name}));
    } else {
        crate::outln!(
            "{} {} on {} (profile {})",
            if new { "registered" } else { "logged in as" },
            acct.username,
            acct.server_url,
            ctx.profile.name
        );
        crate::outln!("your fingerprint: {fp}");
    }
    s.finish().await
}

async fn logout(ctx: &Ctx) -> Result<()> {
    let s = ctx.open(false).await?;
    let acct = s
        .client
        .account()
        .ok_or(chat_client::ClientError::NotLoggedIn)?;
    s.client.logout().await?;
    if ctx.json {
        print_json(&json!({"event": "loggedOut", "username": acct.username}));
    } else {
        crate::outln!(
            "logged out {} (history stays in profile {})",
            acct.username,
            ctx.profile.name
        );
    }
    Ok(())
}

async fn whoami(ctx: &Ctx) -> Result<()> {
    let s = ctx.open(false).await?;
    let acct = s
        .client
        .account()
        .ok_or(chat_client::ClientError::NotLoggedIn)?;
    let fp = s.client.fingerprint().await?;
    let outbox = s.client.outbox_len().await?;
    if ctx.json {
        print_json(&json!({"event": "account", "userId": acct.user_id,
            "username": acct.username, "server": acct.server_url, "fingerprint": fp,
            "profile": ctx.profile.name, "store": ctx.profile.store_path(), "outbox": outbox}));
    } else {
        crate::outln!("{} ({})", acct.username, acct.user_id);
        crate::outln!("server:      {}", acct.server_url);
        crate::outln!(
            "profile:     {} ({})",
            ctx.profile.name,
            ctx.profile.dir.display()
        );
        crate::outln!("fingerprint: {fp}");
        crate::outln!("outbox:      {outbox} message(s) waiting for the server");
    }
    s.close().await;
    Ok(())
}

/// Unread incoming messages already in the store, oldest first.
async fn backlog(client: &Client) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    for c in client.conversations().await? {
        if c.unread == 0 {
            continue;
        }
        // The unread messages themselves: the newest N (N = the unread
        // count) would miss one followed by our own reply.
        out.extend(client.unread_messages(&c.conversation, 1000).await?);
    }
    out.sort_by_key(|m| m.seq);
    Ok(out)
}

async fn listen(ctx: &Ctx, a: &ListenArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let acct = s
        .client
        .account()
        .ok_or(chat_client::ClientError::NotLoggedIn)?;
    let old = if a.no_backlog {
        Vec::new()
    } else {
        backlog(&s.client).await?
    };
    s.connect().await?;
    if !ctx.json {
        crate::errln!(
            "listening as {} on {} (Ctrl-C to stop)",
            acct.username,
            acct.server_url
        );
    }
    let download = a.download.as_deref();
    let mut count = 0u64;
    let mut read_convs: Vec<Conversation> = Vec::new();
    for m in &old {
        print_message(&mut s, m, download).await?;
        count += 1;
        if !read_convs.contains(&m.conversation) {
            read_convs.push(m.conversation.clone());
        }
    }
    if !a.no_read {
        for c in &read_convs {
            s.client.mark_read(c).await?;
        }
    }
    let done = |count: u64| a.count.is_some_and(|n| count >= n);
    let deadline = a.timeout.map(|t| Instant::now() + Duration::from_secs(t));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while !done(count) {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, s.events.next()).await.ok(),
                None => Some(s.events.next().await),
            }
        };
        let ev = tokio::select! {
            _ = &mut ctrl_c => break,
            ev = next => ev,
        };
        match ev {
            None => {
                if let (Some(n), Some(t)) = (a.count, a.timeout) {
                    s.close().await;
                    return Err(CliError::Timeout(format!(
                        "{count} of {n} message(s) arrived within {t} s"
                    )));
                }
                break;
            }
            Some(None) => break,
            // What another of our devices sent: history (`history` shows
            // it as sent), not news, and not one of the `-n` messages.
            Some(Some(Event::Message(m))) if m.outgoing => {}
            Some(Some(Event::Message(m))) => {
                print_message(&mut s, &m, download).await?;
                count += 1;
                if !a.no_read {
                    s.client.mark_read(&m.conversation).await?;
                }
            }
            Some(Some(e)) => print_event(&mut s, e).await?,
        }
        std::io::stdout().flush().ok();
    }
    s.finish().await
}

async fn sync(ctx: &Ctx) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let seen = s.sync().await?;
    let n = seen
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count();
    if ctx.json {
        print_json(&json!({"event": "synced", "messages": n}));
    } else {
        crate::outln!("{n} new message(s)");
    }
    s.finish().await
}

async fn history(ctx: &Ctx, a: &HistoryArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    s.offline = a.offline;
    if !a.offline
        && let Err(e) = s.sync().await
    {
        if e.exit_code() != crate::error::code::UNREACHABLE {
            return Err(e);
        }
        s.close().await;
        let who = a
            .user
            .clone()
            .or(a.group.as_ref().map(|g| format!("--group {g}")))
            .unwrap_or_default();
        return Err(CliError::Timeout(format!(
            "cannot reach the server to catch up first ({e}); what is stored here: `{} history {who} --offline`",
            ctx.chat()
        )));
    }
    let conv = s
        .conversation(a.user.as_deref(), a.group.as_deref())
        .await?;
    let page = s.client.history(&conv, None, a.limit).await?;
    s.show_ids = a.ids;
    if !ctx.json
        && let Some(t) = s.client.disappearing(&conv).await?
    {
        crate::outln!(
            "  ⏱ disappearing messages: {} after reading",
            output::duration_words(u32::try_from(t.as_secs()).unwrap_or(u32::MAX))
        );
    }
    // Where the peer's key changed, a line says so.
    let mut change = match &conv {
        Conversation::Direct(u) => s
            .client
            .known_peer(u)
            .await?
            .and_then(|p| p.changed_at_ms.map(|at| (u.clone(), at))),
        Conversation::Group(_) => None,
    };
    for m in page.messages.iter().rev() {
        if let Some((u, at)) = &change
            && m.received_at_ms.unwrap_or(m.sent_at_ms) >= *at
        {
            crate::manage::print_key_change(&mut s, u, *at).await;
            change = None;
        }
        print_message(&mut s, m, None).await?;
    }
    if page.messages.is_empty() && !ctx.json {
        crate::errln!("no messages yet");
    }
    // Shown is read, as opening the chat: when every unread message was
    // on the page (otherwise the older ones would be marked unseen).
    if !a.no_read {
        let unread = s.client.unread_messages(&conv, 1000).await?;
        let older = unread
            .iter()
            .filter(|u| !page.messages.iter().any(|m| m.seq == u.seq))
            .count();
        if !unread.is_empty() && older == 0 {
            s.client.mark_read(&conv).await?;
        } else if older > 0 && !ctx.json {
            crate::errln!(
                "{older} unread message(s) are older than these: `{} listen` shows them",
                ctx.chat()
            );
        }
    }
    close(s, a.offline).await
}

/// Closes: offline, at once; after connecting, once the outbox is flushed.
async fn close(s: Session, offline: bool) -> Result<()> {
    if offline {
        s.close().await;
        Ok(())
    } else {
        s.finish().await
    }
}

async fn search(ctx: &Ctx, a: &SearchArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    s.offline = a.offline;
    if !a.offline {
        s.sync().await?;
    }
    let conv = match (&a.with, &a.group) {
        (None, None) => None,
        (u, g) => Some(s.conversation(u.as_deref(), g.as_deref()).await?),
    };
    let hits = s.client.search(&a.text, conv.as_ref(), a.limit).await?;
    for h in &hits {
        let sender = s.name_of(&h.message.sender).await;
        let place = s.conversation_label(&h.message.conversation).await;
        let quoted = match &h.message.quote {
            Some(q) => Some(s.name_of(&q.sender).await),
            None => None,
        };
        let names = Names {
            sender: &sender,
            conversation: &place,
            quoted: quoted.as_deref(),
        };
        if ctx.json {
            let mut v = output::message_json(&h.message, &names, None);
            v["event"] = "hit".into();
            v["snippet"] = h.snippet.clone().into();
            print_json(&v);
        } else {
            let mut m = h.message.clone();
            m.body = Some(h.snippet.clone());
            m.attachment = None;
            crate::outln!(
                "{}  ({})",
                output::message_line(&m, &names, None),
                output::short_id(&m.id)
            );
        }
    }
    if hits.is_empty() && !ctx.json {
        crate::errln!("nothing found");
    }
    close(s, a.offline).await
}

async fn contacts(ctx: &Ctx) -> Result<()> {
    let mut s = ctx.open(false).await?;
    s.sync().await?;
    let me = s.client.account().map(|a| a.user_id).unwrap_or_default();
    let online: BTreeSet<String> = s.client.online().into_iter().map(|(id, _)| id).collect();
    let mut users = s.client.users().await?;
    users.sort_by(|a, b| a.username.cmp(&b.username));
    for u in users.iter().filter(|u| u.id != me) {
        let on = online.contains(&u.id);
        if ctx.json {
            print_json(&json!({"event": "user", "id": u.id, "username": u.username, "online": on}));
        } else {
            crate::outln!(
                "{} {:<24} {}",
                if on { "●" } else { "○" },
                u.username,
                if on { "online" } else { "" }
            );
        }
    }
    s.finish().await
}

/// Only the digits of a safety number someone typed or pasted.
fn digits_only(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

async fn safety_number(ctx: &Ctx, user: &str, qr: bool) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let id = s.user_id(user).await?;
    let sn = s.client.safety_number(&id).await?;
    let peer = s.client.peer(&id).await?;
    let ours = s.client.fingerprint().await?;
    let session = match s.client.session_is_post_quantum(&id).await? {
        Some(true) => "PQXDH (X25519 + ML-KEM-1024, post-quantum)",
        Some(false) => "X3DH (from before protocol version 2; the next new session is PQXDH)",
        None => "none yet",
    };
    if ctx.json {
        print_json(&json!({"event": "safetyNumber", "user": user, "userId": id,
            "safetyNumber": sn.digits(), "verified": peer.verified, "yourFingerprint": ours,
            "session": session.split(' ').next().unwrap_or("none")}));
    } else {
        crate::outln!("safety number with {user}:\n");
        for line in sn.display().lines() {
            crate::outln!("    {line}");
        }
        if qr && let Some(code) = crate::devices::qr(sn.digits()) {
            crate::outln!("\n{code}");
        }
        crate::outln!(
            "\nCompare it with what {user} sees (in person or on a call). If it matches: {} verify {user}",
            ctx.chat()
        );
        crate::outln!("verified: {}", if peer.verified { "yes" } else { "no" });
        crate::outln!("session: {session}");
        crate::outln!("your fingerprint: {ours}");
    }
    s.finish().await
}

async fn typing(ctx: &Ctx, a: &crate::cli::TypingArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let c = &a.conversation;
    let conv = s
        .conversation(c.user.as_deref(), c.group.as_deref())
        .await?;
    s.connect().await?;
    s.client.typing(&conv, !a.stop).await?;
    if ctx.json {
        print_json(&json!({"event": "typingSent", "typing": !a.stop}));
    }
    s.finish().await
}

async fn mark_read(ctx: &Ctx, c: &crate::cli::ConversationArg) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let conv = s
        .conversation(c.user.as_deref(), c.group.as_deref())
        .await?;
    s.connect().await?;
    let n = s.client.mark_read(&conv).await?;
    let label = s.conversation_label(&conv).await;
    if ctx.json {
        print_json(&json!({"event": "markedRead", "count": n}));
    } else {
        crate::outln!("{n} message(s) from {label} marked read");
    }
    s.finish().await
}

async fn verify(ctx: &Ctx, a: &VerifyArgs) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let id = s.user_id(&a.user).await?;
    let sn = s.client.safety_number(&id).await?;
    let confirmed = match (&a.number, a.yes) {
        (Some(given), _) => {
            if digits_only(given) != sn.digits() {
                s.close().await;
                return Err(CliError::Mismatch(format!(
                    "the safety number you gave does not match ours with {}: NOT verified. \
                     Someone may be in the middle; do not trust this contact until you know why",
                    a.user
                )));
            }
            true
        }
        (None, true) => true,
        (None, false) => {
            if !crate::sink::interactive() {
                s.close().await;
                return Err(CliError::Usage(
                    "pass --number DIGITS (what the contact sees) or --yes when there is no terminal"
                        .into(),
                ));
            }
            crate::outln!("safety number with {}:\n\n{}\n", a.user, sn.display());
            print!("Does {} see exactly this number? [y/N] ", a.user);
            std::io::stdout().flush().ok();
            let mut answer = String::new();
            std::io::stdin()
                .read_line(&mut answer)
                .map_err(|e| CliError::io("stdin", e))?;
            matches!(answer.trim(), "y" | "Y" | "yes")
        }
    };
    if !confirmed {
        s.close().await;
        crate::outln!("not verified");
        return Ok(());
    }
    // The key the user compared, not whatever is current now.
    let held = s.held_for(&id).await?;
    s.client.verify(&id, &sn).await?;
    if held {
        // Messages held for this key go out now.
        s.connect().await?;
    }
    if ctx.json {
        print_json(&json!({"event": "verified", "user": a.user, "userId": id}));
    } else {
        crate::outln!("{} is verified", a.user);
    }
    s.finish().await
}

async fn unverify(ctx: &Ctx, user: &str) -> Result<()> {
    let mut s = ctx.open(false).await?;
    let id = s.user_id(user).await?;
    s.client.unverify(&id).await?;
    if ctx.json {
        print_json(&json!({"event": "unverified", "user": user, "userId": id}));
    } else {
        crate::outln!("{user} is no longer verified");
    }
    s.finish().await
}

fn backup_source(file: Option<&Path>) -> SecretSource<'_> {
    SecretSource {
        what: "backup passphrase",
        file,
        env: "E2EE_CHAT_BACKUP_PASSPHRASE",
        flag: "--backup-passphrase-file",
    }
}

async fn backup(ctx: &Ctx, a: &BackupArgs) -> Result<()> {
    let s = ctx.open(false).await?;
    let pw = backup_source(a.backup_passphrase_file.as_deref()).read(true)?;
    let pb = output::spinner(ctx.json, format!("writing {}", a.file.display()));
    let r = s.client.backup(&a.file, &pw).await;
    pb.finish_and_clear();
    s.close().await;
    r?;
    let len = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    if ctx.json {
        print_json(&json!({"event": "backup", "file": a.file, "bytes": len}));
    } else {
        crate::outln!(
            "wrote {} ({}), encrypted with the backup passphrase",
            a.file.display(),
            output::size(len)
        );
    }
    Ok(())
}

async fn restore(ctx: &Ctx, a: &BackupArgs) -> Result<()> {
    let p = &ctx.profile;
    if p.has_store() {
        return Err(CliError::Store(format!(
            "profile {:?} already has a store; restore into a new one with --profile NAME",
            p.name
        )));
    }
    if !a.file.exists() {
        return Err(CliError::NotFound(format!(
            "no backup at {}",
            a.file.display()
        )));
    }
    let backup_pw = backup_source(a.backup_passphrase_file.as_deref()).read(false)?;
    let store_pw: Zeroizing<String> = ctx.passphrase_source().read(true)?;
    // Built aside, moved into place on success: a failure leaves no
    // half-made profile.
    let staged = ctx.staged();
    staged.profile.discard();
    staged.profile.create_dir()?;
    let pb = output::spinner(ctx.json, format!("restoring {}", a.file.display()));
    let r = Client::restore(&a.file, &backup_pw, staged.profile.store_path(), &store_pw).await;
    pb.finish_and_clear();
    let acct = match r {
        Ok(()) => {
            async {
                let s = staged.open_with(store_pw).await?;
                s.save_server()?;
                let acct = s.client.account();
                s.close().await;
                Ok::<_, CliError>(acct)
            }
            .await
        }
        Err(chat_client::ClientError::Store(chat_client::StoreError::WrongPassphrase)) => {
            Err(CliError::BackupPassphrase)
        }
        Err(e) => Err(e.into()),
    };
    let acct = match acct {
        Ok(a) => a,
        Err(e) => {
            staged.profile.discard();
            return Err(e);
        }
    };
    p.adopt(&staged.profile)?;
    let name = acct
        .as_ref()
        .map(|a| a.username.as_str())
        .unwrap_or("(no account)");
    if ctx.json {
        print_json(&json!({"event": "restored", "username": name, "profile": p.name}));
    } else {
        crate::outln!(
            "restored {name} into profile {}; `chat -P {} listen` catches up",
            p.name,
            p.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn safety_numbers_compare_on_digits_only() {
        assert_eq!(digits_only("12345 67890\n 11111"), "123456789011111");
    }
}
