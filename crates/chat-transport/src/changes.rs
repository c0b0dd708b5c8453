//! Changes to stored messages (edits and deletions): stored, then published
//! through the [`Fanout`] like a message, so every node delivers them in
//! seq order. The writer makes them for `edit` and `delete` frames, in the
//! lane of their room, and the REST routes make them too.

use chat_storage::{Changed, NewChange, StorageError, Store};

use crate::fanout::{Fanout, RoomEvent};
use crate::frames;
use crate::hub::{Audience, ItemKind};

/// Makes `change` to a message of the room named `room` and publishes it.
pub(crate) async fn apply(
    store: &Store,
    fanout: &dyn Fanout,
    room: &str,
    change: NewChange,
) -> Result<Changed, StorageError> {
    let changed = store.change_message(change).await?;
    publish(fanout, room, &changed);
    Ok(changed)
}

/// Publishes a stored change to every socket of its room. A resend of a
/// change already made (same client id) is not published again.
pub(crate) fn publish(fanout: &dyn Fanout, room: &str, changed: &Changed) {
    if changed.duplicate {
        return;
    }
    if let Some(frame) = frames::change(room, &changed.change) {
        fanout.publish(RoomEvent {
            room: changed.change.room_id,
            seq: Some(changed.change.seq),
            frame: frames::encode(&frame),
            audience: Audience::Everyone,
            kind: ItemKind::Change,
        });
    }
}
