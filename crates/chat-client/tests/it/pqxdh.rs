//! PQXDH end to end through the real server: every new session is set up
//! with ML-KEM-1024 beside X25519, in both directions and when both sides
//! start at once; a server that hands out a PQ prekey whose signature is
//! wrong is refused before anything is sent; one-time PQ prekeys are used
//! once and deleted.

use crate::support::{Net, Party, body};

#[tokio::test]
async fn a_session_through_the_server_is_pqxdh_both_ways() {
    let net = Net::start().await;
    let mut a = Party::register(&net, "anna").await;
    let mut b = Party::register(&net, "ben").await;
    assert_eq!(a.client.session_is_post_quantum(&b.id).await.unwrap(), None);
    a.client
        .send_text(&b.dm(), "hello, post-quantum")
        .await
        .unwrap();
    assert_eq!(body(&b.next_message().await), "hello, post-quantum");
    assert_eq!(
        a.client.session_is_post_quantum(&b.id).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        b.client.session_is_post_quantum(&a.id).await.unwrap(),
        Some(true)
    );
    b.client.send_text(&a.dm(), "and back").await.unwrap();
    assert_eq!(body(&a.next_message().await), "and back");

    // Ben's one-time PQ prekey is used up on the server and in his store:
    // the server holds one fewer, his store one fewer unused.
    let db = net.db();
    let on_server: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM pq_prekeys WHERE user_id = ?1 AND last_resort = 0",
            [&b.id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(on_server, 99, "one of 100 was handed out");
    b.client.close().await;
    drop(b);
    let mut store = net.open_store("ben");
    let unused = store.read(|tx| tx.unused_pq_one_time_prekeys()).unwrap();
    assert_eq!(unused, 99, "the used one-time PQ prekey is deleted");
}

#[tokio::test]
async fn simultaneous_pqxdh_initiation_through_the_server_converges() {
    let net = Net::start().await;
    let mut a = Party::register(&net, "anna").await;
    let mut b = Party::register(&net, "ben").await;
    let (to_b, to_a) = (b.dm(), a.dm());
    let (ra, rb) = tokio::join!(
        a.client.send_text(&to_b, "from anna"),
        b.client.send_text(&to_a, "from ben"),
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(body(&b.next_message().await), "from anna");
    assert_eq!(body(&a.next_message().await), "from ben");
    for i in 0..3 {
        a.client.send_text(&b.dm(), &format!("a{i}")).await.unwrap();
        assert_eq!(body(&b.next_message().await), format!("a{i}"));
        b.client.send_text(&a.dm(), &format!("b{i}")).await.unwrap();
        assert_eq!(body(&a.next_message().await), format!("b{i}"));
    }
    assert_eq!(
        a.client.session_is_post_quantum(&b.id).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        b.client.session_is_post_quantum(&a.id).await.unwrap(),
        Some(true)
    );
}

#[tokio::test]
async fn a_pq_prekey_with_a_wrong_signature_is_refused_before_anything_is_sent() {
    let net = Net::start().await;
    let a = Party::register(&net, "anna").await;
    let mut b = Party::register(&net, "ben").await;
    // The server (or whoever controls it) swaps the signatures of Ben's
    // PQ prekeys.
    net.db()
        .execute(
            "UPDATE pq_prekeys SET signature = ?2 WHERE user_id = ?1",
            rusqlite::params![
                b.id,
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 64])
            ],
        )
        .unwrap();
    let err = a
        .client
        .send_text(&b.dm(), "must not go")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("post-quantum"), "{text}");
    assert_eq!(a.client.session_is_post_quantum(&b.id).await.unwrap(), None);
    b.no_message_for(300).await;
    let held: i64 = net
        .db()
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(held, 0, "nothing reached the server");
}
