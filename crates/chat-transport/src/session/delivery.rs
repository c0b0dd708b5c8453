//! Delivery: the connection's queue, replay and gap filling, all in seq
//! order per room, and the end of a room's delivery when a membership
//! change removes the connection's user.

use chat_domain::{RoomId, Seq};
use chat_protocol::ws::{ErrorCode, LeftReason, ServerFrame};
use chat_storage::{Cursor, RoomKey};

use super::{FILL_PAGE, Gone, Session};
use crate::frames;
use crate::hub::{ItemKind, MemberItem, Outbound};
use crate::presence;

impl Session {
    /// Delivers one queued item, keeping each room in seq order.
    pub(super) async fn deliver(&mut self, item: Outbound) -> Result<(), Gone> {
        match item {
            Outbound::Frame(frame) => self.send_raw(frame).await,
            Outbound::RoomMessage {
                room,
                seq,
                frame,
                kind,
            } => {
                // A room this connection does not receive (any more): not
                // for it.
                let Some(cursor) = self.rooms.cursor(room) else {
                    return Ok(());
                };
                if seq <= cursor {
                    return Ok(());
                }
                if seq > cursor.next() {
                    Box::pin(self.fill(room, cursor, Some(seq))).await?;
                    if !self.rooms.contains(room) {
                        // A removal of this user was among the missed.
                        return Ok(());
                    }
                }
                self.rooms.mark_sent(room, seq);
                // Seed clients see messages only.
                if kind.seed_sees() || self.conn.is_extended() {
                    self.send_raw(frame).await?;
                }
                match kind {
                    ItemKind::Member(MemberItem {
                        user,
                        removal: Some(reason),
                    }) if user == self.conn.user_id() => Box::pin(self.removed(room, reason)).await,
                    _ => Ok(()),
                }
            }
            Outbound::Head { room, seq } => match self.rooms.cursor(room) {
                Some(cursor) if seq > cursor => Box::pin(self.fill(room, cursor, None)).await,
                _ => Ok(()),
            },
            Outbound::Subscribed { room, from } => {
                if self.rooms.contains(room.id) {
                    return Ok(());
                }
                // Encoded before the await, so that this future, boxed for
                // every delivered frame, does not hold a whole frame.
                let frame = frames::encode(&frames::joined(&room, from));
                self.rooms.track(*room, from);
                self.send_raw(frame).await
            }
            Outbound::Removed { room, reason } => {
                if self.rooms.contains(room) {
                    Box::pin(self.drop_room(room, reason)).await
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The connection delivered a change that removed its user from `room`:
    /// it stops receiving the room, unless the user is a member again (they
    /// rejoined or were added since; a replay from before the removal goes
    /// on). Removals are rare, so asking the database is cheap here; if it
    /// cannot answer, the room is dropped, which a `join` undoes.
    async fn removed(&mut self, room: RoomId, reason: LeftReason) -> Result<(), Gone> {
        let member_again = self
            .state
            .store
            .is_member(room, self.conn.user_id())
            .await
            .unwrap_or(false);
        if member_again {
            return Ok(());
        }
        self.drop_room(room, reason).await
    }

    /// Stops receiving `room`: the hub drops this connection from it, the
    /// cursor goes, and the client is told why.
    pub(super) async fn drop_room(&mut self, room: RoomId, reason: LeftReason) -> Result<(), Gone> {
        let Some(key) = self.rooms.room(room).cloned() else {
            return Ok(());
        };
        let change = self.state.hub.unsubscribe(room, &self.conn);
        self.rooms.forget(room);
        presence::announce(
            &self.state,
            room,
            key.name.as_str(),
            self.conn.user_id(),
            self.conn.username(),
            change,
        )
        .await;
        if !self.conn.is_extended() {
            return Ok(());
        }
        self.send(&ServerFrame::Left {
            room: key.name.as_str().to_owned(),
            reason: Some(reason),
        })
        .await
    }

    /// Sends what `room` holds after `from`, up to `last_seq` (later ones
    /// come through the queue), then `joined`.
    pub(super) async fn replay(
        &mut self,
        room: RoomKey,
        mut last_seq: Seq,
        from: Seq,
    ) -> Result<(), Gone> {
        if from < last_seq {
            self.fill(room.id, from, None).await?;
        }
        if !self.rooms.contains(room.id) {
            // The replay met this user's removal: `left` was sent.
            return Ok(());
        }
        // `joined` reports the last seq this connection has, so the next
        // item it receives from the room is the one after it.
        if let Some(delivered) = self.rooms.cursor(room.id) {
            last_seq = last_seq.max(delivered);
        }
        for frame in presence::joined_frames(&self.state, &room, last_seq).await {
            self.send(&frame).await?;
        }
        Ok(())
    }

    /// Subscribes to a room and announces the user if they just came
    /// online there. Delivery starts after `cursor`, which must have been
    /// read before subscribing.
    pub(super) async fn subscribe(&mut self, room: RoomKey, cursor: Seq) {
        if !self.rooms.contains(room.id) {
            let change = self.state.hub.subscribe(room.id, &self.conn);
            presence::announce(
                &self.state,
                room.id,
                room.name.as_str(),
                self.conn.user_id(),
                self.conn.username(),
                change,
            )
            .await;
        }
        self.rooms.track(room, cursor);
    }

    /// Sends what is stored in a room after `from`, up to (not including)
    /// `until`, or up to the newest; stops at a change that removed this
    /// connection's user, after applying it.
    pub(super) async fn fill(
        &mut self,
        room: RoomId,
        from: Seq,
        until: Option<Seq>,
    ) -> Result<(), Gone> {
        let Some(room_name) = self.room_name_of(room) else {
            return Ok(());
        };
        let mut cursor = from;
        loop {
            let page = match self
                .state
                .store
                .history(room, Cursor::After(cursor), FILL_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(error = %crate::error::Chain(&error), "could not replay missed messages");
                    return self
                        .send_error(
                            ErrorCode::Unavailable,
                            "missed messages could not be loaded; resume again later",
                            None,
                            Some(room_name),
                        )
                        .await;
                }
            };
            for stored in &page.messages {
                if until.is_some_and(|until| stored.seq >= until) {
                    return Ok(());
                }
                cursor = stored.seq;
                self.rooms.mark_sent(room, cursor);
                // Seed clients see messages only.
                if let Some(change) = frames::change(&room_name, stored) {
                    if self.conn.is_extended() {
                        self.send(&change).await?;
                    }
                    continue;
                }
                let Some(event) = &stored.event else {
                    if stored.deleted_at.is_none() || self.conn.is_extended() {
                        self.send(&frames::message(&room_name, stored)).await?;
                    }
                    continue;
                };
                if self.conn.is_extended() {
                    self.send(&frames::member(&room_name, stored, event))
                        .await?;
                }
                if stored.user_id == self.conn.user_id()
                    && let Some(reason) = LeftReason::of(event.change)
                {
                    self.removed(room, reason).await?;
                    if !self.rooms.contains(room) {
                        return Ok(());
                    }
                }
            }
            if !page.has_more || page.messages.is_empty() {
                return Ok(());
            }
        }
    }

    pub(super) fn room_name_of(&self, room: RoomId) -> Option<String> {
        self.rooms.room(room).map(|r| r.name.as_str().to_owned())
    }
}
