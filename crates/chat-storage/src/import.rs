//! Writing what `chat-server import-original` brings over from the original
//! Python backend's database (see [`crate::OriginalDatabase`] for the
//! reading side).
//!
//! Every user and message written here is recorded by its original id
//! (`imported_users`, `imported_messages`) in the same transaction that
//! writes it, so an import that stops anywhere and runs again never brings
//! anything over twice: the primary keys on the original ids refuse it.
//! Messages take the batch write path of live messages
//! ([`Store::append_messages`]'s transaction), numbered in `general` like
//! any other, but keep their original time.

use std::future::Future;

use chat_crypto::Sealed;
use chat_domain::{MessageBody, RoomId, RoomName, UserId, Username};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::messages::{Origin, Resends};
use crate::model::NewMessage;
use crate::rows::{now, username};
use crate::schema::{imported_messages, imported_users, messages, room_members, rooms, users};
use crate::store::SqliteConn;
use crate::{StorageError, Store};

/// The most messages one [`Store::import_messages`] call takes.
pub const MAX_IMPORT_BATCH: usize = 10_000;

/// A user of the original, as it is to be stored here.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportUser {
    /// Its id in the original's `users` table.
    pub original_id: i64,
    /// Its name there, kept for the record.
    pub original_username: String,
    /// Its name here: the original one, or the one it was renamed to.
    pub username: Username,
    /// The original's bcrypt hash, so the old password keeps working.
    pub password_hash: String,
    /// When it registered there; `None` (the original left it empty) is
    /// the time of the import.
    pub created_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ImportUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportUser")
            .field("original_id", &self.original_id)
            .field("original_username", &self.original_username)
            .field("username", &self.username)
            .field("password_hash", &format_args!("<redacted>"))
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A user brought over by an earlier import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedUser {
    pub original_id: i64,
    pub user_id: UserId,
    /// Its name here.
    pub username: Username,
}

/// A message of the original, decrypted, as it is to be stored here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportMessage {
    /// Its id in the original's `messages` table.
    pub original_id: i64,
    /// Its author, already imported.
    pub user_id: UserId,
    pub username: Username,
    pub body: MessageBody,
    /// Its original time; kept to the microsecond.
    pub created_at: DateTime<Utc>,
}

/// Where an import stands, read before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportState {
    /// The room imported messages go to.
    pub general: RoomId,
    /// The newest seq of `general`.
    pub general_last_seq: i64,
    /// Messages brought over so far.
    pub imported_messages: i64,
    /// The newest message brought over so far: where an import resumes.
    pub last_imported: Option<LastImported>,
}

/// The newest imported message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastImported {
    /// Its id in the original.
    pub original_id: i64,
    /// Its seq in `general`.
    pub seq: i64,
}

impl ImportState {
    /// Messages of `general` after the newest imported one (all of them
    /// when nothing was imported yet): messages written here, which the
    /// rest of an import would follow.
    pub fn messages_after_import(&self) -> i64 {
        let imported_up_to = self.last_imported.map_or(0, |last| last.seq);
        (self.general_last_seq - imported_up_to).max(0)
    }
}

/// The original id and time of one message of an imported batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Provenance {
    pub(crate) original_id: i64,
    pub(crate) created_at: NaiveDateTime,
}

/// Inserts `imported_messages` rows. PostgreSQL takes them in one
/// statement through diesel-async; SQLite's multi-row insert exists only on
/// diesel's synchronous connection, so it runs there, on the blocking pool.
pub(crate) trait RecordImports {
    /// Records `(original id, message id)` pairs.
    fn record_imported_messages(
        &mut self,
        records: &[(i64, i64)],
    ) -> impl Future<Output = QueryResult<usize>> + Send;
}

/// The values of an `imported_messages` insert.
fn record_values(
    records: &[(i64, i64)],
) -> Vec<(
    diesel::dsl::Eq<imported_messages::original_id, i64>,
    diesel::dsl::Eq<imported_messages::message_id, i64>,
)> {
    records
        .iter()
        .map(|&(original_id, message_id)| {
            (
                imported_messages::original_id.eq(original_id),
                imported_messages::message_id.eq(message_id),
            )
        })
        .collect()
}

impl RecordImports for AsyncPgConnection {
    async fn record_imported_messages(&mut self, records: &[(i64, i64)]) -> QueryResult<usize> {
        diesel::insert_into(imported_messages::table)
            .values(record_values(records))
            .execute(self)
            .await
    }
}

impl RecordImports for SqliteConn {
    async fn record_imported_messages(&mut self, records: &[(i64, i64)]) -> QueryResult<usize> {
        let values = record_values(records);
        self.spawn_blocking(move |connection| {
            diesel::RunQueryDsl::execute(
                diesel::insert_into(imported_messages::table).values(values),
                connection,
            )
        })
        .await
    }
}

/// A time as stored: UTC to the microsecond.
fn stored_time(time: DateTime<Utc>) -> NaiveDateTime {
    time.naive_utc().trunc_subsecs(6)
}

impl Store {
    /// Where an import stands: `general`, its newest seq, and the newest
    /// message imported so far.
    pub async fn import_state(&self) -> Result<ImportState, StorageError> {
        let general = RoomName::general();
        let (room, last_seq, imported, last) = with_conn!(self, |conn| {
            let (room, last_seq): (i64, i64) = rooms::table
                .filter(rooms::name.eq(general.as_str()))
                .select((rooms::id, rooms::last_seq))
                .first(conn)
                .await
                .optional()?
                .ok_or_else(|| StorageError::NotFound("the general room".to_owned()))?;
            let imported: i64 = imported_messages::table.count().get_result(conn).await?;
            let last: Option<(i64, i64)> = imported_messages::table
                .inner_join(messages::table)
                .order(imported_messages::message_id.desc())
                .select((imported_messages::original_id, messages::seq))
                .first(conn)
                .await
                .optional()?;
            (room, last_seq, imported, last)
        });
        Ok(ImportState {
            general: RoomId(room),
            general_last_seq: last_seq,
            imported_messages: imported,
            last_imported: last.map(|(original_id, seq)| LastImported { original_id, seq }),
        })
    }

    /// Every user an earlier import brought over, by original id.
    pub async fn imported_users(&self) -> Result<Vec<ImportedUser>, StorageError> {
        let rows: Vec<(i64, i64, String)> = with_conn!(self, |conn| {
            imported_users::table
                .inner_join(users::table)
                .order(imported_users::original_id.asc())
                .select((
                    imported_users::original_id,
                    imported_users::user_id,
                    users::username,
                ))
                .load(conn)
                .await?
        });
        rows.into_iter()
            .map(|(original_id, user_id, name)| {
                Ok(ImportedUser {
                    original_id,
                    user_id: UserId(user_id),
                    username: username(name)?,
                })
            })
            .collect()
    }

    /// The names of every user, in no particular order: what an import
    /// must not give to anyone else.
    pub async fn usernames(&self) -> Result<Vec<Username>, StorageError> {
        let names: Vec<String> = with_conn!(self, |conn| {
            users::table.select(users::username).load(conn).await?
        });
        names.into_iter().map(username).collect()
    }

    /// Which of these original message ids an earlier import brought over.
    pub async fn already_imported(&self, original_ids: &[i64]) -> Result<Vec<i64>, StorageError> {
        if original_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(with_conn!(self, |conn| {
            imported_messages::table
                .filter(imported_messages::original_id.eq_any(original_ids))
                .select(imported_messages::original_id)
                .load(conn)
                .await?
        }))
    }

    /// Stores users of the original with their bcrypt hashes, makes each a
    /// member of `general`, and records each by its original id, all in
    /// one transaction. Returns their new ids, in input order.
    ///
    /// Fails with [`StorageError::Conflict`] when a name is taken (ignoring
    /// case) or an original id was imported before; then none is stored.
    pub async fn import_users(&self, batch: &[ImportUser]) -> Result<Vec<UserId>, StorageError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let imported_at = now();
        let general_id = self
            .room_key(&RoomName::general())
            .await?
            .ok_or_else(|| StorageError::NotFound("the general room".to_owned()))?
            .id
            .get();
        write_transaction!(self, |conn| {
            let mut ids = Vec::with_capacity(batch.len());
            for user in batch {
                let created_at = user.created_at.map_or(imported_at, stored_time);
                let id: i64 = diesel::insert_into(users::table)
                    .values((
                        users::username.eq(user.username.as_str()),
                        users::password_hash.eq(&user.password_hash),
                        users::created_at.eq(created_at),
                    ))
                    .returning(users::id)
                    .get_result(conn)
                    .await
                    .map_err(|error| {
                        StorageError::from(error)
                            .conflict_as(&format!("username {} is taken", user.username))
                    })?;
                diesel::insert_into(room_members::table)
                    .values((
                        room_members::room_id.eq(general_id),
                        room_members::user_id.eq(id),
                        room_members::joined_at.eq(created_at),
                    ))
                    .execute(conn)
                    .await?;
                diesel::insert_into(imported_users::table)
                    .values((
                        imported_users::original_id.eq(user.original_id),
                        imported_users::user_id.eq(id),
                        imported_users::original_username.eq(&user.original_username),
                    ))
                    .execute(conn)
                    .await
                    .map_err(|error| {
                        StorageError::from(error).conflict_as(&format!(
                            "original user {} was imported before",
                            user.original_id
                        ))
                    })?;
                ids.push(UserId(id));
            }
            Ok(ids)
        })
    }

    /// Stores a batch of the original's messages at the end of `room`, in
    /// the order given, each with its original time, encrypted with this
    /// store's primary key; records each by its original id in the same
    /// transaction. Returns how many were stored.
    ///
    /// This is [`Store::append_messages`]'s transaction: the room's counter
    /// is locked, the messages numbered after its last seq, inserted in one
    /// statement, and the counter advanced. Fails with
    /// [`StorageError::Conflict`] when an original id was imported before
    /// (another import running at the same time); then nothing of the
    /// batch is stored.
    pub async fn import_messages(
        &self,
        room: RoomId,
        batch: Vec<ImportMessage>,
    ) -> Result<usize, StorageError> {
        if batch.len() > MAX_IMPORT_BATCH {
            return Err(StorageError::Conflict(format!(
                "an import batch holds at most {MAX_IMPORT_BATCH} messages"
            )));
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let provenance: Vec<Provenance> = batch
            .iter()
            .map(|message| Provenance {
                original_id: message.original_id,
                created_at: stored_time(message.created_at),
            })
            .collect();
        let messages: Vec<NewMessage> = batch
            .into_iter()
            .map(|message| NewMessage {
                room_id: room,
                user_id: message.user_id,
                username: message.username,
                body: message.body,
                client_id: None,
                reply_to: None,
                mls: false,
            })
            .collect();
        let sealed: Vec<Sealed> = messages
            .iter()
            .map(|message| self.inner.keys.encrypt(message.body.as_str()))
            .collect();
        // Without client ids there is no resend to look up. An author who
        // may not post in the room (imported authors are members of
        // `general`, so none in practice) is not counted.
        let written = self
            .write_batch(
                &messages,
                &sealed,
                Resends::Unexpected,
                Origin::Imported(&provenance),
            )
            .await
            .map_err(|error| {
                error.conflict_as(
                    "a message of this batch was imported before (is another import running?)",
                )
            })?;
        Ok(written.inserted())
    }
}
