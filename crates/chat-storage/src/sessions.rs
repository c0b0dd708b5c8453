//! Auth sessions and their refresh tokens.
//!
//! A sign-in opens a session (one row of `auth_sessions`) and stores the
//! digest of its first refresh token. Every access token names its session,
//! and [`Store::user_for_session`] finds the user only while the session is
//! open, in the same query that finds the user, so checking revocation on
//! every request costs no extra round trip. [`Store::rotate_refresh_token`]
//! exchanges a refresh token for the next one of the same session, once;
//! presenting a used one again revokes the session.

use std::future::Future;

use chat_domain::{RoomId, SessionId, UserId, Username};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::model::{Refresh, RoomReading, User};
use crate::rows::{UserRow, now};
use crate::schema::{auth_sessions, refresh_tokens, rooms, users};
use crate::store::SqliteConn;
use crate::users::lower;
use crate::{StorageError, Store};

/// Reads a refresh token's session and `used_at`, and holds the token until
/// the transaction ends.
///
/// PostgreSQL locks the row (`SELECT ... FOR UPDATE`): a second transaction
/// rotating the same token waits for the first to commit, then reads the
/// token as used. SQLite has no row locks; its write transactions begin with
/// `BEGIN IMMEDIATE` (see `write_transaction!`), which already serializes
/// them.
pub(crate) trait LockRefreshToken {
    /// The token's session id and when it was used, or `None` when no token
    /// has this digest.
    fn lock_refresh_token(
        &mut self,
        digest: &str,
    ) -> impl Future<Output = QueryResult<Option<(String, Option<NaiveDateTime>)>>> + Send;
}

/// The users and sessions where session `id` is open and its user is named
/// `normalized` at `at`: the condition of both session checks.
#[diesel::dsl::auto_type(no_type_alias)]
fn open_session<'a>(id: &'a String, normalized: &'a String, at: NaiveDateTime) -> _ {
    users::table
        .inner_join(auth_sessions::table)
        .filter(auth_sessions::id.eq(id))
        .filter(lower(users::username).eq(normalized))
        .filter(auth_sessions::revoked_at.is_null())
        .filter(auth_sessions::expires_at.gt(at))
        .filter(users::disabled_at.is_null())
}

impl LockRefreshToken for AsyncPgConnection {
    async fn lock_refresh_token(
        &mut self,
        digest: &str,
    ) -> QueryResult<Option<(String, Option<NaiveDateTime>)>> {
        refresh_tokens::table
            .find(digest)
            .select((refresh_tokens::session_id, refresh_tokens::used_at))
            .for_update()
            .first(self)
            .await
            .optional()
    }
}

impl LockRefreshToken for SqliteConn {
    async fn lock_refresh_token(
        &mut self,
        digest: &str,
    ) -> QueryResult<Option<(String, Option<NaiveDateTime>)>> {
        refresh_tokens::table
            .find(digest)
            .select((refresh_tokens::session_id, refresh_tokens::used_at))
            .first(self)
            .await
            .optional()
    }
}

/// A time as stored: UTC, microsecond precision.
fn stored(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc().trunc_subsecs(6)
}

pub(crate) fn session_id(value: &str) -> Result<SessionId, StorageError> {
    SessionId::parse(value).map_err(|error| StorageError::Corrupt(format!("session id: {error}")))
}

impl Store {
    /// Opens a session for `user` until `expires_at`, with its first refresh
    /// token, given by its digest. The user's sessions that have expired are
    /// removed in the same transaction, so they do not pile up.
    pub async fn create_session(
        &self,
        user: UserId,
        session: SessionId,
        refresh_digest: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let created_at = now();
        let expires_at = stored(expires_at);
        let id = session.to_string();
        write_transaction!(self, |conn| {
            diesel::delete(
                auth_sessions::table
                    .filter(auth_sessions::user_id.eq(user.get()))
                    .filter(auth_sessions::expires_at.le(created_at)),
            )
            .execute(conn)
            .await?;
            diesel::insert_into(auth_sessions::table)
                .values((
                    auth_sessions::id.eq(&id),
                    auth_sessions::user_id.eq(user.get()),
                    auth_sessions::created_at.eq(created_at),
                    auth_sessions::expires_at.eq(expires_at),
                ))
                .execute(conn)
                .await
                .map_err(|error| StorageError::from(error).conflict_as("session id"))?;
            diesel::insert_into(refresh_tokens::table)
                .values((
                    refresh_tokens::token_hash.eq(refresh_digest),
                    refresh_tokens::session_id.eq(&id),
                    refresh_tokens::created_at.eq(created_at),
                ))
                .execute(conn)
                .await
                .map_err(|error| StorageError::from(error).conflict_as("refresh token"))?;
            Ok(())
        })
    }

    /// The user named `username` (ignoring case), provided `session` is
    /// theirs and still open: neither revoked nor expired. One query, so
    /// checking the session on every request costs nothing over finding the
    /// user.
    pub async fn user_for_session(
        &self,
        username: &Username,
        session: SessionId,
    ) -> Result<Option<User>, StorageError> {
        let normalized = username.normalized();
        let id = session.to_string();
        let at = now();
        let row: Option<UserRow> = with_conn!(self, |conn| {
            open_session(&id, &normalized, at)
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?
        });
        row.map(User::try_from).transpose()
    }

    /// [`Store::user_for_session`], reading in the same query the newest seq
    /// of `room` (0 when it has no messages, or does not exist) and whether
    /// the user may read it, for [`Store::newest_as_of`]: a newest history
    /// page then costs one round trip with the session check instead of
    /// two.
    pub async fn user_for_session_reading(
        &self,
        username: &Username,
        session: SessionId,
        room: RoomId,
    ) -> Result<Option<(User, RoomReading)>, StorageError> {
        use diesel::dsl::sql;
        use diesel::sql_types::{BigInt, Bool, Timestamp};

        let normalized = username.normalized();
        let id = session.to_string();
        let at = now();
        type Row = (
            UserRow,
            Option<i64>,
            Option<String>,
            Option<String>,
            bool,
            bool,
        );
        let row: Option<Row> = with_conn!(self, |conn| {
            open_session(&id, &normalized, at)
                .select((
                    UserRow::as_select(),
                    rooms::table
                        .find(room.get())
                        .select(rooms::last_seq)
                        .single_value(),
                    rooms::table
                        .find(room.get())
                        .select(rooms::kind)
                        .single_value(),
                    rooms::table
                        .find(room.get())
                        .select(rooms::visibility)
                        .single_value(),
                    // Correlated with the signed-in user: one primary-key
                    // probe each.
                    sql::<Bool>("EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = ")
                        .bind::<BigInt, _>(room.get())
                        .sql(" AND m.user_id = users.id)"),
                    sql::<Bool>("EXISTS (SELECT 1 FROM room_bans b WHERE b.room_id = ")
                        .bind::<BigInt, _>(room.get())
                        .sql(" AND b.user_id = users.id AND (b.until IS NULL OR b.until > ")
                        .bind::<Timestamp, _>(at)
                        .sql("))"),
                ))
                .first(conn)
                .await
                .optional()?
        });
        row.map(|(user, last_seq, kind, visibility, member, banned)| {
            let exists = kind.is_some();
            let listed = kind.as_deref() == Some(chat_domain::RoomKind::Public.as_str())
                && visibility.as_deref() == Some(chat_domain::Visibility::Public.as_str());
            Ok((
                User::try_from(user)?,
                RoomReading {
                    exists,
                    last_seq: last_seq.unwrap_or(0),
                    listed,
                    member,
                    banned,
                },
            ))
        })
        .transpose()
    }

    /// Exchanges the refresh token whose digest is `presented` for the one
    /// whose digest is `next`, in the same session, which then lasts until
    /// `expires_at`.
    ///
    /// The check and the exchange happen in one transaction with the token
    /// locked, so of two exchanges of the same token only one can succeed.
    /// A token that was already exchanged is being presented a second time:
    /// someone holds a copy. Its whole session is revoked then (every token
    /// of the chain, and the access tokens naming it) and the answer is
    /// [`Refresh::Reused`]. An unknown token, or one of a revoked or
    /// expired session, is [`Refresh::Refused`].
    pub async fn rotate_refresh_token(
        &self,
        presented: &str,
        next: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Refresh, StorageError> {
        let at = now();
        let expires_at = stored(expires_at);
        write_transaction!(self, |conn| {
            let Some((id, used_at)) = conn.lock_refresh_token(presented).await? else {
                return Ok(Refresh::Refused);
            };
            let session = session_id(&id)?;
            let found: Option<(NaiveDateTime, Option<NaiveDateTime>, UserRow)> =
                auth_sessions::table
                    .inner_join(users::table)
                    .filter(auth_sessions::id.eq(&id))
                    .select((
                        auth_sessions::expires_at,
                        auth_sessions::revoked_at,
                        UserRow::as_select(),
                    ))
                    .first(conn)
                    .await
                    .optional()?;
            let Some((session_expires, revoked_at, user)) = found else {
                return Ok(Refresh::Refused);
            };
            if revoked_at.is_some() || session_expires <= at || user.disabled_at.is_some() {
                return Ok(Refresh::Refused);
            }
            if used_at.is_some() {
                diesel::update(auth_sessions::table.find(&id))
                    .set(auth_sessions::revoked_at.eq(at))
                    .execute(conn)
                    .await?;
                return Ok(Refresh::Reused {
                    user_id: UserId(user.id),
                    session,
                });
            }
            diesel::update(refresh_tokens::table.find(presented))
                .set(refresh_tokens::used_at.eq(at))
                .execute(conn)
                .await?;
            diesel::insert_into(refresh_tokens::table)
                .values((
                    refresh_tokens::token_hash.eq(next),
                    refresh_tokens::session_id.eq(&id),
                    refresh_tokens::created_at.eq(at),
                ))
                .execute(conn)
                .await
                .map_err(|error| StorageError::from(error).conflict_as("refresh token"))?;
            // A sign-out that committed while this waited for the token
            // leaves the session revoked: nothing to extend, nothing issued.
            let extended = diesel::update(
                auth_sessions::table
                    .find(&id)
                    .filter(auth_sessions::revoked_at.is_null()),
            )
            .set(auth_sessions::expires_at.eq(expires_at))
            .execute(conn)
            .await?;
            if extended == 0 {
                return Ok(Refresh::Refused);
            }
            Ok(Refresh::Rotated {
                user: User::try_from(user)?,
                session,
            })
        })
    }

    /// Which of `sessions` are no longer open: revoked, expired, unknown, or
    /// of an account the operator disabled.
    /// For a node that may have missed the notices of sessions ended
    /// elsewhere; one query per few hundred sessions.
    pub async fn ended_sessions(
        &self,
        sessions: &[SessionId],
    ) -> Result<Vec<SessionId>, StorageError> {
        const PER_QUERY: usize = 500;
        let at = now();
        let mut ended = Vec::new();
        for chunk in sessions.chunks(PER_QUERY) {
            let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let open: Vec<String> = with_conn!(self, |conn| {
                auth_sessions::table
                    .inner_join(users::table)
                    .filter(auth_sessions::id.eq_any(&ids))
                    .filter(auth_sessions::revoked_at.is_null())
                    .filter(auth_sessions::expires_at.gt(at))
                    .filter(users::disabled_at.is_null())
                    .select(auth_sessions::id)
                    .load(conn)
                    .await?
            });
            ended.extend(
                chunk
                    .iter()
                    .copied()
                    .filter(|session| !open.contains(&session.to_string())),
            );
        }
        Ok(ended)
    }

    /// Ends a session: its access tokens and refresh tokens stop working.
    /// Returns whether it was open until now.
    pub async fn revoke_session(&self, session: SessionId) -> Result<bool, StorageError> {
        let id = session.to_string();
        let at = now();
        let revoked = with_conn!(self, |conn| {
            diesel::update(
                auth_sessions::table
                    .find(&id)
                    .filter(auth_sessions::revoked_at.is_null()),
            )
            .set(auth_sessions::revoked_at.eq(at))
            .execute(conn)
            .await?
        });
        Ok(revoked > 0)
    }
}
