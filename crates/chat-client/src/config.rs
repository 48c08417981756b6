//! Client configuration: builder, TOML file or environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chat_transport::{BackoffConfig, ConnectionConfig};
use e2ee_store::TrustPolicy;
use serde::Deserialize;

use crate::error::ClientError;

/// Everything a client can be told. Every field has a default; a file or
/// the environment sets only what it names.
///
/// In TOML (all keys optional but the server and the store):
///
/// ```toml
/// server_url = "http://127.0.0.1:8787"
/// store_path = "alice.db"
/// auto_read = false
/// request_timeout_secs = 30
/// keepalive_secs = 20
/// dead_after_secs = 50
/// reconnect_initial_ms = 200
/// reconnect_max_secs = 30
/// resend_after_secs = 10
/// prekey_batch = 100
/// prekey_low_water = 20
/// signed_prekey_max_age_days = 7
/// max_attachment_bytes = 16777216
/// event_buffer = 4096
/// trust_new_identities = "on-first-use"   # or "always", "never"
/// ```
///
/// The store passphrase is never read from a file: pass it to the builder
/// or set `E2EE_CHAT_PASSPHRASE`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The server's base URL (`http://` or `https://`).
    pub server_url: String,
    /// The local store (an SQLCipher file; `<store>.salt` lives beside it).
    pub store_path: PathBuf,
    /// Mark incoming messages read as soon as they are stored (bots).
    pub auto_read: bool,
    /// REST request timeout.
    pub request_timeout_secs: u64,
    /// WebSocket ping interval.
    pub keepalive_secs: u64,
    /// A link with no traffic for this long is dropped and re-established.
    pub dead_after_secs: u64,
    /// First reconnect delay's upper bound (the delay doubles, with jitter).
    pub reconnect_initial_ms: u64,
    /// Longest reconnect delay.
    pub reconnect_max_secs: u64,
    /// An outbox entry not acknowledged this long after sending is sent again.
    pub resend_after_secs: u64,
    /// One-time prekeys kept on the server after a refill.
    pub prekey_batch: u32,
    /// Refill when the server holds fewer than this many.
    pub prekey_low_water: u32,
    /// Replace the signed prekey when it is this old.
    pub signed_prekey_max_age_days: u32,
    /// Largest attachment this client uploads.
    pub max_attachment_bytes: u64,
    /// Events kept for a slow subscriber before it sees [`crate::Event::Lagged`].
    pub event_buffer: usize,
    /// What to do with identity keys not verified: `on-first-use` (the
    /// default: trust a peer's first key, refuse to send to a changed one
    /// until [`crate::Client::trust_identity`]), `always`, `never`. A key
    /// that replaces a verified one is always refused until trusted.
    #[serde(with = "trust_policy")]
    pub trust_new_identities: TrustPolicy,
}

/// `TrustPolicy` as `"on-first-use"`, `"always"` or `"never"`.
mod trust_policy {
    use e2ee_store::TrustPolicy;
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TrustPolicy, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "trust_new_identities must be on-first-use, always or never, not {s:?}"
            ))
        })
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            server_url: "http://127.0.0.1:8787".into(),
            store_path: PathBuf::from("e2ee-chat.db"),
            auto_read: false,
            request_timeout_secs: 30,
            keepalive_secs: 20,
            dead_after_secs: 50,
            reconnect_initial_ms: 200,
            reconnect_max_secs: 30,
            resend_after_secs: 10,
            prekey_batch: 100,
            prekey_low_water: 20,
            signed_prekey_max_age_days: 7,
            max_attachment_bytes: 16 << 20,
            event_buffer: 4096,
            trust_new_identities: TrustPolicy::OnFirstUse,
        }
    }
}

fn env_parse<T: std::str::FromStr>(name: &str, into: &mut T) -> Result<(), ClientError> {
    if let Ok(v) = std::env::var(name) {
        *into = v
            .trim()
            .parse()
            .map_err(|_| ClientError::Config(format!("{name}={v:?} is not valid")))?;
    }
    Ok(())
}

impl ClientConfig {
    /// Reads a TOML file; unknown keys are an error (typos do not pass
    /// silently).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))
    }

    /// The defaults overridden by `E2EE_CHAT_*` environment variables:
    /// `SERVER`, `STORE`, `AUTO_READ`, `REQUEST_TIMEOUT_SECS`,
    /// `KEEPALIVE_SECS`, `DEAD_AFTER_SECS`, `RECONNECT_INITIAL_MS`,
    /// `RECONNECT_MAX_SECS`, `RESEND_AFTER_SECS`, `MAX_ATTACHMENT_BYTES`,
    /// `TRUST_NEW_IDENTITIES`.
    pub fn from_env() -> Result<Self, ClientError> {
        let mut c = Self::default();
        c.apply_env()?;
        Ok(c)
    }

    /// Overrides fields from `E2EE_CHAT_*` variables (see [`ClientConfig::from_env`]).
    pub fn apply_env(&mut self) -> Result<(), ClientError> {
        if let Ok(v) = std::env::var("E2EE_CHAT_SERVER") {
            self.server_url = v;
        }
        if let Ok(v) = std::env::var("E2EE_CHAT_STORE") {
            self.store_path = v.into();
        }
        env_parse("E2EE_CHAT_AUTO_READ", &mut self.auto_read)?;
        env_parse(
            "E2EE_CHAT_REQUEST_TIMEOUT_SECS",
            &mut self.request_timeout_secs,
        )?;
        env_parse("E2EE_CHAT_KEEPALIVE_SECS", &mut self.keepalive_secs)?;
        env_parse("E2EE_CHAT_DEAD_AFTER_SECS", &mut self.dead_after_secs)?;
        env_parse(
            "E2EE_CHAT_RECONNECT_INITIAL_MS",
            &mut self.reconnect_initial_ms,
        )?;
        env_parse("E2EE_CHAT_RECONNECT_MAX_SECS", &mut self.reconnect_max_secs)?;
        env_parse("E2EE_CHAT_RESEND_AFTER_SECS", &mut self.resend_after_secs)?;
        env_parse(
            "E2EE_CHAT_MAX_ATTACHMENT_BYTES",
            &mut self.max_attachment_bytes,
        )?;
        env_parse(
            "E2EE_CHAT_TRUST_NEW_IDENTITIES",
            &mut self.trust_new_identities,
        )?;
        Ok(())
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |m: &str| Err(ClientError::Config(m.to_owned()));
        if self.keepalive_secs == 0 || self.dead_after_secs <= self.keepalive_secs {
            return bad("dead_after_secs must be longer than keepalive_secs (> 0)");
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_secs == 0 {
            return bad("reconnect delays must be positive");
        }
        if self.prekey_batch == 0 || self.prekey_low_water >= self.prekey_batch {
            return bad("prekey_low_water must be below prekey_batch (> 0)");
        }
        if self.event_buffer == 0 || self.request_timeout_secs == 0 {
            return bad("event_buffer and request_timeout_secs must be positive");
        }
        Ok(())
    }

    pub(crate) fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            keepalive: Duration::from_secs(self.keepalive_secs),
            dead_after: Duration::from_secs(self.dead_after_secs),
            backoff: BackoffConfig {
                initial: Duration::from_millis(self.reconnect_initial_ms),
                max: Duration::from_secs(self.reconnect_max_secs),
            },
            ..ConnectionConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_overrides_defaults_and_refuses_typos() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "server_url = \"https://chat.example\"\nauto_read = true\n",
        )
        .unwrap();
        let c = ClientConfig::from_file(&p).unwrap();
        assert_eq!(c.server_url, "https://chat.example");
        assert!(c.auto_read);
        assert_eq!(c.keepalive_secs, 20);
        c.validate().unwrap();
        std::fs::write(&p, "auto_raed = true\n").unwrap();
        assert!(matches!(
            ClientConfig::from_file(&p),
            Err(ClientError::Config(_))
        ));
        let bad = ClientConfig {
            dead_after_secs: 5,
            keepalive_secs: 10,
            ..ClientConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
