//! `GET /metrics`: Prometheus's text format, counters that move with what
//! users do, labels that name no user, room or raw path, and the token and
//! listener an operator can put in front of it.

use anyhow::{Result, ensure};
use serde_json::json;

use crate::helpers::{TestApp, Tweaks, sample};

crate::backend_tests!(
    metrics_answer_in_prometheus_text_format_with_every_gauge_of_the_node,
    counters_and_histograms_move_when_a_message_is_sent_and_history_is_read,
    no_metric_label_carries_a_user_or_room_name_or_a_raw_path,
);

mod with_token {
    use super::metrics_refuse_a_request_without_the_token_or_with_a_wrong_one;

    crate::backend_tests!(
        tweaks = crate::helpers::Tweaks {
            metrics_token: Some(super::super::TOKEN.to_owned()),
            ..Default::default()
        };
        metrics_refuse_a_request_without_the_token_or_with_a_wrong_one,
    );
}

/// The metrics token of the tests that set one.
const TOKEN: &str = "scrape-secret-of-the-tests";

/// Checks that every line of `text` is a comment or a sample of Prometheus's
/// text format: a metric name, optional labels, a number.
fn check_exposition(text: &str) -> Result<()> {
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            ensure!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "unexpected comment: {line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("no value: {line}"))?;
        ensure!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "not a number: {line}"
        );
        let name = series.split('{').next().unwrap_or_default();
        ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "not a metric name: {line}"
        );
        ensure!(
            series.contains('{') == series.ends_with('}'),
            "unbalanced labels: {line}"
        );
    }
    Ok(())
}

async fn metrics_answer_in_prometheus_text_format_with_every_gauge_of_the_node(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let _first = app.connect(&alice).await?;
    let _second = app.connect(&alice).await?;
    let _third = app.connect(&bob).await?;

    let response = app.http.get(app.url("/metrics")).send().await?;
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await?;
    check_exposition(&text)?;
    assert!(text.contains("# TYPE chat_websocket_connections gauge"));
    assert!(text.contains("# HELP chat_websocket_connections "));
    // This node's own state, whatever other servers of this process do.
    assert_eq!(sample(&text, "chat_websocket_connections", &[]), 3.0);
    assert_eq!(sample(&text, "chat_authenticated_users", &[]), 2.0);
    assert_eq!(sample(&text, "chat_writer_queue_depth", &[]), 0.0);
    assert!(sample(&text, "chat_writer_queue_capacity", &[]) > 0.0);
    assert!(sample(&text, "chat_db_pool_max_connections", &["shard=\"0\""]) > 0.0);
    assert!(text.contains("chat_db_pool_connections{shard=\"0\",state=\"idle\"}"));
    assert!(text.contains("chat_db_pool_connections{shard=\"0\",state=\"in_use\"}"));
    assert_eq!(
        sample(
            &text,
            "chat_build_info",
            &[&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // A single node has no link to Redis to report.
    assert!(!text.contains("chat_redis_link_up"));
    Ok(())
}

async fn counters_and_histograms_move_when_a_message_is_sent_and_history_is_read(
    app: &TestApp,
) -> Result<()> {
    let alice = app.user("alice").await?;
    let bob = app.user("bob").await?;
    let mut sender = app.connect(&alice).await?;
    let mut receiver = app.connect(&bob).await?;
    let before = app.metrics().await?;

    sender.send_acked("general", "counted", "c1").await?;
    assert_eq!(receiver.recv_type("message").await?["content"], "counted");
    assert_eq!(
        app.get_authed("/api/chat/messages", &bob).await?.status(),
        200
    );
    let refused = app
        .post_json(
            "/api/auth/login",
            &json!({"username": "alice", "password": "not-her-password"}),
        )
        .await?;
    assert_eq!(refused.status(), 401);
    let unreadable = app
        .post_json("/api/auth/login", &json!({"username": "alice"}))
        .await?;
    assert_eq!(unreadable.status(), 422);

    let after = app.metrics().await?;
    let moved =
        |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    assert!(moved("chat_messages_committed_total", &[]) >= 1.0);
    // At least the sender's ack and the receiver's message.
    assert!(moved("chat_frames_delivered_total", &[]) >= 2.0);
    assert!(moved("chat_commit_batch_size_count", &[]) >= 1.0);
    assert!(moved("chat_commit_seconds_count", &[]) >= 1.0);
    assert!(
        moved(
            "chat_history_request_seconds_count",
            &["route=\"/api/chat/messages\""]
        ) >= 1.0
    );
    assert!(moved("chat_sign_ins_total", &["outcome=\"refused\""]) >= 1.0);
    assert!(moved("chat_sign_ins_total", &["outcome=\"invalid\""]) >= 1.0);
    assert!(
        sample(&after, "chat_sign_ins_total", &["outcome=\"ok\""]) >= 2.0,
        "alice and bob signed in"
    );
    assert!(
        moved(
            "chat_http_request_seconds_count",
            &[
                "method=\"POST\"",
                "route=\"/api/auth/login\"",
                "status=\"401\""
            ]
        ) >= 1.0
    );
    // Buckets, so that Prometheus can aggregate them across nodes.
    assert!(after.contains("chat_commit_seconds_bucket{le=\"0.005\"}"));
    Ok(())
}

async fn no_metric_label_carries_a_user_or_room_name_or_a_raw_path(app: &TestApp) -> Result<()> {
    let user = "zebulon-metrics";
    let room = "quiet-cellar";
    let token = app.user(user).await?;
    let created = app
        .post_authed("/api/rooms", &token, &json!({"name": room}))
        .await?;
    assert_eq!(created.status(), 201);
    let mut socket = app.connect(&token).await?;
    socket.send_acked(room, "hello", "n1").await?;
    let page = app
        .get_authed(&format!("/api/rooms/{room}/messages"), &token)
        .await?;
    assert_eq!(page.status(), 200);
    let missing = app.http.get(app.url("/no-such-place/deep")).send().await?;
    assert_eq!(missing.status(), 404);

    let text = app.metrics().await?;
    for secret in [user, room, "no-such-place"] {
        assert!(!text.contains(secret), "/metrics names {secret}:\n{text}");
    }
    // The room's page is counted by its route's template.
    assert!(
        sample(
            &text,
            "chat_http_request_seconds_count",
            &["route=\"/api/rooms/{name}/messages\"", "status=\"200\""]
        ) >= 1.0
    );
    assert!(
        sample(
            &text,
            "chat_http_request_seconds_count",
            &["route=\"unmatched\""]
        ) >= 1.0
    );
    Ok(())
}

async fn metrics_refuse_a_request_without_the_token_or_with_a_wrong_one(
    app: &TestApp,
) -> Result<()> {
    let without = app.http.get(app.url("/metrics")).send().await?;
    assert_eq!(without.status(), 401);
    assert_eq!(
        without
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok()),
        Some("Bearer")
    );
    let wrong = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-secret-of-the-tests-but-not")
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    let body = wrong.text().await?;
    assert!(!body.contains("chat_"), "a refusal shows no metric: {body}");
    let right = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(right.status(), 200);
    check_exposition(&right.text().await?)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_have_a_listener_of_their_own_and_leave_the_main_one() -> Result<()> {
    let app = TestApp::spawn_sqlite(Tweaks {
        metrics_listener: true,
        metrics_token: Some(TOKEN.to_owned()),
        ..Tweaks::default()
    })
    .await?;
    let result = async {
        ensure!(app.metrics_address.is_some(), "no metrics listener");
        let main = app
            .http
            .get(app.url("/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        assert_eq!(main.status(), 404);
        let own = app
            .http
            .get(app.metrics_url())
            .bearer_auth(TOKEN)
            .send()
            .await?;
        assert_eq!(own.status(), 200);
        check_exposition(&own.text().await?)?;
        let without = app.http.get(app.metrics_url()).send().await?;
        assert_eq!(without.status(), 401);
        Ok(())
    }
    .await;
    app.stop().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refusals_are_counted_by_limit() -> Result<()> {
    let app = TestApp::spawn_sqlite(Tweaks {
        rate_limits: Some(chat_transport::RateLimits {
            login: chat_transport::Rate::per_minute(1),
            ..chat_transport::RateLimits::default()
        }),
        ..Tweaks::default()
    })
    .await?;
    let result = async {
        let before = app.metrics().await?;
        let attempt = json!({"username": "nobody", "password": "whatever-it-is"});
        assert_eq!(
            app.post_json("/api/auth/login", &attempt).await?.status(),
            401
        );
        assert_eq!(
            app.post_json("/api/auth/login", &attempt).await?.status(),
            429
        );
        let after = app.metrics().await?;
        for (name, label) in [
            ("chat_rate_limit_refusals_total", "limit=\"login\""),
            ("chat_sign_ins_total", "outcome=\"rate_limited\""),
        ] {
            assert!(
                sample(&after, name, &[label]) - sample(&before, name, &[label]) >= 1.0,
                "{name}{{{label}}} did not move"
            );
        }
        Ok(())
    }
    .await;
    app.stop().await;
    result
}
