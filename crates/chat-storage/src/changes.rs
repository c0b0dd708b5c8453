//! Changes to stored messages: edits, deletions and reactions, each
//! recorded in the room's sequence, the texts a message had before, and
//! the reactions it has now.
//!
//! A change is one transaction that locks the room's counter row, as a
//! batch of messages and a membership change do, so changes, messages and
//! membership changes of a room are numbered in one order. The changed
//! message keeps its current state (the newest text, or a tombstone), so a
//! history page shows it as it is now; the change itself is a row at the
//! room's next seq, so `resume` and history replay it.

use chat_domain::{
    MAX_REACTION_KINDS, MessageAction, Refusal, RoomId, RoomKind, Seq, UserId, authorize_message,
};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::model::{Changed, Message, MessageOp, NewChange, Reaction, Version};
use crate::room_counters::LockRoomCounters;
use crate::rows::{MESSAGE_COLUMNS, MessageRow, now, role, seq, utc};
use crate::schema::{message_reactions, message_versions, messages, room_members, rooms, users};
use crate::search::entries_of;
use crate::search_index::{IndexEntry, SearchIndex};
use crate::sequence::{Recorded, SequenceItem};
use crate::{StorageError, Store};

/// What a change needs to know about the message it changes.
#[derive(Queryable)]
struct Target {
    id: i64,
    user_id: i64,
    body: String,
    key_id: String,
    created_at: NaiveDateTime,
    edited_at: Option<NaiveDateTime>,
    deleted_at: Option<NaiveDateTime>,
    event: Option<String>,
    change: Option<String>,
}

impl Store {
    /// Edits, deletes or reacts to the message at `change.target` of
    /// `change.room_id` and records the change at the room's next seq.
    ///
    /// Its author may edit and delete it; the room's owner and moderators
    /// may delete it too; every member may react to it (see
    /// [`chat_domain::authorize_message`]). An edit keeps the text it
    /// replaces (encrypted) for [`Store::versions`]; a deletion erases the
    /// text, every earlier text, the text of every edit of the message and
    /// its reactions, leaving a tombstone. A message carries at most
    /// [`MAX_REACTION_KINDS`] kinds of reaction, one of each per member.
    ///
    /// A change whose (user, client id) is stored already is not made
    /// again: the result is the stored one with `duplicate: true`. So is a
    /// reaction the actor has made already: the result is the change that
    /// added it.
    ///
    /// Fails with [`StorageError::Refused`] when the actor may not make the
    /// change ([`Refusal::NotAMember`], [`Refusal::Muted`] for an edit or a
    /// reaction, [`Refusal::Forbidden`]), when there is no such message
    /// ([`Refusal::MessageNotFound`]) or it is deleted
    /// ([`Refusal::MessageDeleted`]), when the message has as many kinds of
    /// reaction as it may ([`Refusal::TooManyReactions`]), or when the
    /// reaction to take back was not made ([`Refusal::ReactionNotFound`]);
    /// nothing is changed then. An edit in an end-to-end encrypted room is
    /// refused ([`Refusal::EncryptionRequired`]). Fails with
    /// [`StorageError::NotFound`] when the room does not exist.
    pub async fn change_message(&self, change: NewChange) -> Result<Changed, StorageError> {
        let room = change.room_id.get();
        let target = change.target.get();
        let actor = change.user_id.get();
        let client_id = change.client_id.as_ref().map(|id| id.as_str());
        // Encryption needs no lock: done before the transaction.
        // A reaction is sealed in the change like a text, and kept readable
        // in `message_reactions` to be counted.
        let sealed = match &change.op {
            MessageOp::Edit { content } => Some(self.inner.keys.encrypt(content.as_str())),
            MessageOp::React { emoji } | MessageOp::Unreact { emoji } => {
                Some(self.inner.keys.encrypt(emoji.as_str()))
            }
            MessageOp::Delete => None,
        };
        let (kind, action) = match &change.op {
            MessageOp::Edit { .. } => ("edited", MessageAction::Edit),
            MessageOp::Delete => ("deleted", MessageAction::Delete),
            MessageOp::React { .. } => ("reacted", MessageAction::React),
            MessageOp::Unreact { .. } => ("unreacted", MessageAction::React),
        };
        // Muted members may delete their messages and take back their
        // reactions, but add nothing.
        let adds = matches!(change.op, MessageOp::Edit { .. } | MessageOp::React { .. });
        let (body, key_id) = sealed.as_ref().map_or(("", ""), |sealed| {
            (sealed.token.as_str(), sealed.key_id.as_str())
        });
        // The index entries of the new text, hashed before the lock.
        let new_entries = match &change.op {
            MessageOp::Edit { content } => entries_of(self.inner.search.as_ref(), content.as_str()),
            _ => Vec::new(),
        };
        let at = now();
        let written = write_transaction!(self, |conn| {
            let Some((_, last_seq)) = conn.lock_room_counters(&[room]).await?.into_iter().next()
            else {
                return Err(StorageError::NotFound(format!("room {room}")));
            };
            if let Some(client_id) = client_id {
                let stored: Option<MessageRow> = messages::table
                    .inner_join(users::table)
                    .filter(messages::user_id.eq(actor))
                    .filter(messages::client_id.eq(client_id))
                    .select(MESSAGE_COLUMNS)
                    .first(conn)
                    .await
                    .optional()?;
                if let Some(stored) = stored {
                    return Ok((stored, true));
                }
            }
            let (kind_of_room, encrypted): (String, bool) = rooms::table
                .find(room)
                .select((rooms::kind, rooms::encrypted))
                .first(conn)
                .await?;
            // An edit would put readable text where only ciphertext goes.
            if encrypted && matches!(change.op, MessageOp::Edit { .. }) {
                return Err(StorageError::Refused(Refusal::EncryptionRequired));
            }
            let standing: Option<(String, Option<NaiveDateTime>)> = room_members::table
                .find((room, actor))
                .select((room_members::role, room_members::muted_until))
                .first(conn)
                .await
                .optional()?;
            let Some((actor_role, muted_until)) = standing else {
                return Err(StorageError::Refused(Refusal::NotAMember));
            };
            if adds && let Some(until) = muted_until.filter(|until| *until > at) {
                return Err(StorageError::Refused(Refusal::Muted { until: utc(until) }));
            }
            let found: Option<Target> = messages::table
                .filter(messages::room_id.eq(room))
                .filter(messages::seq.eq(target))
                .select((
                    messages::id,
                    messages::user_id,
                    messages::body,
                    messages::key_id,
                    messages::created_at,
                    messages::edited_at,
                    messages::deleted_at,
                    messages::event,
                    messages::change,
                ))
                .first(conn)
                .await
                .optional()?;
            let found = match found {
                Some(found) if found.event.is_none() && found.change.is_none() => found,
                _ => return Err(StorageError::Refused(Refusal::MessageNotFound)),
            };
            if found.deleted_at.is_some() {
                return Err(StorageError::Refused(Refusal::MessageDeleted));
            }
            // A direct conversation has no roles.
            let actor_role = match RoomKind::from_str_opt(&kind_of_room) {
                Some(RoomKind::Direct) => None,
                _ => Some(role(&actor_role)?),
            };
            authorize_message(action, actor_role, found.user_id == actor)
                .map_err(StorageError::Refused)?;

            let next = last_seq + 1;
            let the_target = messages::table
                .filter(messages::room_id.eq(room))
                .filter(messages::seq.eq(target));
            let reactions_of_target = message_reactions::table
                .filter(message_reactions::room_id.eq(room))
                .filter(message_reactions::seq.eq(target));
            match &change.op {
                MessageOp::React { emoji } => {
                    let emoji = emoji.as_str();
                    let made: Option<i64> = message_reactions::table
                        .find((room, target, emoji, actor))
                        .select(message_reactions::added_seq)
                        .first(conn)
                        .await
                        .optional()?;
                    if let Some(added) = made {
                        return Ok((row_at!(conn, room, added), true));
                    }
                    let kinds: Vec<String> = reactions_of_target
                        .select(message_reactions::emoji)
                        .distinct()
                        .load(conn)
                        .await?;
                    if kinds.len() >= MAX_REACTION_KINDS && !kinds.iter().any(|k| k == emoji) {
                        return Err(StorageError::Refused(Refusal::TooManyReactions {
                            max: MAX_REACTION_KINDS,
                        }));
                    }
                    diesel::insert_into(message_reactions::table)
                        .values((
                            message_reactions::room_id.eq(room),
                            message_reactions::seq.eq(target),
                            message_reactions::emoji.eq(emoji),
                            message_reactions::user_id.eq(actor),
                            message_reactions::added_seq.eq(next),
                        ))
                        .execute(conn)
                        .await?;
                    diesel::update(the_target)
                        .set(messages::reactions.eq(messages::reactions + 1))
                        .execute(conn)
                        .await?;
                }
                MessageOp::Unreact { emoji } => {
                    let emoji = emoji.as_str();
                    let taken =
                        diesel::delete(message_reactions::table.find((room, target, emoji, actor)))
                            .execute(conn)
                            .await?;
                    if taken == 0 {
                        return Err(StorageError::Refused(Refusal::ReactionNotFound));
                    }
                    diesel::update(the_target)
                        .set(messages::reactions.eq(messages::reactions - 1))
                        .execute(conn)
                        .await?;
                }
                MessageOp::Edit { .. } => {
                    // Found by its new text only, from this commit on.
                    if self.inner.search.is_some()
                        && let Some(old) = self.decrypt_body(&found.body, found.key_id.clone())
                    {
                        conn.erase_message_index(
                            room,
                            found.id,
                            entries_of(self.inner.search.as_ref(), &old),
                        )
                        .await?;
                    }
                    let index: Vec<IndexEntry> = new_entries
                        .iter()
                        .map(|&(generation, term)| IndexEntry {
                            generation,
                            term,
                            room_id: room,
                            message_id: found.id,
                        })
                        .collect();
                    conn.write_index(index, true).await?;
                    diesel::insert_into(message_versions::table)
                        .values((
                            message_versions::room_id.eq(room),
                            message_versions::seq.eq(target),
                            message_versions::replaced_by.eq(next),
                            message_versions::body.eq(&found.body),
                            message_versions::key_id.eq(&found.key_id),
                            message_versions::written_at
                                .eq(found.edited_at.unwrap_or(found.created_at)),
                        ))
                        .execute(conn)
                        .await?;
                    diesel::update(the_target)
                        .set((
                            messages::body.eq(body),
                            messages::key_id.eq(key_id),
                            messages::edited_at.eq(at),
                        ))
                        .execute(conn)
                        .await?;
                }
                MessageOp::Delete => {
                    if self.inner.search.is_some()
                        && let Some(text) = self.decrypt_body(&found.body, found.key_id.clone())
                    {
                        conn.erase_message_index(
                            room,
                            found.id,
                            entries_of(self.inner.search.as_ref(), &text),
                        )
                        .await?;
                    }
                    diesel::delete(reactions_of_target).execute(conn).await?;
                    diesel::delete(
                        message_versions::table
                            .filter(message_versions::room_id.eq(room))
                            .filter(message_versions::seq.eq(target)),
                    )
                    .execute(conn)
                    .await?;
                    diesel::update(the_target)
                        .set((
                            messages::body.eq(""),
                            messages::key_id.eq(""),
                            messages::deleted_at.eq(at),
                            messages::deleted_by.eq(actor),
                            messages::reactions.eq(0),
                        ))
                        .execute(conn)
                        .await?;
                    // The texts its edits carried go with it.
                    diesel::update(
                        messages::table
                            .filter(messages::room_id.eq(room))
                            .filter(messages::target_seq.eq(target))
                            .filter(messages::change.eq("edited")),
                    )
                    .set((messages::body.eq(""), messages::key_id.eq("")))
                    .execute(conn)
                    .await?;
                }
            }
            let item = SequenceItem {
                room,
                seq: next,
                user_id: actor,
                body,
                key_id,
                client_id,
                created_at: at,
                recorded: Recorded::Change {
                    change: kind,
                    target,
                },
            };
            Ok((record_in_sequence!(conn, &item), false))
        });
        let (row, duplicate) = written?;
        if !duplicate {
            // A message of the room changed: memory's newest page of it
            // no longer holds.
            self.inner.recent.forget(room);
        }
        Ok(Changed {
            change: self.open(row)?,
            duplicate,
        })
    }

    /// The reactions to the messages at `seqs` of `room` as they are now,
    /// for the member `viewer`: per message that has any (in ascending seq
    /// order), each kind with its count, in the order the kinds were first
    /// added.
    pub async fn reactions(
        &self,
        room: RoomId,
        seqs: &[Seq],
        viewer: UserId,
    ) -> Result<Vec<(Seq, Vec<Reaction>)>, StorageError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = seqs.iter().map(|seq| seq.get()).collect();
        let (counted, mine) = with_conn!(self, |conn| {
            let of_page = message_reactions::table
                .filter(message_reactions::room_id.eq(room.get()))
                .filter(message_reactions::seq.eq_any(&wanted));
            let counted: Vec<(i64, String, i64, Option<i64>)> = of_page
                .clone()
                .group_by((message_reactions::seq, message_reactions::emoji))
                .select((
                    message_reactions::seq,
                    message_reactions::emoji,
                    diesel::dsl::count_star(),
                    diesel::dsl::min(message_reactions::added_seq),
                ))
                .load(conn)
                .await?;
            let mine: Vec<(i64, String)> = of_page
                .filter(message_reactions::user_id.eq(viewer.get()))
                .select((message_reactions::seq, message_reactions::emoji))
                .load(conn)
                .await?;
            (counted, mine)
        });
        let mut counted = counted;
        counted.sort_unstable_by_key(|(seq, _, _, first)| (*seq, *first));
        let mut out: Vec<(Seq, Vec<Reaction>)> = Vec::new();
        for (at, emoji, count, _) in counted {
            let me = mine.iter().any(|(s, e)| *s == at && *e == emoji);
            let reaction = Reaction { emoji, count, me };
            match out.last_mut() {
                Some((last, reactions)) if last.get() == at => reactions.push(reaction),
                _ => out.push((seq(at, "message_reactions.seq")?, vec![reaction])),
            }
        }
        Ok(out)
    }

    /// The texts the message at `target` of `room` had before its edits,
    /// newest first (empty for a message never edited, and for a deleted
    /// one, whose texts are erased).
    ///
    /// Fails with [`StorageError::Refused`] ([`Refusal::MessageNotFound`])
    /// when no message has that seq in the room.
    pub async fn versions(&self, room: RoomId, target: Seq) -> Result<Vec<Version>, StorageError> {
        let rows: Vec<(i64, String, String, NaiveDateTime)> = with_conn!(self, |conn| {
            let kind: Option<(Option<String>, Option<String>)> = messages::table
                .filter(messages::room_id.eq(room.get()))
                .filter(messages::seq.eq(target.get()))
                .select((messages::event, messages::change))
                .first(conn)
                .await
                .optional()?;
            if !matches!(kind, Some((None, None))) {
                return Err(StorageError::Refused(Refusal::MessageNotFound));
            }
            message_versions::table
                .filter(message_versions::room_id.eq(room.get()))
                .filter(message_versions::seq.eq(target.get()))
                .order(message_versions::replaced_by.desc())
                .select((
                    message_versions::replaced_by,
                    message_versions::body,
                    message_versions::key_id,
                    message_versions::written_at,
                ))
                .load(conn)
                .await?
        });
        rows.into_iter()
            .map(|(replaced_by, body, key_id, written_at)| {
                let content = self.decrypt_body(&body, key_id);
                Ok(Version {
                    content,
                    written_at: utc(written_at),
                    replaced_by: seq(replaced_by, "message_versions.replaced_by")?,
                })
            })
            .collect()
    }

    /// The message at `seq` of `room`, in its current state, if there is
    /// one there (a recorded change counts: see [`Message::change`]).
    pub async fn message_at(&self, room: RoomId, at: Seq) -> Result<Option<Message>, StorageError> {
        Ok(self.messages_at(room, &[at]).await?.pop())
    }

    /// The messages at `seqs` of `room` that exist, in their current state,
    /// in ascending seq order: the messages replies answer, for a page.
    pub async fn messages_at(
        &self,
        room: RoomId,
        seqs: &[Seq],
    ) -> Result<Vec<Message>, StorageError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = seqs.iter().map(|seq| seq.get()).collect();
        let rows: Vec<MessageRow> = with_conn!(self, |conn| {
            messages::table
                .inner_join(users::table)
                .filter(messages::room_id.eq(room.get()))
                .filter(messages::seq.eq_any(&wanted))
                .order(messages::seq)
                .select(MESSAGE_COLUMNS)
                .load(conn)
                .await?
        });
        rows.into_iter().map(|row| self.open(row)).collect()
    }

    /// The names of `users` that still exist, for showing who deleted a
    /// message.
    pub async fn names_of(
        &self,
        ids: &[UserId],
    ) -> Result<Vec<(UserId, chat_domain::Username)>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<i64> = ids.iter().map(|id| id.get()).collect();
        let rows: Vec<(i64, String)> = with_conn!(self, |conn| {
            users::table
                .filter(users::id.eq_any(&raw))
                .select((users::id, users::username))
                .load(conn)
                .await?
        });
        rows.into_iter()
            .map(|(id, name)| Ok((UserId(id), crate::rows::username(name)?)))
            .collect()
    }
}
