//! Rooms, direct conversations and paginated history.

use anyhow::Result;
use serde_json::{Value, json};

use crate::helpers::TestApp;

crate::backend_tests!(
    rooms_are_created_listed_joined_and_left,
    room_history_pages_by_seq_in_both_directions,
    messages_stay_in_their_room,
    direct_conversations_reach_their_two_members_only,
    users_me_returns_the_signed_in_user,
    unread_counts_follow_the_read_mark,
);

async fn unread_counts_follow_the_read_mark(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sender = app.connect(&alice).await?;
    for i in 1..=5 {
        sender
            .send_acked("general", &format!("m{i}"), &format!("c{i}"))
            .await?;
    }
    let unread = |rooms: Vec<Value>| {
        rooms
            .iter()
            .find(|r| r["name"] == "general")
            .and_then(|r| r["unread"].as_i64())
    };
    let rooms: Vec<Value> = app.get_authed("/api/rooms", &bob).await?.json().await?;
    assert_eq!(unread(rooms), Some(5));
    let marked: Value = app
        .post_authed("/api/rooms/general/read", &bob, &json!({"seq": 3}))
        .await?
        .json()
        .await?;
    assert_eq!(marked["unread"], 2);
    assert_eq!(marked["last_read_seq"], 3);
    // It never moves backwards.
    app.post_authed("/api/rooms/general/read", &bob, &json!({"seq": 1}))
        .await?;
    let rooms: Vec<Value> = app.get_authed("/api/rooms", &bob).await?.json().await?;
    assert_eq!(unread(rooms), Some(2));
    let bad = app
        .post_authed("/api/rooms/general/read", &bob, &json!({"seq": -1}))
        .await?;
    assert_eq!(bad.status(), 422);
    Ok(())
}

async fn rooms_are_created_listed_joined_and_left(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let created = app
        .post_authed("/api/rooms", &alice, &json!({"name": "Rust"}))
        .await?;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await?;
    assert_eq!(body["name"], "rust");
    assert_eq!(body["member"], true);
    let again = app
        .post_authed("/api/rooms", &bob, &json!({"name": "rust"}))
        .await?;
    assert_eq!(again.status(), 409);
    let invalid = app
        .post_authed("/api/rooms", &bob, &json!({"name": "two words"}))
        .await?;
    assert_eq!(invalid.status(), 422);

    let rooms: Vec<Value> = app.get_authed("/api/rooms", &bob).await?.json().await?;
    let rust = rooms
        .iter()
        .find(|r| r["name"] == "rust")
        .cloned()
        .unwrap_or_default();
    assert_eq!(rust["member"], false);
    assert!(
        rooms
            .iter()
            .any(|r| r["name"] == "general" && r["member"] == true)
    );

    let joined = app
        .post_authed("/api/rooms/rust/join", &bob, &json!({}))
        .await?;
    assert_eq!(joined.status(), 200);
    let missing = app
        .post_authed("/api/rooms/nowhere/join", &bob, &json!({}))
        .await?;
    assert_eq!(missing.status(), 404);
    let left = app
        .post_authed("/api/rooms/rust/leave", &bob, &json!({}))
        .await?;
    assert_eq!(left.status(), 204);
    let rooms: Vec<Value> = app.get_authed("/api/rooms", &bob).await?.json().await?;
    assert!(
        rooms
            .iter()
            .any(|r| r["name"] == "rust" && r["member"] == false)
    );
    Ok(())
}

async fn room_history_pages_by_seq_in_both_directions(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    app.post_authed("/api/rooms", &alice, &json!({"name": "books"}))
        .await?;
    let mut client = app.connect(&alice).await?;
    client
        .send(json!({"type": "join", "room": "books"}))
        .await?;
    client.recv_type("joined").await?;
    for i in 1..=25 {
        client
            .send_acked("books", &format!("b{i}"), &format!("b{i}"))
            .await?;
    }
    let page = |query: &'static str| {
        let alice = alice.clone();
        async move {
            let response = app
                .get_authed(&format!("/api/rooms/books/messages{query}"), &alice)
                .await?;
            anyhow::ensure!(response.status() == 200, "{query}: {}", response.status());
            let body: Value = response.json().await?;
            let seqs: Vec<i64> = body["messages"]
                .as_array()
                .map(|m| m.iter().filter_map(|m| m["seq"].as_i64()).collect())
                .unwrap_or_default();
            Ok::<_, anyhow::Error>((seqs, body["has_more"].as_bool()))
        }
    };
    assert_eq!(
        page("?before=11&limit=5").await?,
        ((6..=10).collect(), Some(true))
    );
    assert_eq!(
        page("?after=20&limit=10").await?,
        ((21..=25).collect(), Some(false))
    );
    assert_eq!(page("?limit=3").await?, ((23..=25).collect(), Some(true)));
    assert_eq!(
        page("?before=3&limit=5").await?,
        ((1..=2).collect(), Some(false))
    );
    for bad in [
        "?limit=0",
        "?limit=201",
        "?before=1&after=2",
        "?before=-1",
        "?limit=abc",
    ] {
        let response = app
            .get_authed(&format!("/api/rooms/books/messages{bad}"), &alice)
            .await?;
        assert_eq!(response.status(), 422, "{bad}");
    }
    Ok(())
}

async fn messages_stay_in_their_room(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    app.post_authed("/api/rooms", &alice, &json!({"name": "side"}))
        .await?;
    let mut sender = app.connect(&alice).await?;
    let mut outsider = app.connect(&bob).await?;
    sender.send(json!({"type": "join", "room": "side"})).await?;
    sender.recv_type("joined").await?;
    let ack = sender.send_acked("side", "side talk", "s1").await?;
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["room"], "side");
    outsider.expect_no("message").await?;
    let general: Vec<Value> = app
        .get_authed("/api/chat/messages", &alice)
        .await?
        .json()
        .await?;
    assert!(general.is_empty());
    Ok(())
}

async fn direct_conversations_reach_their_two_members_only(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let mut bob_socket = app.connect(&bob).await?;
    bob_socket.send(json!({"type": "ping"})).await?;
    bob_socket.recv_type("pong").await?;
    let mut carol_socket = app.connect(&carol).await?;

    let response = app.post_authed("/api/dm/Bob", &alice, &json!({})).await?;
    assert_eq!(response.status(), 200);
    let room: Value = response.json().await?;
    assert_eq!(room["name"], "dm:alice:bob");
    assert_eq!(room["kind"], "direct");
    // Bob's open socket is subscribed at once.
    assert_eq!(
        bob_socket.recv_type("joined").await?["room"],
        "dm:alice:bob"
    );

    let mut alice_socket = app.connect(&alice).await?;
    alice_socket
        .send_acked("dm:alice:bob", "psst", "d1")
        .await?;
    let received = bob_socket.recv_type("message").await?;
    assert_eq!(received["content"], "psst");
    assert_eq!(received["room"], "dm:alice:bob");
    carol_socket.expect_no("message").await?;

    // Carol can neither read nor write it: to her it does not exist.
    let read = app
        .get_authed("/api/rooms/dm:alice:bob/messages", &carol)
        .await?;
    assert_eq!(read.status(), 404);
    carol_socket
        .send(json!({"type": "message", "room": "dm:alice:bob", "content": "hi"}))
        .await?;
    assert_eq!(
        carol_socket.recv_type("error").await?["code"],
        "room_not_found"
    );
    // Opening it again from the other side gives the same room.
    let again: Value = app
        .post_authed("/api/dm/alice", &bob, &json!({}))
        .await?
        .json()
        .await?;
    assert_eq!(again["name"], "dm:alice:bob");
    assert_eq!(again["last_seq"], 1);
    let to_self = app.post_authed("/api/dm/alice", &alice, &json!({})).await?;
    assert_eq!(to_self.status(), 422);
    let nobody = app
        .post_authed("/api/dm/nobody", &alice, &json!({}))
        .await?;
    assert_eq!(nobody.status(), 404);
    Ok(())
}

async fn users_me_returns_the_signed_in_user(app: &TestApp) -> Result<()> {
    let token = app.user("Alice").await?;
    let me: Value = app
        .get_authed("/api/users/me", &token)
        .await?
        .json()
        .await?;
    assert_eq!(me["username"], "Alice");
    assert!(me["id"].is_i64());
    let anonymous = app.http.get(app.url("/api/users/me")).send().await?;
    assert_eq!(anonymous.status(), 401);
    Ok(())
}
