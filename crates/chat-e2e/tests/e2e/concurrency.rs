//! Commits that race for an epoch, and devices that fall behind.

use chat_e2e::{Change, E2eError, Incoming};

use crate::support::{Member, StaleEpoch, accept, device, room_with, user};

fn epochs(members: &[Member], relay: &crate::support::Relay) -> Vec<u64> {
    members
        .iter()
        .map(|member| member.device.epoch(&relay.room).expect("an epoch"))
        .collect()
}

#[test]
fn two_concurrent_commits_converge_after_the_loser_commits_again() {
    let (mut relay, mut members) = room_with(
        device("alice"),
        vec![device("bob"), device("carol")],
        "race",
    );
    let mut dave = device("dave");
    let dave_key_packages = dave.key_packages(1).expect("a key package");

    // Alice and Bob both commit on epoch 1; the server takes Alice's.
    let alices = members[0]
        .device
        .remove_members(&relay.room, &[user("carol")])
        .expect("a removal");
    let bobs = members[1]
        .device
        .add_members(&relay.room, &dave_key_packages)
        .expect("an addition");
    assert_eq!((alices.epoch, bobs.epoch), (1, 1));
    accept(&mut members[0], &mut relay, &alices);
    assert_eq!(relay.upload(&bobs), Err(StaleEpoch));

    // Bob drops his commit, processes Alice's and adds Dave again.
    let change = members[1]
        .device
        .clear_pending_commit(&relay.room)
        .expect("cleared");
    assert_eq!(change, Some(Change::Add(dave_key_packages.clone())));
    let outcomes = members[1].catch_up(&relay);
    assert!(
        matches!(
            &outcomes[..],
            [Ok(Incoming::Commit {
                epoch: 2,
                superseded: None,
                ..
            })]
        ),
        "got {outcomes:?}"
    );
    let again = members[1]
        .device
        .commit(&relay.room, change.expect("a change"))
        .expect("committed again");
    assert_eq!(again.epoch, 2);
    accept(&mut members[1], &mut relay, &again);
    dave.join(&relay.room, again.welcome.as_ref().expect("a Welcome"))
        .expect("Dave joins");
    let dave = Member::at_end(dave, &relay);

    members[0].catch_up(&relay);
    members[1].catch_up(&relay);
    let carol = members.remove(2);
    members.push(dave);
    assert_eq!(epochs(&members, &relay), [3, 3, 3]);
    drop(carol);

    // Everyone still in the room reads everyone.
    members[2].say(&mut relay, "hi, I am dave");
    members[0].say(&mut relay, "hi dave");
    assert_eq!(
        members[1].read(&relay),
        [
            ("dave".to_owned(), "hi, I am dave".to_owned()),
            ("alice".to_owned(), "hi dave".to_owned())
        ]
    );
}

#[test]
fn a_loser_that_sees_the_winning_commit_first_gets_its_change_back() {
    let (mut relay, mut members) = room_with(device("alice"), vec![device("bob")], "order");
    let winner = members[0]
        .device
        .self_update(&relay.room)
        .expect("an update");
    let _loser = members[1]
        .device
        .self_update(&relay.room)
        .expect("an update");
    accept(&mut members[0], &mut relay, &winner);

    // The winning commit reaches Bob before the server's refusal does.
    let outcomes = members[1].catch_up(&relay);
    assert!(
        matches!(
            &outcomes[..],
            [Ok(Incoming::Commit {
                superseded: Some(Change::Update),
                epoch: 2,
                ..
            })]
        ),
        "got {outcomes:?}"
    );
    assert!(
        !members[1]
            .device
            .has_pending_commit(&relay.room)
            .expect("a room")
    );
    assert_eq!(
        members[1]
            .device
            .clear_pending_commit(&relay.room)
            .expect("nothing to clear"),
        None
    );
    let again = members[1]
        .device
        .self_update(&relay.room)
        .expect("an update");
    accept(&mut members[1], &mut relay, &again);
    members[0].catch_up(&relay);
    assert_eq!(epochs(&members, &relay), [3, 3]);
}

#[test]
fn a_device_with_a_pending_commit_cannot_commit_or_send_until_it_is_settled() {
    let (relay, mut members) = room_with(device("alice"), vec![device("bob")], "pending");
    members[0]
        .device
        .self_update(&relay.room)
        .expect("an update");
    assert!(matches!(
        members[0].device.self_update(&relay.room),
        Err(E2eError::PendingCommit(_))
    ));
    assert!(matches!(
        members[0].device.encrypt(&relay.room, b"now?"),
        Err(E2eError::PendingCommit(_))
    ));
    members[0]
        .device
        .clear_pending_commit(&relay.room)
        .expect("cleared");
    assert!(members[0].device.encrypt(&relay.room, b"now").is_ok());
}

#[test]
fn a_device_offline_for_several_epochs_catches_up_in_order() {
    let (mut relay, mut members) = room_with(
        device("alice"),
        vec![device("bob"), device("carol")],
        "offline",
    );
    // Carol is offline while the group moves through four epochs, with
    // messages in between.
    for round in 0..4 {
        let commit = if round == 2 {
            let mut erin = device("erin");
            let key_packages = erin.key_packages(1).expect("a key package");
            members[0]
                .device
                .add_members(&relay.room, &key_packages)
                .expect("an addition")
        } else {
            members[0]
                .device
                .self_update(&relay.room)
                .expect("an update")
        };
        accept(&mut members[0], &mut relay, &commit);
        members[0].say(&mut relay, &format!("message {round}"));
        members[1].catch_up(&relay);
    }
    assert_eq!(relay.epoch, 5);

    // Out of order, a message of epoch 5 is refused as from the future.
    let latest = relay.log.last().expect("a message").clone();
    assert!(matches!(
        members[2].device.process(&relay.room, &latest),
        Err(E2eError::FutureEpoch {
            message: 5,
            group: 1
        })
    ));

    // In order, Carol reads everything and ends at the group's epoch.
    let read = members[2].read(&relay);
    assert_eq!(
        read.iter()
            .map(|(_, text)| text.as_str())
            .collect::<Vec<_>>(),
        ["message 0", "message 1", "message 2", "message 3"]
    );
    assert_eq!(epochs(&members, &relay), [5, 5, 5]);
    assert_eq!(
        members[2]
            .device
            .members(&relay.room)
            .expect("members")
            .len(),
        4
    );
}

#[test]
fn a_message_sent_while_a_commit_was_in_flight_is_still_read_after_it() {
    let (mut relay, mut members) = room_with(
        device("alice"),
        vec![device("bob"), device("carol")],
        "inflight",
    );
    // Alice encrypts at epoch 1; before her message reaches the server,
    // Bob's update is accepted, so the message is numbered after it.
    let message = members[0]
        .device
        .encrypt(&relay.room, b"sent at epoch 1")
        .expect("encrypted");
    let update = members[1]
        .device
        .self_update(&relay.room)
        .expect("an update");
    accept(&mut members[1], &mut relay, &update);
    relay.post(message);

    let outcomes = members[2].catch_up(&relay);
    assert!(matches!(
        &outcomes[0],
        Ok(Incoming::Commit { epoch: 2, .. })
    ));
    assert!(
        matches!(&outcomes[1], Ok(Incoming::Message { plaintext, .. }) if plaintext == b"sent at epoch 1"),
        "got {:?}",
        outcomes[1]
    );
}
