//! Rows as diesel reads and writes them, and their conversion to the
//! domain types of [`crate::model`]. Nothing here leaves the crate.

use chat_domain::{
    ClientId, MemberChange, Role, RoomId, RoomKind, RoomName, Seq, UserId, Username, Visibility,
};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;

use crate::StorageError;
use crate::model::{Room, User};
use crate::schema::{messages, rooms, users};

/// The current time as stored: UTC with microsecond precision, the finest
/// both backends keep, so a value reads back equal to what was written.
pub(crate) fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

pub(crate) fn utc(value: NaiveDateTime) -> DateTime<Utc> {
    value.and_utc()
}

pub(crate) fn seq(value: i64, what: &str) -> Result<Seq, StorageError> {
    Seq::new(value).map_err(|_| StorageError::Corrupt(format!("{what} is negative: {value}")))
}

pub(crate) fn username(value: String) -> Result<Username, StorageError> {
    Username::parse(value).map_err(|error| StorageError::Corrupt(format!("username: {error}")))
}

pub(crate) fn visibility(value: &str) -> Result<Visibility, StorageError> {
    Visibility::from_str_opt(value)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown visibility {value:?}")))
}

pub(crate) fn role(value: &str) -> Result<Role, StorageError> {
    Role::from_str_opt(value)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown role {value:?}")))
}

pub(crate) fn member_change(value: &str) -> Result<MemberChange, StorageError> {
    MemberChange::from_str_opt(value)
        .ok_or_else(|| StorageError::Corrupt(format!("unknown membership change {value:?}")))
}

pub(crate) fn client_id(value: Option<String>) -> Result<Option<ClientId>, StorageError> {
    value
        .map(ClientId::parse)
        .transpose()
        .map_err(|error| StorageError::Corrupt(format!("client_id: {error}")))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    pub(crate) id: i64,
    pub(crate) username: String,
    pub(crate) password_hash: String,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) disabled_at: Option<NaiveDateTime>,
    pub(crate) deleted_at: Option<NaiveDateTime>,
}

impl TryFrom<UserRow> for User {
    type Error = StorageError;

    fn try_from(row: UserRow) -> Result<User, StorageError> {
        Ok(User {
            id: UserId(row.id),
            username: username(row.username)?,
            password_hash: row.password_hash,
            created_at: utc(row.created_at),
            disabled_at: row.disabled_at.map(utc),
            deleted_at: row.deleted_at.map(utc),
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = rooms)]
pub(crate) struct RoomRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) created_by: Option<i64>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) last_seq: i64,
    pub(crate) visibility: String,
    pub(crate) topic: Option<String>,
    pub(crate) encrypted: bool,
}

impl TryFrom<RoomRow> for Room {
    type Error = StorageError;

    fn try_from(row: RoomRow) -> Result<Room, StorageError> {
        let name = RoomName::parse(&row.name)
            .map_err(|error| StorageError::Corrupt(format!("room {}: {error}", row.id)))?;
        let kind = RoomKind::from_str_opt(&row.kind).ok_or_else(|| {
            StorageError::Corrupt(format!("room {} has unknown kind {:?}", row.id, row.kind))
        })?;
        if kind != name.kind() {
            return Err(StorageError::Corrupt(format!(
                "room {} is {} but named like a {} room",
                row.id,
                kind.as_str(),
                name.kind().as_str()
            )));
        }
        Ok(Room {
            id: RoomId(row.id),
            name,
            kind,
            created_by: row.created_by.map(UserId),
            created_at: utc(row.created_at),
            last_seq: seq(row.last_seq, "rooms.last_seq")?,
            visibility: visibility(&row.visibility)?,
            topic: row.topic,
            encrypted: row.encrypted,
        })
    }
}

/// A message joined with its author's name, still encrypted.
#[derive(Queryable)]
pub(crate) struct MessageRow {
    pub(crate) id: i64,
    pub(crate) room_id: i64,
    pub(crate) seq: i64,
    pub(crate) user_id: i64,
    pub(crate) username: String,
    pub(crate) body: String,
    pub(crate) key_id: String,
    pub(crate) client_id: Option<String>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) edited_at: Option<NaiveDateTime>,
    pub(crate) deleted_at: Option<NaiveDateTime>,
    pub(crate) event: Option<String>,
    pub(crate) event_role: Option<String>,
    pub(crate) event_until: Option<NaiveDateTime>,
    pub(crate) reply_to: Option<i64>,
    pub(crate) deleted_by: Option<i64>,
    pub(crate) change: Option<String>,
    pub(crate) target_seq: Option<i64>,
    pub(crate) reactions: i64,
    pub(crate) mls: Option<String>,
}

/// The columns of a [`MessageRow`], for `.select(..)` on `messages` joined
/// with `users`.
pub(crate) type MessageColumns = (
    messages::id,
    messages::room_id,
    messages::seq,
    messages::user_id,
    users::username,
    messages::body,
    messages::key_id,
    messages::client_id,
    messages::created_at,
    messages::edited_at,
    messages::deleted_at,
    messages::event,
    messages::event_role,
    messages::event_until,
    messages::reply_to,
    messages::deleted_by,
    messages::change,
    messages::target_seq,
    messages::reactions,
    messages::mls,
);

pub(crate) const MESSAGE_COLUMNS: MessageColumns = (
    messages::id,
    messages::room_id,
    messages::seq,
    messages::user_id,
    users::username,
    messages::body,
    messages::key_id,
    messages::client_id,
    messages::created_at,
    messages::edited_at,
    messages::deleted_at,
    messages::event,
    messages::event_role,
    messages::event_until,
    messages::reply_to,
    messages::deleted_by,
    messages::change,
    messages::target_seq,
    messages::reactions,
    messages::mls,
);

/// A message to insert, by [`crate::insert_messages::InsertMessages`].
pub(crate) struct NewMessageRow<'a> {
    pub(crate) room_id: i64,
    /// The room's last seq before the statement; the message's seq is this
    /// plus its rank among the statement's stored messages of the room.
    pub(crate) base: i64,
    pub(crate) user_id: i64,
    pub(crate) body: &'a str,
    pub(crate) key_id: &'a str,
    pub(crate) client_id: Option<&'a str>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) reply_to: Option<i64>,
    pub(crate) mls: Option<&'a str>,
}
