//! Messages people change: edits, deletions and replies, through the
//! WebSocket and REST alike, each recorded in the room's sequence. Every
//! rule is checked by trying what it forbids and seeing that nothing
//! changed.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::governance::status;
use crate::helpers::{Client, TestApp};

crate::backend_tests!(
    an_edit_reaches_the_room_once_and_history_shows_the_new_text,
    only_authors_edit_and_only_they_or_moderators_delete_by_frame_and_by_route,
    a_deleted_message_leaves_a_tombstone_and_cannot_be_changed,
    resume_replays_changes_in_order_and_seed_clients_see_messages_only,
    a_reply_names_a_message_of_the_same_room,
    read_receipts_reach_the_other_members_and_the_member_list,
    concurrent_edits_from_two_sockets_end_in_one_text_everyone_agrees_on,
);

async fn concurrent_edits_from_two_sockets_end_in_one_text_everyone_agrees_on(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sockets = room_with(app, &alice, "lobby", &[&alice, &alice, &bob]).await?;
    let seq = sockets[0].send_acked("lobby", "v0", "m1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    // Both of Alice's sockets edit at once, several times each.
    for round in 0..5 {
        for (index, socket) in sockets[..2].iter_mut().enumerate() {
            socket
                .send(json!({"type": "edit", "room": "lobby", "seq": seq, "content": format!("from {index}, round {round}")}))
                .await?;
        }
    }
    // Every socket sees the ten edits in the same order; the last one
    // applied is the text every one of them ends with.
    let mut finals = Vec::new();
    for socket in &mut sockets {
        let mut edits = Vec::new();
        while edits.len() < 10 {
            let frame = socket.recv_type("edited").await?;
            edits.push((frame["seq"].as_i64(), frame["content"].clone()));
        }
        assert!(
            edits.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "{edits:?}"
        );
        finals.push(edits);
    }
    assert!(finals.windows(2).all(|pair| pair[0] == pair[1]));
    let last = finals[0].last().map(|(_, content)| content.clone());
    let items = page(app, "lobby", &bob).await?;
    assert_eq!(Some(at(&items, seq)["content"].clone()), last);
    let edits: Value = app
        .get_authed(&format!("/api/rooms/lobby/messages/{seq}/edits"), &bob)
        .await?
        .json()
        .await?;
    assert_eq!(edits["versions"].as_array().map(Vec::len), Some(10));
    Ok(())
}

/// Rooms larger than the limit send no read receipts.
#[tokio::test]
async fn a_room_over_the_receipt_limit_sends_no_read_frames() -> Result<()> {
    let app = TestApp::spawn_sqlite(crate::helpers::Tweaks {
        read_receipts_max_members: Some(1),
        ..Default::default()
    })
    .await?;
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sockets = room_with(&app, &alice, "lobby", &[&alice, &bob]).await?;
    let seq = sockets[0].send_acked("lobby", "hi", "a1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    sockets[1]
        .send(json!({"type": "read", "room": "lobby", "seq": seq}))
        .await?;
    sockets[0].expect_no("read").await?;
    // The position is kept all the same.
    let members: Vec<Value> = app
        .get_authed("/api/rooms/lobby/members", &alice)
        .await?
        .json()
        .await?;
    let bobs = members.iter().find(|m| m["username"] == "bob").cloned();
    assert_eq!(bobs.map(|m| m["last_read_seq"].clone()), Some(json!(seq)));
    app.stop().await;
    Ok(())
}

async fn read_receipts_reach_the_other_members_and_the_member_list(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let mut sockets = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    let seq = sockets[0].send_acked("lobby", "hi", "a1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    sockets[1].recv_type("message").await?;

    // By frame: Alice is told, Bob's own connection is not.
    sockets[1]
        .send(json!({"type": "read", "room": "lobby", "seq": seq}))
        .await?;
    let read = sockets[0].recv_type("read").await?;
    assert_eq!(
        read,
        json!({"type": "read", "room": "lobby", "username": "bob", "seq": seq})
    );
    sockets[1].expect_no("read").await?;
    // A position that does not move tells no one.
    sockets[1]
        .send(json!({"type": "read", "room": "lobby", "seq": seq - 1}))
        .await?;
    sockets[0].expect_no("read").await?;

    // By route.
    let marked = app
        .post_authed("/api/rooms/lobby/read", &alice, &json!({"seq": seq}))
        .await?;
    assert_eq!(marked.status(), 200);
    assert_eq!(sockets[1].recv_type("read").await?["username"], "alice");

    let members: Vec<Value> = app
        .get_authed("/api/rooms/lobby/members", &alice)
        .await?
        .json()
        .await?;
    for member in &members {
        assert_eq!(member["last_read_seq"], seq, "{member}");
    }
    // Someone outside the room marks nothing.
    let mut carol_socket = app.connect(&carol).await?;
    carol_socket
        .send(json!({"type": "read", "room": "lobby", "seq": seq}))
        .await?;
    assert_eq!(error_code(&mut carol_socket).await?, "not_a_member");
    sockets[0].expect_no("read").await?;
    Ok(())
}

/// A public room `name` created by `owner`, with a socket of each of
/// `tokens` in it (extended protocol).
pub(crate) async fn room_with(
    app: &TestApp,
    owner: &str,
    name: &str,
    tokens: &[&str],
) -> Result<Vec<Client>> {
    let created = app
        .post_authed("/api/rooms", owner, &json!({"name": name}))
        .await?;
    anyhow::ensure!(created.status() == 201, "create: {}", created.status());
    let mut sockets = Vec::new();
    for token in tokens {
        let mut socket = app.connect(token).await?;
        socket.send(json!({"type": "join", "room": name})).await?;
        socket.recv_type("joined").await?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// The room's newest page, read by `token`.
pub(crate) async fn page(app: &TestApp, room: &str, token: &str) -> Result<Vec<Value>> {
    let page: Value = app
        .get_authed(&format!("/api/rooms/{room}/messages?limit=100"), token)
        .await?
        .json()
        .await?;
    Ok(page["messages"].as_array().cloned().unwrap_or_default())
}

/// The item of a page at `seq`.
pub(crate) fn at(page: &[Value], seq: i64) -> Value {
    page.iter()
        .find(|item| item["seq"] == seq)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The status of an edit by REST of the message at `path` to `text`.
async fn edit_status(app: &TestApp, path: &str, token: &str, text: &str) -> Result<u16> {
    status(
        app,
        Method::PATCH,
        path,
        token,
        Some(json!({ "content": text })),
    )
    .await
}

/// The next `error` frame's code.
pub(crate) async fn error_code(socket: &mut Client) -> Result<String> {
    Ok(socket.recv_type("error").await?["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

async fn an_edit_reaches_the_room_once_and_history_shows_the_new_text(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sockets = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    let (alice_socket, rest) = sockets.split_at_mut(1);
    let (alice_socket, bob_socket) = (&mut alice_socket[0], &mut rest[0]);
    let sent = alice_socket.send_acked("lobby", "helo", "m1").await?;
    let seq = sent["seq"].as_i64().unwrap_or_default();
    bob_socket.recv_type("message").await?;

    let edit =
        json!({"type": "edit", "room": "lobby", "seq": seq, "content": "hello", "client_id": "e1"});
    alice_socket.send(edit.clone()).await?;
    let ack = alice_socket.recv_type("ack").await?;
    assert_eq!(
        (ack["client_id"].as_str(), ack["seq"].as_i64()),
        (Some("e1"), Some(seq + 1))
    );
    assert_eq!(ack["duplicate"], false);
    let edited = bob_socket.recv_type("edited").await?;
    assert_eq!(edited["seq"], seq + 1);
    assert_eq!(edited["target"], seq);
    assert_eq!(edited["content"], "hello");
    assert_eq!(edited["username"], "alice");
    assert!(edited["edited_at"].is_string());
    let own = alice_socket.recv_type("edited").await?;
    assert_eq!(own["seq"], seq + 1);

    // A resend of the same edit is acknowledged as a duplicate and reaches
    // no one again.
    alice_socket.send(edit).await?;
    let again = alice_socket.recv_type("ack").await?;
    assert_eq!(
        (again["seq"].as_i64(), again["duplicate"].as_bool()),
        (Some(seq + 1), Some(true))
    );
    bob_socket.expect_no("edited").await?;

    // By REST too; the answer is the message as it is now.
    let response = app
        .send_authed(
            Method::PATCH,
            &format!("/api/rooms/lobby/messages/{seq}"),
            &alice,
            Some(&json!({"content": "hello, world"})),
        )
        .await?;
    assert_eq!(response.status(), 200);
    let now: Value = response.json().await?;
    assert_eq!(now["content"], "hello, world");
    assert!(now["edited_at"].is_string());
    assert_eq!(
        bob_socket.recv_type("edited").await?["content"],
        "hello, world"
    );

    let items = page(app, "lobby", &bob).await?;
    let message = at(&items, seq);
    assert_eq!(message["content"], "hello, world");
    assert!(message["edited_at"].is_string());
    assert_eq!(
        at(&items, seq + 2)["change"],
        json!({"kind": "edited", "target": seq})
    );

    let edits: Value = app
        .get_authed(&format!("/api/rooms/lobby/messages/{seq}/edits"), &bob)
        .await?
        .json()
        .await?;
    let versions: Vec<&str> = edits["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|version| version["content"].as_str())
        .collect();
    assert_eq!(versions, ["hello", "helo"], "newest first");

    // An edit follows a message's rules.
    alice_socket
        .send(json!({"type": "edit", "room": "lobby", "seq": seq, "content": "   "}))
        .await?;
    assert_eq!(error_code(alice_socket).await?, "blank_message");
    assert_eq!(
        edit_status(app, &format!("/api/rooms/lobby/messages/{seq}"), &alice, "").await?,
        422
    );
    assert_eq!(
        at(&page(app, "lobby", &bob).await?, seq)["content"],
        "hello, world"
    );
    Ok(())
}

async fn only_authors_edit_and_only_they_or_moderators_delete_by_frame_and_by_route(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let mut sockets = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    let alices = sockets[0].send_acked("lobby", "alice's", "a1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    let bobs = sockets[1].send_acked("lobby", "bob's", "b1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    let before = page(app, "lobby", &alice).await?;

    // Bob may neither edit nor delete Alice's message, by frame or route.
    let bob_socket = &mut sockets[1];
    bob_socket
        .send(json!({"type": "edit", "room": "lobby", "seq": alices, "content": "mine"}))
        .await?;
    assert_eq!(error_code(bob_socket).await?, "forbidden");
    bob_socket
        .send(json!({"type": "delete", "room": "lobby", "seq": alices}))
        .await?;
    assert_eq!(error_code(bob_socket).await?, "forbidden");
    let path = format!("/api/rooms/lobby/messages/{alices}");
    assert_eq!(edit_status(app, &path, &bob, "mine").await?, 403);
    assert_eq!(status(app, Method::DELETE, &path, &bob, None).await?, 403);
    // The owner may not edit Bob's message.
    let bob_path = format!("/api/rooms/lobby/messages/{bobs}");
    assert_eq!(edit_status(app, &bob_path, &alice, "x").await?, 403);
    // Carol is not in the room.
    assert_eq!(
        status(app, Method::DELETE, &bob_path, &carol, None).await?,
        403
    );
    let mut carol_socket = app.connect(&carol).await?;
    carol_socket
        .send(json!({"type": "delete", "room": "lobby", "seq": bobs}))
        .await?;
    assert_eq!(error_code(&mut carol_socket).await?, "not_a_member");
    // No such message, or not a message.
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/messages/999",
            &alice,
            None
        )
        .await?,
        404
    );
    let alice_socket = &mut sockets[0];
    alice_socket
        .send(json!({"type": "edit", "room": "lobby", "seq": 999, "content": "x"}))
        .await?;
    assert_eq!(error_code(alice_socket).await?, "not_found");
    alice_socket
        .send(json!({"type": "delete", "room": "lobby", "seq": 0}))
        .await?;
    assert_eq!(error_code(alice_socket).await?, "invalid");
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/messages/1",
            &alice,
            None
        )
        .await?,
        404,
        "seq 1 is a membership change, not a message"
    );

    // Nothing changed.
    assert_eq!(page(app, "lobby", &alice).await?, before);

    // The owner deletes Bob's message; Bob sees who did.
    assert_eq!(
        status(app, Method::DELETE, &bob_path, &alice, None).await?,
        204
    );
    let deleted = sockets[1].recv_type("deleted").await?;
    assert_eq!(
        (deleted["target"].as_i64(), deleted["by"].as_str()),
        (Some(bobs), Some("alice"))
    );
    Ok(())
}

async fn a_deleted_message_leaves_a_tombstone_and_cannot_be_changed(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sockets = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    let seq = sockets[1].send_acked("lobby", "oops", "b1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    let bob_socket = &mut sockets[1];
    bob_socket
        .send(json!({"type": "edit", "room": "lobby", "seq": seq, "content": "oops, fixed"}))
        .await?;
    bob_socket.recv_type("edited").await?;
    bob_socket
        .send(json!({"type": "delete", "room": "lobby", "seq": seq, "client_id": "d1"}))
        .await?;
    let ack = bob_socket.recv_type("ack").await?;
    assert_eq!(ack["seq"], seq + 2);
    let deleted = sockets[0].recv_type("deleted").await?;
    assert_eq!(
        (deleted["seq"].as_i64(), deleted["by"].as_str()),
        (Some(seq + 2), Some("bob"))
    );

    let items = page(app, "lobby", &alice).await?;
    let tombstone = at(&items, seq);
    assert_eq!(tombstone["deleted"], true);
    assert_eq!(tombstone["deleted_by"], "bob");
    assert!(tombstone["deleted_at"].is_string());
    assert_eq!(tombstone["content"], Value::Null);
    // The edit's text went with the message.
    assert_eq!(at(&items, seq + 1)["content"], "");
    let edits: Value = app
        .get_authed(&format!("/api/rooms/lobby/messages/{seq}/edits"), &alice)
        .await?
        .json()
        .await?;
    assert_eq!(edits["versions"], json!([]));

    let path = format!("/api/rooms/lobby/messages/{seq}");
    assert_eq!(edit_status(app, &path, &bob, "back").await?, 409);
    assert_eq!(status(app, Method::DELETE, &path, &alice, None).await?, 409);
    let bob_socket = &mut sockets[1];
    bob_socket
        .send(json!({"type": "edit", "room": "lobby", "seq": seq, "content": "back"}))
        .await?;
    assert_eq!(error_code(bob_socket).await?, "deleted");
    assert_eq!(page(app, "lobby", &alice).await?, items, "nothing changed");
    Ok(())
}

async fn resume_replays_changes_in_order_and_seed_clients_see_messages_only(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    // Bob speaks only the seed's frames, in `general`.
    let mut seed = app.connect(&bob).await?;
    let mut alice_socket = app.connect(&alice).await?;
    let first = alice_socket.send_acked("general", "first", "g1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    let second = alice_socket.send_acked("general", "second", "g2").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    alice_socket
        .send(json!({"type": "edit", "room": "general", "seq": first, "content": "first, edited"}))
        .await?;
    alice_socket.recv_type("ack").await?;
    alice_socket
        .send(json!({"type": "delete", "room": "general", "seq": second}))
        .await?;
    alice_socket.recv_type("ack").await?;
    let last = alice_socket.send_acked("general", "third", "g3").await?["seq"]
        .as_i64()
        .unwrap_or_default();

    // The seed client got the three messages and no change.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let frame = seed.recv().await?;
        assert!(
            frame["type"] != "edited" && frame["type"] != "deleted",
            "a seed client got {frame}"
        );
        if frame["type"] == "message" {
            seen.push(frame["content"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(seen, ["first", "second", "third"]);
    seed.expect_no("edited").await?;
    // Its history shows current texts and leaves the deleted one out.
    let history: Vec<Value> = app
        .get_authed("/api/chat/messages", &bob)
        .await?
        .json()
        .await?;
    let texts: Vec<&str> = history
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(texts, ["first, edited", "third"]);

    // A client resuming from before the first message sees every item
    // once, in seq order: the messages as they are now, then the changes.
    let mut resumed = app.connect(&alice).await?;
    resumed
        .send(json!({"type": "resume", "room": "general", "last_seq": first - 1}))
        .await?;
    let mut items = Vec::new();
    loop {
        let frame = resumed.recv().await?;
        match frame["type"].as_str() {
            Some("joined") => break,
            Some("message" | "edited" | "deleted") => items.push(frame),
            _ => {}
        }
    }
    let seqs: Vec<i64> = items.iter().filter_map(|f| f["seq"].as_i64()).collect();
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>());
    assert_eq!(items[0]["content"], "first, edited");
    assert!(items[0]["edited_at"].is_string());
    assert_eq!(
        (items[1]["deleted"].as_bool(), items[1]["content"].as_str()),
        (Some(true), Some(""))
    );
    assert_eq!(
        (items[2]["type"].as_str(), items[2]["target"].as_i64()),
        (Some("edited"), Some(first))
    );
    assert_eq!(
        (items[3]["type"].as_str(), items[3]["target"].as_i64()),
        (Some("deleted"), Some(second))
    );
    Ok(())
}

async fn a_reply_names_a_message_of_the_same_room(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sockets = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    let question = sockets[0]
        .send_acked("lobby", "tea or coffee?", "q1")
        .await?["seq"]
        .as_i64()
        .unwrap_or_default();
    let bob_socket = &mut sockets[1];
    bob_socket
        .send(json!({"type": "message", "room": "lobby", "content": "tea", "client_id": "r1", "reply_to": question}))
        .await?;
    let answer = loop {
        let frame = bob_socket.recv_type("message").await?;
        if frame["client_id"] == "r1" {
            break frame;
        }
    };
    assert_eq!(answer["reply_to"], question);
    let items = page(app, "lobby", &alice).await?;
    let reply = at(&items, answer["seq"].as_i64().unwrap_or_default());
    assert_eq!(reply["reply_to"], question);
    assert_eq!(
        reply["reply"],
        json!({"username": "alice", "excerpt": "tea or coffee?", "deleted": false})
    );

    // No message at that seq, or a membership change there: refused, and
    // nothing stored.
    for target in [999, 1] {
        bob_socket
            .send(json!({"type": "message", "room": "lobby", "content": "lost", "client_id": format!("x{target}"), "reply_to": target}))
            .await?;
        let error = bob_socket.recv_type("error").await?;
        assert_eq!(error["code"], "not_found");
        assert_eq!(error["client_id"], format!("x{target}"));
    }
    assert_eq!(page(app, "lobby", &alice).await?, items);

    // A reply to a message deleted since shows its tombstone.
    assert_eq!(
        status(
            app,
            Method::DELETE,
            &format!("/api/rooms/lobby/messages/{question}"),
            &alice,
            None
        )
        .await?,
        204
    );
    let items = page(app, "lobby", &bob).await?;
    assert_eq!(
        at(&items, answer["seq"].as_i64().unwrap_or_default())["reply"],
        json!({"username": "alice", "excerpt": null, "deleted": true})
    );
    Ok(())
}
