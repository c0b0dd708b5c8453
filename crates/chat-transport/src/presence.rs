//! Announcing who comes and goes, in the seed's words and in the extended
//! protocol's frames.

use chat_domain::{RoomId, Seq, UserId, Username};
use chat_protocol::ws::ServerFrame;
use chat_storage::RoomKey;

use crate::fanout::RoomEvent;
use crate::frames;
use crate::hub::{Audience, ItemKind, PresenceChange};
use crate::state::AppState;

/// Tells a room that a user came online or went offline. In `general` the
/// seed's clients also get their "joined the chat" / "left the chat" line.
pub(crate) async fn announce(
    state: &AppState,
    room: RoomId,
    room_name: &str,
    user_id: UserId,
    username: &Username,
    change: PresenceChange,
) {
    let online = match change {
        PresenceChange::CameOnline => true,
        PresenceChange::WentOffline => false,
        PresenceChange::Unchanged => return,
    };
    // On several nodes, a user is online while any node has a connection.
    if state.fanout.online_elsewhere(room, username.as_str()).await {
        return;
    }
    if room == state.general.id {
        let line = if online {
            format!("{username} joined the chat")
        } else {
            format!("{username} left the chat")
        };
        state.fanout.publish(RoomEvent {
            room,
            seq: None,
            frame: frames::encode(&frames::system(line)),
            audience: Audience::EveryoneExcept(user_id),
            kind: ItemKind::Message,
        });
    }
    state.fanout.publish(RoomEvent {
        room,
        seq: None,
        frame: frames::encode(&ServerFrame::Presence {
            room: room_name.to_owned(),
            username: username.as_str().to_owned(),
            online,
        }),
        audience: Audience::Extended,
        kind: ItemKind::Message,
    });
}

/// The `joined` frame (with the last seq the connection has) followed by
/// the room's online list.
pub(crate) async fn joined_frames(
    state: &AppState,
    room: &RoomKey,
    last_seq: Seq,
) -> [ServerFrame; 2] {
    let online = state.fanout.online(room.id).await;
    [
        frames::joined(room, last_seq),
        ServerFrame::Who {
            room: room.name.as_str().to_owned(),
            online,
        },
    ]
}
