use thiserror::Error;

/// What went wrong while hashing, verifying or issuing.
///
/// [`AuthError::InvalidToken`] and [`AuthError::ExpiredToken`] are the
/// client's fault and both mean "log in again". The cost, secret and TTL
/// variants are start-up mistakes in the configuration. The rest are faults
/// of the server.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The configured bcrypt cost is too cheap to slow down password guessing.
    #[error("bcrypt cost {cost} is too low: use at least {min} (the default is 12)")]
    CostTooLow {
        /// The cost given.
        cost: u32,
        /// The lowest cost accepted.
        min: u32,
    },
    /// The configured bcrypt cost is beyond what bcrypt supports.
    #[error("bcrypt cost {cost} is too high: bcrypt supports at most {max}")]
    CostTooHigh {
        /// The cost given.
        cost: u32,
        /// The highest cost bcrypt supports.
        max: u32,
    },
    /// A password hash read from storage is not a bcrypt hash: the user's row
    /// is damaged or was written by something else.
    #[error("the stored password hash is not a valid bcrypt hash: {reason}")]
    MalformedHash {
        /// What bcrypt found wrong with it.
        reason: String,
    },
    /// Hashing could not run: the system's random source failed, or the
    /// blocking task was lost.
    #[error("password hashing failed: {reason}")]
    HashingFailed {
        /// Why.
        reason: String,
    },
    /// The JWT signing secret is too short to resist guessing.
    #[error(
        "the JWT secret must be at least {min_bytes} bytes long; \
         generate a random one, for example with `openssl rand -base64 48`"
    )]
    WeakSecret {
        /// The fewest bytes accepted.
        min_bytes: usize,
    },
    /// The previous JWT secret, kept to verify tokens issued before the
    /// secret was rotated, is too short to resist guessing.
    #[error(
        "the previous JWT secret must be at least {min_bytes} bytes long, like the current one"
    )]
    WeakPreviousSecret {
        /// The fewest bytes accepted.
        min_bytes: usize,
    },
    /// The configured token lifetime is zero or too large to compute with.
    #[error("the token lifetime {reason}")]
    InvalidTtl {
        /// What is wrong with it.
        reason: String,
    },
    /// The configured token issuer or audience is empty.
    #[error("the token {claim} must not be empty")]
    EmptyClaim {
        /// `issuer` or `audience`.
        claim: &'static str,
    },
    /// A token could not be signed.
    #[error("could not sign the access token: {reason}")]
    SigningFailed {
        /// Why.
        reason: String,
    },
    /// The token is malformed, forged, signed with another secret or
    /// algorithm, or otherwise not one of ours.
    #[error("invalid access token")]
    InvalidToken,
    /// The token was ours but its `exp` has passed.
    #[error("the access token has expired")]
    ExpiredToken,
}
