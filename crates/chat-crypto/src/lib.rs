//! Encryption of chat messages at rest, with key rotation.
//!
//! Messages are sealed with [Fernet](https://github.com/fernet/spec) (AES-128-CBC
//! with an HMAC-SHA256), the same scheme the original Python backend used, so a
//! database it wrote stays readable. A [`KeyRing`] holds one primary key, which
//! encrypts, and any number of previous keys, which only decrypt: rotating a key
//! means making a new key the primary and keeping the old one among the previous
//! keys until every stored message has been re-encrypted. Each sealed message
//! records the [`KeyId`] of the key that sealed it, a fingerprint that is safe to
//! store and log.
//!
//! This crate must not know where keys come from (settings, files, the
//! environment) nor where tokens go (the database): callers hand it key text and
//! plaintext and get tokens and plaintext back. It never logs and never prints
//! key material, not even in `Debug` output.

mod error;
mod key;
mod ring;

pub use error::CryptoError;
pub use key::{FernetKey, KeyId};
pub use ring::{KeyRing, Sealed};
