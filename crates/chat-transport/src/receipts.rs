//! Read receipts: where a member has read a room up to, recorded by the
//! `read` frame and `POST /api/rooms/{name}/read` alike, and told to the
//! room's other members' connections on every node, in rooms no larger
//! than `read_receipts_max_members`. Receipts are not items of the room's
//! sequence: the positions themselves are kept in the database and listed
//! with the members.

use chat_domain::{RoomId, Seq, UserId, Username};
use chat_protocol::ws::ServerFrame;
use chat_storage::StorageError;

use crate::fanout::RoomEvent;
use crate::frames;
use crate::hub::{Audience, ItemKind};
use crate::state::AppState;

/// Records that `user` read `room` (named `name`) up to `seq`, and tells the
/// room's other members when the position moved.
pub(crate) async fn mark_read(
    state: &AppState,
    room: RoomId,
    name: &str,
    user: UserId,
    username: &Username,
    seq: Seq,
) -> Result<(), StorageError> {
    let Some((read, members)) = state.store.mark_read(room, user, seq).await? else {
        return Ok(());
    };
    if members > state.config.read_receipts_max_members {
        return Ok(());
    }
    state.fanout.publish(RoomEvent {
        room,
        seq: None,
        frame: frames::encode(&ServerFrame::Read {
            room: name.to_owned(),
            username: username.as_str().to_owned(),
            seq: read.get(),
        }),
        audience: Audience::ExtendedExcept(user),
        kind: ItemKind::Message,
    });
    Ok(())
}
