use std::fmt;

use serde::{Deserialize, Serialize};

use chat_domain::DomainError;

/// Why the server refused a frame, as the `code` of an `error` frame.
///
/// The codes are stable: clients match on them, and the text beside them
/// may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a JSON object.
    InvalidJson,
    /// The frame's `type` was missing or not one the server knows.
    UnknownType,
    /// A known frame type with missing or ill-typed fields, or a value the
    /// rules reject (a negative `last_seq`, for instance).
    InvalidFrame,
    /// The message was empty or only white space; it was not stored.
    BlankMessage,
    /// The message was longer than the server allows; it was not stored.
    MessageTooLong,
    /// The `client_id` was not 1 to 64 printable ASCII characters.
    InvalidClientId,
    /// The room name is not a valid room name.
    InvalidRoom,
    /// No room of that name exists.
    RoomNotFound,
    /// The user is not a member of the room (and may not become one).
    NotAMember,
    /// The user's role in the room does not allow it.
    Forbidden,
    /// The user is banned from the room; the error's `until` says until
    /// when (absent: for good).
    Banned,
    /// The user is muted in the room and may not post until the error's
    /// `until`.
    Muted,
    /// The user sent too much too fast; the frame was dropped.
    RateLimited,
    /// The token of an `auth` frame is not valid, has expired, or belongs
    /// to another user or session. The connection keeps its current token.
    InvalidToken,
    /// Storage is down: the message was not stored, send it again later.
    Unavailable,
    /// Something went wrong on the server.
    Internal,
    /// No message has that seq in the room (or, to take back a reaction,
    /// the user has not made it).
    NotFound,
    /// The message was deleted; it can no longer be changed.
    Deleted,
    /// A change to a message, a reply or a read mark named a seq that
    /// cannot be one (below 1 for a message, negative for a read mark), a
    /// reaction is not a short visible string, the message has as many
    /// kinds of reaction as it may, or a search is empty, too long or has
    /// a prefix too short.
    Invalid,
    /// The room is end-to-end encrypted: a plaintext message or edit is
    /// refused there (clients send MLS ciphertext).
    EncryptionRequired,
    /// An MLS commit was built on an epoch the room's group has already
    /// left: another commit was accepted first. Process that one and build
    /// the change again on the new epoch.
    StaleEpoch,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidFrame,
        ErrorCode::BlankMessage,
        ErrorCode::MessageTooLong,
        ErrorCode::InvalidClientId,
        ErrorCode::InvalidRoom,
        ErrorCode::RoomNotFound,
        ErrorCode::NotAMember,
        ErrorCode::Forbidden,
        ErrorCode::Banned,
        ErrorCode::Muted,
        ErrorCode::RateLimited,
        ErrorCode::InvalidToken,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::NotFound,
        ErrorCode::Deleted,
        ErrorCode::Invalid,
        ErrorCode::EncryptionRequired,
        ErrorCode::StaleEpoch,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidFrame => "invalid_frame",
            ErrorCode::BlankMessage => "blank_message",
            ErrorCode::MessageTooLong => "message_too_long",
            ErrorCode::InvalidClientId => "invalid_client_id",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Banned => "banned",
            ErrorCode::Muted => "muted",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Deleted => "deleted",
            ErrorCode::Invalid => "invalid",
            ErrorCode::EncryptionRequired => "encryption_required",
            ErrorCode::StaleEpoch => "stale_epoch",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&DomainError> for ErrorCode {
    fn from(error: &DomainError) -> ErrorCode {
        // No wildcard arm: a new domain rule must choose its code here.
        match error {
            DomainError::MessageBlank => ErrorCode::BlankMessage,
            DomainError::MessageTooLong { .. } => ErrorCode::MessageTooLong,
            DomainError::ClientIdInvalid { .. } => ErrorCode::InvalidClientId,
            DomainError::RoomNameLength { .. }
            | DomainError::RoomNameCharacters
            | DomainError::DirectRoomWithSelf => ErrorCode::InvalidRoom,
            DomainError::UsernameLength { .. }
            | DomainError::UsernameCharacters
            | DomainError::PasswordTooShort { .. }
            | DomainError::PasswordTooLong { .. }
            | DomainError::NegativeSeq
            | DomainError::TopicTooLong { .. }
            | DomainError::TopicCharacters
            | DomainError::ReasonTooLong { .. } => ErrorCode::InvalidFrame,
            DomainError::EmojiInvalid { .. }
            | DomainError::SearchEmpty
            | DomainError::SearchTooLong { .. }
            | DomainError::SearchTooManyWords { .. }
            | DomainError::SearchPrefixTooShort { .. }
            | DomainError::DeviceIdInvalid { .. } => ErrorCode::Invalid,
            DomainError::SessionIdInvalid => ErrorCode::InvalidToken,
        }
    }
}

impl From<&chat_domain::Refusal> for ErrorCode {
    fn from(refusal: &chat_domain::Refusal) -> ErrorCode {
        use chat_domain::Refusal;
        match refusal {
            Refusal::RoomNotFound => ErrorCode::RoomNotFound,
            Refusal::NotAMember => ErrorCode::NotAMember,
            Refusal::Banned { .. } => ErrorCode::Banned,
            Refusal::Muted { .. } => ErrorCode::Muted,
            Refusal::Forbidden(_) => ErrorCode::Forbidden,
            Refusal::Conflict(_) => ErrorCode::InvalidFrame,
            Refusal::MessageNotFound => ErrorCode::NotFound,
            Refusal::MessageDeleted => ErrorCode::Deleted,
            Refusal::ReactionNotFound => ErrorCode::NotFound,
            Refusal::TooManyReactions { .. } => ErrorCode::Invalid,
            Refusal::EncryptionRequired => ErrorCode::EncryptionRequired,
            Refusal::StaleEpoch { .. } => ErrorCode::StaleEpoch,
        }
    }
}

impl From<DomainError> for ErrorCode {
    fn from(error: DomainError) -> ErrorCode {
        ErrorCode::from(&error)
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{ClientId, MessageBody, RoomName, Seq, Username};

    use super::*;

    #[test]
    fn every_code_serializes_as_its_as_str_form() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
            let back: ErrorCode = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, code);
        }
    }

    #[test]
    fn the_codes_are_the_documented_stable_strings() {
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "invalid_json",
                "unknown_type",
                "invalid_frame",
                "blank_message",
                "message_too_long",
                "invalid_client_id",
                "invalid_room",
                "room_not_found",
                "not_a_member",
                "forbidden",
                "banned",
                "muted",
                "rate_limited",
                "invalid_token",
                "unavailable",
                "internal",
                "not_found",
                "deleted",
                "invalid",
                "encryption_required",
                "stale_epoch",
            ]
        );
    }

    #[test]
    fn domain_errors_map_to_the_codes_a_client_can_act_on() {
        let code = |result: Result<(), DomainError>| ErrorCode::from(result.expect_err("invalid"));
        assert_eq!(
            code(MessageBody::parse("  ").map(drop)),
            ErrorCode::BlankMessage
        );
        assert_eq!(
            code(MessageBody::parse_with_limit("hello", 2).map(drop)),
            ErrorCode::MessageTooLong
        );
        assert_eq!(
            code(ClientId::parse("has space").map(drop)),
            ErrorCode::InvalidClientId
        );
        assert_eq!(
            code(RoomName::public("no spaces").map(drop)),
            ErrorCode::InvalidRoom
        );
        assert_eq!(code(RoomName::public("").map(drop)), ErrorCode::InvalidRoom);
        let alice = Username::parse("alice").expect("valid");
        assert_eq!(
            code(RoomName::direct(&alice, &alice).map(drop)),
            ErrorCode::InvalidRoom
        );
        assert_eq!(code(Seq::new(-1).map(drop)), ErrorCode::InvalidFrame);
        assert_eq!(
            code(Username::parse("x").map(drop)),
            ErrorCode::InvalidFrame
        );
    }
}
