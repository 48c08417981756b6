//! The NATS JetStream peer: a `nats-server -js` child with a file store on
//! loopback. Each recipient's queue is the subject `q.<name>` of one stream
//! (file storage) read by a durable pull consumer; a send is a JetStream
//! publish awaited for its `PubAck`; a receiver acknowledges with
//! `AckPolicy::All` every [`ACK_EVERY`] messages or after 50 ms idle, as
//! chat-server's receivers send `delivered`.
//!
//! The distribution's nats-server (2.9) does not fsync before it
//! acknowledges: its file store syncs every two minutes
//! (`sync_interval`), so its `PubAck` means "written", not "durable".

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::common::{
    ACK_EVERY, Dir, Error, Figures, LATENCY_SENDERS, Latency, WINDOW, decode_payload, drain_figure,
    idle_run, intended, payload, rss_kib, src_addr, throughput_figure, window,
};

const STREAM: &str = "CHAT";

/// A running nats-server with JetStream.
pub(crate) struct JetStream {
    child: tokio::process::Child,
    addr: SocketAddr,
    _dir: Dir,
}

impl JetStream {
    pub(crate) async fn start(bin: &Path, port: u16) -> Result<Self, Error> {
        let dir = Dir::new("chat-loadtest-nats")?;
        let child = tokio::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.0.join("js"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{} (apt-get install nats-server): {e}", bin.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let me = Self {
            child,
            addr,
            _dir: dir,
        };
        let mut up = None;
        for _ in 0..100 {
            if let Ok(c) = me.client().await {
                up = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let client = up.ok_or("nats-server did not come up")?;
        jetstream::new(client)
            .create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["q.>".into()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await?;
        Ok(me)
    }

    async fn client(&self) -> Result<async_nats::Client, Error> {
        Ok(async_nats::connect(format!("nats://{}", self.addr)).await?)
    }

    async fn context(&self) -> Result<jetstream::Context, Error> {
        Ok(jetstream::new(self.client().await?))
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// The durable consumer of queue `name` (created before anything is
    /// sent to it, as a chat account's queue exists before its messages).
    async fn consumer(
        &self,
        js: &jetstream::Context,
        name: &str,
    ) -> Result<consumer::PullConsumer, Error> {
        let stream = js.get_stream(STREAM).await?;
        Ok(stream
            .get_or_create_consumer(
                name,
                consumer::pull::Config {
                    durable_name: Some(name.to_owned()),
                    filter_subject: format!("q.{name}"),
                    ack_policy: consumer::AckPolicy::All,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await?)
    }

    /// Reads queue `name` until `until` or `on_message` says stop,
    /// acknowledging as the other systems' receivers do.
    async fn receive(
        consumer: consumer::PullConsumer,
        until: Instant,
        mut on_message: impl FnMut(u64, u64) -> bool + Send,
    ) -> Result<(), Error> {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(WINDOW)
            .messages()
            .await?;
        let mut last: Option<jetstream::Message> = None;
        let mut pending = 0usize;
        let mut more = true;
        while more && Instant::now() < until {
            let next = tokio::time::timeout(Duration::from_millis(50), messages.next()).await;
            let timed_out = next.is_err();
            match next {
                Ok(Some(Ok(m))) => {
                    if let Some((seq, sent)) = std::str::from_utf8(&m.payload)
                        .ok()
                        .and_then(decode_payload)
                    {
                        more = on_message(seq, sent);
                    }
                    pending += 1;
                    last = Some(m);
                }
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) => break,
                Err(_) => {}
            }
            if pending >= ACK_EVERY || (pending > 0 && (timed_out || !more)) {
                if let Some(m) = last.take() {
                    m.ack().await?;
                }
                pending = 0;
            }
        }
        Ok(())
    }

    pub(crate) async fn idle_connections(&self, n: usize) -> Result<(f64, usize), Error> {
        let addr = self.addr;
        idle_run(
            "NATS",
            n,
            || self.rss_kib(),
            |i| async move {
                // A subscriber that has said hello: CONNECT, one SUB, then a
                // PING answered by PONG.
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(src_addr(i).into(), 0))?;
                let mut s = socket.connect(addr).await?;
                s.write_all(
                    format!("CONNECT {{\"verbose\":false}}\r\nSUB idle.{i} 1\r\nPING\r\n")
                        .as_bytes(),
                )
                .await?;
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"PONG") {
                    let got = s.read(&mut buf).await?;
                    if got == 0 {
                        return Err::<_, Error>("closed".into());
                    }
                    seen.extend_from_slice(&buf[..got]);
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
            let name = format!("tp{p}");
            let (js_s, js_r) = (self.context().await?, self.context().await?);
            let consumer = self.consumer(&js_r, &name).await?;
            let (acked, received) = (acked.clone(), received.clone());
            tasks.push(tokio::spawn(async move {
                let recv = tokio::spawn(Self::receive(
                    consumer,
                    end + Duration::from_secs(2),
                    move |_, _| {
                        received.fetch_add(1, Ordering::Relaxed);
                        true
                    },
                ));
                let subject = format!("q.{name}");
                tokio::time::sleep_until(start.into()).await;
                let mut inflight = FuturesUnordered::new();
                let mut seq = 0u64;
                while Instant::now() < end {
                    while inflight.len() < WINDOW {
                        let ack = js_s
                            .publish(subject.clone(), payload(seq, 0).into())
                            .await?;
                        inflight.push(ack.into_future());
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
            let name = format!("lat{p}");
            let (js_s, js_r) = (self.context().await?, self.context().await?);
            let consumer = self.consumer(&js_r, &name).await?;
            let lat = lat.clone();
            tasks.push(tokio::spawn(async move {
                let recv = tokio::spawn(Self::receive(
                    consumer,
                    end + Duration::from_secs(3),
                    move |_, sent| {
                        let now = base.elapsed().as_nanos() as u64;
                        if let Ok(mut l) = lat.lock() {
                            l.push(now.saturating_sub(sent));
                        }
                        true
                    },
                ));
                let subject = format!("q.{name}");
                // Acks are awaited off the send path (the other systems'
                // senders read theirs in the background too).
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let acks = tokio::spawn(async move {
                    while let Some(ack) = rx.recv().await {
                        let _ = jetstream::context::PublishAckFuture::into_future(ack).await;
                    }
                });
                for i in 0..total / senders as u64 {
                    let at = intended(start, i, senders, rate);
                    tokio::time::sleep_until(at.into()).await;
                    let sent = at.duration_since(base).as_nanos() as u64;
                    let ack = js_s
                        .publish(subject.clone(), payload(i, sent).into())
                        .await?;
                    let _ = tx.send(ack);
                }
                drop(tx);
                recv.await??;
                let _ = acks.await;
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
        let js = self.context().await?;
        self.consumer(&js, "drain").await?;
        let mut inflight = FuturesUnordered::new();
        for seq in 0..n as u64 {
            if inflight.len() >= 512
                && let Some(r) = inflight.next().await
            {
                r?;
            }
            let ack = js.publish("q.drain", payload(seq, 0).into()).await?;
            inflight.push(ack.into_future());
        }
        while let Some(r) = inflight.next().await {
            r?;
        }
        // Connect, find the queue, read it all.
        let started = Instant::now();
        let js_r = self.context().await?;
        let consumer = self.consumer(&js_r, "drain").await?;
        let mut got = 0u64;
        let mut took = None;
        let target = n as u64;
        Self::receive(
            consumer,
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
        println!("nats-server RSS at the end: {} MiB", self.rss_kib() / 1024);
        Ok(Figures {
            idle_bytes,
            idle_held,
            throughput,
            latency,
            drain_secs,
        })
    }
}
