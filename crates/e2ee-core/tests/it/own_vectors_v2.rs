//! The project's own PQXDH known answers (protocol version 2), generated
//! from fixed seeds into `tests/data/own-v2.json`: identities, Bob's signed,
//! one-time and post-quantum prekeys, every random input Alice draws (EK,
//! the KEM message `m`, her first ratchet key), the KEM ciphertext and
//! secret, `SK` (computed here independently, with x25519-dalek and hkdf,
//! from the DH outputs and `SS`), and the first messages both ways.
//!
//! Regenerate after an intended change with
//! `E2EE_UPDATE_VECTORS=1 cargo test -p e2ee-core --test it own_vectors` and
//! review the diff.

use e2ee_core::{
    Envelope, IdentityKeyPair, OneTimePreKeyPair, PeerSessions, PqPreKeyPair, PreKeyBundle,
    PreKeySource, SignedPreKeyPair,
};
use hkdf::Hkdf;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::own_vectors::{Recording, identity_json, seeded, text};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/own-v2.json");

/// Bob's prekeys as a [`PreKeySource`] (also the cross-language vectors').
pub struct Keys {
    pub spk: SignedPreKeyPair,
    pub opk: OneTimePreKeyPair,
    pub pqpk: PqPreKeyPair,
}

impl PreKeySource for Keys {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
        (self.spk.id() == id).then_some(&self.spk)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair> {
        (self.opk.id() == id).then_some(&self.opk)
    }
    fn pq_prekey(&self, id: u32) -> Option<&PqPreKeyPair> {
        (self.pqpk.id() == id).then_some(&self.pqpk)
    }
}

fn dh(secret: &[u8], public: &[u8; 32]) -> [u8; 32] {
    let s: [u8; 32] = secret.try_into().unwrap();
    x25519_dalek::StaticSecret::from(s)
        .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
        .to_bytes()
}

pub fn generate() -> Value {
    let alice = IdentityKeyPair::from_secret_bytes(seeded(21), seeded(22));
    let bob = IdentityKeyPair::from_secret_bytes(seeded(23), seeded(24));
    let mut keygen = ChaCha20Rng::seed_from_u64(0x9_0ED);
    let spk = SignedPreKeyPair::generate(&mut keygen, &bob, 7, 0);
    let opk = OneTimePreKeyPair::generate(&mut keygen, 9);
    let pqpk = PqPreKeyPair::generate(&mut keygen, &bob, 11);
    let bundle = PreKeyBundle {
        identity: bob.public(),
        identity_signature: bob.binding_signature(),
        signed_prekey: spk.public(),
        one_time_prekey: Some(opk.public()),
        pq_prekey: Some(pqpk.public()),
    };
    let keys = Keys {
        spk: spk.clone(),
        opk: opk.clone(),
        pqpk: pqpk.clone(),
    };

    let mut rng = Recording {
        inner: ChaCha20Rng::seed_from_u64(0xE2EE_0002),
        log: Vec::new(),
    };
    let mut a = PeerSessions::new();
    a.initiate(&mut rng, &alice, &bundle).unwrap();
    let drawn = rng.take();
    assert_eq!(drawn.len(), 96, "EK, m, the first ratchet key");
    let (ek, rest) = drawn.split_at(32);
    let (m, first_ratchet) = rest.split_at(32);

    let a0 = text("a0: the first PQXDH message");
    let env = a.encrypt(&a0).unwrap();
    let Envelope::PreKey(p) = &env else {
        panic!("not a PreKey message")
    };
    let ct = p.pq.as_ref().unwrap().ciphertext.clone();
    let ss = pqpk.key_pair().decapsulate(&ct);

    // SK from scratch: DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B),
    // DH3 = DH(EK_A, SPK_B), DH4 = DH(EK_A, OPK_B), then SS.
    let (a_ik, _) = alice.to_secret_bytes();
    let spk_pub = spk.public().key.to_bytes();
    let opk_pub = opk.public().key.to_bytes();
    let ik_b = bob.public().dh_key().to_bytes();
    let mut ikm = vec![0xFFu8; 32];
    ikm.extend_from_slice(&dh(&a_ik[..], &spk_pub));
    ikm.extend_from_slice(&dh(ek, &ik_b));
    ikm.extend_from_slice(&dh(ek, &spk_pub));
    ikm.extend_from_slice(&dh(ek, &opk_pub));
    ikm.extend_from_slice(&ss[..]);
    let mut sk = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm)
        .expand(e2ee_core::x3dh::PQXDH_INFO, &mut sk)
        .unwrap();

    let mut b = PeerSessions::new();
    let got = b.decrypt(&mut rng, &bob, &keys, &env).unwrap();
    assert_eq!(*got.plaintext, a0);
    assert!(got.pqxdh);
    let bob_ratchet = rng.take();
    let b0 = text("b0: the reply");
    let reply = b.encrypt(&b0).unwrap();
    let got = a.decrypt(&mut rng, &alice, &keys, &reply).unwrap();
    assert_eq!(*got.plaintext, b0);
    let alice_ratchet = rng.take();

    let spk_rec = spk.to_record();
    let opk_rec = opk.to_record();
    json!({
        "about": "e2ee-chat's own PQXDH known answers (protocol version 2), generated from fixed seeds by tests/it/own_vectors_v2.rs. Hex throughout. sk is HKDF-SHA256(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 || DH4 || ss, info = pqxdh_info). pqpk_seed is the ML-KEM-1024 seed d || z (FIPS 203 ML-KEM.KeyGen_internal(d, z)); ct = ML-KEM.Encaps_internal(pqpk_ek, kem_m).",
        "identities": {"alice": identity_json(&alice), "bob": identity_json(&bob)},
        "bob_prekeys": {
            "spk_id": spk.id(),
            "spk_priv": hex::encode(spk_rec.secret),
            "spk_pub": hex::encode(spk_pub),
            "spk_signature": hex::encode(spk.public().signature),
            "opk_id": opk.id(),
            "opk_priv": hex::encode(opk_rec.secret),
            "opk_pub": hex::encode(opk_pub),
            "pqpk_id": pqpk.id(),
            "pqpk_seed": hex::encode(pqpk.key_pair().seed()),
            "pqpk_ek": hex::encode(pqpk.public().key.as_bytes()),
            "pqpk_signature": hex::encode(pqpk.signature()),
        },
        "pqxdh": {
            "pqxdh_info": hex::encode(e2ee_core::x3dh::PQXDH_INFO),
            "alice_ek_priv": hex::encode(ek),
            "kem_m": hex::encode(m),
            "ct": hex::encode(ct.as_bytes()),
            "ss": hex::encode(&ss[..]),
            "sk": hex::encode(sk),
            "alice_first_ratchet_priv": hex::encode(first_ratchet),
        },
        "steps": [
            {"op": "alice_encrypt", "plaintext": hex::encode(&a0), "envelope": hex::encode(env.to_bytes())},
            {"op": "bob_decrypt", "new_ratchet_priv": hex::encode(bob_ratchet)},
            {"op": "bob_encrypt", "plaintext": hex::encode(&b0), "envelope": hex::encode(reply.to_bytes())},
            {"op": "alice_decrypt", "new_ratchet_priv": hex::encode(alice_ratchet)},
        ],
    })
}

#[test]
fn own_vectors_v2_are_reproduced_from_their_seeds() {
    let fresh = generate();
    if std::env::var_os("E2EE_UPDATE_VECTORS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    assert_eq!(
        fresh, stored,
        "protocol output changed; see the module docs"
    );
}
