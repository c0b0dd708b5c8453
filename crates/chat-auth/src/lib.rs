//! Who may use the chat server: password hashing and access tokens.
//!
//! [`PasswordHasher`] hashes and verifies passwords with bcrypt on Tokio's
//! blocking pool, never on an async worker, and makes a login for an unknown
//! user cost the same as one for a known user. [`TokenKeys`] issues and
//! verifies the HS256 JWTs that clients present on every request and
//! WebSocket; tokens minted by the original Python backend (only `sub` and
//! `exp`) are accepted when the same secret is configured. A previous secret
//! can be kept beside the current one, so rotating the secret does not sign
//! anyone out: its tokens stay valid until they expire.
//!
//! This crate must not know about HTTP, WebSockets or the database: it takes
//! passwords, stored hashes and token text, and answers with hashes, tokens,
//! claims and an [`AuthError`]. Mapping those errors to status codes is the
//! transport's job. It never logs secrets; [`redact`] shortens a token for the
//! callers that want to log one.

mod error;
mod password;
mod token;

pub use error::AuthError;
pub use password::PasswordHasher;
pub use token::{Claims, IssuedToken, TokenKeys, redact};
