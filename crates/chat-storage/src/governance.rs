//! Rooms people govern: where a user stands in a room, membership changes
//! recorded in the room's sequence, bans, topics, visibility and deletion.
//!
//! Every membership change is one transaction that locks the room's counter
//! row (as a batch of messages does), reads where the actor and the target
//! stand, asks `chat_domain::authorize`, applies the change and stores it
//! as the room's next seq. Because the batch write path takes the same lock
//! before it checks its authors, no message can slip in between a removal
//! and its record.

use chat_domain::{
    Action, MemberChange, Refusal, Role, RoomId, RoomKind, UserId, Username, Visibility,
    authorize_in,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::model::{
    Actor, Ban, Member, MemberEvent, Membership, MembershipOp, Message, Room, RoomAccess,
};
use crate::room_counters::LockRoomCounters;
use crate::rows::{RoomRow, now, role, seq, username, utc};
use crate::schema::{messages, room_bans, room_members, rooms, users};
use crate::search_index::SearchIndex;
use crate::sequence::{Recorded, SequenceItem};
use crate::{StorageError, Store};

/// The stored body of a membership change: who made it and why, encrypted
/// like every body. The actor's name cannot hold a line break, so the first
/// line is the name (empty for the operator) and the rest the reason.
fn event_body(by: Option<&Username>, reason: Option<&str>) -> String {
    format!(
        "{}\n{}",
        by.map_or("", Username::as_str),
        reason.unwrap_or("")
    )
}

/// The inverse of [`event_body`], on a decrypted body (`None`: it could
/// not be decrypted, and the event shows neither).
pub(crate) fn open_event_body(body: Option<&str>) -> (Option<Username>, Option<String>) {
    let Some(body) = body else {
        return (None, None);
    };
    let (by, reason) = body.split_once('\n').unwrap_or((body, ""));
    (
        Username::parse(by).ok(),
        (!reason.is_empty()).then(|| reason.to_owned()),
    )
}

fn stored(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

/// Where the actor and the target stand, read in the change's transaction.
struct Standing {
    room: Room,
    actor_role: Option<Role>,
    target: Option<(Role, Option<NaiveDateTime>)>,
    ban: Option<Option<NaiveDateTime>>,
}

/// What a change writes, once allowed.
struct Planned {
    change: MemberChange,
    role: Option<Role>,
    until: Option<NaiveDateTime>,
    reason: Option<String>,
}

impl Store {
    /// A room by name with where `user` stands in it, in one query: their
    /// membership and whether a ban holds. `None` when no such room exists.
    pub async fn room_access(
        &self,
        name: &chat_domain::RoomName,
        user: UserId,
    ) -> Result<Option<RoomAccess>, StorageError> {
        type Row = (
            RoomRow,
            Option<(NaiveDateTime, i64, String, Option<NaiveDateTime>)>,
            Option<NaiveDateTime>,
            Option<NaiveDateTime>,
        );
        let row: Option<Row> = with_conn!(self, |conn| {
            rooms::table
                .left_join(
                    room_members::table.on(room_members::room_id
                        .eq(rooms::id)
                        .and(room_members::user_id.eq(user.get()))),
                )
                .left_join(
                    room_bans::table.on(room_bans::room_id
                        .eq(rooms::id)
                        .and(room_bans::user_id.eq(user.get()))),
                )
                .filter(rooms::name.eq(name.as_str()))
                .select((
                    RoomRow::as_select(),
                    (
                        room_members::joined_at,
                        room_members::last_read_seq,
                        room_members::role,
                        room_members::muted_until,
                    )
                        .nullable(),
                    room_bans::created_at.nullable(),
                    room_bans::until.nullable(),
                ))
                .first(conn)
                .await
                .optional()?
        });
        let Some((room, member, banned_at, ban_until)) = row else {
            return Ok(None);
        };
        let room = Room::try_from(room)?;
        let membership = member
            .map(|(joined_at, last_read, member_role, muted_until)| {
                Ok::<_, StorageError>(Membership {
                    room: room.clone(),
                    joined_at: utc(joined_at),
                    last_read: seq(last_read, "room_members.last_read_seq")?,
                    role: role(&member_role)?,
                    muted_until: muted_until.map(utc),
                })
            })
            .transpose()?;
        let at = now();
        let banned = banned_at
            .is_some()
            .then_some(ban_until)
            .filter(|until| until.is_none_or(|until| until > at))
            .map(|until| until.map(utc));
        Ok(Some(RoomAccess {
            room,
            membership,
            banned,
        }))
    }

    /// Makes a membership change and records it as the room's next seq;
    /// returns the recorded event, or `None` when nothing changed (joining
    /// a room one is in, leaving one one is not in).
    ///
    /// `target` is the member the change concerns (the actor themselves for
    /// [`MembershipOp::Join`] and [`MembershipOp::Leave`]). Fails with
    /// [`StorageError::Refused`] when the room's rules forbid it (nothing is
    /// written then) and [`StorageError::NotFound`] when the room does not
    /// exist.
    pub async fn change_membership(
        &self,
        room: RoomId,
        actor: &Actor,
        target: UserId,
        op: &MembershipOp,
    ) -> Result<Option<Message>, StorageError> {
        let by = match actor {
            Actor::User { username, .. } => Some(username.clone()),
            Actor::Operator => None,
        };
        let reason = match op {
            MembershipOp::Kick { reason } | MembershipOp::Ban { reason, .. } => reason.clone(),
            _ => None,
        };
        // Encryption needs no lock: done before the transaction.
        let sealed = self
            .inner
            .keys
            .encrypt(&event_body(by.as_ref(), reason.as_deref()));
        let sealed_reason = self.inner.keys.encrypt(reason.as_deref().unwrap_or(""));
        let at = now();
        let stored_event = write_transaction!(self, |conn| {
            let Some((_, last_seq)) = conn
                .lock_room_counters(&[room.get()])
                .await?
                .into_iter()
                .next()
            else {
                return Err(StorageError::NotFound(format!("room {room}")));
            };
            let room_row: RoomRow = rooms::table
                .find(room.get())
                .select(RoomRow::as_select())
                .first(conn)
                .await?;
            let room_value = Room::try_from(room_row)?;
            let member_of = |user: UserId| {
                room_members::table
                    .find((room.get(), user.get()))
                    .select((room_members::role, room_members::muted_until))
            };
            let actor_role = match actor {
                Actor::User { id, .. } => member_of(*id)
                    .first::<(String, Option<NaiveDateTime>)>(conn)
                    .await
                    .optional()?
                    .map(|(r, _)| role(&r))
                    .transpose()?,
                Actor::Operator => None,
            };
            let target_standing = member_of(target)
                .first::<(String, Option<NaiveDateTime>)>(conn)
                .await
                .optional()?
                .map(|(r, muted)| Ok::<_, StorageError>((role(&r)?, muted)))
                .transpose()?;
            let ban: Option<Option<NaiveDateTime>> = room_bans::table
                .find((room.get(), target.get()))
                .select(room_bans::until)
                .first(conn)
                .await
                .optional()?;
            let standing = Standing {
                room: room_value,
                actor_role,
                target: target_standing,
                ban,
            };
            let Some(planned) = plan(actor, op, &standing, at)? else {
                return Ok(None);
            };

            // The membership rows.
            let member = room_members::table
                .filter(room_members::room_id.eq(room.get()))
                .filter(room_members::user_id.eq(target.get()));
            match planned.change {
                MemberChange::Joined | MemberChange::Added => {
                    diesel::insert_into(room_members::table)
                        .values((
                            room_members::room_id.eq(room.get()),
                            room_members::user_id.eq(target.get()),
                            room_members::joined_at.eq(at),
                            room_members::role.eq(planned.role.unwrap_or(Role::Member).as_str()),
                        ))
                        .execute(conn)
                        .await?;
                }
                MemberChange::Left | MemberChange::Kicked => {
                    diesel::delete(member).execute(conn).await?;
                }
                MemberChange::Banned => {
                    diesel::delete(member).execute(conn).await?;
                    diesel::delete(room_bans::table.find((room.get(), target.get())))
                        .execute(conn)
                        .await?;
                    let banned_by = match actor {
                        Actor::User { id, .. } => Some(id.get()),
                        Actor::Operator => None,
                    };
                    diesel::insert_into(room_bans::table)
                        .values((
                            room_bans::room_id.eq(room.get()),
                            room_bans::user_id.eq(target.get()),
                            room_bans::banned_by.eq(banned_by),
                            room_bans::reason.eq(&sealed_reason.token),
                            room_bans::key_id.eq(sealed_reason.key_id.as_str()),
                            room_bans::created_at.eq(at),
                            room_bans::until.eq(planned.until),
                        ))
                        .execute(conn)
                        .await?;
                }
                MemberChange::Unbanned => {
                    diesel::delete(room_bans::table.find((room.get(), target.get())))
                        .execute(conn)
                        .await?;
                }
                MemberChange::Muted | MemberChange::Unmuted => {
                    diesel::update(member)
                        .set(room_members::muted_until.eq(planned.until))
                        .execute(conn)
                        .await?;
                }
                MemberChange::Role => {
                    diesel::update(member)
                        .set(room_members::role.eq(planned.role.unwrap_or(Role::Member).as_str()))
                        .execute(conn)
                        .await?;
                }
            }
            if planned.role == Some(Role::Owner) {
                // A room has one owner: the operator's new owner replaces
                // any other, who stays on as a moderator.
                diesel::update(
                    room_members::table
                        .filter(room_members::room_id.eq(room.get()))
                        .filter(room_members::user_id.ne(target.get()))
                        .filter(room_members::role.eq(Role::Owner.as_str())),
                )
                .set(room_members::role.eq(Role::Moderator.as_str()))
                .execute(conn)
                .await?;
            }
            let next = last_seq + 1;
            let item = SequenceItem {
                room: room.get(),
                seq: next,
                user_id: target.get(),
                body: &sealed.token,
                key_id: sealed.key_id.as_str(),
                client_id: None,
                created_at: at,
                recorded: Recorded::Member {
                    change: planned.change.as_str(),
                    role: planned.role.map(Role::as_str),
                    until: planned.until,
                },
            };
            let row = record_in_sequence!(conn, &item);
            Ok(Some((row.id, next, row.username, planned)))
        })?;
        let Some((id, next, name, planned)) = stored_event else {
            return Ok(None);
        };
        let event = Message {
            id: chat_domain::MessageId(id),
            room_id: room,
            seq: seq(next, "messages.seq")?,
            user_id: target,
            username: username(name)?,
            content: None,
            client_id: None,
            created_at: utc(at),
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            reply_to: None,
            change: None,
            reactions: 0,
            mls: None,
            event: Some(MemberEvent {
                change: planned.change,
                by,
                role: planned.role,
                until: planned.until.map(utc),
                reason: planned.reason,
            }),
        };
        // Committed: a newest page held in memory grows by it.
        self.inner.recent.extend(std::iter::once(&event));
        Ok(Some(event))
    }

    /// The seq of the first change after `after` that removed `user` from
    /// `room` (a leave, a kick or a ban), if there is one: how far a former
    /// member who resumes may catch up.
    pub async fn removal_after(
        &self,
        room: RoomId,
        user: UserId,
        after: chat_domain::Seq,
    ) -> Result<Option<chat_domain::Seq>, StorageError> {
        let removals = [
            MemberChange::Left.as_str(),
            MemberChange::Kicked.as_str(),
            MemberChange::Banned.as_str(),
        ];
        let found: Option<i64> = with_conn!(self, |conn| {
            messages::table
                .filter(messages::room_id.eq(room.get()))
                .filter(messages::seq.gt(after.get()))
                .filter(messages::user_id.eq(user.get()))
                .filter(messages::event.eq_any(removals))
                .order(messages::seq.asc())
                .select(messages::seq)
                .first(conn)
                .await
                .optional()?
        });
        found.map(|value| seq(value, "messages.seq")).transpose()
    }

    /// The owner of `room` (`None` when nobody owns it) and how many members
    /// it has.
    pub async fn room_summary(
        &self,
        room: RoomId,
    ) -> Result<(Option<Username>, i64), StorageError> {
        let (owner, count): (Option<String>, i64) = with_conn!(self, |conn| {
            let owner: Option<String> = room_members::table
                .inner_join(users::table)
                .filter(room_members::room_id.eq(room.get()))
                .filter(room_members::role.eq(Role::Owner.as_str()))
                .select(users::username)
                .first(conn)
                .await
                .optional()?;
            let count: i64 = room_members::table
                .filter(room_members::room_id.eq(room.get()))
                .count()
                .get_result(conn)
                .await?;
            (owner, count)
        });
        Ok((owner.map(username).transpose()?, count))
    }

    /// The members of `room` with their roles, by name.
    pub async fn room_members(&self, room: RoomId) -> Result<Vec<Member>, StorageError> {
        type Row = (
            i64,
            String,
            String,
            NaiveDateTime,
            Option<NaiveDateTime>,
            i64,
        );
        let rows: Vec<Row> = with_conn!(self, |conn| {
            room_members::table
                .inner_join(users::table)
                .filter(room_members::room_id.eq(room.get()))
                .order(users::username.asc())
                .select((
                    users::id,
                    users::username,
                    room_members::role,
                    room_members::joined_at,
                    room_members::muted_until,
                    room_members::last_read_seq,
                ))
                .load(conn)
                .await?
        });
        rows.into_iter()
            .map(
                |(id, name, member_role, joined_at, muted_until, last_read)| {
                    Ok(Member {
                        user_id: UserId(id),
                        username: username(name)?,
                        role: role(&member_role)?,
                        joined_at: utc(joined_at),
                        muted_until: muted_until.map(utc),
                        last_read: seq(last_read, "room_members.last_read_seq")?,
                    })
                },
            )
            .collect()
    }

    /// The bans of `room` that still hold, by name.
    pub async fn room_bans(&self, room: RoomId) -> Result<Vec<Ban>, StorageError> {
        type Row = (
            String,
            Option<i64>,
            String,
            String,
            NaiveDateTime,
            Option<NaiveDateTime>,
        );
        let (rows, authors): (Vec<Row>, Vec<(i64, String)>) = with_conn!(self, |conn| {
            let rows: Vec<Row> = room_bans::table
                .inner_join(users::table.on(users::id.eq(room_bans::user_id)))
                .filter(room_bans::room_id.eq(room.get()))
                .order(users::username.asc())
                .select((
                    users::username,
                    room_bans::banned_by,
                    room_bans::reason,
                    room_bans::key_id,
                    room_bans::created_at,
                    room_bans::until,
                ))
                .load(conn)
                .await?;
            let ids: Vec<i64> = rows.iter().filter_map(|row| row.1).collect();
            let authors: Vec<(i64, String)> = users::table
                .filter(users::id.eq_any(&ids))
                .select((users::id, users::username))
                .load(conn)
                .await?;
            (rows, authors)
        });
        let authors: std::collections::HashMap<i64, String> = authors.into_iter().collect();
        let at = now();
        rows.into_iter()
            .filter(|row| row.5.is_none_or(|until| until > at))
            .map(|(name, banned_by, reason, key_id, created_at, until)| {
                let banned_by = banned_by.and_then(|id| authors.get(&id).cloned());
                let reason = self
                    .decrypt_body(&reason, key_id)
                    .filter(|text| !text.is_empty());
                Ok(Ban {
                    username: username(name)?,
                    banned_by: banned_by.map(username).transpose()?,
                    reason,
                    created_at: utc(created_at),
                    until: until.map(utc),
                })
            })
            .collect()
    }

    /// Sets a room's topic and visibility (each when given).
    pub async fn update_room(
        &self,
        room: RoomId,
        topic: Option<Option<&str>>,
        visibility: Option<Visibility>,
    ) -> Result<Room, StorageError> {
        let row: RoomRow = with_conn!(self, |conn| {
            let target = rooms::table.find(room.get());
            match (topic, visibility) {
                (Some(topic), Some(visibility)) => {
                    diesel::update(target)
                        .set((
                            rooms::topic.eq(topic),
                            rooms::visibility.eq(visibility.as_str()),
                        ))
                        .returning(RoomRow::as_returning())
                        .get_result(conn)
                        .await?
                }
                (Some(topic), None) => {
                    diesel::update(target)
                        .set(rooms::topic.eq(topic))
                        .returning(RoomRow::as_returning())
                        .get_result(conn)
                        .await?
                }
                (None, Some(visibility)) => {
                    diesel::update(target)
                        .set(rooms::visibility.eq(visibility.as_str()))
                        .returning(RoomRow::as_returning())
                        .get_result(conn)
                        .await?
                }
                (None, None) => target.select(RoomRow::as_select()).first(conn).await?,
            }
        });
        Room::try_from(row)
    }

    /// Deletes a room with its messages, members and bans. Returns whether
    /// it existed. The room is forgotten by this store's caches; other
    /// processes find out on their next look-up.
    pub async fn delete_room(&self, room: RoomId) -> Result<bool, StorageError> {
        let deleted = with_conn!(self, |conn| {
            diesel::delete(rooms::table.find(room.get()))
                .returning(rooms::name)
                .get_result::<String>(conn)
                .await
                .optional()?
        });
        if let Some(name) = &deleted {
            self.forget_room(name);
            // Its messages went with it (cascade); their index, which is
            // not keyed by room first, goes in a statement of its own.
            with_conn!(self, |conn| conn.erase_room_index(room.get()).await?);
        }
        Ok(deleted.is_some())
    }
}

/// Decides what `op` does given where everyone stands, or refuses it.
fn plan(
    actor: &Actor,
    op: &MembershipOp,
    standing: &Standing,
    at: NaiveDateTime,
) -> Result<Option<Planned>, StorageError> {
    let refuse = |refusal: Refusal| Err(StorageError::Refused(refusal));
    let room = &standing.room;
    let target_role = standing.target.as_ref().map(|(r, _)| *r);
    let ban_holds = standing
        .ban
        .is_some_and(|until| until.is_none_or(|until| until > at));
    let check = |action: Action| -> Result<(), StorageError> {
        match actor {
            Actor::Operator => Ok(()),
            Actor::User { .. } => authorize_in(room.kind, action, standing.actor_role, target_role)
                .map_err(StorageError::Refused),
        }
    };
    let planned = |change, role, until, reason| {
        Ok(Some(Planned {
            change,
            role,
            until,
            reason,
        }))
    };
    match op {
        MembershipOp::Join => {
            if standing.target.is_some() {
                return Ok(None);
            }
            if ban_holds {
                return refuse(Refusal::Banned {
                    until: standing.ban.flatten().map(utc),
                });
            }
            if room.kind == RoomKind::Direct || room.visibility == Visibility::Private {
                // To a non-member a private room does not exist.
                return refuse(Refusal::RoomNotFound);
            }
            planned(MemberChange::Joined, None, None, None)
        }
        MembershipOp::Leave => {
            if standing.target.is_none() {
                return Ok(None);
            }
            planned(MemberChange::Left, None, None, None)
        }
        MembershipOp::Add { role: new_role } => {
            check(Action::Add)?;
            if *new_role != Role::Member {
                // Who may give the role, as if the newcomer were a member.
                match actor {
                    Actor::Operator => {}
                    Actor::User { .. } => authorize_in(
                        room.kind,
                        Action::SetRole(*new_role),
                        standing.actor_role,
                        Some(Role::Member),
                    )
                    .map_err(StorageError::Refused)?,
                }
            }
            if standing.target.is_some() {
                return refuse(Refusal::Conflict("the user is already a member"));
            }
            if ban_holds {
                return refuse(Refusal::Conflict("the user is banned; unban them first"));
            }
            planned(MemberChange::Added, Some(*new_role), None, None)
        }
        MembershipOp::Kick { reason } => {
            check(Action::Kick)?;
            if standing.target.is_none() {
                return refuse(Refusal::Conflict("the user is not a member of this room"));
            }
            planned(MemberChange::Kicked, None, None, reason.clone())
        }
        MembershipOp::Ban { reason, until } => {
            check(Action::Ban)?;
            planned(
                MemberChange::Banned,
                None,
                until.map(stored),
                reason.clone(),
            )
        }
        MembershipOp::Unban => {
            check(Action::Unban)?;
            if standing.ban.is_none() {
                return refuse(Refusal::Conflict("the user is not banned"));
            }
            planned(MemberChange::Unbanned, None, None, None)
        }
        MembershipOp::Mute { until } => {
            check(Action::Mute)?;
            if standing.target.is_none() {
                return refuse(Refusal::Conflict("the user is not a member of this room"));
            }
            planned(MemberChange::Muted, None, Some(stored(*until)), None)
        }
        MembershipOp::Unmute => {
            check(Action::Unmute)?;
            match &standing.target {
                None => refuse(Refusal::Conflict("the user is not a member of this room")),
                Some((_, None)) => refuse(Refusal::Conflict("the user is not muted")),
                Some(_) => planned(MemberChange::Unmuted, None, None, None),
            }
        }
        MembershipOp::SetRole(new_role) => {
            check(Action::SetRole(*new_role))?;
            if target_role == Some(*new_role) {
                return Ok(None);
            }
            if standing.target.is_none() {
                // Only the operator gets here (users need a member target):
                // the user is added with the role.
                if ban_holds {
                    return refuse(Refusal::Conflict("the user is banned; unban them first"));
                }
                return planned(MemberChange::Added, Some(*new_role), None, None);
            }
            planned(MemberChange::Role, Some(*new_role), None, None)
        }
    }
}
