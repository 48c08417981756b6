//! `chat daemon`'s JSON-RPC 2.0 protocol (docs/RPC.md): how a [`Command`]
//! is written as a request and read back, the schema, and the client side
//! that the other `chat` commands use while a daemon runs for their
//! profile.

use std::path::Path;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::cli::{Cli, Command};
use crate::error::{CliError, Result};
use crate::output::print_json;

/// The version of the methods and their parameters (docs/RPC.md). Raised
/// when a method changes in a way an existing script would notice.
pub const RPC_VERSION: u32 = 1;

/// The daemon's socket, in the profile's folder.
pub const SOCKET_NAME: &str = "daemon.sock";

/// The longest request line the daemon reads (a longer one is answered
/// with an error and skipped).
pub const MAX_REQUEST: usize = 1 << 20;

/// JSON-RPC 2.0's own error codes. A failed command's error code is its
/// `chat` exit code instead (1-9, docs/CLI.md).
pub mod code {
    /// Not JSON.
    pub const PARSE: i64 = -32700;
    /// JSON, but not a request (or a batch, or too large).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The method exists; its parameters do not fit.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The daemon failed (a bug).
    pub const INTERNAL: i64 = -32603;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The code (see [`code`]).
    pub code: i64,
    /// What went wrong.
    pub message: String,
    /// `exitCode` and `hint` for a failed command.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// A failed command: its exit code, message and hint.
    pub fn from_cli(e: &CliError, ctx: &crate::session::Ctx) -> Self {
        let exit = e.exit_code();
        let (profile, server) = crate::commands::hint_context(ctx);
        RpcError {
            code: i64::from(exit),
            message: e.to_string(),
            data: Some(json!({"exitCode": exit, "hint": e.hint(&profile, &server)})),
        }
    }

    /// As the `error` member of a response.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            v["data"] = d.clone();
        }
        v
    }
}

/// The `chat` commands served as methods, by name. `group` and `devices`
/// are served as `group.create`, `devices.link` and so on.
pub const COMMAND_METHODS: &[&str] = &[
    "logout",
    "whoami",
    "send",
    "react",
    "edit",
    "delete",
    "disappearing",
    "listen",
    "sync",
    "outbox",
    "download",
    "history",
    "search",
    "conversations",
    "group.create",
    "group.add",
    "group.remove",
    "group.leave",
    "group.list",
    "group.info",
    "devices.list",
    "devices.link",
    "devices.remove",
    "contacts",
    "safety-number",
    "typing",
    "markRead",
    "verify",
    "trust",
    "unverify",
];

/// The daemon's own methods.
pub const DAEMON_METHODS: &[&str] = &["version", "schema", "subscribe", "unsubscribe", "lock"];

/// Whether a command goes to the daemon when one runs for the profile
/// (those that need a prompt, a new profile or no account stay here).
pub fn forwardable(c: &Command) -> bool {
    !matches!(
        c,
        Command::Server(_)
            | Command::Register(_)
            | Command::Login(_)
            | Command::Profiles
            | Command::Profile(_)
            | Command::Backup(_)
            | Command::Restore(_)
            | Command::Demo
            | Command::Link { .. }
            | Command::Daemon(_)
    )
}

/// A command as a method name and its params.
pub fn to_request(c: &Command) -> Result<(String, Map<String, Value>)> {
    let v = serde_json::to_value(c)
        .map_err(|e| CliError::Usage(format!("this command is not served by the daemon: {e}")))?;
    let method = v["method"].as_str().unwrap_or_default().to_owned();
    let mut params = match v.get("params") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let sub = |p: &mut Map<String, Value>| match p.remove("cmd") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let method = match method.as_str() {
        "group" => format!("group.{}", sub(&mut params).unwrap_or_default()),
        "devices" => match params.remove("cmd") {
            Some(Value::Object(mut inner)) => {
                let s = sub(&mut inner).unwrap_or_default();
                params = inner;
                format!("devices.{s}")
            }
            _ => "devices.list".to_owned(),
        },
        _ => method,
    };
    Ok((method, params))
}

/// The command a request names.
pub fn from_request(
    method: &str,
    params: Map<String, Value>,
) -> std::result::Result<Command, RpcError> {
    if !COMMAND_METHODS.contains(&method) {
        return Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("no method {method:?} (see docs/RPC.md, or the `schema` method)"),
        ));
    }
    let mut params = params;
    let (name, params) = match method.split_once('.') {
        Some(("group", sub)) => {
            params.insert("cmd".into(), sub.into());
            ("group", Value::Object(params))
        }
        Some(("devices", "list")) if params.is_empty() => ("devices", json!({"cmd": null})),
        Some(("devices", sub)) => {
            params.insert("cmd".into(), sub.into());
            ("devices", json!({"cmd": params}))
        }
        _ => (method, Value::Object(params)),
    };
    let with = json!({"method": name, "params": params});
    let parsed = match serde_json::from_value::<Command>(with) {
        Err(e) if params.as_object().is_some_and(Map::is_empty) => {
            // A method without parameters (`whoami`): no `params` at all.
            serde_json::from_value::<Command>(json!({"method": name})).map_err(|_| e)
        }
        r => r,
    };
    parsed.map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("{method}: {e}")))
}

/// The machine-readable description of every method's params, generated
/// from the command line's own types.
pub fn schema() -> Value {
    let params = schemars::schema_for!(Command);
    json!({
        "rpcVersion": RPC_VERSION,
        "chatVersion": env!("CARGO_PKG_VERSION"),
        "commandMethods": COMMAND_METHODS,
        "daemonMethods": DAEMON_METHODS,
        "note": "`commands` is the JSON Schema of {\"method\", \"params\"} as the daemon reads \
                 them before `group.X` and `devices.X` are split (see docs/RPC.md); `results` \
                 the objects results and `event` notifications carry, by their `event`",
        "commands": params,
        "results": crate::results::schema(),
    })
}

/// Runs the command through the daemon of the profile in `dir`, if one
/// answers on its socket; `None`: there is none, run it here.
pub async fn forward(cli: &Cli, dir: &Path) -> Option<Result<()>> {
    let stream = UnixStream::connect(dir.join(SOCKET_NAME)).await.ok()?;
    Some(forward_on(stream, cli).await)
}

async fn forward_on(stream: UnixStream, cli: &Cli) -> Result<()> {
    let (method, mut params) = to_request(&cli.command)?;
    prepare(&method, &mut params)?;
    // `number` is absent or null when not given.
    let number_given = params.get("number").is_some_and(|n| !n.is_null());
    if method == "verify" && crate::sink::interactive() && !number_given {
        let yes = params.get("yes").and_then(Value::as_bool).unwrap_or(false);
        if !yes {
            return verify_here(stream, cli, params).await;
        }
    }
    let (mut lines, mut w) = split(stream);
    call(&mut lines, &mut w, &method, params, cli.json, &mut |v| {
        print_json(&v);
    })
    .await
    .map(|result| {
        for v in result {
            print_json(&v);
        }
    })
}

type Lines = tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>;

fn split(stream: UnixStream) -> (Lines, tokio::net::unix::OwnedWriteHalf) {
    let (r, w) = stream.into_split();
    (BufReader::new(r).lines(), w)
}

/// Paths made absolute (the daemon runs elsewhere) and `-` read from stdin.
fn prepare(method: &str, params: &mut Map<String, Value>) -> Result<()> {
    for key in ["file", "image", "dir", "download"] {
        if let Some(Value::String(p)) = params.get(key) {
            let abs = std::path::absolute(p).map_err(|e| CliError::io(p.clone(), e))?;
            params.insert(key.into(), abs.display().to_string().into());
        }
    }
    if method == "send"
        && let Some(Value::Array(words)) = params.get_mut("words")
        && words.last().and_then(Value::as_str) == Some("-")
    {
        use std::io::Read;
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::io("stdin", e))?;
        let text = text.trim_end_matches('\n').to_owned();
        words.pop();
        words.push(text.into());
    }
    Ok(())
}

/// `chat verify USER` at a terminal: the number is shown and asked about
/// here, then verified through the daemon as `--number` (so what is
/// verified is exactly what was shown).
async fn verify_here(stream: UnixStream, cli: &Cli, params: Map<String, Value>) -> Result<()> {
    use std::io::Write;
    let user = params
        .get("user")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let (mut lines, mut w) = split(stream);
    let mut p = Map::new();
    p.insert("user".into(), user.clone().into());
    let got = call(&mut lines, &mut w, "safety-number", p, true, &mut |_| {}).await?;
    let digits = got
        .iter()
        .find_map(|v| v.get("safetyNumber").and_then(Value::as_str))
        .ok_or_else(|| CliError::Usage("the daemon sent no safety number".into()))?
        .to_owned();
    println!("safety number with {user}:\n\n{digits}\n");
    print!("Does {user} see exactly this number? [y/N] ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::io("stdin", e))?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        println!("not verified");
        return Ok(());
    }
    let mut p = params;
    p.insert("number".into(), digits.into());
    let result = call(&mut lines, &mut w, "verify", p, cli.json, &mut |_| {}).await?;
    for v in result {
        print_json(&v);
    }
    Ok(())
}

/// One request; prints its `output` notifications as they come, hands
/// `event` notifications to `on_event`, returns the result's objects.
async fn call(
    lines: &mut Lines,
    w: &mut tokio::net::unix::OwnedWriteHalf,
    method: &str,
    mut params: Map<String, Value>,
    json_output: bool,
    on_event: &mut dyn FnMut(Value),
) -> Result<Vec<Value>> {
    let gone = |e: std::io::Error| CliError::io("the daemon's socket", e);
    if !json_output {
        params.insert("output".into(), "text".into());
    }
    let id = 1;
    let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut line = req.to_string();
    line.push('\n');
    w.write_all(line.as_bytes()).await.map_err(gone)?;
    while let Some(l) = lines.next_line().await.map_err(gone)? {
        let Ok(v) = serde_json::from_str::<Value>(&l) else {
            continue;
        };
        match v.get("method").and_then(Value::as_str) {
            Some("output") => {
                let p = &v["params"];
                let text = p["text"].as_str().unwrap_or_default();
                if p["stream"] == "stderr" {
                    crate::sink::err(text);
                } else {
                    crate::sink::out(text);
                }
                continue;
            }
            Some("event") => {
                on_event(v["params"]["event"].clone());
                continue;
            }
            _ => {}
        }
        if v.get("id") != Some(&json!(id)) {
            continue;
        }
        if let Some(e) = v.get("error") {
            return Err(CliError::Remote {
                code: e["data"]["exitCode"]
                    .as_u64()
                    .and_then(|c| u8::try_from(c).ok())
                    .unwrap_or(crate::error::code::OTHER),
                message: e["message"]
                    .as_str()
                    .unwrap_or("the daemon failed")
                    .to_owned(),
                hint: e["data"]["hint"].as_str().map(str::to_owned),
            });
        }
        return Ok(match v.get("result") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        });
    }
    Err(CliError::Timeout(
        "the daemon closed the connection before answering (was it stopped?)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn round_trip(argv: &[&str]) -> (String, Map<String, Value>) {
        let cli = Cli::try_parse_from(argv).expect("parses");
        let (method, params) = to_request(&cli.command).expect("serializes");
        assert!(COMMAND_METHODS.contains(&method.as_str()), "{method}");
        let back = from_request(&method, params.clone()).expect("reads back");
        assert_eq!(
            format!("{back:?}"),
            format!("{:?}", cli.command),
            "{argv:?}"
        );
        (method, params)
    }

    #[test]
    fn every_served_command_reads_back_as_it_was_written() {
        round_trip(&["chat", "send", "bob", "hi", "there", "--timeout", "5"]);
        round_trip(&["chat", "send", "--group", "team", "--file", "/a b", "x"]);
        round_trip(&["chat", "react", "m1", "👍"]);
        round_trip(&["chat", "edit", "m1", "new", "text"]);
        round_trip(&["chat", "delete", "m1", "--for-me"]);
        round_trip(&["chat", "disappearing", "bob", "1h"]);
        round_trip(&["chat", "listen", "-n", "3", "--no-read"]);
        round_trip(&["chat", "history", "bob", "-n", "5", "--ids"]);
        round_trip(&["chat", "search", "hello", "--with", "bob"]);
        round_trip(&["chat", "conversations", "-n", "5"]);
        round_trip(&["chat", "outbox", "--drop", "m1"]);
        round_trip(&["chat", "download", "m1", "/tmp"]);
        round_trip(&["chat", "verify", "bob", "--yes"]);
        for argv in [
            &["chat", "whoami"][..],
            &["chat", "sync"],
            &["chat", "logout"],
            &["chat", "contacts"],
            &["chat", "safety-number", "bob"],
            &["chat", "trust", "bob"],
            &["chat", "unverify", "bob"],
            &["chat", "group", "create", "team", "bob", "carol"],
            &["chat", "group", "add", "team", "dave"],
            &["chat", "group", "remove", "team", "dave"],
            &["chat", "group", "leave", "team"],
            &["chat", "group", "list"],
            &["chat", "group", "info", "team"],
            &["chat", "devices"],
            &["chat", "devices", "link", "e2ee-link:2:abc"],
            &["chat", "devices", "remove", "3"],
        ] {
            round_trip(argv);
        }
        let (m, p) = round_trip(&["chat", "devices", "remove", "3"]);
        assert_eq!(
            (m.as_str(), p.get("deviceId")),
            ("devices.remove", Some(&json!(3)))
        );
    }

    #[test]
    fn scripts_may_write_params_the_short_way_and_bad_ones_are_typed_errors() {
        let p = |v: Value| v.as_object().cloned().unwrap_or_default();
        let c = from_request("send", p(json!({"to": "bob", "text": "hi"}))).expect("send");
        let Command::Send(s) = c else {
            unreachable!("not a send: {c:?}")
        };
        assert_eq!(
            (s.to.as_deref(), s.text.as_deref(), s.timeout),
            (Some("bob"), Some("hi"), 30)
        );
        let c = from_request("edit", p(json!({"id": "m", "text": "one string"}))).expect("edit");
        assert!(matches!(c, Command::Edit(e) if e.text == ["one string"]));
        let c = from_request("group.add", p(json!({"group": "g", "users": "dave"}))).expect("add");
        assert!(matches!(c, Command::Group(_)));
        for (m, params, want) in [
            ("nope", json!({}), code::METHOD_NOT_FOUND),
            ("server", json!({}), code::METHOD_NOT_FOUND),
            ("register", json!({"username": "x"}), code::METHOD_NOT_FOUND),
            ("group", json!({"cmd": "list"}), code::METHOD_NOT_FOUND),
            ("send", json!({"to": 5}), code::INVALID_PARAMS),
            ("send", json!({"bogus": true}), code::INVALID_PARAMS),
            ("react", json!({"id": "m"}), code::INVALID_PARAMS),
            ("whoami", json!({"x": 1}), code::INVALID_PARAMS),
            (
                "devices.remove",
                json!({"deviceId": "three"}),
                code::INVALID_PARAMS,
            ),
            ("history", json!({"limit": -1}), code::INVALID_PARAMS),
        ] {
            let got = from_request(m, p(params.clone())).map(|c| format!("{c:?}"));
            assert_eq!(got.map_err(|e| e.code), Err(want), "{m} {params}");
        }
    }

    #[test]
    fn the_committed_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rpc-schema.json");
        let now = serde_json::to_string_pretty(&schema()).expect("json") + "\n";
        if std::env::var_os("UPDATE_RPC_SCHEMA").is_some() {
            std::fs::write(path, &now).expect("writes docs/rpc-schema.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == now,
            "docs/rpc-schema.json is out of date: UPDATE_RPC_SCHEMA=1 cargo test -p chat-cli --lib rpc"
        );
    }

    #[test]
    fn the_schema_names_every_method() {
        let s = schema();
        assert_eq!(s["rpcVersion"], RPC_VERSION);
        let text = s["commands"].to_string();
        for m in COMMAND_METHODS {
            let head = m.split('.').next().unwrap_or(m);
            assert!(
                text.contains(&format!("\"{head}\"")),
                "{m} missing from the schema"
            );
        }
        assert!(!text.contains("\"register\""));
    }
}
