//! Shared server state, handed to every handler and connection.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::storage::Storage;

/// The rate limiters of `config.limits`.
pub struct Limiters {
    /// Logins per client address.
    pub login: DefaultKeyedRateLimiter<IpAddr>,
    /// Registrations per client address.
    pub register: DefaultKeyedRateLimiter<IpAddr>,
    /// Prekey claims per user.
    pub prekey_claims: DefaultKeyedRateLimiter<String>,
    /// Messages per user.
    pub messages: DefaultKeyedRateLimiter<String>,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limiters {
    /// Builds the limiters from the configured rates.
    pub fn new(c: &Config) -> Self {
        Self {
            login: RateLimiter::keyed(Quota::per_minute(nz(c.limits.logins_per_minute))),
            register: RateLimiter::keyed(Quota::per_minute(nz(c.limits.registrations_per_minute))),
            prekey_claims: RateLimiter::keyed(Quota::per_minute(nz(c
                .limits
                .prekey_claims_per_minute))),
            messages: RateLimiter::keyed(Quota::per_second(nz(c.limits.messages_per_second))),
        }
    }
}

/// Everything a handler needs.
pub struct AppState {
    /// The configuration in force.
    pub config: Config,
    /// The storage backend.
    pub store: Arc<dyn Storage>,
    /// Live connections.
    pub hub: Hub,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Rate limits.
    pub limits: Limiters,
    /// Where media files live.
    pub media_dir: PathBuf,
    /// Permits for WebSocket connections (`max_connections`).
    pub connections: Arc<Semaphore>,
    /// Flips to true when the server begins shutting down.
    pub shutdown: watch::Receiver<bool>,
}
