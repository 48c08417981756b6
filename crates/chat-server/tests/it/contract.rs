//! The error contract docs/API.md promises, as a strict client checks it.

use std::time::Duration;

use chat_proto::rest::ErrorCode;
use chat_proto::ws::{ClientFrame, SendMessage, ServerFrame};
use serde_json::json;

use crate::support::{TestServer, new_id};

#[tokio::test]
async fn a_frame_over_the_limit_gets_a_too_large_error_before_the_close() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let mut wa = s.connect(&a.token).await;
    wa.send_raw(&"x".repeat(chat_proto::validate::FRAME_MAX + 1))
        .await;
    match wa.try_next(Duration::from_secs(5)).await {
        Some(ServerFrame::Error(e)) => assert_eq!(e.code, ErrorCode::TooLarge, "{e:?}"),
        other => panic!("expected a tooLarge error, got {other:?}"),
    }
    assert!(
        wa.try_next(Duration::from_secs(5)).await.is_none(),
        "then closed"
    );
}

#[tokio::test]
async fn a_message_that_fails_its_schema_is_answered_with_its_id() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let mut wa = s.connect(&a.token).await;
    let id = new_id();
    // An unknown field, and a number where a string belongs.
    for payload in [
        json!({"id": id, "to": new_id(), "content": "E2EE:AQ", "messageType": "e2ee", "extra": 1}),
        json!({"id": id, "to": 7, "content": "E2EE:AQ", "messageType": "e2ee"}),
    ] {
        wa.send_raw(&json!({"type": "message", "payload": payload}).to_string())
            .await;
        let e = wa.next_error().await;
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.id.as_deref(), Some(id.as_str()), "{e:?}");
    }
    // No readable id: an error without one, and the connection lives.
    wa.send_raw(r#"{"type":"message","payload":{"id":5}}"#)
        .await;
    assert_eq!(wa.next_error().await.id, None);
}

#[tokio::test]
async fn one_message_id_in_two_spellings_is_one_message() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let b = s.register("bob").await;
    let mut wa = s.connect(&a.token).await;
    let id = new_id();
    for spelling in [id.to_uppercase(), format!("{{{id}}}"), id.clone()] {
        wa.send(&ClientFrame::Message(SendMessage {
            id: spelling,
            to: b.user.id.clone(),
            content: "E2EE:AQID".into(),
            message_type: "e2ee".into(),
            copies: Vec::new(),
        }))
        .await;
        assert_eq!(wa.next_ack().await.id, id, "acknowledged in canonical form");
    }
    let mut wb = s.connect(&b.token).await;
    let m = wb.next_message().await;
    assert_eq!(m.id, id);
    assert!(
        wb.try_next(Duration::from_millis(500))
            .await
            .is_none_or(|f| !matches!(f, ServerFrame::Message(_))),
        "delivered once"
    );
}

#[tokio::test]
async fn logging_out_one_token_closes_only_its_connections() {
    let s = TestServer::start().await;
    let a = s.register("alice").await;
    let (_, second) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "alice", "password": "secret-pw"})),
        )
        .await;
    let second = second["token"].as_str().unwrap().to_owned();
    let mut first_ws = s.connect(&a.token).await;
    let mut second_ws = s.connect(&second).await;
    let (status, _) = s
        .call("POST", "/api/auth/logout", Some(&a.token), None)
        .await;
    assert_eq!(status, 204);
    assert!(
        first_ws.try_next(Duration::from_secs(5)).await.is_none(),
        "the logged-out token's connection closes"
    );
    // The other login is untouched: it still sends and gets acks.
    let (_, frame) = crate::support::message(&a.user.id, "E2EE:AQID");
    second_ws.send(&frame).await;
    second_ws.next_ack().await;
}

#[tokio::test]
async fn every_error_is_the_json_error_body() {
    let s = TestServer::start().await;
    // A known path with the wrong method: 405, with the body.
    let (status, body) = s.call("PUT", "/api/auth/login", None, None).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    // A path segment that is not UTF-8.
    let a = s.register("alice").await;
    let resp = s
        .http
        .get(format!("{}/api/users/%FF%FE", s.base))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "{ct}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
}

fn login_body(user: &str, password: &str) -> serde_json::Value {
    json!({"username": user, "password": password})
}

/// `POST /api/auth/login`'s status.
async fn login_status(s: &TestServer, user: &str, password: &str) -> u16 {
    s.call(
        "POST",
        "/api/auth/login",
        None,
        Some(login_body(user, password)),
    )
    .await
    .0
}

#[tokio::test]
async fn a_rate_limit_says_when_to_try_again() {
    let s = TestServer::with(|c| c.limits.logins_per_minute = 2).await;
    s.register("alice").await;
    let mut retry = None;
    let mut said = String::new();
    for _ in 0..3 {
        let resp = s
            .http
            .post(format!("{}/api/auth/login", s.base))
            .json(&login_body("alice", "secret-pw"))
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 429 {
            retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
            said = body["error"]["message"].as_str().unwrap().to_owned();
        }
    }
    let secs: u64 = retry
        .expect("the third login is limited, with Retry-After")
        .parse()
        .unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    // Said for a person: what is limited and when to try again.
    assert_eq!(
        said,
        format!("too many logins from this address; try again in {secs} s")
    );
}

#[tokio::test]
async fn guessing_one_account_is_throttled_whatever_the_address_and_ends() {
    // One attempt earned back every 2 s; per-address limits stay wide open
    // (as for an attacker with many addresses).
    let s = TestServer::with(|c| c.limits.logins_per_account_per_minute = 30).await;
    s.register("alice").await;
    s.register("bob").await;
    let mut limited = None;
    for i in 0..40 {
        let status = login_status(&s, "alice", &format!("guess-{i}")).await;
        if status == 429 {
            limited = Some(i);
            break;
        }
        assert_eq!(status, 401);
    }
    let at = limited.expect("guessing is throttled");
    assert!(at >= 29, "limited after {at} attempts");
    // Another account is not affected.
    assert_eq!(login_status(&s, "bob", "secret-pw").await, 200);
    // Not a lockout: once the attacker stops, the owner gets in after the wait.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(login_status(&s, "alice", "secret-pw").await, 200);
}

/// Frames of kind `online` about `user` within `wait`.
async fn presence_of(ws: &mut crate::support::Ws, user: &str, wait: Duration) -> usize {
    presence_values(ws, user, wait).await.len()
}

#[tokio::test]
async fn presence_goes_only_to_those_the_user_wrote_to() {
    let s = TestServer::start().await;
    let victim = s.register("victim").await;
    let stalker = s.register("stalker").await;
    let friend = s.register("friend").await;
    // The stalker writes to the victim and puts her in a group, without her
    // consent: neither lets him see when she is online.
    let mut ws = s.connect(&stalker.token).await;
    let (_, frame) = crate::support::message(&victim.user.id, "E2EE:AQID");
    ws.send(&frame).await;
    ws.next_ack().await;
    let (status, _) = s
        .call(
            "POST",
            "/api/groups",
            Some(&stalker.token),
            Some(json!({"name": "watch", "memberIds": [victim.user.id]})),
        )
        .await;
    assert_eq!(status, 201);
    // She writes to a friend only.
    let mut wf = s.connect(&friend.token).await;
    {
        let mut wv = s.connect(&victim.token).await;
        let (_, frame) = crate::support::message(&friend.user.id, "E2EE:AQID");
        wv.send(&frame).await;
        wv.next_ack().await;
        assert_eq!(
            presence_of(&mut wf, &victim.user.id, Duration::from_millis(300)).await,
            0
        );
    }
    let _ = presence_of(&mut ws, &victim.user.id, Duration::from_millis(300)).await;
    let _ = presence_of(&mut wf, &victim.user.id, Duration::from_millis(300)).await;
    // She comes online: the friend is told, the stalker is not.
    let _wv = s.connect(&victim.token).await;
    assert_eq!(
        presence_of(&mut wf, &victim.user.id, Duration::from_secs(2)).await,
        1
    );
    assert_eq!(
        presence_of(&mut ws, &victim.user.id, Duration::from_millis(500)).await,
        0
    );
}

/// The `online` values about `user` within `wait`, in order.
async fn presence_values(ws: &mut crate::support::Ws, user: &str, wait: Duration) -> Vec<bool> {
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + wait;
    while let Some(f) = ws
        .try_next(end.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if let ServerFrame::Online(o) = f
            && o.user_id == user
        {
            seen.push(o.online);
        }
    }
    seen
}

#[tokio::test]
async fn a_reconnect_within_the_grace_shows_no_offline_and_online_pair() {
    let s = TestServer::with(|c| c.presence_grace_ms = 400).await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    // Alice wrote to Bob: Bob sees her presence.
    {
        let mut wa = s.connect(&alice.token).await;
        let (_, frame) = crate::support::message(&bob.user.id, "E2EE:AQID");
        wa.send(&frame).await;
        wa.next_ack().await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut wb = s.connect(&bob.token).await;
    let _ = presence_values(&mut wb, &alice.user.id, Duration::from_millis(200)).await;
    // Alice's short-lived commands, one after another: one "online".
    for _ in 0..3 {
        let wa = s.connect(&alice.token).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(wa);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wa = s.connect(&alice.token).await;
    assert_eq!(
        presence_values(&mut wb, &alice.user.id, Duration::from_millis(300)).await,
        [true],
        "a burst of connections is one online"
    );
    // Someone who connects during the grace is told she is online.
    drop(wa);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut wb2 = s.connect(&bob.token).await;
    assert_eq!(
        presence_values(&mut wb2, &alice.user.id, Duration::from_millis(100)).await,
        [true]
    );
    // Gone for longer than the grace: one offline, to each.
    assert_eq!(
        presence_values(&mut wb, &alice.user.id, Duration::from_millis(1500)).await,
        [false]
    );
    assert_eq!(
        presence_values(&mut wb2, &alice.user.id, Duration::from_millis(300)).await,
        [false]
    );
}

async fn create_group(s: &TestServer, token: &str, members: &[&str]) -> (u16, serde_json::Value) {
    s.call(
        "POST",
        "/api/groups",
        Some(token),
        Some(json!({"name": "g", "memberIds": members})),
    )
    .await
}

/// `POST /api/groups/{gid}/members` as `token`: the status.
async fn add_status(s: &TestServer, token: &str, gid: &str, user: &str) -> u16 {
    let path = format!("/api/groups/{gid}/members");
    s.call("POST", &path, Some(token), Some(json!({"userId": user})))
        .await
        .0
}

/// `DELETE /api/groups/{gid}/members/{user}` as `token`: the status.
async fn remove_status(s: &TestServer, token: &str, gid: &str, user: &str) -> u16 {
    let path = format!("/api/groups/{gid}/members/{user}");
    s.call("DELETE", &path, Some(token), None).await.0
}

#[tokio::test]
async fn groups_have_a_member_cap_and_their_changes_a_rate() {
    let s = TestServer::with(|c| {
        c.max_group_members = 3;
        c.limits.groups_per_hour = 3;
        c.limits.membership_changes_per_minute = 2;
    })
    .await;
    let owner = s.register("owner").await;
    let mut others = Vec::new();
    for i in 0..4 {
        others.push(s.register(&format!("user{i}")).await.user.id);
    }
    let ids: Vec<&str> = others.iter().map(String::as_str).collect();
    // Four strangers plus the owner is over the cap of 3.
    let (status, body) = create_group(&s, &owner.token, &ids).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");
    let (status, g) = create_group(&s, &owner.token, &ids[..2]).await;
    assert_eq!(status, 201);
    let gid = g["id"].as_str().unwrap().to_owned();
    let t = &owner.token;
    assert_eq!(
        add_status(&s, t, &gid, ids[2]).await,
        413,
        "the group is full"
    );
    // Membership changes are limited (2 a minute here: that attempt was
    // one); leaving is not.
    assert_eq!(remove_status(&s, t, &gid, ids[0]).await, 204);
    assert_eq!(
        add_status(&s, t, &gid, ids[2]).await,
        429,
        "the third change in a minute"
    );
    let (_, leaver) = s
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(login_body("user1", "secret-pw")),
        )
        .await;
    let status = remove_status(&s, leaver["token"].as_str().unwrap(), &gid, ids[1]).await;
    assert_eq!(status, 204, "leaving is never limited");
    // Group creation is limited too (3 an hour here: two used above).
    let (status, _) = create_group(&s, &owner.token, &ids[..1]).await;
    assert_eq!(status, 201);
    let (status, _) = create_group(&s, &owner.token, &ids[..1]).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn the_owner_changes_roles_and_adding_again_is_never_a_silent_no_op() {
    let s = TestServer::start().await;
    let owner = s.register("owner").await;
    let member = s.register("member").await;
    let (_, g) = create_group(&s, &owner.token, &[&member.user.id]).await;
    let gid = g["id"].as_str().unwrap();
    let path = format!("/api/groups/{gid}/members/{}", member.user.id);
    // POST with another role for an existing member: said, not ignored.
    let (status, body) = s
        .call(
            "POST",
            &format!("/api/groups/{gid}/members"),
            Some(&owner.token),
            Some(json!({"userId": member.user.id, "role": "admin"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // The member cannot promote themself; the owner can.
    let (status, _) = s
        .call(
            "PUT",
            &path,
            Some(&member.token),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, g) = s
        .call(
            "PUT",
            &path,
            Some(&owner.token),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 200, "{g}");
    let role = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == member.user.id.as_str())
        .unwrap()["role"]
        .clone();
    assert_eq!(role, "admin");
    let (status, _) = s
        .call(
            "PUT",
            &path,
            Some(&owner.token),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_group_message_counts_once_per_recipient() {
    let s = TestServer::with(|c| c.limits.messages_per_second = 10).await;
    let spammer = s.register("spammer").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.register(&format!("recipient{i}")).await.user.id);
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (_, g) = create_group(&s, &spammer.token, &refs).await;
    let gid = g["id"].as_str().unwrap().to_owned();
    let mut ws = s.connect(&spammer.token).await;
    let mut acked = 0;
    let mut limited = 0;
    for _ in 0..4 {
        ws.send(&ClientFrame::GroupMessage(
            chat_proto::ws::SendGroupMessage {
                id: new_id(),
                group_id: gid.clone(),
                content: "E2EE:AQID".into(),
                message_type: "e2ee".into(),
            },
        ))
        .await;
        // (The group's `created` notice, queued for the owner, comes first.)
        let answer = ws
            .until(|f| (!matches!(f, ServerFrame::GroupChanged(_))).then_some(f))
            .await;
        match answer {
            ServerFrame::Ack(_) => acked += 1,
            ServerFrame::Error(e) if e.code == ErrorCode::RateLimited => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    // Ten a second, five recipients each: two go through, then the budget
    // is spent (it counted once per message before: all four went).
    assert_eq!((acked, limited), (2, 2));
}

async fn register_status(s: &TestServer, name: &str) -> u16 {
    s.call(
        "POST",
        "/api/auth/register",
        None,
        Some(json!({"username": name, "password": "secret-pw"})),
    )
    .await
    .0
}

#[tokio::test]
async fn usernames_are_unique_beyond_ascii_case_and_invisible_characters_are_refused() {
    let s = TestServer::start().await;
    assert_eq!(register_status(&s, "Ωmega").await, 201);
    // Other cases and compatibility forms of the same name are taken.
    for same in ["ωmega", "ΩMEGA", "Ωｍｅｇａ"] {
        assert_eq!(register_status(&s, same).await, 409, "{same}");
    }
    assert_eq!(register_status(&s, "ﬁsh").await, 201);
    assert_eq!(register_status(&s, "FISH").await, 409);
    // Names that look like another on screen are refused outright.
    for hidden in [
        "bob\u{200b}by",
        "\u{202e}evil",
        "zoe\u{feff}",
        "ann\u{2066}a",
        "soft\u{ad}y",
    ] {
        assert_eq!(register_status(&s, hidden).await, 400, "{hidden:?}");
    }
    // Login and lookup find the account by any spelling of its name.
    assert_eq!(login_status(&s, "ωMEGA", "secret-pw").await, 200);
    let me = s.register("lookup").await;
    let (_, found) = s
        .call(
            "GET",
            "/api/users?username=%CF%89mega",
            Some(&me.token),
            None,
        )
        .await;
    assert_eq!(found["users"][0]["username"], "Ωmega", "{found}");
}
