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
    IdentityKeyPair, OneTimePreKeyPair, PeerSessions, PreKeyBundle, PreKeySource, SafetyNumber,
    SenderKeyReceiver, SenderKeySender, Session, SignedPreKeyPair,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const MSG: [u8; 100] = [0x61; 100];

struct Bob {
    identity: IdentityKeyPair,
    spk: SignedPreKeyPair,
    opk: OneTimePreKeyPair,
}

impl PreKeySource for Bob {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPreKeyPair> {
        (self.spk.id() == id).then_some(&self.spk)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePreKeyPair> {
        (self.opk.id() == id).then_some(&self.opk)
    }
}

struct Setup {
    rng: ChaCha20Rng,
    alice: IdentityKeyPair,
    bob: Bob,
    bundle: PreKeyBundle,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let alice = IdentityKeyPair::generate(&mut rng);
    let identity = IdentityKeyPair::generate(&mut rng);
    let spk = SignedPreKeyPair::generate(&mut rng, &identity, 1, 0);
    let opk = OneTimePreKeyPair::generate(&mut rng, 1);
    let bundle = PreKeyBundle {
        identity: identity.public(),
        identity_signature: identity.binding_signature(),
        signed_prekey: spk.public(),
        one_time_prekey: Some(opk.public()),
    };
    Setup {
        rng,
        alice,
        bob: Bob { identity, spk, opk },
        bundle,
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
    let (mut a, b) = established(&mut s);

    c.bench_function("encrypt_100B_chain_step", |bench| {
        bench.iter(|| black_box(a.encrypt(black_box(&MSG)).unwrap()))
    });

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

    // Bob's reply after Alice's message carries a new ratchet key: Alice's
    // decryption turns the DH ratchet (two DH, one key generation).
    let mut b2 = b.clone();
    b2.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &msg)
        .unwrap();
    let turning = b2.encrypt(&MSG).unwrap();
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
    c.bench_function("vodozemac_shape_ping_pong_round", |bench| {
        bench.iter_batched(
            || (a.clone(), b2.clone()),
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

fn x3dh(c: &mut Criterion) {
    let mut s = setup();
    c.bench_function("x3dh_initiate", |bench| {
        bench.iter(|| black_box(Session::initiate(&mut s.rng, &s.alice, &s.bundle).unwrap()))
    });

    let mut a = PeerSessions::new();
    a.initiate(&mut s.rng, &s.alice, &s.bundle).unwrap();
    let first = a.encrypt(&MSG).unwrap();
    c.bench_function("x3dh_first_decrypt_responder", |bench| {
        bench.iter(|| {
            let mut b = PeerSessions::new();
            black_box(
                b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &first)
                    .unwrap(),
            )
        })
    });

    c.bench_function("x3dh_initiate_and_first_decrypt", |bench| {
        bench.iter(|| {
            let mut a = PeerSessions::new();
            a.initiate(&mut s.rng, &s.alice, &s.bundle).unwrap();
            let m = a.encrypt(&MSG).unwrap();
            let mut b = PeerSessions::new();
            black_box(b.decrypt(&mut s.rng, &s.bob.identity, &s.bob, &m).unwrap())
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

fn safety(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let a = IdentityKeyPair::generate(&mut rng).public();
    let b = IdentityKeyPair::generate(&mut rng).public();
    c.bench_function("safety_number", |bench| {
        bench.iter(|| black_box(SafetyNumber::new(&a, "alice", &b, "bob")))
    });
}

criterion_group!(benches, ratchet, x3dh, groups, safety);
criterion_main!(benches);
