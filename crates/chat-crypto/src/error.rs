use thiserror::Error;

/// Why a key could not be used or a token could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The key text is neither a Fernet key nor an explicit passphrase. This is
    /// a configuration mistake: the message tells the operator what to give.
    #[error(
        "invalid encryption key: {reason}; give a Fernet key (32 bytes of url-safe base64, \
         for example from `chat-server gen-key`) or prefix a passphrase with `passphrase:`"
    )]
    InvalidKey {
        /// What is wrong with the text given.
        reason: String,
    },
    /// The search key text is not 32 bytes of url-safe base64.
    #[error(
        "invalid search key: {reason}; give 32 bytes of url-safe base64, \
         for example from `chat-server gen-key`"
    )]
    InvalidSearchKey {
        /// What is wrong with the text given.
        reason: String,
    },
    /// No key of the ring opens the token: it was sealed with a key the ring
    /// does not hold, it was altered, or it is not a Fernet token at all.
    #[error(
        "the message cannot be decrypted: it was encrypted with a key the ring does not hold, \
         or it is damaged"
    )]
    Undecryptable,
    /// The token opened, but what it holds is not UTF-8 text.
    #[error("the decrypted message is not valid UTF-8 text")]
    NotUtf8,
}
