//! What the operator reads and changes from the command line
//! (`chat-server admin`): accounts, their sessions, and rooms at a glance.
//!
//! Disabling an account and ending its sessions happen in one transaction,
//! as does deleting it, so a sign-in racing either cannot leave an open
//! session behind (and a session of a disabled account is refused anyway:
//! see `open_session` in `sessions.rs`). A deleted account's row stays, with
//! no password and no session, so that its name stays reserved (nobody can
//! take it and appear as the author of its old messages) and its messages
//! keep an author; it is gone for every other purpose.

use std::collections::{BTreeSet, HashMap};

use chat_domain::{Role, RoomId, RoomName, SessionId, UserId};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::model::{Room, User};
use crate::rows::{RoomRow, UserRow, now, role, utc};
use crate::schema::{
    auth_sessions, message_erasures, message_reactions, message_versions, messages, mls_devices,
    mls_key_packages, room_members, rooms, users,
};
use crate::search_index::SearchIndex;
use crate::sessions::session_id;
use crate::users::lower;
use crate::{StorageError, Store};

/// `(id, count)` rows of a `GROUP BY`.
type Counts = Vec<(i64, i64)>;

/// An account as `admin user list` shows it.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub user: User,
    /// Sessions neither revoked nor expired.
    pub open_sessions: i64,
    /// Rooms the user is a member of.
    pub rooms: i64,
}

/// An open auth session, as `admin user show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub id: SessionId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Everything `admin user show` says about an account.
#[derive(Debug, Clone)]
pub struct UserDetails {
    pub user: User,
    pub sessions: Vec<OpenSession>,
    /// The rooms it is a member of, by name, with its role in each.
    pub rooms: Vec<(RoomName, Role)>,
    /// Its messages that are not erased (membership changes left out).
    pub messages: i64,
}

/// A room as `admin room list` shows it.
#[derive(Debug, Clone)]
pub struct RoomOverview {
    pub room: Room,
    pub members: i64,
    /// `None` when nobody owns it.
    pub owner: Option<chat_domain::Username>,
}

/// What [`Store::delete_user`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletedUser {
    /// The sessions that were open until now; their sockets must close.
    pub sessions: Vec<SessionId>,
    /// How many messages had their text erased.
    pub erased: usize,
    /// The rooms those messages were in.
    pub erased_in: Vec<RoomId>,
}

/// Revokes `$user`'s open sessions at `$at`, inside a transaction on
/// `$conn`; evaluates to their ids. A macro, as `with_conn!` bodies are, so
/// that it is written once and expanded for both backends.
macro_rules! end_sessions {
    ($conn:ident, $user:expr, $at:expr) => {{
        let open = auth_sessions::table
            .filter(auth_sessions::user_id.eq($user.get()))
            .filter(auth_sessions::revoked_at.is_null())
            .filter(auth_sessions::expires_at.gt($at));
        let ids: Vec<String> = open.select(auth_sessions::id).load($conn).await?;
        diesel::update(open)
            .set(auth_sessions::revoked_at.eq($at))
            .execute($conn)
            .await?;
        ids
    }};
}

impl Store {
    /// Every account, by name (ignoring case), with its open sessions and
    /// rooms counted.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, StorageError> {
        let at = now();
        let (rows, sessions, rooms): (Vec<UserRow>, Counts, Counts) = with_conn!(self, |conn| {
            let rows = users::table
                .order(lower(users::username).asc())
                .select(UserRow::as_select())
                .load(conn)
                .await?;
            let sessions = auth_sessions::table
                .filter(auth_sessions::revoked_at.is_null())
                .filter(auth_sessions::expires_at.gt(at))
                .group_by(auth_sessions::user_id)
                .select((auth_sessions::user_id, diesel::dsl::count_star()))
                .load(conn)
                .await?;
            let rooms = room_members::table
                .group_by(room_members::user_id)
                .select((room_members::user_id, diesel::dsl::count_star()))
                .load(conn)
                .await?;
            (rows, sessions, rooms)
        });
        let sessions: HashMap<i64, i64> = sessions.into_iter().collect();
        let rooms: HashMap<i64, i64> = rooms.into_iter().collect();
        rows.into_iter()
            .map(|row| {
                let id = row.id;
                Ok(UserSummary {
                    user: User::try_from(row)?,
                    open_sessions: sessions.get(&id).copied().unwrap_or(0),
                    rooms: rooms.get(&id).copied().unwrap_or(0),
                })
            })
            .collect()
    }

    /// An account with its open sessions, its rooms and how many messages
    /// it has.
    pub async fn user_details(&self, user: UserId) -> Result<Option<UserDetails>, StorageError> {
        let at = now();
        type Found = (
            Option<UserRow>,
            Vec<(String, chrono::NaiveDateTime, chrono::NaiveDateTime)>,
            Vec<(String, String)>,
            i64,
        );
        let (row, sessions, rooms, messages): Found = with_conn!(self, |conn| {
            let row = users::table
                .find(user.get())
                .select(UserRow::as_select())
                .first(conn)
                .await
                .optional()?;
            let sessions = auth_sessions::table
                .filter(auth_sessions::user_id.eq(user.get()))
                .filter(auth_sessions::revoked_at.is_null())
                .filter(auth_sessions::expires_at.gt(at))
                .order(auth_sessions::created_at.asc())
                .select((
                    auth_sessions::id,
                    auth_sessions::created_at,
                    auth_sessions::expires_at,
                ))
                .load(conn)
                .await?;
            let rooms = room_members::table
                .inner_join(rooms::table)
                .filter(room_members::user_id.eq(user.get()))
                .order(rooms::name.asc())
                .select((rooms::name, room_members::role))
                .load(conn)
                .await?;
            let messages = messages::table
                .filter(messages::user_id.eq(user.get()))
                .filter(messages::event.is_null())
                .filter(messages::deleted_at.is_null())
                .count()
                .get_result(conn)
                .await?;
            (row, sessions, rooms, messages)
        });
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(UserDetails {
            user: User::try_from(row)?,
            sessions: sessions
                .into_iter()
                .map(|(id, created_at, expires_at)| {
                    Ok(OpenSession {
                        id: session_id(&id)?,
                        created_at: utc(created_at),
                        expires_at: utc(expires_at),
                    })
                })
                .collect::<Result<_, StorageError>>()?,
            rooms: rooms
                .into_iter()
                .map(|(name, member_role)| {
                    let name = RoomName::parse(&name)
                        .map_err(|error| StorageError::Corrupt(format!("room name: {error}")))?;
                    Ok((name, role(&member_role)?))
                })
                .collect::<Result<_, StorageError>>()?,
            messages,
        }))
    }

    /// Disables an account and ends every session it has open, in one
    /// transaction. Returns whether it was enabled until now, and the
    /// sessions ended (their sockets must close). Disabling a disabled
    /// account ends any session it still has.
    pub async fn disable_user(&self, user: UserId) -> Result<(bool, Vec<SessionId>), StorageError> {
        let at = now();
        let (changed, ended) = write_transaction!(self, |conn| {
            let changed = diesel::update(
                users::table
                    .find(user.get())
                    .filter(users::disabled_at.is_null()),
            )
            .set(users::disabled_at.eq(at))
            .execute(conn)
            .await?;
            let ended = end_sessions!(conn, user, at);
            Ok((changed > 0, ended))
        })?;
        Ok((changed, parse_sessions(&ended)?))
    }

    /// Lets a disabled account sign in again. Returns whether it was
    /// disabled. A deleted account stays deleted.
    pub async fn enable_user(&self, user: UserId) -> Result<bool, StorageError> {
        let changed = with_conn!(self, |conn| {
            diesel::update(
                users::table
                    .find(user.get())
                    .filter(users::disabled_at.is_not_null())
                    .filter(users::deleted_at.is_null()),
            )
            .set(users::disabled_at.eq(None::<chrono::NaiveDateTime>))
            .execute(conn)
            .await?
        });
        Ok(changed > 0)
    }

    /// Ends every open session of an account; returns them (their sockets
    /// must close). The account may sign in again.
    pub async fn revoke_user_sessions(&self, user: UserId) -> Result<Vec<SessionId>, StorageError> {
        let at = now();
        let ended = write_transaction!(self, |conn| Ok(end_sessions!(conn, user, at)))?;
        parse_sessions(&ended)
    }

    /// Deletes an account: it is disabled, loses its password and its
    /// sessions (the open ones are returned: their sockets must close), and
    /// is marked deleted, in one transaction. With `erase_messages`, the
    /// text of every message it wrote is erased in the same transaction:
    /// the row stays as a tombstone (`deleted_at` set, the text replaced by
    /// the encryption of an empty text, so the row still names the key that
    /// encrypted it) and the rooms are recorded in `message_erasures`, from
    /// which every node learns to drop them from memory.
    ///
    /// Memberships are not touched here: removing the account from its
    /// rooms is a membership change each, recorded in the room's sequence,
    /// which the caller makes first.
    pub async fn delete_user(
        &self,
        user: UserId,
        erase_messages: bool,
    ) -> Result<DeletedUser, StorageError> {
        let at = now();
        let empty = self.inner.keys.encrypt("");
        let key_id = empty.key_id.as_str().to_owned();
        let (ended, erased, rooms) = write_transaction!(self, |conn| {
            diesel::update(users::table.find(user.get()))
                .set((
                    users::password_hash.eq(""),
                    users::deleted_at.eq(at),
                    users::disabled_at.eq(at),
                ))
                .execute(conn)
                .await?;
            let ended = end_sessions!(conn, user, at);
            diesel::delete(auth_sessions::table.filter(auth_sessions::user_id.eq(user.get())))
                .execute(conn)
                .await?;
            // Their devices go with their published KeyPackages, so nobody
            // adds a deleted account to an encrypted room.
            let devices = mls_devices::table
                .filter(mls_devices::user_id.eq(user.get()))
                .select(mls_devices::id);
            diesel::delete(
                mls_key_packages::table.filter(mls_key_packages::device.eq_any(devices)),
            )
            .execute(conn)
            .await?;
            diesel::delete(mls_devices::table.filter(mls_devices::user_id.eq(user.get())))
                .execute(conn)
                .await?;
            if !erase_messages {
                return Ok((ended, 0, Vec::new()));
            }
            let theirs = messages::table
                .filter(messages::user_id.eq(user.get()))
                .filter(messages::event.is_null());
            let rooms: Vec<i64> = theirs
                .select(messages::room_id)
                .distinct()
                .load(conn)
                .await?;
            // Their texts leave the search index.
            conn.erase_author_index(user.get()).await?;
            let erased = diesel::update(theirs)
                .set((
                    messages::body.eq(&empty.token),
                    messages::key_id.eq(&key_id),
                ))
                .execute(conn)
                .await?;
            diesel::update(theirs.filter(messages::deleted_at.is_null()))
                .set(messages::deleted_at.eq(at))
                .execute(conn)
                .await?;
            // The texts their edits replaced go too.
            diesel::delete(
                message_versions::table.filter(diesel::dsl::exists(
                    messages::table
                        .filter(messages::room_id.eq(message_versions::room_id))
                        .filter(messages::seq.eq(message_versions::seq))
                        .filter(messages::user_id.eq(user.get())),
                )),
            )
            .execute(conn)
            .await?;
            // So do the reactions to their messages (tombstones have none)
            // and the reactions they made, kept readable to be counted;
            // the messages they reacted to count one fewer each.
            let reacted: Vec<(i64, i64)> = message_reactions::table
                .filter(message_reactions::user_id.eq(user.get()))
                .select((message_reactions::room_id, message_reactions::seq))
                .load(conn)
                .await?;
            for (room, seq) in &reacted {
                diesel::update(
                    messages::table
                        .filter(messages::room_id.eq(*room))
                        .filter(messages::seq.eq(*seq)),
                )
                .set(messages::reactions.eq(messages::reactions - 1))
                .execute(conn)
                .await?;
            }
            diesel::update(theirs)
                .set(messages::reactions.eq(0))
                .execute(conn)
                .await?;
            diesel::delete(
                message_reactions::table.filter(
                    message_reactions::user_id
                        .eq(user.get())
                        .or(diesel::dsl::exists(
                            messages::table
                                .filter(messages::room_id.eq(message_reactions::room_id))
                                .filter(messages::seq.eq(message_reactions::seq))
                                .filter(messages::user_id.eq(user.get())),
                        )),
                ),
            )
            .execute(conn)
            .await?;
            // One row per room (SQLite takes no multi-row insert through
            // diesel's DSL); an account's messages span few rooms.
            for room in &rooms {
                diesel::insert_into(message_erasures::table)
                    .values((
                        message_erasures::room_id.eq(*room),
                        message_erasures::erased_at.eq(at),
                    ))
                    .execute(conn)
                    .await?;
            }
            Ok((ended, erased, rooms))
        })?;
        for room in &rooms {
            self.forget_recent(RoomId(*room));
        }
        Ok(DeletedUser {
            sessions: parse_sessions(&ended)?,
            erased,
            erased_in: rooms.into_iter().map(RoomId).collect(),
        })
    }

    /// The rooms whose messages were erased since erasure record `after`
    /// (by id), and the newest record's id, to pass next time. With `None`,
    /// only the newest record's id (where a node starts watching).
    pub async fn erasures_after(
        &self,
        after: Option<i64>,
    ) -> Result<(Vec<RoomId>, Option<i64>), StorageError> {
        let rows: Vec<(i64, i64)> = with_conn!(self, |conn| {
            match after {
                Some(after) => {
                    message_erasures::table
                        .filter(message_erasures::id.gt(after))
                        .order(message_erasures::id.asc())
                        .select((message_erasures::id, message_erasures::room_id))
                        .load(conn)
                        .await?
                }
                None => {
                    message_erasures::table
                        .order(message_erasures::id.desc())
                        .select((message_erasures::id, message_erasures::room_id))
                        .limit(1)
                        .load(conn)
                        .await?
                }
            }
        });
        let newest = rows.iter().map(|(id, _)| *id).max().or(after);
        let rooms = match after {
            Some(_) => rows
                .into_iter()
                .map(|(_, room)| room)
                .collect::<BTreeSet<i64>>()
                .into_iter()
                .map(RoomId)
                .collect(),
            None => Vec::new(),
        };
        Ok((rooms, newest))
    }

    /// Drops `room`'s newest messages from this process's memory, so its
    /// next page is read from the database.
    pub fn forget_recent(&self, room: RoomId) {
        self.inner.recent.forget(room.get());
    }

    /// Which of `rooms` still exist; for a node that may have missed the
    /// deletion of a room its sockets receive.
    pub async fn existing_rooms(&self, ids: &[RoomId]) -> Result<Vec<RoomId>, StorageError> {
        const PER_QUERY: usize = 500;
        let mut found = Vec::new();
        for chunk in ids.chunks(PER_QUERY) {
            let wanted: Vec<i64> = chunk.iter().map(|room| room.get()).collect();
            let existing: Vec<i64> = with_conn!(self, |conn| {
                rooms::table
                    .filter(rooms::id.eq_any(&wanted))
                    .select(rooms::id)
                    .load(conn)
                    .await?
            });
            found.extend(existing.into_iter().map(RoomId));
        }
        Ok(found)
    }

    /// Every room and direct conversation, by name, with its member count
    /// and owner.
    pub async fn list_rooms(&self) -> Result<Vec<RoomOverview>, StorageError> {
        let (rows, counts, owners): (Vec<RoomRow>, Counts, Vec<(i64, String)>) =
            with_conn!(self, |conn| {
                let rows = rooms::table
                    .order(rooms::name.asc())
                    .select(RoomRow::as_select())
                    .load(conn)
                    .await?;
                let counts = room_members::table
                    .group_by(room_members::room_id)
                    .select((room_members::room_id, diesel::dsl::count_star()))
                    .load(conn)
                    .await?;
                let owners = room_members::table
                    .inner_join(users::table)
                    .filter(room_members::role.eq(Role::Owner.as_str()))
                    .select((room_members::room_id, users::username))
                    .load(conn)
                    .await?;
                (rows, counts, owners)
            });
        let counts: HashMap<i64, i64> = counts.into_iter().collect();
        let mut owners: HashMap<i64, String> = owners.into_iter().collect();
        rows.into_iter()
            .map(|row| {
                let id = row.id;
                Ok(RoomOverview {
                    room: Room::try_from(row)?,
                    members: counts.get(&id).copied().unwrap_or(0),
                    owner: owners.remove(&id).map(crate::rows::username).transpose()?,
                })
            })
            .collect()
    }
}

fn parse_sessions(ids: &[String]) -> Result<Vec<SessionId>, StorageError> {
    ids.iter().map(|id| session_id(id)).collect()
}
