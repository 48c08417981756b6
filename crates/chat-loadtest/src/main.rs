//! `chat-loadtest`: measures a `chat-server` binary on loopback, in four
//! bounded runs, and prints the figures `docs/PERFORMANCE.md` records:
//!
//! 1. idle WebSocket connections held, and server memory per connection;
//! 2. durable relayed messages per second (256-byte payloads, 1:1);
//! 3. send-to-delivery latency at a fixed offered rate, measured from each
//!    message's *intended* send time (no coordinated omission);
//! 4. time to drain 10,000 queued messages on connect.
//!
//! It starts the server as a child process with a temporary data folder and
//! kills it at the end. Every loop is bounded in count and time, and all
//! traffic goes to 127.0.0.0/8. Run it with `cargo xtask loadtest`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chat_proto::ws::{ClientFrame, Delivered, SendMessage, ServerFrame};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

type Ws = WebSocketStream<TcpStream>;
type Error = Box<dyn std::error::Error + Send + Sync>;

/// Loopback load tests for chat-server.
#[derive(Debug, Parser)]
struct Args {
    /// The chat-server binary to start.
    #[arg(long)]
    server_bin: PathBuf,
    /// Idle connections to open.
    #[arg(long, default_value_t = 100_000)]
    connections: usize,
    /// Seconds of the throughput run.
    #[arg(long, default_value_t = 10)]
    throughput_secs: u64,
    /// Sender/receiver pairs in the throughput run.
    #[arg(long, default_value_t = 64)]
    pairs: usize,
    /// Offered rate of the latency run, messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of the latency run.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Messages queued for the drain run.
    #[arg(long, default_value_t = 10_000)]
    drain: usize,
    /// Commit with `synchronous = NORMAL` (`sync_full = false`): survives a
    /// crash but not a power cut. The default measures the durable setting.
    #[arg(long)]
    sync_normal: bool,
    /// Run the server on PostgreSQL at this connection string (a
    /// key=value string or URL) instead of SQLite.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Relay nodes to start on the one PostgreSQL database (needs
    /// `--postgres-url` and `--nats-url` above 1). Senders connect to node
    /// i, their receivers to node i + 1: every message crosses nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// The NATS server between the nodes.
    #[arg(long)]
    nats_url: Option<String>,
}

struct Server {
    child: tokio::process::Child,
    addr: SocketAddr,
    /// Every node's address (the first is `addr`).
    addrs: Vec<SocketAddr>,
    /// The other nodes' processes.
    _others: Vec<tokio::process::Child>,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A folder removed on drop.
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Server {
    async fn start(
        bin: &PathBuf,
        port: u16,
        sync_full: bool,
        postgres: Option<&str>,
        nats: Option<&str>,
    ) -> Result<Self, Error> {
        let dir = std::env::temp_dir().join(format!("chat-loadtest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("server.toml");
        let storage = match postgres {
            // TOML basic strings: the connection string has no quotes or
            // backslashes (checked).
            Some(url) if !url.contains(['"', '\\']) => {
                let cluster = nats.map_or(String::new(), |n| {
                    format!("[cluster]\nnats_url = \"{n}\"\n")
                });
                format!(
                    "storage = \"postgres\"\n[postgres]\nurl = \"{url}\"\npool_size = 16\n{cluster}"
                )
            }
            Some(_) => return Err("--postgres-url must not contain quotes or backslashes".into()),
            None => String::new(),
        };
        let (top, table) = storage
            .split_once('[')
            .map_or((storage.as_str(), String::new()), |(t, rest)| {
                (t, format!("[{rest}"))
            });
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nmax_connections = 1000000\n\
                 sync_full = {sync_full}\n{top}{table}[limits]\nlogins_per_minute = 100000\nregistrations_per_minute = 100000\n\
                 prekey_claims_per_minute = 100000\nmessages_per_second = 1000000\n",
                dir.join("data").display()
            ),
        )?;
        let child = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_up(addr).await?;
        Ok(Self {
            child,
            addr,
            addrs: vec![addr],
            _others: Vec::new(),
            _dir: tempdir::Dir(dir),
        })
    }

    /// Adds nodes started like the first but on `ports` and with
    /// `CHAT_NATS_URL` (the first node must have it too: `nats`).
    async fn add_nodes(&mut self, bin: &PathBuf, ports: &[u16]) -> Result<(), Error> {
        let config = self._dir.0.join("server.toml");
        for &port in ports {
            let child = tokio::process::Command::new(bin)
                .arg("--config")
                .arg(&config)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            wait_up(addr).await?;
            self._others.push(child);
            self.addrs.push(addr);
        }
        Ok(())
    }

    /// Node `i` (round robin).
    fn node(&self, i: usize) -> SocketAddr {
        self.addrs[i % self.addrs.len()]
    }

    fn rss_kib(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}

/// Waits (10 s at most) until a node answers `/health`.
async fn wait_up(addr: SocketAddr) -> Result<(), Error> {
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the server on {addr} did not come up").into())
}

struct Account {
    id: String,
    token: String,
}

async fn register(http: &reqwest::Client, addr: SocketAddr, name: &str) -> Result<Account, Error> {
    let v: Value = http
        .post(format!("http://{addr}/api/auth/register"))
        .json(&json!({"username": name, "password": "loadtest-pw"}))
        .send()
        .await?
        .json()
        .await?;
    Ok(Account {
        id: v["user"]["id"].as_str().ok_or("no id")?.to_owned(),
        token: v["token"].as_str().ok_or("no token")?.to_owned(),
    })
}

/// Opens an authenticated connection from source address `src`.
async fn connect(addr: SocketAddr, src: Ipv4Addr, token: &str) -> Result<Ws, Error> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = client_async(format!("ws://{addr}/ws"), stream).await?;
    let auth = json!({"type": "auth", "payload": {"token": token}}).to_string();
    ws.send(Message::Text(auth.into())).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"ready\"") => return Ok(ws),
            Some(Ok(Message::Text(t))) if t.contains("\"error\"") => {
                return Err(t.to_string().into());
            }
            Some(Ok(_)) => continue,
            _ => return Err("closed before ready".into()),
        }
    }
}

fn src_addr(i: usize) -> Ipv4Addr {
    // 20,000 connections per source address stays inside the ephemeral
    // port range of one (source, destination) pair.
    Ipv4Addr::new(127, 0, 1 + (i / 20_000) as u8, 1)
}

async fn idle_connections(server: &Server, n: usize) -> Result<(), Error> {
    let http = reqwest::Client::new();
    let acct = register(&http, server.addr, "idle-user").await?;
    let before = server.rss_kib();
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut batch = Vec::new();
    for i in 0..n {
        if Instant::now() > deadline {
            break;
        }
        let token = acct.token.clone();
        let addr = server.addr;
        batch.push(tokio::spawn(async move {
            connect(addr, src_addr(i), &token).await
        }));
        if batch.len() == 500 || i + 1 == n {
            for h in batch.drain(..) {
                match h.await? {
                    Ok(ws) => conns.push(ws),
                    Err(_) => failed += 1,
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    let held = conns.len();
    let per = if held > 0 {
        (after.saturating_sub(before)) as f64 * 1024.0 / held as f64
    } else {
        0.0
    };
    println!(
        "idle connections: {held} held ({failed} failed) in {:.1}s; server RSS {} MiB -> {} MiB; {:.0} bytes per connection",
        started.elapsed().as_secs_f64(),
        before / 1024,
        after / 1024,
        per
    );
    drop(conns);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

fn payload(seq: u64, intended_ns: u64) -> String {
    let mut bytes = vec![0u8; 256];
    bytes[..8].copy_from_slice(&seq.to_be_bytes());
    bytes[8..16].copy_from_slice(&intended_ns.to_be_bytes());
    format!("E2EE:{}", STANDARD.encode(bytes))
}

fn decode_payload(content: &str) -> Option<(u64, u64)> {
    let bytes = STANDARD.decode(content.strip_prefix("E2EE:")?).ok()?;
    Some((
        u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?),
        u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?),
    ))
}

fn send_frame(to: &str, content: String) -> Message {
    let f = ClientFrame::Message(SendMessage {
        id: uuid::Uuid::new_v4().to_string(),
        to: to.to_owned(),
        content,
        message_type: "text".into(),
        copies: Vec::new(),
    });
    Message::Text(serde_json::to_string(&f).unwrap_or_default().into())
}

/// Reads messages, acknowledges them in batches, and reports each one's
/// `(seq, intended send time)` to `on_message`.
async fn receive(
    mut ws: Ws,
    until: Instant,
    mut on_message: impl FnMut(u64, u64) -> bool + Send,
) -> Result<Ws, Error> {
    let mut pending = Vec::new();
    let mut more = true;
    while more && Instant::now() < until {
        let next = tokio::time::timeout(Duration::from_millis(50), ws.next()).await;
        let timed_out = next.is_err();
        if let Ok(Some(Ok(Message::Text(t)))) = next
            && let Ok(ServerFrame::Message(m)) = serde_json::from_str::<ServerFrame>(&t)
        {
            if let Some((seq, intended)) = decode_payload(&m.content) {
                more = on_message(seq, intended);
            }
            pending.push(m.id);
        }
        if pending.len() >= 64 || (!pending.is_empty() && (timed_out || !more)) {
            let f = ClientFrame::Delivered(Delivered {
                message_ids: std::mem::take(&mut pending),
            });
            ws.send(Message::Text(serde_json::to_string(&f)?.into()))
                .await?;
        }
    }
    Ok(ws)
}

async fn throughput(server: &Server, pairs: usize, secs: u64) -> Result<(), Error> {
    let http = reqwest::Client::new();
    let acked = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_secs(2);
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for p in 0..pairs {
        let s = register(&http, server.addr, &format!("tp-s{p}")).await?;
        let r = register(&http, server.addr, &format!("tp-r{p}")).await?;
        let (addr_s, addr_r) = (server.node(p), server.node(p + 1));
        let (acked, received) = (acked.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let ws_s = connect(addr_s, Ipv4Addr::LOCALHOST, &s.token).await?;
            let ws_r = connect(addr_r, Ipv4Addr::LOCALHOST, &r.token).await?;
            let recv = tokio::spawn(receive(ws_r, end + Duration::from_secs(2), move |_, _| {
                received.fetch_add(1, Ordering::Relaxed);
                true
            }));
            let (mut sink, mut stream) = ws_s.split();
            tokio::time::sleep_until(start.into()).await;
            // Pipeline: keep up to 256 messages awaiting their ack.
            let mut outstanding = 0u32;
            let mut seq = 0u64;
            while Instant::now() < end {
                while outstanding < 256 {
                    sink.send(send_frame(&r.id, payload(seq, 0))).await?;
                    seq += 1;
                    outstanding += 1;
                }
                match tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.contains("\"ack\"") => {
                        outstanding -= 1;
                        if Instant::now() < end {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Some(Ok(_))) | Err(_) => {}
                    _ => break,
                }
            }
            recv.await??;
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let n = acked.load(Ordering::Relaxed);
    println!(
        "durable throughput: {n} messages acknowledged in {secs}s = {:.0}/s ({pairs} sender/receiver pairs, 256-byte payloads); {} delivered",
        n as f64 / secs as f64,
        received.load(Ordering::Relaxed)
    );
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

async fn latency(server: &Server, rate: u64, secs: u64) -> Result<(), Error> {
    let http = reqwest::Client::new();
    let senders = 16usize;
    let base = Instant::now();
    let start = base + Duration::from_secs(2);
    let end = start + Duration::from_secs(secs);
    let total = rate * secs;
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let mut tasks = Vec::new();
    for p in 0..senders {
        let s = register(&http, server.addr, &format!("lat-s{p}")).await?;
        let r = register(&http, server.addr, &format!("lat-r{p}")).await?;
        let (addr_s, addr_r, lat) = (server.node(p), server.node(p + 1), lat.clone());
        tasks.push(tokio::spawn(async move {
            let ws_s = connect(addr_s, Ipv4Addr::LOCALHOST, &s.token).await?;
            let ws_r = connect(addr_r, Ipv4Addr::LOCALHOST, &r.token).await?;
            let recv = tokio::spawn(receive(
                ws_r,
                end + Duration::from_secs(3),
                move |_, intended| {
                    let now = base.elapsed().as_nanos() as u64;
                    if let Ok(mut l) = lat.lock() {
                        l.push(now.saturating_sub(intended));
                    }
                    true
                },
            ));
            let (mut sink, mut stream) = ws_s.split();
            // Drain acks in the background so the socket never backs up.
            let acks = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
            let per_sender = total / senders as u64;
            let interval_ns = 1e9 * senders as f64 / rate as f64;
            for i in 0..per_sender {
                let intended = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
                tokio::time::sleep_until(intended.into()).await;
                let intended_ns = intended.duration_since(base).as_nanos() as u64;
                sink.send(send_frame(&r.id, payload(i, intended_ns)))
                    .await?;
            }
            recv.await??;
            acks.abort();
            Ok::<(), Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut l = lat.lock().map_err(|_| "lock")?.clone();
    l.sort_unstable();
    println!(
        "latency at {rate}/s offered for {secs}s: {} of {total} delivered; p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms",
        l.len(),
        percentile(&l, 0.50),
        percentile(&l, 0.99),
        percentile(&l, 0.999),
        percentile(&l, 1.0)
    );
    Ok(())
}

async fn drain(server: &Server, n: usize) -> Result<(), Error> {
    let http = reqwest::Client::new();
    let s = register(&http, server.addr, "drain-s").await?;
    let r = register(&http, server.addr, "drain-r").await?;
    let ws = connect(server.addr, Ipv4Addr::LOCALHOST, &s.token).await?;
    let (mut sink, mut stream) = ws.split();
    let mut acked = 0;
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked < n && Instant::now() < deadline {
        while sent < n && sent - acked < 512 {
            sink.send(send_frame(&r.id, payload(sent as u64, 0)))
                .await?;
            sent += 1;
        }
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(5), stream.next()).await
            && t.contains("\"ack\"")
        {
            acked += 1;
        }
    }
    let started = Instant::now();
    let ws_r = connect(server.node(1), Ipv4Addr::LOCALHOST, &r.token).await?;
    let got = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::Mutex::new(None));
    let (g, d) = (got.clone(), done.clone());
    let target = n as u64;
    receive(
        ws_r,
        Instant::now() + Duration::from_secs(30),
        move |_, _| {
            let n = g.fetch_add(1, Ordering::Relaxed) + 1;
            if n == target
                && let Ok(mut d) = d.lock()
            {
                *d = Some(started.elapsed());
            }
            n < target
        },
    )
    .await?;
    let took = done.lock().map_err(|_| "lock")?.map(|d| d.as_secs_f64());
    match took {
        Some(t) => println!(
            "drain: {n} queued messages received in {:.3}s after connect (window of in-flight messages, batched acks)",
            t
        ),
        None => println!(
            "drain: only {} of {n} received within 30s",
            got.load(Ordering::Relaxed)
        ),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    // Room for the client side of every connection.
    let want = (args.connections as u64) * 2 + 10_000;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_err() {
        let _ = rlimit::increase_nofile_limit(want);
    }
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    println!("open-file limit: soft {soft}, hard {hard}");
    // Each process needs one descriptor per connection plus spares (the
    // server its database and listener, we /proc and the other runs).
    let possible = usize::try_from(soft.saturating_sub(1_000)).unwrap_or(usize::MAX);
    let connections = if args.connections > possible {
        println!(
            "  asked for {} connections; the open-file limit allows {possible} per process \
             (raising the hard limit needs CAP_SYS_RESOURCE)",
            args.connections
        );
        possible
    } else {
        args.connections
    };
    let nodes = args.nodes.max(1);
    if nodes > 1 && (args.postgres_url.is_none() || args.nats_url.is_none()) {
        return Err("--nodes above 1 needs --postgres-url and --nats-url".into());
    }
    match &args.postgres_url {
        Some(_) if nodes > 1 => println!(
            "storage: PostgreSQL, {nodes} nodes (senders on node i, receivers on node i+1)"
        ),
        Some(_) => println!("storage: PostgreSQL (one node)"),
        None => println!("storage: SQLite"),
    }
    let mut server = Server::start(
        &args.server_bin,
        18787,
        !args.sync_normal,
        args.postgres_url.as_deref(),
        args.nats_url.as_deref().filter(|_| nodes > 1),
    )
    .await?;
    let ports: Vec<u16> = (1..nodes).map(|i| 18787 + i as u16).collect();
    server.add_nodes(&args.server_bin, &ports).await?;
    idle_connections(&server, connections).await?;
    println!("  (server RSS now {} MiB)", server.rss_kib() / 1024);
    drain(&server, args.drain).await?;
    println!("  (server RSS now {} MiB)", server.rss_kib() / 1024);
    throughput(&server, args.pairs, args.throughput_secs).await?;
    println!("  (server RSS now {} MiB)", server.rss_kib() / 1024);
    latency(&server, args.rate, args.latency_secs).await?;
    println!("server RSS at the end: {} MiB", server.rss_kib() / 1024);
    Ok(())
}
