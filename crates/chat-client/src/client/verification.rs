//! Fingerprints, safety numbers, verification and trust in a peer's key.

use chat_proto::rest::{self, VerifyKeyRequest};
use e2ee_core::SafetyNumber;
use e2ee_store::{PeerIdentity, StoreError};

use super::{Client, Result};
use crate::error::ClientError;

impl Client {
    /// Our identity fingerprint, in groups of four hex digits.
    pub async fn fingerprint(&self) -> Result<String> {
        let id = self
            .inner
            .db(|s| s.read(|tx| tx.require_identity()))
            .await?;
        Ok(e2ee_core::fingerprint_grouped(&id.public()))
    }

    /// What we know of a peer's identity (fetching their keys if we have
    /// never talked).
    pub async fn peer(&self, user_id: &str) -> Result<PeerIdentity> {
        let u = user_id.to_owned();
        if let Some(p) = self.inner.db(move |s| s.read(|tx| tx.peer(&u))).await? {
            return Ok(p);
        }
        self.inner.ensure_session(user_id).await?;
        let u = user_id.to_owned();
        self.inner
            .db(move |s| s.read(|tx| tx.peer(&u)))
            .await?
            .ok_or_else(|| ClientError::UnknownUser(user_id.to_owned()))
    }

    /// What the store knows of a peer's identity, without asking the
    /// server (`None` if we never talked).
    pub async fn known_peer(&self, user_id: &str) -> Result<Option<PeerIdentity>> {
        let u = user_id.to_owned();
        self.inner.db(move |s| s.read(|tx| tx.peer(&u))).await
    }

    /// A peer's identity fingerprint as we know it, in groups of four hex
    /// digits (what they see as their own [`Client::fingerprint`] unless
    /// someone is in the middle).
    pub async fn peer_fingerprint(&self, user_id: &str) -> Result<String> {
        Ok(e2ee_core::fingerprint_grouped(
            &self.peer(user_id).await?.identity,
        ))
    }

    /// How the current session with a peer was set up: `Some(true)` for
    /// PQXDH (ML-KEM-1024 beside X25519, protocol version 2), `Some(false)`
    /// for an X3DH session from before, `None` if there is no session.
    pub async fn session_is_post_quantum(&self, user_id: &str) -> Result<Option<bool>> {
        let peer = user_id.to_owned();
        self.inner
            .db(move |s| s.read(|tx| tx.session_is_pqxdh(&peer)))
            .await
    }

    /// The safety number with a peer: 60 digits, the same on both sides.
    pub async fn safety_number(&self, user_id: &str) -> Result<SafetyNumber> {
        let me = self.inner.me()?;
        let peer = self.peer(user_id).await?;
        let ours = self
            .inner
            .db(|s| s.read(|tx| tx.require_identity()))
            .await?
            .public();
        let peer_id = user_id.to_owned();
        tokio::task::spawn_blocking(move || {
            SafetyNumber::new(&ours, &me.user_id, &peer.identity, &peer_id)
        })
        .await
        .map_err(|_| ClientError::Closed)
    }

    /// Marks a peer verified after the user compared `compared` (the
    /// safety number they were shown) with the peer's, locally and on the
    /// server; it also makes the key trusted. If the peer's key changed
    /// since `compared` was computed, nothing is marked and the error is
    /// [`StoreError::IdentityChanged`]: the user compared another key. A
    /// later key change clears it and raises [`crate::Event::IdentityChanged`] with
    /// `was_verified`.
    pub async fn verify(&self, user_id: &str, compared: &SafetyNumber) -> Result<()> {
        let peer = self.peer(user_id).await?;
        if self.safety_number(user_id).await? != *compared {
            return Err(StoreError::IdentityChanged(user_id.to_owned()).into());
        }
        self.inner
            .rest
            .verify_key(&VerifyKeyRequest {
                user_id: user_id.to_owned(),
                fingerprint: e2ee_core::fingerprint(&peer.identity),
            })
            .await?;
        let (u, key) = (user_id.to_owned(), peer.identity);
        self.inner
            .db(move |s| s.write(|tx| tx.verify_identity(&u, &key)))
            .await?;
        self.inner.release_held(user_id).await
    }

    /// Trusts a peer's current key without verifying it (the user accepts
    /// a changed safety number), so sending to them works again. `seen` is
    /// the fingerprint the user was shown ([`Client::peer_fingerprint`]); if
    /// the key changed since, nothing is trusted
    /// ([`StoreError::IdentityChanged`]). `seen` may also name the key the
    /// current one replaced ([`PeerIdentity::previous`]): the user rejects
    /// the change (a server showed a key that is not the peer's), and the
    /// old key is pinned and trusted again. Messages held for this peer
    /// ([`crate::Event::SendHeld`]) then go out.
    pub async fn trust_identity(&self, user_id: &str, seen: &str) -> Result<()> {
        let peer = self.peer(user_id).await?;
        let fingerprint = e2ee_core::fingerprint_grouped(&peer.identity);
        let digits = |s: &str| {
            s.chars()
                .filter(char::is_ascii_hexdigit)
                .collect::<String>()
        };
        let seen = digits(seen).to_ascii_lowercase();
        // The key the user names: the current one (they accept the
        // change), or the one it replaced (they reject it: a lying server
        // showed another key; the old key is pinned again).
        let key = if digits(&fingerprint) == seen {
            peer.identity
        } else {
            match peer.previous {
                Some(old) if digits(&e2ee_core::fingerprint_grouped(&old)) == seen => old,
                _ => return Err(StoreError::IdentityChanged(user_id.to_owned()).into()),
            }
        };
        let u = user_id.to_owned();
        self.inner
            .db(move |s| s.write(|tx| tx.trust_identity(&u, &key)))
            .await?;
        self.inner.release_held(user_id).await
    }

    /// Clears a peer's verification, locally and on the server.
    pub async fn unverify(&self, user_id: &str) -> Result<()> {
        let u = user_id.to_owned();
        self.inner
            .db(move |s| s.write(|tx| tx.set_verified(&u, false)))
            .await?;
        match self.inner.rest.delete_verification(user_id).await {
            Err(e) if e.code() != Some(rest::ErrorCode::NotFound) => Err(e.into()),
            _ => Ok(()),
        }
    }
}
