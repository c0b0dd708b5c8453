//! The cursor list: where delivery stands in each room a connection
//! receives.

use chat_domain::{RoomId, RoomName, Seq};
use chat_storage::RoomKey;

/// Where delivery stands in each room a connection receives.
///
/// A connection receives a handful of rooms, so this is a list searched
/// from the front, grown one entry at a time: every idle socket holds one,
/// and three hash maps (each allocating four slots on first use) cost
/// several times as much memory for the usual one or two rooms.
#[derive(Debug, Default)]
pub(super) struct Tracked(Vec<RoomState>);

#[derive(Debug)]
struct RoomState {
    room: RoomKey,
    /// The last seq delivered, or where delivery starts.
    cursor: Seq,
    /// The newest seq actually sent to the client.
    sent: Option<Seq>,
}

impl Tracked {
    fn get(&self, id: RoomId) -> Option<&RoomState> {
        self.0.iter().find(|state| state.room.id == id)
    }

    fn get_mut(&mut self, id: RoomId) -> Option<&mut RoomState> {
        self.0.iter_mut().find(|state| state.room.id == id)
    }

    /// Starts receiving `room` after `cursor`, or moves the cursor of a room
    /// received already (never back over what was sent: a resume from an
    /// older seq must not send those messages twice).
    pub(super) fn track(&mut self, room: RoomKey, cursor: Seq) {
        match self.get_mut(room.id) {
            Some(state) => state.cursor = cursor.max(state.sent.unwrap_or(Seq::ZERO)),
            None => {
                self.0.reserve_exact(1);
                self.0.push(RoomState {
                    room,
                    cursor,
                    sent: None,
                });
            }
        }
    }

    /// Whether the connection receives `room`.
    pub(super) fn contains(&self, id: RoomId) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn cursor(&self, id: RoomId) -> Option<Seq> {
        self.get(id).map(|state| state.cursor)
    }

    /// `seq` went out to the client (or was passed over, for a client that
    /// does not receive that kind of event).
    pub(super) fn mark_sent(&mut self, id: RoomId, seq: Seq) {
        if let Some(state) = self.get_mut(id) {
            state.cursor = seq;
            state.sent = Some(seq);
        }
    }

    pub(super) fn room(&self, id: RoomId) -> Option<&RoomKey> {
        self.get(id).map(|state| &state.room)
    }

    pub(super) fn named(&self, name: &RoomName) -> Option<&RoomKey> {
        self.0
            .iter()
            .map(|state| &state.room)
            .find(|room| &room.name == name)
    }

    /// The connection stopped receiving the room: nothing of it is kept.
    pub(super) fn forget(&mut self, id: RoomId) {
        self.0.retain(|state| state.room.id != id);
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::RoomKind;

    use super::*;

    fn room(id: i64, name: &str) -> RoomKey {
        RoomKey {
            id: RoomId(id),
            name: RoomName::parse(name).expect("a valid name"),
            kind: RoomKind::Public,
            encrypted: false,
        }
    }

    fn seq(value: i64) -> Seq {
        Seq::new(value).expect("a valid seq")
    }

    #[test]
    fn tracked_rooms_keep_cursor_and_sent_apart_until_forgotten() {
        let mut rooms = Tracked::default();
        rooms.track(room(2, "lobby"), seq(5));
        assert_eq!(rooms.cursor(RoomId(2)), Some(seq(5)));

        rooms.track(room(1, "general"), seq(0));
        rooms.mark_sent(RoomId(1), seq(9));
        assert_eq!(rooms.cursor(RoomId(1)), Some(seq(9)));
        let general = RoomName::parse("general").expect("a valid name");
        assert_eq!(rooms.named(&general).map(|r| r.id), Some(RoomId(1)));

        // A resume from an older seq never goes back over what was sent.
        rooms.track(room(1, "general"), seq(3));
        assert_eq!(rooms.cursor(RoomId(1)), Some(seq(9)));

        rooms.forget(RoomId(1));
        assert!(rooms.named(&general).is_none());
        assert!(!rooms.contains(RoomId(1)));
        assert_eq!(rooms.cursor(RoomId(2)), Some(seq(5)), "other rooms stay");
        // Nothing is marked in a room that is not received.
        rooms.mark_sent(RoomId(1), seq(4));
        assert!(!rooms.contains(RoomId(1)));
    }
}
