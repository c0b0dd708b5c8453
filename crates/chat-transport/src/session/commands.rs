//! The chat frames: sending, joining, resuming, leaving, typing, asking
//! who is online, and renewing the token.

use std::sync::Arc;

use chat_domain::e2e::max_mls_message_chars;
use chat_domain::{ClientId, MessageBody, Refusal, RoomName, Seq, Username};
use chat_protocol::mls::MlsKindBody;
use chat_protocol::ws::{AuthFrame, ClientFrame, ErrorCode, Inbound, ServerFrame};
use chat_storage::{MembershipOp, NewMessage, RoomKey, StorageError};

use super::changes::Asked;
use super::connect::deadline_of;
use super::{Gone, Session};
use crate::access;
use crate::fanout::RoomEvent;
use crate::frames;
use crate::hub::{Audience, Eviction, ItemKind};
use crate::membership;
use crate::writer::{Job, WriteRequest};

impl Session {
    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), Gone> {
        let frame = match Inbound::parse(text) {
            Ok(Inbound::Chat(frame)) => frame,
            Ok(Inbound::Auth(AuthFrame { token })) => {
                self.conn.mark_extended();
                return Box::pin(self.on_auth(&token)).await;
            }
            Err(error) => {
                return self
                    .send_error(error.code(), error.to_string(), None, None)
                    .await;
            }
        };
        if !matches!(
            frame,
            ClientFrame::Message {
                room: None,
                client_id: None,
                reply_to: None,
                ..
            }
        ) {
            self.conn.mark_extended();
        }
        match frame {
            ClientFrame::Message {
                content,
                room,
                client_id,
                reply_to,
                mls,
            } => {
                self.on_message(content, room, client_id, reply_to, mls)
                    .await
            }
            ClientFrame::Edit {
                room,
                seq,
                content,
                client_id,
            } => Box::pin(self.on_change(room, seq, Asked::Edit(content), client_id)).await,
            ClientFrame::Delete {
                room,
                seq,
                client_id,
            } => Box::pin(self.on_change(room, seq, Asked::Delete, client_id)).await,
            ClientFrame::React {
                room,
                seq,
                emoji,
                client_id,
            } => Box::pin(self.on_change(room, seq, Asked::React(emoji), client_id)).await,
            ClientFrame::Unreact {
                room,
                seq,
                emoji,
                client_id,
            } => Box::pin(self.on_change(room, seq, Asked::Unreact(emoji), client_id)).await,
            ClientFrame::Read { room, seq } => Box::pin(self.on_read(room, seq)).await,
            ClientFrame::Join { room } => Box::pin(self.on_join(&room, None)).await,
            ClientFrame::Resume { room, last_seq } => match Seq::new(last_seq) {
                Ok(seq) => Box::pin(self.on_join(&room, Some(seq))).await,
                Err(error) => {
                    self.send_error(ErrorCode::InvalidFrame, error.to_string(), None, Some(room))
                        .await
                }
            },
            ClientFrame::Leave { room } => Box::pin(self.on_leave(&room)).await,
            ClientFrame::Typing { room } => self.on_typing(room).await,
            ClientFrame::Who { room } => Box::pin(self.on_who(room)).await,
            ClientFrame::Ping => self.send(&ServerFrame::Pong).await,
            ClientFrame::Kick {
                room,
                username,
                reason,
            } => Box::pin(self.on_kick(room, username, reason)).await,
            ClientFrame::Ban {
                room,
                username,
                reason,
                until,
            } => Box::pin(self.on_ban(room, username, reason, until)).await,
            ClientFrame::Mute {
                room,
                username,
                until,
            } => Box::pin(self.on_mute(room, username, until)).await,
            ClientFrame::Topic { room, topic } => Box::pin(self.on_topic(room, topic)).await,
        }
    }

    /// Moves the connection onto a fresher access token of the same user and
    /// session, so it stays open until that token expires.
    async fn on_auth(&mut self, token: &str) -> Result<(), Gone> {
        let Ok(claims) = self.state.tokens.verify(token) else {
            return self
                .send_error(
                    ErrorCode::InvalidToken,
                    "the token is not valid or has expired; the connection keeps its current one",
                    None,
                    None,
                )
                .await;
        };
        let same_user = Username::parse(claims.sub.as_str())
            .is_ok_and(|name| name.normalized() == self.conn.username().normalized());
        if !same_user || claims.sid != self.conn.session() {
            return self
                .send_error(
                    ErrorCode::InvalidToken,
                    "the token belongs to another user or session; the connection keeps its current one",
                    None,
                    None,
                )
                .await;
        }
        if let Some(session) = claims.sid {
            // The same check as every request's. A session ended on a node
            // whose notice never arrived here is caught now.
            match self
                .state
                .store
                .user_for_session(self.conn.username(), session)
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.conn.evict(Eviction::SessionEnded);
                    return Ok(());
                }
                Err(error) => return self.storage_error(&error, None, None).await,
            }
        }
        self.deadline = deadline_of(claims.exp);
        let expires_at = claims.expires_at().unwrap_or_else(chrono::Utc::now);
        self.send(&ServerFrame::Authenticated { expires_at }).await
    }

    /// Parses a room name from a frame; tells the client when it is not
    /// one. `None` is `general`.
    pub(super) async fn room_name(
        &mut self,
        raw: Option<String>,
        client_id: Option<&str>,
    ) -> Result<Option<RoomName>, Gone> {
        let raw = raw.unwrap_or_else(|| RoomName::GENERAL.to_owned());
        match RoomName::parse(&raw) {
            Ok(name) => Ok(Some(name)),
            Err(error) => {
                // Boxed: the usual case then needs no more than a pointer's
                // room here.
                Box::pin(self.send_error(
                    ErrorCode::InvalidRoom,
                    error.to_string(),
                    client_id.map(str::to_owned),
                    Some(raw),
                ))
                .await?;
                Ok(None)
            }
        }
    }

    /// Where the user stands in room `name`, read from the database; a
    /// refusal or a database error has been sent to the client when this
    /// returns `Ok(None)`.
    pub(super) async fn access(
        &mut self,
        name: &RoomName,
        client_id: Option<&str>,
    ) -> Result<Option<access::Access>, Gone> {
        let cid = || client_id.map(str::to_owned);
        match access::find(&self.state, name, self.conn.user_id()).await {
            Ok(Ok(access)) => Ok(Some(access)),
            Ok(Err(refusal)) => {
                self.send_refusal(&refusal, name.as_str(), cid()).await?;
                Ok(None)
            }
            Err(error) => {
                self.storage_error(&error, cid(), Some(name.as_str().to_owned()))
                    .await?;
                Ok(None)
            }
        }
    }

    async fn on_message(
        &mut self,
        content: String,
        room: Option<String>,
        client_id: Option<String>,
        reply_to: Option<i64>,
        mls: Option<MlsKindBody>,
    ) -> Result<(), Gone> {
        let mls = match mls {
            None => false,
            Some(MlsKindBody::Application) => true,
            Some(MlsKindBody::Commit) => {
                return self
                    .send_error(
                        ErrorCode::InvalidFrame,
                        "commits are uploaded with POST /api/rooms/{room}/mls/commits",
                        client_id,
                        room,
                    )
                    .await;
            }
        };
        // Ciphertext is longer than the text it hides.
        let limit = if mls {
            max_mls_message_chars(self.state.config.max_message_chars)
        } else {
            self.state.config.max_message_chars
        };
        let body = match MessageBody::parse_with_limit(content, limit) {
            Ok(body) => body,
            Err(error) => {
                return self
                    .send_error(error.clone().into(), error.to_string(), client_id, room)
                    .await;
            }
        };
        let client_id = match client_id.map(ClientId::parse).transpose() {
            Ok(id) => id,
            Err(error) => {
                return self
                    .send_error(ErrorCode::InvalidClientId, error.to_string(), None, room)
                    .await;
            }
        };
        let cid = client_id.as_ref().map(|id| id.as_str().to_owned());
        let Some(room) = self.room_to_write(room, cid.as_deref()).await? else {
            return Ok(());
        };
        // Whether a room is encrypted is fixed when it is created, so what
        // the connection knows of it still holds.
        if room.encrypted && !mls {
            return self
                .send_refusal(&Refusal::EncryptionRequired, room.name.as_str(), cid)
                .await;
        }
        if mls {
            let checked = if room.encrypted {
                chat_protocol::mls::decode(body.as_str())
                    .map_err(|_| "content is not standard base64".to_owned())
                    .and_then(|bytes| crate::mls::check_application(&bytes))
            } else {
                Err("MLS messages go to end-to-end encrypted rooms only".to_owned())
            };
            if let Err(why) = checked {
                return self
                    .send_error(
                        ErrorCode::InvalidFrame,
                        why,
                        cid,
                        Some(room.name.as_str().to_owned()),
                    )
                    .await;
            }
        }
        let reply_to = match reply_to {
            None => None,
            Some(target) => match Box::pin(self.answered(&room, target, cid.as_deref())).await? {
                Some(target) => Some(target),
                None => return Ok(()),
            },
        };
        // The writer checks again, in the transaction that stores the
        // message: a membership that ended meanwhile refuses it there.
        let job = Job::Message(NewMessage {
            room_id: room.id,
            user_id: self.conn.user_id(),
            username: self.conn.username().clone(),
            body,
            client_id,
            reply_to,
            mls,
        });
        self.submit(job, room, cid).await
    }

    /// Marks a room this connection receives read up to `seq`.
    async fn on_read(&mut self, room: String, seq: i64) -> Result<(), Gone> {
        let Ok(seq) = Seq::new(seq) else {
            return self
                .send_error(ErrorCode::Invalid, "seq is not negative", None, Some(room))
                .await;
        };
        let Some(name) = self.room_name(Some(room), None).await? else {
            return Ok(());
        };
        let Some(key) = self.rooms.named(&name).cloned() else {
            return self
                .send_refusal(&Refusal::NotAMember, name.as_str(), None)
                .await;
        };
        let marked = crate::receipts::mark_read(
            &self.state,
            key.id,
            name.as_str(),
            self.conn.user_id(),
            self.conn.username(),
            seq,
        )
        .await;
        match marked {
            Ok(()) => Ok(()),
            Err(error) => {
                self.storage_error(&error, None, Some(name.as_str().to_owned()))
                    .await
            }
        }
    }

    /// Hands a message or a change to the writer of its room.
    pub(super) async fn submit(
        &mut self,
        job: Job,
        room: RoomKey,
        client_id: Option<String>,
    ) -> Result<(), Gone> {
        let request = WriteRequest {
            job,
            room: room.name.clone(),
            sender: Arc::clone(&self.conn),
        };
        if self.state.writer.submit(request).await.is_err() {
            return self
                .send_error(
                    ErrorCode::Unavailable,
                    "the server is shutting down; it was not stored",
                    client_id,
                    Some(room.name.as_str().to_owned()),
                )
                .await;
        }
        Ok(())
    }

    /// The room a message or a change names (`general` when absent), if
    /// the user may write there; a refusal has been sent when this returns
    /// `Ok(None)`.
    pub(super) async fn room_to_write(
        &mut self,
        room: Option<String>,
        client_id: Option<&str>,
    ) -> Result<Option<RoomKey>, Gone> {
        let Some(name) = self.room_name(room, client_id).await? else {
            return Ok(None);
        };
        match self.rooms.named(&name) {
            Some(room) => Ok(Some(room.clone())),
            // Rare: a room this connection does not receive yet.
            None => Box::pin(self.member_room(name, client_id)).await,
        }
    }

    /// The seq a reply answers, if it is a message of `room`; an error has
    /// been sent when this returns `Ok(None)`. Messages are never removed
    /// (a deleted one leaves a tombstone, which may be answered), so what
    /// is checked here still holds when the reply is stored.
    async fn answered(
        &mut self,
        room: &RoomKey,
        target: i64,
        client_id: Option<&str>,
    ) -> Result<Option<Seq>, Gone> {
        let room_name = || Some(room.name.as_str().to_owned());
        let cid = || client_id.map(str::to_owned);
        let Ok(target) = Seq::new(target) else {
            self.send_error(
                ErrorCode::Invalid,
                "reply_to is a seq, not negative",
                cid(),
                room_name(),
            )
            .await?;
            return Ok(None);
        };
        match self.state.store.message_at(room.id, target).await {
            Ok(Some(found)) if found.event.is_none() && found.change.is_none() => Ok(Some(target)),
            Ok(_) => {
                self.send_refusal(&Refusal::MessageNotFound, room.name.as_str(), cid())
                    .await?;
                Ok(None)
            }
            Err(error) => {
                self.storage_error(&error, cid(), room_name()).await?;
                Ok(None)
            }
        }
    }

    /// A room the user is a member of but this connection does not receive
    /// yet: sending into it makes the connection receive it too, so the
    /// sender sees its own message like everyone else. A message with a
    /// client id to a visible room the user is not in goes to the writer
    /// unsubscribed (see below).
    async fn member_room(
        &mut self,
        name: RoomName,
        client_id: Option<&str>,
    ) -> Result<Option<RoomKey>, Gone> {
        let Some(access) = self.access(&name, client_id).await? else {
            return Ok(None);
        };
        if let Err(refusal) = access.member() {
            // A message with a client id may be the resend of one stored
            // before its author was removed: the writer answers it with the
            // original, or refuses it as it would any other. (A room the
            // user may not see never gets this far.)
            if client_id.is_some() {
                return Ok(Some(access.key()));
            }
            self.send_refusal(&refusal, name.as_str(), client_id.map(str::to_owned))
                .await?;
            return Ok(None);
        }
        let key = access.key();
        self.subscribe(key.clone(), access.0.room.last_seq).await;
        Ok(Some(key))
    }

    /// Join, or resume from `last_seq`: become a member if need be (through
    /// the membership path), subscribe, then read where the room stands and
    /// replay what the client missed. Items committed meanwhile arrive
    /// through the queue and the cursor drops any the replay already sent.
    async fn on_join(&mut self, raw: &str, last_seq: Option<Seq>) -> Result<(), Gone> {
        let Some(name) = self.room_name(Some(raw.to_owned()), None).await? else {
            return Ok(());
        };
        // Read whatever the visibility: a removed member may still catch up
        // to their removal (below).
        let found = match self
            .state
            .store
            .room_access(&name, self.conn.user_id())
            .await
        {
            Ok(Some(found)) => access::Access(found),
            Ok(None) => return self.send_refusal(&Refusal::RoomNotFound, raw, None).await,
            Err(error) => return self.storage_error(&error, None, Some(raw.to_owned())).await,
        };
        let key = found.key();
        if found.0.membership.is_none()
            && let Some(last_seq) = last_seq
        {
            // A former member catching up learns of their removal: what
            // came before it, the change itself, then `left`.
            match self
                .state
                .store
                .removal_after(key.id, self.conn.user_id(), last_seq)
                .await
            {
                Ok(Some(removal)) => {
                    self.rooms.track(key.clone(), last_seq);
                    return Box::pin(self.fill(key.id, last_seq, Some(removal.next()))).await;
                }
                Ok(None) => {}
                Err(error) => {
                    return self.storage_error(&error, None, Some(raw.to_owned())).await;
                }
            }
        }
        if !found.visible() {
            return self.send_refusal(&Refusal::RoomNotFound, raw, None).await;
        }
        let mut joined_at = None;
        if found.0.membership.is_none() {
            let actor = self.actor();
            match membership::change(
                &self.state,
                &key,
                &actor,
                self.conn.user_id(),
                MembershipOp::Join,
            )
            .await
            {
                Ok(event) => joined_at = event.map(|event| event.seq),
                Err(StorageError::Refused(refusal)) => {
                    return self.send_refusal(&refusal, raw, None).await;
                }
                Err(error) => return self.storage_error(&error, None, Some(raw.to_owned())).await,
            }
        }
        let current = match self.state.store.room_by_id(key.id).await {
            Ok(Some(current)) => current.last_seq,
            Ok(None) => {
                return self.send_refusal(&Refusal::RoomNotFound, raw, None).await;
            }
            Err(error) => return self.storage_error(&error, None, Some(raw.to_owned())).await,
        };
        // A client cannot have seen more than the room holds; trusting a
        // larger number would make it drop what is still to come. One that
        // just joined starts with its own `joined` change.
        let resume_from = match (last_seq, joined_at) {
            (Some(seq), _) => seq.min(current),
            (None, Some(joined)) => joined.prev(),
            (None, None) => current,
        };
        self.subscribe(key.clone(), resume_from).await;
        let from = self.rooms.cursor(key.id).unwrap_or(resume_from);
        self.replay(key, current, from).await
    }

    async fn on_leave(&mut self, raw: &str) -> Result<(), Gone> {
        let Some(name) = self.room_name(Some(raw.to_owned()), None).await? else {
            return Ok(());
        };
        let Some(access) = self.access(&name, None).await? else {
            return Ok(());
        };
        if access.0.membership.is_none() {
            return self.send_refusal(&Refusal::NotAMember, raw, None).await;
        }
        let key = access.key();
        let actor = self.actor();
        let left = membership::change(
            &self.state,
            &key,
            &actor,
            self.conn.user_id(),
            MembershipOp::Leave,
        )
        .await;
        if let Err(error) = left {
            return self.storage_error(&error, None, Some(raw.to_owned())).await;
        }
        // A connection that receives the room gets `left` when it delivers
        // the change; one that does not is told here.
        if self.rooms.contains(key.id) {
            return Ok(());
        }
        self.send(&ServerFrame::Left {
            room: key.name.as_str().to_owned(),
            reason: Some(chat_protocol::ws::LeftReason::Left),
        })
        .await
    }

    /// Finds a room this connection receives; tells the client if it does
    /// not.
    async fn subscribed_room(&mut self, name: Option<String>) -> Result<Option<RoomKey>, Gone> {
        let raw = name.unwrap_or_else(|| RoomName::GENERAL.to_owned());
        let room = RoomName::parse(&raw)
            .ok()
            .and_then(|name| self.rooms.named(&name).cloned());
        if room.is_none() {
            self.send_error(
                ErrorCode::NotAMember,
                format!("join '{raw}' first"),
                None,
                Some(raw),
            )
            .await?;
        }
        Ok(room)
    }

    async fn on_typing(&mut self, room: Option<String>) -> Result<(), Gone> {
        let Some(room) = self.subscribed_room(room).await? else {
            return Ok(());
        };
        self.state.fanout.publish(RoomEvent {
            room: room.id,
            seq: None,
            frame: frames::encode(&ServerFrame::Typing {
                room: room.name.as_str().to_owned(),
                username: self.conn.username().as_str().to_owned(),
            }),
            audience: Audience::ExtendedExcept(self.conn.user_id()),
            kind: ItemKind::Message,
        });
        Ok(())
    }

    async fn on_who(&mut self, room: Option<String>) -> Result<(), Gone> {
        let Some(room) = self.subscribed_room(room).await? else {
            return Ok(());
        };
        let frame = ServerFrame::Who {
            room: room.name.as_str().to_owned(),
            online: self.state.fanout.online(room.id).await,
        };
        self.send(&frame).await
    }
}
