//! Fresh, migrated databases for the conformance suite: a temporary SQLite
//! file, or a PostgreSQL database with a random name on the server named by
//! `CHAT_TEST_DATABASE_URL`, dropped afterwards.

use std::collections::BTreeSet;

use chat_crypto::{FernetKey, KeyRing};
use chat_domain::{ClientId, MessageBody, MessageId, RoomId, RoomName, Username};
use chat_storage::{NewMessage, RecentCache, Room, Store, StoreConfig, User};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

pub(crate) use chat_storage::testing::Backend;
use chat_storage::testing::TestDatabase;

/// A migrated database and a store on it. Call [`TestDb::cleanup`] at the
/// end; if a test panics first, the database is removed on drop instead.
pub(crate) struct TestDb {
    pub(crate) backend: Backend,
    pub(crate) store: Store,
    /// The primary (and only) key of `keys`.
    pub(crate) key: FernetKey,
    /// The ring `store` encrypts with.
    pub(crate) keys: KeyRing,
    /// The versions the first migration run applied.
    pub(crate) applied: Vec<String>,
    url: String,
    database: TestDatabase,
}

/// The search key of every test store: stores on one database share it,
/// as the nodes of a deployment do.
pub(crate) fn search_keys() -> chat_crypto::SearchKeys {
    chat_crypto::SearchKeys::new(
        chat_crypto::SearchKey::parse("c2VhcmNoLWtleS1vZi10aGUtc3RvcmFnZS10ZXN0cyE=")
            .expect("a valid search key"),
        None,
    )
}

/// A ring of just `key`.
pub(crate) fn ring_of(key: &FernetKey) -> KeyRing {
    KeyRing::new(key.clone(), Vec::new())
}

impl TestDb {
    /// A migrated SQLite database in a directory that does not exist yet
    /// (the store creates it).
    pub(crate) async fn sqlite() -> TestDb {
        TestDb::open(TestDatabase::sqlite(), 4).await
    }

    /// A migrated PostgreSQL database of its own, or `None` (after saying
    /// so) when no server is configured and none is required.
    pub(crate) async fn postgres() -> Option<TestDb> {
        Some(TestDb::open(TestDatabase::postgres().await?, 8).await)
    }

    async fn open(database: TestDatabase, pool_size: usize) -> TestDb {
        let key = FernetKey::generate();
        let keys = ring_of(&key);
        let url = database.url().to_owned();
        let mut db = TestDb {
            backend: database.backend(),
            store: connect(&url, pool_size, keys.clone()).await,
            key,
            keys,
            applied: Vec::new(),
            url,
            database,
        };
        db.applied = db
            .store
            .run_pending_migrations()
            .await
            .expect("migrations apply to an empty database");
        db
    }

    /// Another store on the same database, with another key ring.
    pub(crate) async fn store_with(&self, keys: KeyRing) -> Store {
        connect(&self.url, 2, keys).await
    }

    /// Another store on the same database, with other search keys.
    pub(crate) async fn store_searching(&self, search: chat_crypto::SearchKeys) -> Store {
        Store::connect(StoreConfig {
            url: self.url.clone(),
            pool_size: 2,
            pool_shards: Vec::new(),
            keys: self.keys.clone(),
            search: Some(search),
            recent: RecentCache::default(),
            sqlite_synchronous: chat_storage::SqliteSynchronous::default(),
        })
        .await
        .expect("build the store")
    }

    /// The path of the SQLite database file, on that backend.
    pub(crate) fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.url
            .strip_prefix("sqlite://")
            .map(std::path::PathBuf::from)
    }

    /// Another store on the same database whose pool is split into shards
    /// of these sizes (none: one pool of 2).
    pub(crate) async fn store_sharded(&self, shards: &[usize]) -> Store {
        connect_sharded(
            &self.url,
            2,
            shards.to_vec(),
            self.keys.clone(),
            RecentCache::default(),
        )
        .await
    }

    /// Another store on the same database that keeps `recent` newest
    /// messages in memory.
    pub(crate) async fn store_keeping(&self, recent: RecentCache) -> Store {
        connect_keeping(&self.url, 2, self.keys.clone(), recent).await
    }

    /// The `general` room, which the first migration creates.
    pub(crate) async fn general(&self) -> Room {
        self.store
            .room_by_name(&RoomName::general())
            .await
            .expect("query")
            .expect("general exists")
    }

    /// Registers a user.
    pub(crate) async fn user(&self, name: &str) -> User {
        self.store
            .create_user(&username(name), "$2b$12$not-a-real-hash")
            .await
            .expect("create user")
    }

    /// The stored `body` and `key_id` of every message, by id, read with
    /// plain SQL past the store.
    pub(crate) async fn raw_messages(&self) -> Vec<RawMessage> {
        let query = diesel::sql_query("SELECT body, key_id FROM messages ORDER BY id");
        match self.backend {
            Backend::Postgres => query.load(&mut self.raw_pg().await).await,
            Backend::Sqlite => query.load(&mut self.raw_sqlite().await).await,
        }
        .expect("read messages")
    }

    /// Every stored earlier text of an edited message, in storage order.
    pub(crate) async fn raw_versions(&self) -> Vec<RawMessage> {
        let query = diesel::sql_query("SELECT body, key_id FROM message_versions");
        match self.backend {
            Backend::Postgres => query.load(&mut self.raw_pg().await).await,
            Backend::Sqlite => query.load(&mut self.raw_sqlite().await).await,
        }
        .expect("read versions")
    }

    /// Replaces a message's stored `body` and `key_id` with plain SQL past
    /// the store, as another writer would.
    pub(crate) async fn overwrite_message(&self, id: MessageId, body: &str, key_id: &str) {
        let sql = match self.backend {
            Backend::Postgres => "UPDATE messages SET body = $1, key_id = $2 WHERE id = $3",
            Backend::Sqlite => "UPDATE messages SET body = ?, key_id = ? WHERE id = ?",
        };
        let query = diesel::sql_query(sql)
            .bind::<Text, _>(body)
            .bind::<Text, _>(key_id)
            .bind::<BigInt, _>(id.get());
        let updated = match self.backend {
            Backend::Postgres => query.execute(&mut self.raw_pg().await).await,
            Backend::Sqlite => query.execute(&mut self.raw_sqlite().await).await,
        }
        .expect("overwrite message");
        assert_eq!(updated, 1, "message {id:?} does not exist");
    }

    /// Every row of `table`, its `columns` (comma-separated) written as
    /// text, one line per row, read with plain SQL past the store.
    pub(crate) async fn dump_table(&self, table: &str, columns: &str) -> String {
        let line = match self.backend {
            Backend::Postgres => format!("concat_ws(',', {columns})"),
            Backend::Sqlite => columns
                .split(',')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" || ',' || "),
        };
        let query = diesel::sql_query(format!("SELECT {line} AS line FROM {table}"));
        let rows: Vec<Line> = match self.backend {
            Backend::Postgres => query.load(&mut self.raw_pg().await).await,
            Backend::Sqlite => query.load(&mut self.raw_sqlite().await).await,
        }
        .expect("dump table");
        rows.into_iter().map(|row| row.line + "\n").collect()
    }

    /// The search index's table and its columns: one row per message on
    /// PostgreSQL, one per term on SQLite.
    pub(crate) fn search_index(&self) -> (&'static str, &'static str) {
        match self.backend {
            Backend::Postgres => ("search_documents", "message_id, generation, room_id, terms"),
            Backend::Sqlite => ("search_terms", "generation, term, room_id, message_id"),
        }
    }

    /// How many migrations this backend has: PostgreSQL has one more, the
    /// search index's move to one row per message.
    pub(crate) fn migrations(&self) -> usize {
        match self.backend {
            Backend::Postgres => 10,
            Backend::Sqlite => 9,
        }
    }

    /// How many rows `table` holds, counted with plain SQL past the store.
    pub(crate) async fn count_rows(&self, table: &str) -> i64 {
        let query = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"));
        let rows: Vec<Count> = match self.backend {
            Backend::Postgres => query.load(&mut self.raw_pg().await).await,
            Backend::Sqlite => query.load(&mut self.raw_sqlite().await).await,
        }
        .expect("count rows");
        rows.into_iter()
            .next()
            .map(|row| row.n)
            .expect("count returns one row")
    }

    /// How many tables, indexes and sequences exist besides diesel's own
    /// bookkeeping.
    pub(crate) async fn schema_object_count(&self) -> i64 {
        let rows: Vec<Count> = match self.backend {
            Backend::Postgres => {
                diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_class c \
                     JOIN pg_namespace ns ON ns.oid = c.relnamespace \
                     WHERE ns.nspname = 'public' \
                     AND c.relname NOT IN ('__diesel_schema_migrations', \
                                           '__diesel_schema_migrations_pkey')",
                )
                .load(&mut self.raw_pg().await)
                .await
            }
            Backend::Sqlite => {
                diesel::sql_query(
                    "SELECT count(*) AS n FROM sqlite_master \
                     WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!' \
                     AND name <> '__diesel_schema_migrations'",
                )
                .load(&mut self.raw_sqlite().await)
                .await
            }
        }
        .expect("count schema objects");
        rows.into_iter()
            .next()
            .map(|row| row.n)
            .expect("count returns one row")
    }

    /// PostgreSQL only: makes the server close every connection to this
    /// database, as a restart would, and returns how many it closed.
    pub(crate) async fn terminate_connections(&self) -> i64 {
        assert_eq!(self.backend, Backend::Postgres);
        let rows: Vec<Count> = diesel::sql_query(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .load(&mut self.raw_pg().await)
        .await
        .expect("terminate connections");
        rows.into_iter()
            .next()
            .map(|row| row.n)
            .expect("count returns one row")
    }

    /// PostgreSQL only: the server processes of the connections open to
    /// this database, other than the one that asks. One that has just
    /// closed may still be listed for a moment.
    pub(crate) async fn connection_pids(&self) -> BTreeSet<i32> {
        #[derive(QueryableByName)]
        struct Pid {
            #[diesel(sql_type = Integer)]
            pid: i32,
        }
        assert_eq!(self.backend, Backend::Postgres);
        let rows: Vec<Pid> = diesel::sql_query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .load(&mut self.raw_pg().await)
        .await
        .expect("list connections");
        rows.into_iter().map(|row| row.pid).collect()
    }

    /// Runs `sql` with plain SQL past the store, as an operator would.
    pub(crate) async fn execute_raw(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                diesel_async::SimpleAsyncConnection::batch_execute(&mut self.raw_pg().await, sql)
                    .await
            }
            Backend::Sqlite => {
                diesel_async::SimpleAsyncConnection::batch_execute(
                    &mut self.raw_sqlite().await,
                    sql,
                )
                .await
            }
        }
        .expect("run raw SQL");
    }

    async fn raw_pg(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect to the test database")
    }

    async fn raw_sqlite(&self) -> SyncConnectionWrapper<diesel::SqliteConnection> {
        let path = self.url.trim_start_matches("sqlite://");
        SyncConnectionWrapper::establish(path)
            .await
            .expect("open the test database")
    }

    /// Removes the database.
    pub(crate) async fn cleanup(self) {
        let TestDb {
            store, database, ..
        } = self;
        drop(store);
        database.drop_database().await;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub(crate) struct RawMessage {
    #[diesel(sql_type = Text)]
    pub(crate) body: String,
    #[diesel(sql_type = Text)]
    pub(crate) key_id: String,
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub(crate) async fn connect(url: &str, pool_size: usize, keys: KeyRing) -> Store {
    connect_keeping(url, pool_size, keys, RecentCache::default()).await
}

async fn connect_keeping(url: &str, pool_size: usize, keys: KeyRing, recent: RecentCache) -> Store {
    connect_sharded(url, pool_size, Vec::new(), keys, recent).await
}

async fn connect_sharded(
    url: &str,
    pool_size: usize,
    pool_shards: Vec<usize>,
    keys: KeyRing,
    recent: RecentCache,
) -> Store {
    Store::connect(StoreConfig {
        url: url.to_owned(),
        pool_size,
        pool_shards,
        keys,
        search: Some(search_keys()),
        recent,
        sqlite_synchronous: chat_storage::SqliteSynchronous::default(),
    })
    .await
    .expect("build the store")
}

pub(crate) fn username(name: &str) -> Username {
    Username::parse(name).expect("valid username")
}

/// A message from `user` to `room`.
pub(crate) fn message(
    room: RoomId,
    user: &User,
    text: &str,
    client_id: Option<&str>,
) -> NewMessage {
    NewMessage {
        room_id: room,
        user_id: user.id,
        username: user.username.clone(),
        body: MessageBody::parse(text).expect("valid body"),
        client_id: client_id.map(|id| ClientId::parse(id).expect("valid client id")),
        reply_to: None,
        mls: false,
    }
}

/// [`Store::append_messages`] for tests whose authors may all post: a
/// refusal fails the test.
pub(crate) trait AppendOk {
    async fn append_ok(
        &self,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<chat_storage::Appended>, chat_storage::StorageError>;
}

impl AppendOk for Store {
    async fn append_ok(
        &self,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<chat_storage::Appended>, chat_storage::StorageError> {
        Ok(self
            .append_messages(batch)
            .await?
            .into_iter()
            .map(|result| result.expect("the author may post"))
            .collect())
    }
}

/// `user` as the author of a membership change.
pub(crate) fn actor(user: &User) -> chat_storage::Actor {
    chat_storage::Actor::User {
        id: user.id,
        username: user.username.clone(),
    }
}
