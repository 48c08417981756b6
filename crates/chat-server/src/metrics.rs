//! Prometheus metrics through the `prometheus` crate: one registry per
//! server (tests run several in one process), the process collector (CPU,
//! memory, open file descriptors, start time) and the server's own series.
//! Served at `/metrics` on the public listener unless turned off, and on
//! the admin listener when one is configured (see `config.rs`).

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Upper bounds of the commit-latency histogram, in seconds.
const COMMIT_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0];
/// Upper bounds of the request-latency histogram, in seconds.
const REQUEST_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The server's series.
pub struct Metrics {
    registry: Registry,
    /// Open, authenticated WebSocket connections.
    pub connections: IntGauge,
    /// Messages durably stored and acknowledged (1:1 and group).
    pub messages_relayed: IntCounter,
    /// Frames pushed to clients.
    pub frames_sent: IntCounter,
    /// Requests and frames refused by a rate limit.
    pub rate_limited: IntCounter,
    /// Client frames answered with an `error` frame, by its code.
    frames_refused: IntCounterVec,
    /// Connections the server closed, by reason.
    closed: IntCounterVec,
    /// REST latency by route (the matched pattern), method and status.
    requests: HistogramVec,
    commit: Histogram,
    commit_jobs: IntCounter,
    queue_depth: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Builds and registers one series.
fn reg<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: C,
) -> prometheus::Result<C> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// A fresh registry with every series at zero. Fails only on a bad
    /// metric name, which every test would catch.
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let vec = |name: &str, help: &str, label: &str| {
            reg(&r, IntCounterVec::new(Opts::new(name, help), &[label])?)
        };
        Ok(Self {
            connections: reg(
                &r,
                IntGauge::new(
                    "chat_connections",
                    "Open authenticated WebSocket connections.",
                )?,
            )?,
            messages_relayed: reg(
                &r,
                IntCounter::new(
                    "chat_messages_relayed_total",
                    "Messages durably stored and acknowledged.",
                )?,
            )?,
            frames_sent: reg(
                &r,
                IntCounter::new("chat_frames_sent_total", "Frames pushed to clients.")?,
            )?,
            rate_limited: reg(
                &r,
                IntCounter::new(
                    "chat_rate_limited_total",
                    "Requests and frames refused by a rate limit.",
                )?,
            )?,
            frames_refused: vec(
                "chat_frames_refused_total",
                "Client frames answered with an error frame, by code.",
                "code",
            )?,
            closed: vec(
                "chat_connections_closed_total",
                "Connections the server closed, by reason.",
                "reason",
            )?,
            requests: reg(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("chat_request_seconds", "REST request latency.")
                        .buckets(REQUEST_BUCKETS.to_vec()),
                    &["method", "route", "status"],
                )?,
            )?,
            commit: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("chat_commit_seconds", "Latency of one batch commit.")
                        .buckets(COMMIT_BUCKETS.to_vec()),
                )?,
            )?,
            commit_jobs: reg(
                &r,
                IntCounter::new("chat_commit_jobs_total", "Write jobs committed.")?,
            )?,
            queue_depth: reg(
                &r,
                IntGauge::new("chat_queue_depth", "Messages waiting for delivery.")?,
            )?,
            registry: r,
        })
    }

    /// Records one batch commit.
    pub fn observe_commit(&self, took: Duration, jobs: usize) {
        self.commit.observe(took.as_secs_f64());
        self.commit_jobs.inc_by(jobs as u64);
    }

    /// Records one REST request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .observe(took.as_secs_f64());
    }

    /// A client frame refused with an `error` frame of `code`.
    pub fn frame_refused(&self, code: chat_proto::rest::ErrorCode) {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.frames_refused.with_label_values(&[&code]).inc();
    }

    /// A connection closed by the server, for `reason` (the close reasons
    /// of docs/API.md, plus `limit`, `header_timeout` for a request head
    /// that never came, `keepalive_idle` for a kept-alive connection that
    /// sent no next request).
    pub fn connection_closed(&self, reason: &str) {
        self.closed.with_label_values(&[reason]).inc();
    }

    /// How many connections were closed for `reason` so far.
    pub fn closed_count(&self, reason: &str) -> u64 {
        self.closed.with_label_values(&[reason]).get()
    }

    /// The text exposition, with the queue depth read from storage.
    pub fn render(&self, queue_depth: u64) -> String {
        self.queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
