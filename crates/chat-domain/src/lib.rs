//! The chat server's plain types and the rules they enforce.
//!
//! Every value that crosses a trust boundary (a name a user picked, a message
//! body, a client-chosen id) is parsed into one of these types first, so the
//! layers above never see an invalid one. The constructors return a typed
//! [`DomainError`] that says what is wrong in words a user can act on.
//!
//! This crate must not know about I/O, serialization formats, HTTP or the
//! database: it is shared by the server, the storage layer and the terminal
//! client alike.

mod error;
mod governance;
mod ids;
mod message;
mod names;
mod password;

pub use error::DomainError;
pub use governance::{
    Action, MAX_REACTION_KINDS, MAX_REASON_CHARS, MAX_TOPIC_CHARS, MemberChange, MessageAction,
    Refusal, Role, Visibility, authorize, authorize_in, authorize_message, ban_holds, mute_holds,
    parse_reason, parse_topic,
};
pub use ids::{MessageId, RoomId, Seq, SessionId, UserId};
pub use message::{ClientId, Emoji, MessageBody};
pub use names::{RoomKind, RoomName, Username};
pub use password::Password;
