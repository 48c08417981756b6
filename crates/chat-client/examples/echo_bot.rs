//! An echo bot on `chat-client`, after the owner's Appendix A:
//!
//! - `/echo some text` answers `Echo: some text`;
//! - `/info` answers with the sender's identity fingerprint, as the bot
//!   sees it, and whether the bot has verified it.
//!
//! It answers in the conversation the command came from (a group too), as
//! a reply quoting the command, marks what it reads as read, and logs in
//! on every start (registering on the first). Run it beside a server:
//!
//! ```sh
//! cargo run --release -p chat-cli -- server &
//! E2EE_CHAT_PASSPHRASE='bot store passphrase' BOT_PASSWORD='bot password' \
//!     cargo run --release -p chat-client --example echo_bot
//! chat send echo-bot /echo hello      # from a registered profile
//! chat listen
//! ```
//!
//! Settings: `BOT_USERNAME` (default `echo-bot`), `BOT_PASSWORD`, and the
//! client's `E2EE_CHAT_*` variables (`E2EE_CHAT_SERVER`, default
//! `http://127.0.0.1:8787`; `E2EE_CHAT_STORE`, default `echo-bot.db`;
//! `E2EE_CHAT_PASSPHRASE` for the store).

use chat_client::{Client, ClientConfig, ClientError, ErrorCode, Message};

/// The bot's answer to one message, if it is a command.
pub async fn answer(client: &Client, m: &Message) -> Result<Option<String>, ClientError> {
    let text = m.body.as_deref().unwrap_or("").trim();
    if let Some(rest) = text.strip_prefix("/echo")
        && (rest.is_empty() || rest.starts_with(char::is_whitespace))
    {
        return Ok(Some(format!("Echo: {}", rest.trim())));
    }
    if text == "/info" {
        let fingerprint = client.peer_fingerprint(&m.sender).await?;
        let verified = client.peer(&m.sender).await?.verified;
        return Ok(Some(format!(
            "Your fingerprint: {fingerprint}\nVerified: {verified}"
        )));
    }
    Ok(None)
}

/// Answers a command in the conversation it came from, in thread: the
/// answer is a reply quoting the command.
pub async fn handle(client: &Client, m: &Message) -> Result<(), ClientError> {
    if let Some(reply) = answer(client, m).await? {
        client.reply(&m.conversation, &m.id, &reply).await?;
    }
    Ok(())
}

/// Logs in; on the very first run (no such account yet) registers.
pub async fn start(client: &Client, username: &str, password: &str) -> Result<(), ClientError> {
    if client.account().is_none() {
        match client.register(username, password).await {
            Ok(_) => return Ok(()),
            // Taken: the account exists (made from another store); log in.
            Err(ClientError::Transport(e)) if e.code() == Some(ErrorCode::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    client.login(username, password).await.map(drop)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ClientConfig::from_env()?;
    if std::env::var_os("E2EE_CHAT_STORE").is_none() {
        config.store_path = "echo-bot.db".into();
    }
    config.auto_read = true;
    let username = std::env::var("BOT_USERNAME").unwrap_or_else(|_| "echo-bot".into());
    let password = std::env::var("BOT_PASSWORD").map_err(|_| "set BOT_PASSWORD")?;
    // The store passphrase comes from E2EE_CHAT_PASSPHRASE.
    let client = Client::builder().config(config).build().await?;
    start(&client, &username, &password).await?;
    println!("Logged in as {username}");
    println!("Fingerprint: {}", client.fingerprint().await?);

    let bot = client.clone();
    let task = client.on_message(move |m| {
        let bot = bot.clone();
        async move {
            println!("From {}: {}", m.sender, m.body.as_deref().unwrap_or(""));
            if let Err(e) = handle(&bot, &m).await {
                eprintln!("could not answer {}: {e}", m.id);
            }
        }
    });

    tokio::signal::ctrl_c().await?;
    println!("\nShutting down...");
    task.abort();
    client.close().await;
    Ok(())
}
