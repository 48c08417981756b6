//! Stores with cheap keys, parties with prekeys, and a pretend server that
//! hands out bundles.

use std::path::{Path, PathBuf};

use e2ee_core::{IdentityKeyPair, OneTimePreKeyPair, Payload, PreKeyBundle, SignedPreKeyPair};
use e2ee_store::{
    Account, Conversation, KdfParams, NewMessage, OpenOptions, Passphrase, Status, Store,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

pub(crate) fn fast() -> OpenOptions {
    OpenOptions {
        kdf: KdfParams::for_tests(),
        ..OpenOptions::default()
    }
}

pub(crate) fn pass() -> Passphrase {
    Passphrase::from("correct horse battery staple")
}

pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// One user with a store holding an identity, a signed prekey and ten
/// one-time prekeys.
pub(crate) struct Party {
    pub(crate) path: PathBuf,
    pub(crate) store: Store,
}

impl Party {
    pub(crate) fn new(dir: &Path, name: &str, rng: &mut ChaCha20Rng) -> Party {
        let identity = IdentityKeyPair::generate(rng);
        Self::device(dir, name, name, rng, &identity)
    }

    /// A store `file` for account `name` with this identity (another
    /// device of the same account shares it).
    pub(crate) fn device(
        dir: &Path,
        file: &str,
        name: &str,
        rng: &mut ChaCha20Rng,
        identity: &IdentityKeyPair,
    ) -> Party {
        let path = dir.join(format!("{file}.db"));
        let mut store = Store::open(&path, &pass(), fast()).unwrap();
        let identity = identity.clone();
        let spk = SignedPreKeyPair::generate(rng, &identity, 1, 1_700_000_000_000);
        let opks: Vec<_> = (1..=10)
            .map(|i| OneTimePreKeyPair::generate(rng, i))
            .collect();
        store
            .write(|tx| {
                tx.set_account(&Account {
                    user_id: name.to_owned(),
                    username: name.to_owned(),
                    server_url: "http://127.0.0.1:8787".into(),
                })?;
                tx.init_identity(&identity)?;
                tx.save_signed_prekey(&spk)?;
                tx.add_one_time_prekeys(&opks)?;
                let pq: Vec<_> = (1..=5)
                    .map(|i| e2ee_core::PqPreKeyPair::generate(rng, &identity, i))
                    .collect();
                tx.add_pq_prekeys(&pq, false, 0)?;
                let last = e2ee_core::PqPreKeyPair::generate(rng, &identity, 1000);
                tx.add_pq_prekeys(&[last], true, 0)
            })
            .unwrap();
        Party { path, store }
    }

    /// The bundle a server would hand out, claiming one one-time prekey
    /// (the lowest unused id).
    pub(crate) fn bundle(&mut self) -> PreKeyBundle {
        self.store
            .write(|tx| {
                let id = tx.identity()?.unwrap();
                let spk = tx.current_signed_prekey()?.unwrap();
                let opk = tx.unuploaded_one_time_prekeys()?.into_iter().next();
                if let Some(k) = &opk {
                    // Claimed on the pretend server: never handed out again.
                    tx.mark_one_time_prekeys_uploaded(&[k.id()])?;
                }
                // A one-time PQ prekey while any is left, then the
                // last-resort one (which is never marked claimed).
                let pq = tx.unuploaded_pq_prekeys()?;
                let pq = pq
                    .iter()
                    .find(|(_, last)| !last)
                    .or_else(|| pq.iter().find(|(_, last)| *last))
                    .map(|(k, last)| (k.clone(), *last));
                if let Some((k, false)) = &pq {
                    tx.mark_pq_prekeys_uploaded(&[k.id()])?;
                }
                Ok(PreKeyBundle {
                    identity: id.public(),
                    identity_signature: id.binding_signature(),
                    signed_prekey: spk.public(),
                    one_time_prekey: opk.map(|k| k.public()),
                    pq_prekey: pq.map(|(k, _)| k.public()),
                })
            })
            .unwrap()
    }
}

/// What the relay would hand the recipient for an outbox entry.
pub(crate) fn relay<'a>(
    from: &'a str,
    e: &'a e2ee_store::OutboxEntry,
    at: i64,
) -> e2ee_store::Incoming<'a> {
    e2ee_store::Incoming {
        id: &e.message_id,
        from,
        from_device: 1,
        group_id: e.group_id.as_deref(),
        content: &e.content,
        server_at_ms: at,
    }
}

pub(crate) fn new_id(rng: &mut ChaCha20Rng) -> [u8; 16] {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    // A well-formed v4 UUID.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

pub(crate) fn text(rng: &mut ChaCha20Rng, ts: u64, body: &str) -> Payload {
    Payload::text(new_id(rng), ts, body)
}

pub(crate) fn uuid(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// An incoming, delivered text in the direct conversation with `from`, for
/// filling a store without running the protocol.
pub(crate) fn incoming_text(id: String, from: &str, body: String, sent_at_ms: i64) -> NewMessage {
    NewMessage {
        id,
        conversation: Conversation::Direct(from.to_owned()),
        sender: from.to_owned(),
        outgoing: false,
        kind: e2ee_core::PayloadKind::Text,
        body: Some(body),
        attachment: None,
        reference: None,
        status: Status::Delivered,
        recipients: 1,
        sent_at_ms,
        server_at_ms: None,
        quote: None,
        expire_secs: None,
    }
}
