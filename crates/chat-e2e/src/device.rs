//! [`Device`]: one installation's MLS identity and its rooms' groups.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use chat_domain::{RoomName, Username};
use chat_protocol::mls::{self as wire, DeviceRegistration, KeyPackageUpload};

use crate::identity::Fingerprint;
use crate::snapshot::{SavedRoom, Snapshot};
use crate::state_file::{FileKey, KdfParams, StateFile};
use crate::{E2eError, Incoming};

/// The one MLS ciphersuite of encrypted rooms: X25519 key exchange,
/// AES-128-GCM, SHA-256 and Ed25519 signatures.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// How many past epochs' keys a group keeps to read application messages
/// that were sent just before a commit but reach the device after it. A
/// trade-off: it lets a message sent while a commit was in flight still be
/// read, and keeps those few epochs' keys a little longer than strictly
/// needed.
pub const PAST_EPOCHS_KEPT: usize = 2;

/// Prefix of the group ids [`Device::create_group`] derives from room names.
const GROUP_ID_PREFIX: &[u8] = b"chat-e2e room:";

/// A change to a room's group that a commit makes: what to build again when
/// another commit won the race for the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add the devices of these KeyPackages (each an MLS message as
    /// claimed from the server, decoded from base64), leaving out those
    /// already in the group.
    Add(Vec<Vec<u8>>),
    /// Remove every device of these users (other than this device).
    Remove(Vec<Username>),
    /// Refresh this device's own leaf key.
    Update,
    /// Remove these devices, named by their ids ([`Fingerprint::device_id`]):
    /// devices retired from the server whose leaves are still in the group.
    /// This device never removes itself.
    RemoveDevices(Vec<String>),
}

/// A commit to upload (`POST /api/rooms/{room}/mls/commits`), and the
/// Welcome and GroupInfo that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingCommit {
    /// The epoch the commit builds on.
    pub epoch: u64,
    /// The commit, an MLS public message.
    pub commit: Vec<u8>,
    /// The Welcome for the devices it adds, if it adds any.
    pub welcome: Option<Vec<u8>>,
    /// The group's GroupInfo after the commit, with its ratchet tree.
    pub group_info: Option<Vec<u8>>,
}

impl OutgoingCommit {
    /// The body of the upload, binary fields in base64.
    pub fn to_upload(&self) -> wire::CommitUpload {
        wire::CommitUpload {
            epoch: self.epoch,
            commit: wire::encode(&self.commit),
            welcome: self.welcome.as_ref().map(wire::encode),
            group_info: self.group_info.as_ref().map(wire::encode),
        }
    }
}

/// A device of a room's group: who it belongs to and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The user the device belongs to, as its credential names them.
    pub username: Username,
    /// The device's Ed25519 signature public key.
    pub signature_key: Vec<u8>,
}

impl GroupMember {
    /// The fingerprint of the device's key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.signature_key)
    }
}

/// How a merged commit changed a group's members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Devices added.
    pub added: Vec<GroupMember>,
    /// Devices removed.
    pub removed: Vec<GroupMember>,
    /// Whether this device was among those removed: it can no longer read
    /// or send in the room.
    pub removed_this_device: bool,
}

/// What joining a group from a Welcome gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The user whose device sent the Welcome.
    pub by: Username,
    /// The group's epoch.
    pub epoch: u64,
    /// The group's devices, this one included.
    pub members: Vec<GroupMember>,
}

/// A room's group as this device holds it.
#[derive(Debug)]
struct Room {
    group: MlsGroup,
    /// The change of this device's pending commit, kept so that it can be
    /// made again if another commit is accepted first.
    pending: Option<Change>,
}

/// One user's MLS identity on one installation, and its encrypted rooms.
///
/// A device has a basic credential naming its user and an Ed25519
/// signature key pair, created once. It hands out KeyPackages so others
/// can add it to rooms, creates and joins one MLS group per room, encrypts
/// and decrypts the room's messages, and commits membership changes.
/// Commits and proposals travel as MLS public messages, so the server can
/// see whom a commit adds or removes; application messages are always
/// encrypted.
///
/// A device keeps everything in memory; [`Device::save`] writes it to an
/// encrypted file and [`Device::load`] reads it back. Save after every
/// change that matters (a commit merged, a Welcome joined, KeyPackages
/// generated): a device restored from an older file has lost the keys of
/// later epochs.
///
/// # Commits and the server
///
/// A commit made with [`Device::commit`] (or [`Device::add_members`],
/// [`Device::remove_members`], [`Device::self_update`]) stays *pending*
/// until the server answers its upload:
///
/// - accepted: call [`Device::merge_pending_commit`] (or process the commit
///   when the server sends it back; [`Device::process`] merges it then);
/// - refused as stale (another commit of the same epoch was accepted
///   first): call [`Device::clear_pending_commit`], which returns the
///   change, process the accepted commit, and [`Device::commit`] the change
///   again on the new epoch. Processing the other commit first also works:
///   [`Incoming::Commit::superseded`] then returns the change.
///
/// While a commit is pending, the device cannot send messages in that
/// room.
pub struct Device {
    username: Username,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    rooms: BTreeMap<RoomName, Room>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("username", &self.username)
            .field("device_id", &self.device_id())
            .field("rooms", &self.rooms.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Creates a new device for `username`: a fresh Ed25519 key pair and a
    /// basic credential carrying the name.
    pub fn new(username: Username) -> Result<Device, E2eError> {
        let provider = OpenMlsRustCrypto::default();
        let signer =
            SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(E2eError::internal)?;
        signer
            .store(provider.storage())
            .map_err(E2eError::internal)?;
        Ok(Device::assemble(username, provider, signer))
    }

    fn assemble(
        username: Username,
        provider: OpenMlsRustCrypto,
        signer: SignatureKeyPair,
    ) -> Device {
        let credential = CredentialWithKey {
            credential: BasicCredential::new(username.as_str().as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Device {
            username,
            provider,
            signer,
            credential,
            rooms: BTreeMap::new(),
        }
    }

    /// The user this device belongs to.
    pub fn username(&self) -> &Username {
        &self.username
    }

    /// The device's Ed25519 signature public key.
    pub fn signature_key(&self) -> &[u8] {
        self.signer.public()
    }

    /// The fingerprint of the device's signature key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.signature_key())
    }

    /// The device's id: derived from its signature key, see
    /// [`Fingerprint::device_id`].
    pub fn device_id(&self) -> String {
        self.fingerprint().device_id()
    }

    /// The device's credential, TLS-serialized as MLS defines it.
    pub fn credential(&self) -> Result<Vec<u8>, E2eError> {
        self.credential
            .credential
            .tls_serialize_detached()
            .map_err(E2eError::internal)
    }

    /// The body that registers this device (`POST /api/mls/devices`).
    pub fn registration(&self) -> Result<DeviceRegistration, E2eError> {
        Ok(DeviceRegistration {
            device_id: self.device_id(),
            credential: wire::encode(self.credential()?),
            signature_key: wire::encode(self.signature_key()),
        })
    }

    /// Generates `count` ordinary KeyPackages, each good for joining one
    /// group once. The device keeps their private keys until a Welcome
    /// uses them. KeyPackages expire after about twelve weeks.
    pub fn key_packages(&mut self, count: usize) -> Result<Vec<Vec<u8>>, E2eError> {
        (0..count).map(|_| self.key_package(false, None)).collect()
    }

    /// Generates an ordinary KeyPackage whose lifetime ends `seconds` from
    /// now (those of [`Device::key_packages`] last about twelve weeks). Its
    /// leaf keeps that lifetime in a group it is added to until the device
    /// updates its keys there.
    pub fn key_package_valid_for(&mut self, seconds: u64) -> Result<Vec<u8>, E2eError> {
        self.key_package(false, Some(Lifetime::new(seconds)))
    }

    /// Generates a last-resort KeyPackage (it carries the last-resort
    /// extension): the server hands it out when the ordinary ones are used
    /// up, and the device accepts Welcomes for it any number of times.
    pub fn last_resort_key_package(&mut self) -> Result<Vec<u8>, E2eError> {
        self.key_package(true, None)
    }

    /// The body of `POST /api/mls/key-packages`: `count` new ordinary
    /// KeyPackages and a new last-resort one.
    pub fn key_package_upload(&mut self, count: usize) -> Result<KeyPackageUpload, E2eError> {
        let key_packages = self.key_packages(count)?;
        let last_resort = self.last_resort_key_package()?;
        Ok(KeyPackageUpload {
            device_id: self.device_id(),
            key_packages: key_packages.iter().map(wire::encode).collect(),
            last_resort: Some(wire::encode(last_resort)),
        })
    }

    fn key_package(
        &mut self,
        last_resort: bool,
        lifetime: Option<Lifetime>,
    ) -> Result<Vec<u8>, E2eError> {
        let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        if let Some(lifetime) = lifetime {
            builder = builder.key_package_lifetime(lifetime);
        }
        let bundle = builder
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(E2eError::internal)?;
        MlsMessageOut::from(bundle.key_package().clone())
            .to_bytes()
            .map_err(E2eError::internal)
    }

    /// The group id [`Device::create_group`] gives a room's group.
    pub fn group_id_of(room: &RoomName) -> Vec<u8> {
        [GROUP_ID_PREFIX, room.as_str().as_bytes()].concat()
    }

    /// Creates the room's group with this device as its only member, its id
    /// derived from the room's name ([`Device::group_id_of`]).
    pub fn create_group(&mut self, room: &RoomName) -> Result<(), E2eError> {
        self.create_group_with_id(room, &Device::group_id_of(room))
    }

    /// Creates the room's group with the given group id.
    pub fn create_group_with_id(
        &mut self,
        room: &RoomName,
        group_id: &[u8],
    ) -> Result<(), E2eError> {
        if self.rooms.contains_key(room) {
            return Err(E2eError::RoomExists(room.clone()));
        }
        let group = MlsGroup::builder()
            .with_group_id(GroupId::from_slice(group_id))
            .ciphersuite(CIPHERSUITE)
            .with_wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(PAST_EPOCHS_KEPT)
            .with_capabilities(capabilities())
            .build(&self.provider, &self.signer, self.credential.clone())
            .map_err(|error| match error {
                NewGroupError::GroupAlreadyExists => E2eError::RoomExists(room.clone()),
                other => E2eError::internal(other),
            })?;
        self.rooms.insert(
            room.clone(),
            Room {
                group,
                pending: None,
            },
        );
        Ok(())
    }

    /// The rooms this device has a group for.
    pub fn rooms(&self) -> impl Iterator<Item = &RoomName> {
        self.rooms.keys()
    }

    /// The epoch of the room's group.
    pub fn epoch(&self, room: &RoomName) -> Result<u64, E2eError> {
        Ok(self.room(room)?.group.epoch().as_u64())
    }

    /// The devices of the room's group, this one included.
    pub fn members(&self, room: &RoomName) -> Result<Vec<GroupMember>, E2eError> {
        self.room(room)?
            .group
            .members()
            .map(|member| group_member(&member.credential, &member.signature_key))
            .collect()
    }

    /// Whether a commit of this device waits for the server's answer in
    /// the room.
    pub fn has_pending_commit(&self, room: &RoomName) -> Result<bool, E2eError> {
        Ok(self.room(room)?.group.pending_commit().is_some())
    }

    /// Adds the devices of claimed KeyPackages to the room's group; those
    /// already in it are left out, and [`E2eError::NothingToCommit`] says
    /// that none was left. See [`Device::commit`].
    pub fn add_members(
        &mut self,
        room: &RoomName,
        key_packages: &[Vec<u8>],
    ) -> Result<OutgoingCommit, E2eError> {
        self.commit(room, Change::Add(key_packages.to_vec()))
    }

    /// Removes every device of these users from the room's group (of this
    /// device's own user, every device but this one). See
    /// [`Device::commit`].
    pub fn remove_members(
        &mut self,
        room: &RoomName,
        users: &[Username],
    ) -> Result<OutgoingCommit, E2eError> {
        self.commit(room, Change::Remove(users.to_vec()))
    }

    /// Refreshes this device's own leaf key in the room's group, which
    /// heals the group should the device's earlier keys have leaked. See
    /// [`Device::commit`].
    pub fn self_update(&mut self, room: &RoomName) -> Result<OutgoingCommit, E2eError> {
        self.commit(room, Change::Update)
    }

    /// Makes a commit with the change, built on the group's current epoch.
    /// The commit is pending until [`Device::merge_pending_commit`] (the
    /// server accepted it) or [`Device::clear_pending_commit`] (it was
    /// refused); see the type's documentation.
    pub fn commit(&mut self, room: &RoomName, change: Change) -> Result<OutgoingCommit, E2eError> {
        let provider = &self.provider;
        let signer = &self.signer;
        let state = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| E2eError::UnknownRoom(room.clone()))?;
        if !state.group.is_active() {
            return Err(E2eError::Removed(room.clone()));
        }
        if state.group.pending_commit().is_some() {
            return Err(E2eError::PendingCommit(room.clone()));
        }
        let own_index = state.group.own_leaf_index();
        let epoch = state.group.epoch().as_u64();
        let (commit, welcome, group_info) = match &change {
            Change::Add(key_packages) => {
                // A device already in the group is not added twice: a
                // change made again after another commit won the race may
                // find some (or all) of its devices added meanwhile.
                let present: Vec<Vec<u8>> = state
                    .group
                    .members()
                    .map(|member| member.signature_key)
                    .collect();
                let key_packages: Vec<KeyPackage> = key_packages
                    .iter()
                    .map(|bytes| validate_key_package(provider, bytes))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|package| {
                        let key = package.leaf_node().signature_key().as_slice();
                        !present.iter().any(|held| held.as_slice() == key)
                    })
                    .collect();
                if key_packages.is_empty() {
                    return Err(E2eError::NothingToCommit);
                }
                let (commit, welcome, group_info) = state
                    .group
                    .add_members(provider, signer, &key_packages)
                    .map_err(E2eError::rejected)?;
                (commit, Some(welcome), group_info)
            }
            Change::Remove(users) => {
                if users.is_empty() {
                    return Err(E2eError::NothingToCommit);
                }
                let mut leaves = Vec::new();
                for user in users {
                    let found: Vec<LeafNodeIndex> = state
                        .group
                        .members()
                        .filter(|member| member.index != own_index)
                        .filter(|member| {
                            username_of(&member.credential).is_ok_and(|name| name.same_user(user))
                        })
                        .map(|member| member.index)
                        .collect();
                    if found.is_empty() {
                        return Err(E2eError::NotAMember(user.clone()));
                    }
                    leaves.extend(found);
                }
                state
                    .group
                    .remove_members(provider, signer, &leaves)
                    .map_err(E2eError::rejected)?
            }
            Change::RemoveDevices(devices) => {
                let leaves: Vec<LeafNodeIndex> = state
                    .group
                    .members()
                    .filter(|member| member.index != own_index)
                    .filter(|member| {
                        devices.contains(&Fingerprint::of(&member.signature_key).device_id())
                    })
                    .map(|member| member.index)
                    .collect();
                if leaves.is_empty() {
                    return Err(E2eError::NothingToCommit);
                }
                state
                    .group
                    .remove_members(provider, signer, &leaves)
                    .map_err(E2eError::rejected)?
            }
            Change::Update => {
                let (commit, welcome, group_info) = state
                    .group
                    .self_update(provider, signer, LeafNodeParameters::default())
                    .map_err(E2eError::rejected)?
                    .into_contents();
                (
                    commit,
                    welcome.map(|welcome| {
                        MlsMessageOut::from_welcome(welcome, ProtocolVersion::Mls10)
                    }),
                    group_info,
                )
            }
        };
        state.pending = Some(change);
        Ok(OutgoingCommit {
            epoch,
            commit: commit.to_bytes().map_err(E2eError::internal)?,
            welcome: welcome
                .map(|welcome| welcome.to_bytes())
                .transpose()
                .map_err(E2eError::internal)?,
            group_info: group_info
                .map(|info| MlsMessageOut::from(info).to_bytes())
                .transpose()
                .map_err(E2eError::internal)?,
        })
    }

    /// Applies this device's pending commit once the server accepted it,
    /// moving the group to the next epoch.
    pub fn merge_pending_commit(&mut self, room: &RoomName) -> Result<MembershipChange, E2eError> {
        let provider = &self.provider;
        let state = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| E2eError::UnknownRoom(room.clone()))?;
        let change = match state.group.pending_commit() {
            Some(staged) => describe_commit(&state.group, staged)?,
            None => return Err(E2eError::NoPendingCommit(room.clone())),
        };
        state
            .group
            .merge_pending_commit(provider)
            .map_err(E2eError::internal)?;
        state.pending = None;
        Ok(change)
    }

    /// Drops this device's pending commit after the server refused it, and
    /// returns its change so that it can be committed again on the new
    /// epoch. `None` when no commit was pending.
    pub fn clear_pending_commit(&mut self, room: &RoomName) -> Result<Option<Change>, E2eError> {
        let provider = &self.provider;
        let state = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| E2eError::UnknownRoom(room.clone()))?;
        state
            .group
            .clear_pending_commit(provider.storage())
            .map_err(E2eError::internal)?;
        Ok(state.pending.take())
    }

    /// Joins a room's group from a Welcome (as listed by
    /// `GET /api/mls/welcomes`). Whatever group this device had for the
    /// room before is replaced, unless it is the Welcome's own group at the
    /// Welcome's epoch or a later one: that Welcome is a replay, or would
    /// roll the group back, and is refused with
    /// [`E2eError::StaleWelcome`], the group left as it was. A Welcome into
    /// a group whose id was derived from another room's name
    /// ([`Device::group_id_of`]) is refused.
    ///
    /// An ordinary KeyPackage's private keys are erased by its first
    /// Welcome; a last-resort one's are kept. The KeyPackage lifetimes of
    /// the leaves already in the group are not checked: a member who has
    /// not updated its keys since it was added may have outlived its own.
    pub fn join(&mut self, room: &RoomName, welcome: &[u8]) -> Result<Joined, E2eError> {
        let welcome = match parse_message(welcome)?.extract() {
            MlsMessageBodyIn::Welcome(welcome) => welcome,
            _ => return Err(E2eError::Malformed("expected a Welcome".to_owned())),
        };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .max_past_epochs(PAST_EPOCHS_KEPT)
            .build();
        // The lifetimes of the leaves already in the group's tree are not
        // judged: a member who has not updated its keys since it was added
        // keeps its KeyPackage's leaf, whose lifetime may have ended while
        // it stays a member, and the members already in the group go on
        // without checking it. RFC 9420 (section 7.3) leaves this check on
        // a received tree to the application. The KeyPackage this device is
        // added with was checked when it was made and when it was added.
        let staged = StagedWelcome::build_from_welcome(&self.provider, &config, welcome)
            .map_err(welcome_error)?
            .replace_old_group()
            .skip_lifetime_validation()
            .build()
            .map_err(welcome_error)?;
        // A group id derived from a room's name must be this room's: the
        // server cannot pass one room's Welcome off as another's.
        let group_id = staged.group_context().group_id().as_slice();
        if group_id.starts_with(GROUP_ID_PREFIX) && group_id != Device::group_id_of(room) {
            return Err(E2eError::Rejected(
                "the Welcome is for another room's group".to_owned(),
            ));
        }
        if self
            .rooms
            .iter()
            .any(|(other, state)| other != room && state.group.group_id().as_slice() == group_id)
        {
            return Err(E2eError::Rejected(
                "the Welcome is for the group of another room of this device".to_owned(),
            ));
        }
        // Staging wrote nothing of the group yet: refused here, the group
        // this device holds stays as it is.
        let epoch = staged.group_context().epoch().as_u64();
        if let Some(held) = self.rooms.get(room)
            && held.group.group_id().as_slice() == group_id
            && held.group.epoch().as_u64() >= epoch
        {
            return Err(E2eError::StaleWelcome {
                room: room.clone(),
                welcome: epoch,
                held: held.group.epoch().as_u64(),
            });
        }
        let sender = staged.welcome_sender().map_err(E2eError::internal)?;
        let by = username_of(sender.credential())?;
        let group = staged.into_group(&self.provider).map_err(welcome_error)?;

        if let Some(mut old) = self.rooms.remove(room)
            && old.group.group_id() != group.group_id()
        {
            old.group
                .delete(self.provider.storage())
                .map_err(E2eError::internal)?;
        }
        let joined = Joined {
            by,
            epoch: group.epoch().as_u64(),
            members: group
                .members()
                .map(|member| group_member(&member.credential, &member.signature_key))
                .collect::<Result<_, _>>()?,
        };
        self.rooms.insert(
            room.clone(),
            Room {
                group,
                pending: None,
            },
        );
        Ok(joined)
    }

    /// Forgets the room's group: its keys are erased from this device.
    pub fn forget_room(&mut self, room: &RoomName) -> Result<(), E2eError> {
        let mut state = self
            .rooms
            .remove(room)
            .ok_or_else(|| E2eError::UnknownRoom(room.clone()))?;
        state
            .group
            .delete(self.provider.storage())
            .map_err(E2eError::internal)
    }

    /// Encrypts an application message for the room's group.
    pub fn encrypt(&mut self, room: &RoomName, plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        let provider = &self.provider;
        let signer = &self.signer;
        let state = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| E2eError::UnknownRoom(room.clone()))?;
        if !state.group.is_active() {
            return Err(E2eError::Removed(room.clone()));
        }
        if state.group.pending_commit().is_some() {
            return Err(E2eError::PendingCommit(room.clone()));
        }
        state
            .group
            .create_message(provider, signer, plaintext)
            .map_err(E2eError::internal)?
            .to_bytes()
            .map_err(E2eError::internal)
    }

    /// Processes a message of the room's group as the server relays it: an
    /// application message, a proposal or a commit. A commit is checked
    /// and merged at once; process a room's messages in the order the
    /// server numbered them.
    pub fn process(&mut self, room: &RoomName, message: &[u8]) -> Result<Incoming, E2eError> {
        let provider = &self.provider;
        let state = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| E2eError::UnknownRoom(room.clone()))?;
        if !state.group.is_active() {
            return Err(E2eError::Removed(room.clone()));
        }
        let message = parse_message(message)?
            .try_into_protocol_message()
            .map_err(|_| E2eError::Malformed("expected a group message".to_owned()))?;
        // Only members commit and propose: a join from outside (an external
        // commit) would add a device that no member's commit names.
        if message.is_external() {
            return Err(E2eError::Rejected(
                "messages from outside the group are not accepted".to_owned(),
            ));
        }
        if message.group_id() != state.group.group_id() {
            return Err(E2eError::Rejected(
                "the message belongs to another group".to_owned(),
            ));
        }
        let epoch = message.epoch().as_u64();
        let current = state.group.epoch().as_u64();
        if epoch > current {
            return Err(E2eError::FutureEpoch {
                message: epoch,
                group: current,
            });
        }
        if epoch < current && message.is_handshake_message() {
            return Ok(Incoming::Outdated { epoch });
        }

        let processed = state
            .group
            .process_message(provider, message)
            .map_err(E2eError::rejected)?;
        let sender = processed.credential().clone();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(message) => Ok(Incoming::Message {
                sender: username_of(&sender)?,
                plaintext: message.into_bytes(),
            }),
            ProcessedMessageContent::ProposalMessage(proposal) => {
                state
                    .group
                    .store_pending_proposal(provider.storage(), *proposal)
                    .map_err(E2eError::internal)?;
                Ok(Incoming::Proposal {
                    by: username_of(&sender)?,
                })
            }
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => Err(E2eError::Rejected(
                "proposals from outside the group are not accepted".to_owned(),
            )),
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let by = username_of(&sender)?;
                let change = describe_commit(&state.group, &staged)?;
                // A commit of someone else on this epoch supersedes this
                // device's own pending one, which the server cannot have
                // accepted too; merging clears it.
                let superseded = if state.group.pending_commit().is_some() {
                    state.pending.take()
                } else {
                    None
                };
                state
                    .group
                    .merge_staged_commit(provider, *staged)
                    .map_err(E2eError::rejected)?;
                Ok(Incoming::Commit {
                    by,
                    epoch: state.group.epoch().as_u64(),
                    change,
                    superseded,
                })
            }
            ProcessedMessageContent::OwnPendingCommit => {
                let change = match state.group.pending_commit() {
                    Some(staged) => describe_commit(&state.group, staged)?,
                    None => return Err(E2eError::NoPendingCommit(room.clone())),
                };
                state
                    .group
                    .merge_pending_commit(provider)
                    .map_err(E2eError::internal)?;
                state.pending = None;
                Ok(Incoming::Commit {
                    by: username_of(&sender)?,
                    epoch: state.group.epoch().as_u64(),
                    change,
                    superseded: None,
                })
            }
            ProcessedMessageContent::OwnPrivateMessage => Ok(Incoming::OwnMessage),
        }
    }

    /// Saves the whole device (identity, private keys, every group's state)
    /// to `path`, encrypted under `passphrase` with the default key
    /// derivation cost. See [`Device::save_with`].
    pub fn save(&self, path: &Path, passphrase: &str) -> Result<(), E2eError> {
        self.save_with(path, passphrase, KdfParams::DEFAULT)
    }

    /// Saves the whole device to `path`, encrypted under `passphrase`: the
    /// key is derived with Argon2id at the given cost and the state
    /// encrypted with ChaCha20-Poly1305 (the format is described in the
    /// crate's documentation). The file is replaced atomically: a crash
    /// leaves the previous save or this one.
    ///
    /// Each call derives the key anew, which is slow on purpose; a client
    /// that saves often keeps a [`StateFile`], which derives it once.
    pub fn save_with(
        &self,
        path: &Path,
        passphrase: &str,
        params: KdfParams,
    ) -> Result<(), E2eError> {
        StateFile::create(path, passphrase, params)?.save(self)
    }

    /// The whole device encrypted under `key`: the bytes of a state file.
    pub(crate) fn seal(&self, key: &FileKey) -> Result<Vec<u8>, E2eError> {
        // The snapshot and its encoding hold private keys; both are wiped
        // from memory when dropped.
        let plaintext = self.snapshot()?.encode();
        key.seal(&plaintext, self.provider.rand())
    }

    /// Everything a save writes, before it is encrypted.
    fn snapshot(&self) -> Result<Snapshot, E2eError> {
        let storage = {
            let values =
                self.provider.storage().values.read().map_err(|_| {
                    E2eError::Internal("the MLS storage lock is poisoned".to_owned())
                })?;
            let mut entries: Vec<(Vec<u8>, Vec<u8>)> = values
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            // A stable order: the same state saves to the same plaintext.
            entries.sort();
            entries
        };
        Ok(Snapshot {
            username: self.username.as_str().to_owned(),
            signature_key: self.signature_key().to_vec(),
            rooms: self
                .rooms
                .iter()
                .map(|(room, state)| SavedRoom {
                    room: room.as_str().to_owned(),
                    group_id: state.group.group_id().as_slice().to_vec(),
                    pending: state.pending.clone(),
                })
                .collect(),
            storage,
        })
    }

    /// Loads a device saved with [`Device::save`] (or a [`StateFile`]).
    ///
    /// A wrong passphrase is [`E2eError::WrongPassphrase`]; a file that is
    /// damaged, truncated or not a saved device is
    /// [`E2eError::DamagedState`].
    pub fn load(path: &Path, passphrase: &str) -> Result<Device, E2eError> {
        StateFile::open(path, passphrase).map(|(_, device)| device)
    }

    /// The device a state file's decrypted bytes hold.
    pub(crate) fn restore(plaintext: &[u8]) -> Result<Device, E2eError> {
        let mut snapshot = Snapshot::decode(plaintext)?;
        let username = Username::parse(std::mem::take(&mut snapshot.username))
            .map_err(|_| E2eError::DamagedState("the saved username is not valid"))?;

        let provider = OpenMlsRustCrypto::default();
        {
            let mut values =
                provider.storage().values.write().map_err(|_| {
                    E2eError::Internal("the MLS storage lock is poisoned".to_owned())
                })?;
            values.extend(std::mem::take(&mut snapshot.storage));
        }
        let signer = SignatureKeyPair::read(
            provider.storage(),
            &snapshot.signature_key,
            CIPHERSUITE.signature_algorithm(),
        )
        .ok_or(E2eError::DamagedState("the signature key is missing"))?;
        let mut device = Device::assemble(username, provider, signer);
        for saved in std::mem::take(&mut snapshot.rooms) {
            let room = RoomName::parse(&saved.room)
                .map_err(|_| E2eError::DamagedState("a saved room name is not valid"))?;
            let group = MlsGroup::load(
                device.provider.storage(),
                &GroupId::from_slice(&saved.group_id),
            )
            .map_err(E2eError::internal)?
            .ok_or(E2eError::DamagedState("a room's group is missing"))?;
            device.rooms.insert(
                room,
                Room {
                    group,
                    pending: saved.pending,
                },
            );
        }
        Ok(device)
    }

    fn room(&self, room: &RoomName) -> Result<&Room, E2eError> {
        self.rooms
            .get(room)
            .ok_or_else(|| E2eError::UnknownRoom(room.clone()))
    }
}

/// What every leaf of this crate's devices supports: the one ciphersuite,
/// and the last-resort extension. A KeyPackage carrying an extension its
/// own leaf does not list is invalid (RFC 9420, section 10.1), so without
/// it a last-resort KeyPackage would be refused by everyone.
fn capabilities() -> Capabilities {
    Capabilities::builder()
        .ciphersuites(vec![CIPHERSUITE])
        .extensions(vec![ExtensionType::LastResort])
        .build()
}

/// Reads an MLS message from the network.
fn parse_message(bytes: &[u8]) -> Result<MlsMessageIn, E2eError> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|error| E2eError::Malformed(error.to_string()))
}

/// Checks a claimed KeyPackage: its signatures, its lifetime, its
/// ciphersuite and that its credential names a user.
fn validate_key_package(
    provider: &OpenMlsRustCrypto,
    bytes: &[u8],
) -> Result<KeyPackage, E2eError> {
    let key_package = match parse_message(bytes)?.extract() {
        MlsMessageBodyIn::KeyPackage(key_package) => key_package,
        _ => return Err(E2eError::Malformed("expected a KeyPackage".to_owned())),
    };
    let key_package = key_package
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(|error| E2eError::InvalidKeyPackage(error.to_string()))?;
    if key_package.ciphersuite() != CIPHERSUITE {
        return Err(E2eError::InvalidKeyPackage(format!(
            "ciphersuite {:?} instead of {:?}",
            key_package.ciphersuite(),
            CIPHERSUITE
        )));
    }
    username_of(key_package.leaf_node().credential())
        .map_err(|_| E2eError::InvalidKeyPackage("its credential names no user".to_owned()))?;
    Ok(key_package)
}

/// The user a basic credential names.
fn username_of(credential: &Credential) -> Result<Username, E2eError> {
    let basic =
        BasicCredential::try_from(credential.clone()).map_err(|_| E2eError::InvalidCredential)?;
    let name = std::str::from_utf8(basic.identity()).map_err(|_| E2eError::InvalidCredential)?;
    Username::parse(name).map_err(|_| E2eError::InvalidCredential)
}

fn group_member(credential: &Credential, signature_key: &[u8]) -> Result<GroupMember, E2eError> {
    Ok(GroupMember {
        username: username_of(credential)?,
        signature_key: signature_key.to_vec(),
    })
}

/// Who a staged commit adds and removes, read before it is merged (the
/// removed devices' credentials are in the current tree).
fn describe_commit(group: &MlsGroup, staged: &StagedCommit) -> Result<MembershipChange, E2eError> {
    let added = staged
        .add_proposals()
        .map(|queued| {
            let leaf = queued.add_proposal().key_package().leaf_node();
            group_member(leaf.credential(), leaf.signature_key().as_slice())
        })
        .collect::<Result<_, _>>()?;
    let removed = staged
        .remove_proposals()
        .filter_map(|queued| group.member_at(queued.remove_proposal().removed()))
        .map(|member| group_member(&member.credential, &member.signature_key))
        .collect::<Result<_, _>>()?;
    Ok(MembershipChange {
        added,
        removed,
        removed_this_device: staged.self_removed(),
    })
}

fn welcome_error<E: fmt::Display>(error: WelcomeError<E>) -> E2eError {
    match error {
        WelcomeError::NoMatchingKeyPackage => E2eError::NoMatchingKeyPackage,
        other => E2eError::rejected(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn the_saved_file_does_not_hold_the_private_signature_key() {
        let mut device =
            Device::new(Username::parse("alice").expect("a valid name")).expect("a device");
        let room = RoomName::public("keys").expect("a valid room");
        device.create_group(&room).expect("created");

        // The private key as raw bytes and in the form the MLS storage
        // keeps it (serde JSON, a list of numbers).
        let serialized = serde_json::to_value(&device.signer).expect("the key pair serializes");
        let private: Vec<u8> =
            serde_json::from_value(serialized["private"].clone()).expect("the private key's bytes");
        assert_eq!(private.len(), 32);
        let as_stored = serde_json::to_string(&private).expect("a JSON list");

        // The saved state holds the key (so the check below can fail)...
        let plaintext = device.snapshot().expect("a snapshot").encode();
        assert!(contains(&plaintext, as_stored.as_bytes()));

        // ...and the file holds it in neither form.
        let path =
            std::env::temp_dir().join(format!("chat-e2e-private-{}.state", std::process::id()));
        let cheap = KdfParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        };
        device.save_with(&path, "pass", cheap).expect("saved");
        let file = std::fs::read(&path).expect("read");
        std::fs::remove_file(&path).expect("removed");
        assert!(!contains(&file, &private));
        assert!(!contains(&file, as_stored.as_bytes()));
    }
}
