//! Tokens written by the original Python backend stay readable.
//!
//! The vectors below were made with Python 3.11 and `cryptography` 48.0.0:
//!
//! ```python
//! import base64, hashlib
//! from cryptography.fernet import Fernet
//! key = Fernet.generate_key()  # printed once and pinned as KEY
//! Fernet(key).encrypt_at_time(b"hello from the original backend", 1700000000)
//! Fernet(key).encrypt_at_time(b"written by a clock far ahead", 4102444800)
//! passphrase_key = base64.urlsafe_b64encode(hashlib.sha256(b"my old passphrase").digest())
//! Fernet(passphrase_key).encrypt_at_time("héllo, wörld 👋".encode(), 1700000000)
//! ```
//!
//! Fixed timestamps keep the vectors independent of the clock of the machine
//! that runs the tests (1700000000 is November 2023, 4102444800 is 2100).

use chat_crypto::{CryptoError, FernetKey, KeyRing};

const KEY: &str = "uTdA2QsMSy7NQqA4FdCj1XsTMFXXv5PC8LiSUgXzHVY=";
const TOKEN: &str = "gAAAAABlU_EAhZJK4tXD9xK18PSIpeBKrLRBB5Yq99Rm6RWW8RberQMoVCtrjDQ4npLCRxWDGIXfo1BjDBXf69dR_2JcRqktu7yChhp0dU4euPbhfDc3TJE=";
const FUTURE_TOKEN: &str = "gAAAAAD0hlcA6z7MnDVegDzWmM7_NmslL6dkbfB3LdGKQkVcWhAuNB4T31KROLaH9BonNV7_9xGV7F2pNmM26ffLBT6WkqEVBYtMdN8sS6Jl0pVPK7OaBkc=";

const PASSPHRASE: &str = "passphrase:my old passphrase";
const PASSPHRASE_KEY: &str = "d6tVn9RCWw46-_m-U1Z9tNDyW8dGl12RJpv0-O3D__c=";
const PASSPHRASE_TOKEN: &str = "gAAAAABlU_EABK7sK53UrJ9qzhZjpuD4tJhpsJVwszFpchQXTKP4zG1BIQ0UnITEWBhU5mOA9McD8DHlGiGajGofqFJt-CtL365i_M-ouhgJp-6KKS78Nik=";

fn ring(key_text: &str) -> KeyRing {
    KeyRing::new(FernetKey::parse(key_text).expect("valid key"), Vec::new())
}

#[test]
fn a_token_made_by_python_cryptography_decrypts() {
    assert_eq!(
        ring(KEY).decrypt(TOKEN).as_deref(),
        Ok("hello from the original backend")
    );
}

#[test]
fn a_python_token_dated_far_in_the_future_decrypts() {
    assert_eq!(
        ring(KEY).decrypt(FUTURE_TOKEN).as_deref(),
        Ok("written by a clock far ahead")
    );
}

#[test]
fn a_token_made_with_the_original_passphrase_key_decrypts() {
    assert_eq!(
        ring(PASSPHRASE).decrypt(PASSPHRASE_TOKEN).as_deref(),
        Ok("héllo, wörld 👋")
    );
}

#[test]
fn the_passphrase_derivation_matches_python() {
    let derived = FernetKey::parse(PASSPHRASE).expect("valid passphrase");
    assert_eq!(derived.to_base64(), PASSPHRASE_KEY);
    let explicit = FernetKey::parse(PASSPHRASE_KEY).expect("valid key");
    assert_eq!(derived.id(), explicit.id());
}

#[test]
fn a_python_token_does_not_open_with_another_key() {
    assert_eq!(
        ring(PASSPHRASE).decrypt(TOKEN),
        Err(CryptoError::Undecryptable)
    );
    assert_eq!(
        ring(KEY).decrypt(PASSPHRASE_TOKEN),
        Err(CryptoError::Undecryptable)
    );
}

#[test]
fn a_ring_holding_both_original_keys_opens_both_tokens() {
    let ring = KeyRing::new(
        FernetKey::generate(),
        vec![
            FernetKey::parse(KEY).expect("valid key"),
            FernetKey::parse(PASSPHRASE).expect("valid passphrase"),
        ],
    );
    assert!(ring.decrypt(TOKEN).is_ok());
    assert!(ring.decrypt(PASSPHRASE_TOKEN).is_ok());
}
