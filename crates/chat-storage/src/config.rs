use std::fmt;
use std::path::PathBuf;

use chat_crypto::{KeyRing, SearchKeys};

use crate::{RecentCache, SqliteSynchronous, StorageError};

/// What [`crate::Store::connect`] needs.
#[derive(Clone)]
pub struct StoreConfig {
    /// `postgres://…`, `postgresql://…`, `sqlite://path` or `sqlite:path`.
    /// May contain a password, so it is never logged or printed.
    pub url: String,
    /// The most connections the pool keeps open (when it is not split into
    /// `pool_shards`).
    pub pool_size: usize,
    /// PostgreSQL only: the pool split into shards of these sizes, in place
    /// of one pool of `pool_size`. Each thread that uses the store gets a
    /// shard (the first thread the first shard, and so on, wrapping round)
    /// and keeps to it. A connection's I/O runs on the thread that opened
    /// it, so a thread that keeps to its own connections saves two
    /// cross-thread wake-ups per query. For an actix-web server: one shard
    /// for the thread that builds the store (and runs whatever it spawns),
    /// then one per worker. Empty: one pool shared by every thread.
    pub pool_shards: Vec<usize>,
    /// Encrypts new message bodies and decrypts stored ones.
    pub keys: KeyRing,
    /// The keys of the search index: the one searches use, and the next
    /// one while the key is being changed. Every message is indexed under
    /// each. `None`: search is off, nothing is indexed.
    pub search: Option<SearchKeys>,
    /// How many of each room's newest messages are kept in memory for
    /// newest-page reads; see [`RecentCache`].
    pub recent: RecentCache,
    /// SQLite only: how a commit is made durable. [`SqliteSynchronous::Full`]
    /// (the default) is what "acknowledged means durable" needs.
    pub sqlite_synchronous: SqliteSynchronous,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match Target::parse(&self.url) {
            Ok(target) => target.backend_name(),
            Err(_) => "invalid",
        };
        f.debug_struct("StoreConfig")
            .field("url", &format_args!("<{backend} URL redacted>"))
            .field("pool_size", &self.pool_size)
            .field("pool_shards", &self.pool_shards)
            .field("keys", &format_args!("<key ring>"))
            .field("search", &self.search)
            .field("recent", &self.recent)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

/// Where the data lives, parsed from the URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The URL as given, for tokio-postgres.
    Postgres(String),
    /// The path of the database file.
    Sqlite(PathBuf),
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, StorageError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                StorageError::InvalidUrl(
                    "expected postgres://, postgresql://, sqlite://PATH or sqlite:PATH".to_owned(),
                )
            })?;
        if path.is_empty() {
            return Err(StorageError::InvalidUrl(
                "a sqlite URL needs a file path".to_owned(),
            ));
        }
        // Every pooled connection would get a database of its own.
        if path == ":memory:" || path.contains("mode=memory") {
            return Err(StorageError::InvalidUrl(
                "in-memory SQLite databases are not supported; give a file path".to_owned(),
            ));
        }
        Ok(Target::Sqlite(PathBuf::from(path)))
    }

    pub(crate) fn backend_name(&self) -> &'static str {
        match self {
            Target::Postgres(_) => "postgres",
            Target::Sqlite(_) => "sqlite",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_are_kept_as_they_are() {
        for url in [
            "postgres://u:p@h/db",
            "postgresql://h:5432/db?sslmode=disable",
        ] {
            match Target::parse(url) {
                Ok(Target::Postgres(kept)) => assert_eq!(kept, url),
                _ => panic!("{url} should be a PostgreSQL URL"),
            }
        }
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        let cases = [
            ("sqlite:///var/lib/chat.db", "/var/lib/chat.db"),
            ("sqlite://data/chat.db", "data/chat.db"),
            ("sqlite:chat.db", "chat.db"),
        ];
        for (url, path) in cases {
            match Target::parse(url) {
                Ok(Target::Sqlite(parsed)) => assert_eq!(parsed, PathBuf::from(path)),
                _ => panic!("{url} should be a SQLite URL"),
            }
        }
    }

    #[test]
    fn other_urls_are_rejected_without_repeating_them() {
        for url in [
            "mysql://root:hunter2@h/db",
            "sqlite://",
            "sqlite::memory:",
            "",
        ] {
            match Target::parse(url) {
                Err(StorageError::InvalidUrl(message)) => {
                    assert!(!message.contains("hunter2"), "{message}");
                }
                _ => panic!("{url:?} should be rejected"),
            }
        }
    }
}
