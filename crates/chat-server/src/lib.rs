//! # chat-server
//!
//! The e2ee-chat relay: accounts, prekey bundles, a durable 1:1 and group
//! message queue, receipts, typing and presence, verification records and
//! encrypted media, over REST and WebSocket (axum on hyper, tungstenite),
//! stored in SQLite. It only ever sees ciphertext.
//!
//! The delivery rules: a message is acknowledged (`ack`) only after its batch
//! is committed; it is deleted only when the recipient's client says
//! `delivered`; a connecting client gets its queue in order with a window of
//! in-flight messages; typing and presence are never stored.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = chat_server::start(chat_server::Config::default()).await?;
//! println!("listening on {}", server.addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Layout: `routes/` (REST handlers), `ws.rs` (one connection), `relay.rs`
//! (the delivery rules), `hub.rs` (live connections), `storage/` (the
//! `Storage` trait and its SQLite backend), `serve.rs` (the accept loop,
//! connection count and deadlines), `config.rs`, `metrics.rs`.

pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod files;
pub mod hub;
pub mod metrics;
mod presence;
pub mod provision;
pub mod relay;
pub mod routes;
pub mod serve;
pub mod state;
pub mod storage;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use config::Config;

use crate::config::StorageKind;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::state::{AppState, Limiters};
use crate::storage::Storage;
use crate::storage::pg::PgStorage;
use crate::storage::sqlite::SqliteStorage;

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder or database could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] storage::StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics registry refused a series (a bad name: a bug).
    #[error("metrics: {0}")]
    Metrics(String),
    /// The media folder could not be made.
    #[error("media folder: {0}")]
    Media(std::io::Error),
    /// The configuration does not hold together, or the cluster link
    /// could not be set up.
    #[error("config: {0}")]
    Config(String),
}

/// A running server.
pub struct RunningServer {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    state: Arc<AppState>,
}

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared state (tests inspect the store through it).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting, closes connections, lets in-flight requests and
    /// commits finish, then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (after [`RunningServer::shutdown`] from
    /// elsewhere, or a signal when started with [`serve_until_signal`]).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Opens storage, binds `config.listen` and serves in the background.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let metrics = Arc::new(Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?);
    let store: Arc<dyn Storage> = match config.storage {
        StorageKind::Sqlite => Arc::new(SqliteStorage::open(
            &config.data_dir,
            config.sync_full,
            metrics.clone(),
        )?),
        StorageKind::Postgres => {
            Arc::new(PgStorage::open(&config.postgres, metrics.clone()).await?)
        }
    };
    let media_dir = config
        .media_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("media"));
    files::private_dir(&media_dir).map_err(StartError::Media)?;
    remove_partial_uploads(&media_dir);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let admin = match config.admin_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .map_err(|source| StartError::Bind { addr: a, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| StartError::Bind { addr: a, source })?;
            Some((l, bound))
        }
        None => None,
    };
    let cluster = match &config.cluster.nats_url {
        None => None,
        Some(_) if !config.cluster.nats_authenticated() && !config.cluster.insecure_nats => {
            return Err(StartError::Config(
                "a cluster authenticates to NATS: set cluster.nats_user and nats_password, or \
                 nats_nkey_seed (or credentials in nats_url); insecure_nats = true only for a \
                 NATS no one but the nodes can reach"
                    .into(),
            ));
        }
        Some(_) if config.storage != StorageKind::Postgres => {
            return Err(StartError::Config(
                "cluster.nats_url needs storage = \"postgres\": nodes share one database".into(),
            ));
        }
        Some(_) => Some(
            cluster::Cluster::connect(&config.cluster)
                .await
                .map_err(StartError::Config)?,
        ),
    };
    let (stop, stop_rx) = watch::channel(false);
    let state = Arc::new(AppState {
        limits: Limiters::new(&config),
        connections: Arc::new(Semaphore::new(config.max_connections)),
        config,
        store,
        hub: Hub::default(),
        metrics,
        media_dir,
        shutdown: stop_rx.clone(),
        uploads_in_flight: Default::default(),
        offline_pending: Default::default(),
        quota_gate: Default::default(),
        provisioning: Default::default(),
        cluster,
    });
    if let Some(c) = &state.cluster {
        c.attach(&state);
    }
    let app = routes::router(state.clone());
    let purge_state = state.clone();
    let mut purge_stop = stop_rx.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = purge_stop.changed() => return,
            }
            purge_expired(&purge_state, auth::now_ms()).await;
        }
    });
    let hub_state = state.clone();
    let mut hub_stop = stop_rx.clone();
    tokio::spawn(async move {
        let _ = hub_stop.wait_for(|s| *s).await;
        // Open WebSockets are told through their mailboxes (see ws.rs).
        hub_state.hub.close_all();
    });
    let admin_addr = admin.as_ref().map(|(_, a)| *a);
    if let Some((l, _)) = admin {
        let admin_app = routes::admin_router(state.clone());
        let mut admin_stop = stop_rx.clone();
        tokio::spawn(async move {
            let serve = axum::serve(l, admin_app).with_graceful_shutdown(async move {
                let _ = admin_stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "admin listener stopped with an error");
            }
        });
    }
    let task = tokio::spawn(serve::run(listener, app, state.clone(), stop_rx));
    tracing::info!(%addr, ?admin_addr, "listening");
    Ok(RunningServer {
        addr,
        admin_addr,
        stop,
        task,
        state,
    })
}

/// The hourly clean-up, as of `now` (ms): undelivered messages past
/// `retention_days`, tokens idle past `token_idle_days`, media past
/// `media_retention_days` (rows and files), and rate-limit keys whose
/// budget is full again.
pub async fn purge_expired(state: &AppState, now: i64) {
    let c = &state.config;
    let day = 86_400_000;
    let cutoff = now - i64::from(c.retention_days) * day;
    let token_cutoff = now - i64::from(c.token_idle_days) * day;
    state.limits.prune();
    match state.store.purge(cutoff, token_cutoff).await {
        Ok(n) if n > 0 => tracing::info!(expired = n, "purged undelivered messages"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "purge failed"),
    }
    let media_cutoff = now - i64::from(c.media_retention_days) * day;
    match state.store.purge_media(media_cutoff).await {
        Ok(ids) => {
            for id in &ids {
                // The row is gone first: a download never finds a row
                // without its file for long, and a missing file is a 404.
                if let Err(e) = tokio::fs::remove_file(state.media_dir.join(id)).await
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(error = %e, media = %id, "media file not deleted");
                }
            }
            if !ids.is_empty() {
                tracing::info!(deleted = ids.len(), "purged old media");
            }
        }
        Err(e) => tracing::warn!(error = %e, "media purge failed"),
    }
}

/// Deletes uploads a crash left half-written (`*.part`).
fn remove_partial_uploads(media_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(media_dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.path().extension().is_some_and(|x| x == "part") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve_until_signal(config: Config) -> Result<(), StartError> {
    // The handlers are installed before the server listens: a SIGTERM or
    // SIGINT that comes as soon as the address is printed is a clean
    // shutdown, not the default action (the process killed).
    let signal = shutdown_signal();
    let server = start(config).await?;
    let stop = server.stop.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    server.wait().await;
    Ok(())
}

/// SIGTERM or SIGINT (Ctrl-C), listened for from the moment this is called
/// (not from its first poll).
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
