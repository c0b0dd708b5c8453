use std::io;

use chat_domain::{RoomName, Username};

/// Everything that can go wrong with a device's MLS state.
///
/// Variants name what the caller can do about it: fetch missing commits
/// ([`E2eError::FutureEpoch`]), settle a pending commit first
/// ([`E2eError::PendingCommit`]), ask for the passphrase again
/// ([`E2eError::WrongPassphrase`]), and so on. Bytes from the network never
/// cause a panic: whatever is wrong with them is one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    /// This device has no group for the room: it never created or joined
    /// one, or it left it.
    #[error("this device is not in the encrypted group of room {0}")]
    UnknownRoom(RoomName),

    /// This device already has a group for the room.
    #[error("this device already has an encrypted group for room {0}")]
    RoomExists(RoomName),

    /// This device was removed from the room's group; it can neither read
    /// nor send there until it is added again.
    #[error("this device was removed from the encrypted group of room {0}")]
    Removed(RoomName),

    /// A commit of this device is waiting for the server's answer. Merge it
    /// once accepted ([`Device::merge_pending_commit`]) or clear it once
    /// refused ([`Device::clear_pending_commit`]) before making another.
    ///
    /// [`Device::merge_pending_commit`]: crate::Device::merge_pending_commit
    /// [`Device::clear_pending_commit`]: crate::Device::clear_pending_commit
    #[error("a commit of this device in room {0} is still pending")]
    PendingCommit(RoomName),

    /// There is no pending commit to merge.
    #[error("this device has no pending commit in room {0}")]
    NoPendingCommit(RoomName),

    /// The message belongs to a later epoch than the device's: it missed
    /// commits. Process the room's commits in order, then this message.
    #[error(
        "the message is for epoch {message}, this device is at epoch {group}: commits are missing"
    )]
    FutureEpoch {
        /// The epoch the message was made in.
        message: u64,
        /// The epoch of this device's group.
        group: u64,
    },

    /// The bytes are not the MLS structure expected here (for example a
    /// Welcome given where a group message belongs), or not MLS at all.
    #[error("malformed MLS data: {0}")]
    Malformed(String),

    /// A claimed KeyPackage is not acceptable: bad signature, expired,
    /// another ciphersuite, or a credential that does not carry a username.
    #[error("unacceptable KeyPackage: {0}")]
    InvalidKeyPackage(String),

    /// A credential does not carry a valid username.
    #[error("the credential does not name a valid user")]
    InvalidCredential,

    /// A message, commit or Welcome failed MLS validation or could not be
    /// decrypted: it was not meant for this device's state, was tampered
    /// with, or was made in an epoch whose keys this device no longer or
    /// never had. Nothing changed.
    #[error("MLS refused the message: {0}")]
    Rejected(String),

    /// A Welcome names none of this device's KeyPackages: it was meant for
    /// another device, or for an ordinary KeyPackage already used.
    #[error("the Welcome is for none of this device's KeyPackages")]
    NoMatchingKeyPackage,

    /// A Welcome into the group this device already holds for the room,
    /// at the Welcome's epoch or a later one: a replay, or an attempt to
    /// roll the group back to an older state. The group is unchanged.
    #[error(
        "the Welcome is for epoch {welcome} of the encrypted group of room {room}, which this device holds at epoch {held}"
    )]
    StaleWelcome {
        /// The room.
        room: RoomName,
        /// The epoch the Welcome would join at.
        welcome: u64,
        /// The epoch of the group this device holds.
        held: u64,
    },

    /// A change names nothing to do: an addition without KeyPackages (or
    /// whose devices are all in the group already), a removal without
    /// users.
    #[error("the change names no KeyPackage or user, or only devices already in the group")]
    NothingToCommit,

    /// A removal named a user with no device in the group (other than this
    /// one).
    #[error("{0} has no device in the encrypted group")]
    NotAMember(Username),

    /// The passphrase does not open the saved state.
    #[error("wrong passphrase for the saved device state")]
    WrongPassphrase,

    /// The saved state is damaged, truncated or not a saved device state.
    #[error("the saved device state is damaged: {0}")]
    DamagedState(&'static str),

    /// Reading or writing the saved state failed.
    #[error("cannot read or write the saved device state")]
    Io(#[from] io::Error),

    /// The MLS library or its storage failed in a way that is not about
    /// the input: a bug, or memory exhausted.
    #[error("MLS internal failure: {0}")]
    Internal(String),
}

impl E2eError {
    /// An internal failure, keeping the library's description.
    pub(crate) fn internal(error: impl std::fmt::Display) -> E2eError {
        E2eError::Internal(error.to_string())
    }

    /// A refusal of incoming data, keeping the library's description.
    pub(crate) fn rejected(error: impl std::fmt::Display) -> E2eError {
        E2eError::Rejected(error.to_string())
    }
}
