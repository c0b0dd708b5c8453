use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use crate::CryptoError;

/// One Fernet key: 16 bytes of HMAC key followed by 16 bytes of AES key.
///
/// The key is secret. Its `Debug` output shows only its [`KeyId`]; the key
/// itself is available through [`FernetKey::to_base64`] alone, for writing it
/// into a configuration file.
#[derive(Clone)]
pub struct FernetKey {
    bytes: [u8; FernetKey::LEN],
    fernet: fernet::Fernet,
    id: KeyId,
}

impl FernetKey {
    /// The prefix that marks key text as a passphrase to derive a key from.
    pub const PASSPHRASE_PREFIX: &'static str = "passphrase:";

    /// Bytes in a Fernet key.
    const LEN: usize = 32;

    /// Parses key text from the configuration.
    ///
    /// Two forms are accepted:
    ///
    /// - a Fernet key: 32 bytes in url-safe base64, 44 characters with the
    ///   trailing `=` or 43 without it (surrounding white space is ignored);
    /// - `passphrase:<text>`: the key is derived from `<text>` exactly as the
    ///   original Python backend derived its key from any passphrase,
    ///   `urlsafe_b64encode(sha256(text.encode()).digest())`, so a database it
    ///   wrote stays readable. The text after the prefix is used as is, white
    ///   space included.
    ///
    /// Anything else is [`CryptoError::InvalidKey`]; a bare passphrase is
    /// refused rather than guessed at, so a typo in a real key cannot silently
    /// turn into a different key.
    pub fn parse(text: &str) -> Result<FernetKey, CryptoError> {
        if let Some(passphrase) = text.strip_prefix(Self::PASSPHRASE_PREFIX) {
            if passphrase.is_empty() {
                return Err(invalid("the passphrase after `passphrase:` is empty"));
            }
            let bytes: [u8; Self::LEN] = Sha256::digest(passphrase.as_bytes()).into();
            return Self::from_bytes(bytes);
        }

        let text = text.trim();
        let chars = text.chars().count();
        let decoded = match chars {
            0 => return Err(invalid("the key is empty")),
            44 => URL_SAFE.decode(text),
            43 => URL_SAFE_NO_PAD.decode(text),
            _ => {
                return Err(invalid(format!(
                    "a Fernet key is 44 characters long, this one has {chars}"
                )));
            }
        };
        let decoded = decoded.map_err(|_| invalid("the key is not url-safe base64"))?;
        let bytes: [u8; Self::LEN] = decoded
            .try_into()
            .map_err(|_| invalid("the key does not decode to 32 bytes"))?;
        Self::from_bytes(bytes)
    }

    /// A new random key, for `chat-server gen-key` and for tests.
    pub fn generate() -> FernetKey {
        // The text comes from the fernet crate's own generator, never from
        // input: it is always 32 random bytes in url-safe base64.
        Self::parse(&fernet::Fernet::generate_key())
            .expect("fernet::Fernet::generate_key returns a valid Fernet key")
    }

    /// The key in the standard Fernet form (url-safe base64 with padding),
    /// which [`FernetKey::parse`] and Python's `cryptography` both accept.
    ///
    /// This is the secret itself: write it to configuration, never to logs.
    pub fn to_base64(&self) -> String {
        URL_SAFE.encode(self.bytes)
    }

    /// The key's public fingerprint.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The Fernet instance that encrypts and decrypts with this key.
    pub(crate) fn fernet(&self) -> &fernet::Fernet {
        &self.fernet
    }

    fn from_bytes(bytes: [u8; Self::LEN]) -> Result<FernetKey, CryptoError> {
        // The fernet crate builds keys from text only; 32 bytes always make
        // valid text, so the error below is never seen in practice.
        let fernet = fernet::Fernet::new(&URL_SAFE.encode(bytes))
            .ok_or_else(|| invalid("the key does not decode to 32 bytes"))?;
        Ok(FernetKey {
            bytes,
            fernet,
            id: KeyId::derive(&bytes),
        })
    }
}

impl fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FernetKey")
            .field("id", &self.id.as_str())
            .field("key", &"<redacted>")
            .finish()
    }
}

fn invalid(reason: impl Into<String>) -> CryptoError {
    CryptoError::InvalidKey {
        reason: reason.into(),
    }
}

/// A stable, non-secret fingerprint of a [`FernetKey`]: the first 16 hex
/// digits of SHA-256 over `"chat-key-id:"` followed by the 32 raw key bytes.
///
/// It is stored beside every encrypted message, so the key that opens it is
/// tried first and an operator can tell which messages still need a retired
/// key. The domain prefix keeps the fingerprint from being a plain hash of the
/// key that could be matched against hashes published elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Rebuilds an id read back from storage. Any text is accepted: an id
    /// that matches no key of the ring is only a hint that goes unused.
    pub fn new(value: String) -> KeyId {
        KeyId(value)
    }

    /// The id as text, for storing and logging.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn derive(bytes: &[u8; FernetKey::LEN]) -> KeyId {
        let digest = Sha256::new()
            .chain_update(b"chat-key-id:")
            .chain_update(bytes)
            .finalize();
        let hex = digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        KeyId(hex)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The key of `tests/python_compat.rs`, made by Python's
    // `Fernet.generate_key()`, and its id computed in Python as
    // `hashlib.sha256(b"chat-key-id:" + urlsafe_b64decode(key)).hexdigest()[:16]`.
    const KEY: &str = "uTdA2QsMSy7NQqA4FdCj1XsTMFXXv5PC8LiSUgXzHVY=";
    const KEY_ID: &str = "300986d51cc83363";

    fn reason(result: Result<FernetKey, CryptoError>) -> String {
        match result {
            Err(CryptoError::InvalidKey { reason }) => reason,
            other => panic!("expected InvalidKey, got {other:?}"),
        }
    }

    #[test]
    fn a_standard_key_parses_with_and_without_padding() {
        let padded = FernetKey::parse(KEY).expect("valid key");
        let unpadded = FernetKey::parse(KEY.trim_end_matches('=')).expect("valid key");
        assert_eq!(padded.id(), unpadded.id());
        assert_eq!(unpadded.to_base64(), KEY);
    }

    #[test]
    fn white_space_around_a_standard_key_is_ignored() {
        let key = FernetKey::parse(&format!("  {KEY}\n")).expect("valid key");
        assert_eq!(key.to_base64(), KEY);
    }

    #[test]
    fn the_key_id_is_pinned_and_stable() {
        let key = FernetKey::parse(KEY).expect("valid key");
        assert_eq!(key.id().as_str(), KEY_ID);
        assert_eq!(FernetKey::parse(KEY).expect("valid key").id(), key.id());
    }

    #[test]
    fn different_keys_have_different_ids() {
        let a = FernetKey::generate();
        let b = FernetKey::generate();
        assert_ne!(a.to_base64(), b.to_base64());
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn a_key_id_is_sixteen_lower_case_hex_digits() {
        let id = FernetKey::generate().id().clone();
        assert_eq!(id.as_str().len(), 16);
        assert!(
            id.as_str()
                .chars()
                .all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{id}"
        );
    }

    #[test]
    fn a_key_id_rebuilt_from_storage_equals_the_original() {
        let key = FernetKey::parse(KEY).expect("valid key");
        assert_eq!(&KeyId::new(KEY_ID.to_owned()), key.id());
        assert_eq!(key.id().to_string(), KEY_ID);
    }

    #[test]
    fn a_generated_key_survives_a_round_trip_through_its_text() {
        let key = FernetKey::generate();
        let again = FernetKey::parse(&key.to_base64()).expect("valid key");
        assert_eq!(again.id(), key.id());
    }

    #[test]
    fn a_passphrase_key_is_derived_like_the_original_backend() {
        // python3 -c 'import base64, hashlib;
        //   print(base64.urlsafe_b64encode(hashlib.sha256(b"my old passphrase").digest()).decode())'
        let key = FernetKey::parse("passphrase:my old passphrase").expect("valid passphrase");
        assert_eq!(
            key.to_base64(),
            "d6tVn9RCWw46-_m-U1Z9tNDyW8dGl12RJpv0-O3D__c="
        );
    }

    #[test]
    fn a_passphrase_keeps_its_white_space() {
        let plain = FernetKey::parse("passphrase:secret").expect("valid passphrase");
        let spaced = FernetKey::parse("passphrase:secret ").expect("valid passphrase");
        assert_ne!(plain.id(), spaced.id());
    }

    #[test]
    fn an_empty_key_is_invalid() {
        assert_eq!(reason(FernetKey::parse("")), "the key is empty");
        assert_eq!(reason(FernetKey::parse("  \n")), "the key is empty");
    }

    #[test]
    fn an_empty_passphrase_is_invalid() {
        assert!(reason(FernetKey::parse("passphrase:")).contains("empty"));
    }

    #[test]
    fn a_key_of_the_wrong_length_is_invalid() {
        assert!(reason(FernetKey::parse("c2hvcnQ=")).contains("this one has 8"));
        assert!(reason(FernetKey::parse(&format!("{KEY}A"))).contains("this one has 45"));
    }

    #[test]
    fn a_bare_passphrase_is_invalid() {
        assert!(FernetKey::parse("your-encryption-key-change-this-in-production").is_err());
    }

    #[test]
    fn a_key_that_is_not_url_safe_base64_is_invalid() {
        let not_base64 = format!("!{}", &KEY[1..]);
        assert_eq!(
            reason(FernetKey::parse(&not_base64)),
            "the key is not url-safe base64"
        );
        // The standard alphabet's `+` and `/` are not part of a Fernet key.
        let standard_alphabet = format!("+/{}", &KEY[2..]);
        assert_eq!(
            reason(FernetKey::parse(&standard_alphabet)),
            "the key is not url-safe base64"
        );
    }

    #[test]
    fn forty_four_characters_without_padding_are_invalid() {
        // 44 base64 characters without `=` are 33 bytes, one too many.
        let too_long = format!("{}A", KEY.trim_end_matches('='));
        assert!(FernetKey::parse(&too_long).is_err());
    }

    #[test]
    fn the_invalid_key_message_tells_the_operator_what_to_give() {
        let message = FernetKey::parse("nonsense")
            .expect_err("invalid")
            .to_string();
        assert!(message.contains("chat-server gen-key"), "{message}");
        assert!(message.contains("passphrase:"), "{message}");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = FernetKey::parse(KEY).expect("valid key");
        let debug = format!("{key:?}");
        assert!(debug.contains(KEY_ID), "{debug}");
        assert!(!debug.contains(&KEY[..8]), "{debug}");
        assert!(
            !debug.contains(&URL_SAFE_NO_PAD.encode(&key.bytes[..6])),
            "{debug}"
        );
    }
}
