//! Criterion benchmarks of e2ee-core against the targets of DESIGN.md
//! section 5. `cargo xtask bench` runs them and prints the medians.
//!
//! The two `vodozemac_shape_*` benchmarks mirror what DESIGN.md quotes for
//! vodozemac (one-way encrypt + decrypt on an existing chain; a ping-pong
//! round with two DH ratchet turns), so the ratio can be read directly.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use e2ee_core::{
    IdentityKeyPair, OneTimePreKeyPair, PeerSessions, PqPreKeyPair, PreKeyBundle, PreKeySource,
    SafetyNumber, SenderKeyReceiver, SenderKeySender, SignedPreKeyPair,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const MSG: [u8; 100] = [0x61; 100];

struct Bob {
    identity: IdentityKeyPair,
    spk: SignedPreKeyPair,
    opk: OneTimePreKeyPair,
    pqpk: PqPreKeyPair,
}

impl PreKeySource for Bob {
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

struct Setup {
    rng: ChaCha20Rng,
    alice: IdentityKeyPair,
    bob: Bob,
    /// With a PQ prekey (PQXDH).
    bundle: PreKeyBundle,
    /// Without (version-1 X3DH, for comparison).
    bundle_v1: PreKeyBundle,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let alice = IdentityKeyPair::generate(&mut rng);
    let identity = IdentityKeyPair::generate(&mut rng);
    let spk = SignedPreKeyPair::generate(&mut rng, &identity, 1, 0);
    let opk = OneTimePreKeyPair::generate(&mut rng, 1);
    let pqpk = PqPreKeyPair::generate(&mut rng, &identity, 1);
    let bundle_v1 = PreKeyBundle {
        identity: identity.public(),
        identity_signature: identity.binding_signature(),
        signed_prekey: spk.public(),
        one_time_prekey: Some(opk.public()),
        pq_prekey: None,
    };
    let bundle = PreKeyBundle {
        pq_prekey: Some(pqpk.public()),
        ..bundle_v1.clone()
    };
    Setup {
        rng,
        alice,
        bob: Bob {
            identity,
            spk,
            opk,
            pqpk,
        },
        bundle,
        bundle_v1,
    }
}

/// Alice and Bob with an established session (both have sent and received).
fn established(s: &mut Setup) -> (PeerSessions, PeerSessions) {
    let mut a = PeerSessions::new();
    a.initiate(&mut s.rng, &s.alice, &s.bundle).unwrap();
    let mut b = PeerSessions::new();
    let m = a.encrypt(&MSG).unwrap();
    b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &m).unwrap();
    let r = b.encrypt(&MSG).unwrap();
    a.decrypt(&mut s.rng, &s.alice, &s.bob, &r).unwrap();
    (a, b)
}

fn ratchet(c: &mut Criterion) {
    let mut s = setup();
    // The encrypt benchmark runs the chain a million steps ahead; the others
    // need a pair whose receiver is within MAX_SKIP of the sender.
    let (mut sender, _) = established(&mut s);
    c.bench_function("encrypt_100B_chain_step", |bench| {
        bench.iter(|| black_box(sender.encrypt(black_box(&MSG)).unwrap()))
    });

    let (mut a, mut b) = established(&mut s);
    // Alice's chain after Bob's reply is new to Bob: deliver one message so
    // Bob holds that chain, then the next one is a plain chain step.
    let m0 = a.encrypt(&MSG).unwrap();
    b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &m0).unwrap();
    let msg = a.encrypt(&MSG).unwrap();
    c.bench_function("decrypt_100B_chain_step", |bench| {
        bench.iter_batched(
            || b.clone(),
            |mut b| {
                black_box(
                    b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, black_box(&msg))
                        .unwrap(),
                )
            },
            BatchSize::SmallInput,
        )
    });

    // Bob answers on a fresh ratchet key: Alice's decryption turns the DH
    // ratchet (two DH, one key generation).
    let mut b_sent = b.clone();
    let turning = b_sent.encrypt(&MSG).unwrap();
    c.bench_function("decrypt_dh_ratchet_turn", |bench| {
        bench.iter_batched(
            || a.clone(),
            |mut a| black_box(a.decrypt(&mut s.rng, &s.alice, &s.bob, &turning).unwrap()),
            BatchSize::SmallInput,
        )
    });

    // vodozemac's "encrypt + decrypt on an existing chain".
    c.bench_function("vodozemac_shape_encrypt_decrypt", |bench| {
        bench.iter_batched(
            || (a.clone(), b.clone()),
            |(mut a, mut b)| {
                let m = a.encrypt(&MSG).unwrap();
                black_box(b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &m).unwrap())
            },
            BatchSize::SmallInput,
        )
    });

    // vodozemac's ping-pong round: A→B then B→A, each turning the ratchet.
    let mut a_got = a.clone();
    a_got
        .decrypt(&mut s.rng, &s.alice, &s.bob, &turning)
        .unwrap();
    c.bench_function("vodozemac_shape_ping_pong_round", |bench| {
        bench.iter_batched(
            || (a_got.clone(), b_sent.clone()),
            |(mut a, mut b)| {
                let m = a.encrypt(&MSG).unwrap();
                b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &m).unwrap();
                let r = b.encrypt(&MSG).unwrap();
                black_box(a.decrypt(&mut s.rng, &s.alice, &s.bob, &r).unwrap())
            },
            BatchSize::SmallInput,
        )
    });
}

/// Session setup, version 1 (X3DH) beside version 2 (PQXDH: one ML-KEM-1024
/// encapsulation and a PQ prekey signature check more for the initiator, one
/// decapsulation more for the responder).
fn x3dh(c: &mut Criterion) {
    let mut s = setup();
    for (name, pq) in [("x3dh", false), ("pqxdh", true)] {
        let bundle = if pq {
            s.bundle.clone()
        } else {
            s.bundle_v1.clone()
        };
        let start = |rng: &mut ChaCha20Rng, a: &mut PeerSessions, alice: &IdentityKeyPair| {
            if pq {
                a.initiate(rng, alice, &bundle).unwrap();
            } else {
                a.initiate_x3dh_v1(rng, alice, &bundle).unwrap();
            }
        };
        c.bench_function(&format!("{name}_initiate"), |bench| {
            bench.iter(|| {
                let mut a = PeerSessions::new();
                start(&mut s.rng, &mut a, &s.alice);
                black_box(a)
            })
        });

        let mut a = PeerSessions::new();
        start(&mut s.rng, &mut a, &s.alice);
        let first = a.encrypt(&MSG).unwrap();
        c.bench_function(&format!("{name}_first_decrypt_responder"), |bench| {
            bench.iter(|| {
                let mut b = PeerSessions::new();
                black_box(
                    b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &first)
                        .unwrap(),
                )
            })
        });

        c.bench_function(&format!("{name}_initiate_and_first_decrypt"), |bench| {
            bench.iter(|| {
                let mut a = PeerSessions::new();
                start(&mut s.rng, &mut a, &s.alice);
                let m = a.encrypt(&MSG).unwrap();
                let mut b = PeerSessions::new();
                black_box(b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &m).unwrap())
            })
        });
    }
    // The sizes the docs quote.
    let mut a = PeerSessions::new();
    a.initiate(&mut s.rng, &s.alice, &s.bundle).unwrap();
    let pq_first = a.encrypt(&MSG).unwrap().to_bytes().len();
    let mut a = PeerSessions::new();
    a.initiate_x3dh_v1(&mut s.rng, &s.alice, &s.bundle_v1)
        .unwrap();
    let v1_first = a.encrypt(&MSG).unwrap().to_bytes().len();
    eprintln!(
        "PreKey message with a 100-byte plaintext: X3DH {v1_first} bytes, PQXDH {pq_first} bytes"
    );
}

/// The peer in the same run (issue 19): vodozemac's Olm session setup and
/// first decrypt (3 X25519 for its triple DH on each side, the first
/// ratchet step on the initiator; no signature check: Matrix checks the
/// one-time key's signature outside Olm), beside our X3DH and PQXDH.
fn vodozemac_setup(c: &mut Criterion) {
    use vodozemac::olm::{Account, OlmMessage, SessionConfig};
    let alice = Account::new();
    let mut bob = Account::new();
    c.bench_function("vodozemac_olm_initiate_and_first_decrypt", |bench| {
        bench.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                // Bob's fresh one-time key, untimed.
                bob.generate_one_time_keys(1);
                let otk = *bob.one_time_keys().values().next().unwrap();
                bob.mark_keys_as_published();
                let t = std::time::Instant::now();
                let mut s = alice
                    .create_outbound_session(SessionConfig::version_1(), bob.curve25519_key(), otk)
                    .unwrap();
                let m = match s.encrypt(MSG).unwrap() {
                    OlmMessage::PreKey(m) => m,
                    OlmMessage::Normal(_) => {
                        unreachable!("the first Olm message is a pre-key message")
                    }
                };
                let got = bob
                    .create_inbound_session(SessionConfig::version_1(), alice.curve25519_key(), &m)
                    .unwrap();
                total += t.elapsed();
                black_box(got);
            }
            total
        })
    });
}

fn groups(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut sender = SenderKeySender::generate(&mut rng, [1; 16]);
    c.bench_function("sender_key_encrypt_100B", |bench| {
        bench.iter(|| black_box(sender.encrypt(black_box(&MSG)).unwrap()))
    });
    // A receiver that holds the chain at the message's iteration: one chain
    // step plus the signature check is timed.
    let mut receiver = SenderKeyReceiver::new([1; 16]);
    receiver.add(&sender.distribution()).unwrap();
    let m = sender.encrypt(&MSG).unwrap();
    c.bench_function("sender_key_decrypt_100B", |bench| {
        bench.iter_batched(
            || receiver.clone(),
            |mut r| black_box(r.decrypt(&m).unwrap()),
            BatchSize::SmallInput,
        )
    });
}

/// Verifying a group's signed membership (DESIGN.md section 8): a create
/// with 100 members, then 100 adds, replayed from scratch (what a client
/// does the first time it sees a group), against one Ed25519 verify each.
fn membership(c: &mut Criterion) {
    use e2ee_core::membership::{ChangeAction, ChangeRecord, MemberRole, Membership};
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let owner = IdentityKeyPair::generate(&mut rng);
    let create = ChangeRecord::sign(
        &owner,
        [0; 16],
        [9; 16],
        None,
        ChangeAction::Create {
            name: "bench".into(),
            members: (1..=100u8).map(|i| ([i; 16], MemberRole::Member)).collect(),
        },
    )
    .unwrap();
    let mut chain = vec![create];
    for i in 0..100u8 {
        let mut user = [0xee; 16];
        user[0] = i;
        let next = ChangeRecord::sign(
            &owner,
            [0; 16],
            [9; 16],
            chain.last(),
            ChangeAction::Add {
                user,
                role: MemberRole::Member,
            },
        )
        .unwrap();
        chain.push(next);
    }
    c.bench_function("membership_verify_chain_101_records", |bench| {
        bench.iter(|| black_box(Membership::from_chain(chain.iter(), &|_, _| true).unwrap()))
    });
    let mut head = Membership::from_chain(chain[..100].iter(), &|_, _| true).unwrap();
    let last = chain[100].clone();
    c.bench_function("membership_apply_one_record", |bench| {
        bench.iter_batched(
            || head.clone(),
            |mut m| {
                m.apply(&last, &|_, _| true).unwrap();
                black_box(m)
            },
            BatchSize::SmallInput,
        )
    });
    head.apply(&last, &|_, _| true).unwrap();
}

fn safety(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let a = IdentityKeyPair::generate(&mut rng).public();
    let b = IdentityKeyPair::generate(&mut rng).public();
    c.bench_function("safety_number", |bench| {
        bench.iter(|| black_box(SafetyNumber::new(&a, "alice", &b, "bob")))
    });
}

/// The primitives everything above is made of, to read the other figures
/// against this machine's speed.
fn calibration(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let a = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let b = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(&mut rng));
    c.bench_function("calibration_x25519_dh", |bench| {
        bench.iter(|| black_box(a.diffie_hellman(black_box(&b))))
    });
    let id = IdentityKeyPair::generate(&mut rng);
    let sig = id.sign(&MSG);
    c.bench_function("calibration_ed25519_verify", |bench| {
        bench.iter(|| black_box(id.public().verify(black_box(&MSG), &sig)))
    });
    // What the server does per PQ prekey of an upload (version 2.3): decode
    // and check the ML-KEM key, verify its signature under the identity.
    let pq = PqPreKeyPair::generate(&mut rng, &id, 7).public();
    let (bytes, identity) = (pq.key.as_bytes().to_vec(), id.public());
    c.bench_function("server_pq_prekey_check", |bench| {
        bench.iter(|| {
            let key = e2ee_core::KemPublicKey::from_bytes(black_box(&bytes)).unwrap();
            let public = e2ee_core::PqPreKeyPublic {
                id: 7,
                key,
                signature: pq.signature,
            };
            black_box(public.verify(&identity))
        })
    });
}

/// The message cipher alone (HKDF to key and nonce, XSalsa20-Poly1305
/// seal) at three sizes: run it once as built and once with
/// `RUSTFLAGS="--cfg poly1305_force_soft"` to compare the Poly1305
/// backends (docs/PERFORMANCE.md).
fn cipher(c: &mut Criterion) {
    let mk = e2ee_core::kdf::MessageKey::from_bytes([7; 32]);
    for size in [128usize, 1024, 16 * 1024] {
        let pt = vec![0x61u8; size];
        c.bench_function(&format!("cipher_encrypt_message_{size}B"), |bench| {
            bench.iter(|| {
                black_box(e2ee_core::kdf::encrypt_message(
                    &mk,
                    black_box(&pt),
                    b"ad",
                    b"header",
                ))
            })
        });
    }
}

criterion_group!(
    benches,
    calibration,
    cipher,
    ratchet,
    x3dh,
    vodozemac_setup,
    groups,
    membership,
    safety
);
criterion_main!(benches);
