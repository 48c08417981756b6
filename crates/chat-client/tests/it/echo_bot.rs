//! The echo bot example, run against a real server.

use chat_client::Conversation;

use crate::support::{Net, Party, body};

#[path = "../../examples/echo_bot.rs"]
#[allow(dead_code)]
mod bot;

#[tokio::test]
async fn the_echo_bot_answers_echo_and_info_and_nothing_else() {
    let net = Net::start().await;
    let bot_client = net.client_with("echo-bot", |b| b.auto_read(true)).await;
    bot::start(&bot_client, "echo-bot", "bot password")
        .await
        .unwrap();
    let handler = bot_client.clone();
    let task = bot_client.on_message(move |m| {
        let bot = handler.clone();
        async move { bot::handle(&bot, &m).await.unwrap() }
    });

    let mut alice = Party::register(&net, "alice").await;
    let bot_id = alice.client.user_by_name("echo-bot").await.unwrap().id;
    let to_bot = Conversation::Direct(bot_id.clone());

    let asked = alice
        .client
        .send_text(&to_bot, "/echo hello there  ")
        .await
        .unwrap();
    let m = alice.next_message().await;
    assert_eq!(body(&m), "Echo: hello there");
    assert_eq!(m.sender, bot_id);
    // In thread: a reply quoting the command.
    assert_eq!(m.kind, chat_client::PayloadKind::Reply);
    assert_eq!(m.reference.as_deref(), Some(asked.as_str()));
    let q = m.quote.clone().unwrap();
    assert_eq!(
        (q.sender.as_str(), q.excerpt.as_str()),
        (alice.id.as_str(), "/echo hello there  ")
    );
    // auto_read: the bot read Alice's command.
    crate::support::eventually("the command marked read", || {
        let c = alice.client.clone();
        let id = asked.clone();
        async move { c.message(&id).await.unwrap().unwrap().status == chat_client::Status::Read }
    })
    .await;

    alice.client.send_text(&to_bot, "/info").await.unwrap();
    let m = alice.next_message().await;
    let mine = alice.client.fingerprint().await.unwrap();
    assert_eq!(
        body(&m),
        format!("Your fingerprint: {mine}\nVerified: false")
    );

    let sn = bot_client.safety_number(&alice.id).await.unwrap();
    bot_client.verify(&alice.id, &sn).await.unwrap();
    alice.client.send_text(&to_bot, "/info").await.unwrap();
    assert!(body(&alice.next_message().await).ends_with("Verified: true"));

    // Not a command (nor "/echoes"): no answer.
    alice.client.send_text(&to_bot, "hello bot").await.unwrap();
    alice.client.send_text(&to_bot, "/echoes").await.unwrap();
    alice.no_message_for(700).await;

    // In a group, it answers in the group.
    let g = alice
        .client
        .create_group("bots", std::slice::from_ref(&bot_id))
        .await
        .unwrap();
    let group = Conversation::Group(g.id.clone());
    alice
        .client
        .send_text(&group, "/echo to all")
        .await
        .unwrap();
    let m = alice.next_message().await;
    assert_eq!(m.conversation, group);
    assert_eq!(body(&m), "Echo: to all");

    // A restart logs in with the saved store (no second registration).
    task.abort();
    bot_client.close().await;
    drop(bot_client);
    let again = net.client_with("echo-bot", |b| b.auto_read(true)).await;
    bot::start(&again, "echo-bot", "bot password")
        .await
        .unwrap();
    assert_eq!(again.account().unwrap().user_id, bot_id);
    let handler = again.clone();
    let _task = again.on_message(move |m| {
        let bot = handler.clone();
        async move { bot::handle(&bot, &m).await.unwrap() }
    });
    alice
        .client
        .send_text(&to_bot, "/echo still here")
        .await
        .unwrap();
    assert_eq!(body(&alice.next_message().await), "Echo: still here");
}
