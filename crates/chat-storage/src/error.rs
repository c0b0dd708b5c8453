use std::error::Error as StdError;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use thiserror::Error;

/// A boxed cause, so no diesel or pool type appears in the public API.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a storage call failed, in terms a caller can act on.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The thing asked for (a room, a user) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The write would break a uniqueness rule: a taken username or room name.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached, or no connection became free in time.
    /// Retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    /// Applying or reverting migrations failed.
    #[error("migration failed")]
    Migration(#[source] BoxError),
    /// The database URL is not one this crate understands. The message never
    /// repeats the URL, which may contain a password.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// A stored row breaks a domain rule (an invalid name, a negative seq).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A rule of the room refused the change; nothing was written.
    #[error("refused: {0}")]
    Refused(chat_domain::Refusal),
    /// Any other database error.
    #[error("database query failed")]
    Query(#[source] BoxError),
}

impl StorageError {
    pub(crate) fn unavailable(error: impl Into<BoxError>) -> StorageError {
        StorageError::Unavailable(error.into())
    }

    /// Replaces the database's wording of a uniqueness violation with one
    /// that names what is taken.
    pub(crate) fn conflict_as(self, what: &str) -> StorageError {
        match self {
            StorageError::Conflict(_) => StorageError::Conflict(what.to_owned()),
            other => other,
        }
    }
}

impl From<DieselError> for StorageError {
    fn from(error: DieselError) -> StorageError {
        match error {
            DieselError::NotFound => StorageError::NotFound("row".to_owned()),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StorageError::Conflict(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                StorageError::NotFound(info.message().to_owned())
            }
            // Both kinds mean the connection is gone: tokio-postgres reports
            // a closed socket as "unable to send command", and diesel-async's
            // SQLite wrapper does the same when its blocking task fails.
            error @ DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => StorageError::Unavailable(Box::new(error)),
            error @ DieselError::BrokenTransactionManager => {
                StorageError::Unavailable(Box::new(error))
            }
            // diesel does not expose PostgreSQL's SQLSTATE, so a server that
            // is going away (57P01 "terminating connection", 57P03 "the
            // database system is shutting down", a reset socket) is told by
            // its message.
            DieselError::DatabaseError(kind, info) if is_outage_message(info.message()) => {
                StorageError::Unavailable(Box::new(DieselError::DatabaseError(kind, info)))
            }
            other => StorageError::Query(Box::new(other)),
        }
    }
}

impl From<deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>>
    for StorageError
{
    fn from(
        error: deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>,
    ) -> StorageError {
        // Every way of not getting a connection (timeout, refused, closed
        // pool) is an outage from the caller's point of view.
        StorageError::unavailable(error)
    }
}

/// Whether a database error message says the server or the connection went
/// away, rather than that the query was wrong.
fn is_outage_message(message: &str) -> bool {
    const OUTAGES: [&str; 10] = [
        "terminating connection",
        "the database system is",
        "server closed the connection",
        "connection closed",
        "connection reset",
        "connection refused",
        "broken pipe",
        "error communicating with the server",
        "unexpected end of file",
        "unexpected eof",
    ];
    let message = message.to_ascii_lowercase();
    OUTAGES.iter().any(|outage| message.contains(outage))
}

#[cfg(test)]
mod outage_tests {
    use super::is_outage_message;

    #[test]
    fn a_server_going_away_is_an_outage_and_a_bad_query_is_not() {
        assert!(is_outage_message(
            "terminating connection due to administrator command"
        ));
        assert!(is_outage_message(
            "FATAL: the database system is shutting down"
        ));
        assert!(is_outage_message("Connection reset by peer (os error 104)"));
        assert!(!is_outage_message("syntax error at or near \"SELCT\""));
        assert!(!is_outage_message(
            "duplicate key value violates unique constraint"
        ));
    }
}
