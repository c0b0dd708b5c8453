//! What the server checks of the public MLS objects clients give it, with
//! `openmls` and without any secret: a device's credential and signature
//! key, and its KeyPackages (signatures, lifetime, ciphersuite, and that
//! they belong to the device that uploads them), and its commits, which it
//! processes against the group's public state as the members will.
//!
//! The server never holds an MLS private key and never decrypts; the
//! clients' side of MLS lives in `chat-e2e`, which no server crate uses.

use chat_domain::Username;
use chrono::{DateTime, Utc};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, Ciphersuite, ContentType, Credential, MlsMessageBodyIn, MlsMessageIn,
    OpenMlsProvider, ProcessedMessageContent, ProposalStore, ProtocolMessage, ProtocolVersion,
    PublicGroup, WireFormat,
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

/// What a commit does, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedCommit {
    /// The group's id.
    pub(crate) group_id: Vec<u8>,
    /// Who the group's members are after the commit, one entry per device.
    pub(crate) members: Vec<Username>,
    /// The user of each device the commit removes.
    pub(crate) removed: Vec<Username>,
    /// The references of the KeyPackages the Welcome was made for.
    pub(crate) welcomed: Vec<Vec<u8>>,
}

/// Why [`check_commit`] refuses a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommitRefusal {
    /// The commit is for another group than the one it was checked
    /// against: the room has a group of its own.
    OtherGroup,
    /// The commit, the GroupInfo or the Welcome fails a check: which, and
    /// why.
    Invalid(String),
}

impl CommitRefusal {
    fn invalid(why: impl Into<String>) -> CommitRefusal {
        CommitRefusal::Invalid(why.into())
    }
}

impl From<String> for CommitRefusal {
    fn from(why: String) -> Self {
        CommitRefusal::Invalid(why)
    }
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

/// The user a basic credential names.
fn user_of(credential: &Credential) -> Result<Username, String> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| "the credential is not a basic credential".to_owned())?;
    std::str::from_utf8(basic.identity())
        .ok()
        .and_then(|name| Username::parse(name).ok())
        .ok_or_else(|| "the credential names no user".to_owned())
}

/// Checks that `credential` is a basic credential naming `owner`.
fn check_credential(credential: &Credential, owner: &Username) -> Result<(), String> {
    if user_of(credential)?.same_user(owner) {
        Ok(())
    } else {
        Err(format!("the credential does not name '{owner}'"))
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

/// A group's public state at one epoch (its context, ratchet tree and
/// members) as a GroupInfo with its ratchet tree shows it, checked by
/// openmls: the GroupInfo's signature against the signer's leaf, the
/// tree's hashes and leaves.
#[derive(Debug)]
pub(crate) struct PublicState(PublicGroup);

/// What a commit did to a group, as processing it showed.
#[derive(Debug)]
struct Applied {
    /// The references of the KeyPackages whose devices it adds.
    added: Vec<Vec<u8>>,
    /// The user of each device it removes.
    removed: Vec<Username>,
}

impl PublicState {
    /// Reads a GroupInfo (an MLS message holding one) with its ratchet
    /// tree, of a group in the encrypted rooms' ciphersuite.
    pub(crate) fn read(group_info: &[u8]) -> Result<PublicState, String> {
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
        Ok(PublicState(group))
    }

    fn group_id(&self) -> &[u8] {
        self.0.group_id().as_slice()
    }

    fn epoch(&self) -> u64 {
        self.0.group_context().epoch().as_u64()
    }

    /// The user of each device in the group.
    fn members(&self) -> Result<Vec<Username>, String> {
        self.0
            .members()
            .map(|member| {
                user_of(&member.credential).map_err(|why| format!("a device in the group: {why}"))
            })
            .collect()
    }

    /// Whether `other` is the same group at the same epoch: the same
    /// context (group id, epoch, tree hash, transcript hash, extensions)
    /// and the same confirmation tag. The tree hash covers every node of
    /// the ratchet tree, and each state's tree was checked against it.
    fn same_as(&self, other: &PublicState) -> bool {
        self.0.group_context() == other.0.group_context()
            && self.0.confirmation_tag() == other.0.confirmation_tag()
    }

    /// Processes a commit of the group's epoch with openmls, as a delivery
    /// service does (its framing, its sender's signature, its proposals and
    /// update path; no secret is needed nor known), and merges it: the
    /// state moves to the next epoch.
    fn apply(&mut self, commit: ProtocolMessage) -> Result<Applied, String> {
        let provider = OpenMlsRustCrypto::default();
        let processed = self
            .0
            .process_message(provider.crypto(), commit)
            .map_err(|error| {
                format!("the commit does not apply to the group at its epoch: {error}")
            })?;
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err("the commit does not apply to the group as a commit".to_owned());
        };
        let added = staged
            .add_proposals()
            .map(|queued| {
                queued
                    .add_proposal()
                    .key_package()
                    .hash_ref(provider.crypto())
                    .map(|reference| reference.as_slice().to_vec())
                    .map_err(|error| format!("an added KeyPackage has no reference: {error}"))
            })
            .collect::<Result<_, _>>()?;
        // The removed devices' credentials are in the tree before the merge.
        let removed = staged
            .remove_proposals()
            .map(|queued| {
                let leaf = self
                    .0
                    .leaf(queued.remove_proposal().removed())
                    .ok_or_else(|| "the commit removes an empty leaf".to_owned())?;
                user_of(leaf.credential()).map_err(|why| format!("a removed device: {why}"))
            })
            .collect::<Result<_, _>>()?;
        self.0
            .merge_commit(provider.storage(), *staged)
            .map_err(|error| format!("the commit cannot be merged: {error}"))?;
        Ok(Applied { added, removed })
    }
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
/// and the Welcome for the devices it adds.
///
/// The commit must be a public message of that epoch holding a commit, from
/// a member of the group (no join from outside, an external commit, which
/// the clients refuse too). The GroupInfo, with its ratchet tree, must be
/// valid for the next epoch of the same group.
///
/// `before` is the group's public state at `epoch`, as the server stored it
/// with the commit that led there. The commit is processed against it and
/// merged ([`PublicState`]), and what the commit does is read from the
/// result, never from the GroupInfo sent: who is in the group after it,
/// whose devices it removes, and which KeyPackages it adds (the Welcome
/// may be for those only). The GroupInfo sent must then show the group
/// exactly as the commit leaves it (same context, tree and confirmation
/// tag): the server stores it for the next commit and hands it out with
/// the Welcome.
///
/// Without `before`, for the first commit of a group (the server has seen
/// nothing of it yet: its creator holds it alone at epoch 0), the GroupInfo
/// sent alone says who is in the group after the commit; such a commit
/// removes no one.
pub(crate) fn check_commit(
    commit: &[u8],
    epoch: u64,
    before: Option<PublicState>,
    group_info: &[u8],
    welcome: Option<&[u8]>,
) -> Result<CheckedCommit, CommitRefusal> {
    let message = protocol_message(commit)?;
    if message.wire_format() != WireFormat::PublicMessage
        || message.content_type() != ContentType::Commit
    {
        return Err(CommitRefusal::invalid(
            "commit is not an MLS public message holding a commit",
        ));
    }
    if message.is_external() {
        return Err(CommitRefusal::invalid(
            "a commit must come from a member of the group: joins from outside it \
             (external commits) are not accepted",
        ));
    }
    if message.epoch().as_u64() != epoch {
        return Err(CommitRefusal::invalid(format!(
            "the commit is built on epoch {}, not the epoch given ({epoch})",
            message.epoch().as_u64()
        )));
    }
    let group_id = message.group_id().as_slice().to_vec();
    if before
        .as_ref()
        .is_some_and(|before| before.group_id() != group_id)
    {
        return Err(CommitRefusal::OtherGroup);
    }

    let after = PublicState::read(group_info)?;
    if after.group_id() != group_id {
        return Err(CommitRefusal::invalid(
            "group_info is of another group than the commit",
        ));
    }
    if after.epoch() != epoch + 1 {
        return Err(CommitRefusal::invalid(
            "group_info is not of the epoch the commit leads to",
        ));
    }
    let welcomed = match welcome {
        None => Vec::new(),
        Some(welcome) => {
            let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(welcome)
                .map_err(|error| format!("welcome is not an MLS message: {error}"))?
                .extract()
            else {
                return Err(CommitRefusal::invalid("welcome does not hold a Welcome"));
            };
            welcome
                .secrets()
                .iter()
                .map(|secrets| secrets.new_member().as_slice().to_vec())
                .collect()
        }
    };

    let Some(mut state) = before else {
        return Ok(CheckedCommit {
            group_id,
            members: after.members()?,
            removed: Vec::new(),
            welcomed,
        });
    };
    let applied = state.apply(message)?;
    if !state.same_as(&after) {
        return Err(CommitRefusal::invalid(
            "group_info does not show the group as the commit leaves it \
             (its members, keys or transcript differ)",
        ));
    }
    if welcomed
        .iter()
        .any(|reference| !applied.added.contains(reference))
    {
        return Err(CommitRefusal::invalid(
            "welcome is for a KeyPackage the commit does not add",
        ));
    }
    Ok(CheckedCommit {
        group_id,
        members: state.members()?,
        removed: applied.removed,
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

    fn user(name: &str) -> Username {
        Username::parse(name).expect("a valid name")
    }

    fn device(name: &str) -> chat_e2e::Device {
        chat_e2e::Device::new(user(name)).expect("a device")
    }

    fn info(commit: &chat_e2e::OutgoingCommit) -> &[u8] {
        commit.group_info.as_deref().expect("a GroupInfo")
    }

    #[test]
    fn a_commit_is_read_from_its_processing_against_the_state_before_it() {
        let room = chat_domain::RoomName::public("vault").expect("a valid room");
        let mut alice = device("alice");
        let mut bob = device("bob");
        let mut carol = device("carol");
        alice.create_group(&room).expect("created");
        let add_bob = alice
            .add_members(&room, &bob.key_packages(1).expect("packages"))
            .expect("a commit");
        let first = check_commit(&add_bob.commit, 0, None, info(&add_bob), None)
            .expect("the first commit, checked through its GroupInfo");
        assert_eq!(first.members, [user("alice"), user("bob")]);
        alice.merge_pending_commit(&room).expect("merged");
        let before = || PublicState::read(info(&add_bob)).expect("the stored state");

        // Adding Carol: read from the commit, and her Welcome is for what
        // it adds.
        let add_carol = alice
            .add_members(&room, &carol.key_packages(1).expect("packages"))
            .expect("a commit");
        let checked = check_commit(
            &add_carol.commit,
            1,
            Some(before()),
            info(&add_carol),
            add_carol.welcome.as_deref(),
        )
        .expect("an honest commit");
        assert_eq!(checked.members, [user("alice"), user("bob"), user("carol")]);
        assert!(checked.removed.is_empty());
        assert_eq!(checked.welcomed.len(), 1);

        // The same commit behind another commit's GroupInfo, and a Welcome
        // with a commit that adds no one, are refused.
        alice.clear_pending_commit(&room).expect("cleared");
        let update = alice.self_update(&room).expect("a commit");
        let hidden = check_commit(&add_carol.commit, 1, Some(before()), info(&update), None);
        assert!(
            matches!(&hidden, Err(CommitRefusal::Invalid(why)) if why.starts_with("group_info")),
            "{hidden:?}"
        );
        let smuggled = check_commit(
            &update.commit,
            1,
            Some(before()),
            info(&update),
            add_carol.welcome.as_deref(),
        );
        assert!(
            matches!(&smuggled, Err(CommitRefusal::Invalid(why)) if why.starts_with("welcome")),
            "{smuggled:?}"
        );

        // A removal names the removed device's user; a commit of another
        // group is told apart.
        alice.clear_pending_commit(&room).expect("cleared");
        let removal = alice
            .remove_members(&room, &[user("bob")])
            .expect("a commit");
        let checked = check_commit(&removal.commit, 1, Some(before()), info(&removal), None)
            .expect("an honest removal");
        assert_eq!(checked.members, [user("alice")]);
        assert_eq!(checked.removed, [user("bob")]);
        let other_room = chat_domain::RoomName::public("other").expect("a valid room");
        let mut other = device("alice");
        other.create_group(&other_room).expect("created");
        let elsewhere = other.self_update(&other_room).expect("a commit");
        let refused = check_commit(&elsewhere.commit, 0, Some(before()), info(&elsewhere), None);
        assert_eq!(refused, Err(CommitRefusal::OtherGroup));
    }
}
