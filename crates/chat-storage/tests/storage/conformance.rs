//! What the store promises, checked on both backends.

use std::collections::{BTreeSet, HashMap};

use chat_crypto::{FernetKey, KeyRing};
use chat_domain::{MemberChange, RoomId, RoomKind, RoomName, Seq, UserId, Visibility};
use chat_storage::{Cursor, MembershipOp, Message, RecentCache, StorageError, Store};

use crate::support::{AppendOk, Backend, TestDb, actor, message, ring_of, username};

/// Generates `sqlite::<test>` and `postgres::<test>` for every test body
/// listed, each on a database of its own.
///
/// The tests run on tokio's single-threaded runtime, the kind actix-web runs
/// its workers on, so they also show that migrations (which block on the
/// runtime from a blocking thread) and SQLite's blocking-pool calls work
/// there. Concurrency tests are still concurrent where it matters: each task
/// holds its own database connection.
macro_rules! conformance_suite {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let db = crate::support::TestDb::sqlite().await;
                    super::$test(&db).await;
                    db.cleanup().await;
                }
            )+
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(db) = crate::support::TestDb::postgres().await else {
                        return;
                    };
                    super::$test(&db).await;
                    db.cleanup().await;
                }
            )+
        }
    };
}

conformance_suite!(
    the_general_room_exists_after_migrating,
    migrations_are_reversible_and_can_be_applied_again,
    usernames_are_unique_ignoring_case,
    users_are_found_by_name_ignoring_case_and_by_id,
    a_new_user_is_a_member_of_general,
    room_names_are_unique,
    a_room_key_is_found_once_the_room_exists_and_then_kept,
    public_rooms_are_listed_by_name_without_direct_rooms,
    a_direct_room_is_the_same_whichever_user_opens_it,
    joining_and_leaving_are_idempotent,
    the_read_position_never_moves_backwards,
    concurrent_writers_get_gapless_seqs_in_commit_order,
    a_resent_client_id_returns_the_original_message,
    a_resend_among_new_messages_of_several_rooms_leaves_no_gap,
    a_client_id_repeated_within_a_batch_is_stored_once,
    a_duplicate_is_the_same_user_and_client_id_not_any_mix_of_the_two,
    a_client_id_raced_into_two_rooms_is_stored_once,
    a_batch_spanning_several_rooms_numbers_each_room_on_its_own,
    concurrent_batches_over_shared_rooms_neither_deadlock_nor_leave_gaps,
    appending_to_a_missing_room_fails_and_stores_nothing,
    history_pages_stop_at_exact_boundaries_in_both_directions,
    a_newest_page_shows_what_another_process_committed_since_the_last_read,
    a_newest_page_from_memory_is_the_same_as_one_from_the_database,
    the_session_check_reads_the_newest_seq_that_the_newest_page_needs,
    timestamps_read_back_equal_to_what_was_written,
    a_message_no_key_can_decrypt_comes_back_without_content,
    message_bodies_reach_the_database_only_as_fernet_tokens,
    a_batch_refuses_non_members_banned_and_muted_authors_and_stores_the_rest,
    a_refused_membership_change_writes_nothing,
    a_private_room_is_listed_for_its_members_only_and_a_ban_reason_is_encrypted,
);

async fn a_batch_refuses_non_members_banned_and_muted_authors_and_stores_the_rest(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let dave = db.user("dave").await;
    let room = db
        .store
        .create_room(
            &RoomName::public("lobby").expect("name"),
            alice.id,
            Visibility::Public,
            None,
            false,
        )
        .await
        .expect("create");
    let as_alice = actor(&alice);
    for user in [&carol, &dave] {
        db.store
            .change_membership(room.id, &actor(user), user.id, &MembershipOp::Join)
            .await
            .expect("join");
    }
    // Stored before the mute; its resend is answered with it, not refused.
    let before = db
        .store
        .append_ok(vec![message(
            room.id,
            &carol,
            "before the mute",
            Some("c-1"),
        )])
        .await
        .expect("append");
    let until = chrono::Utc::now() + chrono::Duration::minutes(10);
    db.store
        .change_membership(room.id, &as_alice, carol.id, &MembershipOp::Mute { until })
        .await
        .expect("mute");
    db.store
        .change_membership(
            room.id,
            &as_alice,
            dave.id,
            &MembershipOp::Ban {
                reason: None,
                until: None,
            },
        )
        .await
        .expect("ban");
    let head = db
        .store
        .room_by_id(room.id)
        .await
        .expect("room")
        .expect("room")
        .last_seq;
    let general = db.general().await;
    let general_head = db
        .store
        .room_by_id(general.id)
        .await
        .expect("room")
        .expect("room")
        .last_seq;

    let results = db
        .store
        .append_messages(vec![
            message(room.id, &alice, "owner", None),
            message(room.id, &bob, "outsider", Some("b-1")),
            message(room.id, &carol, "muted", None),
            message(room.id, &dave, "banned", None),
            message(general.id, &carol, "muted elsewhere only", None),
            message(room.id, &alice, "owner again", None),
            message(room.id, &bob, "outsider", Some("b-1")),
            message(room.id, &carol, "before the mute", Some("c-1")),
        ])
        .await
        .expect("append");
    assert_eq!(results.len(), 8);
    let stored: Vec<(RoomId, i64, bool)> = results
        .iter()
        .filter_map(|result| result.as_ref().ok())
        .map(|appended| {
            let message = &appended.message;
            (message.room_id, message.seq.get(), appended.duplicate)
        })
        .collect();
    assert_eq!(
        stored,
        [
            (room.id, head.get() + 1, false),
            (general.id, general_head.get() + 1, false),
            (room.id, head.get() + 2, false),
            (room.id, before[0].message.seq.get(), true),
        ],
        "no gap for the refused; each room numbered on its own"
    );
    assert_eq!(
        results[6].as_ref().err(),
        Some(&chat_domain::Refusal::NotAMember),
        "a repeat gets its original's refusal"
    );
    assert_eq!(
        results[1].as_ref().err(),
        Some(&chat_domain::Refusal::NotAMember)
    );
    assert!(matches!(
        results[2].as_ref().err(),
        Some(chat_domain::Refusal::Muted { until: muted }) if (*muted - until).num_seconds().abs() < 1
    ));
    assert_eq!(
        results[3].as_ref().err(),
        Some(&chat_domain::Refusal::Banned { until: None })
    );
    assert_eq!(
        texts(db, room.id).await,
        ["before the mute", "owner", "owner again"]
    );
    // A refused client id was not used up: sent again as a member, it is
    // stored.
    db.store
        .change_membership(room.id, &actor(&bob), bob.id, &MembershipOp::Join)
        .await
        .expect("join");
    let again = db
        .store
        .append_ok(vec![message(room.id, &bob, "now a member", Some("b-1"))])
        .await
        .expect("append");
    assert!(!again[0].duplicate);
}

async fn a_refused_membership_change_writes_nothing(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;
    let room = db
        .store
        .create_room(
            &RoomName::public("lobby").expect("name"),
            alice.id,
            Visibility::Public,
            None,
            false,
        )
        .await
        .expect("create");
    for user in [&bob, &carol] {
        db.store
            .change_membership(room.id, &actor(user), user.id, &MembershipOp::Join)
            .await
            .expect("join");
    }
    let before = db.store.room_members(room.id).await.expect("members");
    let head = db
        .store
        .room_by_id(room.id)
        .await
        .expect("room")
        .expect("room")
        .last_seq;
    let refused = [
        (actor(&bob), carol.id, MembershipOp::Kick { reason: None }),
        (
            actor(&bob),
            alice.id,
            MembershipOp::Ban {
                reason: None,
                until: None,
            },
        ),
        (
            actor(&bob),
            carol.id,
            MembershipOp::SetRole(chat_domain::Role::Moderator),
        ),
        (
            actor(&alice),
            alice.id,
            MembershipOp::Ban {
                reason: None,
                until: None,
            },
        ),
        (
            actor(&alice),
            carol.id,
            MembershipOp::SetRole(chat_domain::Role::Owner),
        ),
        (actor(&alice), carol.id, MembershipOp::Unban),
    ];
    for (who, target, op) in refused {
        let result = db.store.change_membership(room.id, &who, target, &op).await;
        assert!(
            matches!(result, Err(StorageError::Refused(_))),
            "{op:?}: {result:?}"
        );
    }
    assert_eq!(
        db.store.room_members(room.id).await.expect("members"),
        before
    );
    assert_eq!(
        db.store
            .room_by_id(room.id)
            .await
            .expect("room")
            .expect("room")
            .last_seq,
        head,
        "no change took a seq"
    );
    // The operator may make an owner, who replaces the previous one.
    let made = db
        .store
        .change_membership(
            room.id,
            &chat_storage::Actor::Operator,
            carol.id,
            &MembershipOp::SetRole(chat_domain::Role::Owner),
        )
        .await
        .expect("set role")
        .expect("a change");
    assert_eq!(made.event.as_ref().and_then(|event| event.by.clone()), None);
    let roles: Vec<(String, chat_domain::Role)> = db
        .store
        .room_members(room.id)
        .await
        .expect("members")
        .into_iter()
        .map(|member| (member.username.as_str().to_owned(), member.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("alice".to_owned(), chat_domain::Role::Moderator),
            ("bob".to_owned(), chat_domain::Role::Member),
            ("carol".to_owned(), chat_domain::Role::Owner),
        ]
    );
}

async fn a_private_room_is_listed_for_its_members_only_and_a_ban_reason_is_encrypted(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let secret = db
        .store
        .create_room(
            &RoomName::public("secret").expect("name"),
            alice.id,
            Visibility::Private,
            Some("plans"),
            false,
        )
        .await
        .expect("create");
    assert_eq!(secret.topic.as_deref(), Some("plans"));
    let listed: Vec<String> = db
        .store
        .public_rooms()
        .await
        .expect("rooms")
        .into_iter()
        .map(|room| room.name.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["general"]);
    let access = db
        .store
        .room_access(&secret.name, bob.id)
        .await
        .expect("access")
        .expect("the room exists");
    assert!(access.membership.is_none() && access.banned.is_none());
    let reason = "posted a phishing link";
    db.store
        .change_membership(
            secret.id,
            &actor(&alice),
            bob.id,
            &MembershipOp::Ban {
                reason: Some(reason.to_owned()),
                until: None,
            },
        )
        .await
        .expect("ban");
    let access = db
        .store
        .room_access(&secret.name, bob.id)
        .await
        .expect("access")
        .expect("the room exists");
    assert_eq!(access.banned, Some(None));
    let bans = db.store.room_bans(secret.id).await.expect("bans");
    assert_eq!(bans[0].reason.as_deref(), Some(reason));
    for raw in db.raw_messages().await {
        assert!(!raw.body.contains(reason), "a reason is stored encrypted");
    }
    assert!(db.store.delete_room(secret.id).await.expect("delete"));
    assert!(
        db.store
            .room_by_name(&secret.name)
            .await
            .expect("query")
            .is_none()
    );
    assert!(!db.store.delete_room(secret.id).await.expect("delete again"));
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|message| message.seq.get()).collect()
}

fn seq(value: i64) -> Seq {
    Seq::new(value).expect("valid seq")
}

/// The decrypted texts of `room`'s newest ten messages, oldest first.
async fn texts(db: &TestDb, room: RoomId) -> Vec<String> {
    db.store
        .latest(room, 10)
        .await
        .expect("history")
        .into_iter()
        .filter_map(|message| message.content)
        .collect()
}

async fn the_general_room_exists_after_migrating(db: &TestDb) {
    let general = db.general().await;
    assert_eq!(general.kind, RoomKind::Public);
    assert_eq!(general.created_by, None);
    assert_eq!(general.last_seq, Seq::ZERO);
}

async fn migrations_are_reversible_and_can_be_applied_again(db: &TestDb) {
    assert_eq!(db.applied.len(), db.migrations(), "{:?}", db.applied);
    assert!(
        db.store
            .run_pending_migrations()
            .await
            .expect("re-run")
            .is_empty()
    );
    db.user("before_revert").await;

    let mut reverted = db.store.revert_all_migrations().await.expect("revert");
    reverted.reverse();
    assert_eq!(reverted, db.applied);
    assert_eq!(
        db.schema_object_count().await,
        0,
        "down.sql left objects behind"
    );
    assert!(db.store.public_rooms().await.is_err());

    let reapplied = db.store.run_pending_migrations().await.expect("re-apply");
    assert_eq!(reapplied, db.applied);
    assert!(db.schema_object_count().await > 0);
    let rooms = db.store.public_rooms().await.expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].name, RoomName::general());
    // The old data is gone with the tables; the name is free again.
    db.user("before_revert").await;
}

async fn usernames_are_unique_ignoring_case(db: &TestDb) {
    db.user("Alice").await;
    let again = db.store.create_user(&username("alice"), "hash").await;
    assert!(matches!(again, Err(StorageError::Conflict(_))), "{again:?}");
    let shouting = db.store.create_user(&username("ALICE"), "hash").await;
    assert!(
        matches!(shouting, Err(StorageError::Conflict(_))),
        "{shouting:?}"
    );
    db.user("alicia").await;
}

async fn users_are_found_by_name_ignoring_case_and_by_id(db: &TestDb) {
    let alice = db.user("Alice").await;
    assert_eq!(alice.username.as_str(), "Alice");
    assert_eq!(alice.password_hash, "$2b$12$not-a-real-hash");

    let by_name = db
        .store
        .user_by_name(&username("aLiCe"))
        .await
        .expect("query");
    assert_eq!(by_name.as_ref(), Some(&alice));
    let by_id = db.store.user_by_id(alice.id).await.expect("query");
    assert_eq!(by_id.as_ref(), Some(&alice));

    assert_eq!(
        db.store
            .user_by_name(&username("bob"))
            .await
            .expect("query"),
        None
    );
    assert_eq!(
        db.store
            .user_by_id(UserId(alice.id.get() + 1000))
            .await
            .expect("query"),
        None
    );
}

async fn a_new_user_is_a_member_of_general(db: &TestDb) {
    let alice = db.user("alice").await;
    let memberships = db.store.rooms_for(alice.id).await.expect("rooms");
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0].room.name, RoomName::general());
    assert_eq!(memberships[0].last_read, Seq::ZERO);
    assert!(
        db.store
            .is_member(memberships[0].room.id, alice.id)
            .await
            .expect("query")
    );
}

async fn room_names_are_unique(db: &TestDb) {
    let alice = db.user("alice").await;
    let lobby = RoomName::public("Lobby").expect("name");
    let room = db
        .store
        .create_room(&lobby, alice.id, Visibility::Public, None, false)
        .await
        .expect("create");
    assert_eq!(room.name.as_str(), "lobby");
    assert_eq!(room.kind, RoomKind::Public);
    assert_eq!(room.created_by, Some(alice.id));
    assert_eq!(room.last_seq, Seq::ZERO);
    assert!(db.store.is_member(room.id, alice.id).await.expect("query"));

    let again = db
        .store
        .create_room(&lobby, alice.id, Visibility::Public, None, false)
        .await;
    assert!(matches!(again, Err(StorageError::Conflict(_))), "{again:?}");
    let general = db
        .store
        .create_room(
            &RoomName::general(),
            alice.id,
            Visibility::Public,
            None,
            false,
        )
        .await;
    assert!(
        matches!(general, Err(StorageError::Conflict(_))),
        "{general:?}"
    );
    assert_eq!(
        db.store.room_by_name(&lobby).await.expect("query"),
        Some(room)
    );
}

async fn a_room_key_is_found_once_the_room_exists_and_then_kept(db: &TestDb) {
    let alice = db.user("alice").await;
    let name = RoomName::public("lobby").expect("name");
    // Not there yet, and that answer is not remembered.
    assert_eq!(db.store.room_key(&name).await.expect("q"), None);
    let room = db
        .store
        .create_room(&name, alice.id, Visibility::Public, None, false)
        .await
        .expect("create");
    let key = db.store.room_key(&name).await.expect("q").expect("found");
    assert_eq!(key, chat_storage::RoomKey::from(&room));
    // Later look-ups agree, whatever happens to the room's messages.
    db.store
        .append_ok(vec![message(room.id, &alice, "hi", None)])
        .await
        .expect("append");
    assert_eq!(db.store.room_key(&name).await.expect("q"), Some(key));
    let general = db
        .store
        .room_key(&RoomName::general())
        .await
        .expect("q")
        .expect("general");
    assert_eq!(general.kind, chat_domain::RoomKind::Public);
    assert_ne!(general.id, room.id);
}

async fn public_rooms_are_listed_by_name_without_direct_rooms(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    for name in ["zebra", "aardvark", "middle"] {
        let name = RoomName::public(name).expect("name");
        db.store
            .create_room(&name, alice.id, Visibility::Public, None, false)
            .await
            .expect("create");
    }
    db.store
        .open_direct(&alice, &bob, None)
        .await
        .expect("direct");
    let names: Vec<String> = db
        .store
        .public_rooms()
        .await
        .expect("rooms")
        .into_iter()
        .map(|room| room.name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["aardvark", "general", "middle", "zebra"]);
}

async fn a_direct_room_is_the_same_whichever_user_opens_it(db: &TestDb) {
    let alice = db.user("Alice").await;
    let bob = db.user("bob").await;
    let carol = db.user("carol").await;

    let opened = db
        .store
        .open_direct(&alice, &bob, None)
        .await
        .expect("open");
    assert_eq!(opened.name.as_str(), "dm:alice:bob");
    assert_eq!(opened.kind, RoomKind::Direct);
    let reopened = db
        .store
        .open_direct(&bob, &alice, None)
        .await
        .expect("open");
    assert_eq!(reopened, opened);
    assert_eq!(
        db.store.members(opened.id).await.expect("members"),
        [alice.id, bob.id]
    );

    // Both sides racing to open it still agree on one room.
    let (one, two) = tokio::join!(
        db.store.open_direct(&alice, &carol, None),
        db.store.open_direct(&carol, &alice, None)
    );
    let (one, two) = (one.expect("open"), two.expect("open"));
    assert_eq!(one.id, two.id);
    assert_eq!(
        db.store.members(one.id).await.expect("members"),
        [alice.id, carol.id]
    );
    assert!(!db.store.is_member(one.id, bob.id).await.expect("query"));

    let alone = db.store.open_direct(&alice, &alice, None).await;
    assert!(alone.is_err(), "{alone:?}");
}

async fn joining_and_leaving_are_idempotent(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let room = db
        .store
        .create_room(
            &RoomName::public("lobby").expect("name"),
            alice.id,
            Visibility::Public,
            None,
            false,
        )
        .await
        .expect("create");
    let as_bob = actor(&bob);

    let joined = db
        .store
        .change_membership(room.id, &as_bob, bob.id, &MembershipOp::Join)
        .await
        .expect("join");
    let joined = joined.expect("a recorded change");
    assert_eq!(joined.seq.get(), 1, "the change takes the room's next seq");
    assert_eq!(
        joined.event.as_ref().map(|event| event.change),
        Some(MemberChange::Joined)
    );
    let again = db
        .store
        .change_membership(room.id, &as_bob, bob.id, &MembershipOp::Join)
        .await
        .expect("join again");
    assert!(again.is_none(), "joining twice changes nothing");
    assert_eq!(
        db.store.members(room.id).await.expect("members"),
        [alice.id, bob.id]
    );
    let bobs: Vec<String> = db
        .store
        .rooms_for(bob.id)
        .await
        .expect("rooms")
        .into_iter()
        .map(|membership| membership.room.name.as_str().to_owned())
        .collect();
    assert_eq!(bobs, ["general", "lobby"]);

    let left = db
        .store
        .change_membership(room.id, &as_bob, bob.id, &MembershipOp::Leave)
        .await
        .expect("leave");
    assert_eq!(left.map(|event| event.seq.get()), Some(2));
    let again = db
        .store
        .change_membership(room.id, &as_bob, bob.id, &MembershipOp::Leave)
        .await
        .expect("leave again");
    assert!(again.is_none());
    assert!(!db.store.is_member(room.id, bob.id).await.expect("query"));
    assert_eq!(
        db.store.members(room.id).await.expect("members"),
        [alice.id]
    );
    // The changes are in the room's history, in order.
    let page = db
        .store
        .history(room.id, Cursor::After(Seq::ZERO), 10)
        .await
        .expect("history");
    let changes: Vec<MemberChange> = page
        .messages
        .iter()
        .filter_map(|item| item.event.as_ref().map(|event| event.change))
        .collect();
    assert_eq!(changes, [MemberChange::Joined, MemberChange::Left]);

    let missing = db
        .store
        .change_membership(
            RoomId(room.id.get() + 1000),
            &as_bob,
            bob.id,
            &MembershipOp::Join,
        )
        .await;
    assert!(
        matches!(missing, Err(StorageError::NotFound(_))),
        "{missing:?}"
    );
}

async fn the_read_position_never_moves_backwards(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let batch = (1..=5)
        .map(|n| message(general.id, &alice, &format!("m{n}"), None))
        .collect();
    db.store.append_ok(batch).await.expect("append");

    let last_read = async || {
        db.store.rooms_for(alice.id).await.expect("rooms")[0]
            .last_read
            .get()
    };
    db.store
        .mark_read(general.id, alice.id, seq(3))
        .await
        .expect("mark");
    assert_eq!(last_read().await, 3);
    db.store
        .mark_read(general.id, alice.id, seq(2))
        .await
        .expect("mark");
    assert_eq!(
        last_read().await,
        3,
        "an older acknowledgement moved it back"
    );
    db.store
        .mark_read(general.id, alice.id, seq(5))
        .await
        .expect("mark");
    assert_eq!(last_read().await, 5);
    // Nothing beyond the newest message can have been read.
    db.store
        .mark_read(general.id, alice.id, seq(99))
        .await
        .expect("mark");
    assert_eq!(last_read().await, 5);
}

async fn concurrent_writers_get_gapless_seqs_in_commit_order(db: &TestDb) {
    let (writers, per_writer) = match db.backend {
        Backend::Postgres => (8, 500),
        Backend::Sqlite => (4, 100),
    };
    let room = db.general().await;
    let mut handles = Vec::new();
    for writer in 0..writers {
        let user = db.user(&format!("writer{writer}")).await;
        let store = db.store.clone();
        handles.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut next = 0;
            let mut size = 1 + writer % 5;
            while next < per_writer {
                let end = (next + size).min(per_writer);
                let batch = (next..end)
                    .map(|n| {
                        let text = format!("w{writer}-m{n}");
                        message(room.id, &user, &text, Some(&text))
                    })
                    .collect();
                let results = store.append_ok(batch).await.expect("append");
                acknowledged.extend(results.into_iter().map(|result| {
                    assert!(!result.duplicate);
                    result.message
                }));
                next = end;
                size = size % 13 + 1;
            }
            acknowledged
        }));
    }
    let mut acknowledged: HashMap<String, i64> = HashMap::new();
    for handle in handles {
        let messages = handle.await.expect("writer task");
        // Each writer's messages are numbered in the order it sent them.
        assert!(seqs(&messages).windows(2).all(|pair| pair[0] < pair[1]));
        for message in messages {
            acknowledged.insert(message.content.expect("own message"), message.seq.get());
        }
    }

    let total = (writers * per_writer) as i64;
    let mut stored = Vec::new();
    let mut cursor = Cursor::After(Seq::ZERO);
    loop {
        let page = db
            .store
            .history(room.id, cursor, 1000)
            .await
            .expect("history");
        cursor = Cursor::After(page.messages.last().expect("non-empty page").seq);
        stored.extend(page.messages);
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seqs(&stored), (1..=total).collect::<Vec<_>>());
    let contents: BTreeSet<&str> = stored
        .iter()
        .map(|message| message.content.as_deref().expect("decrypts"))
        .collect();
    assert_eq!(contents.len(), stored.len(), "a message was stored twice");
    for message in &stored {
        let text = message.content.as_deref().expect("decrypts");
        assert_eq!(acknowledged.get(text), Some(&message.seq.get()), "{text}");
    }
    let room = db.general().await;
    assert_eq!(room.last_seq.get(), total);
}

async fn a_resent_client_id_returns_the_original_message(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let first = db
        .store
        .append_ok(vec![message(general.id, &alice, "hello", Some("c-1"))])
        .await
        .expect("append")
        .remove(0);
    assert!(!first.duplicate);

    let resent = db
        .store
        .append_ok(vec![
            message(general.id, &alice, "hello (resent)", Some("c-1")),
            message(general.id, &alice, "next", Some("c-2")),
        ])
        .await
        .expect("append");
    assert!(resent[0].duplicate);
    assert_eq!(resent[0].message, first.message);
    assert!(!resent[1].duplicate);
    assert_eq!(resent[1].message.seq, seq(2));

    // Another user may use the same client id.
    let bob = db.user("bob").await;
    let bobs = db
        .store
        .append_ok(vec![message(general.id, &bob, "mine", Some("c-1"))])
        .await
        .expect("append");
    assert!(!bobs[0].duplicate);
    assert_eq!(bobs[0].message.seq, seq(3));

    let stored = db.store.latest(general.id, 10).await.expect("history");
    assert_eq!(seqs(&stored), [1, 2, 3]);
    assert_eq!(stored[0].content.as_deref(), Some("hello"));
}

async fn a_resend_among_new_messages_of_several_rooms_leaves_no_gap(db: &TestDb) {
    // The batch's first try inserts without a look-up and fails on the
    // resend; what it numbered in either room must not survive the retry.
    let alice = db.user("alice").await;
    let general = db.general().await;
    let lobby_name = RoomName::public("lobby").expect("name");
    let lobby = db
        .store
        .create_room(&lobby_name, alice.id, Visibility::Public, None, false)
        .await
        .expect("create");
    let first = db
        .store
        .append_ok(vec![message(general.id, &alice, "g1", Some("c-1"))])
        .await
        .expect("append")
        .remove(0);

    let results = db
        .store
        .append_ok(vec![
            message(lobby.id, &alice, "l1", Some("c-2")),
            message(general.id, &alice, "g1 (resent)", Some("c-1")),
            message(general.id, &alice, "g2", Some("c-3")),
            message(lobby.id, &alice, "l2", None),
        ])
        .await
        .expect("append");
    let outcome: Vec<(i64, i64, bool)> = results
        .iter()
        .map(|result| {
            let message = &result.message;
            (message.room_id.get(), message.seq.get(), result.duplicate)
        })
        .collect();
    let (g, l) = (general.id.get(), lobby.id.get());
    assert_eq!(
        outcome,
        [(l, 1, false), (g, 1, true), (g, 2, false), (l, 2, false)]
    );
    assert_eq!(results[1].message, first.message);

    // The counters moved by what was stored, and only by that.
    assert_eq!(db.general().await.last_seq, seq(2));
    let lobby_now = db
        .store
        .room_by_name(&lobby_name)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(lobby_now.last_seq, seq(2));
    let next = db
        .store
        .append_ok(vec![
            message(general.id, &alice, "g3", Some("c-5")),
            message(lobby.id, &alice, "l3", Some("c-6")),
        ])
        .await
        .expect("append");
    let numbered: Vec<i64> = next.iter().map(|r| r.message.seq.get()).collect();
    assert_eq!(numbered, [3, 3]);
    for room in [general.id, lobby.id] {
        let stored = db.store.latest(room, 10).await.expect("history");
        assert_eq!(seqs(&stored), [1, 2, 3]);
    }
    assert_eq!(texts(db, general.id).await, ["g1", "g2", "g3"]);
}

async fn a_client_id_repeated_within_a_batch_is_stored_once(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let results = db
        .store
        .append_ok(vec![
            message(general.id, &alice, "one", Some("same")),
            message(general.id, &alice, "two", None),
            message(general.id, &alice, "one again", Some("same")),
            message(general.id, &alice, "three", None),
        ])
        .await
        .expect("append");
    let duplicates: Vec<bool> = results.iter().map(|result| result.duplicate).collect();
    assert_eq!(duplicates, [false, false, true, false]);
    assert_eq!(results[2].message, results[0].message);
    let numbered: Vec<i64> = results
        .iter()
        .map(|result| result.message.seq.get())
        .collect();
    assert_eq!(numbered, [1, 2, 1, 3]);

    let stored = db.store.latest(general.id, 10).await.expect("history");
    let contents: Vec<&str> = stored.iter().filter_map(|m| m.content.as_deref()).collect();
    assert_eq!(contents, ["one", "two", "three"]);
}

async fn a_duplicate_is_the_same_user_and_client_id_not_any_mix_of_the_two(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let general = db.general().await;
    db.store
        .append_ok(vec![
            message(general.id, &alice, "alice x", Some("x")),
            message(general.id, &bob, "bob y", Some("y")),
        ])
        .await
        .expect("append");
    // Both users and both ids are already stored, but only (alice, x) as a
    // pair: the others are new messages.
    let results = db
        .store
        .append_ok(vec![
            message(general.id, &alice, "alice y", Some("y")),
            message(general.id, &bob, "bob x", Some("x")),
            message(general.id, &alice, "alice x again", Some("x")),
        ])
        .await
        .expect("append");
    let outcome: Vec<(bool, i64)> = results
        .iter()
        .map(|result| (result.duplicate, result.message.seq.get()))
        .collect();
    assert_eq!(outcome, [(false, 3), (false, 4), (true, 1)]);
    assert_eq!(results[2].message.content.as_deref(), Some("alice x"));
    let stored = db.store.latest(general.id, 10).await.expect("history");
    assert_eq!(seqs(&stored), [1, 2, 3, 4]);
}

async fn a_client_id_raced_into_two_rooms_is_stored_once(db: &TestDb) {
    // Batches for different rooms do not wait for each other's counters, so
    // both may miss the other's row; the loser must still see a duplicate.
    let alice = db.user("alice").await;
    let general = db.general().await;
    let lobby = db
        .store
        .create_room(
            &RoomName::public("lobby").expect("name"),
            alice.id,
            Visibility::Public,
            None,
            false,
        )
        .await
        .expect("create");
    for round in 0..20 {
        let client_id = format!("race-{round}");
        let (one, two) = tokio::join!(
            db.store
                .append_ok(vec![message(general.id, &alice, "here", Some(&client_id))]),
            db.store
                .append_ok(vec![message(lobby.id, &alice, "there", Some(&client_id))]),
        );
        let (one, two) = (
            one.expect("append").remove(0),
            two.expect("append").remove(0),
        );
        assert_ne!(
            one.duplicate, two.duplicate,
            "round {round}: exactly one is new"
        );
        assert_eq!(one.message, two.message, "round {round}");
    }
    let stored = db
        .store
        .latest(general.id, 100)
        .await
        .expect("history")
        .len()
        + db.store.latest(lobby.id, 100).await.expect("history").len();
    assert_eq!(stored, 20);
}

async fn a_batch_spanning_several_rooms_numbers_each_room_on_its_own(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let lobby = db
        .store
        .create_room(
            &RoomName::public("lobby").expect("name"),
            alice.id,
            Visibility::Public,
            None,
            false,
        )
        .await
        .expect("create");
    db.store
        .append_ok(vec![message(lobby.id, &alice, "earlier", None)])
        .await
        .expect("append");

    let results = db
        .store
        .append_ok(vec![
            message(general.id, &alice, "g1", None),
            message(lobby.id, &alice, "l2", None),
            message(general.id, &alice, "g2", None),
            message(lobby.id, &alice, "l3", None),
            message(general.id, &alice, "g3", None),
        ])
        .await
        .expect("append");
    let placed: Vec<(i64, i64)> = results
        .iter()
        .map(|result| (result.message.room_id.get(), result.message.seq.get()))
        .collect();
    let (g, l) = (general.id.get(), lobby.id.get());
    assert_eq!(placed, [(g, 1), (l, 2), (g, 2), (l, 3), (g, 3)]);
    let ids: BTreeSet<i64> = results
        .iter()
        .map(|result| result.message.id.get())
        .collect();
    assert_eq!(ids.len(), 5);

    assert_eq!(texts(db, general.id).await, ["g1", "g2", "g3"]);
    let lobby = db
        .store
        .room_by_name(&lobby.name)
        .await
        .expect("q")
        .expect("lobby");
    assert_eq!(lobby.last_seq, seq(3));
}

async fn concurrent_batches_over_shared_rooms_neither_deadlock_nor_leave_gaps(db: &TestDb) {
    // Every batch touches every room, some in ascending and some in
    // descending input order: the counters must still be taken in one order
    // (no deadlock) and advanced once per room per batch (no gap).
    const ROOMS: usize = 40;
    const WRITERS: usize = 4;
    const BATCHES: usize = 8;
    let owner = db.user("owner").await;
    let mut rooms = Vec::new();
    for index in 0..ROOMS {
        let name = RoomName::public(&format!("shared-{index}")).expect("name");
        rooms.push(
            db.store
                .create_room(&name, owner.id, Visibility::Public, None, false)
                .await
                .expect("create"),
        );
    }
    let mut handles = Vec::new();
    for writer in 0..WRITERS {
        // The owner, a member of every room, writes for each writer.
        let user = owner.clone();
        let store = db.store.clone();
        let mut order: Vec<RoomId> = rooms.iter().map(|room| room.id).collect();
        if writer % 2 == 1 {
            order.reverse();
        }
        handles.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for batch in 0..BATCHES {
                let messages = order
                    .iter()
                    .flat_map(|&room| {
                        // Two messages per room, so a room's counter moves by two.
                        (0..2).map(move |n| (room, format!("w{writer}-b{batch}-r{room}-{n}")))
                    })
                    .map(|(room, text)| message(room, &user, &text, None))
                    .collect();
                let results = store.append_ok(messages).await.expect("append");
                acknowledged.extend(results.into_iter().map(|result| result.message));
            }
            acknowledged
        }));
    }
    let mut acknowledged: HashMap<String, (i64, i64)> = HashMap::new();
    for handle in handles {
        for message in handle.await.expect("writer task") {
            let text = message.content.expect("own message");
            acknowledged.insert(text, (message.room_id.get(), message.seq.get()));
        }
    }
    let per_room = (WRITERS * BATCHES * 2) as i64;
    assert_eq!(acknowledged.len() as i64, per_room * ROOMS as i64);
    for room in &rooms {
        let stored = db.store.latest(room.id, 1000).await.expect("history");
        assert_eq!(
            seqs(&stored),
            (1..=per_room).collect::<Vec<_>>(),
            "{}",
            room.name
        );
        for message in &stored {
            let text = message.content.as_deref().expect("decrypts");
            assert_eq!(
                acknowledged.get(text),
                Some(&(room.id.get(), message.seq.get())),
                "{text}"
            );
        }
        let reread = db
            .store
            .room_by_id(room.id)
            .await
            .expect("q")
            .expect("room");
        assert_eq!(reread.last_seq.get(), per_room, "{}", room.name);
    }
}

async fn appending_to_a_missing_room_fails_and_stores_nothing(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let missing = RoomId(general.id.get() + 1000);
    let result = db
        .store
        .append_ok(vec![
            message(general.id, &alice, "would be first", None),
            message(missing, &alice, "nowhere", None),
        ])
        .await;
    assert!(
        matches!(result, Err(StorageError::NotFound(_))),
        "{result:?}"
    );
    assert!(
        db.store
            .latest(general.id, 10)
            .await
            .expect("history")
            .is_empty()
    );
    let general = db.general().await;
    assert_eq!(general.last_seq, Seq::ZERO);
    assert!(
        db.store
            .append_ok(Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );
}

async fn history_pages_stop_at_exact_boundaries_in_both_directions(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let batch = (1..=25)
        .map(|n| message(general.id, &alice, &format!("m{n}"), None))
        .collect();
    db.store.append_ok(batch).await.expect("append");
    let page = |cursor, limit| db.store.history(general.id, cursor, limit);

    let before = page(Cursor::Before(seq(11)), 5).await.expect("page");
    assert_eq!(seqs(&before.messages), [6, 7, 8, 9, 10]);
    assert!(before.has_more);
    let first = page(Cursor::Before(seq(6)), 5).await.expect("page");
    assert_eq!(seqs(&first.messages), [1, 2, 3, 4, 5]);
    assert!(!first.has_more, "nothing is older than seq 1");

    let after = page(Cursor::After(seq(20)), 10).await.expect("page");
    assert_eq!(seqs(&after.messages), [21, 22, 23, 24, 25]);
    assert!(!after.has_more);
    let middle = page(Cursor::After(seq(10)), 5).await.expect("page");
    assert_eq!(seqs(&middle.messages), [11, 12, 13, 14, 15]);
    assert!(middle.has_more);
    let caught_up = page(Cursor::After(seq(25)), 5).await.expect("page");
    assert!(caught_up.messages.is_empty() && !caught_up.has_more);

    let latest = page(Cursor::Latest, 3).await.expect("page");
    assert_eq!(seqs(&latest.messages), [23, 24, 25]);
    assert!(latest.has_more);
    let everything = page(Cursor::Latest, 25).await.expect("page");
    assert_eq!(everything.messages.len(), 25);
    assert!(!everything.has_more);
    assert_eq!(everything.messages[0].content.as_deref(), Some("m1"));
    assert_eq!(everything.messages[0].username, alice.username);

    // Limits are clamped rather than trusted.
    let at_least_one = page(Cursor::Latest, 0).await.expect("page");
    assert_eq!(seqs(&at_least_one.messages), [25]);
    assert_eq!(
        db.store.latest(general.id, -5).await.expect("page").len(),
        1
    );
}

async fn timestamps_read_back_equal_to_what_was_written(db: &TestDb) {
    let alice = db.user("alice").await;
    assert_eq!(
        db.store
            .user_by_id(alice.id)
            .await
            .expect("q")
            .expect("user"),
        alice
    );
    let general = db.general().await;
    let written = db
        .store
        .append_ok(vec![message(general.id, &alice, "when?", Some("t-1"))])
        .await
        .expect("append")
        .remove(0)
        .message;
    let read = db
        .store
        .latest(general.id, 1)
        .await
        .expect("history")
        .remove(0);
    assert_eq!(read, written);
    assert_eq!(read.created_at.timestamp_subsec_nanos() % 1_000, 0);
    let age = chrono::Utc::now() - read.created_at;
    assert!(
        age >= chrono::TimeDelta::zero() && age < chrono::TimeDelta::minutes(1),
        "{age}"
    );
}

async fn a_message_no_key_can_decrypt_comes_back_without_content(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    db.store
        .append_ok(vec![message(
            general.id,
            &alice,
            "sealed with the old key",
            None,
        )])
        .await
        .expect("append");

    // A server that lost the old key still serves the room.
    let other_key = FernetKey::generate();
    let forgetful = db.store_with(ring_of(&other_key)).await;
    forgetful
        .append_ok(vec![
            message(general.id, &alice, "new one", None),
            message(general.id, &alice, "new two", None),
        ])
        .await
        .expect("append");
    let page = forgetful
        .history(general.id, Cursor::Latest, 10)
        .await
        .expect("page loads");
    let contents: Vec<Option<&str>> = page.messages.iter().map(|m| m.content.as_deref()).collect();
    assert_eq!(contents, [None, Some("new one"), Some("new two")]);
    assert_eq!(seqs(&page.messages), [1, 2, 3]);

    // A ring that holds both keys, as after a rotation, reads everything.
    let rotated = KeyRing::new(other_key, vec![db.key.clone()]);
    let rotated = db.store_with(rotated).await;
    let page = rotated
        .history(general.id, Cursor::Latest, 10)
        .await
        .expect("page");
    assert!(page.messages.iter().all(|m| m.content.is_some()));
}

async fn message_bodies_reach_the_database_only_as_fernet_tokens(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let secret = "the launch code is pineapple";
    db.store
        .append_ok(vec![message(general.id, &alice, secret, Some("s-1"))])
        .await
        .expect("append");
    let raw = db.raw_messages().await;
    assert_eq!(raw.len(), 1);
    assert!(raw[0].body.starts_with("gAAAAA"), "{}", raw[0].body);
    assert!(!raw[0].body.contains("pineapple"));
    assert_eq!(raw[0].key_id, db.keys.primary_id().as_str());
    let read = db.store.latest(general.id, 1).await.expect("history");
    assert_eq!(read[0].content.as_deref(), Some(secret));
}

async fn a_newest_page_shows_what_another_process_committed_since_the_last_read(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let texts = |page: &chat_storage::Page| -> Vec<String> {
        page.messages
            .iter()
            .map(|message| message.content.clone().unwrap_or_default())
            .collect()
    };
    let send = |store: Store, text: &'static str| {
        let batch = vec![message(general.id, &alice, text, None)];
        async move { store.append_ok(batch).await.expect("append") }
    };
    // Two processes on one database: this one reads, the other writes too.
    let other = db.store_with(db.keys.clone()).await;

    let empty = db
        .store
        .history(general.id, Cursor::Latest, 10)
        .await
        .expect("page");
    assert!(empty.messages.is_empty() && !empty.has_more);

    send(db.store.clone(), "one").await;
    send(db.store.clone(), "two").await;
    let first = db
        .store
        .history(general.id, Cursor::Latest, 10)
        .await
        .expect("page");
    assert_eq!(texts(&first), ["one", "two"]);

    // Ours: the page grows in memory. Theirs: the page must still show it.
    send(db.store.clone(), "three").await;
    send(other.clone(), "four").await;
    let second = db
        .store
        .history(general.id, Cursor::Latest, 10)
        .await
        .expect("page");
    assert_eq!(texts(&second), ["one", "two", "three", "four"]);
    assert_eq!(seqs(&second.messages), [1, 2, 3, 4]);

    // After the other process wrote, ours continues the room correctly.
    send(db.store.clone(), "five").await;
    send(other.clone(), "six").await;
    send(db.store.clone(), "seven").await;
    let third = db
        .store
        .history(general.id, Cursor::Latest, 3)
        .await
        .expect("page");
    assert_eq!(texts(&third), ["five", "six", "seven"]);
    assert!(third.has_more);
    let whole = db
        .store
        .history(general.id, Cursor::Latest, 10)
        .await
        .expect("page");
    assert_eq!(seqs(&whole.messages), [1, 2, 3, 4, 5, 6, 7]);
    assert!(!whole.has_more);

    // And the other process, which read nothing so far, agrees.
    let theirs = other
        .history(general.id, Cursor::Latest, 10)
        .await
        .expect("page");
    assert_eq!(theirs, whole);
}

async fn a_newest_page_from_memory_is_the_same_as_one_from_the_database(db: &TestDb) {
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    let general = db.general().await;
    let batch = (1..=30)
        .map(|n| {
            let author = if n % 2 == 0 { &alice } else { &bob };
            message(general.id, author, &format!("m{n}"), Some(&format!("c{n}")))
        })
        .collect();
    db.store.append_ok(batch).await.expect("append");
    // Reading fills memory; the second read of each size comes from it.
    for limit in [1, 5, 30, 50] {
        let from_database = db.store.history(general.id, Cursor::Latest, limit).await;
        let from_memory = db.store.history(general.id, Cursor::Latest, limit).await;
        assert_eq!(from_database.expect("page"), from_memory.expect("page"));
    }
    // A store that keeps nothing in memory reads the same pages.
    let uncached = db.store_keeping(RecentCache::OFF).await;
    for limit in [1, 5, 30, 50] {
        let cached = db.store.history(general.id, Cursor::Latest, limit).await;
        let uncached = uncached.history(general.id, Cursor::Latest, limit).await;
        assert_eq!(cached.expect("page"), uncached.expect("page"));
    }
}

/// The history route's one round trip: the session check reads the room's
/// newest seq, and the page as of that seq is the newest page.
async fn the_session_check_reads_the_newest_seq_that_the_newest_page_needs(db: &TestDb) {
    let alice = db.user("alice").await;
    let general = db.general().await;
    let session = chat_domain::SessionId::from_bits(5).expect("not zero");
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    db.store
        .create_session(alice.id, session, &format!("{:064x}", 5), expires)
        .await
        .expect("create session");
    let newest_seq = async |room| {
        let found = db
            .store
            .user_for_session_reading(&alice.username, session, room)
            .await
            .expect("query")
            .expect("the session is open");
        assert_eq!(found.0.id, alice.id);
        found.1.last_seq
    };
    assert_eq!(newest_seq(general.id).await, 0);
    let reading = db
        .store
        .user_for_session_reading(&alice.username, session, general.id)
        .await
        .expect("query")
        .expect("the session is open")
        .1;
    assert!(reading.exists && reading.listed && reading.member && !reading.banned);
    let missing = db
        .store
        .user_for_session_reading(&alice.username, session, RoomId(general.id.get() + 1000))
        .await
        .expect("query")
        .expect("the session is open")
        .1;
    assert!(!missing.exists && !missing.listed && !missing.member);
    let empty = db
        .store
        .newest_as_of(general.id, 10, 0)
        .await
        .expect("page");
    assert!(empty.messages.is_empty() && !empty.has_more);

    let batch = (1..=12)
        .map(|n| message(general.id, &alice, &format!("m{n}"), None))
        .collect();
    db.store.append_ok(batch).await.expect("append");
    assert_eq!(newest_seq(general.id).await, 12);
    // No such room reads as an empty one.
    assert_eq!(newest_seq(RoomId(general.id.get() + 1000)).await, 0);
    let uncached = db.store_keeping(RecentCache::OFF).await;
    for limit in [1, 5, 12, 50] {
        // The first read fills memory, the second comes from it.
        let first = db.store.newest_as_of(general.id, limit, 12).await;
        let second = db.store.newest_as_of(general.id, limit, 12).await;
        let history = uncached.history(general.id, Cursor::Latest, limit).await;
        let history = history.expect("page");
        assert_eq!(first.expect("page"), history);
        assert_eq!(second.expect("page"), history);
    }
    // Another process commits the 13th: the seq read says so, and the page
    // as of it has it, though this store's memory ended at 12.
    uncached
        .append_ok(vec![message(general.id, &alice, "m13", None)])
        .await
        .expect("append");
    assert_eq!(newest_seq(general.id).await, 13);
    let page = db
        .store
        .newest_as_of(general.id, 5, 13)
        .await
        .expect("page");
    assert_eq!(seqs(&page.messages), [9, 10, 11, 12, 13]);
    assert!(page.has_more);
}
