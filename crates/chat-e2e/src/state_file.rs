//! The encrypted file a device's state is saved in.
//!
//! The key is derived from the passphrase with **Argon2id** (RFC 9106,
//! version 0x13; 64 MiB, 3 passes, 1 lane by default; the parameters are
//! stored in the file) and a random 16-byte salt. The state is encrypted
//! with **ChaCha20-Poly1305** (RFC 8439) under a random 12-byte nonce,
//! fresh for every save. A [`StateFile`] derives its key once, when it is
//! created or opened, and saves under that key and salt until it is
//! dropped: Argon2id is slow on purpose, and a client saves often. Random
//! nonces keep the same key safe for far more saves than a device makes
//! (the chance of two equal nonces stays below 2⁻³² up to 2³² saves).
//!
//! ```text
//! offset  size  field
//!      0     8  magic "chat-e2e"
//!      8     1  format version (1)
//!      9    12  Argon2id memory (KiB), passes, lanes: 3 × u32, big-endian
//!     21    16  salt
//!     37    12  nonce
//!     49    16  key check: SHA-256("chat-e2e key check" ‖ key), first 16 bytes
//!     65     n  ciphertext and 16-byte tag; the 65 bytes above are its
//!               associated data
//!   65+n    32  SHA-256 of everything before it
//! ```
//!
//! The key check tells a wrong passphrase from a damaged file: it costs an
//! attacker nothing they could not learn from trying to decrypt, since the
//! Argon2id derivation dominates either way. The trailing digest catches
//! accidental damage (a truncated copy, a flipped bit) before any key is
//! derived; deliberate tampering is caught by the AEAD tag.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use openmls::prelude::OpenMlsRand;
use openmls_rust_crypto::RustCrypto;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Device, E2eError};

const MAGIC: &[u8; 8] = b"chat-e2e";
const FORMAT_VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const KEY_CHECK_LEN: usize = 16;
const HEADER_LEN: usize = 8 + 1 + 12 + SALT_LEN + NONCE_LEN + KEY_CHECK_LEN;
const TAG_LEN: usize = 16;
const DIGEST_LEN: usize = 32;
const KEY_CHECK_LABEL: &[u8] = b"chat-e2e key check";

/// The cost of deriving the key of a saved state from its passphrase
/// (Argon2id). Stored in the file, so a state saved with other parameters
/// still loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The default: 64 MiB, 3 passes, 1 lane (RFC 9106's second
    /// recommendation with a single lane), a fraction of a second on a
    /// laptop.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// The most memory a file may ask for (1 GiB), so that a damaged or
    /// hostile header cannot make loading exhaust memory.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most passes a file may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes a file may ask for.
    pub const MAX_PARALLELISM: u32 = 16;

    fn argon2(self) -> Result<Argon2<'static>, E2eError> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(E2eError::DamagedState(
                "key derivation parameters out of range",
            ));
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|_| E2eError::DamagedState("key derivation parameters out of range"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for KdfParams {
    fn default() -> KdfParams {
        KdfParams::DEFAULT
    }
}

/// The file a device is saved in, and its key, derived from the
/// passphrase once.
///
/// [`StateFile::create`] starts a file with a fresh salt;
/// [`StateFile::open`] reads one back with the device it holds. Either
/// derives the key (Argon2id), and every [`StateFile::save`] after that
/// reuses it with the same salt, drawing only a fresh nonce. A new
/// passphrase is a new `StateFile` ([`StateFile::create`] on the same
/// path), whose first save replaces the file.
///
/// The key is wiped from memory when the value is dropped; the passphrase
/// is not kept.
pub struct StateFile {
    path: PathBuf,
    key: FileKey,
}

impl fmt::Debug for StateFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateFile")
            .field("path", &self.path)
            .field("params", &self.key.params)
            .finish_non_exhaustive()
    }
}

impl StateFile {
    /// A file at `path` under `passphrase`, its key derived at the cost of
    /// `params` with a fresh salt. Nothing is written before
    /// [`StateFile::save`].
    pub fn create(
        path: impl Into<PathBuf>,
        passphrase: &str,
        params: KdfParams,
    ) -> Result<StateFile, E2eError> {
        let salt = RustCrypto::default()
            .random_array()
            .map_err(E2eError::internal)?;
        Ok(StateFile {
            path: path.into(),
            key: FileKey::derive(passphrase.as_bytes(), salt, params)?,
        })
    }

    /// Opens the file at `path` with `passphrase` and loads the device it
    /// holds; later saves reuse the key and salt it was written with.
    ///
    /// A wrong passphrase is [`E2eError::WrongPassphrase`]; a file that is
    /// damaged, truncated or not a saved device is
    /// [`E2eError::DamagedState`].
    pub fn open(
        path: impl Into<PathBuf>,
        passphrase: &str,
    ) -> Result<(StateFile, Device), E2eError> {
        let path = path.into();
        let file = fs::read(&path)?;
        let (plaintext, key) = unseal(&file, passphrase.as_bytes())?;
        let device = Device::restore(&plaintext)?;
        Ok((StateFile { path, key }, device))
    }

    /// Saves the whole device (identity, private keys, every group's
    /// state), encrypted under this file's key with a fresh nonce. The
    /// file is replaced atomically: a crash leaves the previous save or
    /// this one.
    pub fn save(&self, device: &Device) -> Result<(), E2eError> {
        write_atomically(&self.path, &device.seal(&self.key)?)
    }

    /// Saves `data`, anything the client keeps beside the device (the
    /// text of the messages it decrypted, say), to the file at `path`:
    /// encrypted under this file's key with a fresh nonce, in the same
    /// format, replaced atomically. [`StateFile::load_beside`] reads it
    /// back.
    pub fn save_beside(&self, path: &Path, data: &[u8]) -> Result<(), E2eError> {
        let mut plaintext = Zeroizing::new(Vec::with_capacity(BESIDE_LABEL.len() + data.len()));
        plaintext.extend_from_slice(BESIDE_LABEL);
        plaintext.extend_from_slice(data);
        write_atomically(path, &self.key.seal(&plaintext, &RustCrypto::default())?)
    }

    /// Reads what [`StateFile::save_beside`] wrote to `path` under this
    /// file's key. A file saved under another passphrase (or another
    /// device's file) is [`E2eError::WrongPassphrase`]; a damaged one, or
    /// the device state itself, [`E2eError::DamagedState`].
    pub fn load_beside(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let file = fs::read(path)?;
        let header = read_header(&file)?;
        if header.salt != self.key.salt || header.params != self.key.params {
            return Err(E2eError::WrongPassphrase);
        }
        let plaintext = header.open(&self.key)?;
        match plaintext.strip_prefix(BESIDE_LABEL) {
            Some(data) => Ok(Zeroizing::new(data.to_vec())),
            None => Err(E2eError::DamagedState("not data saved beside a device")),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cost its key was derived at.
    pub fn params(&self) -> KdfParams {
        self.key.params
    }
}

/// A key derived from a passphrase, with the salt and cost it was derived
/// with: what a state file's header records.
pub(crate) struct FileKey {
    key: Zeroizing<[u8; 32]>,
    salt: [u8; SALT_LEN],
    params: KdfParams,
}

impl FileKey {
    fn derive(
        passphrase: &[u8],
        salt: [u8; SALT_LEN],
        params: KdfParams,
    ) -> Result<FileKey, E2eError> {
        Ok(FileKey {
            key: derive_key(passphrase, &salt, params)?,
            salt,
            params,
        })
    }

    /// Encrypts `plaintext` into the bytes of a state file, under a fresh
    /// nonce.
    pub(crate) fn seal(
        &self,
        plaintext: &[u8],
        rand: &impl OpenMlsRand,
    ) -> Result<Vec<u8>, E2eError> {
        let nonce: [u8; NONCE_LEN] = rand.random_array().map_err(E2eError::internal)?;
        let params = self.params;
        let mut file = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN + DIGEST_LEN);
        file.extend_from_slice(MAGIC);
        file.push(FORMAT_VERSION);
        file.extend_from_slice(&params.memory_kib.to_be_bytes());
        file.extend_from_slice(&params.iterations.to_be_bytes());
        file.extend_from_slice(&params.parallelism.to_be_bytes());
        file.extend_from_slice(&self.salt);
        file.extend_from_slice(&nonce);
        file.extend_from_slice(&key_check(&self.key));

        let ciphertext = ChaCha20Poly1305::new(Key::from_slice(self.key.as_slice()))
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &file,
                },
            )
            .map_err(|_| E2eError::Internal("encryption of the device state failed".to_owned()))?;
        file.extend_from_slice(&ciphertext);
        let digest = Sha256::digest(&file);
        file.extend_from_slice(&digest);
        Ok(file)
    }
}

/// What [`StateFile::save_beside`] puts before the data it saves, so that
/// the device state and what is kept beside it are never taken for each
/// other.
const BESIDE_LABEL: &[u8] = b"chat-e2e beside v1\0";

/// The parts of a state file, its checksum verified.
struct Sealed<'a> {
    header: &'a [u8],
    ciphertext: &'a [u8],
    params: KdfParams,
    salt: [u8; SALT_LEN],
}

/// Splits the bytes of a state file, checking its magic, version and
/// checksum: no key needed.
fn read_header(file: &[u8]) -> Result<Sealed<'_>, E2eError> {
    if file.len() < HEADER_LEN + TAG_LEN + DIGEST_LEN || !file.starts_with(MAGIC) {
        return Err(E2eError::DamagedState("not a saved device state"));
    }
    let (body, digest) = file.split_at(file.len() - DIGEST_LEN);
    if Sha256::digest(body).as_slice() != digest {
        return Err(E2eError::DamagedState("the file's checksum does not match"));
    }
    let (header, ciphertext) = body.split_at(HEADER_LEN);
    if header[8] != FORMAT_VERSION {
        return Err(E2eError::DamagedState("unknown format version"));
    }
    let params = KdfParams {
        memory_kib: read_u32(header, 9),
        iterations: read_u32(header, 13),
        parallelism: read_u32(header, 17),
    };
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&header[21..21 + SALT_LEN]);
    Ok(Sealed {
        header,
        ciphertext,
        params,
        salt,
    })
}

impl Sealed<'_> {
    /// Decrypts with `key`: a key that does not pass the file's key check
    /// is [`E2eError::WrongPassphrase`].
    fn open(&self, key: &FileKey) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        let nonce = &self.header[37..37 + NONCE_LEN];
        let check = &self.header[49..49 + KEY_CHECK_LEN];
        if key_check(&key.key) != check {
            return Err(E2eError::WrongPassphrase);
        }
        let plaintext = ChaCha20Poly1305::new(Key::from_slice(key.key.as_slice()))
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: self.ciphertext,
                    aad: self.header,
                },
            )
            .map_err(|_| E2eError::DamagedState("the encrypted state does not authenticate"))?;
        Ok(Zeroizing::new(plaintext))
    }
}

/// Decrypts the bytes of a state file, and gives the key that opened it.
fn unseal(file: &[u8], passphrase: &[u8]) -> Result<(Zeroizing<Vec<u8>>, FileKey), E2eError> {
    let sealed = read_header(file)?;
    let key = FileKey::derive(passphrase, sealed.salt, sealed.params)?;
    let plaintext = sealed.open(&key)?;
    Ok((plaintext, key))
}

/// Replaces the file at `path` with `bytes` so that a crash leaves either
/// the old file or the new one, never a mix: the bytes go to a temporary
/// file in the same directory, which is flushed to disk and then renamed
/// over `path`. On Unix the file is readable by its owner only.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), E2eError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the state file's path has no file name"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = directory.join(temporary_name);

    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        // Make the rename itself durable. Not every platform lets a
        // directory be opened and synced; the rename has happened anyway.
        if let Ok(directory) = fs::File::open(directory) {
            let _ = directory.sync_all();
        }
        Ok::<(), std::io::Error>(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result.map_err(E2eError::from)
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, E2eError> {
    let mut key = Zeroizing::new([0u8; 32]);
    params
        .argon2()?
        .hash_password_into(passphrase, salt, key.as_mut_slice())
        .map_err(|_| E2eError::DamagedState("key derivation parameters out of range"))?;
    Ok(key)
}

fn key_check(key: &[u8; 32]) -> [u8; KEY_CHECK_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(KEY_CHECK_LABEL);
    hasher.update(key);
    let digest = hasher.finalize();
    let mut check = [0u8; KEY_CHECK_LEN];
    check.copy_from_slice(&digest[..KEY_CHECK_LEN]);
    check
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests are about the format, not the cost.
    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn key(passphrase: &[u8]) -> FileKey {
        let salt = RustCrypto::default().random_array().expect("a salt");
        FileKey::derive(passphrase, salt, FAST).expect("derived")
    }

    fn sealed(plaintext: &[u8], passphrase: &[u8]) -> Vec<u8> {
        key(passphrase)
            .seal(plaintext, &RustCrypto::default())
            .expect("sealed")
    }

    fn opened(file: &[u8], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, E2eError> {
        unseal(file, passphrase).map(|(plaintext, _)| plaintext)
    }

    #[test]
    fn a_sealed_state_opens_with_its_passphrase() {
        let file = sealed(b"state", b"correct horse");
        assert_eq!(
            opened(&file, b"correct horse").expect("opens").as_slice(),
            b"state"
        );
    }

    #[test]
    fn each_key_has_a_fresh_salt_and_each_save_a_fresh_nonce() {
        let salt = |file: &[u8]| file[21..21 + SALT_LEN].to_vec();
        let nonce = |file: &[u8]| file[37..37 + NONCE_LEN].to_vec();
        let rand = RustCrypto::default();
        let first_key = key(b"pass");
        let first = first_key.seal(b"state", &rand).expect("sealed");
        let again = first_key.seal(b"state", &rand).expect("sealed");
        assert_eq!(salt(&first), salt(&again));
        assert_ne!(nonce(&first), nonce(&again));
        let other = key(b"pass").seal(b"state", &rand).expect("sealed");
        assert_ne!(salt(&first), salt(&other));
    }

    #[test]
    fn the_key_that_opened_a_file_seals_what_the_passphrase_opens() {
        let file = sealed(b"first", b"pass");
        let (_, key) = unseal(&file, b"pass").expect("opens");
        let resealed = key.seal(b"second", &RustCrypto::default()).expect("sealed");
        assert_eq!(resealed[21..37], file[21..37], "the same salt");
        assert_eq!(
            opened(&resealed, b"pass").expect("opens").as_slice(),
            b"second"
        );
    }

    #[test]
    fn a_wrong_passphrase_is_told_apart_from_damage() {
        let file = sealed(b"state", b"correct horse");
        assert!(matches!(
            opened(&file, b"battery staple"),
            Err(E2eError::WrongPassphrase)
        ));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_damage() {
        let file = sealed(b"some state to protect", b"pass");
        for at in [0, 8, 10, 22, 40, 50, HEADER_LEN + 3, file.len() - 1] {
            let mut damaged = file.clone();
            damaged[at] ^= 0x01;
            assert!(
                matches!(opened(&damaged, b"pass"), Err(E2eError::DamagedState(_))),
                "a flipped bit at {at} went unnoticed"
            );
        }
    }

    #[test]
    fn a_truncated_or_foreign_file_is_damage() {
        let file = sealed(b"state", b"pass");
        for bytes in [
            &file[..file.len() - 1],
            &file[..10],
            b"",
            b"{\"json\": true}",
        ] {
            assert!(matches!(
                opened(bytes, b"pass"),
                Err(E2eError::DamagedState(_))
            ));
        }
    }

    #[test]
    fn a_tampered_ciphertext_with_a_fixed_checksum_does_not_authenticate() {
        let mut file = sealed(b"state", b"pass");
        file[HEADER_LEN] ^= 0x01;
        let body_len = file.len() - DIGEST_LEN;
        let digest = Sha256::digest(&file[..body_len]);
        file[body_len..].copy_from_slice(&digest);
        assert!(matches!(
            opened(&file, b"pass"),
            Err(E2eError::DamagedState(_))
        ));
    }

    #[test]
    fn a_header_asking_for_huge_memory_is_refused_before_deriving() {
        let mut file = sealed(b"state", b"pass");
        file[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
        let body_len = file.len() - DIGEST_LEN;
        let digest = Sha256::digest(&file[..body_len]);
        file[body_len..].copy_from_slice(&digest);
        assert!(matches!(
            opened(&file, b"pass"),
            Err(E2eError::DamagedState(_))
        ));
    }

    #[test]
    fn writing_replaces_the_file_and_leaves_no_temporary_file() {
        let directory =
            std::env::temp_dir().join(format!("chat-e2e-write-{}-{}", std::process::id(), line!()));
        fs::create_dir_all(&directory).expect("a directory");
        let path = directory.join("device.state");
        write_atomically(&path, b"first").expect("written");
        write_atomically(&path, b"second").expect("rewritten");
        assert_eq!(fs::read(&path).expect("read"), b"second");
        let names: Vec<_> = fs::read_dir(&directory)
            .expect("listed")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        assert_eq!(names, ["device.state"]);
        fs::remove_dir_all(&directory).expect("removed");
    }
}
