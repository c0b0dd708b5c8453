//! The storage side of `import-original`: reading the original backend's
//! database, and writing its users and messages with a record of each.
//! Every test runs on both backends through `conformance_suite!` (the
//! original's database on the same backend as ours).

use chat_domain::{MessageBody, RoomId, Username};
use chat_storage::testing::{
    OriginalMessageRow, OriginalUserRow, TestDatabase, write_original_database,
};
use chat_storage::{
    Cursor, ImportMessage, ImportUser, LastImported, OriginalDatabase, StorageError, User,
};
use chrono::{DateTime, Utc};

use crate::support::{Backend, TestDb, message, username};

conformance_suite!(
    imported_messages_keep_their_time_and_author_and_follow_the_last_seq,
    a_message_imported_twice_is_refused_and_its_batch_stores_nothing,
    imported_users_keep_their_hash_join_general_and_are_recorded,
    the_original_is_read_in_created_at_then_id_order_page_after_page,
);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid RFC 3339")
        .with_timezone(&Utc)
}

fn imported(original_id: i64, user: &User, text: &str, time: &str) -> ImportMessage {
    ImportMessage {
        original_id,
        user_id: user.id,
        username: user.username.clone(),
        body: MessageBody::parse(text).expect("valid body"),
        created_at: at(time),
    }
}

async fn general(db: &TestDb) -> RoomId {
    db.general().await.id
}

async fn imported_messages_keep_their_time_and_author_and_follow_the_last_seq(db: &TestDb) {
    let room = general(db).await;
    let alice = db.user("alice").await;
    let bob = db.user("bob").await;
    db.store
        .append_messages(vec![message(room, &alice, "live, first", None)])
        .await
        .expect("append");
    let stored = db
        .store
        .import_messages(
            room,
            vec![
                imported(7, &bob, "old one", "2024-03-01T09:00:00.000001Z"),
                imported(3, &alice, "old two", "2024-03-01T09:00:00.000001Z"),
                imported(9, &bob, "old three", "2024-03-01T10:00:00.5Z"),
            ],
        )
        .await
        .expect("import");
    assert_eq!(stored, 3);

    let page = db
        .store
        .history(room, Cursor::Latest, 10)
        .await
        .expect("history");
    let seen: Vec<(i64, &str, &str, DateTime<Utc>)> = page
        .messages
        .iter()
        .map(|m| {
            (
                m.seq.get(),
                m.username.as_str(),
                m.content.as_deref().unwrap_or("<undecryptable>"),
                m.created_at,
            )
        })
        .collect();
    assert_eq!(seen[0].0, 1);
    assert_eq!(
        seen[1..],
        [
            (2, "bob", "old one", at("2024-03-01T09:00:00.000001Z")),
            (3, "alice", "old two", at("2024-03-01T09:00:00.000001Z")),
            (4, "bob", "old three", at("2024-03-01T10:00:00.5Z")),
        ]
    );
    // Stored under our key, like any message.
    assert!(
        db.raw_messages()
            .await
            .iter()
            .all(|raw| raw.key_id == db.key.id().as_str())
    );

    let state = db.store.import_state().await.expect("state");
    assert_eq!(state.imported_messages, 3);
    assert_eq!(
        state.last_imported,
        Some(LastImported {
            original_id: 9,
            seq: 4
        })
    );
    assert_eq!(state.messages_after_import(), 0);
    db.store
        .append_messages(vec![message(room, &alice, "live, after", None)])
        .await
        .expect("append");
    let state = db.store.import_state().await.expect("state");
    assert_eq!(state.messages_after_import(), 1);
}

async fn a_message_imported_twice_is_refused_and_its_batch_stores_nothing(db: &TestDb) {
    let room = general(db).await;
    let alice = db.user("alice").await;
    let time = "2024-03-01T09:00:00Z";
    db.store
        .import_messages(
            room,
            vec![
                imported(1, &alice, "one", time),
                imported(2, &alice, "two", time),
            ],
        )
        .await
        .expect("import");
    let again = db
        .store
        .import_messages(
            room,
            vec![
                imported(3, &alice, "three", time),
                imported(2, &alice, "two again", time),
            ],
        )
        .await;
    assert!(matches!(again, Err(StorageError::Conflict(_))), "{again:?}");
    assert_eq!(db.general().await.last_seq.get(), 2);
    let mut recorded = db
        .store
        .already_imported(&[1, 2, 3])
        .await
        .expect("records");
    recorded.sort_unstable();
    assert_eq!(recorded, [1, 2]);
    assert_eq!(db.count_rows("messages").await, 2);
}

async fn imported_users_keep_their_hash_join_general_and_are_recorded(db: &TestDb) {
    let hash = "$2b$12$UDgi06aM.s9qHqpZGyyGr.woRo46y3Uh2gDst6w7yux2MQplWywlO";
    let user = |original_id: i64, original: &str, name: &str| ImportUser {
        original_id,
        original_username: original.to_owned(),
        username: username(name),
        password_hash: hash.to_owned(),
        created_at: Some(at("2024-03-01T08:00:00.25Z")),
    };
    let ids = db
        .store
        .import_users(&[user(1, "alice", "alice"), user(3, "jo", "jo_")])
        .await
        .expect("import users");
    let jo = db
        .store
        .user_by_name(&username("jo_"))
        .await
        .expect("query")
        .expect("jo_ exists");
    assert_eq!(jo.id, ids[1]);
    assert_eq!(jo.password_hash, hash);
    assert_eq!(jo.created_at, at("2024-03-01T08:00:00.25Z"));
    let rooms = db.store.rooms_for(jo.id).await.expect("rooms");
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].room.id, general(db).await);

    let recorded: Vec<(i64, String)> = db
        .store
        .imported_users()
        .await
        .expect("records")
        .into_iter()
        .map(|user| (user.original_id, user.username.into_string()))
        .collect();
    assert_eq!(recorded, [(1, "alice".to_owned()), (3, "jo_".to_owned())]);

    // The same original user again, under another name: refused, and the
    // batch's other user is not stored either.
    let again = db
        .store
        .import_users(&[user(4, "carol", "carol"), user(1, "alice", "alice-2")])
        .await;
    assert!(matches!(again, Err(StorageError::Conflict(_))), "{again:?}");
    let names: Vec<Username> = db.store.usernames().await.expect("names");
    assert_eq!(names.len(), 2);
}

async fn the_original_is_read_in_created_at_then_id_order_page_after_page(db: &TestDb) {
    let source = match db.backend {
        Backend::Sqlite => TestDatabase::sqlite(),
        Backend::Postgres => TestDatabase::postgres()
            .await
            .expect("PostgreSQL is configured when this test runs on it"),
    };
    let users = [OriginalUserRow {
        id: 1,
        username: "alice".to_owned(),
        hashed_password: "$2b$12$hash".to_owned(),
        created_at: None,
    }];
    // Ids out of time order, a shared time, and one row without a time.
    let row = |id: i64, time: Option<&str>| OriginalMessageRow {
        id,
        user_id: 1,
        content: format!("token {id}"),
        created_at: time.map(str::to_owned),
    };
    let messages = [
        row(1, Some("2024-03-01 09:00:00.000000")),
        row(2, Some("2024-03-01 08:59:59.999999")),
        row(3, Some("2024-03-01 09:00:00.000000")),
        row(4, None),
        row(5, Some("2024-03-01 09:00:00.000001")),
        row(6, Some("2024-03-01 08:00:00.000000")),
    ];
    write_original_database(&source, &users, &messages)
        .await
        .expect("write the original");

    let mut original = OriginalDatabase::open(source.url())
        .await
        .expect("open the original");
    let read_users = original.users().await.expect("users");
    assert_eq!(read_users.len(), 1);
    assert_eq!(read_users[0].created_at, None);
    assert_eq!(original.message_count().await.expect("count"), 6);
    assert_eq!(
        original.messages_without_time().await.expect("no time"),
        [4]
    );

    let mut order = Vec::new();
    let mut position = None;
    loop {
        let page = original
            .messages_after(position.as_ref(), 2)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        position = Some(last.position.clone());
        order.extend(page.iter().map(|m| (m.id, m.created_at)));
    }
    assert_eq!(
        order,
        [
            (6, Some(at("2024-03-01T08:00:00Z"))),
            (2, Some(at("2024-03-01T08:59:59.999999Z"))),
            (1, Some(at("2024-03-01T09:00:00Z"))),
            (3, Some(at("2024-03-01T09:00:00Z"))),
            (5, Some(at("2024-03-01T09:00:00.000001Z"))),
        ]
    );

    // Resuming after message 1 reads 3 and 5.
    let after_one = original
        .position_of(1)
        .await
        .expect("position")
        .expect("message 1 has a time");
    let rest: Vec<i64> = original
        .messages_after(Some(&after_one), 10)
        .await
        .expect("page")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(rest, [3, 5]);
    assert_eq!(original.position_of(4).await.expect("position"), None);
    drop(original);

    // A SQLite file that does not exist is not created.
    if db.backend == Backend::Sqlite {
        let missing = TestDatabase::sqlite();
        let opened = OriginalDatabase::open(missing.url()).await;
        assert!(
            matches!(opened, Err(StorageError::NotFound(_))),
            "{opened:?}"
        );
        let path = missing.url().trim_start_matches("sqlite://").to_owned();
        assert!(!std::path::Path::new(&path).exists());
        missing.drop_database().await;
    }
    source.drop_database().await;
}
