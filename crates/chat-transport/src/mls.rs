//! What the server checks of the public MLS objects clients give it, with
//! `openmls` and without any secret: a device's credential and signature
//! key, and its KeyPackages (signatures, lifetime, ciphersuite, and that
//! they belong to the device that uploads them), and its commits, which it
//! processes against the group's public state as the members will.
//!
//! The server never holds an MLS private key and never decrypts; the
//! clients' side of MLS lives in `chat-e2e`, which no server crate uses.

use std::sync::PoisonError;

use chat_domain::Username;
use chrono::{DateTime, Utc};
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::{self, Deserialize as _};
use openmls::prelude::{
    BasicCredential, Ciphersuite, ContentType, CreationFromExternalError, Credential, GroupId,
    LeafNodeIndex, MlsMessageBodyIn, MlsMessageIn, OpenMlsProvider, OpenMlsSignaturePublicKey,
    ProcessedMessageContent, ProposalStore, ProtocolMessage, ProtocolVersion, PublicGroup,
    Verifiable as _, WireFormat,
};
use openmls::treesync::errors::{LeafNodeValidationError, LifetimeError};
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
    /// The group's public state after the commit, to keep for the next
    /// one.
    pub(crate) state: Vec<u8>,
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
    /// The group's stored state cannot be rebuilt, so no commit can be
    /// processed against it: why.
    Stuck(String),
    /// The group's stored state cannot be read: a fault of the server's.
    Corrupt(String),
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

/// What the server keeps of a group between two commits starts with these
/// bytes when it is openmls's own record of the group's public state
/// ([`PublicState::to_stored`]). Anything else kept is a GroupInfo with its
/// ratchet tree, as servers kept it before. An MLS message starts with its
/// protocol version, `00 01`, so the two are never confused.
const STORED_STATE_TAG: &[u8] = b"\0chat-mls-public-group/1\0";

/// A group's public state at one epoch (its context, ratchet tree and
/// members), with the openmls store that holds it: openmls writes the
/// state there when it reads a GroupInfo and when it merges a commit, and
/// the server keeps what it wrote for the next commit.
struct PublicState {
    group: PublicGroup,
    provider: OpenMlsRustCrypto,
}

/// What a commit did to a group, as processing it showed.
#[derive(Debug)]
struct Applied {
    /// The references of the KeyPackages whose devices it adds.
    added: Vec<Vec<u8>>,
    /// The user of each device it removes.
    removed: Vec<Username>,
}

/// Why a GroupInfo could not be read as a group's public state.
#[derive(Debug)]
enum Unreadable {
    /// A device in the group holds the leaf of its KeyPackage, whose
    /// lifetime ended then.
    Expired(DateTime<Utc>),
    /// Any other failed check.
    Invalid(String),
}

/// The end of a KeyPackage's lifetime, in seconds since the epoch, as a
/// time.
fn time_of(seconds: u64) -> DateTime<Utc> {
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| DateTime::<Utc>::from_timestamp(seconds, 0))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Reads an MLS message holding a GroupInfo.
fn group_info_of(bytes: &[u8]) -> Result<VerifiableGroupInfo, String> {
    match MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|error| format!("group_info is not an MLS message: {error}"))?
        .extract()
    {
        MlsMessageBodyIn::GroupInfo(info) => Ok(info),
        _ => Err("group_info does not hold a GroupInfo".to_owned()),
    }
}

/// The TLS encoding of a value that always encodes.
fn encoded(value: &impl tls_codec::Serialize) -> Result<Vec<u8>, String> {
    value
        .tls_serialize_detached()
        .map_err(|error| format!("cannot be encoded: {error}"))
}

impl PublicState {
    /// Reads a GroupInfo with its ratchet tree, of a group in the encrypted
    /// rooms' ciphersuite, with every check openmls makes when it starts
    /// tracking a group (`PublicGroup::from_external`): the GroupInfo's
    /// signature against the signer's leaf, the tree's hashes, and every
    /// leaf, including the lifetime of a leaf that still is a KeyPackage's.
    fn read(info: VerifiableGroupInfo) -> Result<PublicState, Unreadable> {
        let tree = info
            .extensions()
            .ratchet_tree()
            .map(|extension| extension.ratchet_tree().clone())
            .ok_or_else(|| Unreadable::Invalid("group_info lacks its ratchet tree".to_owned()))?;
        let provider = OpenMlsRustCrypto::default();
        let (group, _) = PublicGroup::from_external(
            provider.crypto(),
            provider.storage(),
            tree,
            info,
            ProposalStore::default(),
        )
        .map_err(|error| match error {
            CreationFromExternalError::LeafNodeValidation(LeafNodeValidationError::Lifetime(
                LifetimeError::Expired { not_after, .. },
            )) => Unreadable::Expired(time_of(not_after)),
            other => Unreadable::Invalid(format!("group_info is not valid: {other}")),
        })?;
        if group.group_context().ciphersuite() != CIPHERSUITE {
            return Err(Unreadable::Invalid(format!(
                "encrypted rooms use {CIPHERSUITE:?}"
            )));
        }
        Ok(PublicState { group, provider })
    }

    /// Loads the state kept after the last commit accepted.
    ///
    /// Kept by [`PublicState::to_stored`], it is what openmls wrote, loaded
    /// as openmls loads its own groups, and checked no further: it was
    /// checked when it was read, and every commit since was processed
    /// against it. In particular, the lifetime of a leaf that is still a
    /// KeyPackage's (a device that has not updated its keys since it was
    /// added; 12 weeks by default) is not checked again: RFC 9420 (section
    /// 7.3) asks for current lifetimes in what a member sends, and only
    /// recommends the check for leaves received in a group's tree, whose
    /// lifetimes may be long past in a group that lives longer than its
    /// members' KeyPackages. Members processing commits do not check it
    /// either; openmls checks it when it starts tracking a group from a
    /// GroupInfo, with no way to skip it.
    ///
    /// A GroupInfo (kept before this format) is read with those checks:
    /// when the lifetime of a leaf in it has ended, the state cannot be
    /// rebuilt, and the commit is refused with [`CommitRefusal::Stuck`].
    fn load(stored: &[u8]) -> Result<PublicState, CommitRefusal> {
        let Some(record) = stored.strip_prefix(STORED_STATE_TAG) else {
            let info = group_info_of(stored).map_err(CommitRefusal::Corrupt)?;
            return PublicState::read(info).map_err(|why| match why {
                Unreadable::Expired(at) => CommitRefusal::Stuck(format!(
                    "the group's state was kept by an earlier version of the server, as a \
                     GroupInfo, and a device in it holds a KeyPackage whose lifetime ended at \
                     {at}: the server cannot rebuild that state, so the group takes no more \
                     commits; its members keep exchanging messages at its current epoch"
                )),
                Unreadable::Invalid(why) => CommitRefusal::Corrupt(why),
            });
        };
        let corrupt = || CommitRefusal::Corrupt("the stored public state is cut short".to_owned());
        let mut fields = Fields(record);
        let group_id = GroupId::from_slice(fields.take().ok_or_else(corrupt)?);
        let provider = OpenMlsRustCrypto::default();
        {
            let mut values = provider
                .storage()
                .values
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            while !fields.0.is_empty() {
                let key = fields.take().ok_or_else(corrupt)?;
                let value = fields.take().ok_or_else(corrupt)?;
                values.insert(key.to_vec(), value.to_vec());
            }
        }
        let group = PublicGroup::load(provider.storage(), &group_id)
            .map_err(|error| CommitRefusal::Corrupt(format!("the stored public state: {error}")))?
            .ok_or_else(|| {
                CommitRefusal::Corrupt("the stored public state holds no group".to_owned())
            })?;
        Ok(PublicState { group, provider })
    }

    /// What the server keeps of the state until the next commit: a tag,
    /// the group's id, then each entry openmls wrote to its store (a key
    /// and a value, each after its length in 8 bytes).
    fn to_stored(&self) -> Vec<u8> {
        let values = self
            .provider
            .storage()
            .values
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut entries: Vec<_> = values.iter().collect();
        entries.sort_unstable();
        let mut out = STORED_STATE_TAG.to_vec();
        put_field(&mut out, self.group_id());
        for (key, value) in entries {
            put_field(&mut out, key);
            put_field(&mut out, value);
        }
        out
    }

    fn group_id(&self) -> &[u8] {
        self.group.group_id().as_slice()
    }

    /// The user of each device in the group.
    fn members(&self) -> Result<Vec<Username>, String> {
        self.group
            .members()
            .map(|member| {
                user_of(&member.credential).map_err(|why| format!("a device in the group: {why}"))
            })
            .collect()
    }

    /// Checks that a GroupInfo shows this state: the same context (group
    /// id, epoch, tree hash, transcript hash, extensions), the same ratchet
    /// tree and the same confirmation tag, signed by a device in the group.
    ///
    /// This is what reading the GroupInfo and comparing would check, but
    /// leaves already in the tree are not judged again (see
    /// [`PublicState::load`]): they are this state's, which openmls built.
    fn check_shown_by(&self, info: &VerifiableGroupInfo) -> Result<(), String> {
        let differs = || {
            "group_info does not show the group as the commit leaves it \
             (its members, keys or transcript differ)"
                .to_owned()
        };
        let context = self.group.group_context();
        if info.group_context() != context {
            return Err(differs());
        }
        let tree = info
            .extensions()
            .ratchet_tree()
            .ok_or_else(|| "group_info lacks its ratchet tree".to_owned())?;
        if encoded(tree.ratchet_tree())? != encoded(&self.group.export_ratchet_tree())? {
            return Err(differs());
        }
        // What a GroupInfo signs is its context, its extensions, the
        // confirmation tag and the signer's leaf index, in that order
        // (RFC 9420, section 12.4.3); openmls lets the tag and the signer
        // be read only from there.
        let mut shown = encoded(context)?;
        shown.extend(encoded(info.extensions())?);
        shown.extend(encoded(self.group.confirmation_tag())?);
        let signed = info
            .unsigned_payload()
            .map_err(|error| format!("group_info cannot be encoded: {error}"))?;
        let signer = signed
            .strip_prefix(shown.as_slice())
            .and_then(|rest| <[u8; 4]>::try_from(rest).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(differs)?;
        let leaf = self
            .group
            .leaf(LeafNodeIndex::new(signer))
            .ok_or_else(|| "group_info is signed by no device in the group".to_owned())?;
        let key = OpenMlsSignaturePublicKey::from_signature_key(
            leaf.signature_key().clone(),
            CIPHERSUITE.signature_algorithm(),
        );
        info.verify_no_out(self.provider.crypto(), &key)
            .map_err(|_| "group_info's signature is not valid".to_owned())
    }

    /// Processes a commit of the group's epoch with openmls, as a delivery
    /// service does (its framing, its sender's signature, its proposals and
    /// update path, with the leaves it brings checked as openmls checks
    /// them, lifetimes included; no secret is needed nor known), and
    /// merges it: the state moves to the next epoch.
    fn apply(&mut self, commit: ProtocolMessage) -> Result<Applied, String> {
        let processed = self
            .group
            .process_message(self.provider.crypto(), commit)
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
                    .hash_ref(self.provider.crypto())
                    .map(|reference| reference.as_slice().to_vec())
                    .map_err(|error| format!("an added KeyPackage has no reference: {error}"))
            })
            .collect::<Result<_, _>>()?;
        // The removed devices' credentials are in the tree before the merge.
        let removed = staged
            .remove_proposals()
            .map(|queued| {
                let leaf = self
                    .group
                    .leaf(queued.remove_proposal().removed())
                    .ok_or_else(|| "the commit removes an empty leaf".to_owned())?;
                user_of(leaf.credential()).map_err(|why| format!("a removed device: {why}"))
            })
            .collect::<Result<_, _>>()?;
        self.group
            .merge_commit(self.provider.storage(), *staged)
            .map_err(|error| format!("the commit cannot be merged: {error}"))?;
        Ok(Applied { added, removed })
    }
}

/// Appends a field of the stored state: its length in 8 bytes, then it.
fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

/// The fields of a stored state, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self) -> Option<&'a [u8]> {
        let (length, rest) = self.0.split_first_chunk::<8>()?;
        let length = usize::try_from(u64::from_be_bytes(*length)).ok()?;
        let (field, rest) = rest.split_at_checked(length)?;
        self.0 = rest;
        Some(field)
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
/// of the next epoch of the same group.
///
/// `stored` is the group's public state at `epoch`, as the server kept it
/// after the commit that led there ([`CheckedCommit::state`]). The commit
/// is processed against it and merged ([`PublicState`]), and what the
/// commit does is read from the result, never from the GroupInfo sent: who
/// is in the group after it, whose devices it removes, and which
/// KeyPackages it adds (the Welcome may be for those only). The GroupInfo
/// sent must then show the group exactly as the commit leaves it (same
/// context, tree and confirmation tag, signed by a device in the group):
/// the server hands it out with the Welcome.
///
/// Without `stored`, for the first commit of a group (the server has seen
/// nothing of it yet: its creator holds it alone at epoch 0), the GroupInfo
/// sent alone says who is in the group after the commit, read with every
/// check openmls makes; such a commit removes no one.
pub(crate) fn check_commit(
    commit: &[u8],
    epoch: u64,
    stored: Option<&[u8]>,
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

    let info = group_info_of(group_info)?;
    if info.group_id().as_slice() != group_id {
        return Err(CommitRefusal::invalid(
            "group_info is of another group than the commit",
        ));
    }
    if info.epoch().as_u64() != epoch + 1 {
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

    let Some(stored) = stored else {
        let after = PublicState::read(info).map_err(|why| match why {
            Unreadable::Expired(at) => CommitRefusal::invalid(format!(
                "group_info is not valid: a device in it holds a KeyPackage whose lifetime \
                 ended at {at}; the first commit of a group must show every device with a \
                 current KeyPackage, so make the group again with current keys"
            )),
            Unreadable::Invalid(why) => CommitRefusal::Invalid(why),
        })?;
        return Ok(CheckedCommit {
            group_id,
            members: after.members()?,
            removed: Vec::new(),
            welcomed,
            state: after.to_stored(),
        });
    };
    let mut state = PublicState::load(stored)?;
    if state.group_id() != group_id {
        return Err(CommitRefusal::OtherGroup);
    }
    let applied = state.apply(message)?;
    state.check_shown_by(&info)?;
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
        state: state.to_stored(),
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

    /// Alice's device, with the group of the room `vault` that her first
    /// commit (returned, with what checking it through its GroupInfo gave)
    /// made with Bob's device, added from `package`.
    fn alice_adds_bob(
        package: Vec<u8>,
    ) -> (
        chat_domain::RoomName,
        chat_e2e::Device,
        chat_e2e::OutgoingCommit,
        CheckedCommit,
    ) {
        let room = chat_domain::RoomName::public("vault").expect("a valid room");
        let mut alice = device("alice");
        alice.create_group(&room).expect("created");
        let add_bob = alice.add_members(&room, &[package]).expect("a commit");
        let first = check_commit(&add_bob.commit, 0, None, info(&add_bob), None)
            .expect("the first commit, checked through its GroupInfo");
        assert_eq!(first.members, [user("alice"), user("bob")]);
        alice.merge_pending_commit(&room).expect("merged");
        (room, alice, add_bob, first)
    }

    /// A KeyPackage of a new device of `name`.
    fn key_package(name: &str) -> Vec<u8> {
        device(name)
            .key_packages(1)
            .expect("packages")
            .pop()
            .expect("a package")
    }

    #[test]
    fn a_commit_is_read_from_its_processing_against_the_state_before_it() {
        let (room, mut alice, add_bob, first) = alice_adds_bob(key_package("bob"));
        let mut carol = device("carol");
        let before = || Some(first.state.as_slice());

        // Adding Carol: read from the commit, and her Welcome is for what
        // it adds.
        let add_carol = alice
            .add_members(&room, &carol.key_packages(1).expect("packages"))
            .expect("a commit");
        let checked = check_commit(
            &add_carol.commit,
            1,
            before(),
            info(&add_carol),
            add_carol.welcome.as_deref(),
        )
        .expect("an honest commit");
        assert_eq!(checked.members, [user("alice"), user("bob"), user("carol")]);
        assert!(checked.removed.is_empty());
        assert_eq!(checked.welcomed.len(), 1);
        // A GroupInfo kept as the state by an earlier server is read as
        // such, to the same result.
        let from_group_info = check_commit(
            &add_carol.commit,
            1,
            Some(info(&add_bob)),
            info(&add_carol),
            add_carol.welcome.as_deref(),
        )
        .expect("checked against the GroupInfo kept");
        assert_eq!(from_group_info.members, checked.members);
        assert_eq!(from_group_info.state, checked.state);

        // The same commit behind another commit's GroupInfo, and a Welcome
        // with a commit that adds no one, are refused.
        alice.clear_pending_commit(&room).expect("cleared");
        let update = alice.self_update(&room).expect("a commit");
        let hidden = check_commit(&add_carol.commit, 1, before(), info(&update), None);
        assert!(
            matches!(&hidden, Err(CommitRefusal::Invalid(why)) if why.starts_with("group_info")),
            "{hidden:?}"
        );
        let smuggled = check_commit(
            &update.commit,
            1,
            before(),
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
        let checked = check_commit(&removal.commit, 1, before(), info(&removal), None)
            .expect("an honest removal");
        assert_eq!(checked.members, [user("alice")]);
        assert_eq!(checked.removed, [user("bob")]);
        let other_room = chat_domain::RoomName::public("other").expect("a valid room");
        let mut other = device("alice");
        other.create_group(&other_room).expect("created");
        let elsewhere = other.self_update(&other_room).expect("a commit");
        let refused = check_commit(&elsewhere.commit, 0, before(), info(&elsewhere), None);
        assert_eq!(refused, Err(CommitRefusal::OtherGroup));
    }

    /// A KeyPackage of a new device of `name` whose lifetime ends
    /// `seconds` from now, and a time (in seconds since the epoch) at or
    /// after that end.
    fn short_lived_key_package(name: &str, seconds: u64) -> (Vec<u8>, u64) {
        let package = device(name)
            .key_package_valid_for(seconds)
            .expect("a KeyPackage");
        let now = u64::try_from(Utc::now().timestamp()).expect("after 1970");
        (package, now + seconds)
    }

    /// Waits until the clock has passed `end` (seconds since the epoch).
    fn wait_past(end: u64) {
        while u64::try_from(Utc::now().timestamp()).expect("after 1970") <= end {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    #[test]
    fn a_device_whose_key_package_lifetime_ended_in_the_group_does_not_stop_its_commits() {
        // Bob's device is added and never updates its keys: its leaf keeps
        // its KeyPackage's lifetime, which ends two seconds from now.
        let (package, end) = short_lived_key_package("bob", 2);
        let (room, mut alice, add_bob, first) = alice_adds_bob(package);
        let mut carol = device("carol");
        wait_past(end);

        // openmls no longer reads a GroupInfo of the group: neither the
        // first commit's, sent now, nor one kept by an earlier server.
        let late = check_commit(&add_bob.commit, 0, None, info(&add_bob), None);
        assert!(
            matches!(&late, Err(CommitRefusal::Invalid(why)) if why.contains("lifetime ended")),
            "{late:?}"
        );
        let update = alice.self_update(&room).expect("a commit");
        let kept_before =
            check_commit(&update.commit, 1, Some(info(&add_bob)), info(&update), None);
        assert!(
            matches!(&kept_before, Err(CommitRefusal::Stuck(why)) if why.contains("lifetime ended")),
            "{kept_before:?}"
        );
        alice.clear_pending_commit(&room).expect("cleared");

        // The state the server kept loads as it is: Alice updates her keys,
        // then adds Carol, and Bob stays in the group throughout.
        let update = alice.self_update(&room).expect("a commit");
        let updated = check_commit(&update.commit, 1, Some(&first.state), info(&update), None)
            .expect("a commit of a group holding Bob's old leaf");
        assert_eq!(updated.members, [user("alice"), user("bob")]);
        alice.merge_pending_commit(&room).expect("merged");
        let add_carol = alice
            .add_members(&room, &carol.key_packages(1).expect("packages"))
            .expect("a commit");
        let added = check_commit(
            &add_carol.commit,
            2,
            Some(&updated.state),
            info(&add_carol),
            add_carol.welcome.as_deref(),
        )
        .expect("an addition to a group holding Bob's old leaf");
        assert_eq!(added.members, [user("alice"), user("bob"), user("carol")]);
        assert_eq!(added.welcomed.len(), 1);

        // A leaf the commit brings is still checked: a KeyPackage whose
        // lifetime ended cannot be added.
        alice.clear_pending_commit(&room).expect("cleared");
        let (package, end) = short_lived_key_package("dave", 1);
        let add_dave = alice.add_members(&room, &[package]).expect("a commit");
        wait_past(end);
        let refused = check_commit(
            &add_dave.commit,
            2,
            Some(&updated.state),
            info(&add_dave),
            None,
        );
        assert!(
            matches!(&refused, Err(CommitRefusal::Invalid(why)) if why.starts_with("the commit does not apply")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_group_info_must_carry_the_states_tree_tag_and_a_members_signature() {
        let (room, mut alice, _, first) = alice_adds_bob(key_package("bob"));
        let update = alice.self_update(&room).expect("a commit");
        let honest = info(&update).to_vec();
        check_commit(&update.commit, 1, Some(&first.state), &honest, None)
            .expect("the honest GroupInfo");

        // The state the commit leads to, to find its parts in the GroupInfo.
        let mut after = PublicState::load(&first.state).expect("loaded");
        after
            .apply(protocol_message(&update.commit).expect("a message"))
            .expect("applied");
        let tag = encoded(after.group.confirmation_tag()).expect("encoded");
        let leaf_key = encoded(
            after
                .group
                .leaf(LeafNodeIndex::new(0))
                .expect("Alice's leaf")
                .encryption_key(),
        )
        .expect("encoded");
        let flipped = |part: &[u8], which: usize| {
            let mut bytes = honest.clone();
            let at = bytes
                .windows(part.len())
                .position(|window| window == part)
                .expect("the part is in the GroupInfo");
            bytes[at + which] ^= 1;
            bytes
        };
        for (forged, why) in [
            (flipped(&tag, tag.len() - 1), "group_info does not show"),
            (flipped(&leaf_key, 5), "group_info does not show"),
            (flipped(&honest, honest.len() - 1), "group_info's signature"),
        ] {
            let refused = check_commit(&update.commit, 1, Some(&first.state), &forged, None);
            assert!(
                matches!(&refused, Err(CommitRefusal::Invalid(found)) if found.starts_with(why)),
                "{why}: {refused:?}"
            );
        }
    }
}
