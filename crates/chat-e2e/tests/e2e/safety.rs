//! Fingerprints and safety numbers, as two users compare them.

use chat_domain::{RoomName, Username};
use chat_e2e::{Device, SafetyNumber};

use crate::support::{accept, device, room_with, user};

/// The safety number of `me` and `them` as `device` sees the room's group.
fn safety_number_seen_by(
    device: &Device,
    room: &RoomName,
    me: &Username,
    them: &Username,
) -> SafetyNumber {
    let members = device.members(room).expect("members");
    let keys_of = |name: &Username| -> Vec<Vec<u8>> {
        members
            .iter()
            .filter(|member| member.username.same_user(name))
            .map(|member| member.signature_key.clone())
            .collect()
    };
    SafetyNumber::compute(me, &keys_of(me), them, &keys_of(them))
}

#[test]
fn the_safety_number_is_the_same_from_either_side_and_changes_with_a_device_key() {
    let (mut relay, mut members) = room_with(
        device("alice"),
        vec![device("bob"), device("bob")],
        "verify",
    );
    let (alice, bob) = (user("alice"), user("bob"));
    let seen_by_alice = safety_number_seen_by(&members[0].device, &relay.room, &alice, &bob);
    let seen_by_bob = safety_number_seen_by(&members[1].device, &relay.room, &bob, &alice);
    assert_eq!(seen_by_alice, seen_by_bob);
    assert_eq!(seen_by_alice.digits().len(), 60);

    // Stable: computed again, the same.
    assert_eq!(
        safety_number_seen_by(&members[0].device, &relay.room, &alice, &bob),
        seen_by_alice
    );

    // Bob adds a new device: the number changes on both sides, alike.
    let mut bob_tablet = device("bob");
    let commit = members[1]
        .device
        .add_members(
            &relay.room,
            &bob_tablet.key_packages(1).expect("a key package"),
        )
        .expect("added");
    accept(&mut members[1], &mut relay, &commit);
    members[0].catch_up(&relay);
    bob_tablet
        .join(&relay.room, commit.welcome.as_ref().expect("a Welcome"))
        .expect("joined");
    let after_alice = safety_number_seen_by(&members[0].device, &relay.room, &alice, &bob);
    let after_tablet = safety_number_seen_by(&bob_tablet, &relay.room, &bob, &alice);
    assert_ne!(after_alice, seen_by_alice);
    assert_eq!(after_alice, after_tablet);
}

#[test]
fn replacing_one_device_key_changes_the_safety_number() {
    let alice = device("alice");
    let phone = device("bob");
    let old_laptop = device("bob");
    let new_laptop = device("bob");
    let before = SafetyNumber::compute(
        alice.username(),
        &[alice.signature_key()],
        phone.username(),
        &[phone.signature_key(), old_laptop.signature_key()],
    );
    let after = SafetyNumber::compute(
        alice.username(),
        &[alice.signature_key()],
        phone.username(),
        &[phone.signature_key(), new_laptop.signature_key()],
    );
    assert_ne!(before, after);
}

#[test]
fn a_devices_fingerprint_is_its_key_digest_as_the_server_lists_it() {
    let alice = device("alice");
    let shown = alice.fingerprint().to_string();
    assert_eq!(shown.len(), 64 + 15);
    assert!(shown.replace(' ', "").starts_with(&alice.device_id()));
    assert_ne!(device("alice").fingerprint(), alice.fingerprint());
}
