//! The `edit` and `delete` frames: a change to a stored message, checked
//! for shape here and handed to the writer of its room, which stores it
//! (where who may change what is decided), acknowledges it and publishes it.

use chat_domain::{ClientId, MessageBody, Seq};
use chat_protocol::ws::ErrorCode;
use chat_storage::{MessageOp, NewChange};

use super::{Gone, Session};
use crate::writer::Job;

impl Session {
    /// Edits the message at `seq` of `room` to `content`, or deletes it
    /// when `content` is `None`.
    pub(super) async fn on_change(
        &mut self,
        room: String,
        seq: i64,
        content: Option<String>,
        client_id: Option<String>,
    ) -> Result<(), Gone> {
        let room_name = Some(room.clone());
        let op = match content {
            None => MessageOp::Delete,
            Some(content) => {
                match MessageBody::parse_with_limit(content, self.state.config.max_message_chars) {
                    Ok(content) => MessageOp::Edit { content },
                    Err(error) => {
                        return self
                            .send_error(
                                error.clone().into(),
                                error.to_string(),
                                client_id,
                                room_name,
                            )
                            .await;
                    }
                }
            }
        };
        let client_id = match client_id.map(ClientId::parse).transpose() {
            Ok(id) => id,
            Err(error) => {
                return self
                    .send_error(
                        ErrorCode::InvalidClientId,
                        error.to_string(),
                        None,
                        room_name,
                    )
                    .await;
            }
        };
        let cid = client_id.as_ref().map(|id| id.as_str().to_owned());
        let target = match Seq::new(seq) {
            Ok(target) if target.get() > 0 => target,
            _ => {
                return self
                    .send_error(
                        ErrorCode::Invalid,
                        "seq is the position of a message, 1 or more",
                        cid,
                        room_name,
                    )
                    .await;
            }
        };
        let Some(room) = self.room_to_write(Some(room), cid.as_deref()).await? else {
            return Ok(());
        };
        let job = Job::Change(NewChange {
            room_id: room.id,
            target,
            user_id: self.conn.user_id(),
            username: self.conn.username().clone(),
            op,
            client_id,
        });
        self.submit(job, room, cid).await
    }
}
