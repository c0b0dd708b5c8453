//! Start-up as an operator meets it: secrets, data directory, restarts;
//! and the import of the original backend's database (`import`).

mod admin;
mod import;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chat_crypto::FernetKey;
use chat_domain::{MessageBody, RoomName, Username};
use chat_server::{Environment, PreviousKey, Settings};
use chat_storage::NewMessage;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Why the server refuses to start with `settings`, with the whole cause
/// chain; `None` when it starts.
async fn start_up_error(settings: &Settings) -> Option<String> {
    chat_server::build(settings)
        .await
        .err()
        .map(|error| format!("{error:#}"))
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("chat-server-{name}-{}-{nanos}", std::process::id()))
}

fn settings(data_dir: PathBuf) -> Settings {
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".to_owned();
    settings.data_dir = data_dir;
    settings.database_url = None;
    settings.secret_key = None;
    settings.secret_key_previous = None;
    settings.encryption_key = None;
    settings.encryption_keys_previous = None;
    settings.search_key = None;
    settings.search_key_next = None;
    settings.environment = Environment::Development;
    settings.bcrypt_cost = 10;
    settings.workers = Some(1);
    settings.shutdown_grace_secs = 2;
    settings
}

/// Serves until the returned sender fires; returns the base URL.
async fn serve(
    settings: &Settings,
) -> Result<(
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let app = chat_server::build(settings).await?;
    let base = format!("http://{}", app.address());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((base, stop, task))
}

async fn stop_server(
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
) -> Result<()> {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task).await??;
    Ok(())
}

/// Every item `/api/chat/messages?limit=100` returns to `token`.
async fn history_items(http: &reqwest::Client, base: &str, token: &str) -> Result<Vec<Value>> {
    let response = http
        .get(format!("{base}/api/chat/messages?limit=100"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    match body {
        Value::Array(items) => Ok(items),
        _ => bail!("history answered {status}: {body}"),
    }
}

/// The `content` of every item `/api/chat/messages` returns to `token`.
async fn history_contents(http: &reqwest::Client, base: &str, token: &str) -> Result<Vec<String>> {
    Ok(history_items(http, base, token)
        .await?
        .iter()
        .map(|item| item["content"].as_str().unwrap_or_default().to_owned())
        .collect())
}

/// Runs the real binary with `env` and `args`, and waits for it.
async fn run_binary(
    env: Vec<(&'static str, String)>,
    args: Vec<String>,
) -> Result<std::process::Output> {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .env_clear()
            .envs(env)
            .args(args)
            .output()
    })
    .await?
    .context("could not run chat-server")
}

/// The stored user `alice` and the `general` room.
async fn alice_and_general(
    store: &chat_storage::Store,
) -> Result<(chat_storage::User, chat_storage::Room)> {
    let alice = store
        .user_by_name(&Username::parse("alice")?)
        .await?
        .ok_or_else(|| anyhow::anyhow!("alice was not stored"))?;
    let general = store
        .room_by_name(&RoomName::general())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no general room"))?;
    Ok((alice, general))
}

async fn login(http: &reqwest::Client, base: &str) -> Result<String> {
    let body: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": "alice", "password": "correct-horse"}))
        .send()
        .await?
        .json()
        .await?;
    match body["access_token"].as_str() {
        Some(token) => Ok(token.to_owned()),
        None => bail!("login failed: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_reads_the_history_it_wrote_with_generated_keys() -> Result<()> {
    let dir = temp_dir("restart");
    let settings = settings(dir.clone());
    let http = reqwest::Client::new();

    let (base, stop, task) = serve(&settings).await?;
    let registered = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": "alice", "password": "correct-horse"}))
        .send()
        .await?;
    assert_eq!(registered.status(), 201);
    let store = chat_server::open_store(&settings).await?;
    let (alice, general) = alice_and_general(&store).await?;
    store
        .append_messages(vec![NewMessage {
            room_id: general.id,
            user_id: alice.id,
            username: alice.username.clone(),
            body: MessageBody::parse("written before the restart")?,
            client_id: None,
            reply_to: None,
            mls: false,
        }])
        .await?;
    drop(store);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task).await??;

    // The generated secrets are on disk, readable by the owner only.
    for file in ["secret_key", "encryption_key"] {
        let mode = std::fs::metadata(dir.join(file))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    // Same data directory, no keys given: the same keys are used again.
    let (base, stop, task) = serve(&settings).await?;
    let token = login(&http, &base).await?;
    let items: Vec<Value> = http
        .get(format!("{base}/api/chat/messages"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["content"], "written before the restart");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task).await??;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn production_refuses_to_start_without_secrets() -> Result<()> {
    let dir = temp_dir("production");
    let mut settings = settings(dir.clone());
    settings.environment = Environment::Production;
    let error = start_up_error(&settings).await;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("ENCRYPTION_KEY")),
        "{error:?}"
    );

    settings.encryption_key = Some(SecretString::from(
        chat_crypto::FernetKey::generate().to_base64(),
    ));
    let error = start_up_error(&settings).await;
    assert!(
        error.as_deref().is_some_and(|e| e.contains("SEARCH_KEY")),
        "{error:?}"
    );

    settings.search_key = Some(SecretString::from(
        chat_crypto::SearchKey::generate().to_base64(),
    ));
    let error = start_up_error(&settings).await;
    assert!(
        error.as_deref().is_some_and(|e| e.contains("SECRET_KEY")),
        "{error:?}"
    );
    // Nothing was generated behind the operator's back.
    assert!(!dir.join("secret_key").exists());
    assert!(!dir.join("encryption_key").exists());
    assert!(!dir.join("search_key").exists());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn a_short_jwt_secret_is_a_start_up_error() -> Result<()> {
    let dir = temp_dir("short-secret");
    let mut settings = settings(dir.clone());
    settings.secret_key = Some(SecretString::from("too-short".to_owned()));
    let error = start_up_error(&settings).await;
    assert!(
        error.as_deref().is_some_and(|e| e.contains("SECRET_KEY")),
        "{error:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn a_bare_passphrase_is_refused_but_a_prefixed_one_is_accepted() -> Result<()> {
    let dir = temp_dir("passphrase");
    let mut settings = settings(dir.clone());
    settings.encryption_key = Some(SecretString::from("my old passphrase".to_owned()));
    assert!(chat_server::secrets::key_ring(&settings).is_err());
    settings.encryption_key = Some(SecretString::from(
        "passphrase:my old passphrase".to_owned(),
    ));
    assert!(chat_server::secrets::key_ring(&settings).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn the_database_defaults_to_sqlite_in_the_data_directory() {
    let settings = settings(PathBuf::from("/srv/chat"));
    assert_eq!(
        chat_server::database_url(&settings),
        "sqlite:///srv/chat/chat.db"
    );
}

#[test]
fn database_urls_are_logged_without_their_password() {
    assert_eq!(
        chat_server::redacted_url("postgres://chat:s3cret@db.internal:5432/chat"),
        "postgres://chat:***@db.internal:5432/chat"
    );
    assert_eq!(
        chat_server::redacted_url("sqlite://./chat-data/chat.db"),
        "sqlite://./chat-data/chat.db"
    );
}

#[test]
fn cors_origins_must_be_origins() {
    let ok = ["https://chat.example.com", "http://localhost:3000", "*"].map(String::from);
    assert!(chat_server::check_cors_origins(&ok).is_ok());
    for bad in [
        "chat.example.com",
        "https://chat.example.com/app",
        "ftp://x",
    ] {
        assert!(
            chat_server::check_cors_origins(&[bad.to_owned()]).is_err(),
            "{bad}"
        );
    }
}

/// The real binary, stopped with SIGTERM while a client is sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_keeps_acknowledged_messages_and_exits() -> Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = temp_dir("sigterm");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .env_clear()
        .env("CHAT_BIND", format!("127.0.0.1:{port}"))
        .env("CHAT_DATA_DIR", &dir)
        .env("CHAT_BCRYPT_COST", "10")
        .env("CHAT_SHUTDOWN_GRACE_SECS", "5")
        .env("CHAT_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(up, "the server did not start");
    http.post(format!("{base}/api/auth/register"))
        .json(&json!({"username": "alice", "password": "correct-horse"}))
        .send()
        .await?;
    let token = login(&http, &base).await?;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws/chat?token={token}"))
            .await?;
    for i in 0..20 {
        let frame =
            json!({"type": "message", "content": format!("m{i}"), "client_id": format!("c{i}")});
        socket.send(Message::text(frame.to_string())).await?;
    }
    // Wait for the first acknowledgements, then stop the server mid-traffic.
    let mut acked = Vec::new();
    while acked.len() < 5 {
        if let Some(Ok(Message::Text(text))) = socket.next().await {
            let frame: Value = serde_json::from_str(&text)?;
            if frame["type"] == "ack" {
                acked.push(frame["client_id"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    let stopped_at = std::time::Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let mut close_code = None;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await
    {
        match message {
            Ok(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(&text)?;
                if frame["type"] == "ack" {
                    acked.push(frame["client_id"].as_str().unwrap_or_default().to_owned());
                }
            }
            Ok(Message::Close(frame)) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(close_code, Some(1001));
    // The process exits within the grace period.
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = child.try_wait()? {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = exited else {
        let _ = child.kill();
        bail!("the server did not exit after SIGTERM");
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(5 + 2),
        "took {:?}",
        stopped_at.elapsed()
    );

    // Every acknowledged message is stored.
    let settings = settings(dir.clone());
    let store = chat_server::open_store(&settings).await?;
    let general = store
        .room_by_name(&RoomName::general())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no general room"))?;
    let stored: Vec<String> = store
        .latest(general.id, 100)
        .await?
        .into_iter()
        .filter_map(|m| m.client_id.map(|id| id.as_str().to_owned()))
        .collect();
    for id in &acked {
        assert!(stored.contains(id), "acknowledged {id} is missing");
    }
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_rotate_key_a_server_with_only_the_new_keys_reads_all_history() -> Result<()> {
    let dir = temp_dir("rotate-key");
    let key_a = FernetKey::generate();
    let key_b = FernetKey::generate();
    let old_secret = chat_server::secrets::generate_jwt_secret();
    let new_secret = chat_server::secrets::generate_jwt_secret();
    let http = reqwest::Client::new();

    // Before: key A and the old JWT secret. Seven messages are stored.
    let mut before = settings(dir.clone());
    before.encryption_key = Some(SecretString::from(key_a.to_base64()));
    before.secret_key = Some(SecretString::from(old_secret.clone()));
    let (base, stop, task) = serve(&before).await?;
    let registered = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": "alice", "password": "correct-horse"}))
        .send()
        .await?;
    assert_eq!(registered.status(), 201);
    let old_token = login(&http, &base).await?;
    let written: Vec<String> = (1..=7)
        .map(|n| format!("written under key A, {n}"))
        .collect();
    let store = chat_server::open_store(&before).await?;
    let (alice, general) = alice_and_general(&store).await?;
    let mut batch = Vec::new();
    for text in &written {
        batch.push(NewMessage {
            room_id: general.id,
            user_id: alice.id,
            username: alice.username.clone(),
            body: MessageBody::parse(text.as_str())?,
            client_id: None,
            reply_to: None,
            mls: false,
        });
    }
    store.append_messages(batch).await?;
    drop(store);
    stop_server(stop, task).await?;

    // The operator's first steps: B becomes ENCRYPTION_KEY, A moves to
    // ENCRYPTION_KEYS_PREVIOUS, the new JWT secret is set with the old one as
    // SECRET_KEY_PREVIOUS, and the server restarts.
    let mut during = before.clone();
    during.encryption_key = Some(SecretString::from(key_b.to_base64()));
    during.encryption_keys_previous = Some(SecretString::from(key_a.to_base64()));
    during.secret_key = Some(SecretString::from(new_secret));
    during.secret_key_previous = Some(SecretString::from(old_secret));
    let (base, stop, task) = serve(&during).await?;

    // `rotate-key` runs while that server serves.
    let mut batches = Vec::new();
    let report = chat_server::rotate_keys(&during, 3, |progress| {
        batches.push(progress.reencrypted);
    })
    .await?;
    assert_eq!(batches, [3, 3, 1]);
    assert_eq!(report.reencrypted, 7);
    assert_eq!(report.under_primary, 7);
    assert_eq!(report.primary, *key_b.id());
    assert_eq!(
        report.previous,
        [PreviousKey {
            entry: 1,
            key_id: key_a.id().clone(),
            remaining: 0,
        }]
    );
    assert!(report.unknown.is_empty() && report.unreadable.is_empty());
    assert!(report.is_complete());
    let printed = report.to_string();
    assert!(
        printed.contains(&format!(
            "remove them from ENCRYPTION_KEYS_PREVIOUS and restart the servers: entry 1 (key id {})",
            key_a.id()
        )),
        "{printed}"
    );

    // The token signed with the old secret still works, until it expires.
    assert_eq!(history_contents(&http, &base, &old_token).await?, written);
    stop_server(stop, task).await?;

    // After: only key B and only the new secret.
    let mut after = during.clone();
    after.encryption_keys_previous = None;
    after.secret_key_previous = None;
    let (base, stop, task) = serve(&after).await?;
    let refused = http
        .get(format!("{base}/api/chat/messages"))
        .bearer_auth(&old_token)
        .send()
        .await?;
    assert_eq!(refused.status(), 401);
    let token = login(&http, &base).await?;
    assert_eq!(history_contents(&http, &base, &token).await?, written);

    // Running the rotation again finds nothing left to do.
    let again = chat_server::rotate_keys(&after, 3, |_| {}).await?;
    assert_eq!(again.reencrypted, 0);
    assert!(again.is_complete());
    stop_server(stop, task).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn a_short_previous_jwt_secret_is_a_start_up_error_that_names_it() -> Result<()> {
    let dir = temp_dir("short-previous-secret");
    let mut settings = settings(dir.clone());
    settings.secret_key = Some(SecretString::from(
        chat_server::secrets::generate_jwt_secret(),
    ));
    settings.secret_key_previous = Some(SecretString::from("too-short".to_owned()));
    let error = start_up_error(&settings).await;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.starts_with("SECRET_KEY_PREVIOUS is not valid")),
        "{error:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn token_lifetimes_default_to_the_originals_and_legacy_tokens_are_refused() {
    let settings = Settings::defaults();
    assert_eq!(settings.token_ttl_minutes, 30);
    assert_eq!(settings.refresh_ttl_days, 14);
    assert_eq!(
        settings.transport().refresh_ttl,
        Duration::from_secs(14 * 24 * 60 * 60)
    );
    assert_eq!(settings.jwt_issuer, "chat-server");
    assert_eq!(settings.jwt_audience, "chat");
    assert!(!settings.accept_legacy_tokens);
}

#[test]
fn the_legacy_token_switch_and_the_refresh_lifetime_are_read_from_flags() {
    use clap::Parser;
    let cli = chat_server::Cli::parse_from([
        "chat-server",
        "--accept-legacy-tokens",
        "true",
        "--refresh-ttl-days",
        "2",
    ]);
    assert!(cli.settings.accept_legacy_tokens);
    assert_eq!(
        cli.settings.transport().refresh_ttl,
        Duration::from_secs(2 * 24 * 60 * 60)
    );
    let cli = chat_server::Cli::parse_from(["chat-server", "--accept-legacy-tokens", "false"]);
    assert!(!cli.settings.accept_legacy_tokens);
    assert!(chat_server::Cli::try_parse_from(["chat-server", "--refresh-ttl-days", "0"]).is_err());
}

#[tokio::test]
async fn an_empty_token_audience_is_a_start_up_error_that_names_it() -> Result<()> {
    let dir = temp_dir("empty-audience");
    let mut settings = settings(dir.clone());
    settings.jwt_audience = String::new();
    let error = start_up_error(&settings).await;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("CHAT_JWT_AUDIENCE")),
        "{error:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn the_pool_is_split_between_the_main_thread_and_the_workers() {
    use clap::Parser;
    let shards = |args: &[&str]| {
        let mut argv = vec!["chat-server"];
        argv.extend_from_slice(args);
        chat_server::Cli::parse_from(argv).settings.pool_shards()
    };
    // 2 workers: the main thread's even share, then the rest evenly.
    assert_eq!(
        shards(&["--workers", "2", "--db-pool-size", "16"]),
        [6, 5, 5]
    );
    // 8 workers: the main thread keeps a connection per writer lane and
    // one more, the workers share what is left.
    assert_eq!(
        shards(&["--workers", "8", "--db-pool-size", "16"]),
        [5, 2, 2, 2, 1, 1, 1, 1, 1]
    );
    // A pool too small for that still gives every thread a connection.
    assert_eq!(
        shards(&[
            "--workers",
            "2",
            "--db-pool-size",
            "2",
            "--writer-lanes",
            "1"
        ]),
        [2, 1, 1]
    );
}

#[tokio::test]
async fn the_operator_makes_an_owner_of_a_room_nobody_owns() -> Result<()> {
    let dir = temp_dir("admin-role");
    let settings = settings(dir.clone());
    let store = chat_server::open_store(&settings).await?;
    let alice = store
        .create_user(&Username::parse("alice")?, "$2b$10$not-a-real-hash")
        .await?;
    drop(store);

    let made =
        chat_server::admin::set_role(&settings, "general", "Alice", chat_domain::Role::Owner)
            .await?;
    assert!(
        matches!(made, chat_server::admin::RoleOutcome::Changed { .. }),
        "{made:?}"
    );
    let again =
        chat_server::admin::set_role(&settings, "general", "alice", chat_domain::Role::Owner)
            .await?;
    assert_eq!(again, chat_server::admin::RoleOutcome::Unchanged);

    let store = chat_server::open_store(&settings).await?;
    let general = store
        .room_by_name(&RoomName::general())
        .await?
        .ok_or_else(|| anyhow::anyhow!("general exists"))?;
    let (owner, _) = store.room_summary(general.id).await?;
    assert_eq!(
        owner.map(|name| name.as_str().to_owned()),
        Some("alice".to_owned())
    );
    let roles: Vec<_> = store
        .room_members(general.id)
        .await?
        .into_iter()
        .filter(|member| member.user_id == alice.id)
        .map(|member| member.role)
        .collect();
    assert_eq!(roles, [chat_domain::Role::Owner]);

    for (room, user, expected) in [
        ("nowhere", "alice", "there is no room named 'nowhere'"),
        ("general", "nobody", "there is no user named 'nobody'"),
    ] {
        let error =
            chat_server::admin::set_role(&settings, room, user, chat_domain::Role::Moderator)
                .await
                .expect_err("refused");
        assert_eq!(error.to_string(), expected);
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_syncs_every_commit_by_default_and_ready_warns_when_told_not_to() -> Result<()> {
    use chat_server::settings::SqliteSync;

    assert_eq!(Settings::defaults().sqlite_synchronous, SqliteSync::Full);
    let http = reqwest::Client::new();
    for (mode, pragma, warned) in [(SqliteSync::Full, 2, false), (SqliteSync::Normal, 1, true)] {
        let dir = temp_dir("durability");
        let mut settings = settings(dir.clone());
        settings.sqlite_synchronous = mode;
        let store = chat_server::open_store(&settings).await?;
        assert_eq!(
            chat_storage::testing::sqlite_synchronous(&store).await?,
            Some(pragma)
        );
        drop(store);
        let (base, stop, task) = serve(&settings).await?;
        let response = http.get(format!("{base}/ready")).send().await?;
        assert_eq!(response.status().as_u16(), 200);
        let body: Value = response.json().await?;
        let warnings = body["warnings"].as_array().cloned().unwrap_or_default();
        assert_eq!(!warnings.is_empty(), warned, "{body}");
        if warned {
            assert!(
                warnings[0]
                    .as_str()
                    .unwrap_or_default()
                    .contains("CHAT_SQLITE_SYNCHRONOUS=normal"),
                "{body}"
            );
        }
        stop_server(stop, task).await?;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_that_syncs_its_commits_gets_no_durability_warning() -> Result<()> {
    let Some(database) = chat_storage::testing::TestDatabase::postgres().await else {
        return Ok(());
    };
    let dir = temp_dir("durability-pg");
    let mut settings = settings(dir.clone());
    settings.database_url = Some(database.url().to_owned());
    let store = chat_server::open_store(&settings).await?;
    let fsync = chat_storage::testing::postgres_setting(&store, "fsync").await?;
    let commit = chat_storage::testing::postgres_setting(&store, "synchronous_commit").await?;
    let warnings = store.durability_warnings().await?;
    // The test server may run without them; what is warned must match.
    assert_eq!(
        warnings.iter().any(|w| w.contains("fsync = off")),
        fsync.as_deref() != Some("on")
    );
    assert_eq!(
        warnings
            .iter()
            .any(|w| w.contains("synchronous_commit = off")),
        commit.as_deref() == Some("off")
    );
    drop(store);
    database.drop_database().await;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// The texts `GET /api/search?q=...` finds for the holder of `token`.
async fn searched(http: &reqwest::Client, base: &str, token: &str, q: &str) -> Result<Vec<String>> {
    let body: Value = http
        .get(format!("{base}/api/search"))
        .query(&[("q", q), ("limit", "100")])
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(body["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|result| result["content"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_key_changes_with_reindex_and_nothing_goes_unfound() -> Result<()> {
    let dir = temp_dir("search-key");
    let old_key = chat_crypto::SearchKey::generate();
    let new_key = chat_crypto::SearchKey::generate();
    let http = reqwest::Client::new();

    // Messages indexed under the old key as they are stored.
    let mut before = settings(dir.clone());
    before.search_key = Some(SecretString::from(old_key.to_base64()));
    let (base, stop, task) = serve(&before).await?;
    let registered = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": "alice", "password": "correct-horse"}))
        .send()
        .await?;
    assert_eq!(registered.status(), 201);
    let store = chat_server::open_store(&before).await?;
    let (alice, general) = alice_and_general(&store).await?;
    let written: Vec<String> = (1..=7).map(|n| format!("harbour report {n}")).collect();
    let batch = written
        .iter()
        .map(|text| {
            Ok(NewMessage {
                room_id: general.id,
                user_id: alice.id,
                username: alice.username.clone(),
                body: MessageBody::parse(text.as_str())?,
                client_id: None,
                reply_to: None,
                mls: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    store.append_messages(batch).await?;
    drop(store);
    let token = login(&http, &base).await?;
    let mut newest_first = written.clone();
    newest_first.reverse();
    assert_eq!(
        searched(&http, &base, &token, "harbour").await?,
        newest_first
    );
    stop_server(stop, task).await?;

    // The new key beside it: `reindex` builds its index while searches
    // still use the old one.
    let mut during = before.clone();
    during.search_key_next = Some(SecretString::from(new_key.to_base64()));
    let (base, stop, task) = serve(&during).await?;
    let args = chat_server::ReindexArgs {
        batch_size: 3,
        restart: false,
        drop_old: false,
    };
    let mut steps = Vec::new();
    let report =
        chat_server::reindex(&during, &args, |progress| steps.push(progress.indexed)).await?;
    assert!(report.next_key);
    assert_eq!(report.generation, new_key.generation());
    assert_eq!(report.indexed, steps.iter().sum::<u64>());
    assert!(report.indexed >= 7, "{report:?}");
    assert!(steps.len() >= 3, "{steps:?}");
    assert!(report.to_string().contains("SEARCH_KEY_NEXT"), "{report}");
    assert_eq!(
        searched(&http, &base, &token, "harbour").await?,
        newest_first
    );
    stop_server(stop, task).await?;

    // The new key alone: everything is found, and the old entries go.
    let mut after = before.clone();
    after.search_key = Some(SecretString::from(new_key.to_base64()));
    let (base, stop, task) = serve(&after).await?;
    assert_eq!(
        searched(&http, &base, &token, "report").await?,
        newest_first
    );
    let dropping = chat_server::ReindexArgs {
        drop_old: true,
        ..args
    };
    let report = chat_server::reindex(&after, &dropping, |_| {}).await?;
    assert!(!report.next_key);
    assert!(report.dropped > 0, "{report:?}");
    assert_eq!(
        searched(&http, &base, &token, "harbour").await?,
        newest_first
    );
    stop_server(stop, task).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
