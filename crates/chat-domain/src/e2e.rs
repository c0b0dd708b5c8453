//! Rules of end-to-end encrypted rooms that the server enforces: how a
//! device is named and how many MLS KeyPackages one may hold.
//!
//! The cryptography itself (MLS, RFC 9420) happens in the clients; the
//! server only keeps a directory of devices and their public KeyPackages,
//! and relays ciphertext. See `docs/SECURITY.md`.

use std::fmt;

use crate::DomainError;

/// One installation of a client that holds a user's MLS keys, named by
/// the client: unique per user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

impl DeviceId {
    /// Most characters in a device id.
    pub const MAX_CHARS: usize = 64;

    /// Accepts 1 to 64 ASCII letters, digits, `-`, `_` and `.`.
    pub fn parse(value: impl Into<String>) -> Result<DeviceId, DomainError> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_CHARS
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(DomainError::DeviceIdInvalid {
                max: Self::MAX_CHARS,
            });
        }
        Ok(DeviceId(value))
    }

    /// The id as the client chose it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an MLS message stored in an encrypted room is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlsKind {
    /// A member's message: MLS ciphertext only the group's members read.
    Application,
    /// A change to the group (members added or removed, keys updated): an
    /// MLS public message, which moves the group to its next epoch.
    Commit,
}

impl MlsKind {
    /// The kind as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            MlsKind::Application => "application",
            MlsKind::Commit => "commit",
        }
    }

    /// The kind named `value`, if it is one.
    pub fn from_str_opt(value: &str) -> Option<MlsKind> {
        match value {
            "application" => Some(MlsKind::Application),
            "commit" => Some(MlsKind::Commit),
            _ => None,
        }
    }
}

/// Most characters of the base64 text of one MLS application message: the
/// ciphertext of the longest plaintext allowed (`max_message_chars`
/// characters of up to 4 bytes), with room for MLS framing and padding.
pub fn max_mls_message_chars(max_message_chars: usize) -> usize {
    (max_message_chars * 4 + 1024).div_ceil(3) * 4
}

/// Most devices one user may register.
pub const MAX_DEVICES_PER_USER: usize = 16;

/// Most unclaimed ordinary KeyPackages a device may hold.
pub const MAX_KEY_PACKAGES_PER_DEVICE: usize = 200;

/// Most KeyPackages one upload may carry.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 100;

/// Most users one claim may name.
pub const MAX_USERS_PER_CLAIM: usize = 32;

/// Most bytes of one KeyPackage or credential (a basic credential and an
/// Ed25519 key make a KeyPackage of a few hundred bytes).
pub const MAX_MLS_OBJECT_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_short_plain_names() {
        assert!(DeviceId::parse("laptop-1").is_ok());
        assert!(DeviceId::parse("a.b_c").is_ok());
        for bad in ["", "has space", "ünicode", &"x".repeat(65)] {
            assert!(
                matches!(
                    DeviceId::parse(bad),
                    Err(DomainError::DeviceIdInvalid { max: 64 })
                ),
                "{bad:?}"
            );
        }
    }
}
