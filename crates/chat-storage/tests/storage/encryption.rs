//! Encrypted rooms and the MLS directory, on both backends through
//! `conformance_suite!`: the flag is fixed at creation, an edit there is
//! refused, devices and KeyPackages are kept per device and handed out
//! once (of the devices a claim names, when it names some), a room lists
//! its members' devices, and a deleted account takes its devices with it.

use chat_domain::e2e::{DeviceId, MAX_DEVICES_PER_USER};
use chat_domain::{MessageBody, Refusal, RoomName, Seq, Visibility};
use chat_storage::{MembershipOp, MessageOp, NewChange, NewKeyPackage, StorageError};
use chrono::{Duration, Utc};

use crate::support::{AppendOk, TestDb, actor, message};

conformance_suite!(
    an_encrypted_room_keeps_its_flag_and_refuses_edits,
    a_conversation_is_encrypted_or_not_for_good,
    key_packages_are_handed_out_once_then_the_last_resort_one,
    devices_are_limited_replaced_with_a_new_key_and_removed_with_their_account,
    a_room_lists_the_devices_of_its_current_members_only,
    a_claim_naming_a_device_takes_a_package_of_that_device_only,
);

fn id(text: &str) -> DeviceId {
    DeviceId::parse(text).expect("a valid device id")
}

fn package(bytes: &[u8], days: i64) -> NewKeyPackage {
    NewKeyPackage {
        bytes: bytes.to_vec(),
        reference: [b"ref:", bytes].concat(),
        not_after: Utc::now() + Duration::days(days),
    }
}

async fn an_encrypted_room_keeps_its_flag_and_refuses_edits(db: &TestDb) {
    let alice = db.user("alice").await;
    let name = RoomName::public("vault").expect("name");
    let room = db
        .store
        .create_room(&name, alice.id, Visibility::Private, None, true)
        .await
        .expect("create");
    assert!(room.encrypted);
    let found = db
        .store
        .room_by_name(&name)
        .await
        .expect("q")
        .expect("room");
    assert!(found.encrypted);
    assert!(
        db.store
            .room_key(&name)
            .await
            .expect("q")
            .expect("key")
            .encrypted
    );
    assert!(!db.general().await.encrypted);

    // The store relays what it is given (the server refuses plaintext
    // before it gets here); an edit would put readable text in, so the
    // store itself refuses it and changes nothing.
    let stored = db
        .store
        .append_ok(vec![message(room.id, &alice, "opaque ciphertext", None)])
        .await
        .expect("append")[0]
        .message
        .clone();
    let refused = db
        .store
        .change_message(NewChange {
            room_id: room.id,
            target: stored.seq,
            user_id: alice.id,
            username: alice.username.clone(),
            op: MessageOp::Edit {
                content: MessageBody::parse("readable").expect("body"),
            },
            client_id: None,
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(StorageError::Refused(Refusal::EncryptionRequired))
        ),
        "{refused:?}"
    );
    let after = db
        .store
        .message_at(room.id, stored.seq)
        .await
        .expect("q")
        .expect("message");
    assert_eq!(after.content.as_deref(), Some("opaque ciphertext"));
    assert_eq!(after.edited_at, None);
    let room = db
        .store
        .room_by_id(room.id)
        .await
        .expect("q")
        .expect("room");
    assert_eq!(
        room.last_seq,
        Seq::new(1).expect("seq"),
        "no change was recorded"
    );
}

async fn a_conversation_is_encrypted_or_not_for_good(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let secret = db
        .store
        .open_direct(&alice, &bob, Some(true))
        .await
        .expect("open");
    assert!(secret.encrypted);
    for asked in [None, Some(true)] {
        let again = db
            .store
            .open_direct(&bob, &alice, asked)
            .await
            .expect("open");
        assert_eq!(again.id, secret.id);
        assert!(again.encrypted);
    }
    let refused = db.store.open_direct(&bob, &alice, Some(false)).await;
    assert!(
        matches!(refused, Err(StorageError::Conflict(_))),
        "{refused:?}"
    );

    let plain = db
        .store
        .open_direct(&alice, &carol, None)
        .await
        .expect("open");
    assert!(!plain.encrypted);
    let refused = db.store.open_direct(&carol, &alice, Some(true)).await;
    assert!(
        matches!(refused, Err(StorageError::Conflict(_))),
        "{refused:?}"
    );
    let still = db
        .store
        .room_by_id(plain.id)
        .await
        .expect("q")
        .expect("room");
    assert!(!still.encrypted);
}

async fn key_packages_are_handed_out_once_then_the_last_resort_one(db: &TestDb) {
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let phone = id("phone");
    db.store
        .register_device(bob.id, &phone, b"credential", b"key-1")
        .await
        .expect("register");
    // Unknown devices are refused.
    let unknown = db
        .store
        .add_key_packages(bob.id, &id("tablet"), &[package(b"x", 30)], None)
        .await;
    assert!(
        matches!(unknown, Err(StorageError::NotFound(_))),
        "{unknown:?}"
    );
    let stock = db
        .store
        .add_key_packages(
            bob.id,
            &phone,
            &[
                package(b"kp-1", 30),
                package(b"kp-2", 30),
                package(b"old", -1),
            ],
            Some(&package(b"resort-1", 90)),
        )
        .await
        .expect("add");
    assert_eq!(
        (stock.available, stock.last_resort),
        (2, true),
        "the expired one is not counted"
    );
    // A new last-resort package replaces the old one.
    db.store
        .add_key_packages(bob.id, &phone, &[], Some(&package(b"resort-2", 90)))
        .await
        .expect("add");

    let mut handed = Vec::new();
    for _ in 0..4 {
        let claimed = db
            .store
            .claim_key_packages(&[bob.id, carol.id], None)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1, "carol has no device: {claimed:?}");
        assert_eq!(claimed[0].device_id, phone);
        handed.push((claimed[0].key_package.clone(), claimed[0].last_resort));
    }
    assert_eq!(
        handed,
        [
            (b"kp-1".to_vec(), false),
            (b"kp-2".to_vec(), false),
            (b"resort-2".to_vec(), true),
            (b"resort-2".to_vec(), true),
        ],
        "oldest first, each once, never an expired one, then the newest last resort"
    );
    let stock = db
        .store
        .key_package_stock(bob.id, &phone)
        .await
        .expect("stock");
    assert_eq!((stock.available, stock.last_resort), (0, true));
}

async fn devices_are_limited_replaced_with_a_new_key_and_removed_with_their_account(db: &TestDb) {
    let bob = db.user("bob").await;
    let phone = id("phone");
    let first = db
        .store
        .register_device(bob.id, &phone, b"credential", b"key-1")
        .await
        .expect("register");
    let again = db
        .store
        .register_device(bob.id, &phone, b"credential", b"key-1")
        .await
        .expect("register");
    assert_eq!(again, first, "registering again changes nothing");
    db.store
        .add_key_packages(bob.id, &phone, &[package(b"made-with-key-1", 30)], None)
        .await
        .expect("add");
    // A new key (a reinstalled client) drops what the old key made.
    let replaced = db
        .store
        .register_device(bob.id, &phone, b"credential", b"key-2")
        .await
        .expect("register");
    assert_eq!(replaced.signature_key, b"key-2");
    assert!(
        db.store
            .claim_key_packages(&[bob.id], None)
            .await
            .expect("claim")
            .is_empty()
    );

    for n in 1..MAX_DEVICES_PER_USER {
        db.store
            .register_device(bob.id, &id(&format!("d{n}")), b"credential", b"key")
            .await
            .expect("under the limit");
    }
    let over = db
        .store
        .register_device(bob.id, &id("one-too-many"), b"credential", b"key")
        .await;
    assert!(matches!(over, Err(StorageError::Conflict(_))), "{over:?}");
    assert_eq!(
        db.store.devices_of(bob.id).await.expect("q").len(),
        MAX_DEVICES_PER_USER
    );
    assert!(
        db.store
            .remove_device(bob.id, &id("d1"))
            .await
            .expect("remove")
    );
    assert!(
        !db.store
            .remove_device(bob.id, &id("d1"))
            .await
            .expect("remove")
    );

    db.store
        .add_key_packages(bob.id, &phone, &[package(b"kp", 30)], None)
        .await
        .expect("add");
    db.store.delete_user(bob.id, false).await.expect("delete");
    assert!(db.store.devices_of(bob.id).await.expect("q").is_empty());
    assert_eq!(db.count_rows("mls_key_packages").await, 0);
}

async fn a_room_lists_the_devices_of_its_current_members_only(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let room = db
        .store
        .create_room(
            &RoomName::public("vault").expect("name"),
            alice.id,
            Visibility::Public,
            None,
            true,
        )
        .await
        .expect("create");
    db.store
        .change_membership(room.id, &actor(&bob), bob.id, &MembershipOp::Join)
        .await
        .expect("join");
    // Registered out of the order listed: by username, then each member's
    // devices oldest first. Carol, no member, has a device too.
    for (user, device) in [
        (&bob, "tablet"),
        (&carol, "desktop"),
        (&bob, "phone"),
        (&alice, "laptop"),
    ] {
        db.store
            .register_device(user.id, &id(device), b"credential", device.as_bytes())
            .await
            .expect("register");
    }
    let listed = |devices: Vec<chat_storage::MemberDevice>| -> Vec<(String, String)> {
        devices
            .into_iter()
            .map(|listed| {
                (
                    listed.username.as_str().to_owned(),
                    listed.device.device_id.as_str().to_owned(),
                )
            })
            .collect()
    };
    let devices = db.store.room_devices(room.id).await.expect("q");
    assert!(
        devices.iter().all(
            |listed| listed.device.signature_key == listed.device.device_id.as_str().as_bytes()
        ),
        "each device comes as registered: {devices:?}"
    );
    assert_eq!(
        listed(devices),
        [
            ("alice".to_owned(), "laptop".to_owned()),
            ("bob".to_owned(), "tablet".to_owned()),
            ("bob".to_owned(), "phone".to_owned()),
        ]
    );

    // A member who leaves takes their devices off the list.
    db.store
        .change_membership(room.id, &actor(&bob), bob.id, &MembershipOp::Leave)
        .await
        .expect("leave")
        .expect("bob was a member");
    assert_eq!(
        listed(db.store.room_devices(room.id).await.expect("q")),
        [("alice".to_owned(), "laptop".to_owned())]
    );
}

async fn a_claim_naming_a_device_takes_a_package_of_that_device_only(db: &TestDb) {
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let (phone, tablet, laptop) = (id("phone"), id("tablet"), id("laptop"));
    for (user, device) in [(&bob, &phone), (&bob, &tablet), (&carol, &laptop)] {
        db.store
            .register_device(user.id, device, b"credential", device.as_str().as_bytes())
            .await
            .expect("register");
        let made = |n: u8| {
            package(
                &[device.as_str().as_bytes(), &[b'-', b'0' + n]].concat(),
                30,
            )
        };
        db.store
            .add_key_packages(user.id, device, &[made(1), made(2)], None)
            .await
            .expect("add");
    }
    let stocks = || async {
        let mut stocks = Vec::new();
        for (user, device) in [(&bob, &phone), (&bob, &tablet), (&carol, &laptop)] {
            let stock = db
                .store
                .key_package_stock(user.id, device)
                .await
                .expect("stock");
            stocks.push(stock.available);
        }
        stocks
    };

    let claimed = db
        .store
        .claim_key_packages(&[bob.id], Some(std::slice::from_ref(&tablet)))
        .await
        .expect("claim");
    let handed: Vec<_> = claimed
        .iter()
        .map(|package| (package.device_id.clone(), package.key_package.clone()))
        .collect();
    assert_eq!(handed, [(tablet.clone(), b"tablet-1".to_vec())]);
    assert_eq!(stocks().await, [2, 1, 2], "the phone keeps its packages");

    // A device that is none of the users' claims nothing: Carol's laptop
    // when only Bob is named, or an id nobody registered.
    for named in [laptop.clone(), id("unknown")] {
        let claimed = db
            .store
            .claim_key_packages(&[bob.id], Some(std::slice::from_ref(&named)))
            .await
            .expect("claim");
        assert!(claimed.is_empty(), "{named}: {claimed:?}");
    }
    assert_eq!(stocks().await, [2, 1, 2], "nothing was taken");

    // Several users and devices: each device named, of whichever user.
    let claimed = db
        .store
        .claim_key_packages(&[bob.id, carol.id], Some(&[phone.clone(), laptop.clone()]))
        .await
        .expect("claim");
    let handed: Vec<_> = claimed
        .iter()
        .map(|package| (package.user_id, package.device_id.clone()))
        .collect();
    assert_eq!(
        handed,
        [(bob.id, phone.clone()), (carol.id, laptop.clone())]
    );
    assert_eq!(stocks().await, [1, 1, 1]);
}
