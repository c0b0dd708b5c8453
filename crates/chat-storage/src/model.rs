//! The values the store hands out and takes in, in domain terms.

use std::fmt;

use chat_domain::{
    ClientId, MessageBody, MessageId, RoomId, RoomKind, RoomName, Seq, SessionId, UserId, Username,
};
use chrono::{DateTime, Utc};

/// A registered user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    /// As the user typed it; unique ignoring case.
    pub username: Username,
    /// The bcrypt hash. Never printed by `Debug`.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &format_args!("<redacted>"))
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A public room or a direct conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: RoomId,
    pub name: RoomName,
    pub kind: RoomKind,
    /// `None` for `general`, which the first migration creates.
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    /// The seq of the newest message; [`Seq::ZERO`] while the room is empty.
    pub last_seq: Seq,
}

/// A room a user belongs to, with that user's reading position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub room: Room,
    pub joined_at: DateTime<Utc>,
    /// The newest seq the user has read.
    pub last_read: Seq,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub room_id: RoomId,
    pub user_id: UserId,
    /// The author's name, echoed back in the result; not stored (the
    /// message refers to the user by id).
    pub username: Username,
    pub body: MessageBody,
    /// The sender's id for this message, which makes a resend idempotent.
    pub client_id: Option<ClientId>,
}

/// A stored message, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub room_id: RoomId,
    /// Position in the room: 1, 2, 3... without gaps, in commit order.
    pub seq: Seq,
    pub user_id: UserId,
    pub username: Username,
    /// The plaintext, or `None` when no key of the ring can decrypt it.
    pub content: Option<String>,
    pub client_id: Option<ClientId>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The outcome of storing one [`NewMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message: the new one, or for a duplicate the original.
    pub message: Message,
    /// The same user had already sent this client id: nothing new was stored.
    pub duplicate: bool,
}

/// Where a history page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// The newest messages.
    Latest,
    /// The newest messages with a seq below this one (scrolling back).
    Before(Seq),
    /// The oldest messages with a seq above this one (catching up).
    After(Seq),
}

/// One page of a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// In ascending seq order, whichever way the cursor points.
    pub messages: Vec<Message>,
    /// More messages exist beyond this page in the cursor's direction:
    /// older ones for `Latest` and `Before`, newer ones for `After`.
    pub has_more: bool,
}

/// What became of a refresh token presented to
/// [`crate::Store::rotate_refresh_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// It was valid and unused. It is used now, and the next token is
    /// stored in its place; issue the user a new access token for
    /// `session`.
    Rotated { user: User, session: SessionId },
    /// It had been exchanged before, so someone holds a copy: its session
    /// is now revoked, and its open connections should be closed.
    Reused { user_id: UserId, session: SessionId },
    /// No such token, or its session is revoked or expired.
    Refused,
}
