//! Reading the original Python backend's database, for `chat-server
//! import-original`: its `users` and `messages` tables as SQLAlchemy
//! created them, on PostgreSQL (its production setup) or SQLite (its demo).
//!
//! The original's schema is not ours, so it is read with plain SQL on a
//! connection of its own, and never written: the SQLite file is opened
//! read-only, and the PostgreSQL session is made read-only before the first
//! query. Messages are read in pages in the original's `(created_at, id)`
//! order, each page after the last row of the one before (keyset paging),
//! so a page costs the same at the end of a large table as at its start.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::StorageError;
use crate::config::Target;
use crate::store::SqliteConn;

/// Set on the PostgreSQL session before anything is read: no statement of
/// the session can write, and times are printed in the one format that
/// [`parse_time`] reads.
const POSTGRES_SETUP: &str = "SET default_transaction_read_only = on; \
     SET DateStyle = 'ISO, YMD'; \
     SET TimeZone = 'UTC'";

/// Set on the SQLite connection: no statement can write, and a running
/// original holding the write lock is waited for rather than failed on.
const SQLITE_SETUP: &str = "PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;";

/// Users per page of [`OriginalDatabase::users`].
const USERS_PER_PAGE: i64 = 1_000;

/// The original's database, open for reading.
pub struct OriginalDatabase {
    connection: Connection,
}

enum Connection {
    Postgres(Box<AsyncPgConnection>),
    Sqlite(Box<SqliteConn>),
}

impl std::fmt::Debug for OriginalDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.connection {
            Connection::Postgres(_) => "postgres",
            Connection::Sqlite(_) => "sqlite",
        };
        f.debug_struct("OriginalDatabase")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

/// A row of the original's `users`.
#[derive(Clone, PartialEq, Eq)]
pub struct OriginalUser {
    pub id: i64,
    /// As the original stored it: any text.
    pub username: String,
    /// passlib's bcrypt hash (`$2b$12$...`).
    pub hashed_password: String,
    /// `None` when the row has none or it is not a time.
    pub created_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for OriginalUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginalUser")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("hashed_password", &format_args!("<redacted>"))
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A row of the original's `messages`, still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalMessage {
    pub id: i64,
    pub user_id: i64,
    /// A Fernet token of the UTF-8 text, under the original's key.
    pub content: String,
    /// `None` when the stored value is not a time this reader understands.
    pub created_at: Option<DateTime<Utc>>,
    /// Where the next page starts when this is the last row of a page.
    pub position: OriginalPosition,
}

/// A place in the original's `(created_at, id)` order: the cursor of
/// [`OriginalDatabase::messages_after`]. It holds the time as the original's
/// database prints it, so the next page compares it with exactly what was
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalPosition {
    created_at: String,
    id: i64,
}

#[derive(QueryableByName)]
struct UserRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Text)]
    hashed_password: String,
    #[diesel(sql_type = Nullable<Text>)]
    created_at: Option<String>,
}

#[derive(QueryableByName)]
struct MessageRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Text)]
    content: String,
    #[diesel(sql_type = Text)]
    created_at: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Time {
    #[diesel(sql_type = Text)]
    created_at: String,
}

/// Runs `$body` with `$conn` bound to the connection, whichever backend it
/// is on; the body is written once and compiled for each.
macro_rules! on_original {
    ($database:expr, |$conn:ident| $body:expr) => {{
        match &mut $database.connection {
            Connection::Postgres(connection) => {
                let $conn: &mut AsyncPgConnection = connection;
                $body
            }
            Connection::Sqlite(connection) => {
                let $conn: &mut SqliteConn = connection;
                $body
            }
        }
    }};
}

// The SQL below is plain SQL that both backends read the same way; a
// parameter is written `$n` for both (SQLite takes it as a named
// parameter, numbered in order of appearance). Ids are cast to BIGINT,
// since the original's are INTEGER, and times to text, see
// `OriginalPosition`. Conditions and orderings name columns with their
// table, so that they mean the stored column and not the cast of the same
// name in the select list (which both backends would otherwise prefer in
// ORDER BY).

const USERS_PAGE: &str = "SELECT CAST(id AS BIGINT) AS id, username, hashed_password, \
     CAST(created_at AS TEXT) AS created_at \
     FROM users WHERE users.id > $1 ORDER BY users.id LIMIT $2";

const MESSAGE_COLUMNS: &str = "SELECT CAST(id AS BIGINT) AS id, \
     CAST(user_id AS BIGINT) AS user_id, content, \
     CAST(created_at AS TEXT) AS created_at FROM messages \
     WHERE messages.created_at IS NOT NULL";

/// The cursor condition, the one place where the dialects differ: the
/// position's time is text, which PostgreSQL must be told is a timestamp,
/// while SQLite stores the original's times as that very text.
const AFTER_POSTGRES: &str =
    " AND (messages.created_at, messages.id) > (CAST($1 AS TIMESTAMP), $2)";
const AFTER_SQLITE: &str = " AND (messages.created_at, messages.id) > ($1, $2)";

/// The original's order.
const ORDER: &str = " ORDER BY messages.created_at, messages.id";

impl OriginalDatabase {
    /// Opens the original's database for reading: `postgres://…`,
    /// `postgresql://…` or `sqlite://PATH`. A SQLite file that does not
    /// exist is an error, never created.
    pub async fn open(url: &str) -> Result<OriginalDatabase, StorageError> {
        let connection = match Target::parse(url)? {
            Target::Postgres(url) => {
                let mut connection = AsyncPgConnection::establish(&url)
                    .await
                    .map_err(StorageError::unavailable)?;
                connection.batch_execute(POSTGRES_SETUP).await?;
                Connection::Postgres(Box::new(connection))
            }
            Target::Sqlite(path) => {
                if !path.is_file() {
                    return Err(StorageError::NotFound(format!(
                        "no SQLite database at {}",
                        path.display()
                    )));
                }
                let uri = format!("file:{}?mode=ro", uri_path(&path.to_string_lossy()));
                let mut connection = SqliteConn::establish(&uri)
                    .await
                    .map_err(StorageError::unavailable)?;
                connection.batch_execute(SQLITE_SETUP).await?;
                Connection::Sqlite(Box::new(connection))
            }
        };
        Ok(OriginalDatabase { connection })
    }

    /// Every user, by id.
    pub async fn users(&mut self) -> Result<Vec<OriginalUser>, StorageError> {
        let mut users = Vec::new();
        let mut after = 0_i64;
        loop {
            let query = diesel::sql_query(USERS_PAGE)
                .bind::<BigInt, _>(after)
                .bind::<BigInt, _>(USERS_PER_PAGE);
            let rows: Vec<UserRow> = on_original!(self, |conn| query.load(conn).await?);
            let full = rows.len() as i64 == USERS_PER_PAGE;
            for row in rows {
                after = row.id;
                users.push(OriginalUser {
                    id: row.id,
                    username: row.username,
                    hashed_password: row.hashed_password,
                    created_at: row.created_at.as_deref().and_then(parse_time),
                });
            }
            if !full {
                return Ok(users);
            }
        }
    }

    /// How many messages there are, with or without a time.
    pub async fn message_count(&mut self) -> Result<i64, StorageError> {
        let query = diesel::sql_query("SELECT COUNT(*) AS n FROM messages");
        let count: Count = on_original!(self, |conn| query.get_result(conn).await?);
        Ok(count.n)
    }

    /// The ids of the messages without a time, which have no place in the
    /// `(created_at, id)` order and which [`Self::messages_after`] skips.
    pub async fn messages_without_time(&mut self) -> Result<Vec<i64>, StorageError> {
        let query = diesel::sql_query(
            "SELECT CAST(id AS BIGINT) AS id FROM messages WHERE created_at IS NULL ORDER BY id",
        );
        let ids: Vec<Id> = on_original!(self, |conn| query.load(conn).await?);
        Ok(ids.into_iter().map(|row| row.id).collect())
    }

    /// The position of the message with this id, if it exists and has a
    /// time: where an import that brought it over resumes.
    pub async fn position_of(&mut self, id: i64) -> Result<Option<OriginalPosition>, StorageError> {
        let query = diesel::sql_query(
            "SELECT CAST(created_at AS TEXT) AS created_at FROM messages \
             WHERE messages.id = $1 AND messages.created_at IS NOT NULL",
        )
        .bind::<BigInt, _>(id);
        let rows: Vec<Time> = on_original!(self, |conn| query.load(conn).await?);
        Ok(rows.into_iter().next().map(|row| OriginalPosition {
            created_at: row.created_at,
            id,
        }))
    }

    /// Up to `limit` messages with a time, in `(created_at, id)` order,
    /// after `after` (`None`: from the first).
    pub async fn messages_after(
        &mut self,
        after: Option<&OriginalPosition>,
        limit: i64,
    ) -> Result<Vec<OriginalMessage>, StorageError> {
        let rows: Vec<MessageRow> = match after {
            None => {
                let sql = format!("{MESSAGE_COLUMNS}{ORDER} LIMIT $1");
                let query = diesel::sql_query(sql).bind::<BigInt, _>(limit);
                on_original!(self, |conn| query.load(conn).await?)
            }
            Some(position) => {
                let condition = match self.connection {
                    Connection::Postgres(_) => AFTER_POSTGRES,
                    Connection::Sqlite(_) => AFTER_SQLITE,
                };
                let sql = format!("{MESSAGE_COLUMNS}{condition}{ORDER} LIMIT $3");
                let query = diesel::sql_query(sql)
                    .bind::<Text, _>(position.created_at.clone())
                    .bind::<BigInt, _>(position.id)
                    .bind::<BigInt, _>(limit);
                on_original!(self, |conn| query.load(conn).await?)
            }
        };
        Ok(rows
            .into_iter()
            .map(|row| OriginalMessage {
                id: row.id,
                user_id: row.user_id,
                content: row.content,
                created_at: parse_time(&row.created_at),
                position: OriginalPosition {
                    created_at: row.created_at,
                    id: row.id,
                },
            })
            .collect())
    }
}

/// A time as the original's database prints it: SQLAlchemy's text on
/// SQLite (`2024-03-01 09:00:00.000000`), PostgreSQL's ISO output
/// (`2024-03-01 09:00:00.5`, with `+00` after it for a column with a time
/// zone). Naive times are UTC, as the original wrote them.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(time) = DateTime::parse_from_str(text, format) {
            return Some(time.with_timezone(&Utc));
        }
    }
    None
}

/// A file path as the path of a `file:` URI: the characters that would
/// end it or start an escape are escaped.
fn uri_path(path: &str) -> String {
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3f"),
            '#' => escaped.push_str("%23"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid RFC 3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn times_are_read_as_sqlalchemy_and_postgresql_print_them() {
        assert_eq!(
            parse_time("2024-03-01 09:00:00.000000"),
            Some(at("2024-03-01T09:00:00Z"))
        );
        assert_eq!(
            parse_time("2024-03-01 09:00:05.25"),
            Some(at("2024-03-01T09:00:05.25Z"))
        );
        assert_eq!(
            parse_time("2024-03-01 09:00:05"),
            Some(at("2024-03-01T09:00:05Z"))
        );
        assert_eq!(
            parse_time("2024-03-01T09:00:05.000001"),
            Some(at("2024-03-01T09:00:05.000001Z"))
        );
        assert_eq!(
            parse_time("2024-03-01 10:00:05.5+01"),
            Some(at("2024-03-01T09:00:05.5Z"))
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn uri_paths_escape_what_would_end_them() {
        assert_eq!(uri_path("/srv/old/chat.db"), "/srv/old/chat.db");
        assert_eq!(uri_path("/tmp/a?b#c%d"), "/tmp/a%3fb%23c%25d");
    }
}
