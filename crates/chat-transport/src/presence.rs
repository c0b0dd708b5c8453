//! Announcing who comes and goes, in the seed's words and in the extended
//! protocol's frames.

use std::sync::Arc;

use chat_domain::{RoomId, UserId, Username};
use chat_protocol::ws::ServerFrame;
use chat_storage::Room;

use crate::fanout::RoomEvent;
use crate::frames;
use crate::hub::{Audience, Connection, Outbound, PresenceChange};
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
    });
}

/// The `joined` frame followed by the room's online list.
pub(crate) async fn joined_frames(state: &AppState, room: &Room) -> [ServerFrame; 2] {
    let online = state.fanout.online(room.id).await;
    [
        ServerFrame::Joined {
            room: room.name.as_str().to_owned(),
            kind: room.kind.into(),
            last_seq: room.last_seq.get(),
        },
        ServerFrame::Who {
            room: room.name.as_str().to_owned(),
            online,
        },
    ]
}

/// Subscribes every extended connection of `user` on this node to a room
/// they were just made a member of (a new direct conversation), so its
/// messages reach them without a reconnect.
pub(crate) async fn subscribe_open_connections(state: &AppState, room: &Room, user: UserId) {
    let connections: Vec<Arc<Connection>> = state
        .hub
        .connections_of(user)
        .into_iter()
        .filter(|conn| conn.is_extended())
        .collect();
    for conn in connections {
        if state.hub.is_subscribed(room.id, conn.id()) {
            continue;
        }
        // The starting point goes first, so the session delivers every
        // message after it and nothing before.
        conn.push(Outbound::Head {
            room: room.id,
            seq: room.last_seq,
        });
        let change = state.hub.subscribe(room.id, &conn);
        for frame in joined_frames(state, room).await {
            conn.push(Outbound::Frame(frames::encode(&frame)));
        }
        announce(
            state,
            room.id,
            room.name.as_str(),
            user,
            conn.username(),
            change,
        )
        .await;
    }
}
