//! Shared server state, handed to every handler and connection.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, watch};

use crate::cluster::Hint;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::storage::Storage;
use chat_proto::ws::ServerFrame;

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
    /// Logins per account (whatever the address): guessing one
    /// account's password from many addresses is as slow as from one.
    pub login_per_account: DefaultKeyedRateLimiter<String>,
    /// Group creations per user.
    pub groups: DefaultKeyedRateLimiter<String>,
    /// Membership changes per user.
    pub membership: DefaultKeyedRateLimiter<String>,
    /// Media uploads per user.
    pub uploads: DefaultKeyedRateLimiter<String>,
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
            login_per_account: RateLimiter::keyed(Quota::per_minute(nz(c
                .limits
                .logins_per_account_per_minute))),
            groups: RateLimiter::keyed(Quota::per_hour(nz(c.limits.groups_per_hour))),
            membership: RateLimiter::keyed(Quota::per_minute(nz(c
                .limits
                .membership_changes_per_minute))),
            uploads: RateLimiter::keyed(Quota::per_minute(nz(c.limits.media_uploads_per_minute))),
        }
    }

    /// Forgets every key whose budget is full again, so the tables do not
    /// grow with every address and user ever seen. Run periodically.
    pub fn prune(&self) {
        self.login.retain_recent();
        self.register.retain_recent();
        self.prekey_claims.retain_recent();
        self.messages.retain_recent();
        self.login_per_account.retain_recent();
        self.groups.retain_recent();
        self.membership.retain_recent();
        self.uploads.retain_recent();
        self.login.shrink_to_fit();
        self.register.shrink_to_fit();
        self.prekey_claims.shrink_to_fit();
        self.messages.shrink_to_fit();
        self.login_per_account.shrink_to_fit();
        self.groups.shrink_to_fit();
        self.membership.shrink_to_fit();
        self.uploads.shrink_to_fit();
    }

    /// Keys held across the tables (for the prune test and metrics).
    pub fn len(&self) -> usize {
        self.login.len()
            + self.register.len()
            + self.prekey_claims.len()
            + self.messages.len()
            + self.login_per_account.len()
            + self.groups.len()
            + self.membership.len()
            + self.uploads.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AppState {
    /// One request against `limiter` for `key`: refused with a
    /// `rate_limited` error saying when to try again (and counted).
    pub fn limit<K>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), crate::error::ApiError>
    where
        K: Clone + std::hash::Hash + Eq,
    {
        use governor::clock::Clock;
        limiter.check_key(key).map_err(|not_until| {
            self.metrics.rate_limited.inc();
            crate::error::ApiError::rate_limited(not_until.wait_time_from(limiter.clock().now()))
        })
    }

    /// A message from `user` to `recipients` people: it counts once per
    /// recipient against the message budget (a group of 200 costs 200), at
    /// most the budget's burst, so a large group can still send, at the
    /// slowest rate.
    pub fn limit_messages(
        &self,
        user: &str,
        recipients: usize,
    ) -> Result<(), crate::error::ApiError> {
        use governor::clock::Clock;
        let burst = self.config.limits.messages_per_second.max(1);
        let n = u32::try_from(recipients)
            .unwrap_or(u32::MAX)
            .clamp(1, burst);
        let cells = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let limiter = &self.limits.messages;
        match limiter.check_key_n(&user.to_owned(), cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                self.metrics.rate_limited.inc();
                Err(crate::error::ApiError::rate_limited(
                    not_until.wait_time_from(limiter.clock().now()),
                ))
            }
            // Cannot happen: `cells` is at most the burst.
            Err(_) => Err(crate::error::ApiError::rate_limited(
                std::time::Duration::from_secs(1),
            )),
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
    /// Uploads under way, by user: (bytes reserved, files). A quota check
    /// counts them with what is stored, so parallel uploads cannot pass
    /// the quota together.
    pub uploads_in_flight: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
    /// Held by one quota check at a time (across its usage query).
    pub quota_gate: tokio::sync::Mutex<()>,
    /// Open provisioning sockets (linking a device).
    pub provisioning: crate::provision::Provisioning,
    /// The other relay nodes, when there are any.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Users whose last connection went within `presence_grace_ms`, and
    /// whose contacts have not been told yet: the disconnect's number, so
    /// a reconnect (which removes the entry) cancels the offline.
    pub offline_pending: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl AppState {
    /// A frame for every connection of `user`, on this node and the
    /// others; whether a connection here took it.
    pub fn send_everywhere(&self, user: &str, frame: &ServerFrame) -> bool {
        let here = self.hub.send(user, frame);
        self.hint(
            user,
            Hint::Frame {
                frame: Box::new(frame.clone()),
            },
        );
        here
    }

    /// A hint to the other nodes about `user` (nothing when alone).
    pub fn hint(&self, user: &str, hint: Hint) {
        if let Some(c) = &self.cluster {
            c.publish(user, hint);
        }
    }

    /// Closes the connections opened with one token, on every node.
    pub fn close_token_everywhere(&self, user: &str, token: &[u8]) {
        self.hub.close_token(user, token);
        self.hint(
            user,
            Hint::CloseToken {
                token: hex::encode(token),
            },
        );
    }

    /// Closes every connection of `user` but those with `keep`, on every
    /// node.
    pub fn close_others_everywhere(&self, user: &str, keep: &[u8]) {
        self.hub.close_others(user, keep);
        self.hint(
            user,
            Hint::CloseOthers {
                keep: hex::encode(keep),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pruning_forgets_keys_whose_budget_is_full_again() {
        let mut c = Config::for_tests(std::path::Path::new("unused"));
        c.limits.messages_per_second = 50;
        let l = Limiters::new(&c);
        for i in 0..1000 {
            let _ = l.messages.check_key(&format!("user-{i}"));
        }
        assert_eq!(l.len(), 1000);
        l.prune();
        assert_eq!(l.len(), 1000, "still spending");
        std::thread::sleep(std::time::Duration::from_millis(100));
        l.prune();
        assert!(l.is_empty(), "{} keys kept", l.len());
    }
}
