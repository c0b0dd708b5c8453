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
    BasicCredential, Ciphersuite, ContentType, Credential, MlsMessageBodyIn, MlsMessageIn,
    OpenMlsProvider, ProposalStore, ProtocolMessage, ProtocolVersion, PublicGroup, WireFormat,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedKeyPackage {
    /// The end of its lifetime.
    pub(crate) not_after: DateTime<Utc>,
    /// It carries the last-resort extension.
    pub(crate) last_resort: bool,
    /// Its reference (RFC 9420, section 5.2), by which Welcomes name it.
    pub(crate) reference: Vec<u8>,
}

/// What a commit and the GroupInfo sent with it say, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedCommit {
    /// The group's id.
    pub(crate) group_id: Vec<u8>,
    /// Who the group's members are after the commit, one entry per device.
    pub(crate) members: Vec<Username>,
    /// The references of the KeyPackages the Welcome was made for.
    pub(crate) welcomed: Vec<Vec<u8>>,
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
    let reference = key_package
        .hash_ref(provider.crypto())
        .map_err(|error| format!("the KeyPackage's reference cannot be computed: {error}"))?;
    Ok(CheckedKeyPackage {
        not_after,
        last_resort: key_package.last_resort(),
        reference: reference.as_slice().to_vec(),
    })
}

/// A group as its GroupInfo shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupView {
    pub(crate) group_id: Vec<u8>,
    pub(crate) epoch: u64,
    /// The user of each member device.
    pub(crate) members: Vec<Username>,
}

/// Reads a GroupInfo with its ratchet tree, checked by openmls (the
/// signature against the signer's leaf, the tree's hashes and leaves).
pub(crate) fn group_of(group_info: &[u8]) -> Result<GroupView, String> {
    let MlsMessageBodyIn::GroupInfo(info) = MlsMessageIn::tls_deserialize_exact(group_info)
        .map_err(|error| format!("group_info is not an MLS message: {error}"))?
        .extract()
    else {
        return Err("group_info does not hold a GroupInfo".to_owned());
    };
    let tree = info
        .extensions()
        .ratchet_tree()
        .map(|extension| extension.ratchet_tree().clone())
        .ok_or_else(|| "group_info lacks its ratchet tree".to_owned())?;
    let provider = OpenMlsRustCrypto::default();
    let (group, _) = PublicGroup::from_external(
        provider.crypto(),
        provider.storage(),
        tree,
        info,
        ProposalStore::default(),
    )
    .map_err(|error| format!("group_info is not valid: {error}"))?;
    if group.group_context().ciphersuite() != CIPHERSUITE {
        return Err(format!("encrypted rooms use {CIPHERSUITE:?}"));
    }
    let members = group
        .members()
        .map(|member| {
            let basic = BasicCredential::try_from(member.credential.clone())
                .map_err(|_| "a member's credential is not a basic credential".to_owned())?;
            std::str::from_utf8(basic.identity())
                .ok()
                .and_then(|name| Username::parse(name).ok())
                .ok_or_else(|| "a member's credential names no user".to_owned())
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(GroupView {
        group_id: group.group_id().as_slice().to_vec(),
        epoch: group.group_context().epoch().as_u64(),
        members,
    })
}

/// Reads an MLS message as a protocol (handshake or application) message.
fn protocol_message(bytes: &[u8]) -> Result<ProtocolMessage, String> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|error| format!("not an MLS message: {error}"))?
        .try_into_protocol_message()
        .map_err(|_| "the MLS message is neither a public nor a private message".to_owned())
}

/// Checks that `bytes` is an MLS application message: a private message
/// (ciphertext), which is all an encrypted room takes from a member's
/// `message` frame.
pub(crate) fn check_application(bytes: &[u8]) -> Result<(), String> {
    let message = protocol_message(bytes)?;
    if message.wire_format() != WireFormat::PrivateMessage {
        return Err("an encrypted room takes MLS private messages (ciphertext) only".to_owned());
    }
    Ok(())
}

/// Checks a commit built on `epoch`, the GroupInfo of the group after it
/// and the Welcome for the devices it adds: the commit is a public message
/// of that epoch holding a commit; the GroupInfo, with its ratchet tree,
/// is valid for the next epoch of the same group (signature, tree and
/// leaves checked by openmls); the Welcome names the KeyPackages it is for.
pub(crate) fn check_commit(
    commit: &[u8],
    epoch: u64,
    group_info: &[u8],
    welcome: Option<&[u8]>,
) -> Result<CheckedCommit, String> {
    let message = protocol_message(commit)?;
    if message.wire_format() != WireFormat::PublicMessage
        || message.content_type() != ContentType::Commit
    {
        return Err("commit is not an MLS public message holding a commit".to_owned());
    }
    if message.epoch().as_u64() != epoch {
        return Err(format!(
            "the commit is built on epoch {}, not the epoch given ({epoch})",
            message.epoch().as_u64()
        ));
    }
    let group_id = message.group_id().as_slice().to_vec();

    let group = group_of(group_info)?;
    if group.group_id != group_id {
        return Err("group_info is of another group than the commit".to_owned());
    }
    if group.epoch != epoch + 1 {
        return Err("group_info is not of the epoch the commit leads to".to_owned());
    }
    let members = group.members;

    let welcomed = match welcome {
        None => Vec::new(),
        Some(welcome) => {
            let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(welcome)
                .map_err(|error| format!("welcome is not an MLS message: {error}"))?
                .extract()
            else {
                return Err("welcome does not hold a Welcome".to_owned());
            };
            welcome
                .secrets()
                .iter()
                .map(|secrets| secrets.new_member().as_slice().to_vec())
                .collect()
        }
    };
    Ok(CheckedCommit {
        group_id,
        members,
        welcomed,
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
