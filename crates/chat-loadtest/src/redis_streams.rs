//! The Redis Streams peer: a `redis-server` child on loopback with the
//! append-only file and `appendfsync always`, so an `XADD` is answered only
//! after its write reached the disk: the like-for-like durable peer. Each
//! recipient's queue is the stream `q:<name>` with one consumer group; a
//! receiver reads with `XREADGROUP … BLOCK 50` and acknowledges with one
//! `XACK` per read (at most [`WINDOW`] entries).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::common::{
    Dir, Error, Figures, LATENCY_SENDERS, Latency, WINDOW, decode_payload, drain_figure, idle_run,
    intended, payload, rss_kib, src_addr, throughput_figure, window,
};

/// A running redis-server.
pub(crate) struct Redis {
    child: tokio::process::Child,
    addr: SocketAddr,
    client: redis::Client,
    _dir: Dir,
}

impl Redis {
    pub(crate) async fn start(bin: &Path, port: u16, max_clients: usize) -> Result<Self, Error> {
        let dir = Dir::new("chat-loadtest-redis")?;
        let child = tokio::process::Command::new(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"])
            .arg(&dir.0)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxclients",
                &max_clients.to_string(),
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{} (apt-get install redis-server): {e}", bin.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let client = redis::Client::open(format!("redis://{addr}/"))?;
        let me = Self {
            child,
            addr,
            client,
            _dir: dir,
        };
        for _ in 0..100 {
            if let Ok(mut c) = me.connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return Ok(me);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("redis-server did not come up".into())
    }

    /// A connection of its own (a blocking read holds its connection).
    async fn connection(&self) -> Result<MultiplexedConnection, Error> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// Creates queue `name` and its consumer group.
    async fn queue(&self, name: &str) -> Result<String, Error> {
        let key = format!("q:{name}");
        let mut c = self.connection().await?;
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&key)
            .arg("g")
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut c)
            .await?;
        Ok(key)
    }

    /// Reads `key` until `until` or `on_message` says stop.
    async fn receive(
        mut c: MultiplexedConnection,
        key: String,
        until: Instant,
        mut on_message: impl FnMut(u64, u64) -> bool + Send,
    ) -> Result<(), Error> {
        let mut more = true;
        while more && Instant::now() < until {
            let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(WINDOW)
                .arg("BLOCK")
                .arg(50)
                .arg("STREAMS")
                .arg(&key)
                .arg(">")
                .query_async(&mut c)
                .await?;
            let Some(reply) = reply else { continue };
            let mut ack = redis::cmd("XACK");
            ack.arg(&key).arg("g");
            let mut any = false;
            for entry in reply.keys.iter().flat_map(|k| k.ids.iter()) {
                if more
                    && let Some(redis::Value::BulkString(b)) = entry.map.get("d")
                    && let Some((seq, sent)) = std::str::from_utf8(b).ok().and_then(decode_payload)
                {
                    more = on_message(seq, sent);
                }
                ack.arg(&entry.id);
                any = true;
            }
            if any {
                ack.query_async::<u64>(&mut c).await?;
            }
        }
        Ok(())
    }

    /// One `XADD` (answered after fsync).
    fn add(
        c: &MultiplexedConnection,
        key: &str,
        body: String,
    ) -> impl Future<Output = redis::RedisResult<String>> + use<> {
        let mut c = c.clone();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key).arg("*").arg("d").arg(body);
        async move { cmd.query_async::<String>(&mut c).await }
    }

    pub(crate) async fn idle_connections(&self, n: usize) -> Result<(f64, usize), Error> {
        let addr = self.addr;
        idle_run(
            "Redis",
            n,
            || self.rss_kib(),
            |i| async move {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(src_addr(i).into(), 0))?;
                let mut s = socket.connect(addr).await?;
                s.write_all(b"PING\r\n").await?;
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf).await?;
                if &buf != b"+PONG\r\n" {
                    return Err::<_, Error>("no PONG".into());
                }
                Ok(s)
            },
        )
        .await
    }

    pub(crate) async fn throughput(&self, pairs: usize, secs: u64) -> Result<f64, Error> {
        let acked = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let (_, start, end) = window(secs);
        let mut tasks = Vec::new();
        for p in 0..pairs {
            let key = self.queue(&format!("tp{p}")).await?;
            let (send, recv) = (self.connection().await?, self.connection().await?);
            let (acked, received) = (acked.clone(), received.clone());
            tasks.push(tokio::spawn(async move {
                let recv = tokio::spawn(Self::receive(
                    recv,
                    key.clone(),
                    end + Duration::from_secs(2),
                    move |_, _| {
                        received.fetch_add(1, Ordering::Relaxed);
                        true
                    },
                ));
                tokio::time::sleep_until(start.into()).await;
                let mut inflight = FuturesUnordered::new();
                let mut seq = 0u64;
                while Instant::now() < end {
                    while inflight.len() < WINDOW {
                        inflight.push(Self::add(&send, &key, payload(seq, 0)));
                        seq += 1;
                    }
                    if let Some(r) = inflight.next().await {
                        r?;
                        if Instant::now() < end {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                while inflight.next().await.is_some() {}
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

    pub(crate) async fn latency(&self, rate: u64, secs: u64) -> Result<Latency, Error> {
        let senders = LATENCY_SENDERS;
        let (base, start, end) = window(secs);
        let total = rate * secs;
        let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
        let mut tasks = Vec::new();
        for p in 0..senders {
            let key = self.queue(&format!("lat{p}")).await?;
            let (send, recv) = (self.connection().await?, self.connection().await?);
            let lat = lat.clone();
            tasks.push(tokio::spawn(async move {
                let recv = tokio::spawn(Self::receive(
                    recv,
                    key.clone(),
                    end + Duration::from_secs(3),
                    move |_, sent| {
                        let now = base.elapsed().as_nanos() as u64;
                        if let Ok(mut l) = lat.lock() {
                            l.push(now.saturating_sub(sent));
                        }
                        true
                    },
                ));
                let mut acks = Vec::new();
                for i in 0..total / senders as u64 {
                    let at = intended(start, i, senders, rate);
                    tokio::time::sleep_until(at.into()).await;
                    let sent = at.duration_since(base).as_nanos() as u64;
                    // Written now, answered in the background.
                    acks.push(tokio::spawn(Self::add(&send, &key, payload(i, sent))));
                }
                for a in acks {
                    let _ = a.await;
                }
                recv.await??;
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

    pub(crate) async fn drain(&self, n: usize) -> Result<Option<f64>, Error> {
        let key = self.queue("drain").await?;
        let send = self.connection().await?;
        let mut inflight = FuturesUnordered::new();
        for seq in 0..n as u64 {
            if inflight.len() >= 512
                && let Some(r) = inflight.next().await
            {
                r?;
            }
            inflight.push(Self::add(&send, &key, payload(seq, 0)));
        }
        while let Some(r) = inflight.next().await {
            r?;
        }
        let started = Instant::now();
        let recv = self.connection().await?;
        let mut got = 0u64;
        let mut took = None;
        let target = n as u64;
        Self::receive(
            recv,
            key,
            Instant::now() + Duration::from_secs(30),
            |_, _| {
                got += 1;
                if got == target {
                    took = Some(started.elapsed());
                }
                got < target
            },
        )
        .await?;
        Ok(drain_figure(n, got, took))
    }

    /// Idle connections, drain, throughput and latency, in that order.
    pub(crate) async fn run_all(
        &self,
        args: &crate::Args,
        connections: usize,
    ) -> Result<Figures, Error> {
        let (idle_bytes, idle_held) = self.idle_connections(connections).await?;
        let drain_secs = self.drain(args.drain).await?;
        let throughput = self.throughput(args.pairs, args.throughput_secs).await?;
        let latency = self.latency(args.rate, args.latency_secs).await?;
        println!("redis-server RSS at the end: {} MiB", self.rss_kib() / 1024);
        Ok(Figures {
            idle_bytes,
            idle_held,
            throughput,
            latency,
            drain_secs,
        })
    }
}
