//! Creating rooms' groups, adding and removing members, talking.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    MlsMessageBodyIn, MlsMessageIn, OpenMlsProvider, ProcessedMessageContent, ProposalStore,
    PublicGroup, WireFormat,
};
use openmls_rust_crypto::OpenMlsRustCrypto;

use chat_domain::RoomName;
use chat_e2e::{E2eError, Incoming};

use crate::support::{Member, Relay, accept, device, room, room_with, user};

fn texts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(sender, text)| ((*sender).to_owned(), (*text).to_owned()))
        .collect()
}

#[test]
fn two_devices_exchange_messages_both_ways() {
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "plans");
    let [alice, bob] = members.as_mut_slice() else {
        unreachable!("two members")
    };

    alice.say(&mut relay, "lunch at noon?");
    bob.say(&mut relay, "yes, the usual place");
    alice.say(&mut relay, "see you there");

    assert_eq!(
        bob.read(&relay),
        texts(&[("alice", "lunch at noon?"), ("alice", "see you there")])
    );
    assert_eq!(
        alice.read(&relay),
        texts(&[("bob", "yes, the usual place")])
    );
}

#[test]
fn three_devices_each_read_what_the_two_others_say() {
    let (mut relay, mut members) = room_with(
        device("alice"),
        vec![device("bob"), device("carol")],
        "trio",
    );
    for (speaker, text) in [(0, "one"), (1, "two"), (2, "three")] {
        members[speaker].say(&mut relay, text);
    }
    assert_eq!(
        members[0].read(&relay),
        texts(&[("bob", "two"), ("carol", "three")])
    );
    assert_eq!(
        members[1].read(&relay),
        texts(&[("alice", "one"), ("carol", "three")])
    );
    assert_eq!(
        members[2].read(&relay),
        texts(&[("alice", "one"), ("bob", "two")])
    );
    let epochs: Vec<u64> = members
        .iter()
        .map(|member| member.device.epoch(&relay.room).expect("an epoch"))
        .collect();
    assert_eq!(epochs, [1, 1, 1]);
}

#[test]
fn a_removed_member_cannot_read_anything_sent_after_the_removal() {
    let (mut relay, mut members) = room_with(
        device("alice"),
        vec![device("bob"), device("mallory")],
        "team",
    );
    let commit = members[0]
        .device
        .remove_members(&relay.room, &[user("mallory")])
        .expect("a removal");
    accept(&mut members[0], &mut relay, &commit);
    let secret_at = relay.log.len();
    members[0].say(&mut relay, "the new plan");

    // Bob sees the removal and reads on.
    let outcomes = members[1].catch_up(&relay);
    match &outcomes[0] {
        Ok(Incoming::Commit { change, .. }) => {
            assert_eq!(change.removed.len(), 1);
            assert_eq!(change.removed[0].username, user("mallory"));
        }
        other => panic!("expected the removal, got {other:?}"),
    }
    assert!(
        matches!(&outcomes[1], Ok(Incoming::Message { plaintext, .. }) if plaintext == b"the new plan")
    );

    // A copy of Mallory's device that skips its removal cannot read the
    // message: it is at the old epoch.
    let mallory = &mut members[2];
    let skipped = mallory.device.process(&relay.room, &relay.log[secret_at]);
    assert!(
        matches!(skipped, Err(E2eError::FutureEpoch { .. })),
        "got {skipped:?}"
    );

    // Processing the removal tells Mallory's device it is out, and then it
    // cannot read the message either.
    let outcomes = mallory.catch_up(&relay);
    match &outcomes[0] {
        Ok(Incoming::Commit { change, .. }) => assert!(change.removed_this_device),
        other => panic!("expected the removal, got {other:?}"),
    }
    assert!(
        matches!(outcomes[1], Err(E2eError::Removed(_))),
        "got {:?}",
        outcomes[1]
    );
    assert!(matches!(
        mallory.device.encrypt(&relay.room, b"still here?"),
        Err(E2eError::Removed(_))
    ));
}

#[test]
fn a_new_member_cannot_read_anything_sent_before_joining() {
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "history");
    let before = relay.log.len();
    members[0].say(&mut relay, "before carol came");
    members[1].read(&relay);

    let mut carol = device("carol");
    let key_packages = carol.key_packages(1).expect("a key package");
    let commit = members[0]
        .device
        .add_members(&relay.room, &key_packages)
        .expect("an addition");
    accept(&mut members[0], &mut relay, &commit);
    carol
        .join(&relay.room, commit.welcome.as_ref().expect("a Welcome"))
        .expect("joined");
    let mut carol = Member::at_end(carol, &relay);
    members[0].say(&mut relay, "welcome carol");

    assert!(
        carol
            .device
            .process(&relay.room, &relay.log[before])
            .is_err(),
        "the message from before the addition was read"
    );
    assert_eq!(carol.read(&relay), texts(&[("alice", "welcome carol")]));
}

#[test]
fn removing_a_user_removes_every_one_of_their_devices() {
    let (mut relay, mut members) = room_with(
        device("alice"),
        vec![device("bob"), device("bob"), device("carol")],
        "devices",
    );
    let commit = members[0]
        .device
        .remove_members(&relay.room, &[user("BOB")])
        .expect("a removal");
    accept(&mut members[0], &mut relay, &commit);
    let left: Vec<String> = members[0]
        .device
        .members(&relay.room)
        .expect("members")
        .into_iter()
        .map(|member| member.username.into_string())
        .collect();
    assert_eq!(left, ["alice", "carol"]);

    match members[3].catch_up(&relay).remove(0) {
        Ok(Incoming::Commit { change, by, .. }) => {
            assert_eq!(by, user("alice"));
            assert_eq!(change.removed.len(), 2);
        }
        other => panic!("expected the removal, got {other:?}"),
    }
    assert!(matches!(
        members[0]
            .device
            .remove_members(&relay.room, &[user("bob")]),
        Err(E2eError::NotAMember(_))
    ));
}

#[test]
fn a_self_update_moves_everyone_to_the_next_epoch_and_the_talk_goes_on() {
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "update");
    let commit = members[1]
        .device
        .self_update(&relay.room)
        .expect("an update");
    assert!(commit.welcome.is_none());
    relay.upload(&commit).expect("accepted");
    members[1].say_after_merge(&mut relay);

    let outcomes = members[0].catch_up(&relay);
    assert!(matches!(
        &outcomes[0],
        Ok(Incoming::Commit { epoch: 2, change, .. }) if change.added.is_empty() && change.removed.is_empty()
    ));
    assert!(
        matches!(&outcomes[1], Ok(Incoming::Message { plaintext, .. }) if plaintext == b"fresh keys")
    );
}

impl Member {
    /// The updater learns of its accepted commit from the relay itself:
    /// processing its own commit merges it.
    fn say_after_merge(&mut self, relay: &mut crate::support::Relay) {
        let outcomes = self.catch_up(relay);
        assert!(
            matches!(&outcomes[..], [Ok(Incoming::Commit { epoch: 2, .. })]),
            "got {outcomes:?}"
        );
        self.say(relay, "fresh keys");
    }
}

#[test]
fn an_own_message_relayed_back_is_recognised_and_not_an_error() {
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "echo");
    members[0].say(&mut relay, "hello");
    assert!(matches!(
        members[0].catch_up(&relay).as_slice(),
        [Ok(Incoming::OwnMessage)]
    ));
}

#[test]
fn commits_are_public_and_messages_are_encrypted_so_a_server_sees_only_membership() {
    let mut alice = device("alice");
    let mut bob = device("bob");
    let room = crate::support::room("visible");
    alice.create_group(&room).expect("created");
    let commit = alice
        .add_members(&room, &bob.key_packages(1).expect("a key package"))
        .expect("an addition");
    alice.merge_pending_commit(&room).expect("merged");
    bob.join(&room, commit.welcome.as_ref().expect("a Welcome"))
        .expect("joined");
    let message = alice.encrypt(&room, b"secret words").expect("encrypted");

    let wire_format = |bytes: &[u8]| {
        MlsMessageIn::tls_deserialize_exact(bytes)
            .expect("an MLS message")
            .wire_format()
    };
    assert_eq!(wire_format(&commit.commit), WireFormat::PublicMessage);
    assert_eq!(wire_format(&message), WireFormat::PrivateMessage);
    assert!(
        !message.windows(12).any(|window| window == b"secret words"),
        "the plaintext is visible on the wire"
    );

    // A server that holds only public data (the GroupInfo of the group
    // with its ratchet tree) can follow the group and read whom the next
    // commit removes, with openmls's PublicGroup.
    let group_info =
        match MlsMessageIn::tls_deserialize_exact(commit.group_info.as_ref().expect("a GroupInfo"))
            .expect("an MLS message")
            .extract()
        {
            MlsMessageBodyIn::GroupInfo(group_info) => group_info,
            other => panic!("expected a GroupInfo, got {other:?}"),
        };
    let tree = group_info
        .extensions()
        .ratchet_tree()
        .expect("the ratchet tree travels in the GroupInfo")
        .ratchet_tree()
        .clone();
    let server = OpenMlsRustCrypto::default();
    let (public_group, _) = PublicGroup::from_external(
        server.crypto(),
        server.storage(),
        tree,
        group_info,
        ProposalStore::default(),
    )
    .expect("the server follows the group");
    assert_eq!(public_group.members().count(), 2);

    let removal = alice
        .remove_members(&room, &[user("bob")])
        .expect("a removal");
    let message = MlsMessageIn::tls_deserialize_exact(&removal.commit)
        .expect("an MLS message")
        .try_into_protocol_message()
        .expect("a group message");
    assert_eq!(message.epoch().as_u64(), removal.epoch);
    let processed = public_group
        .process_message(server.crypto(), message)
        .expect("the commit verifies");
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        panic!("expected a commit");
    };
    let removed: Vec<_> = staged
        .remove_proposals()
        .map(|proposal| proposal.remove_proposal().removed())
        .collect();
    assert_eq!(removed.len(), 1);
    let credential = public_group
        .members()
        .find(|member| member.index == removed[0])
        .expect("the removed member")
        .credential;
    assert_eq!(
        openmls::prelude::BasicCredential::try_from(credential)
            .expect("a basic credential")
            .identity(),
        b"bob"
    );
}

#[test]
fn garbage_from_the_network_is_an_error_and_changes_nothing() {
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "garbage");
    for bytes in [&b""[..], b"\x00\x01", b"not mls at all", &[0xff; 300]] {
        assert!(matches!(
            members[1].device.process(&relay.room, bytes),
            Err(E2eError::Malformed(_))
        ));
        assert!(matches!(
            members[1].device.join(&relay.room, bytes),
            Err(E2eError::Malformed(_))
        ));
    }
    // A message cut short, and a bit flipped inside one.
    members[0].say(&mut relay, "intact");
    let good = relay.log.last().expect("a message").clone();
    assert!(
        members[1]
            .device
            .process(&relay.room, &good[..good.len() - 1])
            .is_err()
    );
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    assert!(members[1].device.process(&relay.room, &flipped).is_err());
    assert_eq!(members[1].read(&relay), texts(&[("alice", "intact")]));
}

#[test]
fn a_welcome_passed_off_as_another_rooms_is_refused() {
    let mut alice = device("alice");
    let mut bob = device("bob");
    let secret = crate::support::room("secret");
    alice.create_group(&secret).expect("created");
    let key_packages = bob.key_packages(2).expect("key packages");
    let commit = alice
        .add_members(&secret, &key_packages[..1])
        .expect("added");
    let refused = bob.join(
        &crate::support::room("lobby"),
        commit.welcome.as_ref().expect("a Welcome"),
    );
    assert!(
        matches!(refused, Err(E2eError::Rejected(_))),
        "got {refused:?}"
    );
    assert_eq!(bob.rooms().count(), 0);
}

/// Replays `welcome` (of epoch 1) to `bob`, who must refuse it as stale,
/// holding the group at `held`.
fn assert_replay_refused(bob: &mut Member, room: &RoomName, welcome: &[u8], held: u64) {
    let replayed = bob.device.join(room, welcome);
    assert!(
        matches!(replayed, Err(E2eError::StaleWelcome { welcome: 1, held: h, .. }) if h == held),
        "got {replayed:?}"
    );
}

#[test]
fn a_replayed_welcome_is_refused_and_leaves_the_group_as_it_was() {
    // A last-resort KeyPackage opens any number of Welcomes, so only the
    // epoch tells a replay from a new one.
    let mut bob = device("bob");
    let last_resort = bob
        .last_resort_key_package()
        .expect("a last-resort package");
    let mut relay = crate::support::Relay::new(crate::support::room("replay"));
    let mut alice = Member::at_end(device("alice"), &relay);
    alice.device.create_group(&relay.room).expect("created");
    let commit = alice
        .device
        .add_members(&relay.room, std::slice::from_ref(&last_resort))
        .expect("added");
    accept(&mut alice, &mut relay, &commit);
    alice.catch_up(&relay);
    let welcome = commit.welcome.expect("a Welcome");
    bob.join(&relay.room, &welcome).expect("joined");
    let mut bob = Member::at_end(bob, &relay);

    // At the epoch it joined at, then after a commit moved it on, the
    // same Welcome is refused, naming both epochs.
    alice.say(&mut relay, "first");
    assert_eq!(bob.read(&relay), texts(&[("alice", "first")]));
    assert_replay_refused(&mut bob, &relay.room, &welcome, 1);
    let update = alice.device.self_update(&relay.room).expect("an update");
    accept(&mut alice, &mut relay, &update);
    alice.catch_up(&relay);
    bob.catch_up(&relay);
    assert_replay_refused(&mut bob, &relay.room, &welcome, 2);

    // Bob's group is the one he had: at epoch 2, reading what follows
    // (a group rolled back to epoch 1 could not).
    assert_eq!(bob.device.epoch(&relay.room).expect("the room"), 2);
    alice.say(&mut relay, "second");
    assert_eq!(bob.read(&relay), texts(&[("alice", "second")]));
}

#[test]
fn a_change_that_names_nothing_is_refused_before_any_commit() {
    let (relay, mut members) = room_with(device("alice"), vec![device("bob")], "empty");
    assert!(matches!(
        members[0].device.add_members(&relay.room, &[]),
        Err(E2eError::NothingToCommit)
    ));
    assert!(matches!(
        members[0].device.remove_members(&relay.room, &[]),
        Err(E2eError::NothingToCommit)
    ));
    assert!(
        !members[0]
            .device
            .has_pending_commit(&relay.room)
            .expect("a room")
    );
}

#[test]
fn a_device_joining_from_outside_with_an_external_commit_is_refused() {
    use openmls::prelude::{
        BasicCredential, CredentialWithKey, MlsGroup, MlsGroupJoinConfig,
        PURE_PLAINTEXT_WIRE_FORMAT_POLICY,
    };
    use openmls_basic_credential::SignatureKeyPair;

    let (relay, mut members) = room_with(device("alice"), vec![device("bob")], "outside");
    // Any member's commit carries the group's GroupInfo; the server keeps
    // it, so an outsider (or the server) could try to join with it.
    let commit = members[0]
        .device
        .self_update(&relay.room)
        .expect("an update");
    members[0]
        .device
        .merge_pending_commit(&relay.room)
        .expect("merged");
    members[1]
        .device
        .process(&relay.room, &commit.commit)
        .expect("processed");
    let group_info =
        match MlsMessageIn::tls_deserialize_exact(commit.group_info.as_ref().expect("a GroupInfo"))
            .expect("an MLS message")
            .extract()
        {
            MlsMessageBodyIn::GroupInfo(group_info) => group_info,
            other => panic!("expected a GroupInfo, got {other:?}"),
        };

    let outsider = OpenMlsRustCrypto::default();
    let signer =
        SignatureKeyPair::new(chat_e2e::CIPHERSUITE.signature_algorithm()).expect("a key pair");
    let (_, bundle) = MlsGroup::external_commit_builder()
        .with_config(
            MlsGroupJoinConfig::builder()
                .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
                .build(),
        )
        .build_group(
            &outsider,
            group_info,
            CredentialWithKey {
                credential: BasicCredential::new(b"eve".to_vec()).into(),
                signature_key: signer.public().into(),
            },
        )
        .expect("an external commit is possible in MLS")
        .load_psks(outsider.storage())
        .expect("no PSKs")
        .build(outsider.rand(), outsider.crypto(), &signer, |_| true)
        .expect("built")
        .finalize(&outsider)
        .expect("finalized");
    let external = bundle.into_commit().to_bytes().expect("serialized");

    let epoch = members[1].device.epoch(&relay.room).expect("an epoch");
    assert!(matches!(
        members[1].device.process(&relay.room, &external),
        Err(E2eError::Rejected(_))
    ));
    assert_eq!(
        members[1].device.epoch(&relay.room).expect("an epoch"),
        epoch
    );
    assert_eq!(
        members[1]
            .device
            .members(&relay.room)
            .expect("members")
            .len(),
        2
    );
}

fn seconds_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[test]
fn a_member_whose_key_package_lifetime_ended_does_not_keep_others_from_joining() {
    let mut relay = Relay::new(room("dormant"));
    let mut alice = Member::at_end(device("alice"), &relay);
    alice.device.create_group(&relay.room).expect("created");
    // Bob's device is added and never updates its keys: its leaf keeps its
    // KeyPackage's lifetime, which ends two seconds from now.
    let package = device("bob")
        .key_package_valid_for(2)
        .expect("a key package");
    let end = seconds_now() + 2;
    let commit = alice
        .device
        .add_members(&relay.room, &[package])
        .expect("an addition");
    accept(&mut alice, &mut relay, &commit);
    while seconds_now() <= end {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Carol joins a tree that still holds Bob's leaf, and reads what
    // follows.
    let mut carol = device("carol");
    let key_packages = carol.key_packages(1).expect("a key package");
    let commit = alice
        .device
        .add_members(&relay.room, &key_packages)
        .expect("an addition");
    accept(&mut alice, &mut relay, &commit);
    carol
        .join(&relay.room, commit.welcome.as_ref().expect("a Welcome"))
        .expect("joined a group holding an old leaf");
    let mut carol = Member::at_end(carol, &relay);
    alice.say(&mut relay, "welcome carol");
    assert_eq!(carol.read(&relay), texts(&[("alice", "welcome carol")]));
    assert_eq!(carol.device.members(&relay.room).expect("members").len(), 3);
}
