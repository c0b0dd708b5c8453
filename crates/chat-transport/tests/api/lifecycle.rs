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
    a_burst_of_messages_and_changes_replays_once_in_order_and_rebuilds_the_history,
);

/// A message as a client rebuilds it from frames, or as history shows it:
/// its text (`None` once deleted) and who reacted with what.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Rebuilt {
    content: Option<String>,
    reactions: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

/// Applies the frames a client received, in order, to the messages it
/// knows; returns the seqs of the frames, in the order they came.
fn rebuild(frames: &[Value], messages: &mut std::collections::BTreeMap<i64, Rebuilt>) -> Vec<i64> {
    let mut seqs = Vec::new();
    for frame in frames {
        let target = frame["target"].as_i64().unwrap_or_default();
        match frame["type"].as_str() {
            Some("message") => {
                let deleted = frame["deleted"] == true;
                messages.insert(
                    frame["seq"].as_i64().unwrap_or_default(),
                    Rebuilt {
                        content: (!deleted)
                            .then(|| frame["content"].as_str().unwrap_or_default().to_owned()),
                        ..Rebuilt::default()
                    },
                );
            }
            Some("edited") => {
                if let Some(message) = messages.get_mut(&target).filter(|m| m.content.is_some()) {
                    message.content = frame["content"].as_str().map(str::to_owned);
                }
            }
            Some("deleted") => {
                if let Some(message) = messages.get_mut(&target) {
                    *message = Rebuilt::default();
                }
            }
            Some("reaction") => {
                if let Some(message) = messages.get_mut(&target).filter(|m| m.content.is_some()) {
                    let emoji = frame["emoji"].as_str().unwrap_or_default().to_owned();
                    let who = frame["username"].as_str().unwrap_or_default().to_owned();
                    let users = message.reactions.entry(emoji.clone()).or_default();
                    if frame["added"] == true {
                        users.insert(who);
                    } else {
                        users.remove(&who);
                        if users.is_empty() {
                            message.reactions.remove(&emoji);
                        }
                    }
                }
            }
            _ => continue,
        }
        seqs.push(frame["seq"].as_i64().unwrap_or_default());
    }
    seqs
}

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

async fn a_burst_of_messages_and_changes_replays_once_in_order_and_rebuilds_the_history(
    app: &TestApp,
) -> Result<()> {
    use std::collections::{BTreeMap, BTreeSet};

    let names = ["alice", "bob", "carol"];
    let mut tokens = Vec::new();
    for name in names {
        tokens.push(app.user(name).await?);
    }
    let dave = app.user("dave").await?;
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let mut sockets = room_with(app, &tokens[0], "lobby", &token_refs).await?;
    // Dave watches live on one socket, and goes offline on another after
    // noting where the room stood.
    let mut live = app.connect(&dave).await?;
    live.send(json!({"type": "join", "room": "lobby"})).await?;
    let from = live.recv_type("joined").await?["last_seq"]
        .as_i64()
        .unwrap_or_default();

    // 200 messages, 100 edits, 50 deletions and 200 reactions added or
    // taken back, interleaved, from three sockets; each is acknowledged.
    let emoji = ["👍", "🎉", "k"];
    let mut authors: Vec<(i64, usize)> = Vec::new();
    let mut deleted: BTreeSet<i64> = BTreeSet::new();
    let mut reacted: BTreeSet<(i64, usize, usize)> = BTreeSet::new();
    let mut acked: Vec<i64> = Vec::new();
    let mut id = 0;
    let mut next_id = || {
        id += 1;
        format!("c{id}")
    };
    for n in 0..200_usize {
        let author = n % 3;
        let ack = sockets[author]
            .send_acked("lobby", &format!("m{n}"), &next_id())
            .await?;
        let seq = ack["seq"].as_i64().unwrap_or_default();
        authors.push((seq, author));
        acked.push(seq);
        // Pick earlier messages that still stand, spread over the burst.
        let standing: Vec<(i64, usize)> = authors
            .iter()
            .copied()
            .filter(|(seq, _)| !deleted.contains(seq))
            .collect();
        let pick = |k: usize| standing[(n * 7 + k * 13) % standing.len()];
        if n % 2 == 0 {
            let (target, by) = pick(1);
            let frame = json!({"type": "edit", "room": "lobby", "seq": target,
                               "content": format!("m{n}, edited"), "client_id": next_id()});
            acked.push(
                sockets[by].acked(frame).await?["seq"]
                    .as_i64()
                    .unwrap_or_default(),
            );
        }
        if n % 4 == 1 {
            // The author or the owner (alice) deletes.
            let (target, author) = pick(2);
            let by = if n % 8 == 1 { author } else { 0 };
            let frame =
                json!({"type": "delete", "room": "lobby", "seq": target, "client_id": next_id()});
            acked.push(
                sockets[by].acked(frame).await?["seq"]
                    .as_i64()
                    .unwrap_or_default(),
            );
            deleted.insert(target);
        }
        let standing: Vec<(i64, usize)> = authors
            .iter()
            .copied()
            .filter(|(seq, _)| !deleted.contains(seq))
            .collect();
        let (target, _) = standing[(n * 5) % standing.len()];
        let (by, kind) = (n % 3, (n / 3) % 3);
        let key = (target, by, kind);
        let verb = if reacted.remove(&key) {
            "unreact"
        } else {
            "react"
        };
        if verb == "react" {
            reacted.insert(key);
        }
        let frame = json!({"type": verb, "room": "lobby", "seq": target,
                           "emoji": emoji[kind], "client_id": next_id()});
        let ack = sockets[by].acked(frame).await?;
        assert_eq!(ack["duplicate"], false, "{ack}");
        acked.push(ack["seq"].as_i64().unwrap_or_default());
    }
    // Each got the room's next seq: 550 events, no gap.
    let last = from + 200 + 100 + 50 + 200;
    assert_eq!(acked, ((from + 1)..=last).collect::<Vec<_>>());

    // The live socket got every event once, in seq order.
    let mut frames = Vec::new();
    while frames.last().and_then(|f: &Value| f["seq"].as_i64()) != Some(last) {
        let frame = live.recv().await?;
        if frame["seq"].is_i64() && frame["type"] != "joined" {
            frames.push(frame);
        }
    }
    let mut seen_live = BTreeMap::new();
    let seqs = rebuild(&frames, &mut seen_live);
    assert_eq!(seqs, ((from + 1)..=last).collect::<Vec<_>>());

    // A client offline since `from` resumes and gets every event once, in
    // seq order, then `joined`.
    let mut resumed = app.connect(&dave).await?;
    resumed
        .send(json!({"type": "resume", "room": "lobby", "last_seq": from}))
        .await?;
    let mut frames = Vec::new();
    loop {
        let frame = resumed.recv().await?;
        if frame["type"] == "joined" {
            break;
        }
        frames.push(frame);
    }
    let mut seen_resumed = BTreeMap::new();
    let seqs = rebuild(&frames, &mut seen_resumed);
    assert_eq!(seqs, ((from + 1)..=last).collect::<Vec<_>>());

    // Both rebuild what a fresh history read shows.
    let mut history: BTreeMap<i64, Rebuilt> = BTreeMap::new();
    let mut counts: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    let mut after = from;
    loop {
        let page: Value = app
            .get_authed(
                &format!("/api/rooms/lobby/messages?after={after}&limit=100"),
                &dave,
            )
            .await?
            .json()
            .await?;
        let items = page["messages"].as_array().cloned().unwrap_or_default();
        let Some(newest) = items.last().and_then(|item| item["seq"].as_i64()) else {
            break;
        };
        for item in items.iter().filter(|item| item["change"].is_null()) {
            let seq = item["seq"].as_i64().unwrap_or_default();
            history.insert(
                seq,
                Rebuilt {
                    content: item["content"].as_str().map(str::to_owned),
                    reactions: BTreeMap::new(),
                },
            );
            for reaction in item["reactions"].as_array().into_iter().flatten() {
                assert_eq!(reaction["me"], false, "dave never reacted");
                counts.entry(seq).or_default().insert(
                    reaction["emoji"].as_str().unwrap_or_default().to_owned(),
                    reaction["count"].as_i64().unwrap_or_default(),
                );
            }
        }
        after = newest;
    }
    for seen in [&seen_live, &seen_resumed] {
        let texts: BTreeMap<i64, Option<String>> = seen
            .iter()
            .map(|(seq, m)| (*seq, m.content.clone()))
            .collect();
        let expected: BTreeMap<i64, Option<String>> = history
            .iter()
            .map(|(seq, m)| (*seq, m.content.clone()))
            .collect();
        assert_eq!(texts, expected);
        let seen_counts: BTreeMap<i64, BTreeMap<String, i64>> = seen
            .iter()
            .filter(|(_, m)| !m.reactions.is_empty())
            .map(|(seq, m)| {
                let kinds = m
                    .reactions
                    .iter()
                    .map(|(emoji, users)| (emoji.clone(), users.len() as i64))
                    .collect();
                (*seq, kinds)
            })
            .collect();
        assert_eq!(seen_counts, counts);
    }
    assert_eq!(seen_live, seen_resumed);
    assert_eq!(
        history.values().filter(|m| m.content.is_none()).count(),
        deleted.len()
    );
    assert!(!counts.is_empty());
    Ok(())
}
