use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;

use crate::{CryptoError, FernetKey, KeyId};

/// The keys the server encrypts and decrypts with: one primary key that
/// encrypts, and previous keys kept only to decrypt what they once encrypted.
///
/// Encryption and decryption follow the semantics of Python's `MultiFernet`:
/// encrypt with the primary key, decrypt with the first key that opens the
/// token. Tokens never expire: a message stored years ago stays readable,
/// whatever time the token carries.
///
/// The `Debug` output lists key ids only.
#[derive(Clone)]
pub struct KeyRing {
    primary: FernetKey,
    previous: Vec<FernetKey>,
}

/// A message encrypted by [`KeyRing::encrypt`], with the id of the key that
/// encrypted it. Neither field is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The Fernet token: url-safe base64 text, safe to store.
    pub token: String,
    /// The id of the primary key that produced `token`.
    pub key_id: KeyId,
}

impl KeyRing {
    /// A ring that encrypts with `primary` and also decrypts with every key
    /// in `previous`, tried in the order given. A previous key that repeats
    /// the primary or an earlier previous key is dropped.
    pub fn new(primary: FernetKey, previous: Vec<FernetKey>) -> KeyRing {
        let mut kept: Vec<FernetKey> = Vec::with_capacity(previous.len());
        for key in previous {
            let seen = key.id() == primary.id() || kept.iter().any(|k| k.id() == key.id());
            if !seen {
                kept.push(key);
            }
        }
        KeyRing {
            primary,
            previous: kept,
        }
    }

    /// The id of the key that encrypts.
    pub fn primary_id(&self) -> &KeyId {
        self.primary.id()
    }

    /// The ids of all keys, the primary first, then the previous keys in
    /// the order they are tried.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> + '_ {
        self.keys().map(FernetKey::id)
    }

    /// Whether the ring holds the key with this id.
    pub fn contains(&self, key_id: &KeyId) -> bool {
        self.ids().any(|id| id == key_id)
    }

    /// Encrypts `plaintext` with the primary key.
    pub fn encrypt(&self, plaintext: &str) -> Sealed {
        Sealed {
            token: self.primary.fernet().encrypt(plaintext.as_bytes()),
            key_id: self.primary.id().clone(),
        }
    }

    /// Decrypts a token with the primary key, then with each previous key.
    pub fn decrypt(&self, token: &str) -> Result<String, CryptoError> {
        self.decrypt_with_hint(token, None)
    }

    /// Decrypts a token, trying the key named by `key_id` first (the id
    /// stored beside the token), then every key in the usual order. A hint
    /// that names no key of the ring is ignored, so a wrong hint costs time
    /// but never correctness.
    pub fn decrypt_with_hint(
        &self,
        token: &str,
        key_id: Option<&KeyId>,
    ) -> Result<String, CryptoError> {
        let hinted = key_id.and_then(|id| self.keys().find(|key| key.id() == id));
        let others = self
            .keys()
            .filter(|key| hinted.is_none_or(|hinted| hinted.id() != key.id()));
        // The fernet crate adds its 60 s clock skew to the time it is given;
        // a (damaged or forged) token claiming the last second of time would
        // overflow that sum. No real token is that old, so clamp well below.
        let sealed_at = sealed_at(token).min(u64::MAX - 3_600);
        for key in hinted.into_iter().chain(others) {
            // `decrypt_at_time` is given the token's own time, which turns
            // off both of Fernet's clock checks: there is no TTL (messages
            // are kept forever), and a token is not refused for coming "from
            // the future" when the clock of the server that wrote it ran
            // ahead of ours, or ours was set back.
            if let Ok(bytes) = key.fernet().decrypt_at_time(token, None, sealed_at) {
                return String::from_utf8(bytes).map_err(|_| CryptoError::NotUtf8);
            }
        }
        Err(CryptoError::Undecryptable)
    }

    fn keys(&self) -> impl Iterator<Item = &FernetKey> + '_ {
        std::iter::once(&self.primary).chain(&self.previous)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(|key| key.id().as_str()).collect();
        f.debug_struct("KeyRing")
            .field("primary", &self.primary.id().as_str())
            .field("previous", &previous)
            .finish()
    }
}

/// The time, in seconds since the Unix epoch, that a Fernet token says it
/// was made: the eight bytes after the version byte. The first twelve
/// characters of a token are exactly those nine bytes in base64. Text that is
/// not a token gives 0 and then fails to decrypt on its own merits.
fn sealed_at(token: &str) -> u64 {
    let Some(head) = token.get(..12) else {
        return 0;
    };
    let mut bytes = [0u8; 9];
    match URL_SAFE.decode_slice(head, &mut bytes) {
        Ok(9) => {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&bytes[1..]);
            u64::from_be_bytes(timestamp)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    fn ring_of(key: &FernetKey) -> KeyRing {
        KeyRing::new(key.clone(), Vec::new())
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs()
    }

    /// Flips one character in the middle of `token` to another character of
    /// the base64 alphabet.
    fn tamper(token: &str) -> String {
        let middle = token.len() / 2;
        let mut chars: Vec<char> = token.chars().collect();
        chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect()
    }

    #[test]
    fn a_message_survives_a_round_trip() {
        let ring = ring_of(&FernetKey::generate());
        for text in ["hello", "", "héllo, wörld 👋", "line\nbreak"] {
            let sealed = ring.encrypt(text);
            assert_ne!(sealed.token, text);
            assert_eq!(ring.decrypt(&sealed.token).as_deref(), Ok(text));
        }
    }

    #[test]
    fn the_same_message_encrypts_differently_each_time() {
        let ring = ring_of(&FernetKey::generate());
        assert_ne!(ring.encrypt("hello").token, ring.encrypt("hello").token);
    }

    #[test]
    fn a_sealed_message_names_the_primary_key() {
        let key = FernetKey::generate();
        let ring = ring_of(&key);
        assert_eq!(&ring.encrypt("hello").key_id, key.id());
        assert_eq!(ring.primary_id(), key.id());
    }

    #[test]
    fn a_tampered_token_is_rejected() {
        let ring = ring_of(&FernetKey::generate());
        let sealed = ring.encrypt("pay alice 10 coins");
        let tampered = tamper(&sealed.token);
        assert_ne!(tampered, sealed.token);
        assert_eq!(ring.decrypt(&tampered), Err(CryptoError::Undecryptable));
    }

    #[test]
    fn text_that_is_not_a_token_is_rejected() {
        let ring = ring_of(&FernetKey::generate());
        for junk in [
            "",
            "hello",
            "gAAAAA",
            "ééééééééééééééé",
            "not base64 at all!!",
        ] {
            assert_eq!(
                ring.decrypt(junk),
                Err(CryptoError::Undecryptable),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn after_rotation_old_tokens_still_decrypt_and_new_ones_use_the_new_key() {
        let old = FernetKey::generate();
        let before = ring_of(&old).encrypt("written before the rotation");

        let new = FernetKey::generate();
        let ring = KeyRing::new(new.clone(), vec![old.clone()]);
        assert_eq!(
            ring.decrypt(&before.token).as_deref(),
            Ok("written before the rotation")
        );

        let after = ring.encrypt("written after the rotation");
        assert_eq!(&after.key_id, new.id());
        assert_ne!(&after.key_id, old.id());
        // Only the new key opens the new token.
        assert_eq!(
            ring_of(&old).decrypt(&after.token),
            Err(CryptoError::Undecryptable)
        );
        assert_eq!(
            ring_of(&new).decrypt(&after.token).as_deref(),
            Ok("written after the rotation")
        );
    }

    #[test]
    fn a_ring_without_the_old_key_cannot_decrypt_its_tokens() {
        let old = FernetKey::generate();
        let token = ring_of(&old).encrypt("secret").token;
        let ring = KeyRing::new(FernetKey::generate(), vec![FernetKey::generate()]);
        assert_eq!(ring.decrypt(&token), Err(CryptoError::Undecryptable));
    }

    #[test]
    fn a_hint_finds_a_previous_key_and_a_wrong_hint_does_no_harm() {
        let old = FernetKey::generate();
        let sealed = ring_of(&old).encrypt("hinted");
        let ring = KeyRing::new(FernetKey::generate(), vec![FernetKey::generate(), old]);

        let right = ring.decrypt_with_hint(&sealed.token, Some(&sealed.key_id));
        assert_eq!(right.as_deref(), Ok("hinted"));
        let wrong = ring.decrypt_with_hint(&sealed.token, Some(ring.primary_id()));
        assert_eq!(wrong.as_deref(), Ok("hinted"));
        let unknown = KeyId::new("0123456789abcdef".to_owned());
        let unknown = ring.decrypt_with_hint(&sealed.token, Some(&unknown));
        assert_eq!(unknown.as_deref(), Ok("hinted"));
    }

    #[test]
    fn a_hint_cannot_make_a_foreign_token_decrypt() {
        let foreign = FernetKey::generate();
        let sealed = ring_of(&foreign).encrypt("not yours");
        let ring = ring_of(&FernetKey::generate());
        assert_eq!(
            ring.decrypt_with_hint(&sealed.token, Some(&sealed.key_id)),
            Err(CryptoError::Undecryptable)
        );
    }

    #[test]
    fn the_ring_knows_which_keys_it_holds() {
        let primary = FernetKey::generate();
        let previous = FernetKey::generate();
        let ring = KeyRing::new(primary.clone(), vec![previous.clone()]);
        assert!(ring.contains(primary.id()));
        assert!(ring.contains(previous.id()));
        assert!(!ring.contains(FernetKey::generate().id()));
        let ids: Vec<&KeyId> = ring.ids().collect();
        assert_eq!(ids, vec![primary.id(), previous.id()]);
    }

    #[test]
    fn repeated_keys_are_kept_once() {
        let primary = FernetKey::generate();
        let previous = FernetKey::generate();
        let ring = KeyRing::new(
            primary.clone(),
            vec![primary.clone(), previous.clone(), previous.clone()],
        );
        assert_eq!(ring.ids().count(), 2);
    }

    #[test]
    fn plaintext_that_is_not_utf8_is_an_error() {
        let key = FernetKey::generate();
        let token = key.fernet().encrypt(&[0xff, 0xfe, 0x00]);
        assert_eq!(ring_of(&key).decrypt(&token), Err(CryptoError::NotUtf8));
    }

    #[test]
    fn tokens_never_expire() {
        let key = FernetKey::generate();
        // Made one second after the epoch: far older than any TTL.
        let ancient = key.fernet().encrypt_at_time(b"from long ago", 1);
        assert_eq!(
            ring_of(&key).decrypt(&ancient).as_deref(),
            Ok("from long ago")
        );
    }

    #[test]
    fn tokens_from_a_clock_that_ran_ahead_still_decrypt() {
        let key = FernetKey::generate();
        // Fernet alone refuses tokens more than 60 seconds in the future.
        let ahead = key
            .fernet()
            .encrypt_at_time(b"from the future", now() + 3_600);
        assert!(key.fernet().decrypt(&ahead).is_err());
        assert_eq!(
            ring_of(&key).decrypt(&ahead).as_deref(),
            Ok("from the future")
        );
    }

    #[test]
    fn a_token_claiming_the_end_of_time_is_undecryptable_not_a_panic() {
        // Found by the `fernet_decrypt` fuzz target: version byte 0x80 and a
        // timestamp of u64::MAX.
        let ring = ring_of(&FernetKey::generate());
        assert_eq!(
            ring.decrypt("gP__________"),
            Err(CryptoError::Undecryptable)
        );
    }

    #[test]
    fn the_time_a_token_was_made_is_read_from_its_head() {
        let key = FernetKey::generate();
        let token = key.fernet().encrypt_at_time(b"x", 1_700_000_000);
        assert_eq!(sealed_at(&token), 1_700_000_000);
        assert_eq!(sealed_at("short"), 0);
        assert_eq!(sealed_at("ééééééééééé"), 0);
    }

    #[test]
    fn debug_output_lists_key_ids_but_never_keys() {
        let primary = FernetKey::generate();
        let previous = FernetKey::generate();
        let ring = KeyRing::new(primary.clone(), vec![previous.clone()]);
        let debug = format!("{ring:?}");
        assert!(debug.contains(primary.id().as_str()), "{debug}");
        assert!(debug.contains(previous.id().as_str()), "{debug}");
        for key in [&primary, &previous] {
            let text = key.to_base64();
            assert!(!debug.contains(&text[..10]), "{debug}");
        }
    }
}
