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
//!
//! # Using it
//!
//! Build a ring from the configured key texts, seal with it, and store the
//! token with its key id. After a rotation the old key stays in the ring,
//! among the previous keys, until nothing it sealed is left:
//!
//! ```
//! use chat_crypto::{FernetKey, KeyRing};
//!
//! // In production the key text comes from configuration (`ENCRYPTION_KEY`).
//! let old = FernetKey::parse("passphrase:the key of last year")?;
//! let sealed_last_year = KeyRing::new(old.clone(), Vec::new()).encrypt("hello");
//!
//! // Rotated: a new primary key seals, the old one still opens.
//! let ring = KeyRing::new(FernetKey::generate(), vec![old]);
//! let sealed = ring.encrypt("hello again");
//! assert_eq!(&sealed.key_id, ring.primary_id());
//! assert_eq!(ring.decrypt(&sealed.token)?, "hello again");
//! assert_eq!(
//!     ring.decrypt_with_hint(&sealed_last_year.token, Some(&sealed_last_year.key_id))?,
//!     "hello"
//! );
//!
//! // What may be logged: key ids, never keys.
//! println!("{ring:?}");
//! # Ok::<(), chat_crypto::CryptoError>(())
//! ```

mod error;
mod key;
mod ring;
mod search;

pub use error::CryptoError;
pub use key::{FernetKey, KeyId};
pub use ring::{KeyRing, Sealed};
pub use search::{SearchKey, SearchKeys};
