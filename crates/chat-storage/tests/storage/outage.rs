//! A database that is down or never answers makes calls fail fast with
//! `Unavailable`; nothing hangs or panics.

use std::time::{Duration, Instant};

use chat_domain::{RoomId, RoomName};
use chat_storage::{StorageError, Store, StoreConfig};
use tokio::net::TcpListener;

use crate::support::{ring_of, username};

const TIMEOUT: Duration = Duration::from_millis(500);

async fn store_at(url: String) -> Store {
    let config = StoreConfig {
        url,
        pool_size: 2,
        keys: ring_of(&chat_crypto::FernetKey::generate()),
    };
    Store::connect_with_timeout(config, TIMEOUT).await.expect("the pool builds without connecting")
}

/// Every kind of call, each of which must fail with `Unavailable`.
async fn assert_every_call_is_unavailable(store: &Store) {
    let started = Instant::now();
    let outcomes = [
        ("ping", store.ping().await.err()),
        ("migrate", store.run_pending_migrations().await.err()),
        ("user_by_name", store.user_by_name(&username("alice")).await.err()),
        ("room_by_name", store.room_by_name(&RoomName::general()).await.err()),
        ("latest", store.latest(RoomId(1), 10).await.err()),
    ];
    for (call, outcome) in outcomes {
        assert!(matches!(outcome, Some(StorageError::Unavailable(_))), "{call}: {outcome:?}");
    }
    // Five calls, each bounded by the timeout, with room for a slow machine.
    assert!(started.elapsed() < TIMEOUT * 5 + Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_unavailable_at_once() {
    let store = store_at("postgres://postgres@127.0.0.1:1/x".to_owned()).await;
    tokio::time::timeout(Duration::from_secs(10), assert_every_call_is_unavailable(&store))
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
    tokio::time::timeout(Duration::from_secs(10), assert_every_call_is_unavailable(&store))
        .await
        .expect("calls to a silent database returned");
    silent.abort();
}

#[tokio::test]
async fn unknown_url_schemes_are_rejected() {
    let config = StoreConfig {
        url: "mysql://root:hunter2@localhost/chat".to_owned(),
        pool_size: 1,
        keys: ring_of(&chat_crypto::FernetKey::generate()),
    };
    match Store::connect(config).await {
        Err(StorageError::InvalidUrl(message)) => assert!(!message.contains("hunter2")),
        other => panic!("expected InvalidUrl, got {other:?}"),
    }
}
