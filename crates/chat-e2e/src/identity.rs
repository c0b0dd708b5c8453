//! What people compare to know they talk to the right devices: a device's
//! fingerprint and the safety number of two users.

use std::fmt;

use sha2::{Digest, Sha256, Sha512};

use chat_domain::Username;

/// The SHA-256 digest of a device's signature public key.
///
/// Shown as 64 lower-case hex digits in groups of four (`1f3a 9c04 …`), the
/// form of [`DeviceBody::fingerprint`](chat_protocol::mls::DeviceBody). Its
/// first 16 bytes, in hex, are the device's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a signature public key.
    pub fn of(signature_key: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(signature_key).into())
    }

    /// The digest itself.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The device id this key gives: the first 16 bytes of the digest as
    /// 32 lower-case hex digits.
    pub fn device_id(&self) -> String {
        hex(&self.0[..16])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&hex(pair))?;
        }
        Ok(())
    }
}

/// The number two users compare, out loud or side by side, to check that
/// each sees the other's devices as they are: 60 decimal digits, shown in
/// twelve groups of five.
///
/// # Construction
///
/// For each user, a 30-digit half is computed from their normalized
/// (lower-case) username and the set of their devices' Ed25519 signature
/// public keys:
///
/// 1. `input` = the ASCII text `chat-e2e safety number v1`, then the
///    username's length as a 4-byte big-endian number and its bytes, then
///    the number of distinct keys (4 bytes, big-endian), then each key,
///    sorted bytewise and without duplicates, as its length (4 bytes,
///    big-endian) and its bytes;
/// 2. `h` = SHA-512(`input`), then 5,200 times `h` = SHA-512(`h` ‖
///    `input`), which makes searching for a key set with a chosen half
///    costly;
/// 3. the first 30 bytes of `h`, in six chunks of 5 bytes, each read as a
///    big-endian number taken modulo 100,000 and written as five digits.
///
/// The safety number is the two halves in ascending order, concatenated,
/// so both users compute the same number whoever is "first", and the
/// order in which devices are listed does not matter. Any change to a
/// user's device keys (a device added, removed or replaced) changes the
/// number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber(String);

/// The domain of the safety number's hash, and its version.
const SAFETY_NUMBER_LABEL: &[u8] = b"chat-e2e safety number v1";

/// How many times each half is hashed again.
const SAFETY_NUMBER_ITERATIONS: usize = 5_200;

impl SafetyNumber {
    /// The safety number of two users, each with the signature public keys
    /// of all their devices. The result is the same with the two users
    /// swapped.
    pub fn compute<A, B>(
        user_a: &Username,
        keys_a: &[A],
        user_b: &Username,
        keys_b: &[B],
    ) -> SafetyNumber
    where
        A: AsRef<[u8]>,
        B: AsRef<[u8]>,
    {
        let mut halves = [half(user_a, keys_a), half(user_b, keys_b)];
        halves.sort();
        SafetyNumber(halves.concat())
    }

    /// The 60 digits without spaces.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digits are ASCII, so every chunk is valid UTF-8.
        for (i, group) in self.0.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// One user's 30 digits of a safety number.
fn half<K: AsRef<[u8]>>(user: &Username, keys: &[K]) -> String {
    let mut keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
    keys.sort_unstable();
    keys.dedup();

    let name = user.normalized();
    let mut input = Vec::with_capacity(64 + keys.len() * 40);
    input.extend_from_slice(SAFETY_NUMBER_LABEL);
    push_with_length(&mut input, name.as_bytes());
    input.extend_from_slice(&length_prefix(keys.len()));
    for key in &keys {
        push_with_length(&mut input, key);
    }

    let mut digest = Sha512::digest(&input);
    for _ in 0..SAFETY_NUMBER_ITERATIONS {
        let mut hasher = Sha512::new();
        hasher.update(digest);
        hasher.update(&input);
        digest = hasher.finalize();
    }

    digest[..30]
        .chunks(5)
        .map(|chunk| {
            let value = chunk
                .iter()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            format!("{:05}", value % 100_000)
        })
        .collect()
}

fn push_with_length(buffer: &mut Vec<u8>, bytes: &[u8]) {
    buffer.extend_from_slice(&length_prefix(bytes.len()));
    buffer.extend_from_slice(bytes);
}

/// A length as 4 big-endian bytes. Names and keys are far below 4 GiB; a
/// longer one is cut to `u32::MAX`, which still changes the hash input.
fn length_prefix(length: usize) -> [u8; 4] {
    u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes()
}

/// Lower-case hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("a valid name")
    }

    #[test]
    fn a_fingerprint_is_sixteen_groups_of_four_hex_digits() {
        let shown = Fingerprint::of(b"key").to_string();
        let groups: Vec<&str> = shown.split(' ').collect();
        assert_eq!(groups.len(), 16);
        assert!(groups.iter().all(|group| {
            group.len() == 4
                && group
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        }));
        assert_eq!(
            Fingerprint::of(b"key").device_id(),
            shown.replace(' ', "")[..32]
        );
    }

    #[test]
    fn a_safety_number_is_sixty_digits_in_groups_of_five() {
        let number = SafetyNumber::compute(&user("alice"), &[b"a1"], &user("bob"), &[b"b1"]);
        assert_eq!(number.digits().len(), 60);
        assert!(number.digits().chars().all(|c| c.is_ascii_digit()));
        assert_eq!(number.to_string().split(' ').count(), 12);
    }

    #[test]
    fn the_order_of_users_and_devices_and_the_case_of_names_do_not_matter() {
        let one = SafetyNumber::compute(&user("alice"), &[b"a1", b"a2"], &user("bob"), &[b"b1"]);
        let other = SafetyNumber::compute(&user("Bob"), &[b"b1"], &user("ALICE"), &[b"a2", b"a1"]);
        assert_eq!(one, other);
    }

    #[test]
    fn another_key_or_another_name_gives_another_number() {
        let base = SafetyNumber::compute(&user("alice"), &[b"a1"], &user("bob"), &[b"b1"]);
        let new_key = SafetyNumber::compute(&user("alice"), &[b"a9"], &user("bob"), &[b"b1"]);
        let new_device =
            SafetyNumber::compute(&user("alice"), &[b"a1", b"a2"], &user("bob"), &[b"b1"]);
        let new_name = SafetyNumber::compute(&user("carol"), &[b"a1"], &user("bob"), &[b"b1"]);
        assert_ne!(base, new_key);
        assert_ne!(base, new_device);
        assert_ne!(base, new_name);
    }
}
