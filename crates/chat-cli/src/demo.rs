//! `chat demo`: a relay server on a free loopback port and three people (four stores)
//! in one process, showing every part of the system step by step, then
//! checking that the server never held a byte of plaintext. Everything
//! lives in a temporary folder removed at the end.

use std::path::Path;
use std::time::Duration;

use chat_client::{Attachment, Client, Conversation, Event, Status};
use futures_util::{Stream, StreamExt};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tokio::time::{Instant, timeout_at};

use crate::error::{CliError, Result};

/// How long any one expected thing may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long Carol is watched for a message she must not get (Bob, online
/// on the same server, gets his within milliseconds).
const QUIET_CHECK: Duration = Duration::from_secs(1);

type Events = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

struct Person {
    name: &'static str,
    id: String,
    client: Client,
    events: Events,
}

impl Person {
    /// Waits for an event `f` accepts; fails the demo if it does not come.
    async fn expect<T>(&mut self, what: &str, f: impl FnMut(&Event) -> Option<T>) -> Result<T> {
        self.expect_within(STEP_TIMEOUT, what, f).await
    }

    /// [`Person::expect`] with its own time limit.
    async fn expect_within<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + limit;
        loop {
            match timeout_at(deadline, self.events.next()).await {
                Ok(Some(e)) => {
                    if let Some(t) = f(&e) {
                        return Ok(t);
                    }
                }
                _ => {
                    return Err(CliError::Timeout(format!(
                        "demo: {} did not see {what} within {:.1} s",
                        self.name,
                        limit.as_secs_f64()
                    )));
                }
            }
        }
    }

    /// Waits for one of our messages to reach `status`.
    async fn expect_status(&mut self, id: &str, status: Status) -> Result<()> {
        let id = id.to_owned();
        self.expect(&format!("its message reach {status:?}"), |e| match e {
            Event::Status {
                message_id,
                status: s,
            } if *message_id == id && *s >= status => Some(()),
            _ => None,
        })
        .await
    }

    /// Waits for a message and returns it.
    async fn expect_message(&mut self, what: &str) -> Result<chat_client::Message> {
        self.expect(what, |e| match e {
            Event::Message(m) => Some((**m).clone()),
            _ => None,
        })
        .await
    }

    /// Waits for a message and checks its text is `text`.
    async fn expect_text(&mut self, what: &str, text: &str) -> Result<()> {
        let m = self.expect_message(what).await?;
        check(
            m.body.as_deref() == Some(text),
            &format!("{} got a different text for {what}", self.name),
        )
    }
}

/// A client on `name`'s store in the demo folder.
async fn open(url: &str, dir: &Path, name: &str) -> Result<Client> {
    Ok(Client::builder()
        .server(url)
        .store_path(dir.join(format!("{name}.db")))
        .passphrase(format!("{name}'s local store passphrase"))
        .build()
        .await?)
}

/// Registers `name` (keys made and uploaded) and waits for the connection.
async fn register(url: &str, dir: &Path, name: &'static str) -> Result<Person> {
    let client = open(url, dir, name).await?;
    let events: Events = Box::pin(client.events());
    let account = client.register(name, &format!("{name}-password-1")).await?;
    client.wait_connected().await?;
    let fp = client.fingerprint().await?;
    say(format!(
        "{name:<5} registered; identity fingerprint {}…",
        &fp[..19.min(fp.len())]
    ));
    Ok(Person {
        name,
        id: account.user_id,
        client,
        events,
    })
}

/// What the server holds for `to`'s first device from `from`, undelivered, as
/// `(id, content)`.
async fn queued(
    server: &chat_server::RunningServer,
    to: &str,
    from: &str,
) -> Result<Vec<(String, String)>> {
    let held = server
        .state()
        .store
        .pending_from(to, 1, from)
        .await
        .map_err(|e| CliError::Server(e.to_string()))?;
    Ok(held.into_iter().map(|m| (m.id, m.content)).collect())
}

fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

fn say(line: impl AsRef<str>) {
    println!("   {}", line.as_ref());
}

fn check(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(CliError::Mismatch(format!("demo: {what}")))
    }
}

/// Runs the demo.
pub async fn run() -> Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| CliError::io(std::env::temp_dir(), e))?;
    let r = demo(dir.path(), started).await;
    // The folder goes whether the demo passed or not.
    drop(dir);
    r
}

async fn demo(dir: &Path, started: Instant) -> Result<()> {
    println!("e2ee-chat demo: a relay server and three people (four stores) in this process.");
    println!("Everything runs on 127.0.0.1 in a temporary folder deleted at the end.");

    step(1, "Starting the relay server");
    let config = chat_server::Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: dir.join("server"),
        ..Default::default()
    };
    let server = chat_server::start(config)
        .await
        .map_err(|e| CliError::Server(e.to_string()))?;
    let url = format!("http://{}", server.addr());
    say(format!(
        "listening on {url} (SQLite and media files in its data folder)"
    ));

    step(
        2,
        "Registration: each client makes its keys and uploads the public half",
    );
    let mut alice = register(&url, dir, "alice").await?;
    let mut bob = register(&url, dir, "bob").await?;
    let mut carol = register(&url, dir, "carol").await?;
    say("each uploaded an identity key, a signed prekey and 100 one-time prekeys;");
    say("the private keys never leave the client's encrypted store");

    step(
        3,
        "Safety numbers: Alice and Bob compare, as they would in person",
    );
    let sn_a = alice.client.safety_number(&bob.id).await?;
    let sn_b = bob.client.safety_number(&alice.id).await?;
    say("Alice sees:");
    for l in sn_a.display().lines() {
        say(format!("    {l}"));
    }
    say("Bob sees:");
    for l in sn_b.display().lines() {
        say(format!("    {l}"));
    }
    check(
        sn_a.digits() == sn_b.digits(),
        "the two safety numbers differ",
    )?;
    alice.client.verify(&bob.id, &sn_a).await?;
    bob.client.verify(&alice.id, &sn_b).await?;
    say("identical (60 digits): both mark each other verified");

    step(
        4,
        "An encrypted conversation with typing, delivered and read receipts",
    );
    let to_bob = Conversation::Direct(bob.id.clone());
    let to_alice = Conversation::Direct(alice.id.clone());
    alice.client.typing(&to_bob, true).await?;
    let alice_id = alice.id.clone();
    bob.expect("Alice typing", |e| match e {
        Event::Typing { from, typing, .. } if *from == alice_id && *typing => Some(()),
        _ => None,
    })
    .await?;
    say("Bob sees: alice is typing…");
    let text = "Hi Bob! Nobody but you can read this.";
    let id = alice.client.send_text(&to_bob, text).await?;
    alice.expect_status(&id, Status::Sent).await?;
    say(format!("Alice sends {text:?}  ✓ (the server stored it)"));
    bob.expect_text("Alice's message", text).await?;
    say(format!("Bob decrypts: {text:?}"));
    let pq_a = alice.client.session_is_post_quantum(&bob.id).await?;
    let pq_b = bob.client.session_is_post_quantum(&alice.id).await?;
    check(
        pq_a == Some(true) && pq_b == Some(true),
        "the session was not set up with PQXDH",
    )?;
    say("The session was set up with PQXDH: X25519 and ML-KEM-1024 (post-quantum), on both sides");
    alice.expect_status(&id, Status::Delivered).await?;
    say("Alice sees  ✓✓ delivered (Bob's client stored it, then acknowledged)");
    bob.client.mark_read(&to_alice).await?;
    alice.expect_status(&id, Status::Read).await?;
    say("Bob opens the chat; Alice sees  ✓✓ read");
    let reply = "Hi Alice, verified and encrypted. 👍";
    bob.client.send_text(&to_alice, reply).await?;
    alice.expect_text("Bob's reply", reply).await?;
    say(format!("Bob replies; Alice decrypts: {reply:?}"));

    step(5, "A group: Alice, Bob and Carol; then Carol is removed");
    let group = alice
        .client
        .create_group("demo team", &[bob.id.clone(), carol.id.clone()])
        .await?;
    let in_group = Conversation::Group(group.id.clone());
    let hello = "Hello team! (sender keys: encrypted once for everyone)";
    let gid = alice.client.send_text(&in_group, hello).await?;
    bob.expect_text("the group message", hello).await?;
    carol.expect_text("the group message", hello).await?;
    alice.expect_status(&gid, Status::Delivered).await?;
    say(format!("Alice in #demo team: {hello:?}"));
    say("Bob and Carol both decrypt it; Alice sees ✓✓ once every member has it");
    alice.client.remove_member(&group.id, &carol.id).await?;
    say("Alice removes Carol: the group's sender keys are replaced");
    let secret = "Carol has left; only Bob and I can read this.";
    alice.client.send_text(&in_group, secret).await?;
    bob.expect_text("the message after Carol left", secret)
        .await?;
    say(format!("Bob decrypts {secret:?}"));
    let carol_got = carol
        .expect_within(QUIET_CHECK, "anything more", |e| match e {
            Event::Message(m) if m.body.as_deref() == Some(secret) => Some(()),
            _ => None,
        })
        .await;
    check(
        carol_got.is_err(),
        "Carol read a message sent after she was removed",
    )?;
    say(format!(
        "Carol got nothing in {} s: she is no longer a member",
        QUIET_CHECK.as_secs()
    ));
    let verified = bob.client.verify_group(&group.id).await?;
    check(
        verified.signed && verified.changes.len() == 2 && verified.unconfirmed.is_empty(),
        "Bob could not verify the group's signed changes",
    )?;
    say("Every change is signed by the admin who made it; Bob's client verified:");
    for c in &verified.changes {
        let what = match &c.action {
            chat_client::MembershipAction::Created { members, .. } => {
                format!("created the group with {} others", members.len())
            }
            chat_client::MembershipAction::Removed { user_id } if *user_id == carol.id => {
                "removed Carol".to_owned()
            }
            other => format!("{other:?}"),
        };
        let by = if c.by == alice.id { "Alice" } else { &c.by };
        say(format!("  change {}: {by} {what}", c.epoch));
    }
    say("so the server cannot slip a reader into the group: nobody sends it a key");

    step(
        6,
        "A file, encrypted with its own key and checked on arrival",
    );
    let mut data = vec![0u8; 256 * 1024];
    OsRng.fill_bytes(&mut data);
    let digest = hex::encode(Sha256::digest(&data));
    alice
        .client
        .send_attachment(
            &to_bob,
            Attachment {
                data: data.clone(),
                mime_type: "application/octet-stream".into(),
                file_name: "holiday-plans.bin".into(),
                caption: Some("the plans".into()),
            },
        )
        .await?;
    say(format!(
        "Alice sends holiday-plans.bin (256 KiB, SHA-256 {}…)",
        &digest[..16]
    ));
    let m = bob.expect_message("the file").await?;
    let pointer = m
        .attachment
        .ok_or_else(|| CliError::Mismatch("demo: the file arrived without its pointer".into()))?;
    let got = bob.client.download(&pointer).await?;
    let got_digest = hex::encode(Sha256::digest(&got));
    check(got_digest == digest, "the downloaded file differs")?;
    say(format!(
        "Bob downloads, checks and decrypts it: SHA-256 {}…  identical",
        &got_digest[..16]
    ));

    step(7, "What the server stored");
    bob.client.close().await;
    let offline = "Bob is offline: the server keeps only this ciphertext for him.";
    let oid = alice.client.send_text(&to_bob, offline).await?;
    alice.expect_status(&oid, Status::Sent).await?;
    let held = queued(&server, &bob.id, &alice.id).await?;
    let (_, content) = held
        .iter()
        .find(|(id, _)| *id == oid)
        .ok_or_else(|| CliError::Mismatch("demo: the server did not queue the message".into()))?;
    say(format!(
        "Alice writes to Bob while he is offline: {offline:?}"
    ));
    say("the server's queue holds, for Bob:");
    say(format!(
        "    {}… ({} characters)",
        &content[..content.len().min(72)],
        content.len()
    ));
    let texts = [
        text,
        reply,
        hello,
        secret,
        offline,
        "the plans",
        "holiday-plans.bin",
    ];
    let (files, bytes, found) = scan(&dir.join("server"), &texts, &data[..64])?;
    say(format!(
        "searched all {files} server files ({bytes} bytes, database and media) for the {} texts \
         and the file's contents: {found} found",
        texts.len()
    ));
    check(found == 0, "plaintext found in the server's files")?;

    bob.client = open(&url, dir, "bob").await?;
    bob.events = Box::pin(bob.client.events());
    bob.client.connect().await?;
    bob.expect_text("the queued message", offline).await?;
    alice.expect_status(&oid, Status::Delivered).await?;
    let left = queued(&server, &bob.id, &alice.id).await?;
    check(left.is_empty(), "the server kept a delivered message")?;
    say("Bob comes back: the message is delivered, and the server deletes its copy");

    step(8, "A second device: Alice links her laptop");
    let laptop = open(&url, dir, "alice-laptop").await?;
    let pending = laptop.start_link("Alice's laptop").await?;
    let code = pending.code();
    say(format!(
        "the laptop shows a code (a QR code in `chat link`): {}…",
        &code[..code.len().min(40)]
    ));
    let (approved, linked) = tokio::join!(alice.client.approve_link(&code), pending.finish());
    approved?;
    let linked = linked?;
    let same = laptop.fingerprint().await? == alice.client.fingerprint().await?;
    check(same, "the laptop did not get Alice's identity")?;
    let devices = alice.client.devices().await?;
    check(
        devices.devices.len() == 2,
        "Alice's account does not list two devices",
    )?;
    say(format!(
        "Alice's phone approves it: the identity travels sealed to the laptop's key, the \
         server only forwards it; the laptop is device {} with the same fingerprint and \
         its own prekeys ({} ms)",
        linked.device_id, linked.took_ms
    ));
    laptop.connect().await?;
    laptop.wait_connected().await?;
    let sent = Instant::now();
    let text = "Hi Bob, this one is from my laptop";
    laptop
        .send_text(&Conversation::Direct(bob.id.clone()), text)
        .await?;
    bob.expect_text("the laptop's message", text).await?;
    let took = sent.elapsed();
    let copy = alice.expect_message("the laptop's sent copy").await?;
    check(
        copy.outgoing && copy.conversation == Conversation::Direct(bob.id.clone()),
        "Alice's phone did not file the laptop's message as her own, to Bob",
    )?;
    say(format!(
        "the laptop writes to Bob: one copy per device (Bob's, and Alice's phone); Bob \
         reads it {:.0} ms later, and Alice's phone files its sent copy in her chat with Bob",
        took.as_secs_f64() * 1000.0
    ));
    features(&mut alice, &mut bob, &laptop, &copy.id).await?;
    laptop.close().await;

    for p in [&alice.client, &bob.client, &carol.client] {
        p.close().await;
    }
    server.shutdown().await;
    println!(
        "\nDone in {:.1} s. The temporary folder (server data and the four stores) is removed.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Step 9: a reply, a reaction, an edit, a delete and a disappearing
/// message, each reaching every device.
async fn features(
    alice: &mut Person,
    bob: &mut Person,
    laptop: &Client,
    laptops: &str,
) -> Result<()> {
    step(
        9,
        "Replies, reactions, edits, deletes and disappearing messages",
    );
    let to_alice = Conversation::Direct(alice.id.clone());
    let to_bob = Conversation::Direct(bob.id.clone());
    let reply = bob
        .client
        .reply(&to_alice, laptops, "Got it. Lunch on Friday?")
        .await?;
    let m = alice.expect_message("Bob's reply").await?;
    let quoted = m
        .quote
        .as_ref()
        .map(|q| q.excerpt.clone())
        .unwrap_or_default();
    check(
        m.id == reply && !quoted.is_empty(),
        "the reply did not quote",
    )?;
    say(format!(
        "Bob replies in thread, quoting the laptop's message: ↪ \"{}\" │ {}",
        quoted,
        m.body.as_deref().unwrap_or("")
    ));
    alice.client.react(&reply, "👍").await?;
    let emoji = bob
        .expect("Alice's reaction", |e| match e {
            Event::Reaction {
                message_id, emoji, ..
            } if *message_id == reply => emoji.clone(),
            _ => None,
        })
        .await?;
    say(format!(
        "Alice reacts {emoji}; Bob sees it with his message"
    ));
    bob.client
        .edit(&reply, "Got it. Lunch on Saturday?")
        .await?;
    let edited = alice
        .expect("Bob's edit", |e| match e {
            Event::Edited(m) if m.id == reply => m.body.clone(),
            _ => None,
        })
        .await?;
    let hits = alice.client.search("Friday", None, 10).await?;
    check(hits.is_empty(), "the old text is still in Alice's index")?;
    say(format!(
        "Bob edits it: Alice shows \"{edited}\" (edited); \"Friday\" is gone from her search index"
    ));
    alice.client.delete(laptops).await?;
    bob.expect("the delete", |e| match e {
        Event::Deleted { message_id, .. } if message_id == laptops => Some(()),
        _ => None,
    })
    .await?;
    let gone = bob
        .client
        .message(laptops)
        .await?
        .is_some_and(|m| m.deleted && m.body.is_none());
    check(gone, "Bob still has the deleted message's text")?;
    let on_laptop = async {
        for _ in 0..100 {
            if laptop.message(laptops).await?.is_some_and(|m| m.deleted) {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, CliError>(false)
    };
    check(
        on_laptop.await?,
        "the laptop still shows the deleted message",
    )?;
    say(
        "Alice's phone deletes the laptop's message for everyone: Bob and the laptop now show \"this message was deleted\"",
    );
    alice
        .client
        .set_disappearing(&to_bob, Some(Duration::from_secs(2)))
        .await?;
    bob.expect("the timer", |e| {
        matches!(e, Event::DisappearingChanged { .. }).then_some(())
    })
    .await?;
    let secret = "This message self-destructs";
    let id = alice.client.send_text(&to_bob, secret).await?;
    bob.expect_text("the disappearing message", secret).await?;
    bob.client.mark_read(&to_alice).await?;
    bob.expect_within(
        Duration::from_secs(10),
        "the message disappear",
        |e| match e {
            Event::Expired { message_ids } if message_ids.contains(&id) => Some(()),
            _ => None,
        },
    )
    .await?;
    let left = bob.client.message(&id).await?.is_none()
        && bob
            .client
            .search("self-destructs", None, 10)
            .await?
            .is_empty();
    check(left, "the disappearing message is still in Bob's store")?;
    say(
        "Alice turns on disappearing messages (2 s): Bob reads hers, and 2 s later it disappeared from his store and search index (and from Alice's devices, counted from sending)",
    );
    Ok(())
}

/// Every file under `dir`: (files, bytes, how many of the needles occur).
fn scan(dir: &Path, texts: &[&str], blob: &[u8]) -> Result<(usize, u64, usize)> {
    let mut stack = vec![dir.to_owned()];
    let (mut files, mut bytes, mut found) = (0, 0u64, 0);
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| CliError::io(&d, e))? {
            let path = entry.map_err(|e| CliError::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let content = std::fs::read(&path).map_err(|e| CliError::io(&path, e))?;
            files += 1;
            bytes += content.len() as u64;
            let needles = texts.iter().map(|t| t.as_bytes()).chain([blob]);
            found += needles
                .filter(|n| content.windows(n.len()).any(|w| w == *n))
                .count();
        }
    }
    Ok((files, bytes, found))
}
