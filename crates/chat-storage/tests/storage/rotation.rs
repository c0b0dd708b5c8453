//! Key rotation: re-encrypting stored messages under a new primary key, in
//! batches, without losing or overwriting anything. Every test runs on both
//! backends through `conformance_suite!`.

use std::collections::BTreeMap;

use chat_crypto::{FernetKey, KeyRing};
use chat_domain::{MessageId, RoomId};
use chat_storage::testing::reencrypt_batch_with_meanwhile;
use chat_storage::{Cursor, ReencryptProgress, Store};

use crate::support::{AppendOk, TestDb, message, ring_of};

conformance_suite!(
    an_empty_store_has_nothing_to_rotate,
    a_rotation_in_several_batches_leaves_every_message_readable_with_the_new_key_alone,
    an_interrupted_rotation_resumes_where_it_stopped,
    a_message_changed_during_a_batch_is_not_overwritten,
    two_rotation_processes_never_overwrite_each_other,
    a_message_no_key_can_decrypt_is_reported_and_left_intact,
);

/// The sum of a whole rotation run, and how many batches it took.
#[derive(Debug, Default)]
struct Run {
    batches: usize,
    scanned: usize,
    reencrypted: usize,
    changed_meanwhile: usize,
    unreadable: Vec<MessageId>,
}

/// Rotates `store` to its primary key from the start, batch after batch,
/// as `chat-server rotate-key` does.
async fn rotate(store: &Store, batch_size: i64) -> Run {
    let mut run = Run::default();
    let mut after = None;
    loop {
        let progress = store
            .reencrypt_batch(after, batch_size)
            .await
            .expect("re-encrypt a batch");
        add(&mut run, progress.clone());
        after = progress.last_id;
        if progress.finished {
            return run;
        }
        assert!(run.batches < 1_000, "the rotation does not end: {run:?}");
    }
}

fn add(run: &mut Run, progress: ReencryptProgress) {
    run.batches += 1;
    run.scanned += progress.scanned;
    run.reencrypted += progress.reencrypted;
    run.changed_meanwhile += progress.changed_meanwhile;
    run.unreadable.extend(progress.unreadable);
}

async fn general(db: &TestDb) -> RoomId {
    db.general().await.id
}

/// Stores `texts` in `general` through `store`, in order, and returns their
/// ids.
async fn write(db: &TestDb, store: &Store, texts: &[String]) -> Vec<MessageId> {
    let room = general(db).await;
    let alice = match db
        .store
        .user_by_name(&crate::support::username("alice"))
        .await
        .expect("query")
    {
        Some(user) => user,
        None => db.user("alice").await,
    };
    let batch = texts
        .iter()
        .map(|text| message(room, &alice, text, None))
        .collect();
    store
        .append_ok(batch)
        .await
        .expect("append")
        .into_iter()
        .map(|appended| appended.message.id)
        .collect()
}

fn texts(prefix: &str, count: usize) -> Vec<String> {
    (1..=count).map(|n| format!("{prefix} {n}")).collect()
}

/// Every message of `general` as `store` reads it, oldest first.
async fn contents(db: &TestDb, store: &Store) -> Vec<Option<String>> {
    store
        .history(general(db).await, Cursor::Latest, 1_000)
        .await
        .expect("history")
        .messages
        .into_iter()
        .map(|message| message.content)
        .collect()
}

/// Message counts by key id.
async fn counts(store: &Store) -> BTreeMap<String, i64> {
    store
        .count_by_key()
        .await
        .expect("count by key")
        .into_iter()
        .map(|(key_id, count)| (key_id.as_str().to_owned(), count))
        .collect()
}

fn id(key: &FernetKey) -> String {
    key.id().as_str().to_owned()
}

fn all_some(texts: &[String]) -> Vec<Option<String>> {
    texts.iter().cloned().map(Some).collect()
}

async fn an_empty_store_has_nothing_to_rotate(db: &TestDb) {
    assert!(counts(&db.store).await.is_empty());
    let rotating = db
        .store_with(KeyRing::new(FernetKey::generate(), vec![db.key.clone()]))
        .await;
    let progress = rotating.reencrypt_batch(None, 10).await.expect("batch");
    assert_eq!(
        progress,
        ReencryptProgress {
            finished: true,
            ..ReencryptProgress::default()
        }
    );
}

async fn a_rotation_in_several_batches_leaves_every_message_readable_with_the_new_key_alone(
    db: &TestDb,
) {
    // Key A is `db.key`, the key `db.store` encrypts with.
    let written = texts("under key A", 10);
    write(db, &db.store, &written).await;
    let before = db.raw_messages().await;
    assert_eq!(counts(&db.store).await, BTreeMap::from([(id(&db.key), 10)]));

    let b = FernetKey::generate();
    let rotating = db
        .store_with(KeyRing::new(b.clone(), vec![db.key.clone()]))
        .await;
    let run = rotate(&rotating, 3).await;
    assert_eq!(run.batches, 4, "{run:?}");
    assert_eq!((run.scanned, run.reencrypted), (10, 10), "{run:?}");
    assert_eq!(run.changed_meanwhile, 0);
    assert!(run.unreadable.is_empty());

    // Nothing is left under A: it can be dropped.
    assert_eq!(counts(&db.store).await, BTreeMap::from([(id(&b), 10)]));
    let after = db.raw_messages().await;
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(old.body, new.body, "a message kept its old token");
        assert_eq!(new.key_id, id(&b));
    }

    // A server with only the new key reads every message; one with only the
    // old key no longer can.
    let only_b = db.store_with(ring_of(&b)).await;
    assert_eq!(contents(db, &only_b).await, all_some(&written));
    let only_a = db.store_with(ring_of(&db.key)).await;
    assert!(contents(db, &only_a).await.iter().all(Option::is_none));

    // Running it again finds nothing to do.
    let again = rotate(&rotating, 3).await;
    assert_eq!((again.batches, again.scanned), (1, 0), "{again:?}");
}

async fn an_interrupted_rotation_resumes_where_it_stopped(db: &TestDb) {
    let mut written = texts("under key A", 7);
    write(db, &db.store, &written).await;
    let b = FernetKey::generate();
    let ring = KeyRing::new(b.clone(), vec![db.key.clone()]);

    // The first process handles one batch and is stopped.
    let first = db.store_with(ring.clone()).await;
    let progress = first.reencrypt_batch(None, 3).await.expect("batch");
    assert_eq!((progress.scanned, progress.reencrypted), (3, 3));
    assert!(!progress.finished);
    drop(first);
    assert_eq!(
        counts(&db.store).await,
        BTreeMap::from([(id(&db.key), 4), (id(&b), 3)])
    );
    let rotated_first = db.raw_messages().await[..3].to_vec();

    // The server keeps writing meanwhile, with the new primary key.
    let server = db.store_with(ring.clone()).await;
    let more = texts("under key B", 2);
    write(db, &server, &more).await;
    written.extend(more);

    // A second process, started from scratch, does only what is left.
    let second = db.store_with(ring).await;
    let run = rotate(&second, 3).await;
    assert_eq!((run.scanned, run.reencrypted), (4, 4), "{run:?}");
    assert_eq!(db.raw_messages().await[..3], rotated_first[..]);
    assert_eq!(counts(&db.store).await, BTreeMap::from([(id(&b), 9)]));
    assert_eq!(
        contents(db, &db.store_with(ring_of(&b)).await).await,
        all_some(&written)
    );
}

async fn a_message_changed_during_a_batch_is_not_overwritten(db: &TestDb) {
    let ids = write(db, &db.store, &texts("original", 3)).await;
    let b = FernetKey::generate();
    let ring = KeyRing::new(b.clone(), vec![db.key.clone()]);
    let rotating = db.store_with(ring.clone()).await;

    // Between the read and the write-back, another writer replaces the
    // second message, still under key A.
    let edited = ring_of(&db.key).encrypt("edited meanwhile");
    let progress = reencrypt_batch_with_meanwhile(&rotating, None, 10, async {
        db.overwrite_message(ids[1], &edited.token, edited.key_id.as_str())
            .await;
    })
    .await
    .expect("batch");
    assert_eq!(progress.scanned, 3);
    assert_eq!(progress.reencrypted, 2);
    assert_eq!(progress.changed_meanwhile, 1);

    // The edit survived, untouched, under the key it was written with.
    let raw = db.raw_messages().await;
    assert_eq!(raw[1].body, edited.token);
    assert_eq!(raw[1].key_id, id(&db.key));
    let expected = ["original 1", "edited meanwhile", "original 3"].map(|t| Some(t.to_owned()));
    assert_eq!(contents(db, &rotating).await, expected);

    // The next run re-encrypts the edited message too.
    let run = rotate(&rotating, 10).await;
    assert_eq!((run.scanned, run.reencrypted), (1, 1), "{run:?}");
    assert_eq!(
        contents(db, &db.store_with(ring_of(&b)).await).await,
        expected
    );
}

async fn two_rotation_processes_never_overwrite_each_other(db: &TestDb) {
    let written = texts("under key A", 4);
    write(db, &db.store, &written).await;
    let b = FernetKey::generate();
    let ring = KeyRing::new(b.clone(), vec![db.key.clone()]);
    let slow = db.store_with(ring.clone()).await;
    let fast = db.store_with(ring).await;

    // The slow process reads the batch; the fast one rotates everything
    // before the slow one writes back.
    let mut fast_run = None;
    let slow_progress = reencrypt_batch_with_meanwhile(&slow, None, 10, async {
        fast_run = Some(rotate(&fast, 10).await);
    })
    .await
    .expect("batch");
    let fast_run = fast_run.expect("the fast process ran");
    assert_eq!(fast_run.reencrypted, 4, "{fast_run:?}");
    let after_fast = db.raw_messages().await;

    assert_eq!(slow_progress.scanned, 4);
    assert_eq!(slow_progress.reencrypted, 0);
    assert_eq!(slow_progress.changed_meanwhile, 4);
    assert_eq!(db.raw_messages().await, after_fast);
    assert_eq!(
        contents(db, &db.store_with(ring_of(&b)).await).await,
        all_some(&written)
    );
}

async fn a_message_no_key_can_decrypt_is_reported_and_left_intact(db: &TestDb) {
    // The second message was written by a server with a key (C) that the
    // rotating ring does not hold.
    let c = FernetKey::generate();
    let mut ids = write(db, &db.store, &["under key A 1".to_owned()]).await;
    ids.extend(
        write(
            db,
            &db.store_with(ring_of(&c)).await,
            &["under key C".to_owned()],
        )
        .await,
    );
    ids.extend(write(db, &db.store, &["under key A 2".to_owned()]).await);
    let unreadable_before = db.raw_messages().await[1].clone();

    let b = FernetKey::generate();
    let rotating = db
        .store_with(KeyRing::new(b.clone(), vec![db.key.clone()]))
        .await;
    let run = rotate(&rotating, 1).await;
    assert_eq!(run.unreadable, [ids[1]], "{run:?}");
    assert_eq!(run.reencrypted, 2, "{run:?}");

    // The row is exactly as it was, and its key still opens it.
    assert_eq!(db.raw_messages().await[1], unreadable_before);
    assert_eq!(
        counts(&db.store).await,
        BTreeMap::from([(id(&b), 2), (id(&c), 1)])
    );
    let with_c = db.store_with(KeyRing::new(c, vec![b])).await;
    assert_eq!(
        contents(db, &with_c).await,
        ["under key A 1", "under key C", "under key A 2"].map(|t| Some(t.to_owned()))
    );

    // Running again reports it again and changes nothing.
    let again = rotate(&rotating, 1).await;
    assert_eq!(again.unreadable, [ids[1]], "{again:?}");
    assert_eq!(again.reencrypted, 0);
    assert_eq!(db.raw_messages().await[1], unreadable_before);
}
