//! A device saved to its encrypted file and loaded back.

use std::path::PathBuf;

use chat_e2e::{Change, Device, E2eError, KdfParams, StateFile};

use crate::support::{Member, accept, device, room, room_with};

/// Cheap key derivation for tests that save often; one test uses the
/// default cost.
const FAST: KdfParams = KdfParams {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};

/// A fresh directory for one test's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("chat-e2e-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a scratch directory");
        Scratch(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_device_loaded_from_its_file_still_reads_and_sends() {
    let scratch = Scratch::new("reload");
    let path = scratch.file("bob.state");
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "saved");
    members[0].say(&mut relay, "before the restart");
    members[1].read(&relay);
    members[1]
        .device
        .save(&path, "bob's passphrase")
        .expect("saved with the default cost");

    let bob_before = members.remove(1);
    let cursor = bob_before.cursor;
    let fingerprint = bob_before.device.fingerprint();
    drop(bob_before);
    let mut bob = Member {
        device: Device::load(&path, "bob's passphrase").expect("loaded"),
        cursor,
    };
    assert_eq!(bob.device.fingerprint(), fingerprint);
    assert_eq!(bob.device.username().as_str(), "bob");
    assert_eq!(bob.device.epoch(&relay.room).expect("the room"), 1);

    members[0].say(&mut relay, "after the restart");
    assert_eq!(
        bob.read(&relay),
        [("alice".to_owned(), "after the restart".to_owned())]
    );
    bob.say(&mut relay, "I am back");
    assert_eq!(
        members[0].read(&relay),
        [("bob".to_owned(), "I am back".to_owned())]
    );
}

#[test]
fn key_packages_made_before_a_save_still_open_welcomes_after_loading() {
    let scratch = Scratch::new("key-packages");
    let path = scratch.file("bob.state");
    let mut bob = device("bob");
    let key_packages = bob.key_packages(2).expect("key packages");
    bob.save_with(&path, "pass", FAST).expect("saved");
    let mut bob = Device::load(&path, "pass").expect("loaded");

    let mut alice = device("alice");
    let room = room("later");
    alice.create_group(&room).expect("created");
    let commit = alice.add_members(&room, &key_packages[1..]).expect("added");
    bob.join(&room, commit.welcome.as_ref().expect("a Welcome"))
        .expect("joined with a KeyPackage made before the restart");
}

#[test]
fn a_pending_commit_survives_a_restart_and_can_still_be_cleared_and_made_again() {
    let scratch = Scratch::new("pending");
    let path = scratch.file("alice.state");
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "restart");
    let _lost = members[0]
        .device
        .self_update(&relay.room)
        .expect("an update");
    members[0]
        .device
        .save_with(&path, "pass", FAST)
        .expect("saved");
    let alice = Device::load(&path, "pass").expect("loaded");
    members[0].device = alice;
    assert!(
        members[0]
            .device
            .has_pending_commit(&relay.room)
            .expect("a room")
    );

    // Meanwhile Bob's commit was accepted.
    let bobs = members[1]
        .device
        .self_update(&relay.room)
        .expect("an update");
    accept(&mut members[1], &mut relay, &bobs);

    let change = members[0]
        .device
        .clear_pending_commit(&relay.room)
        .expect("cleared");
    assert_eq!(change, Some(Change::Update));
    members[0].catch_up(&relay);
    let again = members[0]
        .device
        .commit(&relay.room, Change::Update)
        .expect("made again");
    accept(&mut members[0], &mut relay, &again);
    members[1].catch_up(&relay);
    members[0].catch_up(&relay);
    members[0].say(&mut relay, "in sync");
    assert_eq!(
        members[1].read(&relay),
        [("alice".to_owned(), "in sync".to_owned())]
    );
}

/// The salt in a state file's header (bytes 21 to 36).
fn salt(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).expect("read")[21..37].to_vec()
}

#[test]
fn a_state_file_saves_again_under_the_key_it_derived_once() {
    let scratch = Scratch::new("state-file");
    let path = scratch.file("bob.state");
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "kept");
    let file = StateFile::create(&path, "bob's passphrase", FAST).expect("a key");
    file.save(&members[1].device).expect("saved");
    let first = std::fs::read(&path).expect("read");

    // Reading changes the state; the next save keeps the salt (the key was
    // not derived again) and draws a fresh nonce.
    members[0].say(&mut relay, "between the saves");
    members[1].read(&relay);
    file.save(&members[1].device).expect("saved again");
    let second = std::fs::read(&path).expect("read");
    assert_eq!(first[21..37], second[21..37], "the same salt");
    assert_ne!(first[37..49], second[37..49], "a fresh nonce");

    // The passphrase opens it, holding the second save; the opened file
    // saves under the same key again.
    let (opened, device) = StateFile::open(&path, "bob's passphrase").expect("opened");
    assert_eq!(opened.params(), FAST);
    let mut bob = Member {
        device,
        cursor: members[1].cursor,
    };
    members[0].say(&mut relay, "after the reopening");
    assert_eq!(
        bob.read(&relay),
        [("alice".to_owned(), "after the reopening".to_owned())]
    );
    opened.save(&bob.device).expect("saved by the opened file");
    assert_eq!(salt(&path), first[21..37]);
    Device::load(&path, "bob's passphrase").expect("still opens with the passphrase");

    // A new passphrase is a new key, with a new salt; the old one no
    // longer opens the file.
    StateFile::create(&path, "a new passphrase", FAST)
        .expect("a key")
        .save(&bob.device)
        .expect("saved");
    assert_ne!(salt(&path), first[21..37]);
    assert!(matches!(
        Device::load(&path, "bob's passphrase"),
        Err(E2eError::WrongPassphrase)
    ));
    Device::load(&path, "a new passphrase").expect("the new passphrase opens it");
}

#[test]
fn a_wrong_passphrase_is_refused_clearly_and_the_right_one_still_works() {
    let scratch = Scratch::new("passphrase");
    let path = scratch.file("alice.state");
    device("alice")
        .save_with(&path, "right", FAST)
        .expect("saved");
    let refused = Device::load(&path, "wrong");
    assert!(
        matches!(refused, Err(E2eError::WrongPassphrase)),
        "got {refused:?}"
    );
    assert_eq!(
        E2eError::WrongPassphrase.to_string(),
        "wrong passphrase for the saved device state"
    );
    Device::load(&path, "right").expect("the right passphrase opens it");
}

#[test]
fn a_damaged_or_missing_file_is_refused_clearly() {
    let scratch = Scratch::new("damaged");
    let path = scratch.file("alice.state");
    device("alice")
        .save_with(&path, "pass", FAST)
        .expect("saved");
    let bytes = std::fs::read(&path).expect("read");

    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    std::fs::write(&path, &flipped).expect("written");
    assert!(matches!(
        Device::load(&path, "pass"),
        Err(E2eError::DamagedState(_))
    ));

    std::fs::write(&path, &bytes[..bytes.len() / 3]).expect("written");
    assert!(matches!(
        Device::load(&path, "pass"),
        Err(E2eError::DamagedState(_))
    ));

    assert!(matches!(
        Device::load(&scratch.file("absent.state"), "pass"),
        Err(E2eError::Io(_))
    ));
}

#[test]
fn the_saved_file_holds_neither_a_sent_plaintext_nor_a_key_package_in_clear() {
    let scratch = Scratch::new("opaque");
    let path = scratch.file("bob.state");
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "opaque");
    let plaintext = "the launch code is 7741-alpha-tango";
    members[1].say(&mut relay, plaintext);
    members[0].read(&relay);
    let key_package = members[1]
        .device
        .key_packages(1)
        .expect("a key package")
        .remove(0);
    members[1]
        .device
        .save_with(&path, "pass", FAST)
        .expect("saved");

    let file = std::fs::read(&path).expect("read");
    let contains = |needle: &[u8]| file.windows(needle.len()).any(|window| window == needle);
    assert!(!contains(plaintext.as_bytes()));
    assert!(!contains(b"bob"), "even the username is encrypted");
    assert!(!contains(members[1].device.signature_key()));
    assert!(!contains(&key_package[key_package.len() - 64..]));

    // Without the passphrase, nothing of it is readable; with it, all is.
    let loaded = Device::load(&path, "pass").expect("loaded");
    assert_eq!(loaded.username().as_str(), "bob");
}

#[test]
fn what_is_kept_beside_a_device_opens_with_its_file_only() {
    let scratch = Scratch::new("beside");
    let path = scratch.file("bob.state");
    let beside = scratch.file("bob.history");
    let bob = device("bob");
    let file = StateFile::create(&path, "bob's passphrase", FAST).expect("a key");
    file.save(&bob).expect("saved");
    file.save_beside(&beside, b"what bob read: lunch at noon")
        .expect("kept");
    let raw = std::fs::read(&beside).expect("read");
    assert!(
        !raw.windows(5).any(|window| window == b"lunch"),
        "kept encrypted"
    );

    // Opened again with the passphrase, the file reads what it kept.
    let (opened, _) = StateFile::open(&path, "bob's passphrase").expect("opened");
    assert_eq!(
        opened.load_beside(&beside).expect("loaded").as_slice(),
        b"what bob read: lunch at noon"
    );
    // Under another passphrase, it does not; nor is the device state
    // taken for it, nor it for a device.
    let other = StateFile::create(scratch.file("other.state"), "another", FAST).expect("a key");
    assert!(matches!(
        other.load_beside(&beside),
        Err(E2eError::WrongPassphrase)
    ));
    assert!(matches!(
        opened.load_beside(&path),
        Err(E2eError::DamagedState(_))
    ));
    assert!(matches!(
        StateFile::open(&beside, "bob's passphrase"),
        Err(E2eError::DamagedState(_))
    ));
}
