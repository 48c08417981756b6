//! Peers' identity keys: what we saw, what the user verified, and whether
//! we may send to them.
//!
//! A key is *trusted* when we may encrypt to it. Whether a key we have not
//! verified is trusted is the [`TrustPolicy`]'s call, made in the same
//! transaction that records the key; a key that replaces a *verified* one is
//! never trusted until the user verifies it or says to trust it
//! ([`Tx::trust_identity`], [`Tx::verify_identity`]). Both name the key the
//! user looked at, so a key that changed in between is not the one marked.

use e2ee_core::IdentityPublic;
use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::store::{Tx, now_ms};

/// What to do with an identity key the user has not verified, as in
/// signal-cli's `--trust-new-identities`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TrustPolicy {
    /// Trust the first key seen for a peer; a later key is untrusted until
    /// the user trusts or verifies it. The default.
    #[default]
    OnFirstUse,
    /// Trust every key of a peer the user has not verified (a changed key
    /// still raises the change; a key replacing a verified one is still
    /// untrusted).
    Always,
    /// Trust no key until the user trusts or verifies it, the first one
    /// included.
    Never,
}

impl std::str::FromStr for TrustPolicy {
    type Err = StoreError;

    /// `on-first-use`, `always` or `never`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "on-first-use" => Ok(TrustPolicy::OnFirstUse),
            "always" => Ok(TrustPolicy::Always),
            "never" => Ok(TrustPolicy::Never),
            _ => Err(StoreError::Invalid(
                "a trust policy is on-first-use, always or never",
            )),
        }
    }
}

impl std::fmt::Display for TrustPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrustPolicy::OnFirstUse => "on-first-use",
            TrustPolicy::Always => "always",
            TrustPolicy::Never => "never",
        })
    }
}

/// What we know of a peer's identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The user id.
    pub user_id: String,
    /// The identity key we have now (the one sessions are with).
    pub identity: IdentityPublic,
    /// When it was first seen (ms).
    pub first_seen_ms: i64,
    /// Verified by comparing safety numbers; cleared when the key changes.
    pub verified: bool,
    /// Whether we may send to this key (see the module docs).
    pub trusted: bool,
    /// When the key last changed, if it ever did.
    pub changed_at_ms: Option<i64>,
    /// The key before the last change.
    pub previous: Option<IdentityPublic>,
}

/// What remembering a peer's identity found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityCheck {
    /// First time we see this peer.
    New,
    /// The same key as before.
    Same,
    /// A different key: the session may be with someone else. The new key
    /// replaces the old one, `verified` is cleared, and whether it is
    /// trusted follows the [`TrustPolicy`] (never, if the old one was
    /// verified).
    Changed {
        /// Whether the old key had been verified (warn loudly if so).
        was_verified: bool,
    },
}

fn key(b: &[u8]) -> Result<IdentityPublic> {
    IdentityPublic::from_slice(b).map_err(|_| StoreError::Corrupt("peer identity".into()))
}

impl Tx<'_> {
    /// What we know of a peer's identity.
    pub fn peer(&self, user_id: &str) -> Result<Option<PeerIdentity>> {
        let row = self
            .c()
            .prepare_cached(
                "SELECT identity, first_seen, verified, changed_at, previous_identity, trusted
                 FROM peers WHERE user_id = ?1",
            )?
            .query_row([user_id], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                    r.get::<_, bool>(5)?,
                ))
            })
            .optional()?;
        let Some((id, first_seen_ms, verified, changed_at_ms, prev, trusted)) = row else {
            return Ok(None);
        };
        Ok(Some(PeerIdentity {
            user_id: user_id.to_owned(),
            identity: key(&id)?,
            first_seen_ms,
            verified,
            trusted,
            changed_at_ms,
            previous: prev.as_deref().map(key).transpose()?,
        }))
    }

    /// Every known peer.
    pub fn peers(&self) -> Result<Vec<PeerIdentity>> {
        let ids: Vec<String> = self
            .c()
            .prepare("SELECT user_id FROM peers ORDER BY user_id")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = self.peer(&id)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Records the identity a peer presented. A change replaces the key,
    /// keeps the old one, clears `verified` and sets `trusted` by the
    /// policy (see the module docs).
    pub fn remember_identity(
        &self,
        user_id: &str,
        identity: &IdentityPublic,
    ) -> Result<IdentityCheck> {
        let now = now_ms();
        match self.peer(user_id)? {
            None => {
                self.c().execute(
                    "INSERT INTO peers (user_id, identity, first_seen, trusted)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        user_id,
                        identity.to_bytes().as_slice(),
                        now,
                        self.trust != TrustPolicy::Never
                    ],
                )?;
                Ok(IdentityCheck::New)
            }
            Some(p) if p.identity == *identity => Ok(IdentityCheck::Same),
            Some(p) => {
                let trusted = !p.verified && self.trust == TrustPolicy::Always;
                self.c().execute(
                    "UPDATE peers SET identity = ?2, previous_identity = ?3, changed_at = ?4,
                         verified = 0, trusted = ?5 WHERE user_id = ?1",
                    params![
                        user_id,
                        identity.to_bytes().as_slice(),
                        p.identity.to_bytes().as_slice(),
                        now,
                        trusted
                    ],
                )?;
                // One identity per account: sessions under the old key are
                // with devices that no longer speak for this user, and
                // whatever they held of our group chains is replaced.
                self.drop_sessions_not_under(user_id, identity)?;
                self.rotate_groups_shared_with(user_id)?;
                Ok(IdentityCheck::Changed {
                    was_verified: p.verified,
                })
            }
        }
    }

    /// Marks a peer verified (or not). The peer must be known. Prefer
    /// [`Tx::verify_identity`], which names the key the user compared.
    pub fn set_verified(&self, user_id: &str, verified: bool) -> Result<()> {
        let n = self.c().execute(
            "UPDATE peers SET verified = ?2, trusted = trusted OR ?2 WHERE user_id = ?1",
            params![user_id, verified],
        )?;
        if n == 0 {
            return Err(StoreError::Missing("peer"));
        }
        Ok(())
    }

    /// Marks `identity` verified and trusted, if it is still the peer's
    /// key. [`StoreError::IdentityChanged`] if the key changed since the
    /// user compared it; [`StoreError::Missing`] for an unknown peer.
    pub fn verify_identity(&self, user_id: &str, identity: &IdentityPublic) -> Result<()> {
        self.mark(user_id, identity, "verified = 1, trusted = 1")
    }

    /// Trusts `identity` without verifying it (the user accepts the key),
    /// if it is still the peer's key, or the key it replaced (the user
    /// rejects the change: the old key is pinned again); errors as
    /// [`Tx::verify_identity`].
    pub fn trust_identity(&self, user_id: &str, identity: &IdentityPublic) -> Result<()> {
        self.mark(user_id, identity, "trusted = 1")
    }

    fn mark(&self, user_id: &str, identity: &IdentityPublic, set: &str) -> Result<()> {
        // The key the user names may be the one the current key replaced:
        // the user decided the change was not real (a lying server showed
        // another key), so the old key is pinned again, with its sessions
        // (any under the other key are dropped). Nothing else is pinned by
        // naming it.
        if let Some(p) = self.peer(user_id)?
            && p.identity != *identity
            && p.previous == Some(*identity)
        {
            self.c().execute(
                "UPDATE peers SET identity = ?2, previous_identity = ?3, changed_at = ?4,
                     verified = 0, trusted = 0 WHERE user_id = ?1",
                params![
                    user_id,
                    identity.to_bytes().as_slice(),
                    p.identity.to_bytes().as_slice(),
                    now_ms()
                ],
            )?;
            self.drop_sessions_not_under(user_id, identity)?;
        }
        let n = self.c().execute(
            &format!("UPDATE peers SET {set} WHERE user_id = ?1 AND identity = ?2"),
            params![user_id, identity.to_bytes().as_slice()],
        )?;
        if n == 1 {
            return Ok(());
        }
        match self.peer(user_id)? {
            None => Err(StoreError::Missing("peer")),
            Some(_) => Err(StoreError::IdentityChanged(user_id.to_owned())),
        }
    }
}

/// One entry of a `ContactSync` body: user id (16), identity key (64),
/// flags (bit 0 verified, bit 1 trusted).
const CONTACT_ENTRY: usize = 16 + 64 + 1;
/// Entries per `ContactSync` payload (40,500 bytes of body, under the
/// padded payload limit).
pub const CONTACT_SYNC_ENTRIES: usize = 500;

/// What a `ContactSync` from another of our devices did here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactSyncOutcome {
    /// It was empty: a newly linked device asks for ours (answer with
    /// [`Tx::contact_sync_bodies`]).
    pub request: bool,
    /// Contacts pinned here for the first time, or whose decision
    /// (verified, trusted) was taken over.
    pub updated: usize,
    /// Contacts for whom that device pinned another key than this one:
    /// warn. Where our key was only trusted on first use and theirs was
    /// verified or trusted there, theirs is pinned here now.
    pub conflicts: Vec<String>,
}

/// Applies a `ContactSync` body from one of our own devices.
pub(crate) fn apply_contact_sync(tx: &Tx<'_>, me: &str, body: &[u8]) -> Result<ContactSyncOutcome> {
    if !body.len().is_multiple_of(CONTACT_ENTRY) {
        return Err(StoreError::Invalid("a contact sync body"));
    }
    let mut out = ContactSyncOutcome {
        request: body.is_empty(),
        ..ContactSyncOutcome::default()
    };
    for e in body.chunks_exact(CONTACT_ENTRY) {
        let mut id = [0u8; 16];
        id.copy_from_slice(&e[..16]);
        let user = crate::ops::uuid_string(&id);
        if user == me {
            continue;
        }
        let key = IdentityPublic::from_slice(&e[16..80])
            .map_err(|_| StoreError::Invalid("a contact sync identity key"))?;
        let verified = e[80] & 1 != 0;
        let trusted = verified || e[80] & 2 != 0;
        match tx.peer(&user)? {
            None => {
                tx.c().execute(
                    "INSERT INTO peers (user_id, identity, first_seen, verified, trusted)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![user, key.to_bytes().as_slice(), now_ms(), verified, trusted],
                )?;
                out.updated += 1;
            }
            Some(p) if p.identity == key => {
                if (verified && !p.verified) || (trusted && !p.trusted) {
                    tx.c().execute(
                        "UPDATE peers SET verified = verified OR ?2, trusted = trusted OR ?3
                         WHERE user_id = ?1",
                        params![user, verified, trusted],
                    )?;
                    out.updated += 1;
                }
            }
            Some(p) => {
                // Our devices disagree: someone showed one of them another
                // key. A decision the user made there beats a key this
                // device merely met first; a key verified here stays.
                if !p.verified && (verified || trusted) {
                    tx.c().execute(
                        "UPDATE peers SET identity = ?2, previous_identity = ?3, changed_at = ?4,
                             verified = ?5, trusted = ?6 WHERE user_id = ?1",
                        params![
                            user,
                            key.to_bytes().as_slice(),
                            p.identity.to_bytes().as_slice(),
                            now_ms(),
                            verified,
                            trusted
                        ],
                    )?;
                    tx.drop_sessions_not_under(&user, &key)?;
                    tx.rotate_groups_shared_with(&user)?;
                    out.updated += 1;
                }
                out.conflicts.push(user);
            }
        }
    }
    Ok(out)
}

impl Tx<'_> {
    /// Our pinned contacts as `ContactSync` bodies of at most
    /// [`CONTACT_SYNC_ENTRIES`] entries each (none when we know nobody).
    pub fn contact_sync_bodies(&self) -> Result<Vec<Vec<u8>>> {
        let mut entries = Vec::new();
        for p in self.peers()? {
            let Ok(id) = uuid::Uuid::parse_str(&p.user_id) else {
                continue;
            };
            let mut e = Vec::with_capacity(CONTACT_ENTRY);
            e.extend_from_slice(id.as_bytes());
            e.extend_from_slice(&p.identity.to_bytes());
            e.push(u8::from(p.verified) | (u8::from(p.trusted) << 1));
            entries.push(e);
        }
        Ok(entries
            .chunks(CONTACT_SYNC_ENTRIES)
            .map(|c| c.concat())
            .collect())
    }
}
