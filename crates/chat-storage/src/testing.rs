//! Throw-away databases for tests, behind the `testing` feature: a SQLite
//! file in a fresh temporary directory, or a PostgreSQL database with a
//! random name on the server `CHAT_TEST_DATABASE_URL` names.
//!
//! PostgreSQL tests are skipped (with a note on stderr) when that variable
//! is unset, unless `CHAT_TEST_REQUIRE_POSTGRES=1`: then a missing or
//! unreachable server fails the test loudly, so CI never skips silently.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The variable naming the PostgreSQL server tests may create databases on.
pub const DATABASE_URL_VAR: &str = "CHAT_TEST_DATABASE_URL";
/// Set to `1` to make a missing PostgreSQL a failure instead of a skip.
pub const REQUIRE_POSTGRES_VAR: &str = "CHAT_TEST_REQUIRE_POSTGRES";

/// Which backend a test database is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A database on a PostgreSQL server.
    Postgres,
}

/// An empty database of a test's own. Call [`TestDatabase::drop_database`]
/// at the end; if the test panics first, `Drop` removes it instead.
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
    url: String,
    cleanup: Option<Cleanup>,
}

#[derive(Debug)]
enum Cleanup {
    RemoveDirectory(PathBuf),
    DropDatabase { admin_url: String, name: String },
}

/// [`crate::Store::reencrypt_batch`] with `meanwhile` run after the batch
/// was read and re-encrypted and before it is written back: the window in
/// which a concurrent writer could change a row, made deterministic.
pub async fn reencrypt_batch_with_meanwhile(
    store: &crate::Store,
    after: Option<chat_domain::MessageId>,
    batch_size: i64,
    meanwhile: impl std::future::Future<Output = ()>,
) -> Result<crate::ReencryptProgress, crate::StorageError> {
    let planned = store.plan_reencryption(after, batch_size).await?;
    meanwhile.await;
    store.apply_reencryption(planned).await
}

/// A pooled connection of a PostgreSQL store; `None` on SQLite.
async fn postgres_connection(
    store: &crate::Store,
) -> Result<
    Option<
        deadpool::managed::Object<
            diesel_async::pooled_connection::AsyncDieselConnectionManager<AsyncPgConnection>,
        >,
    >,
    crate::StorageError,
> {
    match &store.inner.pools {
        crate::store::Pools::Postgres(pools) => {
            Ok(Some(crate::store::checkout(pools.local()).await?))
        }
        crate::store::Pools::Sqlite { .. } => Ok(None),
    }
}

/// The one text column `value` of the one row `query` returns, run on a
/// pooled connection of a PostgreSQL store; `None` on SQLite.
async fn postgres_value(
    store: &crate::Store,
    query: diesel::query_builder::BoxedSqlQuery<
        '_,
        diesel::pg::Pg,
        diesel::query_builder::SqlQuery,
    >,
) -> Result<Option<String>, crate::StorageError> {
    #[derive(diesel::QueryableByName)]
    struct Value {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let Some(mut connection) = postgres_connection(store).await? else {
        return Ok(None);
    };
    let row: Value = query.get_result(&mut *connection).await?;
    Ok(Some(row.value))
}

/// `PRAGMA synchronous` of a pooled connection of a SQLite store (0 OFF,
/// 1 NORMAL, 2 FULL, 3 EXTRA); `None` on PostgreSQL.
pub async fn sqlite_synchronous(store: &crate::Store) -> Result<Option<i32>, crate::StorageError> {
    #[derive(diesel::QueryableByName)]
    struct Value {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        synchronous: i32,
    }
    match &store.inner.pools {
        crate::store::Pools::Sqlite { pool, .. } => {
            let mut connection = crate::store::checkout(pool).await?;
            let connection: &mut crate::store::SqliteConn = &mut connection;
            let row: Value = diesel::sql_query("PRAGMA synchronous")
                .get_result(connection)
                .await?;
            Ok(Some(row.synchronous))
        }
        crate::store::Pools::Postgres(_) => Ok(None),
    }
}

/// The value of a run-time setting (`current_setting(name)`) on a pooled
/// connection of a PostgreSQL store; `None` on SQLite.
pub async fn postgres_setting(
    store: &crate::Store,
    name: &str,
) -> Result<Option<String>, crate::StorageError> {
    let query = diesel::sql_query("SELECT current_setting($1) AS value")
        .into_boxed()
        .bind::<diesel::sql_types::Text, _>(name);
    postgres_value(store, query).await
}

/// The process id (as text) of the PostgreSQL server process behind the
/// connection that the calling thread gets from a PostgreSQL store; `None`
/// on SQLite.
pub async fn postgres_backend_pid(
    store: &crate::Store,
) -> Result<Option<String>, crate::StorageError> {
    let query = diesel::sql_query("SELECT pg_backend_pid()::text AS value").into_boxed();
    postgres_value(store, query).await
}

/// The plan PostgreSQL picks for `query` on a pooled connection of a
/// PostgreSQL store (`EXPLAIN`, one line per node); `None` on SQLite.
pub async fn postgres_plan(
    store: &crate::Store,
    query: &str,
) -> Result<Option<String>, crate::StorageError> {
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let Some(mut connection) = postgres_connection(store).await? else {
        return Ok(None);
    };
    let lines: Vec<Line> = diesel::sql_query(format!("EXPLAIN {query}"))
        .load(&mut *connection)
        .await?;
    let lines: Vec<String> = lines.into_iter().map(|line| line.line).collect();
    Ok(Some(lines.join("\n")))
}

/// A row of the original Python backend's `users`, as it wrote it.
#[derive(Debug, Clone)]
pub struct OriginalUserRow {
    pub id: i64,
    pub username: String,
    pub hashed_password: String,
    /// As SQLAlchemy wrote it on SQLite: `2024-03-01 09:00:00.000000`.
    pub created_at: Option<String>,
}

/// A row of the original Python backend's `messages`, as it wrote it.
#[derive(Debug, Clone)]
pub struct OriginalMessageRow {
    pub id: i64,
    pub user_id: i64,
    /// The Fernet token.
    pub content: String,
    /// As SQLAlchemy wrote it on SQLite: `2024-03-01 09:00:00.000000`.
    pub created_at: Option<String>,
}

/// The original's tables on PostgreSQL, as SQLAlchemy's `create_all`
/// made them (see `scripts/original-vectors.py`).
const ORIGINAL_SCHEMA_POSTGRES: &str = "\
    CREATE TABLE users (id SERIAL PRIMARY KEY, username VARCHAR(50) NOT NULL, \
        hashed_password VARCHAR(255) NOT NULL, created_at TIMESTAMP WITHOUT TIME ZONE); \
    CREATE UNIQUE INDEX ix_users_username ON users (username); \
    CREATE INDEX ix_users_id ON users (id); \
    CREATE TABLE messages (id SERIAL PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users (id), \
        content TEXT NOT NULL, created_at TIMESTAMP WITHOUT TIME ZONE); \
    CREATE INDEX ix_messages_id ON messages (id);";

/// The same on SQLite.
const ORIGINAL_SCHEMA_SQLITE: &str = "\
    CREATE TABLE users (id INTEGER NOT NULL PRIMARY KEY, username VARCHAR(50) NOT NULL, \
        hashed_password VARCHAR(255) NOT NULL, created_at DATETIME); \
    CREATE UNIQUE INDEX ix_users_username ON users (username); \
    CREATE INDEX ix_users_id ON users (id); \
    CREATE TABLE messages (id INTEGER NOT NULL PRIMARY KEY, \
        user_id INTEGER NOT NULL REFERENCES users (id), content TEXT NOT NULL, created_at DATETIME); \
    CREATE INDEX ix_messages_id ON messages (id);";

/// Builds the original backend's tables in the empty database `database`
/// and writes `users` and `messages` into them as they are: the source of
/// an import. On SQLite, times are stored as the text given, as SQLAlchemy
/// did; on PostgreSQL, as `timestamp without time zone`.
pub async fn write_original_database(
    database: &TestDatabase,
    users: &[OriginalUserRow],
    messages: &[OriginalMessageRow],
) -> Result<(), crate::StorageError> {
    use diesel::sql_types::{BigInt, Nullable, Text};
    use diesel_async::SimpleAsyncConnection;

    macro_rules! write_rows {
        ($conn:expr, $schema:expr, $time:literal) => {{
            let conn = $conn;
            conn.batch_execute($schema).await?;
            for user in users {
                diesel::sql_query(concat!(
                    "INSERT INTO users (id, username, hashed_password, created_at) \
                     VALUES ($1, $2, $3, ",
                    $time,
                    ")"
                ))
                .bind::<BigInt, _>(user.id)
                .bind::<Text, _>(&user.username)
                .bind::<Text, _>(&user.hashed_password)
                .bind::<Nullable<Text>, _>(&user.created_at)
                .execute(&mut *conn)
                .await?;
            }
            for message in messages {
                diesel::sql_query(concat!(
                    "INSERT INTO messages (id, user_id, content, created_at) \
                     VALUES ($1, $2, $3, ",
                    $time,
                    ")"
                ))
                .bind::<BigInt, _>(message.id)
                .bind::<BigInt, _>(message.user_id)
                .bind::<Text, _>(&message.content)
                .bind::<Nullable<Text>, _>(&message.created_at)
                .execute(&mut *conn)
                .await?;
            }
        }};
    }

    match database.backend {
        Backend::Postgres => {
            let mut conn = AsyncPgConnection::establish(&database.url)
                .await
                .map_err(crate::StorageError::unavailable)?;
            write_rows!(&mut conn, ORIGINAL_SCHEMA_POSTGRES, "CAST($4 AS TIMESTAMP)");
        }
        Backend::Sqlite => {
            let path = database
                .url
                .strip_prefix("sqlite://")
                .unwrap_or(&database.url);
            if let Some(parent) = std::path::Path::new(path).parent() {
                std::fs::create_dir_all(parent).map_err(crate::StorageError::unavailable)?;
            }
            let mut conn = crate::store::SqliteConn::establish(path)
                .await
                .map_err(crate::StorageError::unavailable)?;
            write_rows!(&mut conn, ORIGINAL_SCHEMA_SQLITE, "$4");
        }
    }
    Ok(())
}

/// A name no other test of any run shares.
pub fn unique_name() -> String {
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

impl TestDatabase {
    /// A SQLite database in a directory that does not exist yet (the store
    /// creates it).
    pub fn sqlite() -> TestDatabase {
        let directory = std::env::temp_dir().join(unique_name());
        let url = format!(
            "sqlite://{}",
            directory.join("data").join("chat.db").display()
        );
        TestDatabase {
            backend: Backend::Sqlite,
            url,
            cleanup: Some(Cleanup::RemoveDirectory(directory)),
        }
    }

    /// A fresh PostgreSQL database, or `None` (after saying so) when no
    /// server is configured and none is required.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is required but not configured or unreachable, or the
    /// database cannot be created: a test must not pass without it.
    pub async fn postgres() -> Option<TestDatabase> {
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
        if let Err(error) = diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
        {
            panic!("could not create the test database {name}: {error}");
        }
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            backend: Backend::Postgres,
            url,
            cleanup: Some(Cleanup::DropDatabase { admin_url, name }),
        })
    }

    /// The database URL, for [`crate::StoreConfig`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Removes the database.
    pub async fn drop_database(mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.run().await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Only reached when a test panicked before `drop_database`. The
        // async runtime may be shutting down, so a thread of its own does the
        // work.
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

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2"),
            "postgres://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name(), unique_name());
    }
}
