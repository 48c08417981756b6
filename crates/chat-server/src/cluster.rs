//! Several relay nodes on one PostgreSQL database: hints between them over
//! NATS core (docs/DEPLOY.md, DESIGN decisions in docs/DECISIONS.md).
//!
//! The database is the record; NATS only says "look". After a message
//! commits, its node publishes one hint per recipient device on
//! `chat.u.<user id>` carrying the queue number and the message; a node
//! with a connection of that device pushes it only when it is exactly the
//! next number for that connection, otherwise the connection pulls. Queued
//! status events are stored first and hinted (the node holding the
//! connection takes them from the database), so a lost hint delays, never
//! loses. `groupChanged` notices are stored for members not connected here
//! and relayed as frames to their connections elsewhere. Typing, presence
//! and notices to a user's own devices are ephemeral frames, relayed as
//! they are.
//!
//! A node subscribes to `chat.u.<user>` (hints) and `chat.here.<user>`
//! (answers "connected here") for each user with a connection on it, from
//! before that connection's first pull until its last connection leaves.
//! When NATS comes back after an outage, every connection pulls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chat_proto::rest::RelayedMessage;
use chat_proto::ws::{CloseReason, ServerFrame};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Hints waiting to be published; beyond this they are dropped (a dropped
/// hint is a delay: connections pull on their idle timer).
const OUTBOX: usize = 65_536;

/// How long a "connected elsewhere?" question waits for an answer.
const ASK_TIMEOUT: Duration = Duration::from_millis(250);

/// What one node tells the others about one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "camelCase")]
pub enum Hint {
    /// A message was queued for one of the user's devices.
    #[serde(rename_all = "camelCase")]
    Queued {
        /// The device.
        device: u32,
        /// Its queue number.
        seq: i64,
        /// The message as that device gets it.
        message: Box<RelayedMessage>,
    },
    /// A frame for every connection of the user (typing, presence, a
    /// notice to the user's devices).
    Frame {
        /// The frame.
        frame: Box<ServerFrame>,
    },
    /// Status events were queued for the user's devices: take them.
    Statuses,
    /// A device connected (on the sending node) at `at` (ms): older
    /// connections of that device elsewhere close.
    #[serde(rename_all = "camelCase")]
    Connected {
        /// The device.
        device: u32,
        /// When it registered.
        at: i64,
    },
    /// The token with this hash (hex) was logged out: its connections close.
    #[serde(rename_all = "camelCase")]
    CloseToken {
        /// SHA-256 of the token, hex.
        token: String,
    },
    /// Every token but this one (hex) was revoked.
    #[serde(rename_all = "camelCase")]
    CloseOthers {
        /// SHA-256 of the kept token, hex.
        keep: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    #[serde(flatten)]
    hint: Hint,
}

struct Watch {
    count: usize,
    task: JoinHandle<()>,
}

/// This node's link to the others.
pub struct Cluster {
    node: String,
    client: async_nats::Client,
    out: mpsc::Sender<(String, Vec<u8>)>,
    watches: Mutex<HashMap<String, Watch>>,
    /// Set once the state exists (it holds this cluster).
    state: std::sync::OnceLock<Weak<AppState>>,
}

/// Whether `id` can be a subject token: user ids are UUIDs; anything else
/// (a wildcard, a dot) is never published.
fn subject_safe(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Cluster {
    /// Whether the NATS connection is up now (readiness).
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Connects to NATS (retrying in the background while it is down);
    /// each time the connection comes back, every local connection pulls.
    pub async fn connect(config: &crate::config::ClusterConfig) -> Result<Arc<Self>, String> {
        let (url, in_url) = config.nats_url_parts();
        let shown = config.nats_url_redacted();
        let node = uuid::Uuid::new_v4().simple().to_string();
        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<async_nats::Event>();
        let options = async_nats::ConnectOptions::new()
            .name(format!("chat-server {node}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(Some(ASK_TIMEOUT))
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(2_000))
            })
            .event_callback(move |e| {
                let tx = events_tx.clone();
                async move {
                    let _ = tx.send(e);
                }
            })
            .require_tls(config.nats_tls);
        let options = match (
            &config.nats_user,
            &config.nats_password,
            &config.nats_nkey_seed,
        ) {
            (_, _, Some(seed)) => options.nkey(seed.expose().to_owned()),
            (Some(user), Some(password), None) => {
                options.user_and_password(user.clone(), password.expose().to_owned())
            }
            _ => match in_url {
                Some((user, password)) => {
                    options.user_and_password(user, password.expose().to_owned())
                }
                None => options,
            },
        };
        let options = match &config.nats_ca_file {
            Some(ca) => options.add_root_certificates(ca.clone()),
            None => options,
        };
        let options = match (&config.nats_client_cert, &config.nats_client_key) {
            (Some(cert), Some(key)) => options.add_client_certificate(cert.clone(), key.clone()),
            _ => options,
        };
        let client = options
            .connect(url.as_str())
            .await
            .map_err(|e| format!("nats {shown}: {e}"))?;
        let (out, mut rx) = mpsc::channel::<(String, Vec<u8>)>(OUTBOX);
        let publisher = client.clone();
        // One task publishes, so hints leave in the order they were made.
        tokio::spawn(async move {
            while let Some((subject, payload)) = rx.recv().await {
                if let Err(e) = publisher.publish(subject, payload.into()).await {
                    tracing::debug!(error = %e, "hint not published");
                }
            }
        });
        let cluster = Arc::new(Self {
            node,
            client,
            out,
            watches: Mutex::new(HashMap::new()),
            state: std::sync::OnceLock::new(),
        });
        let weak = Arc::downgrade(&cluster);
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                tracing::info!(%event, "nats");
                if matches!(event, async_nats::Event::Connected)
                    && let Some(c) = weak.upgrade()
                    && let Some(state) = c.state.get().and_then(Weak::upgrade)
                {
                    // Hints may have been lost while away.
                    state.hub.poke_all();
                }
            }
        });
        Ok(cluster)
    }

    /// Hands the cluster the state its subscribers deliver into.
    pub fn attach(&self, state: &Arc<AppState>) {
        let _ = self.state.set(Arc::downgrade(state));
    }

    /// Publishes a hint about `user` (dropped when the outbox is full).
    pub fn publish(&self, user: &str, hint: Hint) {
        if !subject_safe(user) {
            return;
        }
        let env = Envelope {
            node: self.node.clone(),
            hint,
        };
        match serde_json::to_vec(&env) {
            Ok(payload) => {
                if self
                    .out
                    .try_send((format!("chat.u.{user}"), payload))
                    .is_err()
                {
                    tracing::warn!("hint outbox full: a hint was dropped");
                }
            }
            Err(e) => tracing::warn!(error = %e, "hint not encoded"),
        }
    }

    /// Starts (or counts another) local connection of `user`: subscribes
    /// to its hints. Returns once the subscription reached NATS (or NATS
    /// is down, when the connection's idle pulls cover for it).
    pub async fn watch(self: &Arc<Self>, user: &str) {
        if !subject_safe(user) {
            return;
        }
        {
            let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(watch) = w.get_mut(user) {
                watch.count += 1;
                return;
            }
        }
        let hints = self.client.subscribe(format!("chat.u.{user}")).await;
        let here = self.client.subscribe(format!("chat.here.{user}")).await;
        let _ = tokio::time::timeout(ASK_TIMEOUT, self.client.flush()).await;
        let (Ok(hints), Ok(here)) = (hints, here) else {
            tracing::warn!(user, "hint subscription failed");
            return;
        };
        let task = tokio::spawn(serve_user(
            Arc::downgrade(self),
            user.to_owned(),
            hints,
            here,
        ));
        let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        match w.get_mut(user) {
            // Another connection subscribed meanwhile: keep one.
            Some(watch) => {
                watch.count += 1;
                task.abort();
            }
            None => {
                w.insert(user.to_owned(), Watch { count: 1, task });
            }
        }
    }

    /// One local connection of `user` ended; the last one unsubscribes.
    pub fn unwatch(&self, user: &str) {
        let mut w = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(watch) = w.get_mut(user) {
            watch.count = watch.count.saturating_sub(1);
            if watch.count == 0
                && let Some(watch) = w.remove(user)
            {
                watch.task.abort();
            }
        }
    }

    /// Whether `user` has a connection on another node.
    pub async fn connected_elsewhere(&self, user: &str) -> bool {
        if !subject_safe(user) {
            return false;
        }
        // Our own subscriber answers too; ask with our node id and let it
        // stay silent.
        let ask = self.client.request(
            format!("chat.here.{user}"),
            self.node.clone().into_bytes().into(),
        );
        matches!(tokio::time::timeout(ASK_TIMEOUT, ask).await, Ok(Ok(_)))
    }
}

/// Delivers one user's hints to this node's connections of that user.
async fn serve_user(
    cluster: Weak<Cluster>,
    user: String,
    mut hints: async_nats::Subscriber,
    mut here: async_nats::Subscriber,
) {
    loop {
        tokio::select! {
            m = hints.next() => {
                let Some(m) = m else { return };
                let Some(c) = cluster.upgrade() else { return };
                let Some(state) = c.state.get().and_then(Weak::upgrade) else { return };
                match serde_json::from_slice::<Envelope>(&m.payload) {
                    Ok(env) if env.node != c.node => apply(&state, &user, env.hint).await,
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "bad hint"),
                }
            }
            q = here.next() => {
                let Some(q) = q else { return };
                let Some(c) = cluster.upgrade() else { return };
                if q.payload.as_ref() != c.node.as_bytes()
                    && let Some(reply) = q.reply
                {
                    let _ = c.client.publish(reply, Vec::new().into()).await;
                }
            }
        }
    }
}

async fn apply(state: &AppState, user: &str, hint: Hint) {
    match hint {
        Hint::Queued {
            device,
            seq,
            message,
        } => state.hub.push_queued(user, device, seq, &message),
        Hint::Frame { frame } => {
            state.hub.send(user, &frame);
        }
        Hint::Statuses => {
            for device in state.hub.devices_of(user) {
                if let Ok(events) = state.store.take_statuses(user, device).await {
                    for e in events {
                        state
                            .hub
                            .send_to_device(user, device, &crate::relay::status_frame(&e));
                    }
                }
            }
        }
        Hint::Connected { device, at } => {
            state
                .hub
                .close_device_before(user, device, at, CloseReason::Replaced);
        }
        Hint::CloseToken { token } => {
            if let Ok(t) = hex::decode(&token) {
                state.hub.close_token(user, &t);
            }
        }
        Hint::CloseOthers { keep } => {
            if let Ok(k) = hex::decode(&keep) {
                state.hub.close_others(user, &k);
            }
        }
    }
}
