//! A device's MLS (RFC 9420) state for end-to-end encrypted rooms, usable
//! by any Rust client of the chat server, with or without the terminal UI.
//!
//! A [`Device`] is one user's identity on one installation: a basic
//! credential naming the user and an Ed25519 signature key pair, in the
//! ciphersuite [`CIPHERSUITE`]. It makes the KeyPackages others use to add
//! it to rooms, holds one MLS group per encrypted room, encrypts and
//! decrypts the room's messages and commits its membership changes. The
//! server only relays: commits go out as MLS public messages so it can see
//! whom they add and remove, application messages always encrypted.
//!
//! Everything here works on bytes in and bytes out. This crate does not
//! know HTTP, WebSockets or any user interface: the caller uploads what it
//! produces with the bodies of [`chat_protocol::mls`] and hands it what
//! the server relays, in the order the server numbered it.
//!
//! # Using it
//!
//! ```
//! use chat_domain::{RoomName, Username};
//! use chat_e2e::{Device, Incoming};
//!
//! let mut alice = Device::new(Username::parse("alice")?)?;
//! let mut bob = Device::new(Username::parse("bob")?)?;
//! let room = RoomName::public("plans")?;
//!
//! // Bob uploads KeyPackages; Alice claims one and adds him.
//! let key_packages = bob.key_packages(1)?;
//! alice.create_group(&room)?;
//! let commit = alice.add_members(&room, &key_packages)?;
//! // ... the server accepts `commit.to_upload()` ...
//! alice.merge_pending_commit(&room)?;
//! let welcome = commit.welcome.expect("a Welcome for Bob");
//! bob.join(&room, &welcome)?;
//!
//! let sent = alice.encrypt(&room, b"lunch at noon?")?;
//! match bob.process(&room, &sent)? {
//!     Incoming::Message { sender, plaintext } => {
//!         assert_eq!(sender.as_str(), "alice");
//!         assert_eq!(plaintext, b"lunch at noon?");
//!     }
//!     other => panic!("expected a message, got {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Saved state
//!
//! [`Device::save`] writes the identity, the private keys and every
//! group's state to one file, encrypted under a passphrase: Argon2id
//! derives the key (64 MiB, 3 passes by default, see [`KdfParams`]) and
//! ChaCha20-Poly1305 encrypts. The file is replaced atomically (a
//! temporary file renamed over it). [`Device::load`] tells a wrong
//! passphrase ([`E2eError::WrongPassphrase`]) from a damaged file
//! ([`E2eError::DamagedState`]). A client that saves often keeps a
//! [`StateFile`]: it derives the key once, when the file is created or
//! opened, and each save reuses it (same salt, a fresh nonce).
//!
//! # Following the room's members
//!
//! The group of an encrypted room must hold the devices of the room's
//! members and no one else's, and only members' clients can change it.
//! [`Device::gap`] compares the group with the room's member list, and
//! [`turn`] orders the clients that may make a change so that one acts and
//! the others only step in if it does not.
//!
//! # Verifying devices
//!
//! [`Device::fingerprint`] is the SHA-256 digest of a device's signature
//! key, for one device; [`SafetyNumber`] covers every device of two users
//! and is the same computed on either side.

mod device;
mod error;
mod follow;
mod identity;
mod incoming;
mod snapshot;
mod state_file;

pub use device::{
    CIPHERSUITE, Change, Device, GroupMember, Joined, MembershipChange, OutgoingCommit,
    PAST_EPOCHS_KEPT,
};
pub use error::E2eError;
pub use follow::{DeviceGap, Gap, turn};
pub use identity::{Fingerprint, SafetyNumber};
pub use incoming::Incoming;
pub use state_file::{KdfParams, StateFile};
