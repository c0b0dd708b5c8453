//! JSON bodies of the MLS routes: devices, KeyPackages, commits and
//! Welcomes of end-to-end encrypted rooms (MLS, RFC 9420).
//!
//! The server stores and relays these messages without being able to read
//! the rooms' content: a KeyPackage, a commit, a Welcome and a GroupInfo
//! are MLS structures (each framed as an `MLSMessage` of RFC 9420,
//! section 6) carried as **standard base64** strings (RFC 4648, section 4,
//! with `=` padding); [`encode`] and [`decode`] convert them. Commits are
//! sent as MLS public messages, so the server can check whom a commit adds
//! or removes; application messages are always encrypted.
//!
//! | route | request | answer |
//! |---|---|---|
//! | `POST /api/mls/devices` | [`DeviceRegistration`] | [`DeviceBody`] |
//! | `GET /api/mls/devices/{username}` | | [`DevicesBody`] |
//! | `GET /api/rooms/{room}/mls/devices` | | [`DevicesBody`] |
//! | `POST /api/mls/key-packages` | [`KeyPackageUpload`] | [`KeyPackageStock`] |
//! | `GET /api/mls/key-packages?device_id=` | [`WelcomesQuery`] | [`KeyPackageStock`] |
//! | `POST /api/mls/key-packages/claim` | [`KeyPackageClaim`] | [`ClaimedKeyPackages`] |
//! | `POST /api/rooms/{room}/mls/commits` | [`CommitUpload`] | [`CommitAccepted`] |
//! | `GET /api/mls/welcomes?device_id=` | [`WelcomesQuery`] | [`WelcomesBody`] |
//!
//! A commit built on an epoch the room has already left is refused with
//! 409 and the code [`ErrorCode::StaleEpoch`](crate::ws::ErrorCode::StaleEpoch).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the `content` of a message in an end-to-end encrypted room holds:
/// the base64 of an MLS message of one of these kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MlsKindBody {
    /// A member's message: MLS ciphertext (a private message).
    Application,
    /// A change to the group: an MLS public message holding a commit,
    /// uploaded with `POST /api/rooms/{room}/mls/commits`.
    Commit,
}

/// Writes binary MLS data as the standard base64 these bodies carry.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// Reads a standard base64 field of these bodies back into bytes.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

/// The body of `POST /api/mls/devices`: a device announces its MLS
/// identity for the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceRegistration {
    /// The device's id: 32 lower-case hex digits, the first 16 bytes of
    /// the SHA-256 digest of its signature public key.
    pub device_id: String,
    /// The device's MLS credential (a TLS-serialized basic credential
    /// whose identity is the username in UTF-8, in the case the user
    /// registered it; compare names case-insensitively), standard base64.
    pub credential: String,
    /// The device's Ed25519 signature public key, standard base64.
    pub signature_key: String,
}

/// A registered device: the answer to `POST /api/mls/devices` and an item
/// of [`DevicesBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceBody {
    /// The device's id, as registered.
    pub device_id: String,
    /// The user the device belongs to.
    pub username: String,
    /// The SHA-256 digest of the device's signature public key in lower-case
    /// hex, in groups of four digits separated by spaces, for people to
    /// compare.
    pub fingerprint: String,
    /// The device's Ed25519 signature public key, standard base64: what a
    /// client computes a safety number from.
    #[serde(default)]
    pub signature_key: String,
    /// When the device was registered.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
}

/// The answer to `GET /api/mls/devices/{username}`, every device of a
/// user, and to `GET /api/rooms/{room}/mls/devices`, every device of the
/// room's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DevicesBody {
    /// The devices, by username (for a room), each user's oldest first.
    pub devices: Vec<DeviceBody>,
}

/// The body of `POST /api/mls/key-packages`: KeyPackages a device adds to
/// its stock, so that others can add it to rooms while it is offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPackageUpload {
    /// The device the KeyPackages belong to.
    pub device_id: String,
    /// Ordinary KeyPackages, standard base64; each is handed out once.
    pub key_packages: Vec<String>,
    /// A last-resort KeyPackage (it carries the last-resort extension),
    /// standard base64: handed out whenever the ordinary ones are used up,
    /// as often as needed. It replaces the device's previous one.
    #[serde(default)]
    pub last_resort: Option<String>,
}

/// The answer to `POST /api/mls/key-packages`: what the device has in
/// stock now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPackageStock {
    /// The device.
    pub device_id: String,
    /// How many ordinary KeyPackages are left to hand out.
    pub available: i64,
    /// Whether the device has a last-resort KeyPackage.
    pub last_resort: bool,
}

/// The body of `POST /api/mls/key-packages/claim`: one KeyPackage of every
/// device of each user, or of the devices named, to add them to a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyPackageClaim {
    /// The users whose devices to add.
    pub users: Vec<String>,
    /// When given, only these devices of the users named are claimed (a
    /// member's new device, to add it alone); a device id that is not one
    /// of theirs claims nothing. Left out, every device of theirs is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

/// The answer to `POST /api/mls/key-packages/claim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimedKeyPackages {
    /// One KeyPackage per device of the users claimed; a device with no
    /// KeyPackage left is absent.
    pub key_packages: Vec<ClaimedKeyPackage>,
}

/// A claimed KeyPackage and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimedKeyPackage {
    /// The user the device belongs to.
    pub username: String,
    /// The device.
    pub device_id: String,
    /// The KeyPackage, standard base64.
    pub key_package: String,
    /// Whether it is the device's last-resort KeyPackage, which others
    /// may be handed too.
    pub last_resort: bool,
}

/// The body of `POST /api/rooms/{room}/mls/commits`: a commit that moves
/// the room's group to its next epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitUpload {
    /// The epoch the commit was built on: the group's epoch before it.
    /// Another commit accepted on that epoch first makes this one stale
    /// (409, `stale_epoch`).
    pub epoch: u64,
    /// The commit, an MLS public message, standard base64.
    pub commit: String,
    /// The Welcome for the devices the commit adds, standard base64;
    /// `null` when it adds none.
    #[serde(default)]
    pub welcome: Option<String>,
    /// The group's GroupInfo after the commit, with its ratchet tree,
    /// standard base64: it lets the server follow the group's membership
    /// without any secret, and is kept beside the Welcome; `null` when the
    /// client sends none.
    #[serde(default)]
    pub group_info: Option<String>,
}

/// The answer to an accepted commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitAccepted {
    /// The commit's place in the room's sequence.
    pub seq: i64,
    /// The group's epoch after the commit.
    pub epoch: u64,
}

/// The query naming one of the caller's devices: of
/// `GET /api/mls/welcomes`, `DELETE /api/mls/welcomes/{id}` and
/// `GET /api/mls/key-packages` (the device's stock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct WelcomesQuery {
    /// The caller's device whose Welcomes to list.
    pub device_id: String,
}

/// The answer to `GET /api/mls/welcomes?device_id=`: the Welcomes waiting
/// for a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WelcomesBody {
    /// The Welcomes, oldest first.
    pub welcomes: Vec<WelcomeBody>,
}

/// A Welcome into a room's group, waiting for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WelcomeBody {
    /// The Welcome's id.
    pub id: i64,
    /// The room whose group the Welcome joins.
    pub room: String,
    /// The Welcome, standard base64.
    pub welcome: String,
    /// The group's GroupInfo sent with the commit that made the Welcome,
    /// standard base64; `null` when there is none.
    #[serde(default)]
    pub group_info: Option<String>,
    /// When the commit that made the Welcome was accepted.
    #[serde(with = "crate::timestamp")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0)
            .single()
            .expect("a valid date")
            + Duration::microseconds(123_456)
    }

    /// Asserts that `value` serializes to exactly `json` and reads back
    /// equal.
    fn assert_golden<T>(value: &T, json: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_string(value).expect("serializes"), json);
        let back: T = serde_json::from_str(json).expect(json);
        assert_eq!(&back, value);
    }

    #[test]
    fn binary_fields_are_standard_base64_with_padding() {
        assert_eq!(encode([0xfb, 0xff]), "+/8=");
        assert_eq!(decode("+/8=").expect("valid base64"), [0xfb, 0xff]);
        assert!(decode("-_8").is_err(), "URL-safe base64 is not accepted");
    }

    #[test]
    fn device_bodies_have_their_documented_shape() {
        assert_golden(
            &DeviceRegistration {
                device_id: "00ff".to_owned(),
                credential: "AAE=".to_owned(),
                signature_key: "AAI=".to_owned(),
            },
            r#"{"device_id":"00ff","credential":"AAE=","signature_key":"AAI="}"#,
        );
        assert_golden(
            &DevicesBody {
                devices: vec![DeviceBody {
                    device_id: "00ff".to_owned(),
                    username: "alice".to_owned(),
                    fingerprint: "0a1b 2c3d".to_owned(),
                    signature_key: "AAI=".to_owned(),
                    created_at: at(),
                }],
            },
            r#"{"devices":[{"device_id":"00ff","username":"alice","fingerprint":"0a1b 2c3d","signature_key":"AAI=","created_at":"2024-01-01T12:00:00.123456+00:00"}]}"#,
        );
    }

    #[test]
    fn key_package_bodies_have_their_documented_shape() {
        assert_golden(
            &KeyPackageUpload {
                device_id: "00ff".to_owned(),
                key_packages: vec!["AAE=".to_owned()],
                last_resort: Some("AAI=".to_owned()),
            },
            r#"{"device_id":"00ff","key_packages":["AAE="],"last_resort":"AAI="}"#,
        );
        let upload: KeyPackageUpload =
            serde_json::from_str(r#"{"device_id":"00ff","key_packages":[]}"#)
                .expect("last_resort may be left out");
        assert_eq!(upload.last_resort, None);
        assert_golden(
            &KeyPackageStock {
                device_id: "00ff".to_owned(),
                available: 99,
                last_resort: true,
            },
            r#"{"device_id":"00ff","available":99,"last_resort":true}"#,
        );
        assert_golden(
            &KeyPackageClaim {
                users: vec!["bob".to_owned()],
                devices: None,
            },
            r#"{"users":["bob"]}"#,
        );
        assert_golden(
            &KeyPackageClaim {
                users: vec!["bob".to_owned()],
                devices: Some(vec!["00ff".to_owned()]),
            },
            r#"{"users":["bob"],"devices":["00ff"]}"#,
        );
        let claim: KeyPackageClaim = serde_json::from_str(r#"{"users":["bob"],"devices":null}"#)
            .expect("devices may be null");
        assert_eq!(claim.devices, None);
        assert_golden(
            &ClaimedKeyPackages {
                key_packages: vec![ClaimedKeyPackage {
                    username: "bob".to_owned(),
                    device_id: "00ff".to_owned(),
                    key_package: "AAE=".to_owned(),
                    last_resort: false,
                }],
            },
            r#"{"key_packages":[{"username":"bob","device_id":"00ff","key_package":"AAE=","last_resort":false}]}"#,
        );
    }

    #[test]
    fn commit_and_welcome_bodies_have_their_documented_shape() {
        assert_golden(
            &CommitUpload {
                epoch: 4,
                commit: "AAE=".to_owned(),
                welcome: None,
                group_info: None,
            },
            r#"{"epoch":4,"commit":"AAE=","welcome":null,"group_info":null}"#,
        );
        let upload: CommitUpload = serde_json::from_str(r#"{"epoch":4,"commit":"AAE="}"#)
            .expect("welcome and group_info may be left out");
        assert_eq!((upload.welcome, upload.group_info), (None, None));
        assert_golden(
            &CommitAccepted { seq: 17, epoch: 5 },
            r#"{"seq":17,"epoch":5}"#,
        );
        assert_golden(
            &WelcomesBody {
                welcomes: vec![WelcomeBody {
                    id: 3,
                    room: "lobby".to_owned(),
                    welcome: "AAE=".to_owned(),
                    group_info: Some("AAI=".to_owned()),
                    created_at: at(),
                }],
            },
            r#"{"welcomes":[{"id":3,"room":"lobby","welcome":"AAE=","group_info":"AAI=","created_at":"2024-01-01T12:00:00.123456+00:00"}]}"#,
        );
    }
}
