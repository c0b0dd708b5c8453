//! Fresh, migrated databases for the conformance suite: a temporary SQLite
//! file, or a PostgreSQL database with a random name on the server named by
//! `CHAT_TEST_DATABASE_URL`, dropped afterwards.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chat_crypto::{FernetKey, KeyRing};
use chat_domain::{ClientId, MessageBody, RoomId, Username};
use chat_storage::{NewMessage, Store, StoreConfig, User};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

const DATABASE_URL_VAR: &str = "CHAT_TEST_DATABASE_URL";
const REQUIRE_POSTGRES_VAR: &str = "CHAT_TEST_REQUIRE_POSTGRES";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated database and a store on it. Call [`TestDb::cleanup`] at the
/// end; if a test panics first, `Drop` removes the database instead.
pub struct TestDb {
    pub backend: Backend,
    pub store: Store,
    /// The only key of `keys`.
    pub key: FernetKey,
    /// The ring `store` encrypts with.
    pub keys: KeyRing,
    /// The versions the first migration run applied.
    pub applied: Vec<String>,
    url: String,
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    RemoveDirectory(PathBuf),
    DropDatabase { admin_url: String, name: String },
}

/// A name no other test of any run shares.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "chat_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000_000
    )
}

/// A ring of just `key`.
pub fn ring_of(key: &FernetKey) -> KeyRing {
    KeyRing::new(key.clone(), Vec::new())
}

impl TestDb {
    /// A migrated SQLite database in a directory that does not exist yet
    /// (the store creates it).
    pub async fn sqlite() -> TestDb {
        let directory = std::env::temp_dir().join(unique_name());
        let url = format!("sqlite://{}", directory.join("data").join("chat.db").display());
        TestDb::open(
            Backend::Sqlite,
            url,
            4,
            Cleanup::RemoveDirectory(directory),
        )
        .await
    }

    /// A migrated PostgreSQL database of its own, or `None` (after saying
    /// so) when no server is configured and none is required.
    pub async fn postgres() -> Option<TestDb> {
        let required = std::env::var(REQUIRE_POSTGRES_VAR).is_ok_and(|value| value == "1");
        let Ok(admin_url) = std::env::var(DATABASE_URL_VAR) else {
            assert!(
                !required,
                "{REQUIRE_POSTGRES_VAR}=1 but {DATABASE_URL_VAR} is not set"
            );
            eprintln!("skipped: {DATABASE_URL_VAR} not set");
            return None;
        };
        let mut admin = match AsyncPgConnection::establish(&admin_url).await {
            Ok(connection) => connection,
            Err(error) if !required => {
                eprintln!("skipped: PostgreSQL at {DATABASE_URL_VAR} is unreachable: {error}");
                return None;
            }
            Err(error) => panic!("PostgreSQL at {DATABASE_URL_VAR} is unreachable: {error}"),
        };
        let name = unique_name();
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = with_database(&admin_url, &name);
        let cleanup = Cleanup::DropDatabase { admin_url, name };
        Some(TestDb::open(Backend::Postgres, url, 8, cleanup).await)
    }

    async fn open(backend: Backend, url: String, pool_size: usize, cleanup: Cleanup) -> TestDb {
        let key = FernetKey::generate();
        let keys = ring_of(&key);
        let mut db = TestDb {
            backend,
            store: connect(&url, pool_size, keys.clone()).await,
            key,
            keys,
            applied: Vec::new(),
            url,
            cleanup: Some(cleanup),
        };
        db.applied = db
            .store
            .run_pending_migrations()
            .await
            .expect("migrations apply to an empty database");
        db
    }

    /// Another store on the same database, with another key ring.
    pub async fn store_with(&self, keys: KeyRing) -> Store {
        connect(&self.url, 2, keys).await
    }

    /// Registers a user.
    pub async fn user(&self, name: &str) -> User {
        self.store
            .create_user(&username(name), "$2b$12$not-a-real-hash")
            .await
            .expect("create user")
    }

    /// The stored `body` and `key_id` of every message, by id, read with
    /// plain SQL past the store.
    pub async fn raw_messages(&self) -> Vec<RawMessage> {
        let query = diesel::sql_query("SELECT body, key_id FROM messages ORDER BY id");
        match self.backend {
            Backend::Postgres => query.load(&mut self.raw_pg().await).await,
            Backend::Sqlite => query.load(&mut self.raw_sqlite().await).await,
        }
        .expect("read messages")
    }

    /// How many tables, indexes and sequences exist besides diesel's own
    /// bookkeeping.
    pub async fn schema_object_count(&self) -> i64 {
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
        rows.first().map(|row| row.n).expect("count returns one row")
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
    pub async fn cleanup(mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.run().await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Only reached when a test panicked before `cleanup`. The async
        // runtime may be shutting down, so a thread of its own does the work.
        if let Some(cleanup) = self.cleanup.take() {
            let worker = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(cleanup.run());
                }
            });
            let _ = worker.join();
        }
    }
}

impl Cleanup {
    async fn run(self) {
        match self {
            Cleanup::RemoveDirectory(directory) => {
                let _ = std::fs::remove_dir_all(directory);
            }
            Cleanup::DropDatabase { admin_url, name } => {
                if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url).await {
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    if let Err(error) = diesel::sql_query(drop).execute(&mut admin).await {
                        eprintln!("could not drop test database {name}: {error}");
                    }
                }
            }
        }
    }
}

#[derive(QueryableByName)]
pub struct RawMessage {
    #[diesel(sql_type = Text)]
    pub body: String,
    #[diesel(sql_type = Text)]
    pub key_id: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub async fn connect(url: &str, pool_size: usize, keys: KeyRing) -> Store {
    Store::connect(StoreConfig {
        url: url.to_owned(),
        pool_size,
        keys,
    })
    .await
    .expect("build the store")
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    let mut result = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

pub fn username(name: &str) -> Username {
    Username::parse(name).expect("valid username")
}

/// A message from `user` to `room`.
pub fn message(room: RoomId, user: &User, text: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        room_id: room,
        user_id: user.id,
        username: user.username.clone(),
        body: MessageBody::parse(text).expect("valid body"),
        client_id: client_id.map(|id| ClientId::parse(id).expect("valid client id")),
    }
}

#[test]
fn the_database_name_is_replaced_and_the_rest_kept() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/postgres", "x"),
        "postgres://u:p@h:5432/x"
    );
    assert_eq!(
        with_database("postgresql://h/db?sslmode=disable", "x"),
        "postgresql://h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
