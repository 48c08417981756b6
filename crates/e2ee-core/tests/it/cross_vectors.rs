//! The cross-language known answers (`tests/data/cross-v2.json`): what the
//! Rust core produces from fixed seeds, which the TypeScript protocol module
//! (`web/test/protocol/cross.test.ts`) replays byte for byte. A byte change
//! on either side fails a test: this one when the file it would write
//! differs from the committed one, the TypeScript one when it cannot
//! reproduce or open what is in it.
//!
//! Inside: a PQXDH session with two DH ratchet turns and messages delivered
//! out of order both ways (every random byte each step drew); a group's
//! sender-key chain, then the chain that replaced it after a member left; a
//! signed membership chain using every action; a sealed provisioning
//! message with its link code; a payload of every kind and flag; a sealed
//! attachment.
//!
//! Regenerate after an intended change with
//! `E2EE_UPDATE_VECTORS=1 cargo test -p e2ee-core --test it cross_vectors`
//! and review the diff.

use e2ee_core::membership::{ChangeAction, ChangeRecord, MemberRole};
use e2ee_core::payload::{AttachmentPointer, Quote, SyncTarget};
use e2ee_core::provision::{self, ProvisionContents, ProvisioningKeys};
use e2ee_core::{
    Envelope, IdentityKeyPair, OneTimePreKeyPair, Payload, PayloadKind, PeerSessions, PqPreKeyPair,
    PreKeyBundle, SenderKeySender, SignedPreKeyPair,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value, json};

use crate::own_vectors::{Recording, identity_json, seeded, text};
use crate::own_vectors_v2::Keys;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cross-v2.json");

fn session() -> Value {
    let alice = IdentityKeyPair::from_secret_bytes(seeded(31), seeded(32));
    let bob = IdentityKeyPair::from_secret_bytes(seeded(33), seeded(34));
    let mut keygen = ChaCha20Rng::seed_from_u64(0xC_0055);
    let spk = SignedPreKeyPair::generate(&mut keygen, &bob, 3, 0);
    let opk = OneTimePreKeyPair::generate(&mut keygen, 5);
    let pqpk = PqPreKeyPair::generate(&mut keygen, &bob, 8);
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
        inner: ChaCha20Rng::seed_from_u64(0xC_2055),
        log: Vec::new(),
    };
    let mut a = PeerSessions::new();
    a.initiate(&mut rng, &alice, &bundle).unwrap();
    let drawn = rng.take();
    let mut b = PeerSessions::new();
    let mut steps = Vec::new();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let enc = |who: &str, s: &mut PeerSessions, msg: &str, steps: &mut Vec<Value>| {
        let env = s.encrypt(&text(msg)).unwrap();
        steps.push(
            json!({"op": format!("{who}_encrypt"), "plaintext": hex::encode(text(msg)),
            "envelope": hex::encode(env.to_bytes())}),
        );
        env.to_bytes()
    };
    // Alice's PreKey phase: two messages; Bob reads the second first.
    sent.push(enc("alice", &mut a, "a0", &mut steps));
    sent.push(enc("alice", &mut a, "a1", &mut steps));
    for (who, i) in [("bob", 1usize), ("bob", 0)] {
        let env = Envelope::from_bytes(&sent[i]).unwrap();
        let got = b.decrypt(&mut rng, &bob, &keys, &env).unwrap();
        steps.push(
            json!({"op": format!("{who}_decrypt"), "envelope": hex::encode(&sent[i]),
            "plaintext": hex::encode(&*got.plaintext), "drawn": hex::encode(rng.take())}),
        );
    }
    // Bob replies three times; Alice reads them 2, 0, 1 (a turn, then
    // skipped keys); then one more turn each way.
    let replies: Vec<Vec<u8>> = ["b0", "b1", "b2"]
        .iter()
        .map(|m| enc("bob", &mut b, m, &mut steps))
        .collect();
    for i in [2usize, 0, 1] {
        let env = Envelope::from_bytes(&replies[i]).unwrap();
        let got = a.decrypt(&mut rng, &alice, &keys, &env).unwrap();
        steps.push(
            json!({"op": "alice_decrypt", "envelope": hex::encode(&replies[i]),
            "plaintext": hex::encode(&*got.plaintext), "drawn": hex::encode(rng.take())}),
        );
    }
    let a2 = enc("alice", &mut a, "a2 after the turn", &mut steps);
    let got = b
        .decrypt(&mut rng, &bob, &keys, &Envelope::from_bytes(&a2).unwrap())
        .unwrap();
    steps.push(json!({"op": "bob_decrypt", "envelope": hex::encode(&a2),
        "plaintext": hex::encode(&*got.plaintext), "drawn": hex::encode(rng.take())}));
    let b3 = enc("bob", &mut b, "b3 and back", &mut steps);
    let got = a
        .decrypt(&mut rng, &alice, &keys, &Envelope::from_bytes(&b3).unwrap())
        .unwrap();
    steps.push(json!({"op": "alice_decrypt", "envelope": hex::encode(&b3),
        "plaintext": hex::encode(&*got.plaintext), "drawn": hex::encode(rng.take())}));
    let spk_rec = spk.to_record();
    let opk_rec = opk.to_record();
    json!({
        "identities": {"alice": identity_json(&alice), "bob": identity_json(&bob)},
        "bob_prekeys": {
            "spk_id": spk.id(), "spk_priv": hex::encode(spk_rec.secret),
            "spk_pub": hex::encode(spk.public().key.to_bytes()),
            "opk_id": opk.id(), "opk_priv": hex::encode(opk_rec.secret),
            "pqpk_id": pqpk.id(), "pqpk_seed": hex::encode(pqpk.key_pair().seed()),
        },
        "alice_drawn": hex::encode(drawn),
        "steps": steps,
    })
}

fn group() -> Value {
    let mut rng = ChaCha20Rng::seed_from_u64(0xC_6000);
    let gid = [0x5a; 16];
    let mut first = SenderKeySender::generate(&mut rng, gid);
    let d1 = first.distribution().to_bytes().to_vec();
    let m1: Vec<String> = ["g0", "g1", "g2"]
        .iter()
        .map(|m| hex::encode(Envelope::SenderKey(first.encrypt(&text(m)).unwrap()).to_bytes()))
        .collect();
    // A member left: a new chain, sent to the remaining members only.
    let mut second = SenderKeySender::generate(&mut rng, gid);
    let d2 = second.distribution().to_bytes().to_vec();
    let m2: Vec<String> = ["after the rekey"]
        .iter()
        .map(|m| hex::encode(Envelope::SenderKey(second.encrypt(&text(m)).unwrap()).to_bytes()))
        .collect();
    json!({
        "chains": [
            {"distribution": hex::encode(d1), "messages": m1, "plaintexts": ["g0", "g1", "g2"]},
            {"distribution": hex::encode(d2), "messages": m2, "plaintexts": ["after the rekey"]},
        ],
    })
}

fn membership() -> Value {
    let people: Vec<(IdentityKeyPair, [u8; 16])> = (0..4u8)
        .map(|i| {
            let id = IdentityKeyPair::from_secret_bytes(
                seeded(40 + u64::from(i)),
                seeded(50 + u64::from(i)),
            );
            (id, [0x60 + i; 16])
        })
        .collect();
    let gid = [0x77; 16];
    let (owner, admin, member, other) = (&people[0], &people[1], &people[2], &people[3]);
    let actions: Vec<(usize, ChangeAction)> = vec![
        (
            0,
            ChangeAction::Create {
                name: "cross".into(),
                members: vec![(admin.1, MemberRole::Admin)],
            },
        ),
        (
            1,
            ChangeAction::Add {
                user: member.1,
                role: MemberRole::Member,
            },
        ),
        (
            0,
            ChangeAction::Add {
                user: other.1,
                role: MemberRole::Member,
            },
        ),
        (
            0,
            ChangeAction::SetRole {
                user: member.1,
                role: MemberRole::Admin,
            },
        ),
        (
            1,
            ChangeAction::Rename {
                name: "cross ✓".into(),
            },
        ),
        (1, ChangeAction::Remove { user: other.1 }),
        (0, ChangeAction::TransferOwnership { user: member.1 }),
        (0, ChangeAction::Leave),
    ];
    let mut records: Vec<ChangeRecord> = Vec::new();
    for (who, action) in actions {
        let (id, user) = &people[who];
        let r = ChangeRecord::sign(id, *user, gid, records.last(), action).unwrap();
        records.push(r);
    }
    let m = e2ee_core::membership::Membership::from_chain(&records, &|_, _| true).unwrap();
    let _ = owner;
    json!({
        "signers": people.iter().map(|(id, user)| json!({"user": hex::encode(user),
            "identity": identity_json(id)})).collect::<Vec<_>>(),
        "records": records.iter().map(|r| hex::encode(r.to_bytes())).collect::<Vec<_>>(),
        "hashes": records.iter().map(|r| hex::encode(r.hash())).collect::<Vec<_>>(),
        "final": {
            "name": m.name(),
            "members": m.members().iter().map(|(u, v)| json!({"user": hex::encode(u),
                "role": format!("{:?}", v.role).to_lowercase()})).collect::<Vec<_>>(),
        },
    })
}

fn provisioning() -> Value {
    let mut rng = Recording {
        inner: ChaCha20Rng::seed_from_u64(0xC_7000),
        log: Vec::new(),
    };
    let keys = ProvisioningKeys::generate(&mut rng);
    let device_secret = rng.take();
    let code = keys.code("prov-address_1.2").unwrap();
    let identity = IdentityKeyPair::from_secret_bytes(seeded(60), seeded(61));
    let contents =
        ProvisionContents::new(&identity, [0x42; 16], "alice", "link-token-xyz").unwrap();
    let sealed = provision::seal(&mut rng, &code, &contents).unwrap();
    let drawn = rng.take();
    json!({
        "device_secret": hex::encode(device_secret),
        "address": "prov-address_1.2",
        "code": code.to_text(),
        "seal_drawn": hex::encode(drawn),
        "identity": identity_json(&identity),
        "user_id": hex::encode([0x42; 16]),
        "username": "alice",
        "link_token": "link-token-xyz",
        "sealed": hex::encode(sealed),
    })
}

fn payloads() -> Value {
    let base = |kind: PayloadKind, body: &[u8], n: u8| Payload {
        kind,
        body: zeroize::Zeroizing::new(body.to_vec()),
        ..Payload::text([n; 16], 1_800_000_000_000 + u64::from(n), "")
    };
    let pointer = AttachmentPointer {
        media_id: "media-1".into(),
        key: [1; 32],
        nonce: [2; 24],
        sha256: [3; 32],
        size: 12345,
        mime_type: "image/png".into(),
        file_name: "photo ✓.png".into(),
    };
    let all = vec![
        base(PayloadKind::Text, "hello ✓".as_bytes(), 1),
        Payload {
            attachment: Some(pointer.clone()),
            expire_secs: Some(3600),
            ..base(PayloadKind::Image, b"caption", 2)
        },
        Payload {
            attachment: Some(pointer),
            sync: Some(SyncTarget::Direct(
                "9c1d7b5e-0000-4000-8000-000000000001".into(),
            )),
            ..base(PayloadKind::File, b"", 3)
        },
        Payload {
            sync: Some(SyncTarget::Group([9; 16])),
            ..base(PayloadKind::SenderKey, &[7; 129], 4)
        },
        Payload {
            reference: Some([1; 16]),
            ..base(PayloadKind::Reaction, "👍".as_bytes(), 5)
        },
        Payload {
            reference: Some([1; 16]),
            ..base(PayloadKind::Edit, b"new text", 6)
        },
        Payload {
            reference: Some([1; 16]),
            ..base(PayloadKind::Delete, b"", 7)
        },
        Payload {
            reference: Some([1; 16]),
            quote: Some(Quote::new("alice", "the quoted words")),
            expire_secs: Some(60),
            ..base(PayloadKind::Reply, b"a reply", 8)
        },
        base(PayloadKind::ReadSync, &[[1u8; 16], [2; 16]].concat(), 9),
        base(PayloadKind::LocalDelete, &[3u8; 16], 10),
        base(PayloadKind::Timer, &86_400u32.to_be_bytes(), 11),
        base(PayloadKind::ContactSync, &[4u8; 81], 12),
        base(PayloadKind::Unknown(200), b"from the future", 13),
    ];
    Value::Array(
        all.iter()
            .map(|p| {
                json!({"kind": p.kind.to_byte(), "encoded": hex::encode(&*p.encode().unwrap()),
                "padded": hex::encode(&*p.to_padded().unwrap())})
            })
            .collect(),
    )
}

fn attachment() -> Value {
    let mut rng = Recording {
        inner: ChaCha20Rng::seed_from_u64(0xC_8000),
        log: Vec::new(),
    };
    let file: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sealed = e2ee_core::attachment::seal(&mut rng, &file).unwrap();
    json!({
        "plaintext": hex::encode(&file),
        "key": hex::encode(*sealed.key),
        "nonce": hex::encode(sealed.nonce),
        "ciphertext": hex::encode(&sealed.ciphertext),
        "sha256": hex::encode(sealed.sha256),
    })
}

pub fn generate() -> Value {
    json!({
        "about": "Cross-language known answers: written by crates/e2ee-core/tests/it/cross_vectors.rs from fixed seeds, replayed by web/test/protocol/cross.test.ts. Hex throughout. `drawn` is every random byte a step took (a DH ratchet turn takes the new ratchet secret); `alice_drawn` is EK_A, the KEM message m and Alice's first ratchet secret; `seal_drawn` the ephemeral secret and the nonce.",
        "session": session(),
        "group": group(),
        "membership": membership(),
        "provisioning": provisioning(),
        "payloads": payloads(),
        "attachment": attachment(),
    })
}

#[test]
fn cross_vectors_are_reproduced_from_their_seeds() {
    let fresh = generate();
    if std::env::var_os("E2EE_UPDATE_VECTORS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&fresh).unwrap() + "\n").unwrap();
    }
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap_or_default())
        .unwrap_or(Value::Null);
    assert_eq!(
        fresh, stored,
        "protocol output changed: the TypeScript side replays tests/data/cross-v2.json; see the module docs"
    );
}
