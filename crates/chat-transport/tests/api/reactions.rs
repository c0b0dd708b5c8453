//! Reactions, through the WebSocket and REST alike: each one added or
//! taken back is recorded in the room's sequence, reaches the room once,
//! and history pages count them for the caller. Every rule is checked by
//! trying what it forbids and seeing that nothing changed.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::governance::{after_minutes, status};
use crate::helpers::{Client, TestApp};
use crate::lifecycle::{at, error_code, page, room_with};

crate::backend_tests!(
    a_reaction_reaches_the_room_once_and_history_counts_it_for_each_caller,
    only_members_react_never_to_deleted_messages_nor_past_twenty_kinds,
);

/// 👍, percent-encoded for a path.
const THUMBS_UP: &str = "%F0%9F%91%8D";

fn reactions_path(seq: i64, emoji: &str) -> String {
    format!("/api/rooms/lobby/messages/{seq}/reactions/{emoji}")
}

/// The `reactions` of the message at `seq` of lobby, read by `token`.
async fn reactions(app: &TestApp, seq: i64, token: &str) -> Result<Value> {
    let message = at(&page(app, "lobby", token).await?, seq);
    Ok(if message["reactions"].is_null() {
        json!([])
    } else {
        message["reactions"].clone()
    })
}

/// The status and `code` of a refused request.
async fn refused(app: &TestApp, method: Method, path: &str, token: &str) -> Result<(u16, String)> {
    let response = app.send_authed(method, path, token, None).await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    Ok((status, body["code"].as_str().unwrap_or_default().to_owned()))
}

fn react(seq: i64, emoji: &str) -> Value {
    json!({"type": "react", "room": "lobby", "seq": seq, "emoji": emoji})
}

async fn sent_seq(socket: &mut Client, text: &str, client_id: &str) -> Result<i64> {
    Ok(socket.send_acked("lobby", text, client_id).await?["seq"]
        .as_i64()
        .unwrap_or_default())
}

async fn a_reaction_reaches_the_room_once_and_history_counts_it_for_each_caller(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sockets = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    let seq = sent_seq(&mut sockets[0], "lunch?", "m1").await?;
    sockets[1].recv_type("message").await?;

    // Bob reacts by frame; both sockets get the reaction once.
    let mut frame = react(seq, "👍");
    frame["client_id"] = json!("r1");
    sockets[1].send(frame.clone()).await?;
    let ack = sockets[1].recv_type("ack").await?;
    assert_eq!(
        (
            ack["client_id"].as_str(),
            ack["seq"].as_i64(),
            ack["duplicate"].as_bool()
        ),
        (Some("r1"), Some(seq + 1), Some(false))
    );
    for socket in &mut sockets {
        let reaction = socket.recv_type("reaction").await?;
        assert_eq!(
            reaction,
            json!({"type": "reaction", "room": "lobby", "seq": seq + 1, "target": seq,
                   "emoji": "👍", "username": "bob", "added": true})
        );
    }
    // The same reaction again, under another id, is the one made already.
    frame["client_id"] = json!("r2");
    sockets[1].send(frame).await?;
    let again = sockets[1].recv_type("ack").await?;
    assert_eq!(
        (
            again["client_id"].as_str(),
            again["seq"].as_i64(),
            again["duplicate"].as_bool()
        ),
        (Some("r2"), Some(seq + 1), Some(true))
    );
    sockets[0].expect_no("reaction").await?;

    // Alice reacts by REST; the answer counts both.
    let response = app
        .send_authed(Method::PUT, &reactions_path(seq, THUMBS_UP), &alice, None)
        .await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!({"room": "lobby", "seq": seq, "change_seq": seq + 2,
               "reactions": [{"emoji": "👍", "count": 2, "me": true}]})
    );
    let reaction = sockets[1].recv_type("reaction").await?;
    assert_eq!(
        (reaction["username"].as_str(), reaction["added"].as_bool()),
        (Some("alice"), Some(true))
    );
    sockets[1].send(react(seq, "🎉")).await?;
    sockets[1].recv_type("ack").await?;
    for expected in ["👍", "🎉"] {
        assert_eq!(sockets[0].recv_type("reaction").await?["emoji"], expected);
    }

    // History counts them, marking the caller's own, in the order kinds
    // were first added; the changes themselves are items of the sequence.
    assert_eq!(
        reactions(app, seq, &bob).await?,
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "🎉", "count": 1, "me": true}])
    );
    assert_eq!(
        reactions(app, seq, &alice).await?,
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "🎉", "count": 1, "me": false}])
    );
    let items = page(app, "lobby", &alice).await?;
    let change = at(&items, seq + 1);
    assert_eq!(change["change"], json!({"kind": "reacted", "target": seq}));
    assert_eq!(change["content"], "👍");
    assert_eq!(change["username"], "bob");

    // Bob takes his 👍 back by frame, then again by REST: it is gone.
    sockets[1]
        .send(json!({"type": "unreact", "room": "lobby", "seq": seq, "emoji": "👍"}))
        .await?;
    let taken = sockets[0].recv_type("reaction").await?;
    assert_eq!(
        (
            taken["username"].as_str(),
            taken["added"].as_bool(),
            taken["emoji"].as_str()
        ),
        (Some("bob"), Some(false), Some("👍"))
    );
    let before = page(app, "lobby", &bob).await?;
    assert_eq!(
        refused(app, Method::DELETE, &reactions_path(seq, THUMBS_UP), &bob).await?,
        (404, "not_found".to_owned())
    );
    sockets[1]
        .send(json!({"type": "unreact", "room": "lobby", "seq": seq, "emoji": "👍"}))
        .await?;
    assert_eq!(error_code(&mut sockets[1]).await?, "not_found");
    assert_eq!(
        reactions(app, seq, &bob).await?,
        json!([{"emoji": "👍", "count": 1, "me": false}, {"emoji": "🎉", "count": 1, "me": true}])
    );

    // What is not a short visible string is refused, by frame and route.
    for emoji in ["a b", "", "toolong"] {
        sockets[1].send(react(seq, emoji)).await?;
        assert_eq!(error_code(&mut sockets[1]).await?, "invalid", "{emoji:?}");
    }
    assert_eq!(
        refused(app, Method::PUT, &reactions_path(seq, "a%20b"), &bob).await?,
        (422, "invalid".to_owned())
    );
    assert_eq!(page(app, "lobby", &bob).await?, before, "nothing changed");
    sockets[0].expect_no("reaction").await?;
    Ok(())
}

async fn only_members_react_never_to_deleted_messages_nor_past_twenty_kinds(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let mut sockets = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    let seq = sent_seq(&mut sockets[1], "vote", "b1").await?;
    let before = page(app, "lobby", &alice).await?;

    // Carol is not a member: refused by frame and route.
    let mut carol_socket = app.connect(&carol).await?;
    carol_socket.send(react(seq, "👍")).await?;
    assert_eq!(error_code(&mut carol_socket).await?, "not_a_member");
    assert_eq!(
        refused(app, Method::PUT, &reactions_path(seq, THUMBS_UP), &carol).await?,
        (403, "not_a_member".to_owned())
    );
    // No such message, or not a message (seq 1 is the owner's join).
    assert_eq!(
        refused(app, Method::PUT, &reactions_path(999, THUMBS_UP), &alice).await?,
        (404, "not_found".to_owned())
    );
    assert_eq!(
        refused(app, Method::PUT, &reactions_path(1, THUMBS_UP), &alice).await?,
        (404, "not_found".to_owned())
    );
    sockets[0].send(react(999, "👍")).await?;
    assert_eq!(error_code(&mut sockets[0]).await?, "not_found");
    // A muted member may not react.
    assert_eq!(
        status(
            app,
            Method::PUT,
            "/api/rooms/lobby/mutes/bob",
            &alice,
            Some(json!({"until": after_minutes(5)}))
        )
        .await?,
        204
    );
    let muted_before = page(app, "lobby", &alice).await?;
    sockets[1].send(react(seq, "👍")).await?;
    assert_eq!(error_code(&mut sockets[1]).await?, "muted");
    assert_eq!(
        refused(app, Method::PUT, &reactions_path(seq, THUMBS_UP), &bob).await?,
        (403, "muted".to_owned())
    );
    assert_eq!(
        page(app, "lobby", &alice).await?,
        muted_before,
        "nothing changed"
    );
    assert_eq!(
        before.len() + 1,
        muted_before.len(),
        "only the mute was recorded"
    );

    // Twenty kinds, then no more; an existing kind can still be added to.
    for n in 0..20 {
        assert_eq!(
            status(
                app,
                Method::PUT,
                &reactions_path(seq, &format!("k{n}")),
                &alice,
                None
            )
            .await?,
            200
        );
    }
    let full = page(app, "lobby", &alice).await?;
    assert_eq!(
        refused(app, Method::PUT, &reactions_path(seq, "k20"), &alice).await?,
        (409, "invalid".to_owned())
    );
    sockets[0].send(react(seq, "k21")).await?;
    assert_eq!(error_code(&mut sockets[0]).await?, "invalid");
    assert_eq!(page(app, "lobby", &alice).await?, full, "nothing changed");
    assert_eq!(
        reactions(app, seq, &alice).await?.as_array().map(Vec::len),
        Some(20)
    );

    // Once deleted, the message has no reactions and takes none.
    assert_eq!(
        status(
            app,
            Method::DELETE,
            &format!("/api/rooms/lobby/messages/{seq}"),
            &alice,
            None
        )
        .await?,
        204
    );
    assert_eq!(reactions(app, seq, &alice).await?, json!([]));
    let deleted = page(app, "lobby", &alice).await?;
    assert_eq!(
        refused(app, Method::PUT, &reactions_path(seq, "k0"), &alice).await?,
        (409, "deleted".to_owned())
    );
    assert_eq!(
        refused(app, Method::DELETE, &reactions_path(seq, "k0"), &alice).await?,
        (409, "deleted".to_owned())
    );
    sockets[0].send(react(seq, "k0")).await?;
    assert_eq!(error_code(&mut sockets[0]).await?, "deleted");
    assert_eq!(
        page(app, "lobby", &alice).await?,
        deleted,
        "nothing changed"
    );
    Ok(())
}
