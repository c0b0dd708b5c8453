//! What the operator does to accounts and rooms (`chat-server admin`), from
//! a process that serves no sockets, while nodes run.
//!
//! Each action changes the database first, then publishes what a node would
//! publish for it, through the same [`Fanout`] events: the end of a session
//! (as a sign-out publishes it), a membership change recorded in its room's
//! sequence, a room's deletion. The command line publishes them into
//! [`Announcements`], then sends those to every node over Redis
//! ([`Announcements::send`]) when the deployment has one. Nodes that do not
//! hear them (a single node without Redis, or a notice lost) still act on
//! the change: every request checks its session in the database, and every
//! node re-checks the sessions and rooms of its open sockets every
//! `TransportConfig::recheck_interval` (see `recheck.rs`).

use std::sync::Mutex;

use chat_domain::{Role, RoomId, SessionId, UserId};
use chat_storage::{Actor, DeletedUser, MembershipOp, Message, RoomKey, StorageError, Store, User};
use futures_util::future::BoxFuture;

use crate::fanout::{Fanout, FanoutStatus, RoomEvent};
use crate::hub::Notice;
use crate::membership;
use crate::redis_fanout::{BrokerError, Payloads};

/// A [`Fanout`] that delivers nothing: it keeps what is published, for
/// [`Announcements::send`] to hand to the nodes.
#[derive(Debug, Default)]
pub struct Announcements {
    kept: Mutex<Payloads>,
}

impl Announcements {
    /// Nothing published yet.
    pub fn new() -> Announcements {
        Announcements::default()
    }

    /// How many events were published.
    pub fn len(&self) -> usize {
        self.kept().len()
    }

    /// Whether nothing was published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Payloads> {
        // Pushing onto a list leaves it sound even if a holder panicked.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes every kept event on the channel the nodes of `namespace`
    /// listen to on the Redis at `url`, in order, as a node would; returns
    /// how many were sent. Fails when Redis cannot be reached: the changes
    /// are stored all the same, and nodes find them in the database.
    pub async fn send(&self, url: &str, namespace: &str) -> Result<usize, BrokerError> {
        let payloads = std::mem::take(&mut *self.kept());
        payloads.send(url, namespace).await
    }
}

impl Fanout for Announcements {
    fn publish(&self, event: RoomEvent) {
        self.kept().room(&event);
    }

    fn membership(&self, notice: Notice) {
        self.kept().membership(&notice);
    }

    fn end_session(&self, user: UserId, session: SessionId) {
        self.kept().session_ended(user, session);
    }

    fn online(&self, _: RoomId) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    fn online_elsewhere<'a>(&'a self, _: RoomId, _: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    fn status(&self) -> FanoutStatus {
        FanoutStatus::Ok
    }
}

/// Disables `user`: it may not sign in, and every session it has is ended
/// and its sockets closed on every node. Returns whether it was enabled
/// until now, and how many sessions were ended.
pub async fn disable_user(
    store: &Store,
    fanout: &dyn Fanout,
    user: &User,
) -> Result<(bool, usize), StorageError> {
    let (changed, sessions) = store.disable_user(user.id).await?;
    for session in &sessions {
        fanout.end_session(user.id, *session);
    }
    Ok((changed, sessions.len()))
}

/// Ends every session of `user` and closes their sockets on every node;
/// returns how many were open. The user may sign in again.
pub async fn revoke_sessions(
    store: &Store,
    fanout: &dyn Fanout,
    user: &User,
) -> Result<usize, StorageError> {
    let sessions = store.revoke_user_sessions(user.id).await?;
    for session in &sessions {
        fanout.end_session(user.id, *session);
    }
    Ok(sessions.len())
}

/// Deletes `user`'s account (see [`Store::delete_user`]): its sessions end
/// and its sockets close first, then it leaves every room it is in (each a
/// `left` change in the room's sequence, as if it had left itself), then
/// the account is marked deleted, with `erase_messages` its messages'
/// texts erased. Safe to run again after a failure part-way.
pub async fn delete_user(
    store: &Store,
    fanout: &dyn Fanout,
    user: &User,
    erase_messages: bool,
) -> Result<DeletedUser, StorageError> {
    let (_, mut ended) = store.disable_user(user.id).await?;
    for session in &ended {
        fanout.end_session(user.id, *session);
    }
    for membership in store.rooms_for(user.id).await? {
        membership::change_through(
            store,
            fanout,
            &RoomKey::from(&membership.room),
            &Actor::Operator,
            user.id,
            MembershipOp::Leave,
        )
        .await?;
    }
    let mut deleted = store.delete_user(user.id, erase_messages).await?;
    // A sign-in that raced the first step has no usable session (the
    // account is disabled), but its sockets are closed all the same.
    for session in &deleted.sessions {
        fanout.end_session(user.id, *session);
    }
    ended.append(&mut deleted.sessions);
    deleted.sessions = ended;
    Ok(deleted)
}

/// Deletes `room` with everything in it; every socket receiving it, on
/// every node, gets `left` with reason `room_deleted`. `general` is
/// refused.
pub async fn delete_room(
    store: &Store,
    fanout: &dyn Fanout,
    room: &RoomKey,
) -> Result<bool, StorageError> {
    membership::delete_room_through(store, fanout, room).await
}

/// Gives `user` `role` in `room`, as the operator: a new owner replaces the
/// previous one, who stays on as a moderator; a user who is not a member
/// is added with the role. Returns the recorded change, `None` when the
/// user already had the role.
pub async fn set_role(
    store: &Store,
    fanout: &dyn Fanout,
    room: &RoomKey,
    user: &User,
    role: Role,
) -> Result<Option<Message>, StorageError> {
    membership::change_through(
        store,
        fanout,
        room,
        &Actor::Operator,
        user.id,
        MembershipOp::SetRole(role),
    )
    .await
}
