//! `chat-server admin`: the operator acts on accounts, sessions and rooms
//! while nodes run, and every node acts on it: through Redis at once, or
//! through the database within CHAT_RECHECK_SECS on a node that does not
//! hear it. Every test runs on SQLite and on PostgreSQL.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use chat_server::admin::Format;
use chat_server::{AdminCommand, RoomAdmin, SessionsAdmin, Settings, UserAdmin};
use chat_storage::testing::{Backend, TestDatabase, unique_name};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Runs each test once per backend.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() -> anyhow::Result<()> {
                    let Some(env) = super::Env::new(super::Backend::Sqlite).await? else {
                        return Ok(());
                    };
                    let result = super::$test(&env).await;
                    env.cleanup().await;
                    result
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() -> anyhow::Result<()> {
                    let Some(env) = super::Env::new(super::Backend::Postgres).await? else {
                        return Ok(());
                    };
                    let result = super::$test(&env).await;
                    env.cleanup().await;
                    result
                }
            )+
        }
    };
}

on_both_backends!(
    a_disabled_account_loses_its_socket_and_tokens_and_cannot_sign_in_until_enabled,
    revoked_sessions_stop_working_but_the_user_may_sign_in_again,
    with_two_nodes_on_redis_a_disable_closes_the_socket_on_the_other_node_at_once,
    a_deleted_account_with_erased_messages_leaves_tombstones_the_seed_history_skips,
    refused_actions_and_unknown_names_exit_non_zero_and_change_nothing,
    rooms_are_listed_shown_given_an_owner_and_deleted_under_their_sockets,
);

const PASSWORD: &str = "correct-horse";

/// A database, and settings for servers and the command line on it.
struct Env {
    database: TestDatabase,
    dir: PathBuf,
    settings: Settings,
}

impl Env {
    async fn new(backend: Backend) -> Result<Option<Env>> {
        let database = match backend {
            Backend::Sqlite => TestDatabase::sqlite(),
            Backend::Postgres => match TestDatabase::postgres().await {
                Some(database) => database,
                None => return Ok(None),
            },
        };
        let dir = crate::temp_dir("admin");
        let mut settings = crate::settings(dir.clone());
        settings.database_url = Some(database.url().to_owned());
        // The secrets generated into the data directory are shared by the
        // servers and the command line.
        settings.recheck_secs = 1;
        Ok(Some(Env {
            database,
            dir,
            settings,
        }))
    }

    async fn admin(&self, command: AdminCommand) -> Result<Value> {
        let out = chat_server::admin::run(&self.settings, &command, Format::Json).await?;
        Ok(serde_json::from_str(&out)?)
    }

    async fn cleanup(self) {
        self.database.drop_database().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running server.
struct Node {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(settings: &Settings) -> Result<Node> {
        let (base, stop, task) = crate::serve(settings).await?;
        Ok(Node { base, stop, task })
    }

    async fn stop(self) -> Result<()> {
        crate::stop_server(self.stop, self.task).await
    }

    fn ws(&self, token: &str) -> String {
        format!(
            "{}/ws/chat?token={token}",
            self.base.replacen("http://", "ws://", 1)
        )
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn register(http: &reqwest::Client, base: &str, name: &str) -> Result<()> {
    let status = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await?
        .status();
    ensure!(status.as_u16() == 201, "registering {name}: {status}");
    Ok(())
}

/// Signs in; the status and body.
async fn sign_in(http: &reqwest::Client, base: &str, name: &str) -> Result<(u16, Value)> {
    let response = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await?;
    Ok((response.status().as_u16(), response.json().await?))
}

async fn token(http: &reqwest::Client, base: &str, name: &str) -> Result<String> {
    let (status, body) = sign_in(http, base, name).await?;
    match body["access_token"].as_str() {
        Some(token) if status == 200 => Ok(token.to_owned()),
        _ => bail!("{name} could not sign in: {status} {body}"),
    }
}

/// The status of `GET /api/chat/messages` with `token`.
async fn history_status(http: &reqwest::Client, base: &str, token: &str) -> Result<u16> {
    Ok(http
        .get(format!("{base}/api/chat/messages"))
        .bearer_auth(token)
        .send()
        .await?
        .status()
        .as_u16())
}

async fn connect(node: &Node, token: &str) -> Result<Socket> {
    let (socket, _) = tokio_tungstenite::connect_async(node.ws(token)).await?;
    Ok(socket)
}

/// Reads frames until the server closes the socket, within `within`;
/// returns the close code and reason.
async fn closed_within(socket: &mut Socket, within: Duration) -> Result<(u16, String)> {
    let read = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ok((u16::from(frame.code), frame.reason.to_string()));
                }
                Some(Ok(Message::Close(None))) | None => bail!("closed without a code"),
                Some(Ok(_)) => {}
                Some(Err(error)) => bail!("socket failed: {error}"),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .context("the socket was not closed in time")?
}

/// Whether the socket is still open after `after`: no close, and a ping
/// answered.
async fn still_open(socket: &mut Socket, after: Duration) -> Result<bool> {
    let quiet = tokio::time::timeout(after, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return false,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    Ok(quiet.is_err())
}

/// Sends `content` and waits for its ack.
async fn send_acked(socket: &mut Socket, content: &str, client_id: &str) -> Result<()> {
    let frame = json!({"type": "message", "content": content, "client_id": client_id});
    socket.send(Message::text(frame.to_string())).await?;
    frame_where(socket, "ack", |frame| frame["client_id"] == client_id).await?;
    Ok(())
}

/// `(username, field)` of each item of a JSON list.
fn pairs<'a>(list: &'a Value, field: &str) -> Result<Vec<(&'a str, &'a str)>> {
    list.as_array()
        .context("a list")?
        .iter()
        .map(|item| {
            Ok((
                item["username"].as_str().context("username")?,
                item[field].as_str().context("field")?,
            ))
        })
        .collect()
}

fn user(name: &str) -> String {
    name.to_owned()
}

async fn a_disabled_account_loses_its_socket_and_tokens_and_cannot_sign_in_until_enabled(
    env: &Env,
) -> Result<()> {
    let node = Node::start(&env.settings).await?;
    let http = reqwest::Client::new();
    register(&http, &node.base, "alice").await?;
    register(&http, &node.base, "bob").await?;
    let alice = token(&http, &node.base, "alice").await?;
    let bob = token(&http, &node.base, "bob").await?;
    let mut alices = connect(&node, &alice).await?;
    let mut bobs = connect(&node, &bob).await?;

    let done = env
        .admin(AdminCommand::User(UserAdmin::Disable {
            user: user("Alice"),
        }))
        .await?;
    assert_eq!(
        done,
        json!({"user": "alice", "status": "disabled", "changed": true, "sessions_ended": 1})
    );
    // No Redis: the node finds it in the database within CHAT_RECHECK_SECS.
    assert_eq!(
        closed_within(&mut alices, Duration::from_secs(5)).await?,
        (1008, "session ended".to_owned())
    );
    assert_eq!(history_status(&http, &node.base, &alice).await?, 401);
    let (status, body) = sign_in(&http, &node.base, "alice").await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["detail"], "This account is disabled; ask the operator");
    // A wrong password does not learn that the account is disabled.
    let wrong = http
        .post(format!("{}/api/auth/login", node.base))
        .json(&json!({"username": "alice", "password": "wrong-horse"}))
        .send()
        .await?
        .status();
    assert_eq!(wrong.as_u16(), 401);
    // Bob is untouched.
    assert!(still_open(&mut bobs, Duration::from_millis(1500)).await?);
    assert_eq!(history_status(&http, &node.base, &bob).await?, 200);

    let listed = env.admin(AdminCommand::User(UserAdmin::List)).await?;
    assert_eq!(
        pairs(&listed, "status")?,
        [("alice", "disabled"), ("bob", "active")]
    );

    let enabled = env
        .admin(AdminCommand::User(UserAdmin::Enable {
            user: user("alice"),
        }))
        .await?;
    assert_eq!(enabled["changed"], true);
    let again = token(&http, &node.base, "alice").await?;
    assert_eq!(history_status(&http, &node.base, &again).await?, 200);
    // The old token stays dead: its session was ended, not suspended.
    assert_eq!(history_status(&http, &node.base, &alice).await?, 401);
    node.stop().await
}

async fn revoked_sessions_stop_working_but_the_user_may_sign_in_again(env: &Env) -> Result<()> {
    let node = Node::start(&env.settings).await?;
    let http = reqwest::Client::new();
    register(&http, &node.base, "alice").await?;
    let first = token(&http, &node.base, "alice").await?;
    let second = token(&http, &node.base, "alice").await?;
    let mut socket = connect(&node, &first).await?;

    let done = env
        .admin(AdminCommand::Sessions(SessionsAdmin::Revoke {
            user: user("alice"),
        }))
        .await?;
    assert_eq!(done, json!({"user": "alice", "sessions_ended": 2}));
    for token in [&first, &second] {
        assert_eq!(history_status(&http, &node.base, token).await?, 401);
    }
    assert_eq!(
        closed_within(&mut socket, Duration::from_secs(5)).await?,
        (1008, "session ended".to_owned())
    );
    let fresh = token(&http, &node.base, "alice").await?;
    assert_eq!(history_status(&http, &node.base, &fresh).await?, 200);
    node.stop().await
}

async fn with_two_nodes_on_redis_a_disable_closes_the_socket_on_the_other_node_at_once(
    env: &Env,
) -> Result<()> {
    let Some(redis) = redis_url() else {
        return Ok(());
    };
    let mut settings = env.settings.clone();
    settings.redis_url = Some(redis);
    settings.redis_namespace = unique_name();
    // Only Redis can tell the nodes in time: the database re-check is an
    // hour away.
    settings.recheck_secs = 3600;
    let a = Node::start(&settings).await?;
    let b = Node::start(&settings).await?;
    let http = reqwest::Client::new();
    for node in [&a, &b] {
        wait_for_broker(&http, &node.base).await?;
    }
    register(&http, &a.base, "alice").await?;
    let on_a = token(&http, &a.base, "alice").await?;
    let on_b = token(&http, &b.base, "alice").await?;
    let mut socket_a = connect(&a, &on_a).await?;
    let mut socket_b = connect(&b, &on_b).await?;

    let started = std::time::Instant::now();
    let done = chat_server::admin::run(
        &settings,
        &AdminCommand::User(UserAdmin::Disable {
            user: user("alice"),
        }),
        Format::Json,
    )
    .await?;
    let done: Value = serde_json::from_str(&done)?;
    assert_eq!(done["sessions_ended"], 2);
    for socket in [&mut socket_a, &mut socket_b] {
        assert_eq!(
            closed_within(socket, Duration::from_secs(3)).await?,
            (1008, "session ended".to_owned())
        );
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    for (node, token) in [(&a, &on_a), (&b, &on_b)] {
        assert_eq!(history_status(&http, &node.base, token).await?, 401);
        assert_eq!(sign_in(&http, &node.base, "alice").await?.0, 403);
    }
    a.stop().await?;
    b.stop().await
}

fn redis_url() -> Option<String> {
    match std::env::var("CHAT_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var("CHAT_TEST_REQUIRE_REDIS").as_deref() != Ok("1"),
                "CHAT_TEST_REQUIRE_REDIS=1 but CHAT_TEST_REDIS_URL is not set"
            );
            eprintln!("skipped: CHAT_TEST_REDIS_URL not set");
            None
        }
    }
}

/// Waits until `/ready` says the node hears Redis.
async fn wait_for_broker(http: &reqwest::Client, base: &str) -> Result<()> {
    for _ in 0..100 {
        let body: Value = http
            .get(format!("{base}/ready"))
            .send()
            .await?
            .json()
            .await?;
        if body["status"] == "ok" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the node never subscribed to Redis")
}

/// `(username, content)` of every item of the seed's history, as `token`
/// reads it.
async fn seed_history(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<Vec<(String, String)>> {
    crate::history_items(http, base, token)
        .await?
        .iter()
        .map(|item| {
            Ok((
                item["username"].as_str().context("username")?.to_owned(),
                item["content"].as_str().context("content")?.to_owned(),
            ))
        })
        .collect()
}

async fn a_deleted_account_with_erased_messages_leaves_tombstones_the_seed_history_skips(
    env: &Env,
) -> Result<()> {
    let node = Node::start(&env.settings).await?;
    let http = reqwest::Client::new();
    register(&http, &node.base, "alice").await?;
    register(&http, &node.base, "bob").await?;
    let alice = token(&http, &node.base, "alice").await?;
    let bob = token(&http, &node.base, "bob").await?;
    let mut alices = connect(&node, &alice).await?;
    let mut bobs = connect(&node, &bob).await?;
    send_acked(&mut alices, "my secret", "a1").await?;
    send_acked(&mut bobs, "hello alice", "b1").await?;
    send_acked(&mut alices, "my other secret", "a2").await?;
    // Read once, so the node holds the page in memory.
    let before = seed_history(&http, &node.base, &bob).await?;
    assert_eq!(before.len(), 3);

    let done = env
        .admin(AdminCommand::User(UserAdmin::Delete {
            user: user("alice"),
            erase_messages: true,
        }))
        .await?;
    assert_eq!(
        done,
        json!({"user": "alice", "status": "deleted", "sessions_ended": 1, "messages_erased": 2})
    );
    assert_eq!(
        closed_within(&mut alices, Duration::from_secs(5)).await?,
        (1008, "session ended".to_owned())
    );
    // Within CHAT_RECHECK_SECS the node drops the page it held; the seed's
    // history leaves deleted messages out.
    let expected = vec![("bob".to_owned(), "hello alice".to_owned())];
    let mut after = Vec::new();
    for _ in 0..50 {
        after = seed_history(&http, &node.base, &bob).await?;
        if after == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(after, expected);
    // The texts are gone from the database too, not only from the pages.
    let store = chat_server::open_store(&env.settings).await?;
    let general = store
        .room_by_name(&chat_domain::RoomName::general())
        .await?
        .context("general")?;
    let page = store
        .history(general.id, chat_storage::Cursor::Latest, 100)
        .await?;
    let alices_rows: Vec<_> = page
        .messages
        .iter()
        .filter(|m| m.username.as_str() == "alice" && m.event.is_none())
        .collect();
    assert_eq!(alices_rows.len(), 2);
    for row in alices_rows {
        // Tombstones: no text is left to read.
        assert_eq!(row.content, None);
        assert!(row.deleted_at.is_some());
    }
    // Alice left general, in its sequence, as anyone who leaves.
    assert!(page.messages.iter().any(|m| m.username.as_str() == "alice"
        && m.event.as_ref().map(|e| e.change) == Some(chat_domain::MemberChange::Left)));

    assert_eq!(sign_in(&http, &node.base, "alice").await?.0, 401);
    // The name stays reserved.
    let taken = http
        .post(format!("{}/api/auth/register", node.base))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await?
        .status();
    assert_eq!(taken.as_u16(), 400);
    let shown = env
        .admin(AdminCommand::User(UserAdmin::Show {
            user: user("alice"),
        }))
        .await?;
    assert_eq!(shown["status"], "deleted");
    assert_eq!(shown["messages"], 0);
    assert_eq!(shown["rooms"], json!([]));
    node.stop().await
}

/// Runs the real binary with the settings' database and data directory.
async fn run_binary(settings: &Settings, args: &[&str]) -> Result<std::process::Output> {
    let mut env = vec![
        ("CHAT_DATA_DIR", settings.data_dir.display().to_string()),
        ("CHAT_LOG", "warn".to_owned()),
    ];
    if let Some(url) = &settings.database_url {
        env.push(("DATABASE_URL", url.clone()));
    }
    crate::run_binary(env, args.iter().map(|a| (*a).to_owned()).collect()).await
}

async fn refused_actions_and_unknown_names_exit_non_zero_and_change_nothing(
    env: &Env,
) -> Result<()> {
    let node = Node::start(&env.settings).await?;
    let http = reqwest::Client::new();
    register(&http, &node.base, "alice").await?;
    register(&http, &node.base, "gone").await?;
    env.admin(AdminCommand::User(UserAdmin::Delete {
        user: user("gone"),
        erase_messages: false,
    }))
    .await?;
    let alice = token(&http, &node.base, "alice").await?;
    let mut socket = connect(&node, &alice).await?;
    let state = async || -> Result<(Value, Value)> {
        Ok((
            env.admin(AdminCommand::User(UserAdmin::List)).await?,
            env.admin(AdminCommand::Room(RoomAdmin::List)).await?,
        ))
    };
    let before = state().await?;

    for (args, expected) in [
        (
            vec!["admin", "user", "disable", "nobody"],
            "there is no user named 'nobody'",
        ),
        (
            vec!["admin", "sessions", "revoke", "nobody"],
            "there is no user named 'nobody'",
        ),
        (
            vec!["admin", "--json", "user", "show", "nobody"],
            "there is no user named 'nobody'",
        ),
        (
            vec!["admin", "room", "delete", "nowhere"],
            "there is no room named 'nowhere'",
        ),
        (
            vec!["admin", "room", "set-owner", "general", "nobody"],
            "there is no user named 'nobody'",
        ),
        (
            vec!["admin", "room", "delete", "general"],
            "general cannot be deleted",
        ),
        (
            vec!["admin", "user", "enable", "gone"],
            "gone is deleted; it cannot be enabled",
        ),
        (
            vec!["admin", "room", "set-owner", "general", "gone"],
            "gone is deleted; it cannot be given a role",
        ),
    ] {
        let output = run_binary(&env.settings, &args).await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{args:?} printed {:?}",
            output.stdout
        );
    }
    assert_eq!(state().await?, before);
    // Alice's socket and token are untouched.
    assert!(still_open(&mut socket, Duration::from_millis(1500)).await?);
    assert_eq!(history_status(&http, &node.base, &alice).await?, 200);

    // And the binary's table, for people.
    let output = run_binary(&env.settings, &["admin", "user", "list"]).await?;
    ensure!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout)?;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID  NAME "), "{table}");
    assert!(
        lines[1].contains("alice") && lines[1].contains("active"),
        "{table}"
    );
    assert!(
        lines[2].contains("gone") && lines[2].contains("deleted"),
        "{table}"
    );
    node.stop().await
}

async fn rooms_are_listed_shown_given_an_owner_and_deleted_under_their_sockets(
    env: &Env,
) -> Result<()> {
    let node = Node::start(&env.settings).await?;
    let http = reqwest::Client::new();
    register(&http, &node.base, "alice").await?;
    register(&http, &node.base, "bob").await?;
    let alice = token(&http, &node.base, "alice").await?;
    let created = http
        .post(format!("{}/api/rooms", node.base))
        .bearer_auth(&alice)
        .json(&json!({"name": "lobby"}))
        .send()
        .await?
        .status();
    ensure!(created.is_success(), "creating lobby: {created}");

    let made = env
        .admin(AdminCommand::Room(RoomAdmin::SetOwner {
            room: "lobby".to_owned(),
            user: user("bob"),
        }))
        .await?;
    assert_eq!(made["changed"], true);
    let shown = env
        .admin(AdminCommand::Room(RoomAdmin::Show {
            room: "lobby".to_owned(),
        }))
        .await?;
    assert_eq!(
        pairs(&shown["members"], "role")?,
        [("alice", "moderator"), ("bob", "owner")]
    );
    let listed = env.admin(AdminCommand::Room(RoomAdmin::List)).await?;
    let lobby = listed
        .as_array()
        .context("rooms")?
        .iter()
        .find(|room| room["name"] == "lobby")
        .context("lobby is listed")?;
    assert_eq!(
        (lobby["owner"].clone(), lobby["members"].clone()),
        (json!("bob"), json!(2))
    );

    // A socket receiving lobby is told when the operator deletes it.
    let mut socket = connect(&node, &alice).await?;
    socket
        .send(Message::text(
            json!({"type": "join", "room": "lobby"}).to_string(),
        ))
        .await?;
    frame_of_type(&mut socket, "joined").await?;
    let deleted = env
        .admin(AdminCommand::Room(RoomAdmin::Delete {
            room: "lobby".to_owned(),
        }))
        .await?;
    assert_eq!(deleted, json!({"room": "lobby", "deleted": true}));
    let left = frame_of_type(&mut socket, "left").await?;
    assert_eq!(
        (left["room"].as_str(), left["reason"].as_str()),
        (Some("lobby"), Some("room_deleted"))
    );
    let gone = http
        .get(format!("{}/api/rooms/lobby", node.base))
        .bearer_auth(&alice)
        .send()
        .await?
        .status();
    assert_eq!(gone.as_u16(), 404);
    node.stop().await
}

/// The next frame of type `kind`, within 5 s.
async fn frame_of_type(socket: &mut Socket, kind: &str) -> Result<Value> {
    frame_where(socket, kind, |_| true).await
}

/// The next frame of type `kind` that `wanted` accepts, within 5 s.
async fn frame_where(
    socket: &mut Socket,
    kind: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Result<Value> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text)?;
                    if frame["type"] == kind && wanted(&frame) {
                        return Ok(frame);
                    }
                }
                Some(Ok(_)) => {}
                other => bail!("the socket ended: {other:?}"),
            }
        }
    })
    .await
    .with_context(|| format!("no {kind} frame in time"))?
}
