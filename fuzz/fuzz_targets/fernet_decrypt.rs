//! The Fernet decoders: `FernetKey::parse` (key text from the configuration)
//! and `KeyRing::decrypt` (tokens read back from the database, where a
//! corrupted or planted row must give an error, never bring a worker down).
//!
//! The first byte of the input picks what the rest is:
//! - `0`..`85`: text given both to `FernetKey::parse` and to
//!   `KeyRing::decrypt`;
//! - `86`..`170`: the body of a Fernet token (version, timestamp, IV,
//!   ciphertext: any bytes), given a valid HMAC with the ring's primary key,
//!   so the fuzzer reaches the timestamp handling, the AES-CBC padding check
//!   and the UTF-8 check behind the MAC;
//! - `171`..`255`: a plaintext that is encrypted and must decrypt back to
//!   itself.
//!
//! Nothing may panic, and a key that parses must survive a round trip
//! through its standard text form.
//!
//! Found crash (now fixed in `KeyRing`): a token whose timestamp is within
//! 60 s of `u64::MAX` made `fernet` 0.2.2 add with overflow (see
//! fuzz/artifacts-found/README.md). `CHAT_FUZZ_SKIP_KNOWN=1`, which skipped
//! such inputs while the bug was open, is kept only to compare runs.

#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use chat_crypto::{CryptoError, FernetKey, KeyRing};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

// Fixed keys, so that crashes reproduce.
const PRIMARY: &str = "uTdA2QsMSy7NQqA4FdCj1XsTMFXXv5PC8LiSUgXzHVY=";
const PREVIOUS: &str = "passphrase:the previous key of the fuzzing ring";

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let primary = FernetKey::parse(PRIMARY).expect("a valid Fernet key");
    let previous = FernetKey::parse(PREVIOUS).expect("a valid passphrase key");
    KeyRing::new(primary, vec![previous])
});

/// Whether inputs that reach the known `fernet` overflow are skipped.
static SKIP_KNOWN: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("CHAT_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"));

/// Whether `token` carries a timestamp so large that `fernet` 0.2.2 overflows
/// adding its 60 s clock skew to it: the same reading of the first twelve
/// characters that `KeyRing` does to find the time a token was sealed.
fn hits_known_overflow(token: &str) -> bool {
    let Some(head) = token.get(..12) else {
        return false;
    };
    let mut bytes = [0u8; 9];
    match URL_SAFE.decode_slice(head, &mut bytes) {
        Ok(9) => {
            let timestamp = u64::from_be_bytes(bytes[1..].try_into().expect("eight bytes"));
            timestamp > u64::MAX - 60
        }
        _ => false,
    }
}

/// The HMAC half of the primary key: its first 16 bytes.
static SIGNING_KEY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let bytes = URL_SAFE.decode(PRIMARY).expect("valid base64");
    bytes[..16].to_vec()
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0..=85 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(key) = FernetKey::parse(text) {
                let again = FernetKey::parse(&key.to_base64()).expect("to_base64 parses");
                assert_eq!(again.id(), key.id());
            }
            if *SKIP_KNOWN && hits_known_overflow(text) {
                return;
            }
            let _ = RING.decrypt(text);
        }
        86..=170 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(&SIGNING_KEY).expect("16-byte key");
            mac.update(rest);
            let mut token = rest.to_vec();
            token.extend_from_slice(&mac.finalize().into_bytes());
            let token = URL_SAFE.encode(token);
            if *SKIP_KNOWN && hits_known_overflow(&token) {
                return;
            }
            match RING.decrypt(&token) {
                Ok(_) | Err(CryptoError::Undecryptable) | Err(CryptoError::NotUtf8) => {}
                Err(other) => panic!("unexpected error {other:?}"),
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let sealed = RING.encrypt(text);
            assert_eq!(&sealed.key_id, RING.primary_id());
            assert_eq!(RING.decrypt(&sealed.token).as_deref(), Ok(text));
        }
    }
});
