//! Every membership change goes through here: join, leave, opening a direct
//! conversation, add, kick, ban, unban, mute, unmute, role changes and room
//! deletion, whether a REST route or a WebSocket frame asked for it.
//!
//! A change is written to the database first (with its record in the room's
//! sequence, see `Store::change_membership`), then published through the
//! [`crate::fanout::Fanout`], so every node applies it to its own sockets:
//! a new member's open sockets are subscribed; the `member` frame of a
//! removal reaches the removed user's sockets in seq order, and each of
//! them stops receiving the room when it delivers it (see
//! `session::delivery`). Nothing else subscribes or unsubscribes a socket
//! for a membership, and the write path refuses a message from anyone who
//! is not a member in good standing, so a socket that missed the event
//! still cannot post.

use chat_domain::{Action, Refusal, RoomName, UserId, Username, Visibility, authorize_in};
use chat_protocol::ws::{LeftReason, ServerFrame};
use chat_storage::{Actor, MembershipOp, Message, Room, RoomKey, StorageError, Store, User};

use crate::access::Access;
use crate::fanout::{Fanout, RoomEvent};
use crate::frames;
use crate::hub::{Audience, ItemKind, MemberItem, Notice};
use crate::state::AppState;

/// `general` is where every account and every seed client is: whoever
/// owns it may not delete it or hide it.
const GENERAL_STAYS: Refusal = Refusal::Forbidden("general cannot be deleted or made private");

/// Makes a membership change in `room` and tells every node; returns the
/// recorded event, or `None` when nothing changed.
pub(crate) async fn change(
    state: &AppState,
    room: &RoomKey,
    actor: &Actor,
    target: UserId,
    op: MembershipOp,
) -> Result<Option<Message>, StorageError> {
    change_through(&state.store, &*state.fanout, room, actor, target, op).await
}

/// [`change`], publishing through `fanout`: the operator's command line
/// makes its changes this way, serving no sockets of its own.
pub(crate) async fn change_through(
    store: &Store,
    fanout: &dyn Fanout,
    room: &RoomKey,
    actor: &Actor,
    target: UserId,
    op: MembershipOp,
) -> Result<Option<Message>, StorageError> {
    let event = store.change_membership(room.id, actor, target, &op).await?;
    if let Some(event) = &event {
        publish(fanout, room, event);
    }
    Ok(event)
}

/// Publishes a recorded membership change: a new member's sockets are
/// subscribed first (starting just before the change, so they receive it),
/// then the `member` frame goes to everyone in the room.
fn publish(fanout: &dyn Fanout, room: &RoomKey, event: &Message) {
    let Some(recorded) = &event.event else {
        return;
    };
    let change = recorded.change;
    if change.adds() {
        fanout.membership(Notice::Added {
            user: event.user_id,
            room: room.clone(),
            from: event.seq.prev(),
        });
    }
    fanout.publish(RoomEvent {
        room: room.id,
        seq: Some(event.seq),
        frame: frames::encode(&frames::member(room.name.as_str(), event, recorded)),
        audience: Audience::Everyone,
        kind: ItemKind::Member(MemberItem {
            user: event.user_id,
            removal: LeftReason::of(change),
        }),
    });
}

/// Opens (or returns) the direct conversation of `a` and `b` (see
/// [`chat_storage::Store::open_direct`] for `encrypted`); both users'
/// open sockets, on every node, receive it from now on.
pub(crate) async fn open_direct(
    state: &AppState,
    a: &User,
    b: &User,
    encrypted: Option<bool>,
) -> Result<Room, StorageError> {
    let room = state.store.open_direct(a, b, encrypted).await?;
    for user in [a.id, b.id] {
        state.fanout.membership(Notice::Added {
            user,
            room: RoomKey::from(&room),
            from: room.last_seq,
        });
    }
    Ok(room)
}

/// Deletes a room with everything in it; every socket receiving it, on
/// every node, gets `left` with reason `room_deleted`. Returns whether it
/// existed.
pub(crate) async fn delete_room(state: &AppState, room: &RoomKey) -> Result<bool, StorageError> {
    delete_room_through(&state.store, &*state.fanout, room).await
}

/// [`delete_room`], publishing through `fanout`.
pub(crate) async fn delete_room_through(
    store: &Store,
    fanout: &dyn Fanout,
    room: &RoomKey,
) -> Result<bool, StorageError> {
    if room.name.as_str() == RoomName::GENERAL {
        return Err(StorageError::Refused(GENERAL_STAYS));
    }
    let deleted = store.delete_room(room.id).await?;
    if deleted {
        fanout.membership(Notice::Deleted { room: room.id });
    }
    Ok(deleted)
}

/// Sets a room's topic and visibility (each when given), as the rules
/// allow the actor (`access` is where they stand); tells the room about a
/// new topic. Fails with [`StorageError::Refused`] when not allowed.
pub(crate) async fn update_room(
    state: &AppState,
    access: &Access,
    actor: &Username,
    topic: Option<Option<String>>,
    visibility: Option<Visibility>,
) -> Result<Room, StorageError> {
    let room = &access.0.room;
    let allowed = |action| {
        authorize_in(room.kind, action, access.role(), None).map_err(StorageError::Refused)
    };
    if topic.is_some() {
        allowed(Action::SetTopic)?;
    }
    if let Some(visibility) = visibility {
        allowed(Action::SetVisibility)?;
        if room.name.as_str() == RoomName::GENERAL && visibility != Visibility::Public {
            return Err(StorageError::Refused(GENERAL_STAYS));
        }
    }
    let updated = state
        .store
        .update_room(room.id, topic.as_ref().map(Option::as_deref), visibility)
        .await?;
    if topic.is_some() {
        state.fanout.publish(RoomEvent {
            room: room.id,
            seq: None,
            frame: frames::encode(&ServerFrame::Topic {
                room: room.name.as_str().to_owned(),
                topic: updated.topic.clone(),
                by: actor.as_str().to_owned(),
            }),
            audience: Audience::Extended,
            kind: ItemKind::Message,
        });
    }
    Ok(updated)
}
