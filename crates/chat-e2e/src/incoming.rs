//! What processing a message of a room's group gave.

use chat_domain::Username;

use crate::{Change, MembershipChange};

/// The outcome of [`Device::process`](crate::Device::process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An application message, decrypted.
    Message {
        /// The user whose device sent it, as its credential names them.
        sender: Username,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// A commit, checked and merged: the group is at its new epoch.
    Commit {
        /// The user whose device made it.
        by: Username,
        /// The group's epoch now.
        epoch: u64,
        /// Whom it added and removed.
        change: MembershipChange,
        /// This device's own pending commit on the same epoch, which lost
        /// the race and was dropped: its change, to commit again on the
        /// new epoch with [`Device::commit`](crate::Device::commit) if it
        /// still matters.
        superseded: Option<Change>,
    },
    /// A proposal, kept for the next commit.
    Proposal {
        /// The user whose device made it.
        by: Username,
    },
    /// An application message this device sent itself, relayed back; its
    /// plaintext cannot be read again (sending keys are used once).
    OwnMessage,
    /// A commit or proposal of an epoch this device has already left: its
    /// own commit coming back after it was merged, for example. Nothing
    /// changed.
    Outdated {
        /// The epoch the message was made in.
        epoch: u64,
    },
}
