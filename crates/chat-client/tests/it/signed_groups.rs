//! Group membership signed by admins (DESIGN.md section 8) against a server
//! that lies: it adds a reader, forges a change, or lets an outsider post.

use chat_client::{Conversation, Event, MembershipAction};
use e2ee_core::IdentityKeyPair;
use e2ee_core::membership::{ChangeAction, ChangeRecord, MemberRole};
use rand_core::OsRng;

use crate::support::{Net, Party, body};

fn uuid_bytes(s: &str) -> [u8; 16] {
    *uuid::Uuid::parse_str(s).unwrap().as_bytes()
}

/// What a compromised server does first: writes a member row no admin
/// signed.
fn server_adds_member(net: &Net, group: &str, user: &str) {
    net.db()
        .execute(
            "INSERT INTO group_members (group_id, user_id, role, joined_at)
             VALUES (?1, ?2, 'member', 0)",
            [group, user],
        )
        .unwrap();
}

async fn unverified(p: &mut Party, group: &str) -> (Vec<String>, String) {
    let g = group.to_owned();
    p.wait(move |e| match e {
        Event::MembershipUnverified {
            group_id,
            user_ids,
            reason,
        } if group_id == g => Some((user_ids, reason)),
        _ => None,
    })
    .await
}

/// Alice and Bob in a group, and Mallory, whom the server will try to slip in.
async fn setup(net: &Net) -> (Party, Party, Party, String) {
    let mut a = Party::register(net, "alice").await;
    let mut b = Party::register(net, "bob").await;
    let m = Party::register(net, "mallory").await;
    let g = a
        .client
        .create_group("secret", std::slice::from_ref(&b.id))
        .await
        .unwrap();
    let conv = Conversation::Group(g.id.clone());
    a.client.send_text(&conv, "before").await.unwrap();
    assert_eq!(body(&b.next_message().await), "before");
    b.client.send_text(&conv, "before too").await.unwrap();
    assert_eq!(body(&a.next_message().await), "before too");
    (a, b, m, g.id)
}

#[tokio::test]
async fn a_member_the_server_adds_gets_no_sender_key_and_reads_nothing() {
    let net = Net::start().await;
    let (mut a, mut b, mut m, gid) = setup(&net).await;
    server_adds_member(&net, &gid, &m.id);

    // Anything that makes the clients reload: here Alice renames the group
    // (a real, signed change), and the server pushes the change to all.
    a.client.rename_group(&gid, "still secret").await.unwrap();
    let (users, _) = unverified(&mut a, &gid).await;
    assert_eq!(users, vec![m.id.clone()]);
    let (users, _) = unverified(&mut b, &gid).await;
    assert_eq!(users, vec![m.id.clone()]);

    let conv = Conversation::Group(gid.clone());
    a.client.send_text(&conv, "after alice").await.unwrap();
    b.client.send_text(&conv, "after bob").await.unwrap();
    assert_eq!(body(&b.next_message().await), "after alice");
    assert_eq!(body(&a.next_message().await), "after bob");
    m.no_message_for(1500).await;

    let g = b.client.verify_group(&gid).await.unwrap();
    assert_eq!(g.unconfirmed, vec![m.id.clone()]);
    assert!(g.members.iter().all(|(u, _)| *u != m.id));
    assert!(g.signed);
}

#[tokio::test]
async fn an_outsider_the_server_lets_post_is_not_shown() {
    let net = Net::start().await;
    let (a, mut b, m, gid) = setup(&net).await;
    server_adds_member(&net, &gid, &m.id);
    // Mallory's own client sends its sender key to the verified members
    // and posts, as a hostile client would.
    let conv = Conversation::Group(gid.clone());
    m.client.send_text(&conv, "injected").await.unwrap();
    a.client.send_text(&conv, "real").await.unwrap();
    // Bob sees Alice's message and never Mallory's.
    let got = b.next_message().await;
    assert_eq!(body(&got), "real");
    b.no_message_for(1000).await;
    let history = b
        .client
        .history(&conv, None, 50)
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.body.unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(!history.iter().any(|t| t == "injected"), "{history:?}");
}

#[tokio::test]
async fn a_change_the_server_forges_is_refused_and_the_chain_stops_there() {
    let net = Net::start().await;
    let (a, b, m, gid) = setup(&net).await;
    // The server signs "Alice adds Mallory" with a key of its own.
    let genesis: Vec<u8> = net
        .db()
        .query_row(
            "SELECT record FROM group_changes WHERE group_id = ?1 AND epoch = 0",
            [&gid],
            |r| r.get(0),
        )
        .unwrap();
    let genesis = ChangeRecord::from_bytes(&genesis).unwrap();
    let forger = IdentityKeyPair::generate(&mut OsRng);
    let forged = ChangeRecord::sign(
        &forger,
        uuid_bytes(&a.id),
        uuid_bytes(&gid),
        Some(&genesis),
        ChangeAction::Add {
            user: uuid_bytes(&m.id),
            role: MemberRole::Member,
        },
    )
    .unwrap();
    net.db()
        .execute(
            "INSERT INTO group_changes (group_id, epoch, record, created_at) VALUES (?1, 1, ?2, 0)",
            rusqlite::params![gid, forged.to_bytes()],
        )
        .unwrap();
    server_adds_member(&net, &gid, &m.id);

    let g = b.client.verify_group(&gid).await.unwrap();
    assert_eq!(g.unconfirmed, vec![m.id.clone()]);
    assert!(g.problem.is_some(), "{g:?}");
    assert_eq!(g.changes.len(), 1, "only the genesis verifies: {g:?}");

    // Alice's next change cannot land on top of a head she cannot verify:
    // the server can stall the group, not change who reads it.
    let e = a.client.rename_group(&gid, "x").await.unwrap_err();
    eprintln!("rename on a forged head: {e}");
    let conv = Conversation::Group(gid.clone());
    a.client.send_text(&conv, "still private").await.unwrap();
    let mut b = b;
    assert_eq!(body(&b.next_message().await), "still private");
    let mut m = m;
    m.no_message_for(1000).await;
}

#[tokio::test]
async fn every_member_sees_who_made_each_change() {
    let net = Net::start().await;
    let (a, b, m, gid) = setup(&net).await;
    a.client.add_member(&gid, &m.id).await.unwrap();
    a.client.rename_group(&gid, "renamed").await.unwrap();
    b.client.leave_group(&gid).await.unwrap();
    let g = m.client.verify_group(&gid).await.unwrap();
    let seen: Vec<(u64, String, MembershipAction)> = g
        .changes
        .into_iter()
        .map(|c| (c.epoch, c.by, c.action))
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        matches!(&seen[0], (0, by, MembershipAction::Created { name, members })
        if *by == a.id && name == "secret" && *members == vec![b.id.clone()])
    );
    assert!(
        matches!(&seen[1], (1, by, MembershipAction::Added { user_id, role })
        if *by == a.id && *user_id == m.id && role == "member")
    );
    assert!(
        matches!(&seen[2], (2, by, MembershipAction::Renamed { name })
        if *by == a.id && name == "renamed")
    );
    assert!(matches!(&seen[3], (3, by, MembershipAction::Left) if *by == b.id));
    assert_eq!(g.name, "renamed");
    let mut ids: Vec<&str> = g.members.iter().map(|(u, _)| u.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![a.id.as_str(), m.id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn a_group_from_before_signing_is_signed_by_its_owner() {
    let net = Net::start().await;
    let a = Party::register(&net, "alice").await;
    let b = Party::register(&net, "bob").await;
    // A version-1 group, made with the unsigned request as old clients did,
    // while Alice's own client is not running.
    a.client.close().await;
    let (rest, _) = crate::support::login_as(&net, "alice").await;
    let v1 = rest
        .create_group(&chat_proto::rest::CreateGroupRequest {
            name: "old".into(),
            description: None,
            member_ids: vec![b.id.clone()],
        })
        .await
        .unwrap();
    let gid = v1.id;
    // Alice's store held it before version 2 (an upgraded store records
    // such groups when it migrates to schema 10).
    let aid = a.id.clone();
    drop(a);
    net.open_store("alice")
        .write(|tx| tx.mark_legacy_group(&gid))
        .unwrap();
    let g = b.client.verify_group(&gid).await.unwrap();
    assert!(!g.signed, "nobody signed it yet: {g:?}");
    // Until then only the server says who is in it: nobody is confirmed,
    // and Bob sends nothing to it (DESIGN.md section 10).
    assert_eq!(g.members, vec![(b.id.clone(), "member".to_owned())]);
    assert_eq!(g.unconfirmed, vec![aid]);
    assert!(g.problem.is_some());
    let conv = Conversation::Group(gid.clone());
    assert!(matches!(
        b.client.send_text(&conv, "too early").await,
        Err(chat_client::ClientError::UnsignedGroup { .. })
    ));

    // Alice's client runs again and signs it as it is.
    let mut a = Party::reopen(&net, "alice").await;
    let g = a.client.verify_group(&gid).await.unwrap();
    assert!(g.signed);
    assert_eq!(g.changes.len(), 1);
    let g = b.client.verify_group(&gid).await.unwrap();
    assert!(g.signed && g.unconfirmed.is_empty(), "{g:?}");
    // Unsigned changes are refused from now on, even from the owner.
    let e = rest
        .add_member(
            &gid,
            &chat_proto::rest::AddMemberRequest {
                user_id: b.id.clone(),
                role: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(chat_proto::rest::ErrorCode::Conflict), "{e}");

    // And the server cannot add a reader any more.
    let m = Party::register(&net, "mallory").await;
    server_adds_member(&net, &gid, &m.id);
    let g = b.client.verify_group(&gid).await.unwrap();
    assert_eq!(g.unconfirmed, vec![m.id.clone()]);
    b.client.send_text(&conv, "signed now").await.unwrap();
    assert_eq!(body(&a.next_message().await), "signed now");
}

/// DESIGN.md section 10: roles and owner come from the verified chain
/// only. A server that calls Bob an admin (and itself the owner) changes
/// nothing: both views keep the signed roles, Bob's own client refuses
/// him the admin's timer, and Alice's timer stays off.
#[tokio::test]
async fn roles_and_owner_the_server_lists_count_for_nothing() {
    let net = Net::start().await;
    let (mut a, b, m, gid) = setup(&net).await;
    net.db()
        .execute(
            "UPDATE group_members SET role = 'admin' WHERE group_id = ?1 AND user_id = ?2",
            [&gid, &b.id],
        )
        .unwrap();
    net.db()
        .execute(
            "UPDATE groups SET owner_id = ?2 WHERE id = ?1",
            [&gid, &m.id],
        )
        .unwrap();
    let (aid, bid) = (a.id.clone(), b.id.clone());
    for p in [&a, &b] {
        let g = p.client.verify_group(&gid).await.unwrap();
        let role = |u: &str| {
            g.members
                .iter()
                .find(|(id, _)| id == u)
                .map(|(_, r)| r.clone())
        };
        assert_eq!(role(&bid).as_deref(), Some("member"), "{}", p.name);
        assert_eq!(role(&aid).as_deref(), Some("owner"), "{}", p.name);
    }
    let conv = Conversation::Group(gid.clone());
    assert!(
        b.client
            .set_disappearing(&conv, Some(std::time::Duration::from_secs(60)))
            .await
            .is_err(),
        "a member the server calls admin set the timer"
    );
    b.client.send_text(&conv, "after").await.unwrap();
    assert_eq!(body(&a.next_message().await), "after");
    assert_eq!(a.client.disappearing(&conv).await.unwrap(), None);
}
