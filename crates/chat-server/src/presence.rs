//! When contacts hear that a user went offline: after `presence_grace_ms`
//! without a connection, so a user whose short-lived commands connect one
//! after another (or whose network blinks) shows as online once, not as an
//! offline/online pair per command.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chat_proto::rest::User;
use chat_proto::ws::{Online, ServerFrame};

use crate::state::AppState;

/// Tells those who may see `user` that they are (not) online; returns who.
pub(crate) async fn presence(state: &AppState, user: &User, online: bool) -> Vec<String> {
    let contacts = state
        .store
        .presence_watchers(&user.id)
        .await
        .unwrap_or_default();
    let frame = ServerFrame::Online(Online {
        user_id: user.id.clone(),
        username: user.username.clone(),
        online,
    });
    for c in &contacts {
        state.send_everywhere(c, &frame);
    }
    contacts
}

/// Those of `candidates` with a connection here or on another node.
pub(crate) async fn online_among(state: &AppState, candidates: &[String]) -> Vec<String> {
    // A user whose offline is held back is still online to everyone.
    let mut here: Vec<String> = state
        .hub
        .online_among(candidates)
        .into_iter()
        .cloned()
        .collect();
    here.extend(
        candidates
            .iter()
            .filter(|c| !here.contains(c) && held_back(state, c))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let Some(cluster) = &state.cluster else {
        return here;
    };
    let elsewhere = futures_util::future::join_all(
        candidates
            .iter()
            .filter(|c| !here.contains(c))
            .map(|c| async move { cluster.connected_elsewhere(c).await.then(|| c.clone()) }),
    )
    .await;
    here.into_iter()
        .chain(elsewhere.into_iter().flatten())
        .collect()
}

/// Numbers the disconnects, so a late timer never cancels a newer one.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// The user's last connection (on every node) just went: tell their
/// contacts once the grace has passed with no reconnect (`ws` tells them
/// at once when the grace is 0).
pub(crate) fn went_offline(state: &Arc<AppState>, user: &User) {
    let grace = state.config.presence_grace_ms;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut p) = state.offline_pending.lock() {
        p.insert(user.id.clone(), n);
    }
    let (state, user) = (state.clone(), user.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(grace)).await;
        let still = state
            .offline_pending
            .lock()
            .map(|mut p| {
                if p.get(&user.id) == Some(&n) {
                    p.remove(&user.id);
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if still && !state.hub.is_online(&user.id) {
            let elsewhere = match &state.cluster {
                Some(cluster) => cluster.connected_elsewhere(&user.id).await,
                None => false,
            };
            if !elsewhere {
                presence(&state, &user, false).await;
            }
        }
    });
}

/// The user connected: true if an offline was still held back (their
/// contacts never heard it, so they need no "online" either).
pub(crate) fn cancel_offline(state: &AppState, user_id: &str) -> bool {
    state
        .offline_pending
        .lock()
        .map(|mut p| p.remove(user_id).is_some())
        .unwrap_or(false)
}

/// Whether the user's offline is being held back (to others they are
/// still online).
pub(crate) fn held_back(state: &AppState, user_id: &str) -> bool {
    state
        .offline_pending
        .lock()
        .map(|p| p.contains_key(user_id))
        .unwrap_or(false)
}
