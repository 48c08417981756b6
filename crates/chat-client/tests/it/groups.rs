//! Groups with Sender Keys through the real server.

use chat_client::{Conversation, Event};
use e2ee_store::{Incoming, Received};
use rand_core::OsRng;

use crate::support::{Net, Party, body, eventually};

/// The server's copy of a message: (from, content).
fn server_copy(net: &Net, id: &str) -> (String, String) {
    net.db()
        .query_row(
            "SELECT sender, content FROM messages WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// Tries to decrypt a group message (as the server held it) with
/// someone's store directly.
fn try_decrypt(net: &Net, name: &str, id: &str, group: &str, copy: &(String, String)) -> bool {
    let (from, content) = copy;
    let mut store = net.open_store(name);
    store
        .receive(
            &mut OsRng,
            &Incoming {
                id,
                from,
                from_device: 1,
                group_id: Some(group),
                content,
                server_at_ms: 0,
            },
        )
        .is_ok_and(|r| matches!(r, Received::Message { .. }))
}

async fn expect(p: &mut Party, text: &str) {
    let m = p.next_message().await;
    assert_eq!(body(&m), text, "{}", p.name);
}

#[tokio::test]
async fn a_group_of_five_with_a_member_removed_and_one_added() {
    let net = Net::start().await;
    let mut a = Party::register(&net, "anna").await;
    let mut b = Party::register(&net, "ben").await;
    let mut c = Party::register(&net, "cleo").await;
    let mut d = Party::register(&net, "dan").await;
    let mut e = Party::register(&net, "eve").await;
    let g = a
        .client
        .create_group(
            "five",
            &[b.id.clone(), c.id.clone(), d.id.clone(), e.id.clone()],
        )
        .await
        .unwrap();
    assert_eq!(g.members.len(), 5);
    let conv = Conversation::Group(g.id.clone());

    a.client.send_text(&conv, "g1 from anna").await.unwrap();
    for p in [&mut b, &mut c, &mut d, &mut e] {
        let m = p.next_message().await;
        assert_eq!(body(&m), "g1 from anna");
        assert_eq!(m.conversation, conv);
    }
    b.client.send_text(&conv, "g2 from ben").await.unwrap();
    for p in [&mut a, &mut c, &mut d, &mut e] {
        expect(p, "g2 from ben").await;
    }

    // Eve is removed. Dan is offline, so the server keeps a copy of what
    // follows and we can hand that ciphertext to Eve's keys.
    a.client.remove_member(&g.id, &e.id).await.unwrap();
    d.client.close().await;
    let g3 = a
        .client
        .send_text(&conv, "g3 after eve left")
        .await
        .unwrap();
    expect(&mut b, "g3 after eve left").await;
    expect(&mut c, "g3 after eve left").await;
    e.no_message_for(300).await;
    e.client.close().await;
    drop(e);
    let g3_copy = server_copy(&net, &g3);
    assert!(g3_copy.1.starts_with("E2EE:"));
    assert!(
        !try_decrypt(&net, "eve", &g3, &g.id, &g3_copy),
        "a removed member read a new message"
    );

    // Ben notices on his next send and starts a new chain too.
    b.client.send_text(&conv, "g4 from ben").await.unwrap();
    expect(&mut a, "g4 from ben").await;
    expect(&mut c, "g4 from ben").await;

    // Dan comes back and gets both.
    drop(d);
    let mut d = Party::reopen(&net, "dan").await;
    let got: Vec<String> = d
        .messages(2)
        .await
        .iter()
        .map(|m| body(m).to_owned())
        .collect();
    assert_eq!(got, ["g3 after eve left", "g4 from ben"]);

    // Finn joins: he reads what comes next, not what came before.
    let mut f = Party::register(&net, "finn").await;
    a.client.add_member(&g.id, &f.id).await.unwrap();
    a.client.send_text(&conv, "g5 welcome finn").await.unwrap();
    expect(&mut f, "g5 welcome finn").await;
    b.client.send_text(&conv, "g6 hi finn").await.unwrap();
    expect(&mut f, "g6 hi finn").await;
    for p in [&mut a, &mut c, &mut d] {
        if p.name != "anna" {
            expect(p, "g5 welcome finn").await;
        }
        expect(p, "g6 hi finn").await;
    }
    f.client.close().await;
    drop(f);
    // Finn holds the current chains only: the message from before he
    // joined does not open with his keys.
    assert!(
        !try_decrypt(&net, "finn", &g3, &g.id, &g3_copy),
        "a new member read an old message"
    );
}

#[tokio::test]
async fn group_typing_rename_and_leave() {
    let net = Net::start().await;
    let mut a = Party::register(&net, "anna").await;
    let mut b = Party::register(&net, "ben").await;
    let mut c = Party::register(&net, "cleo").await;
    let g = a
        .client
        .create_group("three", &[b.id.clone(), c.id.clone()])
        .await
        .unwrap();
    let conv = Conversation::Group(g.id.clone());
    a.client.send_text(&conv, "hello group").await.unwrap();
    expect(&mut b, "hello group").await;
    expect(&mut c, "hello group").await;

    b.client.typing(&conv, true).await.unwrap();
    let (from, gid) = a
        .wait(|e| match e {
            Event::Typing {
                from,
                group_id: Some(g),
                typing: true,
            } => Some((from, g)),
            _ => None,
        })
        .await;
    assert_eq!(
        (from.as_str(), gid.as_str()),
        (b.id.as_str(), g.id.as_str())
    );

    let renamed = a.client.rename_group(&g.id, "renamed").await.unwrap();
    assert_eq!(renamed.name, "renamed");

    // Cleo leaves: later messages do not reach her, and Ben's next message
    // goes out on a new chain.
    c.client.leave_group(&g.id).await.unwrap();
    b.client.send_text(&conv, "after cleo left").await.unwrap();
    expect(&mut a, "after cleo left").await;
    c.no_message_for(300).await;
    let groups = c.client.groups().await.unwrap();
    assert!(groups.iter().all(|x| x.id != g.id));
    let e = c.client.send_text(&conv, "still here?").await.unwrap_err();
    assert!(matches!(e, chat_client::ClientError::NotMember(_)), "{e:?}");
}

/// How many times the server answered `GET /api/groups/{id}`.
fn group_reloads(net: &Net) -> u64 {
    let text = net.server.as_ref().unwrap().state().metrics.render(0);
    text.lines()
        .filter(|l| {
            l.starts_with("chat_request_seconds_count{")
                && l.contains("method=\"GET\"")
                && l.contains("route=\"/api/groups/{group_id}\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn group_sends_follow_pushed_changes_instead_of_reloading_each_time() {
    let net = Net::start().await;
    let mut a = Party::register(&net, "anna").await;
    let mut b = Party::register(&net, "ben").await;
    let mut c = Party::register(&net, "cleo").await;
    let g = a
        .client
        .create_group("pushed", &[b.id.clone(), c.id.clone()])
        .await
        .unwrap();
    let conv = Conversation::Group(g.id.clone());
    // Ben learns of the group from the server's notice, not a send.
    b.wait(|e| matches!(e, Event::GroupChanged { group_id } if group_id == g.id).then_some(()))
        .await;

    let before = group_reloads(&net);
    for i in 0..10 {
        b.client.send_text(&conv, &format!("m{i}")).await.unwrap();
    }
    for i in 0..10 {
        expect(&mut a, &format!("m{i}")).await;
        expect(&mut c, &format!("m{i}")).await;
    }
    let reloads = group_reloads(&net) - before;
    assert!(reloads <= 1, "{reloads} group reloads for 10 sends");

    // Anna removes Cleo. Ben's client hears of it and replaces its chain
    // before his next message, with no reload of its own on that send.
    a.client.remove_member(&g.id, &c.id).await.unwrap();
    b.wait(|e| matches!(e, Event::GroupChanged { group_id } if group_id == g.id).then_some(()))
        .await;
    c.client.close().await;
    drop(c);
    a.client.close().await;
    drop(a);
    let id = b.client.send_text(&conv, "after cleo").await.unwrap();
    eventually("the server holds the message", || {
        let held = net
            .db()
            .query_row("SELECT COUNT(*) FROM messages WHERE id = ?1", [&id], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap();
        async move { held == 1 }
    })
    .await;
    let copy = server_copy(&net, &id);
    assert!(
        !try_decrypt(&net, "cleo", &id, &g.id, &copy),
        "a removed member read a message sent after the notice"
    );
    let mut a = Party::reopen(&net, "anna").await;
    expect(&mut a, "after cleo").await;
}
