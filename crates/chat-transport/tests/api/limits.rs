//! Abuse limits: per-address sign-up and sign-in limits, per-connection
//! frame limits, browser origins and connections per user.

use anyhow::{Result, bail};
use chat_transport::{Rate, RateLimits};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{TestApp, Tweaks, retry_after};

async fn spawn(tweaks: Tweaks) -> Result<TestApp> {
    TestApp::spawn_sqlite(tweaks).await
}

fn limits() -> RateLimits {
    RateLimits {
        register: Rate::per_minute(2),
        login: Rate::per_minute(3),
        ws_frames: Rate {
            burst: 5,
            per_second: 0.1,
        },
        key_package_claims: Rate::per_minute(2),
        ws_strikes: 10,
    }
}

async fn with_app<F, Fut>(tweaks: Tweaks, body: F) -> Result<()>
where
    F: FnOnce(TestApp) -> Fut,
    Fut: std::future::Future<Output = (TestApp, Result<()>)>,
{
    let app = spawn(tweaks).await?;
    let (app, result) = body(app).await;
    app.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_and_sign_in_are_limited_per_address_with_retry_after() -> Result<()> {
    let tweaks = Tweaks {
        rate_limits: Some(limits()),
        ..Tweaks::default()
    };
    with_app(tweaks, |app| async move {
        let result = async {
            assert_eq!(app.register("alice").await?.status(), 201);
            assert_eq!(app.register("bob").await?.status(), 201);
            let refused = app.register("carol").await?;
            assert_eq!(refused.status(), 429);
            let retry = retry_after(&refused);
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            let body: Value = refused.json().await?;
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("too many"))
            );
            // Sign-in has a bucket of its own.
            for _ in 0..3 {
                app.login("alice").await?;
            }
            let response = app
                .post_json(
                    "/api/auth/login",
                    &json!({"username": "alice", "password": "correct-horse"}),
                )
                .await?;
            assert_eq!(response.status(), 429);
            Ok(())
        }
        .await;
        (app, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_header_changes_nothing() -> Result<()> {
    let tweaks = Tweaks {
        rate_limits: Some(limits()),
        ..Tweaks::default()
    };
    with_app(tweaks, |app| async move {
        let result = async {
            for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
                let response = app
                    .http
                    .post(app.url("/api/auth/register"))
                    .header("x-forwarded-for", format!("203.0.113.{i}"))
                    .json(&json!({"username": name, "password": "correct-horse"}))
                    .send()
                    .await?;
                let expected = if i < 2 { 201 } else { 429 };
                assert_eq!(response.status(), expected, "{name}");
            }
            Ok(())
        }
        .await;
        (app, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_flood_gets_errors_then_a_close_while_others_are_unaffected() -> Result<()> {
    let tweaks = Tweaks {
        rate_limits: Some(RateLimits {
            register: Rate::per_minute(100),
            login: Rate::per_minute(100),
            ..limits()
        }),
        ..Tweaks::default()
    };
    with_app(tweaks, |app| async move {
        let result = async {
            let flooder = app.user("flooder").await?;
            let calm = app.user("calm").await?;
            let mut flood = app.connect(&flooder).await?;
            let mut other = app.connect(&calm).await?;
            for _ in 0..40 {
                flood.send(json!({"type": "ping"})).await?;
            }
            let (mut pongs, mut limited) = (0, 0);
            let close = loop {
                match flood.recv().await {
                    Ok(frame) if frame["type"] == "pong" => pongs += 1,
                    Ok(frame) if frame["code"] == "rate_limited" => limited += 1,
                    Ok(_) => {}
                    Err(error) => break error.to_string(),
                }
            };
            assert_eq!(pongs, 5, "the burst is answered");
            assert!(limited >= 9, "{limited} refusals");
            assert!(close.contains("Policy"), "{close}");
            other.send(json!({"type": "ping"})).await?;
            other.recv_type("pong").await?;
            Ok(())
        }
        .await;
        (app, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_origins_must_be_allowed_and_others_need_none() -> Result<()> {
    let tweaks = Tweaks {
        cors_origins: vec!["https://chat.example.com".to_owned()],
        ..Tweaks::default()
    };
    with_app(tweaks, |app| async move {
        let result = async {
            let token = app.user("alice").await?;
            let url = format!("ws://{}/ws/chat?token={token}", app.address);
            for (origin, allowed) in [
                (Some("https://evil.example"), false),
                (Some("https://chat.example.com"), true),
                (None, true),
            ] {
                let mut request = url.as_str().into_client_request()?;
                if let Some(origin) = origin {
                    request.headers_mut().insert("origin", origin.parse()?);
                }
                match tokio_tungstenite::connect_async(request).await {
                    Ok(_) if allowed => {}
                    Err(tokio_tungstenite::tungstenite::Error::Http(response)) if !allowed => {
                        assert_eq!(response.status(), 403);
                    }
                    other => bail!("{origin:?}: unexpected {:?}", other.map(|_| ())),
                }
            }
            Ok(())
        }
        .await;
        (app, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_may_hold_only_so_many_connections() -> Result<()> {
    let tweaks = Tweaks {
        max_connections_per_user: Some(2),
        ..Tweaks::default()
    };
    with_app(tweaks, |app| async move {
        let result = async {
            let token = app.user("alice").await?;
            let _first = app.connect(&token).await?;
            let _second = app.connect(&token).await?;
            match app.connect(&token).await {
                Err(error) => assert!(error.to_string().contains("429"), "{error}"),
                Ok(_) => bail!("a third connection was accepted"),
            }
            Ok(())
        }
        .await;
        (app, result)
    })
    .await
}
