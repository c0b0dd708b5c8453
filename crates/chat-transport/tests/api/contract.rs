//! One test per line of the seed's wire contract.

use anyhow::Result;
use chat_domain::Username;
use serde_json::{Value, json};

use crate::helpers::TestApp;

crate::backend_tests!(
    root_describes_the_service_and_its_seed_endpoints,
    register_answers_201_with_id_username_and_created_at,
    register_with_a_taken_name_answers_400_username_already_registered,
    register_with_a_malformed_body_answers_422_with_a_detail,
    register_enforces_the_username_and_password_rules,
    login_answers_a_bearer_token_for_a_json_body,
    login_failures_are_indistinguishable_401s_with_www_authenticate,
    history_returns_the_newest_messages_oldest_first_and_decrypted,
    history_accepts_the_authorization_header,
    history_refuses_missing_bad_and_orphaned_tokens_with_401,
    websocket_refuses_a_bad_token_before_the_upgrade,
    websocket_greets_announces_and_broadcasts_like_the_seed,
    websocket_ignores_blank_messages_and_stores_nothing,
    websocket_messages_are_stored_before_they_are_broadcast,
);

async fn root_describes_the_service_and_its_seed_endpoints(app: &TestApp) -> Result<()> {
    let body: Value = app.http.get(app.url("/")).send().await?.json().await?;
    assert!(body["message"].is_string());
    assert!(
        body["version"]
            .as_str()
            .is_some_and(|v| v.split('.').count() == 3)
    );
    assert_eq!(
        body["endpoints"],
        json!({
            "register": "/api/auth/register",
            "login": "/api/auth/login",
            "messages": "/api/chat/messages",
            "websocket": "/ws/chat"
        })
    );
    Ok(())
}

async fn register_answers_201_with_id_username_and_created_at(app: &TestApp) -> Result<()> {
    let response = app.register("alice").await?;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await?;
    assert!(body["id"].is_i64());
    assert_eq!(body["username"], "alice");
    let created = body["created_at"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    assert!(body.get("password").is_none() && body.get("hashed_password").is_none());
    Ok(())
}

async fn register_with_a_taken_name_answers_400_username_already_registered(
    app: &TestApp,
) -> Result<()> {
    assert_eq!(app.register("alice").await?.status(), 201);
    for name in ["alice", "ALICE"] {
        let response = app.register(name).await?;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await?;
        assert_eq!(body, json!({"detail": "Username already registered"}));
    }
    Ok(())
}

async fn register_with_a_malformed_body_answers_422_with_a_detail(app: &TestApp) -> Result<()> {
    let bodies = [
        app.http
            .post(app.url("/api/auth/register"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await?,
        app.post_json("/api/auth/register", &json!({"username": "bob"}))
            .await?,
        app.post_json("/api/auth/register", &json!(["bob", "pw"]))
            .await?,
    ];
    for response in bodies {
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await?;
        assert!(body["detail"].is_string(), "{body}");
    }
    Ok(())
}

async fn register_enforces_the_username_and_password_rules(app: &TestApp) -> Result<()> {
    let cases = [
        (
            json!({"username": "al", "password": "long enough"}),
            "username",
        ),
        (
            json!({"username": "bad name", "password": "long enough"}),
            "username",
        ),
        (
            json!({"username": "carol", "password": "short"}),
            "at least 8",
        ),
        (
            json!({"username": "carol", "password": "x".repeat(73)}),
            "72 bytes",
        ),
    ];
    for (body, expected) in cases {
        let response = app.post_json("/api/auth/register", &body).await?;
        assert_eq!(response.status(), 422, "{body}");
        let detail: Value = response.json().await?;
        assert!(
            detail["detail"]
                .as_str()
                .is_some_and(|d| d.contains(expected)),
            "{detail} should mention {expected}"
        );
    }
    // 64 ASCII characters are a valid password.
    let response = app
        .post_json(
            "/api/auth/register",
            &json!({"username": "dave", "password": "p".repeat(64)}),
        )
        .await?;
    assert_eq!(response.status(), 201);
    Ok(())
}

async fn login_answers_a_bearer_token_for_a_json_body(app: &TestApp) -> Result<()> {
    app.register("alice").await?;
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({"username": "alice", "password": "correct-horse"}),
        )
        .await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(body["token_type"], "bearer");
    let token = body["access_token"].as_str().unwrap_or_default();
    let claims = app.tokens.verify(token)?;
    assert_eq!(claims.sub, "alice");
    Ok(())
}

async fn login_failures_are_indistinguishable_401s_with_www_authenticate(
    app: &TestApp,
) -> Result<()> {
    app.register("alice").await?;
    for body in [
        json!({"username": "alice", "password": "wrong-password"}),
        json!({"username": "nobody", "password": "correct-horse"}),
        json!({"username": "x", "password": "correct-horse"}),
    ] {
        let response = app.post_json("/api/auth/login", &body).await?;
        assert_eq!(response.status(), 401, "{body}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let detail: Value = response.json().await?;
        assert_eq!(detail, json!({"detail": "Incorrect username or password"}));
    }
    Ok(())
}

async fn history_returns_the_newest_messages_oldest_first_and_decrypted(
    app: &TestApp,
) -> Result<()> {
    let token = app.user("alice").await?;
    let mut client = app.connect(&token).await?;
    for i in 1..=5 {
        client
            .send_acked("general", &format!("message {i}"), &format!("c{i}"))
            .await?;
    }
    let response = app
        .http
        .get(app.url(&format!("/api/chat/messages?token={token}&limit=3")))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let items: Vec<Value> = response.json().await?;
    let contents: Vec<&str> = items.iter().filter_map(|i| i["content"].as_str()).collect();
    assert_eq!(contents, ["message 3", "message 4", "message 5"]);
    let first = &items[0];
    assert!(first["id"].is_i64() && first["user_id"].is_i64());
    assert_eq!(first["username"], "alice");
    assert!(first["created_at"].is_string());
    // The default limit is 50.
    let all: Vec<Value> = app
        .http
        .get(app.url(&format!("/api/chat/messages?token={token}")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(all.len(), 5);
    Ok(())
}

async fn history_accepts_the_authorization_header(app: &TestApp) -> Result<()> {
    let token = app.user("alice").await?;
    let response = app.get_authed("/api/chat/messages", &token).await?;
    assert_eq!(response.status(), 200);
    // The header wins over a bad query token.
    let response = app
        .http
        .get(app.url("/api/chat/messages?token=garbage"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(())
}

async fn history_refuses_missing_bad_and_orphaned_tokens_with_401(app: &TestApp) -> Result<()> {
    let orphan = app
        .tokens
        .issue(&Username::parse("ghost")?, chat_auth::new_session_id())?
        .token;
    for path in [
        "/api/chat/messages".to_owned(),
        "/api/chat/messages?token=not-a-jwt".to_owned(),
        format!("/api/chat/messages?token={orphan}"),
    ] {
        let response = app.http.get(app.url(&path)).send().await?;
        assert_eq!(response.status(), 401, "{path}");
        let body: Value = response.json().await?;
        assert!(body["detail"].is_string());
    }
    Ok(())
}

async fn websocket_refuses_a_bad_token_before_the_upgrade(app: &TestApp) -> Result<()> {
    for query in ["", "?token=nonsense"] {
        let url = format!("ws://{}/ws/chat{query}", app.address);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403);
            }
            other => anyhow::bail!("expected a 403, got {other:?}"),
        }
    }
    Ok(())
}

async fn websocket_greets_announces_and_broadcasts_like_the_seed(app: &TestApp) -> Result<()> {
    let alice_token = app.user("alice").await?;
    let bob_token = app.user("bob").await?;
    let url = format!("ws://{}/ws/chat?token={alice_token}", app.address);
    let (mut raw, _) = tokio_tungstenite::connect_async(url).await?;
    let greeting = futures_util::StreamExt::next(&mut raw).await;
    let greeting = match greeting {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => text.to_string(),
        other => anyhow::bail!("no greeting: {other:?}"),
    };
    assert_eq!(
        greeting,
        r#"{"type":"system","message":"Connected as alice"}"#
    );
    let mut alice = crate::helpers::Client::from_stream(raw);

    let mut bob = app.connect(&bob_token).await?;
    assert_eq!(
        alice.recv().await?,
        json!({"type": "system", "message": "bob joined the chat"})
    );
    bob.send(json!({"type": "message", "content": "hello, world"}))
        .await?;
    for client in [&mut alice, &mut bob] {
        let frame = client.recv_type("message").await?;
        assert_eq!(frame["username"], "bob");
        assert_eq!(frame["content"], "hello, world");
        let timestamp = frame["timestamp"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
    }
    bob.close().await?;
    assert_eq!(
        alice.recv_type("system").await?,
        json!({"type": "system", "message": "bob left the chat"})
    );
    Ok(())
}

async fn websocket_ignores_blank_messages_and_stores_nothing(app: &TestApp) -> Result<()> {
    let token = app.user("alice").await?;
    let mut client = app.connect(&token).await?;
    for blank in ["", "   ", "\n\t"] {
        client
            .send(json!({"type": "message", "content": blank}))
            .await?;
        let error = client.recv_type("error").await?;
        assert_eq!(error["code"], "blank_message");
    }
    client.expect_no("message").await?;
    let items: Vec<Value> = app
        .get_authed("/api/chat/messages", &token)
        .await?
        .json()
        .await?;
    assert!(items.is_empty());
    Ok(())
}

async fn websocket_messages_are_stored_before_they_are_broadcast(app: &TestApp) -> Result<()> {
    let token = app.user("alice").await?;
    let mut client = app.connect(&token).await?;
    client
        .send(json!({"type": "message", "content": "durable"}))
        .await?;
    let frame = client.recv_type("message").await?;
    // The moment the broadcast arrives, the message is in the history.
    let items: Vec<Value> = app
        .get_authed("/api/chat/messages", &token)
        .await?
        .json()
        .await?;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["content"], "durable");
    assert_eq!(items[0]["id"], frame["id"]);
    Ok(())
}
