//! `chat daemon`: the profile's store unlocked once, one connection to the
//! server, and JSON-RPC 2.0 on a Unix socket in the profile's folder
//! (docs/RPC.md). Each request runs the same code as the `chat` command
//! it names, on the daemon's client, with its output captured
//! ([`crate::sink`]).

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::Command;
use crate::error::{CliError, Result};
use crate::rpc::{self, RpcError, code};
use crate::session::Ctx;
use crate::sink::{self, Line};

/// Requests one connection may have running at once; more wait (the
/// daemon stops reading that connection until one ends).
const IN_FLIGHT: usize = 64;
/// Lines queued for one client's socket before its requests wait.
const OUT_QUEUE: usize = 1024;
/// Events a subscription may have waiting behind a client that does not
/// read (beyond the connection's [`OUT_QUEUE`]); past that they are
/// dropped and the client gets one `lagged` event saying how many (all of
/// them are in the store).
const MAX_BEHIND: usize = 500;
/// How long SIGTERM waits for running requests (sends) to finish.
const DRAIN: Duration = Duration::from_secs(30);

/// One profile the daemon serves: its open session and socket.
struct Served {
    session: crate::session::Session,
    /// The options requests on it run with (`shared`: the daemon's client).
    base: Ctx,
    listener: UnixListener,
    path: std::path::PathBuf,
    uid: u32,
}

impl Served {
    /// Unlocks the profile (its receive lock taken), connects, binds its
    /// socket.
    async fn start(ctx: Ctx) -> Result<Served> {
        let mut s = ctx.open(false).await?;
        s.client
            .account()
            .ok_or(chat_client::ClientError::NotLoggedIn)?;
        if let Err(e) = s.connect().await {
            // The client keeps trying on its own; requests that need the
            // server wait for it or fail as they would without a daemon.
            crate::errln!(
                "warning: {}: {e}; the daemon keeps trying",
                ctx.profile.name
            );
        }
        let path = ctx.profile.dir.join(rpc::SOCKET_NAME);
        let listener = bind(&path)?;
        let uid = std::fs::metadata(&path)
            .map_err(|e| CliError::io(&path, e))?
            .uid();
        let base = Ctx {
            shared: Some(s.client.clone()),
            receiver: false,
            ..ctx.clone()
        };
        if ctx.json {
            crate::output::print_json(&json!({"event": "daemonStarted",
                "profile": ctx.profile.name, "socket": path, "rpcVersion": rpc::RPC_VERSION}));
        } else {
            crate::errln!(
                "chat daemon for profile {} on {} (SIGTERM or Ctrl-C to stop)",
                ctx.profile.name,
                path.display()
            );
        }
        Ok(Served {
            session: s,
            base,
            listener,
            path,
            uid,
        })
    }

    /// Accepts clients until `stop`.
    async fn accept(
        listener: UnixListener,
        base: Ctx,
        uid: u32,
        stop: CancellationToken,
        tracker: TaskTracker,
        activity: Arc<Activity>,
    ) {
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    let conn = Conn {
                        base: base.clone(),
                        stop: stop.clone(),
                        tracker: tracker.clone(),
                        activity: activity.clone(),
                    };
                    tracker.spawn(conn.serve(stream, uid));
                }
                Err(e) => {
                    crate::errln!("warning: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Runs the daemon for these profiles (each unlocked once, each with its
/// own socket and connection) until SIGTERM or Ctrl-C; `http`: also on
/// this loopback address, for a single profile (see
/// [`crate::daemon_http`]).
pub async fn run(
    ctxs: Vec<Ctx>,
    http: Option<std::net::SocketAddr>,
    idle_exit: Option<Duration>,
) -> Result<()> {
    if let Some(addr) = http
        && !addr.ip().is_loopback()
    {
        return Err(CliError::Usage(format!(
            "--http {addr}: the daemon serves HTTP on a loopback address only (127.0.0.1, ::1)"
        )));
    }
    if http.is_some() && ctxs.len() > 1 {
        return Err(CliError::Usage(
            "--http serves one profile: run one daemon per profile for HTTP".into(),
        ));
    }
    let several = ctxs.len() > 1;
    let mut served = Vec::with_capacity(ctxs.len());
    for ctx in ctxs {
        if several {
            // A prompt does not say which store it is for.
            crate::errln!("unlocking profile {}", ctx.profile.name);
        }
        served.push(Served::start(ctx).await?);
    }
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut token_files = Vec::new();
    if let (Some(addr), Some(first)) = (http, served.first()) {
        let token_file = first.base.profile.dir.join("daemon.token");
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::io(format!("--http {addr}"), e))?;
        let token = crate::daemon_http::new_token(&token_file)?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::io("--http", e))?;
        crate::errln!(
            "JSON-RPC over HTTP on http://{bound}/api/v1/rpc (token in {})",
            token_file.display()
        );
        let http = crate::daemon_http::Http {
            base: first.base.clone(),
            token,
            tracker: tracker.clone(),
            stop: stop.clone(),
        };
        tracker.spawn(http.serve(listener));
        token_files.push(token_file);
    }
    let mut sessions = Vec::with_capacity(served.len());
    let mut sockets = Vec::with_capacity(served.len());
    let activity = Arc::new(Activity::default());
    activity.touch();
    if let Some(idle) = idle_exit {
        tracker.spawn(exit_when_idle(activity.clone(), idle, stop.clone()));
    }
    for s in served {
        tracker.spawn(Served::accept(
            s.listener,
            s.base,
            s.uid,
            stop.clone(),
            tracker.clone(),
            activity.clone(),
        ));
        sockets.push(s.path);
        sessions.push(s.session);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CliError::io("SIGTERM", e))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        // `chat lock`, or idle past `--idle-exit`.
        _ = stop.cancelled() => {}
    }
    // No new connections or requests; subscriptions end; what runs (a
    // send waiting for its ack) finishes.
    stop.cancel();
    for f in sockets.iter().chain(&token_files) {
        let _ = std::fs::remove_file(f);
    }
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        crate::errln!(
            "warning: requests still running after {} s",
            DRAIN.as_secs()
        );
    }
    let mut result = Ok(());
    for s in sessions {
        if let Err(e) = s.finish().await {
            result = Err(e);
        }
    }
    result
}

/// Binds the socket, readable and writable by this user only. A socket
/// file left by a daemon that was killed is replaced (this process holds
/// the profile's receive lock, so no other daemon runs).
fn bind(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| CliError::io(path, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| CliError::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CliError::io(path, e))?;
    Ok(listener)
}

/// One client on the socket.
struct Conn {
    base: Ctx,
    stop: CancellationToken,
    tracker: TaskTracker,
    activity: Arc<Activity>,
}

/// When the daemon last heard a request, and how many clients are
/// connected (a `listen` through it keeps it busy).
#[derive(Default)]
struct Activity {
    last_ms: std::sync::atomic::AtomicI64,
    open: std::sync::atomic::AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A client connected: counted until dropped.
struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.touch();
        self.0
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Stops the daemon once no client is connected and none has asked
/// anything for `idle` (the agent's `unlock_ttl`: the store does not stay
/// unlocked behind an absent person).
async fn exit_when_idle(activity: Arc<Activity>, idle: Duration, stop: CancellationToken) {
    use std::sync::atomic::Ordering::Relaxed;
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let quiet = now_ms() - activity.last_ms.load(Relaxed);
        if activity.open.load(Relaxed) == 0 && quiet >= idle_ms {
            crate::errln!("idle for {} s: locking the store", idle.as_secs());
            stop.cancel();
            return;
        }
    }
}

/// A running request's handle, for `unsubscribe` and for ending
/// subscriptions when their client leaves.
pub(crate) type Subscriptions = Arc<std::sync::Mutex<HashMap<String, AbortHandle>>>;

impl Conn {
    async fn serve(self, stream: UnixStream, uid: u32) {
        // The socket's mode already keeps other users out; the peer's
        // credentials are checked too (a socket's mode is not honoured
        // everywhere).
        match stream.peer_cred() {
            Ok(c) if c.uid() == uid => {}
            other => {
                crate::errln!(
                    "warning: refused a client of another user ({:?})",
                    other.map(|c| c.uid())
                );
                return;
            }
        }
        self.activity
            .open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _open = Open(self.activity.clone());
        let (rd, mut wr) = stream.into_split();
        let (out, mut queued) = mpsc::channel::<String>(OUT_QUEUE);
        let writer = tokio::spawn(async move {
            while let Some(mut line) = queued.recv().await {
                line.push('\n');
                if wr.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let subs: Subscriptions = Arc::default();
        let mut rd = BufReader::new(rd);
        let mut buf = Vec::new();
        loop {
            let next = tokio::select! {
                _ = self.stop.cancelled() => break,
                next = read_line(&mut rd, &mut buf) => next,
            };
            let line = match next {
                Err(_) | Ok(None) => break,
                Ok(Some(Err(TooLong))) => {
                    let e = RpcError::new(
                        code::INVALID_REQUEST,
                        format!("request longer than {} bytes", rpc::MAX_REQUEST),
                    );
                    let _ = out.send(response(&Value::Null, Err(e))).await;
                    continue;
                }
                Ok(Some(Ok(line))) => line,
            };
            if line.trim().is_empty() {
                continue;
            }
            self.activity.touch();
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            match parse(&line) {
                Err((id, e)) => {
                    let _ = out.send(response(&id, Err(e))).await;
                }
                // `chat lock`: answered, then the daemon stops (the store
                // is closed, its keys gone from memory).
                Ok(req) if req.method == "lock" => {
                    let _ = out.send(response(&req.id, Ok(json!(true)))).await;
                    self.stop.cancel();
                }
                Ok(req) => {
                    let out = out.clone();
                    let subs2 = subs.clone();
                    let key = req.id.to_string();
                    let streaming = matches!(req.method.as_str(), "subscribe" | "listen");
                    let handle = self.tracker.spawn({
                        let base = self.base.clone();
                        async move {
                            let _permit = permit;
                            handle(base, req, &out, &subs2).await;
                        }
                    });
                    if streaming && let Ok(mut s) = subs.lock() {
                        s.insert(key, handle.abort_handle());
                    }
                }
            }
        }
        // Subscriptions end with their client; other requests (a send
        // already stored) finish, their answers going nowhere.
        if let Ok(s) = subs.lock() {
            for h in s.values() {
                h.abort();
            }
        }
        drop(out);
        let _ = writer.await;
    }
}

/// A request line longer than [`rpc::MAX_REQUEST`] (skipped to its end).
struct TooLong;

/// The next line (without its newline; bytes that are not UTF-8 are
/// replaced, and the line then fails to parse), or `None` at the end. A line over the limit is read to
/// its end and dropped, so the connection goes on with the next one.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<std::result::Result<String, TooLong>>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            // The end. A last line without its newline is a request cut
            // off (the client went away mid-write): it is not run.
            return Ok(None);
        }
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        if !too_long && buf.len() + part.len() > rpc::MAX_REQUEST {
            too_long = true;
            buf.clear();
        }
        if !too_long {
            buf.extend_from_slice(part);
        }
        let newline = done > part.len();
        r.consume(done);
        if newline {
            return Ok(Some(finish(buf, too_long)));
        }
    }
}

fn finish(buf: &[u8], too_long: bool) -> std::result::Result<String, TooLong> {
    if too_long {
        return Err(TooLong);
    }
    Ok(String::from_utf8_lossy(buf).into_owned())
}

/// A request as read.
pub(crate) struct Request {
    /// `Null` for a notification (no answer is sent).
    pub(crate) id: Value,
    pub(crate) notification: bool,
    pub(crate) method: String,
    pub(crate) params: Map<String, Value>,
}

pub(crate) fn parse(line: &str) -> std::result::Result<Request, (Value, RpcError)> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        (
            Value::Null,
            RpcError::new(code::PARSE, format!("not JSON: {e}")),
        )
    })?;
    let bad = |id: &Value, m: &str| (id.clone(), RpcError::new(code::INVALID_REQUEST, m));
    let Value::Object(mut o) = v else {
        return Err(bad(
            &Value::Null,
            if v.is_array() {
                "batches are not supported: send one request per line"
            } else {
                "a request is a JSON object"
            },
        ));
    };
    let notification = !o.contains_key("id");
    let id = o.remove("id").unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
        return Err(bad(&Value::Null, "id must be a string, a number or null"));
    }
    if o.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(bad(&id, "\"jsonrpc\" must be \"2.0\""));
    }
    let Some(Value::String(method)) = o.remove("method") else {
        return Err(bad(&id, "\"method\" must be a string"));
    };
    let params = match o.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err((
                id,
                RpcError::new(code::INVALID_PARAMS, "params must be an object"),
            ));
        }
    };
    Ok(Request {
        id,
        notification,
        method,
        params,
    })
}

pub(crate) fn response(id: &Value, r: std::result::Result<Value, RpcError>) -> String {
    match r {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": e.to_json()}),
    }
    .to_string()
}

fn notification(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

pub(crate) async fn handle(
    base: Ctx,
    mut req: Request,
    out: &mpsc::Sender<String>,
    subs: &Subscriptions,
) {
    let text = match req.params.remove("output") {
        None => false,
        Some(Value::String(s)) if s == "json" => false,
        Some(Value::String(s)) if s == "text" => true,
        Some(_) => {
            let e = RpcError::new(code::INVALID_PARAMS, "output must be \"json\" or \"text\"");
            return answer(out, &req, Err(e)).await;
        }
    };
    let result = match req.method.as_str() {
        "version" => Ok(json!({
            "rpcVersion": rpc::RPC_VERSION,
            "chatVersion": env!("CARGO_PKG_VERSION"),
            "profile": base.profile.name,
            "account": base.shared.as_ref().and_then(|c| c.account()).map(|a| json!({
                "userId": a.user_id, "username": a.username, "server": a.server_url})),
        })),
        "schema" => Ok(rpc::schema()),
        "unsubscribe" => {
            let key = req.params.get("subscription").map(Value::to_string);
            let found = key
                .and_then(|k| subs.lock().ok().and_then(|mut s| s.remove(&k)))
                .map(|h| h.abort())
                .is_some();
            Ok(json!(found))
        }
        "subscribe" => {
            // The answer comes first; then events until `unsubscribe` or
            // the client leaves. Same params as `listen`.
            answer(out, &req, Ok(json!({"subscription": req.id}))).await;
            req.notification = true;
            run_command(base, &req, "listen", text, out).await
        }
        method => run_command(base, &req, method, text, out).await,
    };
    answer(out, &req, result).await;
}

async fn answer(
    out: &mpsc::Sender<String>,
    req: &Request,
    r: std::result::Result<Value, RpcError>,
) {
    if !req.notification {
        let _ = out.send(response(&req.id, r)).await;
    }
}

/// Runs a `chat` command on the daemon's client. Its `--json` objects are
/// the result (or, for `listen`/`subscribe`, `event` notifications as they
/// come); its text lines go out as `output` notifications.
async fn run_command(
    base: Ctx,
    req: &Request,
    method: &str,
    text: bool,
    out: &mpsc::Sender<String>,
) -> std::result::Result<Value, RpcError> {
    let command = rpc::from_request(method, req.params.clone())?;
    let streaming = matches!(command, Command::Listen(_));
    let hint_ctx = base.clone();
    let ctx = Ctx {
        json: !text,
        command: command.name(),
        ..base
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Line>();
    let id = req.id.clone();
    let run = sink::capture(tx, async move {
        std::panic::AssertUnwindSafe(crate::commands::dispatch(&ctx, command))
            .catch_unwind()
            .await
    });
    let forward = async {
        let mut objects = Vec::new();
        while let Some(line) = rx.recv().await {
            if streaming && rx.len() > MAX_BEHIND {
                // A client this far behind is not reading: skip to now.
                let mut missed = 1u64;
                while let Ok(l) = rx.try_recv() {
                    missed += u64::from(matches!(l, Line::Json(_)));
                }
                let lagged = json!({"event": "lagged", "missed": missed});
                let note = notification("event", json!({"subscription": id, "event": lagged}));
                if out.send(note).await.is_err() {
                    break;
                }
                continue;
            }
            let note = match line {
                Line::Json(v) if streaming => {
                    notification("event", json!({"subscription": id, "event": v}))
                }
                Line::Json(v) => {
                    objects.push(v);
                    continue;
                }
                Line::Out(t) => {
                    notification("output", json!({"id": id, "stream": "stdout", "text": t}))
                }
                Line::Err(t) => {
                    notification("output", json!({"id": id, "stream": "stderr", "text": t}))
                }
            };
            if out.send(note).await.is_err() && streaming {
                break;
            }
        }
        objects
    };
    let (ran, objects) = tokio::join!(run, forward);
    match ran {
        Ok(Ok(())) => Ok(Value::Array(objects)),
        Ok(Err(e)) => Err(RpcError::from_cli(&e, &hint_ctx)),
        Err(_) => Err(RpcError::new(
            code::INTERNAL,
            "the command failed (a bug; see the daemon's log)",
        )),
    }
}
