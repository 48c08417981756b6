//! Every known answer in `tests/data/protocol-v1.json`, computed by an
//! independent implementation of DESIGN.md section 2.

use e2ee_core::kdf::{self, ChainKey, MessageKey, RootKey};
use e2ee_core::payload::pad;
use e2ee_core::{
    Envelope, IdentityKeyPair, OneTimePreKeyPair, PeerSessions, PreKeyBundle, PreKeySource,
    SafetyNumber, SenderKeyReceiver, SenderKeySender, SignedPreKeyPair, fingerprint,
};
use serde_json::Value;

use crate::support::{QueueRng, hex32, hex64};

fn vectors() -> Value {
    serde_json::from_str(include_str!("../data/protocol-v1.json")).unwrap()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

pub fn identity(v: &Value) -> IdentityKeyPair {
    IdentityKeyPair::from_secret_bytes(
        hex32(v["ik_priv"].as_str().unwrap()),
        hex32(v["sig_seed"].as_str().unwrap()),
    )
}

struct BobKeys {
    spk: SignedPreKeyPair,
    opk: OneTimePreKeyPair,
}

impl PreKeySource for BobKeys {
    fn pq_prekey(&self, _: u32) -> Option<&e2ee_core::PqPreKeyPair> {
        None
    }
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
        (self.spk.id() == id).then_some(&self.spk)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair> {
        (self.opk.id() == id).then_some(&self.opk)
    }
}

fn bob_keys(v: &Value) -> BobKeys {
    let p = &v["bob_prekeys"];
    BobKeys {
        spk: SignedPreKeyPair::from_parts(
            p["spk_id"].as_u64().unwrap() as u32,
            hex32(p["spk_priv"].as_str().unwrap()),
            hex64(p["spk_signature"].as_str().unwrap()),
            0,
        ),
        opk: OneTimePreKeyPair::from_parts(
            p["opk_id"].as_u64().unwrap_or(0) as u32,
            hex32(p["opk_priv"].as_str().unwrap()),
        ),
    }
}

#[test]
fn identities_match_known_answers() {
    let v = vectors();
    for name in ["alice", "bob"] {
        let iv = &v["identities"][name];
        let id = identity(iv);
        assert_eq!(
            id.public().to_bytes().to_vec(),
            h(&iv["idpub"]),
            "{name} idpub"
        );
        assert_eq!(
            id.binding_signature().to_vec(),
            h(&iv["binding_signature"]),
            "{name} binding signature"
        );
        id.public()
            .verify_binding(&hex64(iv["binding_signature"].as_str().unwrap()))
            .unwrap();
        assert_eq!(
            fingerprint(&id.public()),
            iv["fingerprint_hex"].as_str().unwrap(),
            "{name} fingerprint"
        );
    }
}

#[test]
fn signed_prekey_matches_known_answers() {
    let v = vectors();
    let keys = bob_keys(&v);
    let p = &v["bob_prekeys"];
    let public = keys.spk.public();
    assert_eq!(public.key.as_bytes().to_vec(), h(&p["spk_pub"]));
    assert_eq!(keys.opk.public().key.as_bytes().to_vec(), h(&p["opk_pub"]));
    let bob = identity(&v["identities"]["bob"]);
    // Ed25519 is deterministic: re-signing gives the vector's signature.
    assert_eq!(
        bob.sign(
            &[
                b"E2EEChat signed prekey v1".as_slice(),
                &7u32.to_be_bytes(),
                public.key.as_bytes()
            ]
            .concat()
        )
        .to_vec(),
        h(&p["spk_signature"])
    );
    bob.public()
        .verify_signed_prekey(public.id, &public.key, &public.signature)
        .unwrap();
}

#[test]
fn kdf_rk_matches_known_answer() {
    let v = &vectors()["kdf_rk"];
    let (rk, ck) = kdf::kdf_rk(
        &RootKey::from_bytes(hex32(v["rk"].as_str().unwrap())),
        &hex32(v["dh_out"].as_str().unwrap()),
    );
    assert_eq!(rk.as_bytes().to_vec(), h(&v["new_rk"]));
    assert_eq!(ck.as_bytes().to_vec(), h(&v["ck"]));
}

#[test]
fn kdf_ck_matches_known_answer() {
    let v = &vectors()["kdf_ck"];
    let (mk, next) = ChainKey::from_bytes(hex32(v["ck"].as_str().unwrap())).step();
    assert_eq!(mk.as_bytes().to_vec(), h(&v["mk"]));
    assert_eq!(next.as_bytes().to_vec(), h(&v["next_ck"]));
}

#[test]
fn encrypt_matches_known_answer() {
    let v = &vectors()["encrypt"];
    let mk = MessageKey::from_bytes(hex32(v["mk"].as_str().unwrap()));
    let (ad, header, pt) = (h(&v["ad"]), h(&v["header"]), h(&v["plaintext"]));
    let (key, nonce) = kdf::message_cipher_keys(&mk, &ad, &header);
    assert_eq!(key.to_vec(), h(&v["key"]));
    assert_eq!(nonce.to_vec(), h(&v["nonce"]));
    let body = kdf::encrypt_message(&mk, &pt, &ad, &header);
    assert_eq!(body, h(&v["body"]));
    assert_eq!(kdf::decrypt_message(&mk, &body, &ad, &header), Some(pt));
}

#[test]
fn padding_matches_known_answer() {
    let v = &vectors()["padding"];
    assert_eq!(pad(&h(&v["input"])), h(&v["padded"]));
}

/// Replays a scripted conversation in the schema of `protocol-v1.json`
/// (`identities`, `bob_prekeys`, `x3dh.alice_ek_priv`, `conversation`): every
/// envelope must be reproduced byte for byte and every plaintext recovered.
/// Bob's bundle carries his one-time prekey only when `bob_prekeys.opk_id` is set.
pub fn run_conversation(v: &Value) {
    let alice = identity(&v["identities"]["alice"]);
    let bob = identity(&v["identities"]["bob"]);
    let keys = bob_keys(v);
    let with_opk = !v["bob_prekeys"]["opk_id"].is_null();
    let bundle = PreKeyBundle {
        identity: bob.public(),
        identity_signature: bob.binding_signature(),
        signed_prekey: keys.spk.public(),
        one_time_prekey: with_opk.then(|| keys.opk.public()),
        pq_prekey: None,
    };
    let x = &v["x3dh"];
    let c = &v["conversation"];
    let mut init_rng =
        QueueRng::new(&[&h(&x["alice_ek_priv"]), &h(&c["alice_first_ratchet_priv"])]);
    let mut a = PeerSessions::new();
    a.initiate_x3dh_v1(&mut init_rng, &alice, &bundle).unwrap();
    if let Some(ek_pub) = x.get("alice_ek_pub") {
        assert_eq!(
            a.current().unwrap().base_key().as_bytes().to_vec(),
            h(ek_pub)
        );
    }
    if let Some(ad) = x.get("ad") {
        assert_eq!(a.current().unwrap().associated_data().to_vec(), h(ad));
    }
    let mut b = PeerSessions::new();

    for (i, step) in c["steps"].as_array().unwrap().iter().enumerate() {
        let op = step["op"].as_str().unwrap();
        match op {
            "alice_encrypt" | "bob_encrypt" => {
                let s = if op == "alice_encrypt" {
                    &mut a
                } else {
                    &mut b
                };
                let env = s.encrypt(&h(&step["plaintext"])).unwrap();
                assert_eq!(env.to_bytes(), h(&step["envelope"]), "step {i}: {op}");
            }
            "alice_decrypt" | "bob_decrypt" => {
                let new_key = step.get("new_ratchet_priv").map(h).unwrap_or_default();
                let mut rng = QueueRng::new(&[&new_key]);
                let env = Envelope::from_bytes(&h(&step["envelope"])).unwrap();
                let got = if op == "alice_decrypt" {
                    a.decrypt(&mut rng, &alice, &keys, &env)
                } else {
                    b.decrypt(&mut rng, &bob, &keys, &env)
                }
                .unwrap();
                assert_eq!(*got.plaintext, h(&step["plaintext"]), "step {i}: {op}");
            }
            other => panic!("unknown op {other}"),
        }
    }
}

#[test]
fn scripted_conversation_matches_known_answers() {
    let v = vectors();
    assert_eq!(v["conversation"]["steps"].as_array().unwrap().len(), 12);
    run_conversation(&v);
}

/// Replays sender-key messages in the schema of `protocol-v1.json`'s
/// `sender_key` section.
pub fn run_sender_key(v: &Value) {
    let group_id: [u8; 16] = h(&v["group_id"]).try_into().unwrap();
    let chain_id = v["chain_id"].as_u64().unwrap() as u32;
    let mut sender = SenderKeySender::from_parts(
        group_id,
        chain_id,
        v["iteration"].as_u64().unwrap() as u32,
        ChainKey::from_bytes(hex32(v["chain_key"].as_str().unwrap())),
        hex32(v["signing_seed"].as_str().unwrap()),
    );
    let dist = sender.distribution();
    assert_eq!(dist.signing_key.to_vec(), h(&v["signing_pub"]));
    let mut receiver = SenderKeyReceiver::new(group_id);
    receiver.add(&dist).unwrap();
    let mut sent = Vec::new();
    for (i, m) in v["messages"].as_array().unwrap().iter().enumerate() {
        let env = sender.encrypt(&h(&m["plaintext"])).unwrap();
        let bytes = Envelope::SenderKey(env).to_bytes();
        assert_eq!(bytes, h(&m["envelope"]), "message {i}");
        sent.push((bytes, h(&m["plaintext"])));
    }
    // Decrypt newest first: exercises the skipped keys.
    for (bytes, pt) in sent.iter().rev() {
        let Envelope::SenderKey(parsed) = Envelope::from_bytes(bytes).unwrap() else {
            panic!("not a sender-key envelope")
        };
        assert_eq!(&receiver.decrypt(&parsed).unwrap(), pt);
    }
}

#[test]
fn sender_key_messages_match_known_answers() {
    run_sender_key(&vectors()["sender_key"]);
}

#[test]
fn safety_number_matches_known_answer() {
    let v = &vectors()["safety_number"];
    let alice = e2ee_core::IdentityPublic::from_slice(&h(&v["alice_idpub"])).unwrap();
    let bob = e2ee_core::IdentityPublic::from_slice(&h(&v["bob_idpub"])).unwrap();
    let (a_id, b_id) = (
        v["alice_user_id"].as_str().unwrap(),
        v["bob_user_id"].as_str().unwrap(),
    );
    let expected = v["safety_number"].as_str().unwrap();
    assert_eq!(
        SafetyNumber::new(&alice, a_id, &bob, b_id).digits(),
        expected
    );
    assert_eq!(
        SafetyNumber::new(&bob, b_id, &alice, a_id).digits(),
        expected
    );
}

/// Signal's published numeric-fingerprint vector (libsignal's
/// NumericFingerprintGeneratorTest, version 1, 33-byte keys).
#[test]
fn safety_number_matches_signal_published_vector() {
    let alice =
        hex::decode("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868").unwrap();
    let bob =
        hex::decode("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b").unwrap();
    let expected = "300354477692869396892869876765458257569162576843440918079131";
    assert_eq!(
        fingerprint::safety_number_for_keys(&alice, "+14152222222", &bob, "+14153333333"),
        expected
    );
    assert_eq!(
        fingerprint::safety_number_for_keys(&bob, "+14153333333", &alice, "+14152222222"),
        expected
    );
}
