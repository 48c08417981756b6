//! Groups over REST and WebSocket: roles, fan-out, and who may do what.

use chat_proto::ws::{ClientFrame, SendGroupMessage};
use serde_json::json;

use crate::support::{TestServer, new_id};

fn group_message(group: &str) -> (String, ClientFrame) {
    let id = new_id();
    (
        id.clone(),
        ClientFrame::GroupMessage(SendGroupMessage {
            id,
            group_id: group.to_owned(),
            content: "E2EE:AwID".into(),
            message_type: "text".into(),
        }),
    )
}

#[tokio::test]
async fn group_lifecycle_roles_and_fan_out() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let c = s.register("carol").await;
    let d = s.register("dave").await;
    let (st, g) = s
        .call(
            "POST",
            "/api/groups",
            Some(&a.token),
            Some(json!({"name": "Friends", "memberIds": [b.user.id, c.user.id]})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    assert_eq!(g["members"].as_array().unwrap().len(), 3);
    assert_eq!(g["ownerId"], a.user.id.as_str());

    // Fan-out to every member but the sender.
    let mut wa = s.connect(&a.token).await;
    let mut wb = s.connect(&b.token).await;
    let mut wc = s.connect(&c.token).await;
    let (id, frame) = group_message(&gid);
    wa.send(&frame).await;
    wa.next_ack().await;
    for w in [&mut wb, &mut wc] {
        let m = w.next_group_message().await;
        assert_eq!(
            (m.id.as_str(), m.group_id.as_deref()),
            (id.as_str(), Some(gid.as_str()))
        );
        assert_eq!(m.from, a.user.id);
    }

    // A non-member can neither send nor read nor see it.
    let mut wd = s.connect(&d.token).await;
    let (_, frame) = group_message(&gid);
    wd.send(&frame).await;
    let e = wd.next_error().await;
    assert_eq!(e.code, chat_proto::rest::ErrorCode::NotFound);
    assert_eq!(
        s.status("GET", &format!("/api/groups/{gid}"), Some(&d.token), None)
            .await,
        404
    );
    assert_eq!(
        s.status(
            "GET",
            &format!("/api/groups/{gid}/messages"),
            Some(&d.token),
            None
        )
        .await,
        404
    );

    // A plain member cannot change membership or rename.
    let (st, _) = s
        .call(
            "POST",
            &format!("/api/groups/{gid}/members"),
            Some(&b.token),
            Some(json!({"userId": d.user.id})),
        )
        .await;
    assert_eq!(st, 403);
    assert_eq!(
        s.status(
            "DELETE",
            &format!("/api/groups/{gid}/members/{}", c.user.id),
            Some(&b.token),
            None
        )
        .await,
        403
    );
    assert_eq!(
        s.status(
            "PUT",
            &format!("/api/groups/{gid}"),
            Some(&b.token),
            Some(json!({"name": "x"}))
        )
        .await,
        403
    );

    // The owner adds Dave; Dave gets messages from then on only.
    let (st, g) = s
        .call(
            "POST",
            &format!("/api/groups/{gid}/members"),
            Some(&a.token),
            Some(json!({"userId": d.user.id})),
        )
        .await;
    assert_eq!(st, 200, "{g}");
    let (_, pending) = s
        .call(
            "GET",
            &format!("/api/groups/{gid}/messages"),
            Some(&d.token),
            None,
        )
        .await;
    assert!(pending["messages"].as_array().unwrap().is_empty());

    // Owner removes Carol; Bob leaves on his own.
    assert_eq!(
        s.status(
            "DELETE",
            &format!("/api/groups/{gid}/members/{}", c.user.id),
            Some(&a.token),
            None
        )
        .await,
        204
    );
    assert_eq!(
        s.status(
            "DELETE",
            &format!("/api/groups/{gid}/members/{}", b.user.id),
            Some(&b.token),
            None
        )
        .await,
        204
    );
    // Nobody removes the owner.
    assert_eq!(
        s.status(
            "DELETE",
            &format!("/api/groups/{gid}/members/{}", a.user.id),
            Some(&a.token),
            None
        )
        .await,
        403
    );
    let (_, g) = s
        .call("GET", &format!("/api/groups/{gid}"), Some(&a.token), None)
        .await;
    let members: Vec<_> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].clone())
        .collect();
    assert_eq!(members, vec!["alice", "dave"]);

    // Rename, list, delete.
    let (st, g) = s
        .call(
            "PUT",
            &format!("/api/groups/{gid}"),
            Some(&a.token),
            Some(json!({"name": "Two"})),
        )
        .await;
    assert_eq!((st, g["name"].as_str()), (200, Some("Two")));
    let (_, list) = s.call("GET", "/api/groups", Some(&d.token), None).await;
    assert_eq!(list["groups"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.status(
            "DELETE",
            &format!("/api/groups/{gid}"),
            Some(&d.token),
            None
        )
        .await,
        403
    );
    assert_eq!(
        s.status(
            "DELETE",
            &format!("/api/groups/{gid}"),
            Some(&a.token),
            None
        )
        .await,
        204
    );
    assert_eq!(
        s.status("GET", &format!("/api/groups/{gid}"), Some(&a.token), None)
            .await,
        404
    );
}

#[tokio::test]
async fn only_the_owner_adds_admins_and_admins_manage_members() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let c = s.register("carol").await;
    let (_, g) = s
        .call(
            "POST",
            "/api/groups",
            Some(&a.token),
            Some(json!({"name": "G"})),
        )
        .await;
    let gid = g["id"].as_str().unwrap().to_owned();
    let add = |who: &str, role: &str| json!({"userId": who, "role": role});
    assert_eq!(
        s.status(
            "POST",
            &format!("/api/groups/{gid}/members"),
            Some(&a.token),
            Some(add(&b.user.id, "admin"))
        )
        .await,
        200
    );
    // An admin may add members but not admins, and not owners at all.
    assert_eq!(
        s.status(
            "POST",
            &format!("/api/groups/{gid}/members"),
            Some(&b.token),
            Some(add(&c.user.id, "admin"))
        )
        .await,
        403
    );
    assert_eq!(
        s.status(
            "POST",
            &format!("/api/groups/{gid}/members"),
            Some(&a.token),
            Some(add(&c.user.id, "owner"))
        )
        .await,
        400
    );
    assert_eq!(
        s.status(
            "POST",
            &format!("/api/groups/{gid}/members"),
            Some(&b.token),
            Some(add(&c.user.id, "member"))
        )
        .await,
        200
    );
    assert_eq!(
        s.status(
            "DELETE",
            &format!("/api/groups/{gid}/members/{}", c.user.id),
            Some(&b.token),
            None
        )
        .await,
        204
    );
    // Validation.
    assert_eq!(
        s.status(
            "POST",
            "/api/groups",
            Some(&a.token),
            Some(json!({"name": ""}))
        )
        .await,
        400
    );
    assert_eq!(
        s.status(
            "POST",
            "/api/groups",
            Some(&a.token),
            Some(json!({"name": "x", "memberIds": ["nope"]}))
        )
        .await,
        400
    );
}

/// The client's pattern when a member joins: a 1:1 sender-key message and
/// then the group message, back to back on one connection. The 1:1 write is
/// pipelined and the group write is not, so both can commit in one batch
/// and be pushed from different places; a connected recipient must still
/// get both, in queue order, without reconnecting. (Pushes made after
/// `store_message` returned could reach the mailbox as seq N+1 before N, and
/// the connection then took N for already sent.)
#[tokio::test]
async fn interleaved_direct_and_group_messages_reach_a_live_member_in_order() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let (st, g) = s
        .call(
            "POST",
            "/api/groups",
            Some(&a.token),
            Some(json!({"name": "pairs", "memberIds": [b.user.id]})),
        )
        .await;
    assert_eq!(st, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let mut wa = s.connect(&a.token).await;
    let mut wb = s.connect(&b.token).await;

    const PAIRS: usize = 50;
    let mut sent = Vec::new();
    for _ in 0..PAIRS {
        let (one, frame) = crate::support::message(&b.user.id, "E2EE:AQID");
        wa.send(&frame).await;
        let (two, frame) = group_message(&gid);
        wa.send(&frame).await;
        sent.push(one);
        sent.push(two);
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match wb.next_frame().await {
            chat_proto::ws::ServerFrame::Message(m)
            | chat_proto::ws::ServerFrame::GroupMessage(m) => {
                wb.send(&ClientFrame::Delivered(chat_proto::ws::Delivered {
                    message_ids: vec![m.id.clone()],
                }))
                .await;
                got.push(m.id);
            }
            _ => {}
        }
    }
    assert_eq!(got, sent, "every message, in the order it was sent");
    // Alice got an ack for each.
    let mut acks = 0;
    while acks < sent.len() {
        wa.next_ack().await;
        acks += 1;
    }
}
