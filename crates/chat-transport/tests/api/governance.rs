//! Rooms people govern: one membership path, private rooms, roles, bans,
//! mutes, topics and deletion, through REST and WebSocket alike. Every rule
//! is checked by trying what it forbids and seeing that nothing changed.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Client, TestApp};

crate::backend_tests!(
    leaving_by_rest_while_a_socket_is_open_refuses_its_next_message,
    a_private_room_answers_as_a_missing_one_to_outsiders_and_kicked_members,
    a_muted_member_reads_but_is_refused_with_until,
    members_cannot_moderate_and_moderators_cannot_touch_the_owner,
    a_ban_removes_at_once_and_bars_joining_reading_and_posting_until_lifted,
    resume_across_a_kick_shows_the_change_and_nothing_after_it,
    deleting_a_room_tells_its_sockets_and_leaves_nothing,
    seed_clients_never_see_membership_changes,
    topics_and_visibility_follow_roles,
    a_room_shows_its_owner_roles_and_members,
    general_stays_public_and_undeletable_whoever_owns_it,
    a_bad_body_is_refused_and_changes_nothing,
    a_member_who_rejoined_keeps_the_room_when_resuming_from_before_the_kick,
    a_resend_after_a_kick_is_answered_with_the_stored_original,
    a_deleted_account_can_be_neither_messaged_added_nor_governed,
);

async fn a_deleted_account_can_be_neither_messaged_added_nor_governed(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let bob = app
        .store
        .user_by_name(&chat_domain::Username::parse("bob")?)
        .await?
        .ok_or_else(|| anyhow::anyhow!("bob exists"))?;
    // What `chat-server admin user delete bob` does to the account.
    app.store.delete_user(bob.id, false).await?;

    let rooms_before: Value = app.get_authed("/api/rooms", &alice).await?.json().await?;
    assert_eq!(
        status(app, Method::POST, "/api/dm/bob", &alice, None).await?,
        404
    );
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/lobby/members/bob",
            &alice,
            None
        )
        .await?,
        404
    );
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/lobby/bans/bob",
            &alice,
            Some(json!({}))
        )
        .await?,
        404
    );
    let mut socket = app.connect(&alice).await?;
    socket
        .send(json!({"type": "ban", "room": "lobby", "username": "bob"}))
        .await?;
    assert_eq!(socket.recv_type("error").await?["code"], "invalid_frame");
    let rooms_after: Value = app.get_authed("/api/rooms", &alice).await?.json().await?;
    assert_eq!(rooms_after, rooms_before, "nothing changed");
    let members: Vec<Value> = app
        .get_authed("/api/rooms/lobby/members", &alice)
        .await?
        .json()
        .await?;
    assert_eq!(members.len(), 1);
    Ok(())
}

async fn general_stays_public_and_undeletable_whoever_owns_it(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let general = app
        .store
        .room_by_name(&chat_domain::RoomName::general())
        .await?
        .ok_or_else(|| anyhow::anyhow!("general exists"))?;
    let me = app
        .store
        .user_by_name(&chat_domain::Username::parse("alice")?)
        .await?
        .ok_or_else(|| anyhow::anyhow!("alice exists"))?;
    // What `chat-server admin room set-role general alice owner` does.
    app.store
        .change_membership(
            general.id,
            &chat_storage::Actor::Operator,
            me.id,
            &chat_storage::MembershipOp::SetRole(chat_domain::Role::Owner),
        )
        .await?;
    let detail: Value = app
        .get_authed("/api/rooms/general", &alice)
        .await?
        .json()
        .await?;
    assert_eq!(detail["owner"], "alice");
    assert_eq!(
        status(app, Method::DELETE, "/api/rooms/general", &alice, None).await?,
        403
    );
    assert_eq!(
        status(
            app,
            Method::PATCH,
            "/api/rooms/general",
            &alice,
            Some(json!({"visibility": "private"}))
        )
        .await?,
        403
    );
    assert_eq!(
        status(
            app,
            Method::PATCH,
            "/api/rooms/general",
            &alice,
            Some(json!({"topic": "welcome"}))
        )
        .await?,
        200
    );
    let bob = app.user("bob").await?;
    let seen: Value = app
        .get_authed("/api/rooms/general", &bob)
        .await?
        .json()
        .await?;
    assert_eq!(
        (seen["visibility"].as_str(), seen["topic"].as_str()),
        (Some("public"), Some("welcome"))
    );

    // A user banned from `general` cannot read it through the seed's route.
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/general/bans/bob",
            &alice,
            Some(json!({}))
        )
        .await?,
        204
    );
    assert_eq!(
        status(app, Method::GET, "/api/chat/messages", &bob, None).await?,
        403
    );
    assert_eq!(
        status(app, Method::GET, "/api/chat/messages", &alice, None).await?,
        200
    );
    Ok(())
}

async fn a_bad_body_is_refused_and_changes_nothing(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    app.user("bob").await?;
    room(app, &alice, "secret", "private").await?;
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/rooms/secret/members/bob",
            r#"{"role": "emperor"}"#,
        ),
        (
            Method::PUT,
            "/api/rooms/secret/bans/bob",
            r#"{"until": "next tuesday"}"#,
        ),
        (Method::PUT, "/api/rooms/secret/bans/bob", "not json"),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(path))
            .bearer_auth(&alice)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        assert_eq!(response.status(), 422, "{method} {path} {body}");
    }
    assert_eq!(members(app, "secret", &alice).await?, ["alice:owner"]);
    let bans: Vec<Value> = app
        .get_authed("/api/rooms/secret/bans", &alice)
        .await?
        .json()
        .await?;
    assert!(bans.is_empty(), "{bans:?}");
    assert!(changes(app, "secret", &alice).await?.is_empty());
    Ok(())
}

async fn a_member_who_rejoined_keeps_the_room_when_resuming_from_before_the_kick(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut alice_socket = in_room(app, &alice, "lobby").await?;
    let first = in_room(app, &bob, "lobby").await?;
    let seen = alice_socket.send_acked("lobby", "m1", "a1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    first.close().await?;
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/members/bob",
            &alice,
            None
        )
        .await?,
        204
    );
    assert_eq!(
        status(
            app,
            Method::POST,
            "/api/rooms/lobby/join",
            &bob,
            Some(json!({}))
        )
        .await?,
        200
    );

    let mut bob_socket = app.connect(&bob).await?;
    bob_socket
        .send(json!({"type": "resume", "room": "lobby", "last_seq": seen}))
        .await?;
    assert_eq!(
        recv_change(&mut bob_socket, "kicked").await?["username"],
        "bob"
    );
    assert_eq!(
        recv_change(&mut bob_socket, "joined").await?["username"],
        "bob"
    );
    bob_socket.recv_type("joined").await?;
    alice_socket
        .send_acked("lobby", "welcome back", "a2")
        .await?;
    assert_eq!(
        bob_socket.recv_type("message").await?["content"],
        "welcome back"
    );
    Ok(())
}

async fn a_resend_after_a_kick_is_answered_with_the_stored_original(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut bob_socket = in_room(app, &bob, "lobby").await?;
    let original = bob_socket.send_acked("lobby", "stored", "r1").await?;
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/members/bob",
            &alice,
            None
        )
        .await?,
        204
    );
    bob_socket.recv_type("left").await?;
    // The ack was lost, say: the client sends it again after the kick.
    bob_socket
        .send(json!({"type": "message", "room": "lobby", "content": "stored", "client_id": "r1"}))
        .await?;
    let again = bob_socket.recv_type("ack").await?;
    assert_eq!(
        (again["duplicate"].as_bool(), again["id"].clone()),
        (Some(true), original["id"].clone())
    );
    // A new message is refused.
    bob_socket
        .send(json!({"type": "message", "room": "lobby", "content": "new", "client_id": "r2"}))
        .await?;
    assert_eq!(bob_socket.recv_type("error").await?["code"], "not_a_member");
    assert_eq!(texts(app, "lobby", &alice).await?, ["stored"]);
    Ok(())
}

pub(crate) fn after_minutes(minutes: i64) -> String {
    chat_protocol::timestamp::format(&(chrono::Utc::now() + chrono::Duration::minutes(minutes)))
}

/// A room created by `owner`, public or private.
async fn room(app: &TestApp, owner: &str, name: &str, visibility: &str) -> Result<()> {
    let created = app
        .post_authed(
            "/api/rooms",
            owner,
            &json!({"name": name, "visibility": visibility}),
        )
        .await?;
    anyhow::ensure!(
        created.status() == 201,
        "create {name}: {}",
        created.status()
    );
    Ok(())
}

/// A socket of `token` that speaks the extended protocol and receives
/// `room` (it joins it).
async fn in_room(app: &TestApp, token: &str, room: &str) -> Result<Client> {
    let mut socket = app.connect(token).await?;
    socket.send(json!({"type": "join", "room": room})).await?;
    socket.recv_type("joined").await?;
    Ok(socket)
}

/// The status of `method` on `path` as the holder of `token`.
pub(crate) async fn status(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Result<u16> {
    Ok(app
        .send_authed(method, path, token, body.as_ref())
        .await?
        .status()
        .as_u16())
}

/// The texts of a room's messages, read by `token`.
async fn texts(app: &TestApp, room: &str, token: &str) -> Result<Vec<String>> {
    let page: Value = app
        .get_authed(&format!("/api/rooms/{room}/messages?limit=100"), token)
        .await?
        .json()
        .await?;
    Ok(page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["content"].as_str().map(str::to_owned))
        .collect())
}

/// The membership changes of a room's history, as `username:change`.
async fn changes(app: &TestApp, room: &str, token: &str) -> Result<Vec<String>> {
    let page: Value = app
        .get_authed(&format!("/api/rooms/{room}/messages?limit=100"), token)
        .await?
        .json()
        .await?;
    Ok(page["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["event"].is_object())
        .map(|item| {
            format!(
                "{}:{}",
                item["username"].as_str().unwrap_or_default(),
                item["event"]["change"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

/// The next `member` frame with this `change`, skipping others.
async fn recv_change(socket: &mut Client, change: &str) -> Result<Value> {
    loop {
        let frame = socket.recv_type("member").await?;
        if frame["change"] == change {
            return Ok(frame);
        }
    }
}

async fn members(app: &TestApp, room: &str, token: &str) -> Result<Vec<String>> {
    let list: Vec<Value> = app
        .get_authed(&format!("/api/rooms/{room}/members"), token)
        .await?
        .json()
        .await?;
    Ok(list
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m["username"].as_str().unwrap_or_default(),
                m["role"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

async fn leaving_by_rest_while_a_socket_is_open_refuses_its_next_message(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut bob_socket = in_room(app, &bob, "lobby").await?;
    bob_socket.send_acked("lobby", "before", "b1").await?;

    let left = app
        .post_authed("/api/rooms/lobby/leave", &bob, &json!({}))
        .await?;
    assert_eq!(left.status(), 204);
    let change = bob_socket.recv_type("member").await?;
    assert_eq!(
        (change["username"].as_str(), change["change"].as_str()),
        (Some("bob"), Some("left"))
    );
    let gone = bob_socket.recv_type("left").await?;
    assert_eq!(
        (gone["room"].as_str(), gone["reason"].as_str()),
        (Some("lobby"), Some("left"))
    );

    bob_socket
        .send(json!({"type": "message", "room": "lobby", "content": "after", "client_id": "b2"}))
        .await?;
    let refused = bob_socket.recv_type("error").await?;
    assert_eq!(refused["code"], "not_a_member");
    assert_eq!(refused["client_id"], "b2");
    assert_eq!(texts(app, "lobby", &alice).await?, ["before"]);
    assert_eq!(
        changes(app, "lobby", &alice).await?,
        ["bob:joined", "bob:left"]
    );
    Ok(())
}

async fn a_private_room_answers_as_a_missing_one_to_outsiders_and_kicked_members(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    room(app, &alice, "secret", "private").await?;

    // What a room that does not exist answers, route by route.
    let missing = app.get_authed("/api/rooms/nowhere", &carol).await?;
    assert_eq!(missing.status(), 404);
    let missing_detail = missing.json::<Value>().await?["detail"]
        .as_str()
        .unwrap_or_default()
        .replace("nowhere", "secret");
    let outsider_sees_nothing = async |token: &str| -> Result<()> {
        for (method, path) in [
            (Method::GET, "/api/rooms/secret"),
            (Method::GET, "/api/rooms/secret/messages"),
            (Method::GET, "/api/rooms/secret/members"),
            (Method::POST, "/api/rooms/secret/join"),
        ] {
            let response = app
                .send_authed(method.clone(), path, token, Some(&json!({})))
                .await?;
            assert_eq!(response.status(), 404, "{method} {path}");
            let body: Value = response.json().await?;
            assert_eq!(body["detail"], missing_detail.as_str(), "{method} {path}");
        }
        let listed: Vec<Value> = app.get_authed("/api/rooms", token).await?.json().await?;
        assert!(listed.iter().all(|r| r["name"] != "secret"), "{listed:?}");
        let mut socket = app.connect(token).await?;
        socket
            .send(json!({"type": "join", "room": "secret"}))
            .await?;
        assert_eq!(socket.recv_type("error").await?["code"], "room_not_found");
        socket
            .send(json!({"type": "message", "room": "secret", "content": "hi"}))
            .await?;
        assert_eq!(socket.recv_type("error").await?["code"], "room_not_found");
        Ok(())
    };
    outsider_sees_nothing(&carol).await?;

    // Added by the owner, bob sees it, and his open socket receives it.
    let mut bob_socket = app.connect(&bob).await?;
    bob_socket.send(json!({"type": "ping"})).await?;
    bob_socket.recv_type("pong").await?;
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/secret/members/bob",
            &alice,
            None
        )
        .await?,
        204
    );
    assert_eq!(bob_socket.recv_type("joined").await?["room"], "secret");
    let added = bob_socket.recv_type("member").await?;
    assert_eq!(
        (added["change"].as_str(), added["by"].as_str()),
        (Some("added"), Some("alice"))
    );
    let listed: Vec<Value> = app.get_authed("/api/rooms", &bob).await?.json().await?;
    assert!(
        listed
            .iter()
            .any(|r| r["name"] == "secret" && r["visibility"] == "private")
    );
    bob_socket.send_acked("secret", "in here", "s1").await?;

    // Kicked, he is an outsider again, on every route.
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/secret/members/bob",
            &alice,
            None
        )
        .await?,
        204
    );
    assert_eq!(bob_socket.recv_type("left").await?["reason"], "kicked");
    drop(bob_socket);
    outsider_sees_nothing(&bob).await?;
    assert_eq!(texts(app, "secret", &alice).await?, ["in here"]);
    Ok(())
}

async fn a_muted_member_reads_but_is_refused_with_until(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut bob_socket = in_room(app, &bob, "lobby").await?;
    let until = after_minutes(10);
    let muted = status(
        app,
        Method::PUT,
        "/api/rooms/lobby/mutes/bob",
        &alice,
        Some(json!({"until": until})),
    )
    .await?;
    assert_eq!(muted, 204);
    let change = bob_socket.recv_type("member").await?;
    assert_eq!(change["change"], "muted");
    assert!(change["until"].is_string());

    bob_socket
        .send(json!({"type": "message", "room": "lobby", "content": "quiet?", "client_id": "m1"}))
        .await?;
    let refused = bob_socket.recv_type("error").await?;
    assert_eq!(refused["code"], "muted");
    assert_eq!(refused["client_id"], "m1");
    assert_eq!(refused["until"], change["until"]);
    assert!(
        texts(app, "lobby", &bob).await?.is_empty(),
        "he still reads; nothing was stored"
    );
    let listed = members(app, "lobby", &alice).await?;
    assert_eq!(listed, ["alice:owner", "bob:member"]);

    // The same rule from the other side: a past `until` is refused.
    let past = status(
        app,
        Method::PUT,
        "/api/rooms/lobby/mutes/bob",
        &alice,
        Some(json!({"until": after_minutes(-1)})),
    )
    .await?;
    assert_eq!(past, 422);
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/mutes/bob",
            &alice,
            None
        )
        .await?,
        204
    );
    bob_socket.send_acked("lobby", "back", "m2").await?;
    assert_eq!(texts(app, "lobby", &alice).await?, ["back"]);
    Ok(())
}

async fn members_cannot_moderate_and_moderators_cannot_touch_the_owner(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let dave = app.user("dave").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut bob_socket = in_room(app, &bob, "lobby").await?;
    let mut carol_socket = in_room(app, &carol, "lobby").await?;
    in_room(app, &dave, "lobby").await?;
    let before = changes(app, "lobby", &alice).await?;

    // A member may not kick, ban, mute, add or make moderators.
    for (method, path, body) in [
        (Method::DELETE, "/api/rooms/lobby/members/carol", None),
        (Method::PUT, "/api/rooms/lobby/bans/carol", Some(json!({}))),
        (
            Method::PUT,
            "/api/rooms/lobby/mutes/carol",
            Some(json!({"until": after_minutes(5)})),
        ),
        (
            Method::PUT,
            "/api/rooms/lobby/members/carol",
            Some(json!({"role": "moderator"})),
        ),
    ] {
        assert_eq!(
            status(app, method.clone(), path, &bob, body).await?,
            403,
            "{method} {path}"
        );
    }
    for frame in [
        json!({"type": "kick", "room": "lobby", "username": "carol"}),
        json!({"type": "ban", "room": "lobby", "username": "carol"}),
        json!({"type": "mute", "room": "lobby", "username": "carol", "until": after_minutes(5)}),
    ] {
        bob_socket.send(frame.clone()).await?;
        assert_eq!(
            bob_socket.recv_type("error").await?["code"],
            "forbidden",
            "{frame}"
        );
    }
    assert_eq!(
        changes(app, "lobby", &alice).await?,
        before,
        "nothing changed"
    );
    carol_socket.send_acked("lobby", "still here", "c1").await?;

    // A moderator may act on members, not on the owner or other moderators.
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/lobby/members/bob",
            &alice,
            Some(json!({"role": "moderator"}))
        )
        .await?,
        204
    );
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/lobby/members/dave",
            &alice,
            Some(json!({"role": "moderator"}))
        )
        .await?,
        204
    );
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/lobby/bans/alice",
            &bob,
            Some(json!({}))
        )
        .await?,
        403
    );
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/members/dave",
            &bob,
            None
        )
        .await?,
        403
    );
    bob_socket
        .send(json!({"type": "ban", "room": "lobby", "username": "alice"}))
        .await?;
    assert_eq!(bob_socket.recv_type("error").await?["code"], "forbidden");
    // Only the owner makes moderators.
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/lobby/members/carol",
            &bob,
            Some(json!({"role": "moderator"}))
        )
        .await?,
        403
    );
    assert_eq!(
        members(app, "lobby", &alice).await?,
        [
            "alice:owner",
            "bob:moderator",
            "carol:member",
            "dave:moderator"
        ]
    );
    // ...but a moderator kicks a member, over the socket.
    bob_socket
        .send(json!({"type": "kick", "room": "lobby", "username": "carol", "reason": "off topic"}))
        .await?;
    let kicked = recv_change(&mut carol_socket, "kicked").await?;
    assert_eq!(
        (kicked["change"].as_str(), kicked["reason"].as_str()),
        (Some("kicked"), Some("off topic"))
    );
    assert_eq!(carol_socket.recv_type("left").await?["reason"], "kicked");
    // A kicked user may join a public room again.
    assert_eq!(
        status(
            app,
            Method::POST,
            "/api/rooms/lobby/join",
            &carol,
            Some(json!({}))
        )
        .await?,
        200
    );
    Ok(())
}

async fn a_ban_removes_at_once_and_bars_joining_reading_and_posting_until_lifted(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut bob_socket = in_room(app, &bob, "lobby").await?;
    let banned = status(
        app,
        Method::PUT,
        "/api/rooms/lobby/bans/bob",
        &alice,
        Some(json!({"reason": "spam"})),
    )
    .await?;
    assert_eq!(banned, 204);
    assert_eq!(bob_socket.recv_type("left").await?["reason"], "banned");
    bob_socket
        .send(json!({"type": "message", "room": "lobby", "content": "spam", "client_id": "x"}))
        .await?;
    assert_eq!(bob_socket.recv_type("error").await?["code"], "banned");
    bob_socket
        .send(json!({"type": "join", "room": "lobby"}))
        .await?;
    assert_eq!(bob_socket.recv_type("error").await?["code"], "banned");
    assert_eq!(
        status(
            app,
            Method::POST,
            "/api/rooms/lobby/join",
            &bob,
            Some(json!({}))
        )
        .await?,
        403
    );
    assert_eq!(
        status(app, Method::GET, "/api/rooms/lobby/messages", &bob, None).await?,
        403
    );
    assert_eq!(
        status(app, Method::GET, "/api/rooms/lobby/members", &bob, None).await?,
        403
    );
    let bans: Vec<Value> = app
        .get_authed("/api/rooms/lobby/bans", &alice)
        .await?
        .json()
        .await?;
    assert_eq!(bans.len(), 1);
    assert_eq!(
        (
            bans[0]["username"].as_str(),
            bans[0]["reason"].as_str(),
            bans[0]["banned_by"].as_str()
        ),
        (Some("bob"), Some("spam"), Some("alice"))
    );
    assert_eq!(
        status(app, Method::GET, "/api/rooms/lobby/bans", &bob, None).await?,
        403
    );
    assert!(texts(app, "lobby", &alice).await?.is_empty());

    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/bans/bob",
            &alice,
            None
        )
        .await?,
        204
    );
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/bans/bob",
            &alice,
            None
        )
        .await?,
        409
    );
    bob_socket
        .send(json!({"type": "join", "room": "lobby"}))
        .await?;
    bob_socket.recv_type("joined").await?;
    bob_socket.send_acked("lobby", "sorry", "y").await?;
    assert_eq!(
        changes(app, "lobby", &alice).await?,
        ["bob:joined", "bob:banned", "bob:unbanned", "bob:joined"]
    );
    Ok(())
}

async fn resume_across_a_kick_shows_the_change_and_nothing_after_it(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut alice_socket = in_room(app, &alice, "lobby").await?;
    let bob_socket = in_room(app, &bob, "lobby").await?;
    let seen = alice_socket.send_acked("lobby", "m1", "a1").await?["seq"]
        .as_i64()
        .unwrap_or_default();
    bob_socket.close().await?;

    alice_socket.send_acked("lobby", "m2", "a2").await?;
    assert_eq!(
        status(
            app,
            Method::DELETE,
            "/api/rooms/lobby/members/bob",
            &alice,
            None
        )
        .await?,
        204
    );
    alice_socket.send_acked("lobby", "m3", "a3").await?;

    let mut bob_socket = app.connect(&bob).await?;
    bob_socket
        .send(json!({"type": "resume", "room": "lobby", "last_seq": seen}))
        .await?;
    let missed = bob_socket.recv_type("message").await?;
    assert_eq!(missed["content"], "m2");
    let kicked = bob_socket.recv_type("member").await?;
    assert_eq!(
        (kicked["username"].as_str(), kicked["change"].as_str()),
        (Some("bob"), Some("kicked"))
    );
    assert_eq!(
        kicked["seq"],
        missed["seq"].as_i64().unwrap_or_default() + 1
    );
    assert_eq!(bob_socket.recv_type("left").await?["reason"], "kicked");
    bob_socket.expect_no("message").await?;
    Ok(())
}

async fn deleting_a_room_tells_its_sockets_and_leaves_nothing(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut bob_socket = in_room(app, &bob, "lobby").await?;
    bob_socket.send_acked("lobby", "hello", "b1").await?;
    assert_eq!(
        status(app, Method::DELETE, "/api/rooms/lobby", &bob, None).await?,
        403
    );
    assert_eq!(texts(app, "lobby", &alice).await?, ["hello"]);

    assert_eq!(
        status(app, Method::DELETE, "/api/rooms/lobby", &alice, None).await?,
        204
    );
    let gone = bob_socket.recv_type("left").await?;
    assert_eq!(
        (gone["room"].as_str(), gone["reason"].as_str()),
        (Some("lobby"), Some("room_deleted"))
    );
    for path in [
        "/api/rooms/lobby",
        "/api/rooms/lobby/messages",
        "/api/rooms/lobby/members",
    ] {
        assert_eq!(
            status(app, Method::GET, path, &bob, None).await?,
            404,
            "{path}"
        );
    }
    bob_socket
        .send(json!({"type": "message", "room": "lobby", "content": "anyone?"}))
        .await?;
    assert_eq!(
        bob_socket.recv_type("error").await?["code"],
        "room_not_found"
    );
    // The name is free again, with nothing of the old room in it.
    room(app, &bob, "lobby", "public").await?;
    assert!(texts(app, "lobby", &bob).await?.is_empty());
    assert!(changes(app, "lobby", &bob).await?.is_empty());
    // `general` has no owner: nobody can delete it.
    assert_eq!(
        status(app, Method::DELETE, "/api/rooms/general", &alice, None).await?,
        403
    );
    Ok(())
}

async fn seed_clients_never_see_membership_changes(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    // Alice speaks only the seed's frames; Carol the extended protocol.
    let mut seed = app.connect(&alice).await?;
    let mut extended = app.connect(&carol).await?;
    extended.send(json!({"type": "ping"})).await?;
    extended.recv_type("pong").await?;

    // Bob leaves `general` and comes back by connecting.
    assert_eq!(
        status(
            app,
            Method::POST,
            "/api/rooms/general/leave",
            &bob,
            Some(json!({}))
        )
        .await?,
        204
    );
    let _bob_socket = app.connect(&bob).await?;
    assert_eq!(extended.recv_type("member").await?["change"], "left");
    assert_eq!(extended.recv_type("member").await?["change"], "joined");
    seed.expect_no("member").await?;

    // Then a message: the seed client gets it, and its history shows
    // messages only.
    seed.send(json!({"type": "message", "content": "hi all"}))
        .await?;
    let message = seed.recv_type("message").await?;
    assert_eq!(message["content"], "hi all");
    let history: Vec<Value> = app
        .get_authed("/api/chat/messages", &alice)
        .await?
        .json()
        .await?;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["content"], "hi all");
    Ok(())
}

async fn topics_and_visibility_follow_roles(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    room(app, &alice, "lobby", "public").await?;
    let mut bob_socket = in_room(app, &bob, "lobby").await?;
    assert_eq!(
        status(
            app,
            Method::PATCH,
            "/api/rooms/lobby",
            &bob,
            Some(json!({"topic": "mine"}))
        )
        .await?,
        403
    );
    bob_socket
        .send(json!({"type": "topic", "room": "lobby", "topic": "mine"}))
        .await?;
    assert_eq!(bob_socket.recv_type("error").await?["code"], "forbidden");

    let updated = app
        .send_authed(
            Method::PATCH,
            "/api/rooms/lobby",
            &alice,
            Some(&json!({"topic": "  plans  "})),
        )
        .await?;
    assert_eq!(updated.status(), 200);
    let detail: Value = updated.json().await?;
    assert_eq!(detail["topic"], "plans");
    let told = bob_socket.recv_type("topic").await?;
    assert_eq!(
        (told["topic"].as_str(), told["by"].as_str()),
        (Some("plans"), Some("alice"))
    );

    // A moderator sets the topic but not the visibility.
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/lobby/members/bob",
            &alice,
            Some(json!({"role": "moderator"}))
        )
        .await?,
        204
    );
    bob_socket
        .send(json!({"type": "topic", "room": "lobby", "topic": ""}))
        .await?;
    assert!(bob_socket.recv_type("topic").await?["topic"].is_null());
    assert_eq!(
        status(
            app,
            Method::PATCH,
            "/api/rooms/lobby",
            &bob,
            Some(json!({"visibility": "private"}))
        )
        .await?,
        403
    );
    assert_eq!(
        status(
            app,
            Method::PATCH,
            "/api/rooms/lobby",
            &alice,
            Some(json!({"topic": "x".repeat(300)}))
        )
        .await?,
        422
    );
    assert_eq!(
        status(
            app,
            Method::PATCH,
            "/api/rooms/lobby",
            &alice,
            Some(json!({"visibility": "private"}))
        )
        .await?,
        200
    );
    let outsider = app.user("carol").await?;
    assert_eq!(
        status(app, Method::GET, "/api/rooms/lobby", &outsider, None).await?,
        404
    );
    Ok(())
}

async fn a_room_shows_its_owner_roles_and_members(app: &TestApp) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let created: Value = app
        .post_authed(
            "/api/rooms",
            &alice,
            &json!({"name": "lobby", "topic": "hello"}),
        )
        .await?
        .json()
        .await?;
    assert_eq!(
        (
            created["role"].as_str(),
            created["visibility"].as_str(),
            created["topic"].as_str()
        ),
        (Some("owner"), Some("public"), Some("hello"))
    );
    app.post_authed("/api/rooms/lobby/join", &bob, &json!({}))
        .await?;
    let detail: Value = app
        .get_authed("/api/rooms/lobby", &bob)
        .await?
        .json()
        .await?;
    assert_eq!(detail["owner"], "alice");
    assert_eq!(detail["role"], "member");
    assert_eq!(detail["member_count"], 2);
    assert_eq!(detail["kind"], "public");
    let general: Value = app
        .get_authed("/api/rooms/general", &bob)
        .await?
        .json()
        .await?;
    assert!(general["owner"].is_null(), "nobody owns general");
    let list: Vec<Value> = app
        .get_authed("/api/rooms/lobby/members", &bob)
        .await?
        .json()
        .await?;
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|m| m["joined_at"].is_string()
        && m["muted_until"].is_null()
        && m["last_read_seq"].is_i64()));
    assert_eq!(
        app.post_authed(
            "/api/rooms",
            &alice,
            &json!({"name": "other", "visibility": "hidden"})
        )
        .await?
        .status(),
        422
    );
    Ok(())
}
