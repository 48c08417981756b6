//! Prometheus metrics, rendered by hand in the text exposition format (a
//! handful of counters does not justify a metrics framework).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit-latency histogram, in seconds.
const COMMIT_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];

/// The server's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open, authenticated WebSocket connections.
    pub connections: AtomicU64,
    /// Messages durably stored and acknowledged (1:1 and group).
    pub messages_relayed: AtomicU64,
    /// Frames pushed to clients.
    pub frames_sent: AtomicU64,
    /// Requests refused by a rate limit.
    pub rate_limited: AtomicU64,
    commits: AtomicU64,
    committed_jobs: AtomicU64,
    commit_micros_sum: AtomicU64,
    commit_buckets: [AtomicU64; 10],
}

impl Metrics {
    /// Records one batch commit.
    pub fn observe_commit(&self, took: Duration, jobs: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.committed_jobs
            .fetch_add(jobs as u64, Ordering::Relaxed);
        self.commit_micros_sum
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, bucket) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The text exposition, with the queue depth read from storage.
    pub fn render(&self, queue_depth: u64) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        line(
            "chat_connections",
            "gauge",
            "Open authenticated WebSocket connections.",
            g(&self.connections),
        );
        line(
            "chat_messages_relayed_total",
            "counter",
            "Messages durably stored and acknowledged.",
            g(&self.messages_relayed),
        );
        line(
            "chat_frames_sent_total",
            "counter",
            "Frames pushed to clients.",
            g(&self.frames_sent),
        );
        line(
            "chat_rate_limited_total",
            "counter",
            "Requests refused by a rate limit.",
            g(&self.rate_limited),
        );
        line(
            "chat_queue_depth",
            "gauge",
            "Messages waiting for delivery.",
            queue_depth,
        );
        line(
            "chat_commit_jobs_total",
            "counter",
            "Write jobs committed.",
            g(&self.committed_jobs),
        );
        let name = "chat_commit_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency of one batch commit.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", g(bucket));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", g(&self.commits));
        let _ = writeln!(
            out,
            "{name}_sum {}",
            g(&self.commit_micros_sum) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {}", g(&self.commits));
        out
    }
}
