//! Server configuration: defaults, then a TOML file, then `CHAT_*`
//! environment variables, then command-line flags (each overriding the one
//! before). The defaults run on `127.0.0.1:8787` with SQLite in `./data`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the server can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder for the database and media files.
    pub data_dir: PathBuf,
    /// Where durable state lives: `sqlite` (the default: `data_dir/chat.db`,
    /// one node) or `postgres` (the `[postgres]` table; several nodes may
    /// share it, see docs/DEPLOY.md).
    pub storage: StorageKind,
    /// The PostgreSQL connection, for `storage = "postgres"`.
    pub postgres: PostgresConfig,
    /// Several nodes: the NATS server that carries hints between them
    /// (needs `storage = "postgres"`). Empty: a single node.
    pub cluster: ClusterConfig,
    /// Folder for media files; `data_dir/media` when unset. Nodes of one
    /// cluster point it at one shared mount.
    pub media_dir: Option<PathBuf>,
    /// Most connections at once, counted from the moment a TCP connection
    /// is accepted (REST, idle keep-alive and WebSocket alike); more get a
    /// 503 and are closed.
    pub max_connections: usize,
    /// Seconds a client has to send a whole request head; also how long an
    /// idle keep-alive connection waits for its next request.
    pub header_timeout_secs: u64,
    /// Seconds a REST request (its body included) has to be answered
    /// (media uploads have `upload_timeout_secs` instead); then 408.
    pub request_timeout_secs: u64,
    /// Seconds a request body may send nothing before the request fails
    /// (408).
    pub body_idle_timeout_secs: u64,
    /// Seconds a whole media upload may take (408 after that).
    pub upload_timeout_secs: u64,
    /// Largest media upload, in bytes.
    pub media_max_bytes: u64,
    /// Bytes of media one account may upload in any 24 hours.
    pub media_quota_bytes_per_day: u64,
    /// Media files one account may upload in any 24 hours.
    pub media_quota_files_per_day: u64,
    /// Days a media file is kept after its upload (then deleted, whether
    /// downloaded or not).
    pub media_retention_days: u32,
    /// Most members in one group, the owner included.
    pub max_group_members: usize,
    /// Most devices one account may have linked at once (the first
    /// included).
    pub max_devices: usize,
    /// Days an undelivered message is kept.
    pub retention_days: u32,
    /// Days a token may sit unused before it expires.
    pub token_idle_days: u32,
    /// Seconds between WebSocket pings.
    pub ping_interval_secs: u64,
    /// Seconds without any frame from a client before it is dropped.
    pub idle_timeout_secs: u64,
    /// Seconds a new connection has to authenticate.
    pub auth_timeout_secs: u64,
    /// Seconds a provisioning socket (`/ws/provision`) waits for the
    /// sealed message from a linked device; also a link token's lifetime.
    pub provision_wait_secs: u64,
    /// Most provisioning sockets open at once, server-wide.
    pub max_provisioning: usize,
    /// Most provisioning sockets open at once from one client address (an
    /// anonymous client cannot hold every place).
    pub provisioning_per_address: usize,
    /// Messages sent to a client but not yet acknowledged with `delivered`.
    pub delivery_window: usize,
    /// Milliseconds a user's last connection may be gone before their
    /// contacts are told they went offline; a reconnect within it (a
    /// short-lived command after another, a network blip) shows no
    /// offline/online pair. 0: at once.
    pub presence_grace_ms: u64,
    /// `synchronous=FULL` (true) survives power loss; `NORMAL` only a crash.
    pub sync_full: bool,
    /// Serve `GET /metrics` on `listen` too. Off by default (DESIGN
    /// section 3): per-route and connection counts help whoever correlates
    /// traffic; scrape `admin_listen` instead.
    pub metrics_public: bool,
    /// A second address serving only `GET /metrics` and `GET /health`, for
    /// monitoring on a private interface. None: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Rate limits.
    pub limits: RateLimits,
    /// Argon2id cost for password hashes.
    pub argon2: Argon2Params,
}

/// The storage backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Embedded SQLite in `data_dir`.
    #[default]
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl std::str::FromStr for StorageKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(()),
        }
    }
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq-style URL or key=value string
    /// (`postgres://chat:pw@db.internal:5432/chat`). May hold a password:
    /// never printed.
    pub url: Option<SecretString>,
    /// Connections in this node's pool (one of them is the writer's).
    pub pool_size: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
        }
    }
}

/// The link between relay nodes. Whoever can publish to NATS can push
/// hints, frames and forced closes to every node: a cluster authenticates
/// to NATS (user and password, an nkey, or credentials in the URL) unless
/// `insecure_nats` says the NATS is private to the nodes.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `nats://host:4222` (or `tls://`; `nats://user:pass@host` works
    /// too); None: this node is alone.
    pub nats_url: Option<String>,
    /// Seconds between a connection's pulls from the database while no
    /// hint arrived: the longest a lost hint delays a message.
    pub idle_pull_secs: u64,
    /// NATS user (with `nats_password`).
    pub nats_user: Option<String>,
    /// NATS password.
    pub nats_password: Option<SecretString>,
    /// An nkey seed (`SU...`) instead of a user and password.
    pub nats_nkey_seed: Option<SecretString>,
    /// Require TLS to NATS.
    pub nats_tls: bool,
    /// A CA bundle (PEM) to trust for the NATS server's certificate.
    pub nats_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with `nats_client_key`.
    pub nats_client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub nats_client_key: Option<PathBuf>,
    /// Start a cluster with no NATS authentication (a NATS only the nodes
    /// can reach). Off: such a cluster refuses to start.
    pub insecure_nats: bool,
}

impl ClusterConfig {
    /// Whether the nodes authenticate to NATS somehow.
    pub fn nats_authenticated(&self) -> bool {
        let in_url = self
            .nats_url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .is_some_and(|(_, rest)| rest.split('/').next().is_some_and(|h| h.contains('@')));
        in_url
            || (self.nats_user.is_some() && self.nats_password.is_some())
            || self.nats_nkey_seed.is_some()
    }

    /// The URL to dial (without credentials) and the user and password
    /// written in it, if any (the NATS client does not read them there).
    pub fn nats_url_parts(&self) -> (String, Option<(String, SecretString)>) {
        let url = self.nats_url.as_deref().unwrap_or_default();
        if let Some((scheme, rest)) = url.split_once("://")
            && let Some((userinfo, host)) = rest.rsplit_once('@')
        {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            return (
                format!("{scheme}://{host}"),
                Some((user.to_owned(), SecretString::new(password))),
            );
        }
        (url.to_owned(), None)
    }

    /// The URL without credentials, for logs and errors.
    pub fn nats_url_redacted(&self) -> String {
        let url = self.nats_url.as_deref().unwrap_or_default();
        match url.split_once("://") {
            Some((scheme, rest)) => match rest.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://[redacted]@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("nats_url", &self.nats_url_redacted())
            .field("idle_pull_secs", &self.idle_pull_secs)
            .field("nats_user", &self.nats_user)
            .field("nats_tls", &self.nats_tls)
            .field("insecure_nats", &self.insecure_nats)
            .finish_non_exhaustive()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            idle_pull_secs: 5,
            nats_user: None,
            nats_password: None,
            nats_nkey_seed: None,
            nats_tls: false,
            nats_ca_file: None,
            nats_client_cert: None,
            nats_client_key: None,
            insecure_nats: false,
        }
    }
}

/// The environment variables [`Config::apply_env`] reads.
pub const ENV_VARS: &[&str] = &[
    "CHAT_LISTEN",
    "CHAT_DATA_DIR",
    "CHAT_STORAGE",
    "CHAT_POSTGRES_URL",
    "CHAT_POSTGRES_POOL_SIZE",
    "CHAT_MEDIA_DIR",
    "CHAT_NATS_URL",
    "CHAT_NATS_USER",
    "CHAT_NATS_PASSWORD",
    "CHAT_NATS_NKEY_SEED",
    "CHAT_NATS_TLS",
    "CHAT_NATS_CA_FILE",
    "CHAT_INSECURE_NATS",
    "CHAT_MAX_CONNECTIONS",
    "CHAT_MEDIA_MAX_BYTES",
    "CHAT_MAX_GROUP_MEMBERS",
    "CHAT_MAX_DEVICES",
    "CHAT_PROVISION_WAIT_SECS",
    "CHAT_MAX_PROVISIONING",
    "CHAT_PROVISIONING_PER_ADDRESS",
    "CHAT_RETENTION_DAYS",
    "CHAT_ADMIN_LISTEN",
    "CHAT_METRICS_PUBLIC",
];

/// A string that may hold a password: shown as `[redacted]` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value itself (to connect with; never to log).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Per-minute or per-second budgets. Each is a token bucket: the number is
/// the sustained rate, the burst is the same number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Login attempts per minute per client address.
    pub logins_per_minute: u32,
    /// Registrations per minute per client address.
    pub registrations_per_minute: u32,
    /// Prekey bundle claims per minute per user.
    pub prekey_claims_per_minute: u32,
    /// Messages per second per user.
    pub messages_per_second: u32,
    /// Login attempts per minute per account, from all addresses together
    /// (right or wrong: the budget is spent before the password is
    /// checked). When spent, logins to that account wait (`Retry-After`)
    /// until one attempt is earned back: 60 / this many seconds. The
    /// account's existing logins are not affected.
    pub logins_per_account_per_minute: u32,
    /// Groups a user may create per hour.
    pub groups_per_hour: u32,
    /// Member additions and removals a user may make per minute (leaving
    /// a group is never limited).
    pub membership_changes_per_minute: u32,
    /// Media uploads a user may start per minute.
    pub media_uploads_per_minute: u32,
}

/// Argon2id parameters (RFC 9106 names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Config {
    /// A server on `127.0.0.1:0` in `data_dir` with cheap password hashing
    /// and rate limits out of the way: for tests and benchmarks on
    /// loopback, never for production.
    #[doc(hidden)]
    pub fn for_tests(data_dir: &std::path::Path) -> Config {
        let mut c = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            argon2: Argon2Params {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
            ..Config::default()
        };
        c.limits.logins_per_minute = 10_000;
        c.limits.registrations_per_minute = 10_000;
        c.limits.prekey_claims_per_minute = 100_000;
        c.limits.messages_per_second = 100_000;
        c.limits.logins_per_account_per_minute = 10_000;
        c.limits.groups_per_hour = 100_000;
        c.limits.membership_changes_per_minute = 100_000;
        c.limits.media_uploads_per_minute = 100_000;
        // Tests that watch presence see it at once unless they ask.
        c.presence_grace_ms = 0;
        c
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("data"),
            storage: StorageKind::Sqlite,
            postgres: PostgresConfig::default(),
            cluster: ClusterConfig::default(),
            media_dir: None,
            max_connections: 200_000,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            body_idle_timeout_secs: 10,
            upload_timeout_secs: 300,
            media_max_bytes: 16 * 1024 * 1024,
            media_quota_bytes_per_day: 1024 * 1024 * 1024,
            media_quota_files_per_day: 1000,
            media_retention_days: 30,
            max_group_members: 1000,
            max_devices: 6,
            retention_days: 30,
            token_idle_days: 30,
            ping_interval_secs: 30,
            idle_timeout_secs: 90,
            auth_timeout_secs: 10,
            provision_wait_secs: 120,
            max_provisioning: 1024,
            provisioning_per_address: 4,
            delivery_window: 256,
            presence_grace_ms: 5_000,
            sync_full: true,
            metrics_public: false,
            admin_listen: None,
            limits: RateLimits::default(),
            argon2: Argon2Params::default(),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            logins_per_minute: 10,
            registrations_per_minute: 5,
            prekey_claims_per_minute: 60,
            messages_per_second: 100,
            logins_per_account_per_minute: 10,
            groups_per_hour: 20,
            membership_changes_per_minute: 60,
            media_uploads_per_minute: 30,
        }
    }
}

impl Default for Argon2Params {
    /// OWASP's recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("invalid value for {name}: {value}")]
    Env {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
    },
}

impl Config {
    /// The defaults, then `file` (TOML) if given, then the `CHAT_*`
    /// environment variables: what both the `chat-server` and the
    /// `chat server` commands start from before applying their flags.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(std::env::vars())?;
        Ok(config)
    }

    /// Every setting with its default, as a TOML file would set it, and
    /// the environment variables: `chat-server --help` shows it all.
    pub fn help_text() -> String {
        let defaults = toml::to_string(&Config::default())
            .unwrap_or_else(|e| format!("(the defaults did not render: {e})\n"));
        format!(
            "Settings come from the defaults, then --config FILE (TOML), then CHAT_* \
             environment variables, then flags. Every setting, with its default:\n\n{defaults}\n\
             Unset by default: postgres.url, media_dir, admin_listen, cluster.nats_url, \
             cluster.nats_user, cluster.nats_password, cluster.nats_nkey_seed, \
             cluster.nats_ca_file, cluster.nats_client_cert, cluster.nats_client_key.\n\n\
             Environment: {}.\n\nSee docs/DEPLOY.md for what each one is for.",
            ENV_VARS.join(", ")
        )
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies the variables of [`ENV_VARS`] found in `vars`.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
            value.parse().map_err(|_| ConfigError::Env {
                name: name.to_owned(),
                value: value.to_owned(),
            })
        }
        for (name, value) in vars {
            match name.as_str() {
                "CHAT_LISTEN" => self.listen = parse(&name, &value)?,
                "CHAT_DATA_DIR" => self.data_dir = PathBuf::from(&value),
                "CHAT_STORAGE" => self.storage = parse(&name, &value)?,
                "CHAT_POSTGRES_URL" => self.postgres.url = Some(SecretString::new(value)),
                "CHAT_POSTGRES_POOL_SIZE" => self.postgres.pool_size = parse(&name, &value)?,
                "CHAT_MEDIA_DIR" => self.media_dir = Some(PathBuf::from(&value)),
                "CHAT_NATS_URL" => self.cluster.nats_url = Some(value.clone()),
                "CHAT_NATS_USER" => self.cluster.nats_user = Some(value.clone()),
                "CHAT_NATS_PASSWORD" => {
                    self.cluster.nats_password = Some(SecretString::new(value.clone()));
                }
                "CHAT_NATS_NKEY_SEED" => {
                    self.cluster.nats_nkey_seed = Some(SecretString::new(value.clone()));
                }
                "CHAT_NATS_TLS" => self.cluster.nats_tls = parse(&name, &value)?,
                "CHAT_NATS_CA_FILE" => self.cluster.nats_ca_file = Some(value.into()),
                "CHAT_INSECURE_NATS" => self.cluster.insecure_nats = parse(&name, &value)?,
                "CHAT_MAX_CONNECTIONS" => self.max_connections = parse(&name, &value)?,
                "CHAT_MEDIA_MAX_BYTES" => self.media_max_bytes = parse(&name, &value)?,
                "CHAT_MAX_GROUP_MEMBERS" => self.max_group_members = parse(&name, &value)?,
                "CHAT_MAX_DEVICES" => self.max_devices = parse(&name, &value)?,
                "CHAT_PROVISION_WAIT_SECS" => self.provision_wait_secs = parse(&name, &value)?,
                "CHAT_MAX_PROVISIONING" => self.max_provisioning = parse(&name, &value)?,
                "CHAT_PROVISIONING_PER_ADDRESS" => {
                    self.provisioning_per_address = parse(&name, &value)?;
                }
                "CHAT_RETENTION_DAYS" => self.retention_days = parse(&name, &value)?,
                "CHAT_ADMIN_LISTEN" => self.admin_listen = Some(parse(&name, &value)?),
                "CHAT_METRICS_PUBLIC" => self.metrics_public = parse(&name, &value)?,
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable `--help` lists is one `apply_env` reads.
    #[test]
    fn every_listed_variable_is_read() {
        for name in ENV_VARS {
            let value = match *name {
                "CHAT_LISTEN" | "CHAT_ADMIN_LISTEN" => "127.0.0.1:1",
                "CHAT_STORAGE" => "postgres",
                "CHAT_NATS_TLS" | "CHAT_INSECURE_NATS" | "CHAT_METRICS_PUBLIC" => "true",
                n if n.ends_with("_URL")
                    || n.ends_with("_DIR")
                    || n.ends_with("_FILE")
                    || n.contains("NATS_") =>
                {
                    "x"
                }
                _ => "7",
            };
            let mut c = Config::default();
            assert!(
                c.apply_env([((*name).to_owned(), value.to_owned())])
                    .is_ok(),
                "{name}"
            );
            assert_ne!(c, Config::default(), "{name} changed nothing");
        }
    }

    #[test]
    fn the_help_shows_every_table_and_setting() {
        let help = Config::help_text();
        for key in [
            "max_provisioning",
            "provisioning_per_address",
            "metrics_public = false",
            "[cluster]",
            "insecure_nats",
            "[limits]",
            "messages_per_second",
            "[argon2]",
            "CHAT_NATS_PASSWORD",
        ] {
            assert!(help.contains(key), "{key} missing from:\n{help}");
        }
    }
}
