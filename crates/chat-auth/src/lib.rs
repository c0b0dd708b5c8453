//! Who may use the chat server: password hashing, access tokens and refresh
//! tokens.
//!
//! [`PasswordHasher`] hashes and verifies passwords with bcrypt on Tokio's
//! blocking pool, never on an async worker, and makes a login for an unknown
//! user cost the same as one for a known user. [`TokenKeys`] issues and
//! verifies the short-lived HS256 JWTs that clients present on every request
//! and WebSocket; each names the auth session it belongs to (`sid`) and this
//! deployment (`iss`, `aud`). Tokens minted by the original Python backend
//! (only `sub` and `exp`) are refused unless a cut-over switch accepts them.
//! A previous secret can be kept beside the current one, so rotating the
//! secret does not sign anyone out: its tokens stay valid until they expire.
//! [`RefreshToken`] and [`new_session_id`] make the random parts of a
//! sign-in; the server stores only a refresh token's digest.
//!
//! This crate must not know about HTTP, WebSockets or the database: it takes
//! passwords, stored hashes and token text, and answers with hashes, tokens,
//! claims and an [`AuthError`]. Mapping those errors to status codes is the
//! transport's job, and whether a session is still open is the database's
//! to say. It never logs secrets; [`redact`] shortens a token for the
//! callers that want to log one.
//!
//! # Using it
//!
//! A sign-up hashes the password; a sign-in verifies it against the stored
//! hash, opens a session and issues a token for it; every request verifies
//! its token:
//!
//! ```
//! use std::time::Duration;
//!
//! use chat_auth::{PasswordHasher, TokenKeys, new_session_id};
//! use chat_domain::{Password, Username};
//! use secrecy::SecretString;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The lowest cost keeps this example quick; the server's default is
//!     // `PasswordHasher::DEFAULT_COST`.
//!     let hasher = PasswordHasher::new(PasswordHasher::MIN_COST)?;
//!     let hash = hasher.hash(&Password::parse("correct horse")?).await?;
//!     assert!(hasher.verify("correct horse", Some(&hash)).await?);
//!     assert!(!hasher.verify("wrong horse", Some(&hash)).await?);
//!
//!     // In production the secret comes from configuration (`SECRET_KEY`).
//!     let secret = SecretString::from("a secret of at least thirty-two bytes".to_owned());
//!     let keys = TokenKeys::new(&secret, Duration::from_secs(30 * 60))?;
//!     let session = new_session_id();
//!     let issued = keys.issue(&Username::parse("alice")?, session)?;
//!     let claims = keys.verify(&issued.token)?;
//!     assert_eq!(claims.sub, "alice");
//!     assert_eq!(claims.sid, Some(session));
//!     Ok(())
//! }
//! ```

mod error;
mod password;
mod refresh;
mod token;

pub use error::AuthError;
pub use password::PasswordHasher;
pub use refresh::{RefreshToken, new_session_id};
pub use token::{Claims, IssuedToken, TokenKeys, redact};
