//! The keys of the search index: every indexed word and prefix is stored as
//! a keyed hash, never as text.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use chat_domain::search::{NORMALISER_VERSION, Term, TermRef};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::CryptoError;

type HmacSha256 = Hmac<Sha256>;

/// The key of the search index: 32 secret bytes, distinct from the keys
/// that encrypt messages.
///
/// A [`Term`] is stored as the first 8 bytes of HMAC-SHA256 under this key
/// ([`SearchKey::hash`]); without the key, nobody can tell which word a
/// hash stands for, nor test a guess. The key also names the index it
/// builds: its [`SearchKey::generation`], which changes with the key and
/// with [`NORMALISER_VERSION`], so an index built by another key or other
/// rules is never read as this one.
///
/// `Debug` shows the generation only.
#[derive(Clone)]
pub struct SearchKey {
    bytes: [u8; SearchKey::LEN],
    mac: HmacSha256,
    generation: i32,
}

impl SearchKey {
    /// Bytes in a search key.
    const LEN: usize = 32;

    /// Parses key text from the configuration: 32 bytes in url-safe
    /// base64, with or without padding (the form `chat-server gen-key`
    /// prints). Surrounding white space is ignored.
    pub fn parse(text: &str) -> Result<SearchKey, CryptoError> {
        let text = text.trim();
        let decoded = match text.len() {
            0 => return Err(invalid("the key is empty")),
            44 => URL_SAFE.decode(text),
            43 => URL_SAFE_NO_PAD.decode(text),
            length => {
                return Err(invalid(format!(
                    "a search key is 44 characters long, this one has {length}"
                )));
            }
        };
        let decoded = decoded.map_err(|_| invalid("the key is not url-safe base64"))?;
        let bytes: [u8; Self::LEN] = decoded
            .try_into()
            .map_err(|_| invalid("the key does not decode to 32 bytes"))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A new random key.
    pub fn generate() -> SearchKey {
        // The fernet crate's generator gives 32 random bytes from the
        // operating system; it is used here for its randomness only.
        Self::parse(&fernet::Fernet::generate_key())
            .expect("fernet::Fernet::generate_key returns 32 bytes of url-safe base64")
    }

    /// The key in url-safe base64 with padding, which [`SearchKey::parse`]
    /// accepts. This is the secret itself: configuration only, never logs.
    pub fn to_base64(&self) -> String {
        URL_SAFE.encode(self.bytes)
    }

    /// The index this key builds, as stored beside every index entry: a
    /// keyed hash of [`NORMALISER_VERSION`]. Not secret.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The index key of `term`: the first 8 bytes of its HMAC-SHA256.
    pub fn hash(&self, term: &Term) -> i64 {
        self.hash_ref(term.as_ref())
    }

    /// [`SearchKey::hash`] of a borrowed term.
    pub fn hash_ref(&self, term: TermRef<'_>) -> i64 {
        let (tag, text) = term.key_material();
        let mut mac = self.mac.clone();
        mac.update(tag);
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }

    fn from_bytes(bytes: [u8; Self::LEN]) -> SearchKey {
        let mac =
            <HmacSha256 as Mac>::new_from_slice(&bytes).expect("HMAC accepts a key of any length");
        let mut generation_mac = mac.clone();
        generation_mac.update(b"chat-search-generation:");
        generation_mac.update(&NORMALISER_VERSION.to_be_bytes());
        let digest = generation_mac.finalize().into_bytes();
        let mut first = [0u8; 4];
        first.copy_from_slice(&digest[..4]);
        SearchKey {
            bytes,
            mac,
            generation: i32::from_be_bytes(first),
        }
    }
}

impl fmt::Debug for SearchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchKey")
            .field("generation", &self.generation)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The search keys a server holds: the one whose index answers searches,
/// and, while the key is being changed, the next one, whose index is kept
/// up to date beside it and built for older messages by `reindex`.
#[derive(Clone, Debug)]
pub struct SearchKeys {
    current: SearchKey,
    next: Option<SearchKey>,
}

impl SearchKeys {
    /// The keys; a `next` equal to `current` is the same index and is
    /// dropped.
    pub fn new(current: SearchKey, next: Option<SearchKey>) -> SearchKeys {
        let next = next.filter(|next| next.generation != current.generation);
        SearchKeys { current, next }
    }

    /// The key whose index answers searches.
    pub fn current(&self) -> &SearchKey {
        &self.current
    }

    /// The key being moved to, if any.
    pub fn next(&self) -> Option<&SearchKey> {
        self.next.as_ref()
    }

    /// Every key whose index a write keeps up to date.
    pub fn writing(&self) -> impl Iterator<Item = &SearchKey> + '_ {
        std::iter::once(&self.current).chain(self.next.as_ref())
    }
}

fn invalid(reason: impl Into<String>) -> CryptoError {
    CryptoError::InvalidSearchKey {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn a_term_hashes_the_same_under_the_same_key_only() {
        let key = SearchKey::parse(KEY).expect("valid");
        let again = SearchKey::parse(KEY.trim_end_matches('=')).expect("valid");
        let other = SearchKey::generate();
        let word = Term::Word("meeting".into());
        assert_eq!(key.hash(&word), again.hash(&word));
        assert_eq!(key.generation(), again.generation());
        assert_ne!(key.hash(&word), other.hash(&word));
        assert_ne!(key.generation(), other.generation());
        assert_ne!(key.hash(&word), key.hash(&Term::Prefix("meeting".into())));
    }

    #[test]
    fn a_hash_is_fixed_for_a_key() {
        // Changing this value changes every stored index entry: that needs
        // a new NORMALISER_VERSION, so the index is rebuilt. The value is
        // HMAC-SHA256(bytes 0..32, "w\0hello")[..8] as a signed big-endian
        // integer, as Python's hmac module computes it.
        let key = SearchKey::parse(KEY).expect("valid");
        assert_eq!(
            key.hash(&Term::Word("hello".into())),
            -6_100_011_514_229_397_825
        );
    }

    #[test]
    fn bad_key_text_is_refused_without_echoing_it() {
        for text in ["", "short", &"!".repeat(44), "passphrase:x"] {
            let error = SearchKey::parse(text).expect_err(text).to_string();
            assert!(error.starts_with("invalid search key"), "{error}");
            assert!(!error.contains("!!!!"), "{error}");
        }
    }

    #[test]
    fn debug_output_shows_no_key() {
        let key = SearchKey::parse(KEY).expect("valid");
        let shown = format!("{:?}", SearchKeys::new(key.clone(), None));
        assert!(!shown.contains(KEY.trim_end_matches('=')), "{shown}");
        assert!(shown.contains(&key.generation().to_string()), "{shown}");
    }

    #[test]
    fn the_next_key_is_written_beside_the_current_one() {
        let current = SearchKey::generate();
        let next = SearchKey::generate();
        let keys = SearchKeys::new(current.clone(), Some(next.clone()));
        let generations: Vec<i32> = keys.writing().map(SearchKey::generation).collect();
        assert_eq!(generations, [current.generation(), next.generation()]);
        let same = SearchKeys::new(current.clone(), Some(current.clone()));
        assert_eq!(same.writing().count(), 1);
    }
}
