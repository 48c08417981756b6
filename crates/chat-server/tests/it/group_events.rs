//! Membership is pushed: every change to a group sends `groupChanged` to
//! its members (and to a member removed), queued for those offline, one
//! per group.

use std::time::Duration;

use chat_proto::ws::{GroupChange, GroupChanged, ServerFrame};
use serde_json::json;

use crate::support::{TestServer, Ws};

async fn next_change(ws: &mut Ws) -> GroupChanged {
    ws.until(|f| match f {
        ServerFrame::GroupChanged(g) => Some(g),
        _ => None,
    })
    .await
}

/// No further `groupChanged` within a short while.
async fn no_change(ws: &mut Ws) {
    while let Some(f) = ws.try_next(Duration::from_millis(300)).await {
        assert!(
            !matches!(f, ServerFrame::GroupChanged(_)),
            "unexpected {f:?}"
        );
    }
}

#[tokio::test]
async fn every_change_reaches_every_member_as_it_happens() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let c = s.register("carol").await;
    let mut wa = s.connect(&a.token).await;
    let mut wb = s.connect(&b.token).await;
    let mut wc = s.connect(&c.token).await;

    let (status, g) = s
        .call(
            "POST",
            "/api/groups",
            Some(&a.token),
            Some(json!({"name": "g", "memberIds": [b.user.id]})),
        )
        .await;
    assert_eq!(status, 201);
    let gid = g["id"].as_str().unwrap().to_owned();
    for ws in [&mut wa, &mut wb] {
        let e = next_change(ws).await;
        assert_eq!(
            (e.group_id.as_str(), e.change),
            (gid.as_str(), GroupChange::Created)
        );
        assert_eq!(e.by, a.user.id);
    }
    no_change(&mut wc).await;

    let members = format!("/api/groups/{gid}/members");
    let status = s
        .status(
            "POST",
            &members,
            Some(&a.token),
            Some(json!({"userId": c.user.id})),
        )
        .await;
    assert_eq!(status, 200);
    for ws in [&mut wa, &mut wb, &mut wc] {
        let e = next_change(ws).await;
        assert_eq!(e.change, GroupChange::MemberAdded);
        assert_eq!(e.user_id.as_deref(), Some(c.user.id.as_str()));
    }

    let bob = format!("{members}/{}", b.user.id);
    let status = s
        .status("PUT", &bob, Some(&a.token), Some(json!({"role": "admin"})))
        .await;
    assert_eq!(status, 200);
    for ws in [&mut wa, &mut wb, &mut wc] {
        assert_eq!(next_change(ws).await.change, GroupChange::RoleChanged);
    }

    let group = format!("/api/groups/{gid}");
    let status = s
        .status(
            "PUT",
            &group,
            Some(&a.token),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(status, 200);
    for ws in [&mut wa, &mut wb, &mut wc] {
        assert_eq!(next_change(ws).await.change, GroupChange::Updated);
    }

    // Carol is removed: she hears it too, then nothing more.
    let carol = format!("{members}/{}", c.user.id);
    assert_eq!(s.status("DELETE", &carol, Some(&a.token), None).await, 204);
    for ws in [&mut wa, &mut wb, &mut wc] {
        let e = next_change(ws).await;
        assert_eq!(e.change, GroupChange::MemberRemoved);
        assert_eq!(e.user_id.as_deref(), Some(c.user.id.as_str()));
    }

    // Bob leaves: by himself.
    assert_eq!(s.status("DELETE", &bob, Some(&b.token), None).await, 204);
    for ws in [&mut wa, &mut wb] {
        let e = next_change(ws).await;
        assert_eq!(e.change, GroupChange::MemberRemoved);
        assert_eq!(e.by, b.user.id);
    }
    no_change(&mut wc).await;

    assert_eq!(s.status("DELETE", &group, Some(&a.token), None).await, 204);
    assert_eq!(next_change(&mut wa).await.change, GroupChange::Deleted);
    no_change(&mut wb).await;
}

#[tokio::test]
async fn an_offline_member_gets_the_latest_change_of_each_group_on_connect() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let (_, g) = s
            .call(
                "POST",
                "/api/groups",
                Some(&a.token),
                Some(json!({"name": name, "memberIds": [b.user.id]})),
            )
            .await;
        ids.push(g["id"].as_str().unwrap().to_owned());
    }
    // Group one is renamed after it was created: one notice, the latest.
    let path = format!("/api/groups/{}", ids[0]);
    let status = s
        .status("PUT", &path, Some(&a.token), Some(json!({"name": "uno"})))
        .await;
    assert_eq!(status, 200);

    let mut wb = s.connect(&b.token).await;
    let first = next_change(&mut wb).await;
    let second = next_change(&mut wb).await;
    no_change(&mut wb).await;
    // Oldest first: two's creation, then one's rename (which replaced
    // one's creation).
    assert_eq!(
        (first.group_id.as_str(), first.change),
        (ids[1].as_str(), GroupChange::Created)
    );
    assert_eq!(
        (second.group_id.as_str(), second.change),
        (ids[0].as_str(), GroupChange::Updated)
    );
    // Taken once: a second connection gets none.
    drop(wb);
    let mut wb = s.connect(&b.token).await;
    no_change(&mut wb).await;
}

#[tokio::test]
async fn a_queued_notice_survives_a_restart() {
    let mut s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let (_, g) = s
        .call(
            "POST",
            "/api/groups",
            Some(&a.token),
            Some(json!({"name": "g", "memberIds": [b.user.id]})),
        )
        .await;
    s.restart().await;
    let mut wb = s.connect(&b.token).await;
    let e = next_change(&mut wb).await;
    assert_eq!(e.group_id, g["id"].as_str().unwrap());
}
