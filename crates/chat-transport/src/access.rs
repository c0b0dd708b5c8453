//! The one room-access policy, used by REST routes and WebSocket frames
//! alike: who may see a room, read it, and post in it.
//!
//! A private room (and a direct conversation) is visible to its members
//! only. To anyone else every route answers exactly as for a room that does
//! not exist, so its existence does not leak. A public room is visible to
//! everyone; a user banned from it may see it but not read, join or post.

use chat_domain::{Refusal, Role, RoomKind, RoomName, UserId, Username, Visibility};
use chat_storage::{RoomAccess, RoomKey, StorageError, User};

use crate::error::ApiError;
use crate::state::AppState;

/// A room and where one user stands in it.
#[derive(Debug, Clone)]
pub(crate) struct Access(pub(crate) RoomAccess);

impl Access {
    /// Whether the user may know that the room exists.
    pub(crate) fn visible(&self) -> bool {
        let room = &self.0.room;
        self.0.membership.is_some()
            || (room.kind == RoomKind::Public && room.visibility == Visibility::Public)
    }

    /// Whether the user may read the room's history and members: members
    /// may, and anyone not banned may read a public room.
    pub(crate) fn readable(&self) -> Result<(), Refusal> {
        if self.0.membership.is_some() {
            return Ok(());
        }
        if !self.visible() {
            return Err(Refusal::RoomNotFound);
        }
        match self.0.banned {
            Some(until) => Err(Refusal::Banned { until }),
            None => Ok(()),
        }
    }

    /// Whether the user is a member who may use the room (post, type, ask
    /// who is online).
    pub(crate) fn member(&self) -> Result<(), Refusal> {
        if self.0.membership.is_some() {
            return Ok(());
        }
        if !self.visible() {
            return Err(Refusal::RoomNotFound);
        }
        match self.0.banned {
            Some(until) => Err(Refusal::Banned { until }),
            None => Err(Refusal::NotAMember),
        }
    }

    /// The user's role, when they are a member.
    pub(crate) fn role(&self) -> Option<Role> {
        self.0.membership.as_ref().map(|m| m.role)
    }

    /// The room's identity.
    pub(crate) fn key(&self) -> RoomKey {
        RoomKey::from(&self.0.room)
    }
}

/// The user named `name`, as other users may name them: an account the
/// operator deleted is gone (its row only keeps the name reserved), so
/// nobody opens a conversation with it, adds it to a room or governs it.
pub(crate) async fn user_named(
    state: &AppState,
    name: &Username,
) -> Result<Option<User>, StorageError> {
    Ok(state
        .store
        .user_by_name(name)
        .await?
        .filter(|user| user.deleted_at.is_none()))
}

/// The room `name` as `user` may see it, or [`Refusal::RoomNotFound`] when
/// there is none or they may not know of it.
pub(crate) async fn find(
    state: &AppState,
    name: &RoomName,
    user: UserId,
) -> Result<Result<Access, Refusal>, chat_storage::StorageError> {
    Ok(match state.store.room_access(name, user).await? {
        Some(access) => {
            let access = Access(access);
            if access.visible() {
                Ok(access)
            } else {
                Err(Refusal::RoomNotFound)
            }
        }
        None => {
            // A room deleted by another process may still be known here.
            state.store.forget_room(name.as_str());
            Err(Refusal::RoomNotFound)
        }
    })
}

/// [`find`] for a REST route: a room the caller may not see is 404, worded
/// as for a room that does not exist.
pub(crate) async fn find_for_route(
    state: &AppState,
    name: &RoomName,
    user: UserId,
) -> Result<Access, ApiError> {
    find(state, name, user)
        .await?
        .map_err(|refusal| for_route(name, refusal))
}

/// A refusal as a REST error about room `name`: its status and code as
/// the refusal says, in words that name the room (a room the caller may
/// not see is worded as one that does not exist).
pub(crate) fn for_route(name: &RoomName, refusal: Refusal) -> ApiError {
    let detail = match &refusal {
        Refusal::RoomNotFound => format!("room '{name}' not found"),
        Refusal::Conflict(why) => (*why).to_owned(),
        other => describe(name.as_str(), other),
    };
    ApiError::Refused { refusal, detail }
}

/// Words for a refusal in an `error` frame about room `name`.
pub(crate) fn describe(name: &str, refusal: &Refusal) -> String {
    match refusal {
        Refusal::RoomNotFound => format!("room '{name}' does not exist"),
        Refusal::NotAMember => format!("you are not a member of '{name}'; join it first"),
        Refusal::Banned { until: Some(until) } => format!(
            "you are banned from '{name}' until {}",
            chat_protocol::timestamp::format(until)
        ),
        Refusal::Banned { until: None } => format!("you are banned from '{name}'"),
        Refusal::MessageNotFound => format!("no message of '{name}' has that seq"),
        Refusal::MessageDeleted => format!("that message of '{name}' was deleted"),
        Refusal::Muted { until } => format!(
            "you are muted in '{name}' until {}",
            chat_protocol::timestamp::format(until)
        ),
        other => other.to_string(),
    }
}

/// When a refusal ends, for the `until` of an `error` frame.
pub(crate) fn until_of(refusal: &Refusal) -> Option<chrono::DateTime<chrono::Utc>> {
    match refusal {
        Refusal::Banned { until } => *until,
        Refusal::Muted { until } => Some(*until),
        _ => None,
    }
}
