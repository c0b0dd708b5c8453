//! The token lifecycle: refresh tokens rotated on use, a reused one ending
//! its session, sign-out ending a session everywhere, `iss`/`aud` checks,
//! tokens of the original backend, and sockets that live as long as their
//! token and session.

use std::time::Duration;

use anyhow::{Result, bail};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Client, SECRET, TestApp, Tokens, Tweaks};

crate::backend_tests!(
    login_returns_a_refresh_token_and_its_lifetime_beside_the_seed_fields,
    a_refresh_rotates_both_tokens_and_the_new_access_token_works,
    a_reused_refresh_token_ends_the_whole_session_and_its_sockets,
    concurrent_refreshes_with_one_token_let_exactly_one_succeed,
    unknown_and_malformed_refresh_requests_are_refused,
    logout_ends_the_session_for_rest_and_closes_its_sockets_with_1008,
    logout_leaves_the_users_other_sessions_open,
    tokens_without_iss_and_aud_or_for_another_deployment_are_refused,
    an_auth_frame_with_a_fresh_token_of_the_session_is_acknowledged,
    an_auth_frame_with_a_bad_or_foreign_token_gets_an_error_and_changes_nothing,
);

/// Signs `claims` with the test servers' secret, as only a holder of the
/// secret could.
fn sign(claims: &Value) -> Result<String> {
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )?)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims of a token, read without checking it.
fn claims_of(token: &str) -> Result<Value> {
    use base64::Engine;
    let Some(payload) = token.split('.').nth(1) else {
        bail!("not a JWT: {token}");
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

pub(crate) async fn me_status(app: &TestApp, token: &str) -> Result<u16> {
    Ok(app
        .get_authed("/api/users/me", token)
        .await?
        .status()
        .as_u16())
}

/// Sends a ping and waits for the pong: the socket is open and served.
pub(crate) async fn still_open(client: &mut Client) -> Result<()> {
    client.send(json!({"type": "ping"})).await?;
    client.recv_type("pong").await?;
    Ok(())
}

/// Waits for the server to close the socket; returns the code and reason.
pub(crate) async fn close_of(client: &mut Client) -> Result<(u16, String)> {
    match client.closed().await? {
        Some(frame) => Ok((u16::from(frame.code), frame.reason.to_string())),
        None => bail!("the socket ended without a close frame"),
    }
}

async fn login_returns_a_refresh_token_and_its_lifetime_beside_the_seed_fields(
    app: &TestApp,
) -> Result<()> {
    app.register("alice").await?;
    let response = app
        .post_json(
            "/api/auth/login",
            &json!({"username": "alice", "password": "correct-horse"}),
        )
        .await?;
    assert_eq!(response.status(), 200);
    let text = response.text().await?;
    let body: Value = serde_json::from_str(&text)?;
    // The seed's two fields, unchanged.
    assert_eq!(body["token_type"], "bearer");
    let access = body["access_token"].as_str().unwrap_or_default();
    assert_eq!(app.tokens.verify(access)?.sub, "alice");
    // The additions.
    let refresh = body["refresh_token"].as_str().unwrap_or_default();
    assert_eq!(refresh.len(), 43, "{body}");
    assert!(
        refresh
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{refresh}"
    );
    let expires_in = body["expires_in"].as_u64().unwrap_or_default();
    assert!((1_795..=1_800).contains(&expires_in), "{body}");
    // In this order: the seed's fields first.
    let positions: Vec<Option<usize>> = [
        "\"access_token\"",
        "\"token_type\"",
        "\"refresh_token\"",
        "\"expires_in\"",
    ]
    .iter()
    .map(|key| text.find(key))
    .collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.is_sorted(),
        "{text}"
    );
    assert_eq!(
        body.as_object().map(serde_json::Map::len),
        Some(4),
        "{text}"
    );
    // The access token names this deployment and a session.
    let claims = claims_of(access)?;
    assert_eq!(claims["iss"], "chat-server");
    assert_eq!(claims["aud"], "chat");
    assert_eq!(claims["sid"].as_str().map(str::len), Some(32), "{claims}");
    // Two logins are two sessions.
    let again = app.sign_in("alice").await?;
    assert_ne!(claims_of(&again.access)?["sid"], claims["sid"]);
    assert_ne!(again.refresh, refresh);
    Ok(())
}

async fn a_refresh_rotates_both_tokens_and_the_new_access_token_works(app: &TestApp) -> Result<()> {
    app.register("alice").await?;
    let first = app.sign_in("alice").await?;
    let response = app.refresh(&first.refresh).await?;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await?;
    assert_eq!(body["token_type"], "bearer");
    assert!(
        body["expires_in"].as_u64().is_some_and(|s| s > 1_700),
        "{body}"
    );
    let second = Tokens::from_body(&body)?;
    assert_ne!(second.refresh, first.refresh);
    // Same session.
    assert_eq!(
        claims_of(&second.access)?["sid"],
        claims_of(&first.access)?["sid"]
    );
    assert_eq!(me_status(app, &second.access).await?, 200);
    // The chain goes on with the new refresh token.
    let third = app.refreshed(&second.refresh).await?;
    assert_eq!(me_status(app, &third.access).await?, 200);
    Ok(())
}

async fn a_reused_refresh_token_ends_the_whole_session_and_its_sockets(
    app: &TestApp,
) -> Result<()> {
    app.register("alice").await?;
    let first = app.sign_in("alice").await?;
    let mut socket = app.connect(&first.access).await?;
    let second = app.refreshed(&first.refresh).await?;

    // The first refresh token again: someone kept a copy.
    let reused = app.refresh(&first.refresh).await?;
    assert_eq!(reused.status(), 401);
    assert_eq!(
        reused
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let body: Value = reused.json().await?;
    assert!(body["detail"].is_string(), "{body}");

    // The whole family is gone: the token the rotation issued, every access
    // token of the session, and its open socket.
    assert_eq!(app.refresh(&second.refresh).await?.status(), 401);
    assert_eq!(me_status(app, &second.access).await?, 401);
    assert_eq!(me_status(app, &first.access).await?, 401);
    assert_eq!(
        close_of(&mut socket).await?,
        (1008, "session ended".to_owned())
    );
    // Signing in again works.
    let fresh = app.sign_in("alice").await?;
    assert_eq!(me_status(app, &fresh.access).await?, 200);
    Ok(())
}

async fn concurrent_refreshes_with_one_token_let_exactly_one_succeed(app: &TestApp) -> Result<()> {
    app.register("alice").await?;
    for _ in 0..3 {
        let tokens = app.sign_in("alice").await?;
        let attempts = (0..6).map(|_| app.refresh(&tokens.refresh));
        let statuses: Vec<u16> = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .map(|response| response.map(|r| r.status().as_u16()))
            .collect::<Result<_>>()?;
        assert_eq!(
            statuses.iter().filter(|status| **status == 200).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|status| [200, 401].contains(status)),
            "{statuses:?}"
        );
    }
    Ok(())
}

async fn unknown_and_malformed_refresh_requests_are_refused(app: &TestApp) -> Result<()> {
    for token in ["", "not-a-token", &"A".repeat(43)] {
        let response = app.refresh(token).await?;
        assert_eq!(response.status(), 401, "{token:?}");
        let body: Value = response.json().await?;
        assert!(body["detail"].is_string());
    }
    for body in [json!({}), json!({"refresh_token": 7}), json!([])] {
        let response = app.post_json("/api/auth/refresh", &body).await?;
        assert_eq!(response.status(), 422, "{body}");
    }
    // An access token is not a refresh token.
    app.register("alice").await?;
    let tokens = app.sign_in("alice").await?;
    assert_eq!(app.refresh(&tokens.access).await?.status(), 401);
    // Nor is the refresh token an access token.
    assert_eq!(me_status(app, &tokens.refresh).await?, 401);
    Ok(())
}

async fn logout_ends_the_session_for_rest_and_closes_its_sockets_with_1008(
    app: &TestApp,
) -> Result<()> {
    app.register("alice").await?;
    app.register("bob").await?;
    let alice = app.sign_in("alice").await?;
    let bob = app.sign_in("bob").await?;
    let mut alice_socket = app.connect(&alice.access).await?;
    let mut second_alice_socket = app.connect(&alice.access).await?;
    let mut bob_socket = app.connect(&bob.access).await?;
    assert_eq!(me_status(app, &alice.access).await?, 200);
    // Twice: the second page is of a room the server knows, whose session
    // check also reads the room's newest seq.
    let page = "/api/rooms/general/messages";
    for _ in 0..2 {
        assert_eq!(app.get_authed(page, &alice.access).await?.status(), 200);
    }

    let response = app.logout(&alice.access).await?;
    assert_eq!(response.status(), 204);

    // Every request with the session's tokens is refused from now on.
    assert_eq!(me_status(app, &alice.access).await?, 401);
    let history = app
        .http
        .get(app.url(&format!("/api/chat/messages?token={}", alice.access)))
        .send()
        .await?;
    assert_eq!(history.status(), 401);
    assert_eq!(app.get_authed(page, &alice.access).await?.status(), 401);
    assert_eq!(app.get_authed(page, &bob.access).await?.status(), 200);
    assert_eq!(app.refresh(&alice.refresh).await?.status(), 401);
    assert_eq!(app.logout(&alice.access).await?.status(), 401);
    let url = format!("ws://{}/ws/chat?token={}", app.address, alice.access);
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => bail!("expected 403 at the upgrade, got {other:?}"),
    }
    // Both open sockets of the session are closed; others stay.
    for socket in [&mut alice_socket, &mut second_alice_socket] {
        assert_eq!(close_of(socket).await?, (1008, "session ended".to_owned()));
    }
    still_open(&mut bob_socket).await?;
    assert_eq!(me_status(app, &bob.access).await?, 200);
    Ok(())
}

async fn logout_leaves_the_users_other_sessions_open(app: &TestApp) -> Result<()> {
    app.register("alice").await?;
    let laptop = app.sign_in("alice").await?;
    let phone = app.sign_in("alice").await?;
    let mut phone_socket = app.connect(&phone.access).await?;
    assert_eq!(app.logout(&laptop.access).await?.status(), 204);
    assert_eq!(me_status(app, &laptop.access).await?, 401);
    assert_eq!(me_status(app, &phone.access).await?, 200);
    still_open(&mut phone_socket).await?;
    let renewed = app.refreshed(&phone.refresh).await?;
    assert_eq!(me_status(app, &renewed.access).await?, 200);
    Ok(())
}

async fn tokens_without_iss_and_aud_or_for_another_deployment_are_refused(
    app: &TestApp,
) -> Result<()> {
    app.register("alice").await?;
    let genuine = app.sign_in("alice").await?;
    let sid = claims_of(&genuine.access)?["sid"].clone();
    let exp = now() + 600;
    let forged = [
        // What the original backend minted: only `sub` and `exp`.
        json!({"sub": "alice", "exp": exp}),
        json!({"sub": "alice", "exp": exp, "sid": sid}),
        json!({"sub": "alice", "exp": exp, "iss": "chat-server", "aud": "chat"}),
        json!({"sub": "alice", "exp": exp, "iss": "someone-else", "aud": "chat", "sid": sid}),
        json!({"sub": "alice", "exp": exp, "iss": "chat-server", "aud": "another-service", "sid": sid}),
    ];
    for claims in forged {
        let token = sign(&claims)?;
        assert_eq!(me_status(app, &token).await?, 401, "{claims}");
        let url = format!("ws://{}/ws/chat?token={token}", app.address);
        assert!(
            tokio_tungstenite::connect_async(url).await.is_err(),
            "the upgrade was accepted for {claims}"
        );
    }
    // The same claims with this deployment's `iss` and `aud` pass: the
    // refusals above are about those claims, not the signature.
    let good = sign(
        &json!({"sub": "alice", "exp": exp, "iss": "chat-server", "aud": "chat", "sid": sid}),
    )?;
    assert_eq!(me_status(app, &good).await?, 200);
    Ok(())
}

async fn an_auth_frame_with_a_fresh_token_of_the_session_is_acknowledged(
    app: &TestApp,
) -> Result<()> {
    app.register("alice").await?;
    let first = app.sign_in("alice").await?;
    let mut socket = app.connect(&first.access).await?;
    let second = app.refreshed(&first.refresh).await?;
    socket
        .send(json!({"type": "auth", "token": second.access}))
        .await?;
    let frame = socket.recv_type("authenticated").await?;
    let expected = app.tokens.verify(&second.access)?.expires_at();
    let expires_at = frame["expires_at"]
        .as_str()
        .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&chrono::Utc));
    assert_eq!(expires_at, expected, "{frame}");
    still_open(&mut socket).await?;
    Ok(())
}

async fn an_auth_frame_with_a_bad_or_foreign_token_gets_an_error_and_changes_nothing(
    app: &TestApp,
) -> Result<()> {
    app.register("alice").await?;
    app.register("bob").await?;
    let alice = app.sign_in("alice").await?;
    let other_session = app.sign_in("alice").await?;
    let bob = app.sign_in("bob").await?;
    let mut socket = app.connect(&alice.access).await?;
    for token in [
        "garbage".to_owned(),
        bob.access.clone(),
        other_session.access.clone(),
        sign(&json!({"sub": "alice", "exp": now() + 600}))?,
    ] {
        socket.send(json!({"type": "auth", "token": token})).await?;
        let error = socket.recv_type("error").await?;
        assert_eq!(error["code"], "invalid_token", "{error}");
        still_open(&mut socket).await?;
    }
    socket.send(json!({"type": "auth"})).await?;
    let error = socket.recv_type("error").await?;
    assert_eq!(error["code"], "invalid_frame", "{error}");
    still_open(&mut socket).await?;
    Ok(())
}

/// Servers whose access tokens live three seconds.
mod short_lived {
    use super::*;

    fn tweaks() -> Tweaks {
        Tweaks {
            token_ttl: Some(Duration::from_secs(3)),
            ..Tweaks::default()
        }
    }

    crate::backend_tests!(
        tweaks = super::tweaks();
        a_socket_is_closed_with_1008_when_its_token_expires,
        auth_frames_keep_a_socket_open_past_its_first_tokens_expiry,
    );

    async fn a_socket_is_closed_with_1008_when_its_token_expires(app: &TestApp) -> Result<()> {
        app.register("alice").await?;
        let tokens = app.sign_in("alice").await?;
        let mut socket = app.connect(&tokens.access).await?;
        // Well within the generous wait of `closed`.
        assert_eq!(
            close_of(&mut socket).await?,
            (1008, "token expired".to_owned())
        );
        Ok(())
    }

    async fn auth_frames_keep_a_socket_open_past_its_first_tokens_expiry(
        app: &TestApp,
    ) -> Result<()> {
        app.register("alice").await?;
        let mut tokens = app.sign_in("alice").await?;
        let mut socket = app.connect(&tokens.access).await?;
        let started = std::time::Instant::now();
        // Twice the first token's life, renewing every second.
        while started.elapsed() < Duration::from_secs(6) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokens = app.refreshed(&tokens.refresh).await?;
            socket
                .send(json!({"type": "auth", "token": tokens.access}))
                .await?;
            socket.recv_type("authenticated").await?;
        }
        still_open(&mut socket).await?;
        // Without renewals it closes when the last token expires.
        assert_eq!(
            close_of(&mut socket).await?,
            (1008, "token expired".to_owned())
        );
        Ok(())
    }
}

/// Servers in the cut-over window: `CHAT_ACCEPT_LEGACY_TOKENS=true`.
mod legacy {
    use super::*;

    fn tweaks() -> Tweaks {
        Tweaks {
            legacy_tokens: true,
            ..Tweaks::default()
        }
    }

    crate::backend_tests!(
        tweaks = super::tweaks();
        a_token_of_the_original_backend_is_accepted_but_cannot_be_signed_out,
        current_tokens_keep_their_checks_beside_legacy_ones,
    );

    async fn a_token_of_the_original_backend_is_accepted_but_cannot_be_signed_out(
        app: &TestApp,
    ) -> Result<()> {
        app.register("alice").await?;
        let legacy = sign(&json!({"sub": "alice", "exp": now() + 600}))?;
        assert_eq!(me_status(app, &legacy).await?, 200);
        let history = app
            .http
            .get(app.url(&format!("/api/chat/messages?token={legacy}")))
            .send()
            .await?;
        assert_eq!(history.status(), 200);
        let mut socket = app.connect(&legacy).await?;
        socket
            .send(json!({"type": "message", "content": "from the old client"}))
            .await?;
        let message = socket.recv_type("message").await?;
        assert_eq!(message["username"], "alice");
        // It has no session: signing out is refused and changes nothing.
        let response = app.logout(&legacy).await?;
        assert_eq!(response.status(), 400);
        assert_eq!(me_status(app, &legacy).await?, 200);
        // A legacy token is still checked for expiry and for its user.
        let expired = sign(&json!({"sub": "alice", "exp": now() - 600}))?;
        assert_eq!(me_status(app, &expired).await?, 401);
        let ghost = sign(&json!({"sub": "ghost", "exp": now() + 600}))?;
        assert_eq!(me_status(app, &ghost).await?, 401);
        Ok(())
    }

    async fn current_tokens_keep_their_checks_beside_legacy_ones(app: &TestApp) -> Result<()> {
        app.register("alice").await?;
        let tokens = app.sign_in("alice").await?;
        assert_eq!(me_status(app, &tokens.access).await?, 200);
        let sid = claims_of(&tokens.access)?["sid"].clone();
        let exp = now() + 600;
        for claims in [
            json!({"sub": "alice", "exp": exp, "iss": "someone-else", "aud": "chat", "sid": sid}),
            json!({"sub": "alice", "exp": exp, "iss": "chat-server", "aud": "chat"}),
            json!({"sub": "alice", "exp": exp, "sid": sid}),
        ] {
            assert_eq!(me_status(app, &sign(&claims)?).await?, 401, "{claims}");
        }
        // Signing out still ends a current session.
        assert_eq!(app.logout(&tokens.access).await?.status(), 204);
        assert_eq!(me_status(app, &tokens.access).await?, 401);
        Ok(())
    }
}
