use thiserror::Error;

/// Why a value was rejected. The messages are written for the person who
/// typed the value, and transports show them as they are.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("username must be between {min} and {max} characters")]
    UsernameLength { min: usize, max: usize },
    #[error("username may contain only ASCII letters, digits, '_' and '-'")]
    UsernameCharacters,
    #[error("password must be at least {min} characters")]
    PasswordTooShort { min: usize },
    #[error("password must be at most {max_bytes} bytes (bcrypt ignores anything longer)")]
    PasswordTooLong { max_bytes: usize },
    #[error("room name must be between {min} and {max} characters")]
    RoomNameLength { min: usize, max: usize },
    #[error("room name may contain only ASCII letters, digits, '_' and '-'")]
    RoomNameCharacters,
    #[error("a direct conversation is between two different users")]
    DirectRoomWithSelf,
    #[error("message must not be empty")]
    MessageBlank,
    #[error("message must be at most {max} characters")]
    MessageTooLong { max: usize },
    #[error("client_id must be 1 to {max} printable ASCII characters without spaces")]
    ClientIdInvalid { max: usize },
    #[error("sequence numbers start at 0")]
    NegativeSeq,
    #[error("a session id is 32 lowercase hex digits")]
    SessionIdInvalid,
    #[error("topic must be at most {max} characters")]
    TopicTooLong { max: usize },
    #[error("topic must be one line without control characters")]
    TopicCharacters,
    #[error("reason must be at most {max} characters")]
    ReasonTooLong { max: usize },
    #[error(
        "a reaction is 1 to {max_graphemes} characters (emoji count as one) without spaces or control characters"
    )]
    EmojiInvalid { max_graphemes: usize },
    #[error("a search needs at least one word")]
    SearchEmpty,
    #[error("a search is at most {max} characters")]
    SearchTooLong { max: usize },
    #[error("a search has at most {max} words")]
    SearchTooManyWords { max: usize },
    #[error("a word ending in '*' needs at least {min} letters before it")]
    SearchPrefixTooShort { min: usize },
    #[error("device_id must be 1 to {max} ASCII letters, digits, '-', '_' or '.'")]
    DeviceIdInvalid { max: usize },
}
