//! The values the store hands out and takes in, in domain terms.

use std::fmt;

use chat_domain::{
    ClientId, Emoji, MemberChange, MessageBody, MessageId, Role, RoomId, RoomKind, RoomName, Seq,
    SessionId, UserId, Username, Visibility,
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
    /// Set by the operator (`chat-server admin user disable`): the account
    /// may not sign in and has no open session.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Set by the operator (`chat-server admin user delete`): the account is
    /// gone; the row only keeps its name reserved and its messages' author.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &format_args!("<redacted>"))
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .field("deleted_at", &self.deleted_at)
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
    /// Listed and open to all, or seen by its members only. Direct
    /// conversations are private.
    pub visibility: Visibility,
    pub topic: Option<String>,
    /// End-to-end encrypted (MLS): set at creation, never changed. Its
    /// messages are ciphertext the server cannot read; plaintext is
    /// refused, and search skips it.
    pub encrypted: bool,
}

/// A room a user belongs to, with that user's reading position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub room: Room,
    pub joined_at: DateTime<Utc>,
    /// The newest seq the user has read.
    pub last_read: Seq,
    pub role: Role,
    /// While in the future, the member may read but not post.
    pub muted_until: Option<DateTime<Utc>>,
}

/// A room and where one user stands in it, read in one query: everything
/// a decision about that user and that room needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomAccess {
    pub room: Room,
    /// The user's membership, when they are a member.
    pub membership: Option<Membership>,
    /// `Some(until)` while a ban holds (`until` is `None` for good).
    pub banned: Option<Option<DateTime<Utc>>>,
}

/// What the session check of a history page reads about the room, in the
/// same query (see [`crate::Store::user_for_session_reading`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomReading {
    /// Whether the room exists.
    pub exists: bool,
    /// Its newest seq; 0 when it is empty or does not exist.
    pub last_seq: i64,
    /// Whether it is a public room open to all (not private, not direct).
    pub listed: bool,
    /// Whether the user is a member.
    pub member: bool,
    /// Whether a ban of the user holds there.
    pub banned: bool,
}

/// A member of a room, as the member list shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub username: Username,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub muted_until: Option<DateTime<Utc>>,
    pub last_read: Seq,
}

/// A ban, as the ban list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub username: Username,
    pub banned_by: Option<Username>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// `None`: for good.
    pub until: Option<DateTime<Utc>>,
}

/// Who asks for a membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A user, whose role in the room decides what they may do.
    User { id: UserId, username: Username },
    /// The operator, through the command line: every change is allowed.
    Operator,
}

/// A membership change to make; see [`crate::Store::change_membership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipOp {
    /// The actor joins a public room.
    Join,
    /// The actor leaves.
    Leave,
    /// The target is added (to a private room, typically), as `role`.
    Add { role: Role },
    /// The target is removed; they may come back to a public room.
    Kick { reason: Option<String> },
    /// The target is removed and may not come back until `until`.
    Ban {
        reason: Option<String>,
        until: Option<DateTime<Utc>>,
    },
    /// The target's ban is lifted.
    Unban,
    /// The target may read but not post until `until`.
    Mute { until: DateTime<Utc> },
    /// The target may post again.
    Unmute,
    /// The target gets a new role.
    SetRole(Role),
}

/// A membership change as it is recorded in the room's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEvent {
    pub change: MemberChange,
    /// Who made it: the member themselves for joins and leaves, `None` for
    /// the operator.
    pub by: Option<Username>,
    /// The member's role after a role change or an addition.
    pub role: Option<Role>,
    /// When a mute or a ban ends.
    pub until: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// A change to an earlier message, as recorded in the room's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageChange {
    /// The message at `target` got the text of this change's `content`.
    Edited { target: Seq },
    /// The message at `target` was deleted.
    Deleted { target: Seq },
    /// The change's author reacted to the message at `target` with the
    /// change's `content`.
    Reacted { target: Seq },
    /// The change's author took back their reaction (the change's
    /// `content`) to the message at `target`.
    Unreacted { target: Seq },
}

impl MessageChange {
    /// The seq of the message changed.
    pub fn target(self) -> Seq {
        match self {
            MessageChange::Edited { target }
            | MessageChange::Deleted { target }
            | MessageChange::Reacted { target }
            | MessageChange::Unreacted { target } => target,
        }
    }
}

/// A change to make to a stored message; see
/// [`crate::Store::change_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOp {
    /// The author replaces the text.
    Edit { content: MessageBody },
    /// The author, or the room's owner or a moderator, deletes it.
    Delete,
    /// A member reacts to it.
    React { emoji: Emoji },
    /// A member takes back their reaction.
    Unreact { emoji: Emoji },
}

/// A change to a stored message, asked for by `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChange {
    pub room_id: RoomId,
    /// The message to change.
    pub target: Seq,
    pub user_id: UserId,
    /// The actor's name, echoed back in the result.
    pub username: Username,
    pub op: MessageOp,
    /// Makes a resend of the change idempotent, as for messages.
    pub client_id: Option<ClientId>,
}

/// What [`crate::Store::change_message`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The change, at its own seq in the room (for a resend, the original).
    pub change: Message,
    /// The same client id had already been used: nothing new was stored.
    pub duplicate: bool,
}

/// One kind of reaction to a message, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    /// How many members reacted so.
    pub count: i64,
    /// Whether the member who asked is among them.
    pub me: bool,
}

/// A text a message had before an edit replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The text, or `None` when no key of the ring can decrypt it.
    pub content: Option<String>,
    /// When it was written (sent, or edited to this text).
    pub written_at: DateTime<Utc>,
    /// The seq of the edit that replaced it.
    pub replaced_by: Seq,
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
    /// The seq of the message of the same room this one answers; the
    /// caller has checked that it is a message of the room.
    pub reply_to: Option<Seq>,
    /// The body is the base64 of an MLS application message (ciphertext
    /// of an end-to-end encrypted room, checked by the caller): stored as
    /// it is, and never indexed for search.
    pub mls: bool,
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
    /// When the text was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// When the message was deleted: it is a tombstone then, without
    /// content.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Who deleted it, if it is deleted (and the account still exists).
    pub deleted_by: Option<UserId>,
    /// The seq of the message of the same room this one answers.
    pub reply_to: Option<Seq>,
    /// For a change to an earlier message recorded in the room's sequence
    /// (an edit or a deletion), what it was; its `user_id` and `username`
    /// are who made it, and an edit's `content` is the new text. `None` for
    /// a message.
    pub change: Option<MessageChange>,
    /// For a membership change recorded in the room's sequence, what it
    /// was; its `user_id` and `username` are the member it concerns and
    /// `content` is `None`. `None` for a message.
    pub event: Option<MemberEvent>,
    /// How many reactions it has now, every kind and member together
    /// ([`crate::Store::reactions`] tells which).
    pub reactions: i64,
    /// In an end-to-end encrypted room, what MLS message `content` holds
    /// (its base64); `None` for plaintext.
    pub mls: Option<chat_domain::e2e::MlsKind>,
}

/// The outcome of storing one [`NewMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message: the new one, or for a duplicate the original.
    pub message: Message,
    /// The same user had already sent this client id: nothing new was stored.
    pub duplicate: bool,
}

/// What became of one [`NewMessage`] of a batch: stored, or refused because
/// its author may not post in its room (not a member, or muted).
pub type AppendResult = Result<Appended, chat_domain::Refusal>;

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
