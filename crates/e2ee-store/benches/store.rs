//! e2ee-store benchmarks: decrypt-and-store, history pages, search over
//! 100,000 messages, the conversation list, and opening a store (Argon2id).
//!
//! Databases live under cargo's target tmp dir (a real disk, not tmpfs),
//! with the production `synchronous = FULL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use e2ee_core::{
    IdentityKeyPair, OneTimePreKeyPair, Payload, PayloadKind, PreKeyBundle, SignedPreKeyPair,
};
use e2ee_store::{
    Account, Conversation, Incoming, KdfParams, NewMessage, OpenOptions, Passphrase, Status, Store,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

fn cheap() -> OpenOptions {
    OpenOptions {
        kdf: KdfParams::for_tests(),
        ..OpenOptions::default()
    }
}

fn bench_dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

fn uuid(id: [u8; 16]) -> String {
    uuid::Uuid::from_bytes(id).hyphenated().to_string()
}

fn new_id(rng: &mut ChaCha20Rng) -> [u8; 16] {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    id
}

fn party(dir: &std::path::Path, name: &str, rng: &mut ChaCha20Rng) -> Store {
    let mut s = Store::open(
        dir.join(format!("{name}.db")),
        &Passphrase::from("pw"),
        cheap(),
    )
    .unwrap();
    let id = IdentityKeyPair::generate(rng);
    let spk = SignedPreKeyPair::generate(rng, &id, 1, 0);
    let opk = OneTimePreKeyPair::generate(rng, 1);
    let pq = e2ee_core::PqPreKeyPair::generate(rng, &id, 1);
    s.write(|tx| {
        tx.set_account(&Account {
            user_id: name.into(),
            username: name.into(),
            server_url: "http://127.0.0.1:8787".into(),
        })?;
        tx.init_identity(&id)?;
        tx.save_signed_prekey(&spk)?;
        tx.add_one_time_prekeys(&[opk])?;
        tx.add_pq_prekeys(&[pq], true, 0)
    })
    .unwrap();
    s
}

fn decrypt_and_store(c: &mut Criterion) {
    let dir = bench_dir();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut alice = party(dir.path(), "alice", &mut rng);
    let mut bob = party(dir.path(), "bob", &mut rng);
    let bundle = bob
        .read(|tx| {
            let id = tx.identity()?.unwrap();
            let spk = tx.current_signed_prekey()?.unwrap();
            let opk = tx.unuploaded_one_time_prekeys()?.pop().map(|k| k.public());
            let pq = tx.current_last_resort_pq_prekey()?.map(|(k, _)| k.public());
            Ok(PreKeyBundle {
                identity: id.public(),
                identity_signature: id.binding_signature(),
                signed_prekey: spk.public(),
                one_time_prekey: opk,
                pq_prekey: pq,
            })
        })
        .unwrap();
    alice.start_session(&mut rng, "bob", &bundle).unwrap();
    let first = alice
        .send_direct("bob", &Payload::text(new_id(&mut rng), 0, "hi"))
        .unwrap();
    bob.receive(
        &mut rng,
        &Incoming {
            id: &first.message_id,
            from: "alice",
            from_device: 1,
            group_id: None,
            content: &first.content,
            server_at_ms: 0,
        },
    )
    .unwrap();
    // Alice's side runs in memory: only Bob's store is measured.
    let mut sessions = alice.read(|tx| tx.sessions("bob")).unwrap();
    let text = "x".repeat(100);
    let mut id_rng = ChaCha20Rng::seed_from_u64(3);

    c.bench_function("store_decrypt_and_store_100B", |b| {
        b.iter_batched(
            || {
                let id = new_id(&mut id_rng);
                let p = Payload::text(id, 1, &text).to_padded().unwrap();
                (uuid(id), sessions.encrypt(&p).unwrap().to_text())
            },
            |(id, content)| {
                bob.receive(
                    &mut rng,
                    &Incoming {
                        id: &id,
                        from: "alice",
                        from_device: 1,
                        group_id: None,
                        content: &content,
                        server_at_ms: 0,
                    },
                )
                .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
}

const WORDS: &[&str] = &[
    "meeting", "lunch", "tomorrow", "project", "deadline", "coffee", "weekend", "train", "photo",
    "birthday", "report", "music", "garden", "holiday", "dinner", "review", "budget", "football",
    "doctor", "movie", "invoice", "kitchen", "library", "airport", "concert", "recipe", "puzzle",
    "bicycle", "mountain", "river", "window", "market", "pencil", "summer", "winter", "autumn",
];

/// `n` incoming messages over 50 conversations, 6–14 random words each,
/// plus the word "zanzibar" in every 1,000th.
fn filled(n: usize) -> (tempfile::TempDir, Store) {
    let dir = bench_dir();
    let mut s = Store::open(dir.path().join("big.db"), &Passphrase::from("pw"), cheap()).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for chunk in 0..n.div_ceil(10_000) {
        s.write(|tx| {
            for i in chunk * 10_000..((chunk + 1) * 10_000).min(n) {
                let len = 6 + rng.next_u32() as usize % 9;
                let mut body: Vec<&str> = (0..len)
                    .map(|_| WORDS[rng.next_u32() as usize % WORDS.len()])
                    .collect();
                if i % 1000 == 0 {
                    body.push("zanzibar");
                }
                let peer = format!("user{}", i % 50);
                tx.insert_message(NewMessage {
                    id: format!("msg-{i}"),
                    conversation: Conversation::Direct(peer.clone()),
                    sender: peer,
                    outgoing: false,
                    kind: PayloadKind::Text,
                    body: Some(body.join(" ")),
                    attachment: None,
                    reference: None,
                    status: Status::Delivered,
                    recipients: 1,
                    sent_at_ms: i as i64,
                    server_at_ms: None,
                    quote: None,
                    expire_secs: None,
                })?;
            }
            Ok(())
        })
        .unwrap();
    }
    (dir, s)
}

fn reads(c: &mut Criterion) {
    let started = Instant::now();
    let (_dir, mut s) = filled(100_000);
    eprintln!("filled 100,000 messages in {:?}", started.elapsed());
    let conv = Conversation::Direct("user7".into());

    c.bench_function("store_history_first_page_50_of_2000", |b| {
        b.iter(|| s.read(|tx| tx.history(&conv, None, 50)).unwrap())
    });
    let mid = {
        let mut cursor = None;
        for _ in 0..20 {
            cursor = s.read(|tx| tx.history(&conv, cursor, 50)).unwrap().next;
        }
        cursor
    };
    c.bench_function("store_history_page_21_keyset", |b| {
        b.iter(|| s.read(|tx| tx.history(&conv, mid, 50)).unwrap())
    });
    c.bench_function("store_search_100k_rare_word_top50", |b| {
        b.iter(|| {
            let hits = s.read(|tx| tx.search("zanzibar", None, 50)).unwrap();
            assert_eq!(hits.len(), 50);
            hits
        })
    });
    c.bench_function("store_search_100k_two_common_words_top50", |b| {
        b.iter(|| s.read(|tx| tx.search("coffee tomorrow", None, 50)).unwrap())
    });
    c.bench_function("store_search_100k_prefix_top50", |b| {
        b.iter(|| s.read(|tx| tx.search("mou", None, 50)).unwrap())
    });
    c.bench_function("store_search_100k_one_conversation", |b| {
        b.iter(|| s.read(|tx| tx.search("coffee", Some(&conv), 50)).unwrap())
    });
    c.bench_function("store_conversations_100k", |b| {
        b.iter(|| s.read(|tx| tx.conversations()).unwrap())
    });
    // What opening costs besides Argon2id on a 100,000-message file: the
    // default checks, and with the optional `quick_check`.
    let path = s.path().to_owned();
    drop(s);
    let pass = Passphrase::from("pw");
    c.bench_function("store_open_100k_cheap_kdf", |b| {
        b.iter(|| Store::open(&path, &pass, cheap()).unwrap())
    });
    let verify = OpenOptions {
        verify: true,
        ..cheap()
    };
    c.bench_function("store_open_100k_cheap_kdf_quick_check", |b| {
        b.iter(|| Store::open(&path, &pass, verify).unwrap())
    });
}

fn open(c: &mut Criterion) {
    let dir = bench_dir();
    let path = dir.path().join("open.db");
    let pass = Passphrase::from("correct horse battery staple");
    drop(Store::open(&path, &pass, OpenOptions::default()).unwrap());
    c.bench_function("store_open_argon2id_64MiB_t3_p4", |b| {
        b.iter(|| Store::open(&path, &pass, OpenOptions::default()).unwrap())
    });
}

/// Alice's store with sessions to `n` devices of Bob's (registration ids
/// 1001…), and those devices as targets.
fn alice_with_bobs_devices(
    dir: &std::path::Path,
    rng: &mut ChaCha20Rng,
    n: u32,
) -> (Store, Vec<e2ee_store::DeviceTarget>) {
    let mut alice = party(dir, "alice", rng);
    let bob_id = IdentityKeyPair::generate(rng);
    let mut targets = Vec::new();
    for device in 1..=n {
        let spk = SignedPreKeyPair::generate(rng, &bob_id, device, 0);
        let pq = e2ee_core::PqPreKeyPair::generate(rng, &bob_id, device);
        let bundle = PreKeyBundle {
            identity: bob_id.public(),
            identity_signature: bob_id.binding_signature(),
            signed_prekey: spk.public(),
            one_time_prekey: None,
            pq_prekey: Some(pq.public()),
        };
        alice
            .start_device_session(rng, "bob", device, 1000 + device, &bundle)
            .unwrap();
        targets.push(e2ee_store::DeviceTarget {
            user_id: "bob".into(),
            device_id: device,
            registration_id: 1000 + device,
        });
    }
    (alice, targets)
}

/// Sending one direct message to a peer with N devices (protocol version
/// 2): N encryptions, the message, the outbox entry with its copies and the
/// kept payload, in one committed transaction.
fn send_to_devices(c: &mut Criterion) {
    let dir = bench_dir();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (mut alice, targets) = alice_with_bobs_devices(dir.path(), &mut rng, 6);
    let text = "x".repeat(100);
    let mut group = c.benchmark_group("store_send_to_devices_100B");
    for n in [1usize, 2, 4, 6] {
        group.bench_function(format!("{n}"), |b| {
            b.iter(|| {
                let p = Payload::text(new_id(&mut rng), 1, &text);
                alice.send_to_devices("bob", &targets[..n], &p).unwrap()
            })
        });
    }
    group.finish();
}

/// Group commit: N sends (one device each) in one transaction against N
/// one at a time, per message (criterion's throughput: elements/s).
fn send_batches(c: &mut Criterion) {
    let dir = bench_dir();
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let (mut alice, targets) = alice_with_bobs_devices(dir.path(), &mut rng, 1);
    let text = "x".repeat(100);
    let mut group = c.benchmark_group("store_send_batch_100B");
    for n in [1usize, 16, 64, 256] {
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_function(format!("{n}"), |b| {
            b.iter_batched(
                || {
                    (0..n)
                        .map(|_| e2ee_store::DirectSend {
                            to: "bob".into(),
                            targets: targets.clone(),
                            payload: Payload::text(new_id(&mut rng), 1, &text),
                        })
                        .collect::<Vec<_>>()
                },
                |sends| alice.send_to_devices_batch(&sends).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// What a reaction, an edit and a delete cost the sender next to a plain
/// text in the same run (an edit and a delete also scrub: a WAL checkpoint
/// and truncate).
fn message_features(c: &mut Criterion) {
    let dir = bench_dir();
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let (mut alice, targets) = alice_with_bobs_devices(dir.path(), &mut rng, 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let text = "x".repeat(100);
    let action = |kind, target: [u8; 16], body: &str, id: [u8; 16]| Payload {
        kind,
        reference: Some(target),
        ..Payload::text(id, now, body)
    };
    let target = new_id(&mut rng);
    alice
        .send_to_devices("bob", &targets, &Payload::text(target, now, &text))
        .unwrap();
    let mut group = c.benchmark_group("store_message_features");
    group.bench_function("send_text_100B", |b| {
        b.iter(|| {
            let p = Payload::text(new_id(&mut rng), now, &text);
            alice.send_to_devices("bob", &targets, &p).unwrap()
        })
    });
    group.bench_function("react", |b| {
        b.iter(|| {
            let p = action(PayloadKind::Reaction, target, "👍", new_id(&mut rng));
            alice.send_to_devices("bob", &targets, &p).unwrap()
        })
    });
    group.bench_function("edit_and_scrub", |b| {
        b.iter(|| {
            let p = action(PayloadKind::Edit, target, &text, new_id(&mut rng));
            alice.send_to_devices("bob", &targets, &p).unwrap()
        })
    });
    group.bench_function("delete_and_scrub", |b| {
        // A fresh message to delete each time, sent outside the timing.
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let id = new_id(&mut rng);
                alice
                    .send_to_devices("bob", &targets, &Payload::text(id, now, &text))
                    .unwrap();
                let p = action(PayloadKind::Delete, id, "", new_id(&mut rng));
                let started = Instant::now();
                alice.send_to_devices("bob", &targets, &p).unwrap();
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    decrypt_and_store,
    reads,
    send_to_devices,
    send_batches,
    message_features
);
criterion_group! {
    name = slow;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(10));
    targets = open
}
criterion_main!(benches, slow);
