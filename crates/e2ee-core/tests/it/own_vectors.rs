//! The project's own known answers, generated from fixed seeds into
//! `tests/data/own-v1.json` in the schema of `protocol-v1.json`. They cover
//! what the shared vectors do not: X3DH without a one-time prekey, deeper
//! out-of-order delivery across ratchet turns, a sender-key chain that starts
//! mid-way, and the padded payload encoding.
//!
//! The test regenerates the file and compares byte for byte, so any change to
//! the protocol's output shows up as a diff. After an intended change, run
//! `E2EE_UPDATE_VECTORS=1 cargo test -p e2ee-core --test it own_vectors` and
//! review the diff.

use e2ee_core::kdf::ChainKey;
use e2ee_core::{
    AttachmentPointer, Envelope, IdentityKeyPair, OneTimePreKeyPair, Payload, PayloadKind,
    PeerSessions, PreKeyBundle, PreKeySource, SafetyNumber, SenderKeySender, SignedPreKeyPair,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{CryptoRng, Error, RngCore, SeedableRng};
use serde_json::{Value, json};

use crate::vectors::{run_conversation, run_sender_key};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/own-v1.json");

/// Wraps the seeded RNG and keeps every byte drawn, so each step can name
/// the keys it generated.
pub struct Recording {
    pub inner: ChaCha20Rng,
    pub log: Vec<u8>,
}

impl Recording {
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.log)
    }
}

impl RngCore for Recording {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
        self.log.extend_from_slice(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Recording {}

pub fn seeded(seed: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut b);
    b
}

pub fn identity_json(id: &IdentityKeyPair) -> Value {
    let (dh, sig) = id.to_secret_bytes();
    json!({
        "ik_priv": hex::encode(*dh),
        "sig_seed": hex::encode(*sig),
        "idpub": hex::encode(id.public().to_bytes()),
        "binding_signature": hex::encode(id.binding_signature()),
        "fingerprint_hex": e2ee_core::fingerprint(&id.public()),
    })
}

struct Keys(SignedPreKeyPair);

impl PreKeySource for Keys {
    fn pq_prekey(&self, _: u32) -> Option<&e2ee_core::PqPreKeyPair> {
        None
    }
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
        (self.0.id() == id).then_some(&self.0)
    }
    fn one_time_prekey(&self, _: u32) -> Option<&OneTimePreKeyPair> {
        None
    }
}

pub fn text(s: &str) -> Vec<u8> {
    e2ee_core::payload::pad(s.as_bytes())
}

pub fn generate() -> Value {
    let alice = IdentityKeyPair::from_secret_bytes(seeded(1), seeded(2));
    let bob = IdentityKeyPair::from_secret_bytes(seeded(3), seeded(4));
    let spk = SignedPreKeyPair::from_parts(
        3,
        seeded(5),
        bob.sign(
            &[
                b"E2EEChat signed prekey v1".as_slice(),
                &3u32.to_be_bytes(),
                SignedPreKeyPair::from_parts(3, seeded(5), [0; 64], 0)
                    .public()
                    .key
                    .as_bytes(),
            ]
            .concat(),
        ),
        0,
    );
    let keys = Keys(spk.clone());
    let bundle = PreKeyBundle {
        identity: bob.public(),
        identity_signature: bob.binding_signature(),
        signed_prekey: spk.public(),
        one_time_prekey: None,
        pq_prekey: None,
    };
    let mut rng = Recording {
        inner: ChaCha20Rng::seed_from_u64(0xE2EE),
        log: Vec::new(),
    };
    let mut a = PeerSessions::new();
    a.initiate_x3dh_v1(&mut rng, &alice, &bundle).unwrap();
    let drawn = rng.take();
    let (ek, first_ratchet) = drawn.split_at(32);
    let mut b = PeerSessions::new();

    // (op, message label) script; "decrypt" names which sent message arrives.
    let script: &[(&str, &str)] = &[
        ("alice_encrypt", "a0: no one-time prekey"),
        ("alice_encrypt", "a1"),
        ("alice_encrypt", "a2"),
        ("bob_decrypt", "a2"),
        ("bob_decrypt", "a0: no one-time prekey"),
        ("bob_encrypt", "b0"),
        ("bob_encrypt", "b1"),
        ("alice_decrypt", "b1"),
        ("alice_encrypt", "a3 after the first reply"),
        ("bob_decrypt", "a3 after the first reply"),
        ("bob_decrypt", "a1"),
        ("alice_decrypt", "b0"),
        ("bob_encrypt", "b2"),
        ("alice_decrypt", "b2"),
    ];
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    let mut steps = Vec::new();
    for (op, label) in script {
        let pt = text(label);
        match *op {
            "alice_encrypt" | "bob_encrypt" => {
                let s = if *op == "alice_encrypt" {
                    &mut a
                } else {
                    &mut b
                };
                let env = s.encrypt(&pt).unwrap().to_bytes();
                sent.push((label.to_string(), env.clone()));
                steps.push(
                    json!({"op": op, "plaintext": hex::encode(&pt), "envelope": hex::encode(env)}),
                );
            }
            _ => {
                let env = &sent.iter().find(|(l, _)| l == label).unwrap().1;
                let parsed = Envelope::from_bytes(env).unwrap();
                let got = if *op == "alice_decrypt" {
                    a.decrypt(&mut rng, &alice, &keys, &parsed).unwrap()
                } else {
                    b.decrypt(&mut rng, &bob, &keys, &parsed).unwrap()
                };
                assert_eq!(*got.plaintext, pt);
                let mut step =
                    json!({"op": op, "envelope": hex::encode(env), "plaintext": hex::encode(&pt)});
                let drawn = rng.take();
                if !drawn.is_empty() {
                    step["new_ratchet_priv"] = json!(hex::encode(drawn));
                }
                steps.push(step);
            }
        }
    }

    // A sender-key chain picked up at iteration 5.
    let group_id = [0xA5u8; 16];
    let mut sender = SenderKeySender::from_parts(
        group_id,
        0xC0FFEE,
        5,
        ChainKey::from_bytes(seeded(6)),
        seeded(7),
    );
    let signing_pub = hex::encode(sender.distribution().signing_key);
    let messages: Vec<Value> = ["first", "second", "third", "fourth"]
        .iter()
        .map(|m| {
            let pt = text(m);
            let env = Envelope::SenderKey(sender.encrypt(&pt).unwrap()).to_bytes();
            json!({"plaintext": hex::encode(&pt), "envelope": hex::encode(env)})
        })
        .collect();

    let attachment = Payload {
        message_id: [0x11; 16],
        kind: PayloadKind::Image,
        timestamp_ms: 1_763_769_600_000,
        body: b"a cat".to_vec().into(),
        attachment: Some(AttachmentPointer {
            media_id: "3b0e4a9c-6a3f-4e44-9a54-0f0c2b3c4d5e".into(),
            key: seeded(8),
            nonce: [0x24; 24],
            sha256: [0x5a; 32],
            size: 4096,
            mime_type: "image/jpeg".into(),
            file_name: "cat.jpg".into(),
        }),
        reference: None,
        sync: None,
        quote: None,
        expire_secs: None,
    };

    json!({
        "about": "e2ee-chat's own known answers, generated from fixed seeds by tests/it/own_vectors.rs. Same schema as protocol-v1.json. Session without a one-time prekey; out-of-order delivery across DH ratchet turns; a sender-key chain starting at iteration 5; payload encoding v1.",
        "identities": {"alice": identity_json(&alice), "bob": identity_json(&bob)},
        "bob_prekeys": {
            "spk_id": 3,
            "spk_priv": hex::encode(*spk.secret_bytes()),
            "spk_pub": hex::encode(spk.public().key.as_bytes()),
            "spk_signature": hex::encode(spk.public().signature),
            "opk_id": null,
            "opk_priv": hex::encode(seeded(9)),
        },
        "x3dh": {"alice_ek_priv": hex::encode(ek)},
        "conversation": {
            "alice_first_ratchet_priv": hex::encode(first_ratchet),
            "steps": steps,
        },
        "sender_key": {
            "group_id": hex::encode(group_id),
            "chain_id": 0xC0FFEE,
            "iteration": 5,
            "chain_key": hex::encode(seeded(6)),
            "signing_seed": hex::encode(seeded(7)),
            "signing_pub": signing_pub,
            "messages": messages,
        },
        "safety_number": {
            "alice_user_id": "alice",
            "bob_user_id": "bob",
            "safety_number": SafetyNumber::new(&alice.public(), "alice", &bob.public(), "bob").digits(),
        },
        "payload": {
            "encoded": hex::encode(attachment.encode().unwrap()),
            "padded": hex::encode(attachment.to_padded().unwrap()),
        },
    })
}

fn stored() -> Value {
    serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap()
}

#[test]
fn own_vectors_are_reproduced_from_their_seeds() {
    let fresh = generate();
    if std::env::var_os("E2EE_UPDATE_VECTORS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    assert_eq!(
        fresh,
        stored(),
        "protocol output changed; see the module docs"
    );
}

#[test]
fn own_vectors_replay_like_the_shared_ones() {
    let v = stored();
    run_conversation(&v);
    run_sender_key(&v["sender_key"]);
    let p = &v["payload"];
    let padded = hex::decode(p["padded"].as_str().unwrap()).unwrap();
    let decoded = Payload::decode_checked(&padded, &[0x11; 16]).unwrap();
    assert_eq!(
        hex::encode(decoded.encode().unwrap()),
        p["encoded"].as_str().unwrap()
    );
    assert_eq!(decoded.attachment.as_ref().unwrap().file_name, "cat.jpg");
}
