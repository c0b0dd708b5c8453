//! `GET /api/search`: the words of the caller's rooms, newest first, with
//! where they are; never a room the caller may not read now, never a
//! deleted text or an edited one's old text. Each refusal is checked by
//! trying it and seeing that nothing was found.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use crate::governance::status;
use crate::helpers::TestApp;
use crate::lifecycle::room_with;

crate::backend_tests!(
    search_finds_every_word_in_the_callers_rooms_newest_first_with_where_they_are,
    search_refuses_bad_queries_and_rooms_the_caller_may_not_search,
    a_member_who_left_or_was_banned_finds_nothing_and_changes_are_found_as_they_are_now,
);

fn encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A private room `name` of `owner`, and the owner's socket in it.
async fn private_room(app: &TestApp, owner: &str, name: &str) -> Result<crate::helpers::Client> {
    let created = app
        .post_authed(
            "/api/rooms",
            owner,
            &json!({"name": name, "visibility": "private"}),
        )
        .await?;
    anyhow::ensure!(created.status() == 201, "create: {}", created.status());
    let mut socket = app.connect(owner).await?;
    socket.send(json!({"type": "join", "room": name})).await?;
    socket.recv_type("joined").await?;
    Ok(socket)
}

/// The answer to a search by `token`, with its status.
pub(crate) async fn search(app: &TestApp, token: &str, query: &str) -> Result<(u16, Value)> {
    let response = app
        .get_authed(&format!("/api/search?{query}"), token)
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

/// The texts `token` finds for `q`, newest first, from one page.
pub(crate) async fn found(app: &TestApp, token: &str, q: &str) -> Result<Vec<String>> {
    let (status, body) = search(app, token, &format!("q={}", encoded(q))).await?;
    anyhow::ensure!(status == 200, "search {q:?}: {status} {body}");
    Ok(body["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|result| result["content"].as_str().unwrap_or_default().to_owned())
        .collect())
}

async fn search_finds_every_word_in_the_callers_rooms_newest_first_with_where_they_are(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let carol = app.user("carol").await?;
    let mut lobby = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    lobby[0]
        .send_acked("lobby", "Quarterly BUDGET review", "m1")
        .await?;
    lobby[0]
        .send_acked("lobby", "the budget at the café", "m2")
        .await?;
    lobby[0].send_acked("lobby", "nothing to see", "m3").await?;
    let mut secret = private_room(app, &carol, "secret").await?;
    secret
        .send_acked("secret", "the secret budget", "s1")
        .await?;

    // Bob is in lobby, not in carol's private room.
    let (code, body) = search(app, &bob, "q=budget").await?;
    assert_eq!(code, 200, "{body}");
    let results = body["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 2, "{body}");
    assert_eq!(results[0]["content"], "the budget at the café");
    assert_eq!(results[0]["room"], "lobby");
    assert_eq!(results[0]["username"], "alice");
    assert_eq!(results[0]["highlights"], json!([{"start": 4, "end": 10}]));
    assert!(results[0]["seq"].as_i64() > results[1]["seq"].as_i64());
    assert!(results[0]["created_at"].is_string());
    assert_eq!(results[1]["content"], "Quarterly BUDGET review");
    assert_eq!(body["next"], Value::Null);

    // Case, accents, prefixes, every word.
    assert_eq!(
        found(app, &bob, "CAFE budget").await?,
        ["the budget at the café"]
    );
    assert_eq!(
        found(app, &bob, "quart* review").await?,
        ["Quarterly BUDGET review"]
    );
    assert!(found(app, &bob, "budget monday").await?.is_empty());
    // Carol finds her own room's message only: lobby is public, but she
    // has not joined it.
    assert_eq!(found(app, &carol, "budget").await?, ["the secret budget"]);

    // A page at a time.
    let (_, first) = search(app, &bob, "q=budget&limit=1").await?;
    assert_eq!(first["results"][0]["content"], "the budget at the café");
    let next = first["next"].as_i64().expect("a next page");
    let (_, second) = search(app, &bob, &format!("q=budget&limit=1&before={next}")).await?;
    assert_eq!(second["results"][0]["content"], "Quarterly BUDGET review");
    let (_, last) = search(
        app,
        &bob,
        &format!(
            "q=budget&limit=1&before={}",
            second["next"].as_i64().unwrap_or(1)
        ),
    )
    .await?;
    assert_eq!(last["results"], json!([]), "{last}");
    assert_eq!(last["next"], Value::Null);

    // One room only.
    let (code, body) = search(app, &alice, "q=budget&room=lobby").await?;
    assert_eq!(code, 200);
    assert_eq!(body["results"].as_array().map(Vec::len), Some(2));
    Ok(())
}

async fn search_refuses_bad_queries_and_rooms_the_caller_may_not_search(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut lobby = room_with(app, &alice, "lobby", &[&alice]).await?;
    lobby[0].send_acked("lobby", "the budget", "m1").await?;
    let mut secret = private_room(app, &alice, "secret").await?;
    secret.send_acked("secret", "secret budget", "s1").await?;

    for (query, code) in [
        ("q=", "invalid"),
        ("q=%20%21%21", "invalid"),
        ("q=bu*", "invalid"),
        ("q=a+b+c+d+e+f+g+h+i", "invalid"),
    ] {
        let (status, body) = search(app, &bob, query).await?;
        assert_eq!(status, 422, "{query}: {body}");
        assert_eq!(body["code"], code, "{query}: {body}");
    }
    for query in [
        "q=budget&limit=0",
        "q=budget&limit=101",
        "q=budget&before=0",
        "q=budget&before=x",
        "room=lobby",
    ] {
        let (status, body) = search(app, &bob, query).await?;
        assert_eq!(status, 422, "{query}: {body}");
    }
    // A public room bob is not in; a private one he may not know of; one
    // that does not exist.
    let (status, body) = search(app, &bob, "q=budget&room=lobby").await?;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_a_member")));
    let (status, body) = search(app, &bob, "q=budget&room=secret").await?;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("room_not_found"))
    );
    let (status, _) = search(app, &bob, "q=budget&room=nowhere").await?;
    assert_eq!(status, 404);
    assert!(found(app, &bob, "budget").await?.is_empty());
    // Not signed in.
    let anonymous = app.http.get(app.url("/api/search?q=budget")).send().await?;
    assert_eq!(anonymous.status(), 401);
    // Alice, who may, still finds both.
    assert_eq!(found(app, &alice, "budget").await?.len(), 2);
    Ok(())
}

async fn a_member_who_left_or_was_banned_finds_nothing_and_changes_are_found_as_they_are_now(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut lobby = room_with(app, &alice, "lobby", &[&alice, &bob]).await?;
    let first = lobby[0]
        .send_acked("lobby", "meet at the harbour", "m1")
        .await?["seq"]
        .as_i64()
        .unwrap_or_default();
    let second = lobby[0]
        .send_acked("lobby", "bring a lantern", "m2")
        .await?["seq"]
        .as_i64()
        .unwrap_or_default();
    assert_eq!(found(app, &bob, "harbour").await?, ["meet at the harbour"]);

    // An edit by REST, a deletion by frame.
    let path = format!("/api/rooms/lobby/messages/{first}");
    let edited = status(
        app,
        Method::PATCH,
        &path,
        &alice,
        Some(json!({"content": "meet at the lighthouse"})),
    )
    .await?;
    assert_eq!(edited, 200);
    assert!(found(app, &bob, "harbour").await?.is_empty());
    assert_eq!(
        found(app, &bob, "lighthouse").await?,
        ["meet at the lighthouse"]
    );
    lobby[0]
        .send(json!({"type": "delete", "room": "lobby", "seq": second}))
        .await?;
    lobby[0].recv_type("deleted").await?;
    assert!(found(app, &bob, "lantern").await?.is_empty());

    // Bob leaves: nothing of lobby any more.
    let left = app
        .post_authed("/api/rooms/lobby/leave", &bob, &json!({}))
        .await?;
    assert_eq!(left.status(), 204);
    assert!(found(app, &bob, "lighthouse").await?.is_empty());
    let (code, _) = search(app, &bob, "q=lighthouse&room=lobby").await?;
    assert_eq!(code, 403);

    // Back in, then banned: nothing again.
    let joined = app
        .post_authed("/api/rooms/lobby/join", &bob, &json!({}))
        .await?;
    assert_eq!(joined.status(), 200);
    assert_eq!(found(app, &bob, "lighthouse").await?.len(), 1);
    let banned = status(
        app,
        Method::PUT,
        "/api/rooms/lobby/bans/bob",
        &alice,
        Some(json!({})),
    )
    .await?;
    assert_eq!(banned, 204);
    assert!(found(app, &bob, "lighthouse").await?.is_empty());
    let (code, body) = search(app, &bob, "q=lighthouse&room=lobby").await?;
    assert_eq!((code, body["code"].as_str()), (403, Some("banned")));
    Ok(())
}

/// A server with search off.
mod off {
    use anyhow::Result;

    use crate::helpers::TestApp;

    crate::backend_tests!(
        tweaks = crate::helpers::Tweaks { search_off: true, ..Default::default() };
        with_search_off_messages_flow_and_search_answers_not_found,
    );

    async fn with_search_off_messages_flow_and_search_answers_not_found(
        app: &TestApp,
    ) -> Result<()> {
        let alice = app.user("alice").await?;
        let mut socket = app.connect(&alice).await?;
        socket.send_acked("general", "the budget", "m1").await?;
        let (status, body) = super::search(app, &alice, "q=budget").await?;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["detail"], "search is turned off on this server");
        Ok(())
    }
}
