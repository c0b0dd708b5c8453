//! A database that is down or never answers makes calls fail fast with
//! `Unavailable`; nothing hangs or panics.

use std::time::{Duration, Instant};

use chat_domain::{RoomId, RoomName};
use chat_storage::{StorageError, Store, StoreConfig};
use tokio::net::TcpListener;

use crate::support::{AppendOk, TestDb, ring_of, username};

const TIMEOUT: Duration = Duration::from_millis(500);

async fn store_at(url: String) -> Store {
    let config = StoreConfig {
        url,
        pool_size: 2,
        pool_shards: Vec::new(),
        keys: ring_of(&chat_crypto::FernetKey::generate()),
        search: Some(crate::support::search_keys()),
        recent: chat_storage::RecentCache::default(),
        sqlite_synchronous: chat_storage::SqliteSynchronous::default(),
    };
    Store::connect_with_timeout(config, TIMEOUT)
        .await
        .expect("the pool builds without connecting")
}

/// Every kind of call, each of which must fail with `Unavailable`.
async fn assert_every_call_is_unavailable(store: &Store) {
    let started = Instant::now();
    let outcomes = [
        ("ping", store.ping().await.err()),
        ("migrate", store.run_pending_migrations().await.err()),
        (
            "user_by_name",
            store.user_by_name(&username("alice")).await.err(),
        ),
        (
            "room_by_name",
            store.room_by_name(&RoomName::general()).await.err(),
        ),
        ("latest", store.latest(RoomId(1), 10).await.err()),
    ];
    for (call, outcome) in outcomes {
        assert!(
            matches!(outcome, Some(StorageError::Unavailable(_))),
            "{call}: {outcome:?}"
        );
    }
    // Five calls, each bounded by the timeout, with room for a slow machine.
    assert!(
        started.elapsed() < TIMEOUT * 5 + Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable_at_once() {
    let store = store_at("postgres://postgres@127.0.0.1:1/x".to_owned()).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        assert_every_call_is_unavailable(&store),
    )
    .await
    .expect("calls to a dead database returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_unavailable_after_the_timeout() {
    // Accepts connections and then says nothing, like a hung database.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let store = store_at(format!("postgres://postgres@127.0.0.1:{port}/x")).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        assert_every_call_is_unavailable(&store),
    )
    .await
    .expect("calls to a silent database returned");
    silent.abort();
}

#[tokio::test]
async fn unknown_url_schemes_are_rejected() {
    let config = StoreConfig {
        url: "mysql://root:hunter2@localhost/chat".to_owned(),
        pool_size: 1,
        pool_shards: Vec::new(),
        keys: ring_of(&chat_crypto::FernetKey::generate()),
        search: Some(crate::support::search_keys()),
        recent: chat_storage::RecentCache::default(),
        sqlite_synchronous: chat_storage::SqliteSynchronous::default(),
    };
    match Store::connect(config).await {
        Err(StorageError::InvalidUrl(message)) => assert!(!message.contains("hunter2")),
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
}

#[tokio::test]
async fn the_pool_replaces_connections_the_server_closed() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let alice = db.user("alice").await;
    // Fill the pool with idle connections, then have the server drop them.
    let (one, two, three) = tokio::join!(db.store.ping(), db.store.ping(), db.store.ping());
    assert!(one.is_ok() && two.is_ok() && three.is_ok());
    assert!(db.terminate_connections().await > 0);
    // Give the closed sockets a moment to be noticed; then every call works
    // again without a restart.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        db.store
            .ping()
            .await
            .expect("the pool opened a new connection");
    }
    let found = db.store.user_by_name(&alice.username).await.expect("query");
    assert_eq!(found, Some(alice));
    db.cleanup().await;
}

/// Runs on tokio's current-thread runtime, as actix-web's workers do, where
/// waiting for an abandoned SQLite call with `block_in_place` would panic.
#[tokio::test]
async fn an_abandoned_sqlite_call_neither_panics_nor_breaks_the_store() {
    let db = crate::support::TestDb::sqlite().await;
    let user = db.user("alice").await;
    let general = db
        .store
        .room_by_name(&chat_domain::RoomName::general())
        .await
        .expect("read rooms")
        .expect("general exists");
    // Large enough that its transaction (several INSERT statements) cannot
    // finish within the caller's millisecond on any machine.
    let batch: Vec<_> = (0..6_000)
        .map(|i| crate::support::message(general.id, &user, &format!("m{i}"), None))
        .collect();
    // A caller that gives up almost at once, as a client that disconnects
    // mid-request does.
    let abandoned = tokio::time::timeout(Duration::from_millis(1), db.store.append_ok(batch)).await;
    assert!(
        abandoned.is_err(),
        "the batch should not finish within 1 ms"
    );

    let after = db
        .store
        .append_ok(vec![crate::support::message(
            general.id, &user, "after", None,
        )])
        .await
        .expect("the store still works");
    // The abandoned batch was committed whole or not at all.
    let seq = after[0].message.seq.get();
    assert!(seq == 1 || seq == 6_001, "seq {seq}");
    let page = db
        .store
        .history(
            general.id,
            chat_storage::Cursor::Before(chat_domain::Seq::new(seq + 1).expect("seq")),
            1000,
        )
        .await
        .expect("read history");
    // The newest page ends at the new message, with nothing missing before it.
    let expected = usize::try_from(seq.min(1000)).unwrap_or_default();
    assert_eq!(page.messages.len(), expected);
    assert_eq!(page.messages.last().map(|m| m.seq.get()), Some(seq));
    assert_eq!(page.has_more, seq > 1000);
    db.cleanup().await;
}
