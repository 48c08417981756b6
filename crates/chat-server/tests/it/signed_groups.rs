//! Signed group membership (protocol version 2): the server applies a change
//! record only on top of its head, only from its signer with the role it
//! needs, and then refuses unsigned membership changes for that group.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chat_proto::rest::AuthResponse;
use e2ee_core::IdentityKeyPair;
use e2ee_core::membership::{ChangeAction, ChangeRecord, MemberRole};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value, json};

use crate::support::TestServer;

struct Person {
    auth: AuthResponse,
    key: IdentityKeyPair,
}

impl Person {
    fn id(&self) -> [u8; 16] {
        *uuid::Uuid::parse_str(&self.auth.user.id)
            .unwrap()
            .as_bytes()
    }
    fn token(&self) -> &str {
        &self.auth.token
    }
}

async fn person(s: &TestServer, name: &str, seed: u64) -> Person {
    let auth = s.register(name).await;
    let key = IdentityKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(seed));
    let upload = crate::support::key_upload(&key);
    let (st, body) = s
        .call(
            "POST",
            "/api/users/prekeys",
            Some(&auth.token),
            Some(upload),
        )
        .await;
    assert!(st < 300, "{st} {body}");
    Person { auth, key }
}

fn gid(g: &str) -> [u8; 16] {
    *uuid::Uuid::parse_str(g).unwrap().as_bytes()
}

/// A group made with the unsigned (version-1) request.
async fn v1_group(s: &TestServer, owner: &Person, member: &Person) -> String {
    let (st, g) = s
        .call(
            "POST",
            "/api/groups",
            Some(owner.token()),
            Some(json!({"name": "old", "memberIds": [member.auth.user.id]})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    assert!(g.get("epoch").is_none(), "{g}");
    g["id"].as_str().unwrap().to_owned()
}

/// `who`'s first record for the version-1 group "old" with `members`.
fn genesis(group: &str, who: &Person, members: Vec<([u8; 16], MemberRole)>) -> ChangeRecord {
    ChangeRecord::sign(
        &who.key,
        who.id(),
        gid(group),
        None,
        ChangeAction::Create {
            name: "old".into(),
            members,
        },
    )
    .unwrap()
}

async fn post(s: &TestServer, who: &Person, group: &str, r: &ChangeRecord) -> (u16, Value) {
    s.call(
        "POST",
        &format!("/api/groups/{group}/changes"),
        Some(who.token()),
        Some(json!({"record": STANDARD.encode(r.to_bytes())})),
    )
    .await
}

#[tokio::test]
async fn a_signed_group_changes_only_by_records_on_its_head() {
    let s = TestServer::start().await;
    let alice = person(&s, "alice", 1).await;
    let bob = person(&s, "bob", 2).await;
    let carol = person(&s, "carol", 3).await;
    let group = uuid::Uuid::new_v4().to_string();

    // Alice creates the group by its first record, with Bob as a member.
    let create = ChangeRecord::sign(
        &alice.key,
        alice.id(),
        gid(&group),
        None,
        ChangeAction::Create {
            name: "team".into(),
            members: vec![(bob.id(), MemberRole::Member)],
        },
    )
    .unwrap();
    let (st, g) = post(&s, &alice, &group, &create).await;
    assert_eq!(st, 201, "{g}");
    assert_eq!(g["epoch"], 0);
    assert_eq!(g["name"], "team");
    assert_eq!(g["members"].as_array().unwrap().len(), 2);

    // Bob, a plain member, may not add Carol: 403, nothing stored.
    let by_bob = ChangeRecord::sign(
        &bob.key,
        bob.id(),
        gid(&group),
        Some(&create),
        ChangeAction::Add {
            user: carol.id(),
            role: MemberRole::Member,
        },
    )
    .unwrap();
    let (st, body) = post(&s, &bob, &group, &by_bob).await;
    assert_eq!(st, 403, "{body}");

    // Adding a member again is a conflict (409), not a forbidden change.
    let again = ChangeRecord::sign(
        &alice.key,
        alice.id(),
        gid(&group),
        Some(&create),
        ChangeAction::Add {
            user: bob.id(),
            role: MemberRole::Member,
        },
    )
    .unwrap();
    let (st, body) = post(&s, &alice, &group, &again).await;
    assert_eq!(st, 409, "{body}");
    // A record whose signature does not verify: 403.
    let mut tampered = again.to_bytes();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let (st, body) = s
        .call(
            "POST",
            &format!("/api/groups/{group}/changes"),
            Some(alice.token()),
            Some(json!({"record": STANDARD.encode(&tampered)})),
        )
        .await;
    assert_eq!(st, 403, "{body}");

    // Bob cannot pass off a record signed with another key as his.
    let forged = ChangeRecord::sign(
        &carol.key,
        bob.id(),
        gid(&group),
        Some(&create),
        ChangeAction::Leave,
    )
    .unwrap();
    let (st, body) = post(&s, &bob, &group, &forged).await;
    assert_eq!(st, 403, "{body}");
    // Nor post Alice's record as himself.
    let add = ChangeRecord::sign(
        &alice.key,
        alice.id(),
        gid(&group),
        Some(&create),
        ChangeAction::Add {
            user: carol.id(),
            role: MemberRole::Member,
        },
    )
    .unwrap();
    let (st, body) = post(&s, &bob, &group, &add).await;
    assert_eq!(st, 403, "{body}");

    // Alice adds Carol; the same record again is stale: 409.
    let (st, g) = post(&s, &alice, &group, &add).await;
    assert_eq!(st, 200, "{g}");
    assert_eq!(g["epoch"], 1);
    assert_eq!(g["members"].as_array().unwrap().len(), 3);
    let (st, body) = post(&s, &alice, &group, &add).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    // Unsigned membership changes are refused for a signed group.
    let (st, body) = s
        .call(
            "DELETE",
            &format!("/api/groups/{group}/members/{}", carol.auth.user.id),
            Some(alice.token()),
            None,
        )
        .await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signed"),
        "{body}"
    );

    // Every member reads the chain, which verifies.
    let (st, ch) = s
        .call(
            "GET",
            &format!("/api/groups/{group}/changes"),
            Some(carol.token()),
            None,
        )
        .await;
    assert_eq!(st, 200, "{ch}");
    let records: Vec<ChangeRecord> = ch["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            ChangeRecord::from_bytes(&STANDARD.decode(c["record"].as_str().unwrap()).unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(records, vec![create.clone(), add.clone()]);
    let m = e2ee_core::Membership::from_chain(&records, &|_, _| true).unwrap();
    assert!(m.is_member(&carol.id()));
    let (_, after) = s
        .call(
            "GET",
            &format!("/api/groups/{group}/changes?after=0"),
            Some(carol.token()),
            None,
        )
        .await;
    assert_eq!(after["changes"].as_array().unwrap().len(), 1);

    // Carol leaves by a record of her own.
    let leave = ChangeRecord::sign(
        &carol.key,
        carol.id(),
        gid(&group),
        Some(&add),
        ChangeAction::Leave,
    )
    .unwrap();
    let (st, g) = post(&s, &carol, &group, &leave).await;
    assert_eq!(st, 200, "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    // Outsiders cannot read the chain.
    let (st, _) = s
        .call(
            "GET",
            &format!("/api/groups/{group}/changes"),
            Some(carol.token()),
            None,
        )
        .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn a_group_from_before_is_signed_by_its_owner_as_it_is() {
    let s = TestServer::start().await;
    let alice = person(&s, "alice", 1).await;
    let bob = person(&s, "bob", 2).await;
    let mallory = person(&s, "mallory", 4).await;
    let group = v1_group(&s, &alice, &bob).await;
    // A member list that is not the group's, or another signer: refused.
    let wrong = genesis(&group, &alice, vec![(mallory.id(), MemberRole::Member)]);
    assert_eq!(post(&s, &alice, &group, &wrong).await.0, 409);
    let by_bob = genesis(&group, &bob, vec![(alice.id(), MemberRole::Member)]);
    assert_eq!(post(&s, &bob, &group, &by_bob).await.0, 409);
    // The owner signs it as it is.
    let right = genesis(&group, &alice, vec![(bob.id(), MemberRole::Member)]);
    let (st, g) = post(&s, &alice, &group, &right).await;
    assert_eq!(st, 200, "{g}");
    assert_eq!(g["epoch"], 0);
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
}

/// Turns today's database back into what schema 3 wrote.
const SCHEMA_3: &str = "
ALTER TABLE status_queue DROP COLUMN device_id;
ALTER TABLE messages DROP COLUMN sender_device;
CREATE TABLE d3 (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL,
    recipient TEXT NOT NULL, sender TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0,
    UNIQUE (message_id, recipient));
INSERT INTO d3 SELECT seq, message_id, recipient, sender, state FROM deliveries;
DROP TABLE deliveries; ALTER TABLE d3 RENAME TO deliveries;
CREATE INDEX deliveries_pending ON deliveries (recipient, seq) WHERE state = 0;
DROP TABLE group_changes; DROP TABLE devices; DROP TABLE link_tokens;
ALTER TABLE tokens DROP COLUMN device_id; ALTER TABLE users DROP COLUMN next_device_id;
UPDATE identities SET
    spk_id = (SELECT spk_id FROM device_keys k WHERE k.user_id = identities.user_id AND k.device_id = 1),
    spk_key = (SELECT spk_key FROM device_keys k WHERE k.user_id = identities.user_id AND k.device_id = 1),
    spk_signature = (SELECT spk_signature FROM device_keys k WHERE k.user_id = identities.user_id AND k.device_id = 1),
    spk_uploaded_at = (SELECT spk_uploaded_at FROM device_keys k WHERE k.user_id = identities.user_id AND k.device_id = 1);
DROP TABLE device_keys;
CREATE TABLE otp3 (user_id TEXT NOT NULL, key_id INTEGER NOT NULL, public_key TEXT NOT NULL,
    PRIMARY KEY (user_id, key_id));
INSERT INTO otp3 SELECT user_id, key_id, public_key FROM one_time_prekeys;
DROP TABLE one_time_prekeys; ALTER TABLE otp3 RENAME TO one_time_prekeys;
CREATE TABLE pq3 (user_id TEXT NOT NULL, key_id INTEGER NOT NULL, public_key TEXT NOT NULL,
    signature TEXT NOT NULL, last_resort INTEGER NOT NULL DEFAULT 0, uploaded_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, key_id));
INSERT INTO pq3 SELECT user_id, key_id, public_key, signature, last_resort, uploaded_at FROM pq_prekeys;
DROP TABLE pq_prekeys; ALTER TABLE pq3 RENAME TO pq_prekeys;
CREATE INDEX pq_prekeys_kind ON pq_prekeys (user_id, last_resort, key_id);
PRAGMA user_version = 3;
";

/// A database from before version 2 (schema 3: no `group_changes`, no
/// devices, prekeys and queues per account) opens with its accounts,
/// tokens, keys, groups and queued messages (now device 1's);
/// its groups come up unsigned, ready for their owner's first record, and
/// every account has one device, 1.
#[tokio::test]
async fn a_schema_3_database_migrates_with_everything_in_it() {
    if crate::support::sqlite_only("a schema-3 SQLite file") {
        return;
    }
    let mut s = TestServer::start().await;
    let mut alice = person(&s, "alice", 1).await;
    let mut bob = person(&s, "bob", 2).await;
    let group = v1_group(&s, &alice, &bob).await;
    let mut ws = s.connect(alice.token()).await;
    let (id, frame) = crate::support::message(&bob.auth.user.id, "E2EE:AQID");
    ws.send(&frame).await;
    ws.next_ack().await;
    drop(ws);
    if let Some(server) = s.server.take() {
        server.shutdown().await;
    }
    // What schema 3 left on disk: no change records, no devices, the
    // signed prekey in `identities` and prekeys without a device.
    let db = rusqlite::Connection::open(s.config.data_dir.join("chat.db")).unwrap();
    db.execute_batch(SCHEMA_3).unwrap();
    drop(db);

    s.restart().await;
    let db = rusqlite::Connection::open(s.config.data_dir.join("chat.db")).unwrap();
    let v: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 10);
    let (st, g) = s
        .call(
            "GET",
            &format!("/api/groups/{group}"),
            Some(bob.token()),
            None,
        )
        .await;
    assert_eq!(st, 200, "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    assert!(g.get("epoch").is_none_or(Value::is_null), "{g}");
    assert_eq!(
        s.stored_ids(&alice.auth.user.id, bob.token()).await,
        vec![id]
    );
    // Both still log in, as device 1 (which holds the identity).
    // (A device logging in again is that device's one login: the token
    // it gets replaces the one it had.)
    for (name, who) in [("alice", &mut alice), ("bob", &mut bob)] {
        let at = chat_server::auth::now_ms();
        let message = chat_proto::devices::device_login_message(&who.auth.user.id, 1, at);
        let proof = json!({"deviceId": 1, "signedAt": at,
            "signature": STANDARD.encode(who.key.sign(&message))});
        let (st, body) = s
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"username": name, "password": "secret-pw", "device": proof})),
            )
            .await;
        assert_eq!(st, 200, "{name}: {body}");
        assert_eq!(body["deviceId"], 1);
        who.auth.token = body["token"].as_str().unwrap().to_owned();
    }
    // Every account is device 1, and its old token is device 1's.
    let (st, d) = s
        .call("GET", "/api/devices", Some(alice.token()), None)
        .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["current"], 1);
    assert_eq!(d["devices"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["devices"][0]["deviceId"], 1);
    // The keys uploaded before are device 1's.
    let (st, b) = s
        .call(
            "GET",
            &format!("/api/users/{}/devices/prekeys", alice.auth.user.id),
            Some(bob.token()),
            None,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["bundles"][0]["deviceId"], 1);
    assert_eq!(b["bundles"][0]["bundle"]["signedPrekey"]["keyId"], 1, "{b}");
    // And the owner signs it as it is.
    let record = genesis(&group, &alice, vec![(bob.id(), MemberRole::Member)]);
    let (st, body) = post(&s, &alice, &group, &record).await;
    assert!(st == 200 || st == 201, "{st} {body}");
}

/// The owner signing a version-1 group while an admin adds someone by the
/// version-1 route: one of them loses, and the server never lists a member
/// no signed change admits.
#[tokio::test]
async fn a_signed_upgrade_racing_a_version_1_add_never_admits_an_unsigned_member() {
    let s = TestServer::start().await;
    let alice = person(&s, "alice", 31).await;
    let bob = person(&s, "bob", 32).await;
    let carol = person(&s, "carol", 33).await;
    for round in 0..8 {
        let group = v1_group(&s, &alice, &bob).await;
        let st = s
            .status(
                "PUT",
                &format!("/api/groups/{group}/members/{}", bob.auth.user.id),
                Some(alice.token()),
                Some(json!({"role": "admin"})),
            )
            .await;
        assert_eq!(st, 200);
        let record = genesis(&group, &alice, vec![(bob.id(), MemberRole::Admin)]);
        let path = format!("/api/groups/{group}/members");
        let add = s.call(
            "POST",
            &path,
            Some(bob.token()),
            Some(json!({"userId": carol.auth.user.id})),
        );
        let ((add_st, add_body), (sign_st, sign_body)) =
            tokio::join!(add, post(&s, &alice, &group, &record));
        let (_, g) = s
            .call(
                "GET",
                &format!("/api/groups/{group}"),
                Some(alice.token()),
                None,
            )
            .await;
        let listed = g["members"].as_array().unwrap().len();
        let signed = sign_st < 300;
        if signed {
            assert_eq!(
                listed, 2,
                "round {round}: signed ({sign_body}), the add was {add_st} {add_body}, and the \
                 server lists {g}"
            );
        }
        assert!(
            !(signed && add_st == 200),
            "round {round}: both won: {sign_body} / {add_body}"
        );
    }
}

/// Version 2.4: the owner hands the group over by a signed change; the
/// server's roles and owner follow, and from then on only the new owner may
/// delete the group. Nobody else may hand it over.
#[tokio::test]
async fn ownership_passes_only_by_the_owners_signed_change() {
    let s = TestServer::start().await;
    let alice = person(&s, "alice", 1).await;
    let bob = person(&s, "bob", 2).await;
    let group = uuid::Uuid::new_v4().to_string();
    let create = ChangeRecord::sign(
        &alice.key,
        alice.id(),
        gid(&group),
        None,
        ChangeAction::Create {
            name: "team".into(),
            members: vec![(bob.id(), MemberRole::Member)],
        },
    )
    .unwrap();
    assert_eq!(post(&s, &alice, &group, &create).await.0, 201);
    let take = |who: &Person| {
        ChangeRecord::sign(
            &who.key,
            who.id(),
            gid(&group),
            Some(&create),
            ChangeAction::TransferOwnership { user: bob.id() },
        )
        .unwrap()
    };
    // Bob cannot take it himself.
    let (st, body) = post(&s, &bob, &group, &take(&bob)).await;
    assert_eq!(st, 403, "{body}");
    let (st, g) = post(&s, &alice, &group, &take(&alice)).await;
    assert!(st < 300, "{st} {g}");
    assert_eq!(g["ownerId"], bob.auth.user.id, "{g}");
    let role = |who: &Person| {
        g["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["userId"] == who.auth.user.id)
            .map(|m| m["role"].clone())
    };
    assert_eq!(role(&bob), Some(json!("owner")), "{g}");
    assert_eq!(role(&alice), Some(json!("admin")), "{g}");
    let path = format!("/api/groups/{group}");
    let (st, _) = s.call("DELETE", &path, Some(alice.token()), None).await;
    assert_eq!(st, 403);
    let (st, _) = s.call("DELETE", &path, Some(bob.token()), None).await;
    assert_eq!(st, 204);
}
