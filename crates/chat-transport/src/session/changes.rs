//! The `edit`, `delete`, `react` and `unreact` frames: a change to a stored
//! message, checked for shape here and handed to the writer of its room,
//! which stores it (where who may change what is decided), acknowledges it
//! and publishes it.

use chat_domain::{ClientId, DomainError, Emoji, MessageBody, Seq};
use chat_protocol::ws::ErrorCode;
use chat_storage::{MessageOp, NewChange};

use super::{Gone, Session};
use crate::writer::Job;

/// A change as a frame asks for it, before its values are checked.
#[derive(Debug)]
pub(super) enum Asked {
    Edit(String),
    Delete,
    React(String),
    Unreact(String),
}

impl Asked {
    /// The change, its text or reaction checked against the rules.
    fn parse(self, max_message_chars: usize) -> Result<MessageOp, DomainError> {
        Ok(match self {
            Asked::Edit(content) => MessageOp::Edit {
                content: MessageBody::parse_with_limit(content, max_message_chars)?,
            },
            Asked::Delete => MessageOp::Delete,
            Asked::React(emoji) => MessageOp::React {
                emoji: Emoji::parse(emoji)?,
            },
            Asked::Unreact(emoji) => MessageOp::Unreact {
                emoji: Emoji::parse(emoji)?,
            },
        })
    }
}

impl Session {
    /// Makes the change `asked` to the message at `seq` of `room`.
    pub(super) async fn on_change(
        &mut self,
        room: String,
        seq: i64,
        asked: Asked,
        client_id: Option<String>,
    ) -> Result<(), Gone> {
        let room_name = Some(room.clone());
        let op = match asked.parse(self.state.config.max_message_chars) {
            Ok(op) => op,
            Err(error) => {
                return self
                    .send_error((&error).into(), error.to_string(), client_id, room_name)
                    .await;
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
