//! Whether the database keeps the promise the server makes: a message is
//! acknowledged only once it is committed, and a committed message
//! survives a crash of the database server, of the machine or of its
//! power. That holds only while the database syncs its commits to disk.

use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

use crate::store::{Pools, SqliteSynchronous};
use crate::{StorageError, Store};

#[derive(QueryableByName)]
struct Settings {
    #[diesel(sql_type = diesel::sql_types::Text)]
    fsync: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    synchronous_commit: String,
}

impl Store {
    /// What, in the database's settings, breaks "acknowledged means
    /// durable", one sentence each; empty when nothing does. On PostgreSQL
    /// `fsync` and `synchronous_commit` must be on (`synchronous_commit` may
    /// also be `local`, `remote_write` or `remote_apply`, which all wait for
    /// the local disk); on SQLite, `synchronous` must be `FULL`.
    pub async fn durability_warnings(&self) -> Result<Vec<String>, StorageError> {
        let pools = match &self.inner.pools {
            Pools::Sqlite { synchronous, .. } => {
                return Ok(match synchronous {
                    SqliteSynchronous::Full => Vec::new(),
                    SqliteSynchronous::Normal => vec![
                        "SQLite runs with synchronous = NORMAL (CHAT_SQLITE_SYNCHRONOUS=normal): \
                         a power failure or kernel crash can lose the last acknowledged messages"
                            .to_owned(),
                    ],
                });
            }
            Pools::Postgres(pools) => pools,
        };
        let mut connection = crate::store::checkout(pools.local()).await?;
        let connection: &mut diesel_async::AsyncPgConnection = &mut connection;
        let settings: Settings = diesel::sql_query(
            "SELECT current_setting('fsync') AS fsync, \
             current_setting('synchronous_commit') AS synchronous_commit",
        )
        .get_result(connection)
        .await?;
        let mut warnings = Vec::new();
        if settings.fsync != "on" {
            warnings.push(
                "PostgreSQL runs with fsync = off: a crash of the database server or of its \
                 machine can lose acknowledged messages, or corrupt the database"
                    .to_owned(),
            );
        }
        if settings.synchronous_commit == "off" {
            warnings.push(
                "PostgreSQL runs with synchronous_commit = off: a crash of the database server \
                 can lose the last acknowledged messages"
                    .to_owned(),
            );
        }
        Ok(warnings)
    }
}
