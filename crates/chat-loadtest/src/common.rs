//! What every system under test shares: the payload, the figures a run
//! produces, process memory, source addresses and a temporary folder.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// Seconds before a timed run starts, so every connection is up first.
pub(crate) const WARMUP: Duration = Duration::from_secs(2);
/// Messages a sender keeps awaiting their acknowledgement in the
/// throughput run.
pub(crate) const WINDOW: usize = 256;
/// Messages a receiver acknowledges at once (or fewer after 50 ms idle).
pub(crate) const ACK_EVERY: usize = 64;
/// Senders (each with its own receiver) in the latency run.
pub(crate) const LATENCY_SENDERS: usize = 16;

/// A folder removed on drop.
pub(crate) struct Dir(pub(crate) std::path::PathBuf);

impl Dir {
    pub(crate) fn new(prefix: &str) -> Result<Self, Error> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resident memory of process `pid` in KiB (0 when unknown).
pub(crate) fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
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

/// The source address of idle connection `i`.
pub(crate) fn src_addr(i: usize) -> Ipv4Addr {
    // 5,000 connections per source address: a port bound for `connect`
    // stays taken on its address while its last connection is in
    // TIME_WAIT, so a run right after another of 19,000 found the
    // ephemeral range (~28,000 ports) short at 20,000 per address
    // (`Address already in use`).
    Ipv4Addr::new(127, 0, 1 + (i / 5_000) as u8, 1)
}

/// The 256-byte message every system carries (as `E2EE:` + base64, the
/// form chat-server relays): a sequence number and the intended send time
/// in nanoseconds since the run's base instant.
pub(crate) fn payload(seq: u64, intended_ns: u64) -> String {
    let mut bytes = vec![0u8; 256];
    bytes[..8].copy_from_slice(&seq.to_be_bytes());
    bytes[8..16].copy_from_slice(&intended_ns.to_be_bytes());
    format!("E2EE:{}", STANDARD.encode(bytes))
}

/// `(seq, intended_ns)` back from [`payload`].
pub(crate) fn decode_payload(content: &str) -> Option<(u64, u64)> {
    let bytes = STANDARD.decode(content.strip_prefix("E2EE:")?).ok()?;
    Some((
        u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?),
        u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?),
    ))
}

/// Percentile `p` of sorted nanoseconds, in milliseconds.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

/// Send-to-delivery latencies of one run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Latency {
    pub(crate) delivered: usize,
    pub(crate) offered: u64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl Latency {
    /// From unsorted nanosecond samples.
    pub(crate) fn from_samples(mut samples: Vec<u64>, offered: u64) -> Self {
        samples.sort_unstable();
        Self {
            delivered: samples.len(),
            offered,
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            p999: percentile(&samples, 0.999),
            max: percentile(&samples, 1.0),
        }
    }

    pub(crate) fn print(&self, rate: u64, secs: u64) {
        println!(
            "latency at {rate}/s offered for {secs}s: {} of {} delivered; p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms",
            self.delivered, self.offered, self.p50, self.p99, self.p999, self.max
        );
    }
}

/// What one run of one system measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Figures {
    /// Bytes of server memory per idle connection.
    pub(crate) idle_bytes: f64,
    /// Idle connections held.
    pub(crate) idle_held: usize,
    /// Durable messages acknowledged per second.
    pub(crate) throughput: f64,
    pub(crate) latency: Latency,
    /// Seconds to receive every queued message after connecting.
    pub(crate) drain_secs: Option<f64>,
}

/// Prints and returns the per-connection memory of `held` connections
/// between two RSS readings.
pub(crate) fn idle_figure(
    what: &str,
    held: usize,
    failed: usize,
    took: Duration,
    before_kib: u64,
    after_kib: u64,
) -> f64 {
    let per = if held > 0 {
        (after_kib.saturating_sub(before_kib)) as f64 * 1024.0 / held as f64
    } else {
        0.0
    };
    println!(
        "idle connections ({what}): {held} held ({failed} failed) in {:.1}s; server RSS {} MiB -> {} MiB; {:.0} bytes per connection",
        took.as_secs_f64(),
        before_kib / 1024,
        after_kib / 1024,
        per
    );
    per
}

/// The drain run's report line; returns the seconds when all arrived.
pub(crate) fn drain_figure(n: usize, got: u64, took: Option<Duration>) -> Option<f64> {
    match took {
        Some(t) => {
            println!(
                "drain: {n} queued messages received in {:.3}s after connect (batched acks)",
                t.as_secs_f64()
            );
            Some(t.as_secs_f64())
        }
        None => {
            println!("drain: only {got} of {n} received within 30s");
            None
        }
    }
}

/// The throughput run's report line; returns messages per second.
pub(crate) fn throughput_figure(acked: u64, delivered: u64, pairs: usize, secs: u64) -> f64 {
    let rate = acked as f64 / secs as f64;
    println!(
        "durable throughput: {acked} messages acknowledged in {secs}s = {rate:.0}/s ({pairs} sender/receiver pairs, 256-byte payloads); {delivered} delivered"
    );
    rate
}

/// The instants of a timed run: warm-up, start, end.
pub(crate) fn window(secs: u64) -> (Instant, Instant, Instant) {
    let base = Instant::now();
    let start = base + WARMUP;
    (base, start, start + Duration::from_secs(secs))
}

/// The intended send instant of message `i` of one sender in the latency
/// run (`senders` senders sharing `rate`).
pub(crate) fn intended(start: Instant, i: u64, senders: usize, rate: u64) -> Instant {
    let interval_ns = 1e9 * senders as f64 / rate as f64;
    start + Duration::from_nanos((i as f64 * interval_ns) as u64)
}

/// Opens up to `n` connections with `connect(i)`, 500 at a time and for at
/// most 300 s, waits 2 s, reads the server's memory with `rss_kib`, closes
/// them all; the memory per connection and how many were held.
pub(crate) async fn idle_run<C, F>(
    what: &str,
    n: usize,
    rss_kib: impl Fn() -> u64,
    connect: impl Fn(usize) -> F,
) -> Result<(f64, usize), Error>
where
    C: Send + 'static,
    F: Future<Output = Result<C, Error>> + Send + 'static,
{
    let before = rss_kib();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0usize;
    let mut batch = Vec::new();
    for i in 0..n {
        if Instant::now() > deadline {
            break;
        }
        batch.push(tokio::spawn(connect(i)));
        if batch.len() == 500 || i + 1 == n {
            for h in batch.drain(..) {
                match h.await? {
                    Ok(c) => conns.push(c),
                    Err(e) => {
                        if failed == 0 {
                            eprintln!("  first failed connection ({what}): {e}");
                        }
                        failed += 1;
                    }
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = conns.len();
    let per = idle_figure(what, held, failed, started.elapsed(), before, rss_kib());
    drop(conns);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok((per, held))
}
