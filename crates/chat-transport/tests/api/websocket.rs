//! The extended WebSocket protocol: acks, idempotent resends, resume,
//! presence, several connections per user, bad input and slow consumers.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::helpers::{TestApp, Tweaks};

crate::backend_tests!(
    the_ack_carries_the_stored_id_and_seq_and_the_echo_matches,
    a_resent_client_id_gets_the_same_ack_and_stores_nothing,
    resume_replays_exactly_the_missed_messages_then_continues_live,
    resume_while_messages_keep_arriving_has_no_gap_and_no_duplicate,
    a_connect_with_last_seq_replays_general_then_continues_live,
    a_connect_with_last_seq_during_a_burst_misses_nothing,
    a_connect_with_a_bad_last_seq_is_refused_with_400,
    every_connection_of_a_user_gets_every_message,
    presence_counts_a_user_once_across_connections,
    typing_notices_reach_others_but_not_the_typist,
    bad_frames_get_error_frames_and_the_connection_stays_open,
    seed_clients_never_see_frames_of_the_extended_protocol,
    messages_to_many_rooms_are_numbered_in_the_order_sent_in_each,
);

/// Rooms are shared out among several writers (on PostgreSQL; SQLite has
/// one); whichever writes a room, its messages are numbered in the order
/// they were sent, each once.
async fn messages_to_many_rooms_are_numbered_in_the_order_sent_in_each(
    app: &TestApp,
) -> Result<()> {
    const ROOMS: usize = 6;
    const EACH: usize = 30;
    let token = app.user("alice").await?;
    let mut client = app.connect(&token).await?;
    for room in 0..ROOMS {
        let name = format!("lane{room}");
        let created = app
            .post_authed("/api/rooms", &token, &json!({"name": name}))
            .await?;
        assert!(created.status().is_success(), "{}", created.status());
        client.send(json!({"type": "join", "room": name})).await?;
        client.recv_type("joined").await?;
    }
    // Sent without waiting for acks, the rooms taking turns.
    for i in 0..EACH {
        for room in 0..ROOMS {
            client
                .send(json!({
                    "type": "message",
                    "room": format!("lane{room}"),
                    "content": format!("{room}/{i}"),
                    "client_id": format!("{room}-{i}"),
                }))
                .await?;
        }
    }
    let mut seqs = vec![Vec::new(); ROOMS];
    for _ in 0..ROOMS * EACH {
        let ack = client.recv_type("ack").await?;
        let client_id = ack["client_id"].as_str().unwrap_or_default().to_owned();
        let (room, i) = client_id
            .split_once('-')
            .ok_or_else(|| anyhow::anyhow!("unexpected ack {ack}"))?;
        assert_eq!(ack["room"], format!("lane{room}"), "{ack}");
        assert_eq!(ack["duplicate"], false, "{ack}");
        seqs[room.parse::<usize>()?].push((i.parse::<i64>()?, ack["seq"].as_i64()));
    }
    for room in seqs {
        let expected: Vec<_> = (0..EACH as i64).map(|i| (i, Some(i + 1))).collect();
        assert_eq!(room, expected);
    }
    Ok(())
}

async fn the_ack_carries_the_stored_id_and_seq_and_the_echo_matches(app: &TestApp) -> Result<()> {
    let token = app.user("alice").await?;
    let mut client = app.connect(&token).await?;
    let ack = client.send_acked("general", "first", "c-1").await?;
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["duplicate"], false);
    let echo = client.recv_type("message").await?;
    assert_eq!(echo["id"], ack["id"]);
    assert_eq!(echo["seq"], 1);
    assert_eq!(echo["room"], "general");
    assert_eq!(echo["client_id"], "c-1");
    let second = client.send_acked("general", "second", "c-2").await?;
    assert_eq!(second["seq"], 2);
    Ok(())
}

async fn a_resent_client_id_gets_the_same_ack_and_stores_nothing(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sender = app.connect(&alice).await?;
    let mut watcher = app.connect(&bob).await?;
    let first = sender
        .send_acked("general", "only once", "retry-me")
        .await?;
    let again = sender
        .send_acked("general", "only once", "retry-me")
        .await?;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["duplicate"], true);
    // A new connection (a reconnect) resending it gets the same answer.
    sender.close().await?;
    let mut reconnected = app.connect(&alice).await?;
    let third = reconnected
        .send_acked("general", "only once", "retry-me")
        .await?;
    assert_eq!(third["id"], first["id"]);
    // The watcher saw the message exactly once.
    assert_eq!(watcher.recv_type("message").await?["content"], "only once");
    watcher.expect_no("message").await?;
    let items: Vec<Value> = app
        .get_authed("/api/chat/messages", &alice)
        .await?
        .json()
        .await?;
    assert_eq!(items.len(), 1);
    Ok(())
}

async fn resume_replays_exactly_the_missed_messages_then_continues_live(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sender = app.connect(&alice).await?;
    sender.send_acked_series(1..=5).await?;
    let mut reader = app.connect(&bob).await?;
    reader
        .send(json!({"type": "resume", "room": "general", "last_seq": 2}))
        .await?;
    for expected in 3..=5 {
        let frame = reader.recv_type("message").await?;
        assert_eq!(frame["seq"], expected);
        assert_eq!(frame["content"], format!("m{expected}"));
    }
    let joined = reader.recv_type("joined").await?;
    assert_eq!(joined["room"], "general");
    assert_eq!(joined["last_seq"], 5);
    sender.send_acked("general", "m6", "a6").await?;
    let live = reader.recv_type("message").await?;
    assert_eq!(live["seq"], 6);
    Ok(())
}

async fn resume_while_messages_keep_arriving_has_no_gap_and_no_duplicate(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sender = app.connect(&alice).await?;
    // The reader is in `general` from its connect on, before the first
    // message: had it connected in the middle of the burst, a live message
    // could reach it before its resume, and a connection never goes back
    // before what it has sent, so the messages older than its connect
    // would rightly never come.
    let mut reader = app.connect(&bob).await?;
    sender.send_burst(1..=300).await?;
    // Resume from 0 while the burst is still being written.
    reader
        .send(json!({"type": "resume", "room": "general", "last_seq": 0}))
        .await?;
    sender.send_burst(301..=400).await?;
    let mut seen = Vec::new();
    while seen.len() < 400 {
        let frame = reader.recv().await?;
        if frame["type"] == "message" {
            seen.push(frame["seq"].as_i64().unwrap_or(-1));
        }
    }
    let expected: Vec<i64> = (1..=400).collect();
    assert_eq!(seen, expected);
    reader.expect_no("message").await?;
    Ok(())
}

async fn a_connect_with_last_seq_replays_general_then_continues_live(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sender = app.connect(&alice).await?;
    sender.send_acked_series(1..=5).await?;
    // The greeting comes first, then the replay, then `joined`.
    let mut reader = app.connect_with_query(&bob, "&last_seq=2").await?;
    for expected in 3..=5 {
        let frame = reader.recv().await?;
        assert_eq!(frame["type"], "message", "{frame}");
        assert_eq!(frame["seq"], expected);
        assert_eq!(frame["content"], format!("m{expected}"));
    }
    let joined = reader.recv().await?;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "general", "kind": "public", "last_seq": 5, "encrypted": false})
    );
    sender.send_acked("general", "m6", "a6").await?;
    assert_eq!(reader.recv_type("message").await?["seq"], 6);
    // It is an extended connection: it hears presence.
    let carol = app.user("carol").await?;
    let _carol = app.connect(&carol).await?;
    let presence = reader.recv_type("presence").await?;
    assert_eq!(presence["username"], "carol");
    // A last_seq past the newest message is taken as the newest.
    let mut ahead = app.connect_with_query(&bob, "&last_seq=99").await?;
    let joined = ahead.recv_type("joined").await?;
    assert_eq!(joined["last_seq"], 6);
    sender.send_acked("general", "m7", "a7").await?;
    assert_eq!(ahead.recv_type("message").await?["seq"], 7);
    Ok(())
}

/// The reconnect that a `resume` frame cannot make safe: live messages of
/// `general` flow from the connect on, so the resume position has to come
/// with the connect.
async fn a_connect_with_last_seq_during_a_burst_misses_nothing(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sender = app.connect(&alice).await?;
    sender.send_burst(1..=300).await?;
    // Wait until some of the burst is stored, so the reader starts behind.
    sender.recv_type("ack").await?;
    let mut reader = app.connect_with_query(&bob, "&last_seq=0").await?;
    sender.send_burst(301..=400).await?;
    let mut seen = Vec::new();
    let mut joined_at = None;
    // When the replay reaches the end of the second burst, `joined` follows
    // the 400th message, so the loop waits for it too.
    while seen.len() < 400 || joined_at.is_none() {
        let frame = reader.recv().await?;
        match frame["type"].as_str() {
            Some("message") => seen.push(frame["seq"].as_i64().unwrap_or(-1)),
            Some("joined") => joined_at = Some((seen.len(), frame["last_seq"].clone())),
            _ => {}
        }
    }
    let expected: Vec<i64> = (1..=400).collect();
    assert_eq!(seen, expected);
    // `joined` came right after the last replayed message.
    let (position, last_seq) = joined_at.context("no joined frame")?;
    assert_eq!(last_seq, json!(position));
    reader.expect_no("message").await?;
    Ok(())
}

async fn a_connect_with_a_bad_last_seq_is_refused_with_400(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    for bad in ["-1", "abc", "1.5", ""] {
        let response = app
            .get_authed(&format!("/ws/chat?last_seq={bad}"), &alice)
            .await?;
        assert_eq!(response.status(), 400, "last_seq={bad}");
        let body: Value = response.json().await?;
        assert_eq!(
            body,
            json!({"detail": "last_seq must be a whole number of 0 or more"}),
            "last_seq={bad}"
        );
    }
    Ok(())
}

async fn every_connection_of_a_user_gets_every_message(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut laptop = app.connect(&alice).await?;
    let mut phone = app.connect(&alice).await?;
    let mut sender = app.connect(&bob).await?;
    sender.send_acked("general", "to both", "b1").await?;
    for device in [&mut laptop, &mut phone] {
        assert_eq!(device.recv_type("message").await?["content"], "to both");
    }
    // One device sending reaches the other.
    laptop
        .send_acked("general", "from the laptop", "l1")
        .await?;
    assert_eq!(
        phone.recv_type("message").await?["content"],
        "from the laptop"
    );
    Ok(())
}

async fn presence_counts_a_user_once_across_connections(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut observer = app.connect(&bob).await?;
    observer.send(json!({"type": "who"})).await?;
    assert_eq!(observer.recv_type("who").await?["online"], json!(["bob"]));

    let first = app.connect(&alice).await?;
    let presence = observer.recv_type("presence").await?;
    assert_eq!(
        presence,
        json!({"type": "presence", "room": "general", "username": "alice", "online": true})
    );
    let second = app.connect(&alice).await?;
    observer.expect_no("presence").await?;
    observer
        .send(json!({"type": "who", "room": "general"}))
        .await?;
    assert_eq!(
        observer.recv_type("who").await?["online"],
        json!(["alice", "bob"])
    );

    first.close().await?;
    observer.expect_no("presence").await?;
    second.close().await?;
    let gone = observer.recv_type("presence").await?;
    assert_eq!(gone["online"], false);
    assert_eq!(gone["username"], "alice");
    Ok(())
}

async fn typing_notices_reach_others_but_not_the_typist(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut typist = app.connect(&alice).await?;
    let mut other = app.connect(&bob).await?;
    other.send(json!({"type": "ping"})).await?;
    other.recv_type("pong").await?;
    typist
        .send(json!({"type": "typing", "room": "general"}))
        .await?;
    let notice = other.recv_type("typing").await?;
    assert_eq!(
        notice,
        json!({"type": "typing", "room": "general", "username": "alice"})
    );
    typist.expect_no("typing").await?;
    Ok(())
}

async fn bad_frames_get_error_frames_and_the_connection_stays_open(app: &TestApp) -> Result<()> {
    let token = app.user("alice").await?;
    let mut client = app.connect(&token).await?;
    let cases = [
        ("this is not json".to_owned(), "invalid_json"),
        (
            json!({"type": "shout", "content": "hi"}).to_string(),
            "unknown_type",
        ),
        (json!({"type": "message"}).to_string(), "invalid_frame"),
        (
            json!({"type": "message", "content": "   "}).to_string(),
            "blank_message",
        ),
        (
            json!({"type": "message", "content": "x".repeat(4001)}).to_string(),
            "message_too_long",
        ),
        (
            json!({"type": "message", "content": "hi", "room": "no such room"}).to_string(),
            "invalid_room",
        ),
        (
            json!({"type": "message", "content": "hi", "room": "nowhere"}).to_string(),
            "room_not_found",
        ),
        (
            json!({"type": "message", "content": "hi", "client_id": "has space"}).to_string(),
            "invalid_client_id",
        ),
    ];
    for (text, code) in cases {
        client.send_text(text.clone()).await?;
        let error = client.recv_type("error").await?;
        assert_eq!(error["code"], code, "{text}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still open and working.
    let ack = client.send_acked("general", "still here", "ok-1").await?;
    assert_eq!(ack["seq"], 1);
    Ok(())
}

async fn seed_clients_never_see_frames_of_the_extended_protocol(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut seed = app.connect(&alice).await?;
    let mut modern = app.connect(&bob).await?;
    modern.send(json!({"type": "typing"})).await?;
    modern.send_acked("general", "hello", "m1").await?;
    // The seed client gets the join notice and the message, nothing else.
    let mut kinds = Vec::new();
    loop {
        let frame = seed.recv().await?;
        kinds.push(frame["type"].as_str().unwrap_or_default().to_owned());
        if frame["type"] == "message" {
            break;
        }
    }
    for kind in &kinds {
        if kind != "system" && kind != "message" {
            bail!("a seed client received a {kind} frame");
        }
    }
    seed.expect_no("presence").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_while_others_keep_receiving() -> Result<()> {
    let app = TestApp::spawn_sqlite(Tweaks {
        outbound_queue: Some(64),
        ..Tweaks::default()
    })
    .await?;
    let result = async {
        let slow_token = app.user("slow").await?;
        let fast_token = app.user("fast").await?;
        let sender_token = app.user("sender").await?;
        let mut slow = app.connect_with_small_buffer(&slow_token).await?;
        let mut fast = app.connect(&fast_token).await?;
        let mut sender = app.connect(&sender_token).await?;
        let total = 2_000;
        let fast_reader = tokio::spawn(async move {
            let mut received = 0;
            while received < total {
                if fast.recv().await?["type"] == "message" {
                    received += 1;
                }
            }
            anyhow::Ok(received)
        });
        // The slow client reads nothing while a burst of large messages goes
        // out, so its socket buffers and then its queue fill up. The sender
        // reads its acks as it goes, like a well-behaved client.
        let body = "x".repeat(3_900);
        for round in 0..total / 10 {
            for i in 0..10 {
                let id = format!("s{round}-{i}");
                sender
                    .send(json!({"type": "message", "content": body, "client_id": id}))
                    .await?;
            }
            let mut acks = 0;
            while acks < 10 {
                if sender.recv().await?["type"] == "ack" {
                    acks += 1;
                }
            }
        }
        assert_eq!(fast_reader.await??, total);
        let (messages, close) = slow.drain_until_closed().await?;
        assert!(
            messages < total,
            "the slow client got all {messages} messages"
        );
        // The close frame itself may not get through a full buffer; the
        // connection ending early is what matters.
        if let Some(frame) = close {
            assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
        }
        drop(sender);
        Ok(())
    }
    .await;
    app.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_or_fragmented_message_closes_the_socket_with_1009() -> Result<()> {
    let app = TestApp::spawn_sqlite(Tweaks {
        max_frame_bytes: Some(1024),
        ..Tweaks::default()
    })
    .await?;
    let result = async {
        let token = app.user("alice").await?;
        let mut client = app.connect(&token).await?;
        client
            .send(json!({"type": "message", "content": "x".repeat(2048)}))
            .await?;
        let close = client.closed().await?;
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1009));
        // Each fragment is under the limit; the message they make is not.
        let mut fragmenting = app.connect(&token).await?;
        let part = "x".repeat(600);
        let text = OpCode::Data(Data::Text);
        fragmenting
            .send_frame(Frame::message(part.clone(), text, false))
            .await?;
        fragmenting
            .send_frame(Frame::message(part, OpCode::Data(Data::Continue), true))
            .await?;
        let close = fragmenting.closed().await?;
        assert_eq!(close.map(|f| u16::from(f.code)), Some(1009));
        Ok(())
    }
    .await;
    app.stop().await;
    result
}

/// A message sent in three fragments, with a ping between two of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_is_put_back_together() -> Result<()> {
    let app = TestApp::spawn_sqlite(Tweaks::default()).await?;
    let result = async {
        let token = app.user("alice").await?;
        let mut client = app.connect(&token).await?;
        let text = json!({"type": "message", "room": "general", "content": "in three parts", "client_id": "f-1"})
            .to_string();
        let (first, rest) = text.split_at(10);
        let (middle, last) = rest.split_at(20);
        client
            .send_frame(Frame::message(first.to_owned(), OpCode::Data(Data::Text), false))
            .await?;
        client.send_frame(Frame::ping(Vec::new())).await?;
        client
            .send_frame(Frame::message(middle.to_owned(), OpCode::Data(Data::Continue), false))
            .await?;
        client
            .send_frame(Frame::message(last.to_owned(), OpCode::Data(Data::Continue), true))
            .await?;
        let ack = client.recv_type("ack").await?;
        assert_eq!((ack["client_id"].as_str(), ack["seq"].as_i64()), (Some("f-1"), Some(1)));
        let echo = client.recv_type("message").await?;
        assert_eq!(echo["content"], "in three parts");
        Ok(())
    }
    .await;
    app.stop().await;
    result
}

/// Text that is not UTF-8 closes that socket with 1007; everyone else is
/// served on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_utf8_closes_the_socket_with_1007() -> Result<()> {
    let app = TestApp::spawn_sqlite(Tweaks::default()).await?;
    let result = async {
        let token = app.user("alice").await?;
        let mut broken = app.connect(&token).await?;
        let mut other = app.connect(&token).await?;
        broken
            .send_frame(Frame::message(
                vec![b'{', 0xff, 0xfe, b'}'],
                OpCode::Data(Data::Text),
                true,
            ))
            .await?;
        let close = broken.closed().await?;
        assert_eq!(
            close.map(|f| (u16::from(f.code), f.reason.to_string())),
            Some((1007, "text frames must be UTF-8".to_owned()))
        );
        let ack = other.send_acked("general", "still here", "u-1").await?;
        assert_eq!(ack["seq"], 1);
        Ok(())
    }
    .await;
    app.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_with_1001_and_keeps_acknowledged_messages() -> Result<()> {
    let mut app = TestApp::spawn_sqlite(Tweaks::default()).await?;
    let token = app.user("alice").await?;
    let mut client = app.connect(&token).await?;
    for i in 0..20 {
        client
            .send_acked("general", &format!("m{i}"), &format!("c{i}"))
            .await?;
    }
    let watcher = tokio::spawn(async move { client.closed().await });
    assert!(
        app.shutdown_server().await,
        "the server did not stop in time"
    );
    let close = watcher.await??;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    let general = app
        .store
        .room_by_name(&chat_domain::RoomName::general())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no general room"))?;
    assert_eq!(app.store.latest(general.id, 100).await?.len(), 20);
    app.stop().await;
    Ok(())
}

/// Servers that ping every half second and close a socket silent for two.
mod heartbeat {
    use std::time::Duration;

    use super::*;
    use crate::tokens::still_open;

    fn tweaks() -> Tweaks {
        Tweaks {
            heartbeat: Some((Duration::from_millis(500), Duration::from_secs(2))),
            ..Tweaks::default()
        }
    }

    crate::backend_tests!(
        tweaks = super::tweaks();
        a_socket_that_answers_pings_stays_and_a_silent_one_is_closed,
    );

    async fn a_socket_that_answers_pings_stays_and_a_silent_one_is_closed(
        app: &TestApp,
    ) -> Result<()> {
        app.register("alice").await?;
        let tokens = app.sign_in("alice").await?;
        let mut silent = app.connect(&tokens.access).await?;
        let mut listening = app.connect(&tokens.access).await?;
        // Only reading: the client library answers each ping with a pong.
        let pings = listening.listen_for(Duration::from_secs(4)).await?;
        assert!(pings >= 4, "{pings} pings in 4 s at one every 0.5 s");
        still_open(&mut listening).await?;
        // The silent one was closed meanwhile. Reading now makes the client
        // library answer the pings it missed, and writing to the closed
        // connection can fail before the close frame is read: either way
        // the server ended it, and if the frame is read, it says why.
        if let Some(frame) = silent.closed().await? {
            assert_eq!(
                (u16::from(frame.code), frame.reason.as_str()),
                (1000, "idle timeout")
            );
        }
        Ok(())
    }
}
