//! Secrets stay out of `Debug` output, and so out of logs.

use chat_domain::UserId;
use chat_storage::{StoreConfig, User};

use crate::support::{ring_of, username};

#[test]
fn a_users_debug_output_hides_the_password_hash() {
    let user = User {
        id: UserId(1),
        username: username("alice"),
        password_hash: "$2b$12$secret-hash".to_owned(),
        created_at: chrono::Utc::now(),
        disabled_at: None,
        deleted_at: None,
    };
    let debug = format!("{user:?}");
    assert!(debug.contains("alice"), "{debug}");
    assert!(!debug.contains("secret-hash"), "{debug}");
}

#[test]
fn the_store_configs_debug_output_hides_the_url() {
    let config = StoreConfig {
        url: "postgres://chat:hunter2@db.internal/chat".to_owned(),
        pool_size: 4,
        pool_shards: Vec::new(),
        keys: ring_of(&chat_crypto::FernetKey::generate()),
        search: Some(crate::support::search_keys()),
        recent: chat_storage::RecentCache::default(),
        sqlite_synchronous: chat_storage::SqliteSynchronous::default(),
    };
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("postgres"), "{debug}");
}
