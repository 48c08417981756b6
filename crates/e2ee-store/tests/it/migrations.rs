//! Every earlier schema version opens and migrates forward with its data.

use e2ee_store::{Conversation, SCHEMA_VERSION, Store};

use crate::support::{fast, incoming_text, pass};

#[test]
fn every_earlier_schema_version_migrates_forward() {
    const { assert!(SCHEMA_VERSION >= 2) };
    for version in 1..SCHEMA_VERSION {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let mut old = Store::open_at_version(&path, &pass(), fast(), version).unwrap();
            assert_eq!(old.schema_version().unwrap(), version);
            old.write(|tx| {
                for i in 0..100 {
                    tx.insert_message(incoming_text(
                        format!("old-{i}"),
                        "bob",
                        format!("written by schema {version}, number {i}, aardvark"),
                        i,
                    ))?;
                }
                Ok(())
            })
            .unwrap();
        }
        let mut s = Store::open(&path, &pass(), fast()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let page = s
            .read(|tx| tx.history(&Conversation::Direct("bob".into()), None, 1000))
            .unwrap();
        assert_eq!(page.messages.len(), 100);
        // Search covers what was written before the index existed.
        assert_eq!(
            s.read(|tx| tx.search("aardvark", None, 1000))
                .unwrap()
                .len(),
            100
        );
        assert_eq!(
            s.read(|tx| tx.unread(&Conversation::Direct("bob".into())))
                .unwrap(),
            100
        );
    }
}

/// A store from before PQXDH (schema 4) with an X3DH session keeps it: after
/// the upgrade both sides go on talking on it, it is reported as X3DH, and
/// the store can hold PQ prekeys.
#[test]
fn an_x3dh_session_from_schema_4_keeps_working_after_the_upgrade() {
    use e2ee_core::{
        IdentityKeyPair, OneTimePreKeyPair, PqPreKeyPair, PreKeyBundle, SignedPreKeyPair,
    };
    use e2ee_store::{Account, Received};

    use crate::support::{relay, rng, text};

    let dir = tempfile::tempdir().unwrap();
    let mut r = rng(77);
    let open_old = |name: &str| {
        Store::open_at_version(&dir.path().join(format!("{name}.db")), &pass(), fast(), 4).unwrap()
    };
    let (mut alice, mut bob) = (open_old("alice"), open_old("bob"));
    let bob_id = IdentityKeyPair::generate(&mut r);
    let spk = SignedPreKeyPair::generate(&mut r, &bob_id, 1, 0);
    let opk = OneTimePreKeyPair::generate(&mut r, 1);
    for (store, name, id) in [
        (&mut alice, "alice", IdentityKeyPair::generate(&mut r)),
        (&mut bob, "bob", bob_id.clone()),
    ] {
        store
            .write(|tx| {
                tx.set_account(&Account {
                    user_id: name.into(),
                    username: name.into(),
                    server_url: "http://127.0.0.1:8787".into(),
                })?;
                tx.init_identity(&id)
            })
            .unwrap();
    }
    bob.write(|tx| {
        tx.save_signed_prekey(&spk)?;
        tx.add_one_time_prekeys(std::slice::from_ref(&opk))
    })
    .unwrap();
    // An X3DH session as version 1 made them.
    let bundle = PreKeyBundle {
        identity: bob_id.public(),
        identity_signature: bob_id.binding_signature(),
        signed_prekey: spk.public(),
        one_time_prekey: Some(opk.public()),
        pq_prekey: None,
    };
    alice
        .write(|tx| {
            let identity = tx.require_identity()?;
            let mut sessions = tx.sessions("bob")?;
            sessions
                .initiate_x3dh_v1(&mut r, &identity, &bundle)
                .map_err(e2ee_store::StoreError::from)?;
            tx.save_sessions("bob", &sessions)?;
            tx.remember_identity("bob", &bundle.identity).map(|_| ())
        })
        .unwrap();
    let e = alice
        .send_direct("bob", &text(&mut r, 1, "before"))
        .unwrap();
    let got = bob.receive(&mut r, &relay("alice", &e, 1)).unwrap();
    assert!(matches!(got, Received::Message { .. }));
    drop((alice, bob));

    // The upgrade: both open at the newest schema.
    let open_new =
        |name: &str| Store::open(dir.path().join(format!("{name}.db")), &pass(), fast()).unwrap();
    let (mut alice, mut bob) = (open_new("alice"), open_new("bob"));
    assert_eq!(alice.schema_version().unwrap(), SCHEMA_VERSION);
    // The session became device 1's (version 7), its registration id 0,
    // the first device's; the store is device 1.
    let devices = alice.read(|tx| tx.session_devices("bob")).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!((devices[0].device_id, devices[0].registration_id), (1, 0));
    assert_eq!(alice.read(|tx| tx.device_id()).unwrap(), 1);
    let e = bob
        .send_direct("alice", &text(&mut r, 2, "after, from bob"))
        .unwrap();
    assert!(matches!(
        alice.receive(&mut r, &relay("bob", &e, 2)).unwrap(),
        Received::Message { .. }
    ));
    let e = alice
        .send_direct("bob", &text(&mut r, 3, "after, from alice"))
        .unwrap();
    assert!(matches!(
        bob.receive(&mut r, &relay("alice", &e, 3)).unwrap(),
        Received::Message { .. }
    ));
    assert_eq!(
        alice.read(|tx| tx.session_is_pqxdh("bob")).unwrap(),
        Some(false)
    );
    assert_eq!(
        bob.read(|tx| tx.session_is_pqxdh("alice")).unwrap(),
        Some(false)
    );
    // And the upgraded store takes PQ prekeys.
    let k = PqPreKeyPair::generate(&mut r, &bob_id, 1);
    bob.write(|tx| tx.add_pq_prekeys(std::slice::from_ref(&k), true, 0))
        .unwrap();
    assert!(bob.read(|tx| tx.pq_prekey(1)).unwrap().is_some());
}

#[test]
fn a_store_from_before_the_name_cache_gains_one_that_keeps_the_latest_names() {
    use e2ee_store::NameKind;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v8.db");
    drop(Store::open_at_version(&path, &pass(), fast(), 8).unwrap());
    let mut s = Store::open(&path, &pass(), fast()).unwrap();
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    s.write(|tx| {
        tx.remember_names(NameKind::User, &[pair("u1", "bob"), pair("u2", "carol")])?;
        tx.remember_names(NameKind::Group, &[pair("g1", "team")])?;
        tx.remember_names(NameKind::User, &[pair("u1", "bobby")])
    })
    .unwrap();
    drop(s);
    let mut s = Store::open(&path, &pass(), fast()).unwrap();
    let users = s.read(|tx| tx.names(NameKind::User)).unwrap();
    assert_eq!(users, [pair("u1", "bobby"), pair("u2", "carol")]);
    let groups = s.read(|tx| tx.names(NameKind::Group)).unwrap();
    assert_eq!(groups, [pair("g1", "team")]);
}
