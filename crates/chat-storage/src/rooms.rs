use chat_domain::{Role, RoomId, RoomKind, RoomName, Seq, UserId, Visibility};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::model::{Membership, Room, User};
use crate::rows::{RoomRow, now, role, seq, utc};
use crate::schema::{room_members, rooms};
use crate::{StorageError, Store};

/// What identifies a room: fixed when the room is created and never changed
/// afterwards (rooms are not renamed), so it can be kept in memory.
/// [`Store::room_key`] does. A deleted room's key is forgotten by the
/// store that deleted it; another process's store may still hold it, and
/// then finds the room gone on its next database read (see
/// [`Store::forget_room`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomKey {
    pub id: RoomId,
    pub name: RoomName,
    pub kind: RoomKind,
    /// End-to-end encrypted: plaintext is refused.
    pub encrypted: bool,
}

impl From<&Room> for RoomKey {
    fn from(room: &Room) -> RoomKey {
        RoomKey {
            id: room.id,
            name: room.name.clone(),
            kind: room.kind,
            encrypted: room.encrypted,
        }
    }
}

/// Room keys kept in memory by name, at most [`RoomKeys::CAPACITY`].
#[derive(Debug, Default)]
pub(crate) struct RoomKeys {
    by_name: std::sync::RwLock<std::collections::HashMap<RoomName, RoomKey>>,
}

impl RoomKeys {
    /// Enough for every room of a large deployment; past it the cache starts
    /// over rather than tracking which entries are used.
    const CAPACITY: usize = 100_000;

    fn get(&self, name: &RoomName) -> Option<RoomKey> {
        let by_name = self
            .by_name
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        by_name.get(name).cloned()
    }

    fn remove(&self, name: &str) {
        let mut by_name = self
            .by_name
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        by_name.retain(|known, _| known.as_str() != name);
    }

    fn insert(&self, key: RoomKey) {
        let mut by_name = self
            .by_name
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if by_name.len() >= Self::CAPACITY {
            by_name.clear();
        }
        by_name.insert(key.name.clone(), key);
    }
}

impl Store {
    /// The id and kind of the room with this name, from memory after the
    /// first look-up. A name with no room is looked up every time, since the
    /// room may be created meanwhile (by this process or another).
    ///
    /// For the hot paths that only need to know which room a name means
    /// (history pages); [`Store::room_by_name`] reads the whole row, with its
    /// current `last_seq`.
    pub async fn room_key(&self, name: &RoomName) -> Result<Option<RoomKey>, StorageError> {
        if let Some(key) = self.known_room_key(name) {
            return Ok(Some(key));
        }
        let Some(room) = self.room_by_name(name).await? else {
            return Ok(None);
        };
        let key = RoomKey::from(&room);
        self.inner.room_keys.insert(key.clone());
        Ok(Some(key))
    }

    /// The room's identity if this store has looked it up before; never
    /// asks the database.
    pub fn known_room_key(&self, name: &RoomName) -> Option<RoomKey> {
        self.inner.room_keys.get(name)
    }

    /// Forgets what this store keeps in memory of the room named `name`
    /// (it was deleted, here or by another process).
    pub fn forget_room(&self, name: &str) {
        self.inner.room_keys.remove(name);
    }

    /// Creates a room of `visibility` with an optional topic, end-to-end
    /// encrypted or not (for good); its creator becomes its first member and
    /// its owner.
    ///
    /// Fails with [`StorageError::Conflict`] when the name is taken and with
    /// [`StorageError::NotFound`] when the creator does not exist.
    pub async fn create_room(
        &self,
        name: &RoomName,
        created_by: UserId,
        visibility: Visibility,
        topic: Option<&str>,
        encrypted: bool,
    ) -> Result<Room, StorageError> {
        if name.kind() != RoomKind::Public {
            return Err(StorageError::Conflict(
                "direct conversations are opened with open_direct".to_owned(),
            ));
        }
        let created_at = now();
        let row = write_transaction!(self, |conn| {
            let row: RoomRow = diesel::insert_into(rooms::table)
                .values((
                    rooms::name.eq(name.as_str()),
                    rooms::kind.eq(RoomKind::Public.as_str()),
                    rooms::created_by.eq(created_by.get()),
                    rooms::created_at.eq(created_at),
                    rooms::visibility.eq(visibility.as_str()),
                    rooms::topic.eq(topic),
                    rooms::encrypted.eq(encrypted),
                ))
                .returning(RoomRow::as_returning())
                .get_result(conn)
                .await
                .map_err(|error| StorageError::from(error).conflict_as("room name is taken"))?;
            diesel::insert_into(room_members::table)
                .values((
                    room_members::room_id.eq(row.id),
                    room_members::user_id.eq(created_by.get()),
                    room_members::joined_at.eq(created_at),
                    room_members::role.eq(Role::Owner.as_str()),
                ))
                .execute(conn)
                .await?;
            Ok(row)
        })?;
        Room::try_from(row)
    }

    /// The room with this name, public or direct.
    pub async fn room_by_name(&self, name: &RoomName) -> Result<Option<Room>, StorageError> {
        let row: Option<RoomRow> = with_conn!(self, |conn| {
            rooms::table
                .filter(rooms::name.eq(name.as_str()))
                .select(RoomRow::as_select())
                .first(conn)
                .await
                .optional()?
        });
        row.map(Room::try_from).transpose()
    }

    /// The room with this id, public or direct.
    pub async fn room_by_id(&self, id: RoomId) -> Result<Option<Room>, StorageError> {
        let row: Option<RoomRow> = with_conn!(self, |conn| {
            rooms::table
                .find(id.get())
                .select(RoomRow::as_select())
                .first(conn)
                .await
                .optional()?
        });
        row.map(Room::try_from).transpose()
    }

    /// Every listed room (public, not private), ordered by name.
    pub async fn public_rooms(&self) -> Result<Vec<Room>, StorageError> {
        let rows: Vec<RoomRow> = with_conn!(self, |conn| {
            rooms::table
                .filter(rooms::kind.eq(RoomKind::Public.as_str()))
                .filter(rooms::visibility.eq(Visibility::Public.as_str()))
                .order(rooms::name.asc())
                .select(RoomRow::as_select())
                .load(conn)
                .await?
        });
        rows.into_iter().map(Room::try_from).collect()
    }

    /// The direct conversation between `a` and `b`, created on first use
    /// with both as members, end-to-end encrypted when `encrypted`. Either
    /// user gets the same room, and concurrent calls agree on one room: the
    /// insert does nothing when the name exists.
    ///
    /// There is one conversation per pair, so asking for an encrypted one
    /// when a plaintext one exists (or the reverse) fails with
    /// [`StorageError::Conflict`] and changes nothing; `None` takes the
    /// conversation as it is (plaintext when new).
    pub async fn open_direct(
        &self,
        a: &User,
        b: &User,
        encrypted: Option<bool>,
    ) -> Result<Room, StorageError> {
        let name = RoomName::direct(&a.username, &b.username)
            .map_err(|error| StorageError::Conflict(error.to_string()))?;
        let created_at = now();
        let row = write_transaction!(self, |conn| {
            diesel::insert_into(rooms::table)
                .values((
                    rooms::name.eq(name.as_str()),
                    rooms::kind.eq(RoomKind::Direct.as_str()),
                    rooms::created_by.eq(a.id.get()),
                    rooms::created_at.eq(created_at),
                    rooms::visibility.eq(Visibility::Private.as_str()),
                    rooms::encrypted.eq(encrypted.unwrap_or(false)),
                ))
                .on_conflict(rooms::name)
                .do_nothing()
                .execute(conn)
                .await?;
            let row: RoomRow = rooms::table
                .filter(rooms::name.eq(name.as_str()))
                .select(RoomRow::as_select())
                .first(conn)
                .await?;
            if encrypted.is_some_and(|wanted| wanted != row.encrypted) {
                return Err(StorageError::Conflict(
                    if row.encrypted {
                        "this conversation exists and is end-to-end encrypted"
                    } else {
                        "this conversation exists and is not end-to-end encrypted"
                    }
                    .to_owned(),
                ));
            }
            for user in [a.id, b.id] {
                diesel::insert_into(room_members::table)
                    .values((
                        room_members::room_id.eq(row.id),
                        room_members::user_id.eq(user.get()),
                        room_members::joined_at.eq(created_at),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
            }
            Ok(row)
        })?;
        Room::try_from(row)
    }

    /// The rooms `user` belongs to, ordered by name, with their reading
    /// positions.
    pub async fn rooms_for(&self, user: UserId) -> Result<Vec<Membership>, StorageError> {
        type Row = (
            RoomRow,
            chrono::NaiveDateTime,
            i64,
            String,
            Option<chrono::NaiveDateTime>,
        );
        let rows: Vec<Row> = with_conn!(self, |conn| {
            room_members::table
                .inner_join(rooms::table)
                .filter(room_members::user_id.eq(user.get()))
                .order(rooms::name.asc())
                .select((
                    RoomRow::as_select(),
                    room_members::joined_at,
                    room_members::last_read_seq,
                    room_members::role,
                    room_members::muted_until,
                ))
                .load(conn)
                .await?
        });
        rows.into_iter()
            .map(|(room, joined_at, last_read, member_role, muted_until)| {
                Ok(Membership {
                    room: Room::try_from(room)?,
                    joined_at: utc(joined_at),
                    last_read: seq(last_read, "room_members.last_read_seq")?,
                    role: role(&member_role)?,
                    muted_until: muted_until.map(utc),
                })
            })
            .collect()
    }

    /// Whether `user` is a member of `room`.
    pub async fn is_member(&self, room: RoomId, user: UserId) -> Result<bool, StorageError> {
        let member = with_conn!(self, |conn| {
            diesel::select(diesel::dsl::exists(
                room_members::table
                    .filter(room_members::room_id.eq(room.get()))
                    .filter(room_members::user_id.eq(user.get())),
            ))
            .get_result::<bool>(conn)
            .await?
        });
        Ok(member)
    }

    /// The seq of `room`'s newest message (0 while it is empty), or `None`
    /// when there is no such room. One row by primary key.
    pub(crate) async fn last_seq(&self, room: RoomId) -> Result<Option<i64>, StorageError> {
        Ok(with_conn!(self, |conn| {
            rooms::table
                .find(room.get())
                .select(rooms::last_seq)
                .first(conn)
                .await
                .optional()?
        }))
    }

    /// Records that `user` has read `room` up to `seq`; returns the new
    /// position and the room's number of members when it moved.
    ///
    /// The position never moves backwards (a late, older acknowledgement
    /// changes nothing) and never past the room's newest message. Does
    /// nothing when `user` is not a member.
    pub async fn mark_read(
        &self,
        room: RoomId,
        user: UserId,
        seq: Seq,
    ) -> Result<Option<(Seq, usize)>, StorageError> {
        // last_seq only grows, so reading it outside a transaction is safe:
        // at worst the position stops a little short.
        let last_seq = self
            .last_seq(room)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("room {room}")))?;
        let target = seq.get().min(last_seq);
        let moved = with_conn!(self, |conn| {
            let moved = diesel::update(
                room_members::table
                    .filter(room_members::room_id.eq(room.get()))
                    .filter(room_members::user_id.eq(user.get()))
                    .filter(room_members::last_read_seq.lt(target)),
            )
            .set(room_members::last_read_seq.eq(target))
            .execute(conn)
            .await?;
            if moved == 0 {
                None
            } else {
                let members: i64 = room_members::table
                    .filter(room_members::room_id.eq(room.get()))
                    .count()
                    .get_result(conn)
                    .await?;
                Some(members)
            }
        });
        Ok(moved.map(|members| {
            (
                Seq::new(target).unwrap_or(Seq::ZERO),
                usize::try_from(members).unwrap_or(usize::MAX),
            )
        }))
    }

    /// The members of `room`, by ascending id.
    pub async fn members(&self, room: RoomId) -> Result<Vec<UserId>, StorageError> {
        let ids: Vec<i64> = with_conn!(self, |conn| {
            room_members::table
                .filter(room_members::room_id.eq(room.get()))
                .order(room_members::user_id.asc())
                .select(room_members::user_id)
                .load(conn)
                .await?
        });
        Ok(ids.into_iter().map(UserId).collect())
    }
}
