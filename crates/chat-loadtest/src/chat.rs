//! chat-server under load: a child process (or several nodes on one
//! PostgreSQL database and NATS), driven over its WebSocket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_proto::ws::{ClientFrame, Delivered, SendMessage, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

use crate::common::{
    ACK_EVERY, Dir, Error, Figures, LATENCY_SENDERS, Latency, WINDOW, decode_payload, drain_figure,
    idle_run, intended, payload, rss_kib, src_addr, throughput_figure, window,
};

type Ws = WebSocketStream<TcpStream>;

pub(crate) struct Server {
    child: tokio::process::Child,
    addr: SocketAddr,
    /// Every node's address (the first is `addr`).
    addrs: Vec<SocketAddr>,
    /// The other nodes' processes.
    _others: Vec<tokio::process::Child>,
    _dir: Dir,
}

impl Server {
    pub(crate) async fn start(
        bin: &PathBuf,
        port: u16,
        sync_full: bool,
        postgres: Option<&str>,
        nats: Option<&str>,
    ) -> Result<Self, Error> {
        let dir = Dir::new("chat-loadtest")?;
        let config = dir.0.join("server.toml");
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
                dir.0.join("data").display()
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
            _dir: dir,
        })
    }

    /// Adds nodes started like the first but on `ports` and with
    /// `CHAT_NATS_URL` (the first node must have it too: `nats`).
    pub(crate) async fn add_nodes(&mut self, bin: &PathBuf, ports: &[u16]) -> Result<(), Error> {
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

    /// Idle connections, drain, throughput and latency, in that order.
    pub(crate) async fn run_all(
        &self,
        args: &crate::Args,
        connections: usize,
    ) -> Result<Figures, Error> {
        let (idle_bytes, idle_held) = idle_connections(self, connections).await?;
        println!("  (server RSS now {} MiB)", self.rss_kib() / 1024);
        let drain_secs = drain(self, args.drain).await?;
        println!("  (server RSS now {} MiB)", self.rss_kib() / 1024);
        let throughput = throughput(self, args.pairs, args.throughput_secs).await?;
        println!("  (server RSS now {} MiB)", self.rss_kib() / 1024);
        let latency = latency(self, args.rate, args.latency_secs).await?;
        println!("server RSS at the end: {} MiB", self.rss_kib() / 1024);
        Ok(Figures {
            idle_bytes,
            idle_held,
            throughput,
            latency,
            drain_secs,
        })
    }

    /// Node `i` (round robin).
    fn node(&self, i: usize) -> SocketAddr {
        self.addrs[i % self.addrs.len()]
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
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

/// Opens `n` idle authenticated connections; the server's memory per
/// connection.
pub(crate) async fn idle_connections(server: &Server, n: usize) -> Result<(f64, usize), Error> {
    let http = reqwest::Client::new();
    let acct = register(&http, server.addr, "idle-user").await?;
    let addr = server.addr;
    idle_run(
        "chat-server",
        n,
        || server.rss_kib(),
        |i| {
            let token = acct.token.clone();
            async move { connect(addr, src_addr(i), &token).await }
        },
    )
    .await
}

/// `--random-ids`: message ids are random (version 4) UUIDs, as a client
/// other than ours may send, instead of chat-client's time-ordered ones.
static RANDOM_IDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn use_random_ids(random: bool) {
    RANDOM_IDS.store(random, Ordering::Relaxed);
}

/// A message id made as chat-client makes them (version 7), or random.
fn message_id() -> String {
    if RANDOM_IDS.load(Ordering::Relaxed) {
        uuid::Uuid::new_v4()
    } else {
        uuid::Uuid::now_v7()
    }
    .to_string()
}

fn send_frame(to: &str, content: String) -> Message {
    let f = ClientFrame::Message(SendMessage {
        id: message_id(),
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
        if pending.len() >= ACK_EVERY || (!pending.is_empty() && (timed_out || !more)) {
            let f = ClientFrame::Delivered(Delivered {
                message_ids: std::mem::take(&mut pending),
            });
            ws.send(Message::Text(serde_json::to_string(&f)?.into()))
                .await?;
        }
    }
    Ok(ws)
}

/// Durable messages acknowledged per second, `pairs` pipelined senders.
pub(crate) async fn throughput(server: &Server, pairs: usize, secs: u64) -> Result<f64, Error> {
    let http = reqwest::Client::new();
    let acked = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (_, start, end) = window(secs);
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
            // Pipeline: keep up to WINDOW messages awaiting their ack.
            let mut outstanding = 0usize;
            let mut seq = 0u64;
            while Instant::now() < end {
                while outstanding < WINDOW {
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
    Ok(throughput_figure(
        acked.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
        pairs,
        secs,
    ))
}

/// Send-to-delivery latency at `rate` messages a second offered.
pub(crate) async fn latency(server: &Server, rate: u64, secs: u64) -> Result<Latency, Error> {
    let http = reqwest::Client::new();
    let senders = LATENCY_SENDERS;
    let (base, start, end) = window(secs);
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
            for i in 0..per_sender {
                let intended = intended(start, i, senders, rate);
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
    let samples = lat.lock().map_err(|_| "lock")?.clone();
    let l = Latency::from_samples(samples, total);
    l.print(rate, secs);
    Ok(l)
}

/// Seconds to receive `n` queued messages after connecting.
pub(crate) async fn drain(server: &Server, n: usize) -> Result<Option<f64>, Error> {
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
    let took = *done.lock().map_err(|_| "lock")?;
    Ok(drain_figure(n, got.load(Ordering::Relaxed), took))
}
