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
//!
//! # Using it
//!
//! Parse what a user typed at the edge, then pass the typed value on:
//!
//! ```
//! use chat_domain::{DomainError, MessageBody, RoomKind, RoomName, Username};
//!
//! let alice = Username::parse("Alice")?;
//! let bob = Username::parse("bob")?;
//! // Names keep the case their owner chose; uniqueness ignores it.
//! assert!(alice.same_user(&Username::parse("alice")?));
//!
//! // A direct conversation has one name, whichever member asks.
//! let direct = RoomName::direct(&bob, &alice)?;
//! assert_eq!(direct.as_str(), "dm:alice:bob");
//! assert_eq!(direct.kind(), RoomKind::Direct);
//!
//! let body = MessageBody::parse("hello, bob")?;
//! assert_eq!(body.as_str(), "hello, bob");
//!
//! // A refusal says what is wrong, in words meant for the user.
//! let refused = Username::parse("al").unwrap_err();
//! assert!(matches!(refused, DomainError::UsernameLength { min: 3, max: 50 }));
//! println!("{refused}");
//! # Ok::<(), DomainError>(())
//! ```

pub mod e2e;
mod error;
mod governance;
mod ids;
mod message;
mod names;
mod password;
pub mod search;

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
