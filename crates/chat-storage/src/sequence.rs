//! Items of a room's sequence written one at a time: a membership change,
//! a change to a message, an MLS commit.
//!
//! Each is written by a transaction that has locked the room's counter
//! (`LockRoomCounters`) and decided, under that lock, what the item
//! records. The steps that then put it at the room's next seq are the same
//! for every kind and written here once: the row of `messages`, the
//! counter moved on, the row read back. Messages, which come in batches,
//! take the batch path (`write_batch`).

use chrono::NaiveDateTime;

/// What an item records besides its author, body and time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recorded<'a> {
    /// A membership change (`messages.event`, `event_role`, `event_until`).
    Member {
        change: &'a str,
        role: Option<&'a str>,
        until: Option<NaiveDateTime>,
    },
    /// A change (`edited`, `deleted`, `reacted`, `unreacted`) to the
    /// message at `target` (`messages.change`, `target_seq`).
    Change { change: &'a str, target: i64 },
    /// An MLS message of an encrypted room (`messages.mls`).
    Mls(&'a str),
}

/// An item to write at `seq`, the next seq of its room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SequenceItem<'a> {
    pub(crate) room: i64,
    pub(crate) seq: i64,
    /// The author, or the member a membership change concerns.
    pub(crate) user_id: i64,
    /// The encrypted body and the key that encrypted it.
    pub(crate) body: &'a str,
    pub(crate) key_id: &'a str,
    pub(crate) client_id: Option<&'a str>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) recorded: Recorded<'a>,
}

/// The columns that say what kind of item a row is, as one insert sets
/// them for every kind (those of other kinds NULL).
pub(crate) type KindColumns<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<NaiveDateTime>,
    Option<&'a str>,
    Option<i64>,
    Option<&'a str>,
);

impl<'a> SequenceItem<'a> {
    /// `event`, `event_role`, `event_until`, `change`, `target_seq` and
    /// `mls`.
    pub(crate) fn kind_columns(&self) -> KindColumns<'a> {
        match self.recorded {
            Recorded::Member {
                change,
                role,
                until,
            } => (Some(change), role, until, None, None, None),
            Recorded::Change { change, target } => {
                (None, None, None, Some(change), Some(target), None)
            }
            Recorded::Mls(kind) => (None, None, None, None, None, Some(kind)),
        }
    }
}

/// The row at `$seq` of room `$room`, with its author's name, as stored
/// ([`crate::rows::MessageRow`]). A macro so that one text serves the
/// connection of either backend in `write_transaction!`.
macro_rules! row_at {
    ($conn:expr, $room:expr, $seq:expr) => {{
        let row: $crate::rows::MessageRow = $crate::schema::messages::table
            .inner_join($crate::schema::users::table)
            .filter($crate::schema::messages::room_id.eq($room))
            .filter($crate::schema::messages::seq.eq($seq))
            .select($crate::rows::MESSAGE_COLUMNS)
            .first(&mut *$conn)
            .await?;
        row
    }};
}

/// Writes `$item` (a [`SequenceItem`]) at its seq, moves its room's counter
/// there, and reads the row back ([`crate::rows::MessageRow`]), in the
/// transaction of `$conn`, which holds the room's counter.
macro_rules! record_in_sequence {
    ($conn:expr, $item:expr) => {{
        use $crate::schema::messages;
        let item: &$crate::sequence::SequenceItem<'_> = $item;
        let (event, event_role, event_until, change, target_seq, mls) = item.kind_columns();
        ::diesel::insert_into(messages::table)
            .values((
                messages::room_id.eq(item.room),
                messages::seq.eq(item.seq),
                messages::user_id.eq(item.user_id),
                messages::body.eq(item.body),
                messages::key_id.eq(item.key_id),
                messages::client_id.eq(item.client_id),
                messages::created_at.eq(item.created_at),
                messages::event.eq(event),
                messages::event_role.eq(event_role),
                messages::event_until.eq(event_until),
                messages::change.eq(change),
                messages::target_seq.eq(target_seq),
                messages::mls.eq(mls),
            ))
            .execute(&mut *$conn)
            .await?;
        $crate::room_counters::SetRoomCounters::new(&[(item.room, item.seq)])
            .execute(&mut *$conn)
            .await?;
        row_at!($conn, item.room, item.seq)
    }};
}
