//! What the server checks of the public MLS objects clients give it, with
//! `openmls` and without any secret: a device's credential and signature
//! key, and its KeyPackages (signatures, lifetime, ciphersuite, and that
//! they belong to the device that uploads them).
//!
//! The server never holds an MLS private key and never decrypts; the
//! clients' side of MLS lives in `chat-e2e`, which no server crate uses.

use chat_domain::Username;
use chrono::{DateTime, Utc};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, Ciphersuite, Credential, MlsMessageBodyIn, MlsMessageIn, OpenMlsProvider,
    ProtocolVersion,
};
use openmls_rust_crypto::OpenMlsRustCrypto;
use sha2::{Digest, Sha256};

/// The one ciphersuite of encrypted rooms: X25519, AES-128-GCM, SHA-256
/// and Ed25519 (MLS's mandatory-to-implement suite).
pub(crate) const CIPHERSUITE: Ciphersuite =
    Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Bytes of an Ed25519 public key.
const SIGNATURE_KEY_LEN: usize = 32;

/// A KeyPackage that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckedKeyPackage {
    /// The end of its lifetime.
    pub(crate) not_after: DateTime<Utc>,
    /// It carries the last-resort extension.
    pub(crate) last_resort: bool,
}

/// The id of the device with `signature_key`: the first 16 bytes of the
/// key's SHA-256 digest in lower-case hex, so an id names one key.
pub(crate) fn device_id_of(signature_key: &[u8]) -> String {
    hex(&Sha256::digest(signature_key)[..16])
}

/// The fingerprint people compare: the SHA-256 digest of the signature
/// key in lower-case hex, in groups of four digits.
pub(crate) fn fingerprint(signature_key: &[u8]) -> String {
    let digest = Sha256::digest(signature_key);
    let digits = hex(&digest);
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 4);
    for (index, chunk) in digits.as_bytes().chunks(4).enumerate() {
        if index > 0 {
            grouped.push(' ');
        }
        grouped.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    grouped
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Checks a device's registration: an Ed25519 key, and a basic credential
/// naming `owner`.
pub(crate) fn check_device(
    owner: &Username,
    credential: &[u8],
    signature_key: &[u8],
) -> Result<(), String> {
    if signature_key.len() != SIGNATURE_KEY_LEN {
        return Err(format!(
            "signature_key is an Ed25519 public key of {SIGNATURE_KEY_LEN} bytes, not {}",
            signature_key.len()
        ));
    }
    let credential = Credential::tls_deserialize_exact(credential)
        .map_err(|error| format!("credential is not an MLS credential: {error}"))?;
    check_credential(&credential, owner)
}

/// Checks that `credential` is a basic credential naming `owner`.
fn check_credential(credential: &Credential, owner: &Username) -> Result<(), String> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| "the credential is not a basic credential".to_owned())?;
    let named = std::str::from_utf8(basic.identity())
        .ok()
        .and_then(|name| Username::parse(name).ok());
    match named {
        Some(name) if name.same_user(owner) => Ok(()),
        _ => Err(format!("the credential does not name '{owner}'")),
    }
}

/// Checks a KeyPackage (an MLS message of RFC 9420, section 6, holding
/// one) for the device of `owner` with `signature_key`: its signatures,
/// that its lifetime holds now, the ciphersuite, and that its credential
/// and signature key are the device's.
pub(crate) fn check_key_package(
    bytes: &[u8],
    owner: &Username,
    signature_key: &[u8],
) -> Result<CheckedKeyPackage, String> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|error| format!("not an MLS message: {error}"))?;
    let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else {
        return Err("the MLS message does not hold a KeyPackage".to_owned());
    };
    let provider = OpenMlsRustCrypto::default();
    let key_package = key_package
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(|error| format!("the KeyPackage is not valid: {error}"))?;
    if key_package.ciphersuite() != CIPHERSUITE {
        return Err(format!(
            "the KeyPackage's ciphersuite is {:?}; encrypted rooms use {CIPHERSUITE:?}",
            key_package.ciphersuite()
        ));
    }
    let leaf = key_package.leaf_node();
    check_credential(leaf.credential(), owner)?;
    if leaf.signature_key().as_slice() != signature_key {
        return Err("the KeyPackage is signed with another key than the device's".to_owned());
    }
    let not_after = i64::try_from(key_package.life_time().not_after())
        .ok()
        .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0))
        .ok_or_else(|| "the KeyPackage has no usable lifetime".to_owned())?;
    Ok(CheckedKeyPackage {
        not_after,
        last_resort: key_package.last_resort(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_id_and_a_fingerprint_come_from_the_key() {
        let key = [7u8; 32];
        let id = device_id_of(&key);
        assert_eq!(id.len(), 32);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let print = fingerprint(&key);
        assert_eq!(print.split(' ').count(), 16);
        assert_eq!(print.replace(' ', "")[..32], id);
        assert_ne!(device_id_of(&[8u8; 32]), id);
    }

    #[test]
    fn garbage_is_neither_a_credential_nor_a_key_package() {
        let alice = Username::parse("alice").expect("valid");
        assert!(check_device(&alice, b"nonsense", &[1u8; 32]).is_err());
        assert!(check_device(&alice, b"", &[1u8; 31]).is_err());
        assert!(check_key_package(b"nonsense", &alice, &[1u8; 32]).is_err());
    }
}
