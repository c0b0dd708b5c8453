//! The frames that govern a room: `kick`, `ban`, `mute` and `topic`. Each
//! goes through the same membership path and rules as its REST route, and
//! is answered with the resulting event, or an `error` with a stable code.

use chat_domain::{Refusal, RoomName, Username, parse_reason, parse_topic};
use chat_protocol::ws::ErrorCode;
use chat_storage::{MembershipOp, StorageError};
use chrono::{DateTime, Utc};

use super::{Gone, Session};
use crate::frames;
use crate::membership;

impl Session {
    pub(super) async fn on_kick(
        &mut self,
        room: String,
        username: String,
        reason: Option<String>,
    ) -> Result<(), Gone> {
        let Some(reason) = self.reason(reason, &room).await? else {
            return Ok(());
        };
        self.govern(room, username, MembershipOp::Kick { reason })
            .await
    }

    pub(super) async fn on_ban(
        &mut self,
        room: String,
        username: String,
        reason: Option<String>,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), Gone> {
        if let Some(until) = until
            && !self.in_future(until, &room).await?
        {
            return Ok(());
        }
        let Some(reason) = self.reason(reason, &room).await? else {
            return Ok(());
        };
        self.govern(room, username, MembershipOp::Ban { reason, until })
            .await
    }

    pub(super) async fn on_mute(
        &mut self,
        room: String,
        username: String,
        until: DateTime<Utc>,
    ) -> Result<(), Gone> {
        if !self.in_future(until, &room).await? {
            return Ok(());
        }
        self.govern(room, username, MembershipOp::Mute { until })
            .await
    }

    pub(super) async fn on_topic(&mut self, room: String, topic: String) -> Result<(), Gone> {
        let topic = match parse_topic(&topic) {
            Ok(topic) => topic,
            Err(error) => {
                return self
                    .send_error(ErrorCode::InvalidFrame, error.to_string(), None, Some(room))
                    .await;
            }
        };
        let Some(name) = self.room_name(Some(room.clone()), None).await? else {
            return Ok(());
        };
        let Some(access) = self.access(&name, None).await? else {
            return Ok(());
        };
        let updated = membership::update_room(
            &self.state,
            &access,
            self.conn.username(),
            Some(topic),
            None,
        )
        .await;
        match updated {
            Ok(updated) => {
                if self.rooms.contains(updated.id) {
                    // The `topic` frame reaches this connection with the
                    // room's.
                    return Ok(());
                }
                let frame = chat_protocol::ws::ServerFrame::Topic {
                    room: name.as_str().to_owned(),
                    topic: updated.topic,
                    by: self.conn.username().as_str().to_owned(),
                };
                self.send(&frame).await
            }
            Err(StorageError::Refused(refusal)) => self.send_refusal(&refusal, &room, None).await,
            Err(error) => self.storage_error(&error, None, Some(room)).await,
        }
    }

    /// A moderator's reason, checked; an error has been sent when the
    /// outer `Option` is `None`.
    async fn reason(
        &mut self,
        reason: Option<String>,
        room: &str,
    ) -> Result<Option<Option<String>>, Gone> {
        match reason.as_deref().map(parse_reason).transpose() {
            Ok(reason) => Ok(Some(reason.flatten())),
            Err(error) => {
                self.send_error(
                    ErrorCode::InvalidFrame,
                    error.to_string(),
                    None,
                    Some(room.to_owned()),
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// Whether `until` lies ahead; tells the client when it does not.
    async fn in_future(&mut self, until: DateTime<Utc>, room: &str) -> Result<bool, Gone> {
        if until > Utc::now() {
            return Ok(true);
        }
        self.send_error(
            ErrorCode::InvalidFrame,
            "until must be in the future",
            None,
            Some(room.to_owned()),
        )
        .await?;
        Ok(false)
    }

    /// Applies a moderator's change to `username` in `room`. The resulting
    /// `member` frame reaches this connection with the room's items; one
    /// that does not receive the room gets it here.
    async fn govern(
        &mut self,
        room: String,
        username: String,
        op: MembershipOp,
    ) -> Result<(), Gone> {
        let Some(name) = self.room_name(Some(room.clone()), None).await? else {
            return Ok(());
        };
        let Some(access) = self.access(&name, None).await? else {
            return Ok(());
        };
        let Some(target) = self.user_named(username, &name).await? else {
            return Ok(());
        };
        let key = access.key();
        let actor = self.actor();
        match membership::change(&self.state, &key, &actor, target, op).await {
            Ok(Some(stored)) if !self.rooms.contains(key.id) => match &stored.event {
                Some(event) => {
                    self.send(&frames::member(name.as_str(), &stored, event))
                        .await
                }
                None => Ok(()),
            },
            Ok(_) => Ok(()),
            Err(StorageError::Refused(refusal)) => {
                self.send_refusal(&refusal, name.as_str(), None).await
            }
            Err(error) => self.storage_error(&error, None, Some(room)).await,
        }
    }

    /// The id of the user named `username`; tells the client when there is
    /// none.
    async fn user_named(
        &mut self,
        username: String,
        room: &RoomName,
    ) -> Result<Option<chat_domain::UserId>, Gone> {
        let found = match Username::parse(username.as_str()) {
            Ok(name) => crate::access::user_named(&self.state, &name).await,
            Err(_) => Ok(None),
        };
        match found {
            Ok(Some(user)) => Ok(Some(user.id)),
            Ok(None) => {
                self.send_refusal(
                    &Refusal::Conflict("no user of that name"),
                    room.as_str(),
                    None,
                )
                .await?;
                Ok(None)
            }
            Err(error) => {
                self.storage_error(&error, None, Some(room.as_str().to_owned()))
                    .await?;
                Ok(None)
            }
        }
    }
}
